"""Shared fixtures: tiny configs composed through Hydra, short signals written to temp folders."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sepgan.training.config import compose_config

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Overrides that make any experiment run in seconds: a 3-block U-Net with 4 channels, half-second
# segments, a handful of synthetic recordings, no workers.
TINY = [
    "model.unet.n_blocks=3",
    "model.unet.channels=4",
    "data.segment_seconds=0.5",
    "data.batch_size=2",
    "data.num_workers=0",
    "data.train_examples=4",
    "data.val_examples=4",
    "data.test_examples=2",
    "data.synthetic_speakers=4",
    "data.synthetic_utterances=1",
    "data.synthetic_noise_recordings=3",
    "data.synthetic_seconds=1.0",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks.validation_examples.count=1",
]


@pytest.fixture
def train_main(monkeypatch):
    """`python -m sepgan.train ARGS` in this process (a subprocess takes seconds to import torch): returns what
    it returns, or raises its SystemExit. The logging Hydra sets up for the run is undone afterwards."""
    from sepgan.commands.train import main

    def _run(*args: str):
        monkeypatch.setattr(sys, "argv", ["sepgan.train", *args])
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        try:
            return main()
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)

    return _run


@pytest.fixture
def make_cfg(tmp_path):
    """Compose the training config with overrides, writing the run into a temp folder."""

    def _make(*overrides: str, output_dir: Path | None = None):
        return compose_config([*TINY, f"paths.output_dir={output_dir or tmp_path / 'run'}",
                               f"paths.log_dir={tmp_path / 'logs'}", *overrides])

    return _make


def write_tone(path: Path, seconds: float = 1.0, sr: int = 16000, freq: float = 440.0, channels: int = 1,
               subtype: str | None = None, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    wav = amplitude * np.sin(2 * np.pi * freq * t)
    data = np.stack([wav * (c + 1) / channels for c in range(channels)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, subtype=subtype)
    return data


def write_noise(path: Path, seconds: float = 1.0, sr: int = 16000, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), 0.1 * rng.standard_normal(int(seconds * sr)), sr)


# A U-Net with the default three down-sampling levels (so chunking meets the real 8-frame grid)
# but 2 channels and 1 layer per block: runs a 30 s file in under a second.
TINY_MODEL = ["model=small", "model.unet.n_blocks=7", "model.unet.channels=2", "model.unet.layers=1"]


# The small_dilated preset (9 blocks, dilated bottleneck) at test width. Pass seed=1: at 2 channels, seed 0's
# random batch-norm statistics silence a whole level, and the bottleneck then reaches nothing.
TINY_DILATED = ("model=small_dilated", "model.unet.n_blocks=9")


def tiny_separator(*overrides: str, seed: int = 0):
    """An untrained tiny separator with random batch-norm statistics (and temporal bottleneck), so that its
    output is not close to the pass-through it starts from and chunking errors would show."""
    import torch

    from sepgan.training.config import build_separator

    torch.manual_seed(seed)
    model = build_separator(compose_config([*TINY_MODEL, *overrides]))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.3)
            module.running_var.uniform_(0.3, 3.0)
    wake_temporal(model)
    return model.eval()


def wake_temporal(model):
    """Random weights for the temporal bottleneck's convolutions, which start at zero (the identity)."""
    import torch

    for name, param in model.named_parameters():
        if ".temporal." in name:
            torch.nn.init.normal_(param, 0.0, 0.1)
    return model


def save_checkpoint(model, path: Path) -> Path:
    """A checkpoint in the form `sepgan.models.load_separator` reads (as the training stages write it)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {f"separator.{k}": v for k, v in model.state_dict().items()},
                "separator_config": model.config}, path)
    return path


def band_power_db(x: np.ndarray, low: float, high: float, sample_rate: int = 16000) -> float:
    """Power of `x` between `low` and `high` Hz (Welch), in dB: what a filter or a model left of a band."""
    from scipy import signal

    f, p = signal.welch(np.asarray(x, np.float64), fs=sample_rate, nperseg=1024)
    return 10 * np.log10(np.sum(p[(f >= low) & (f <= high)]) + 1e-30)


def noisy_speech(seconds: float, sr: int = 16000, seed: int = 0, kind: str = "siren") -> np.ndarray:
    """Synthetic speech plus synthetic noise, with a level that rises across the clip (float32)."""
    from sepgan.data import synthetic

    speech = synthetic.speech_like(seed, 0, sr, seconds)
    noise = synthetic.noise(kind, seed, sr, seconds)
    return ((speech + 0.5 * noise) * np.linspace(0.5, 2.0, len(speech))).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tiny_separator(), tmp_path_factory.mktemp("models") / "tiny.ckpt")


@pytest.fixture(scope="session")
def bad_audio(tmp_path_factory):
    """Awkward and broken audio files with what each must get (`tests/bad_audio.py`): a list of `CorpusFile`.

    Written once per session and shared: copy a file before changing it.
    """
    from tests.bad_audio import write_bad_audio

    return write_bad_audio(tmp_path_factory.mktemp("bad_audio"))
