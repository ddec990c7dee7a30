"""Naming the noise a separator removes: frame-level class scores of its noise estimate.

The classifier reads the separator's *noise* features (what is taken out of the mixture), so it
names exactly what was removed, whatever the speech did, and shares the separator's work instead
of listening to the mixture again. A small CNN turns the compressed magnitude into one score per
class and per frame group (`pool` STFT frames, 48 ms at the shipped 12 ms hop); scores are independent
sigmoids, so two noises at once, or none ("other"), are possible. Training labels name a whole
mixture, not its frames (a dog barks somewhere in the clip), so frame scores are pooled over time
by linear-softmax pooling (sum p² / sum p), which lets the frames that are sure dominate and still
trains every frame: the same scores then place each noise in time at inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

OTHER = "other"  # what a report calls removed noise no known class explains


class NoiseClassifier(nn.Module):
    def __init__(self, classes: list[str], in_channels: int, n_freq: int, channels: int = 32, pool: int = 4):
        super().__init__()
        if not classes:
            raise ValueError("the noise classifier needs at least one class")
        self.classes = list(classes)
        self.in_channels, self.pool = in_channels, pool
        widths = (channels // 2, channels, 2 * channels)
        layers, c_in, f = [], 1, n_freq
        for c_out in widths:  # each level: 3x3 conv, BN, ReLU, frequency pooled by 4
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                       nn.MaxPool2d((4, 1), ceil_mode=True)]
            c_in, f = c_out, -(-f // 4)
        self.features = nn.Sequential(*layers)
        self.temporal = nn.Sequential(nn.Conv1d(c_in * f, 2 * channels, 5, padding=2), nn.ReLU(),
                                      nn.Conv1d(2 * channels, len(self.classes), 1))

    def forward(self, noise_features: torch.Tensor) -> torch.Tensor:
        """(batch, channels, freq, frames) noise features -> (batch, classes, ceil(frames / pool)) logits."""
        # a level that does not depend on how loud the recording is: the features are normalised by
        # the mixture's RMS; the magnitude (not the phase) says what the noise is
        if self.in_channels == 2:
            magnitude = noise_features.square().sum(1, keepdim=True).add(1e-8).sqrt()
        else:
            magnitude = noise_features.abs()
        x = torch.log1p(magnitude)
        frames = x.shape[-1]
        x = F.max_pool2d(x, (1, self.pool), ceil_mode=True) if self.pool > 1 else x
        h = self.features(x)  # (batch, channels, freq / 64, frames / pool)
        logits = self.temporal(h.flatten(1, 2))
        return logits[..., : -(-frames // self.pool)]


def pooled_probabilities(frame_logits: torch.Tensor) -> torch.Tensor:
    """(batch, classes, frames) logits -> (batch, classes) clip probabilities by linear-softmax pooling."""
    p = torch.sigmoid(frame_logits.float())
    return (p * p).sum(-1) / p.sum(-1).clamp_min(1e-6)


def noise_class_loss(frame_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the pooled clip probabilities against multi-hot `targets` (batch, classes)."""
    # squeezed into (0, 1) rather than clamped, so a saturated wrong answer still has a gradient
    probabilities = pooled_probabilities(frame_logits) * (1 - 2e-6) + 1e-6
    return F.binary_cross_entropy(probabilities, targets.float())


def multi_hot(first: torch.Tensor, second: torch.Tensor | None, n_classes: int) -> torch.Tensor:
    """(batch, classes) targets from the first noise source's class and the second's (-1: none)."""
    targets = F.one_hot(first.long(), n_classes).float()
    if second is not None:
        present = second >= 0
        targets[present, second[present].long()] = 1.0
    return targets
