"""The model shipped with sepgan: the default of `sepgan separate`, `sepgan evaluate` and the web page."""

from __future__ import annotations

from pathlib import Path

DEFAULT_CHECKPOINT = Path(__file__).with_name("sepgan-16k.ckpt")


def default_checkpoint() -> Path:
    """Path of the shipped model, or a clear error if this copy of sepgan has none."""
    if not DEFAULT_CHECKPOINT.is_file():
        raise FileNotFoundError(f"no shipped model at '{DEFAULT_CHECKPOINT}'; pass --checkpoint PATH "
                                f"(any best-*.ckpt or final.ckpt from `python -m sepgan.train`)")
    return DEFAULT_CHECKPOINT
