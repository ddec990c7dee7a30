"""The discriminator of the GAN stages: real clean speech versus the generator's estimates.

It reads the same spectrogram features as the generator (from the same front-end): strided 3x3
convolutions with LeakyReLU halve frequency and time at each layer, then a mean over the whole
picture and a linear layer give one score per example, for inputs of any length. Spectral
normalisation (optional, on by default) keeps its gradients tame, which steadies the adversarial
stage.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from sepgan.numerics import full_precision, upcast


class Discriminator(nn.Module):
    def __init__(self, in_channels: int, channels: list[int] | tuple[int, ...] = (16, 32, 64, 128),
                 spectral_norm: bool = True):
        super().__init__()
        wrap = _spectral_norm if spectral_norm else (lambda m: m)
        layers, previous = [], in_channels
        for ch in channels:
            layers.append(nn.Sequential(wrap(nn.Conv2d(previous, ch, 3, stride=2, padding=1)), nn.LeakyReLU(0.2)))
            previous = ch
        self.layers = nn.ModuleList(layers)
        self.head = wrap(nn.Linear(previous, 1))
        self.config = dict(in_channels=in_channels, channels=list(channels), spectral_norm=spectral_norm)

    def forward(self, features: torch.Tensor, return_features: bool = False):
        """Scores (batch,) of (batch, channels, freq, frames) features; higher means "real" (float32).

        With `return_features`, also every layer's activations (for feature matching).
        """
        activations = []
        h = features
        for layer in self.layers:
            h = layer(h)
            activations.append(h)
        with full_precision(h):  # under mixed precision only the convolutions run in 16 bits; scores are float32
            score = self.head(upcast(h).mean(dim=(-2, -1))).squeeze(-1)
        return (score, activations) if return_features else score

