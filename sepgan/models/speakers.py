"""A separator of several voices: one U-Net, one bounded mask per source, waveforms out.

The same front-end and U-Net as `Separator`, but the U-Net's last layer gives `sources` masks
(channels x sources outputs) instead of one, and every source is the mixture times its mask.
It is its own class rather than an option of `Separator` because a source here is a voice, not
"speech" versus "noise": there is no target to choose, no residual to subtract, and outputs come
in no particular order (training matches them to the references by permutation, `sepgan.pit`).

As in `Separator`, the mixture is divided by its RMS before the network and the estimates are
multiplied back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from sepgan.audio import FrontEnd
from sepgan.models.separator import centred_level
from sepgan.models.unet import UNet


@dataclass
class SpeakerSeparation:
    mixture_features: torch.Tensor  # (batch, channels, freq, frames), normalised
    source_features: torch.Tensor  # (batch, sources, channels, freq, frames), normalised
    mixture_spec: torch.Tensor  # complex (batch, freq, frames), normalised
    scale: torch.Tensor  # (batch, 1)
    sources: torch.Tensor  # (batch, sources, samples), input scale


def apply_mask(out: torch.Tensor, mixture_features: torch.Tensor) -> torch.Tensor:
    """A bounded mask from raw network output (batch, channels, freq, frames) applied to the mixture.

    Magnitude features: a sigmoid mask. Complex features: a complex mask whose magnitude is squashed
    by tanh, written in real arithmetic; the magnitude has a floor so its gradient stays finite at 0.
    """
    if mixture_features.shape[1] == 1:
        return torch.sigmoid(out) * mixture_features
    mask_re, mask_im = out[:, 0], out[:, 1]
    mag = (mask_re**2 + mask_im**2).clamp_min(1e-12).sqrt()
    squash = torch.tanh(mag) / mag
    mask_re, mask_im = mask_re * squash, mask_im * squash
    mix_re, mix_im = mixture_features[:, 0], mixture_features[:, 1]
    return torch.stack((mask_re * mix_re - mask_im * mix_im, mask_re * mix_im + mask_im * mix_re), dim=1)


class SpeakerSeparator(nn.Module):
    def __init__(self, frontend: FrontEnd | dict, unet: dict | None = None, sources: int = 2):
        super().__init__()
        if sources < 2:
            raise ValueError(f"model.sources must be at least 2 voices, got {sources}; "
                             f"for speech versus noise use sepgan.models.Separator")
        self.frontend = frontend if isinstance(frontend, FrontEnd) else FrontEnd(**frontend)
        unet = dict(unet or {})
        channels = self.frontend.channels
        self.net = UNet(channels, channels * sources, self.frontend.n_freq, **unet)
        self.sources = sources
        # Start near masks of 1/sources each (no rotation), so an untrained model splits the mixture
        # evenly instead of returning random-phase noise.
        nn.init.zeros_(self.net.last.bias)
        with torch.no_grad():
            share = torch.tensor(1.0 / sources)
            self.net.last.bias[0::channels] = float(torch.logit(share) if channels == 1 else torch.atanh(share))
        self.config = dict(frontend=asdict(self.frontend), unet=unet, sources=sources)

    def separate_features(self, mixture_features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One feature tensor (batch, channels, freq, frames) per source, from normalised mixture features."""
        out = self.net(mixture_features).float()
        channels = mixture_features.shape[1]
        return tuple(apply_mask(out[:, k * channels:(k + 1) * channels], mixture_features)
                     for k in range(self.sources))

    def forward(self, mixture: torch.Tensor, scale: torch.Tensor | None = None,
                offset: torch.Tensor | None = None) -> SpeakerSeparation:
        """Separate (batch, samples) mixtures into (batch, sources, samples); the DC offset goes to no voice
        (`sepgan.models.separator.centred_level`)."""
        centred, scale = centred_level(mixture, scale, offset)
        fe = self.frontend
        mixture_spec = fe.stft(centred / scale)
        mixture_features = fe.to_features(mixture_spec)
        features = torch.stack(self.separate_features(mixture_features), dim=1)
        batch = features.shape[0]
        flat = features.flatten(0, 1)  # (batch*sources, channels, freq, frames)
        spec = fe.from_features(flat, mixture_spec.repeat_interleave(self.sources, dim=0))
        sources = fe.istft(spec, mixture.shape[-1]).reshape(batch, self.sources, -1) * scale[:, :, None]
        return SpeakerSeparation(mixture_features, features, mixture_spec, scale, sources)

    @torch.no_grad()
    def separate(self, mixture: torch.Tensor) -> torch.Tensor:
        """Voices (sources, samples) of a (samples,) signal, or (batch, sources, samples) of a batch, in eval mode."""
        was_training = self.training
        self.eval()
        try:
            one = mixture.dim() == 1
            sources = self(mixture[None] if one else mixture).sources
            return sources[0] if one else sources
        finally:
            self.train(was_training)
