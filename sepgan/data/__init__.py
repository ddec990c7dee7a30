"""Speech and noise sources, on-the-fly mixing and the LightningDataModule."""

from sepgan.data.datamodule import MixtureDataset, SeparationDataModule
from sepgan.data.mixing import Mixer

__all__ = ["Mixer", "MixtureDataset", "SeparationDataModule"]
