"""Plain nn.Modules: the U-Net, its blocks and the separator that wraps it with the front-end."""

from sepgan.models.separator import Separation, Separator, load_separator
from sepgan.models.unet import UNet

__all__ = ["Separation", "Separator", "UNet", "load_separator"]
