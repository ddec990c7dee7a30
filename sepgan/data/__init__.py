"""Speech and noise sources, on-the-fly mixing and the LightningDataModule.

The DataModule is imported on first use, so that `sepgan separate`, `export-onnx` and `serve`,
which need only the synthetic sources and the mixer, do not pay Lightning's import time.
"""

from sepgan.data.mixing import Mixer

__all__ = ["Mixer", "MixtureDataset", "SeparationDataModule"]


def __getattr__(name: str):
    if name in ("MixtureDataset", "SeparationDataModule"):
        from sepgan.data import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module 'sepgan.data' has no attribute '{name}'")
