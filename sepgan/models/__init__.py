"""Plain nn.Modules: the U-Net, its blocks, the separator (generator) and the discriminator."""

from sepgan.models.checkpoints import load_discriminator, load_separator, save_separator, transfer_weights
from sepgan.models.discriminator import Discriminator
from sepgan.models.separator import Separation, Separator
from sepgan.models.speakers import SpeakerSeparation, SpeakerSeparator
from sepgan.models.unet import UNet

__all__ = ["Discriminator", "Separation", "Separator", "SpeakerSeparation", "SpeakerSeparator", "UNet", "load_discriminator", "load_separator", "save_separator", "transfer_weights"]
