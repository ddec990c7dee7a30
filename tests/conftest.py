"""Shared fixtures: tiny configs composed through Hydra, short signals written to temp folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sepgan.config import compose_config

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
