"""The generator: waveform in, speech estimate out, through the front-end and a U-Net.

Model A predicts the speech; Model B predicts the noise and the speech is the mixture minus it
(in feature space). The U-Net's output is used directly (the study's "direct mapping") or as a
bounded mask on the mixture: a sigmoid for magnitudes, a complex mask whose magnitude is squashed
by tanh for complex features. A complex mask may span neighbouring frames (`mask_frames` > 1): each
output bin is then a filter over the mixture's bins at the same frequency in those frames, the
"deep filter" of Mack & Habets (2019) and DeepFilterNet, which can keep the harmonics of speech
that a one-frame mask smears when noise sits between them.

The mixture is divided by its RMS before the network and the estimate multiplied back, so the
model does not care how loud a recording is. Features in `Separation` are in that normalised
domain; waveforms are at the input's scale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from sepgan.audio import FrontEnd, rms
from sepgan.models.noise_classifier import NoiseClassifier
from sepgan.models.unet import UNet
from sepgan.numerics import full_precision, tanh_ratio, upcast


@dataclass
class Separation:
    mixture_features: torch.Tensor  # (batch, channels, freq, frames), normalised
    speech_features: torch.Tensor
    noise_features: torch.Tensor
    mixture_spec: torch.Tensor  # complex (batch, freq, frames), normalised
    scale: torch.Tensor  # (batch, 1): the mixture RMS the features were divided by
    speech: torch.Tensor  # (batch, samples), input scale
    noise: torch.Tensor  # mixture - speech
    noise_logits: torch.Tensor | None = None  # (batch, classes, frame groups) with a noise classifier, else None


class Separator(nn.Module):
    def __init__(self, frontend: FrontEnd | dict, unet: dict | None = None, target: str = "speech",
                 output: str = "mask", noise_classifier: dict | None = None, mask_frames: int = 1):
        super().__init__()
        if target not in ("speech", "noise"):
            raise ValueError(f"model.target must be 'speech' or 'noise', got '{target}'")
        if output not in ("direct", "mask"):
            raise ValueError(f"model.output must be 'direct' or 'mask', got '{output}'")
        self.frontend = frontend if isinstance(frontend, FrontEnd) else FrontEnd(**frontend)
        if mask_frames < 1 or mask_frames % 2 == 0:
            raise ValueError(f"model.mask_frames must be an odd number >= 1 (centred on the frame), got {mask_frames}")
        if mask_frames > 1 and (output != "mask" or self.frontend.representation != "complex"):
            raise ValueError("model.mask_frames > 1 needs model.output=mask and complex features "
                             f"(frontend.representation=complex), got output={output}, "
                             f"representation={self.frontend.representation}")
        unet = dict(unet or {})
        self.net = UNet(self.frontend.channels, self.frontend.channels * mask_frames, self.frontend.n_freq, **unet)
        self.target = target
        self.output = output
        self.mask_frames = mask_frames
        if output == "mask":
            # Start near a pass-through mask (sigmoid(3) = 0.95, tanh(3) = 0.995 with no rotation) on the
            # centre frame and nothing from its neighbours, so an untrained model returns about the mixture
            # instead of a random-phase mess.
            nn.init.zeros_(self.net.last.bias)
            with torch.no_grad():
                self.net.last.bias[self.frontend.channels * (mask_frames // 2)] = 3.0 if target == "speech" else -3.0
        # Everything needed to rebuild this module, stored in checkpoints.
        self.config = dict(frontend=asdict(self.frontend), unet=unet, target=target, output=output)
        if mask_frames > 1:  # only when used, so checkpoints of one-frame models load into older versions too
            self.config["mask_frames"] = mask_frames
        self.noise_classifier: NoiseClassifier | None = None
        self.detach_classifier = True
        if noise_classifier and noise_classifier.get("classes"):
            self.attach_noise_classifier(**noise_classifier)

    def attach_noise_classifier(self, classes: list[str], detach: bool = True, **settings) -> None:
        """Add a classifier that names the removed noise (`sepgan.models.noise_classifier`), untrained.

        `detach` (default) keeps its loss from pulling on the separator: adding it then costs the
        separation nothing. `settings` go to `NoiseClassifier` (channels, pool).
        """
        self.noise_classifier = NoiseClassifier(list(classes), self.frontend.channels, self.frontend.n_freq, **settings)
        self.detach_classifier = bool(detach)
        self.config["noise_classifier"] = {"classes": list(classes), "detach": self.detach_classifier, **settings}

    def estimate(self, mixture_features: torch.Tensor) -> torch.Tensor:
        """The network's estimate of its target (speech or noise) in feature space.

        Under mixed precision (autocast) only the U-Net computes in 16 bits; its output is cast to
        float32 and the mask is applied with autocast off (torch has no complex bf16, half-precision
        FFTs take power-of-two sizes only, and a mask in 16 bits caps the attainable SI-SDR).
        """
        out = self.net(mixture_features)
        with full_precision(out):
            return apply_output(upcast(out), upcast(mixture_features), self.output, self.frontend.representation)

    def separate_features(self, mixture_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(speech, noise) features from normalised mixture features: the whole model between the STFTs."""
        estimate = self.estimate(mixture_features)
        if self.target == "speech":
            return estimate, mixture_features - estimate
        return mixture_features - estimate, estimate

    def forward(self, mixture: torch.Tensor, scale: torch.Tensor | None = None,
                offset: torch.Tensor | None = None) -> Separation:
        """Separate (batch, samples) mixtures.

        The mixture's DC offset goes to the noise and the rest is normalised by its RMS
        (`centred_level`); `offset` and `scale` (batch, 1) replace the mixture's own mean and RMS,
        as chunked inference does with the whole file's so that every chunk is treated alike.
        Everything but the U-Net runs in full precision, also under autocast.
        """
        with full_precision(mixture):
            mixture = upcast(mixture)
            centred, scale = centred_level(mixture, scale, offset)
            mixture_spec = self.frontend.stft(centred / scale)
            mixture_features = self.frontend.to_features(mixture_spec)
        speech_features, noise_features = self.separate_features(mixture_features)
        with full_precision(mixture):
            speech = self.frontend.istft(self.frontend.from_features(speech_features, mixture_spec),
                                         mixture.shape[-1]) * scale
        logits = self.classify_noise(noise_features) if self.noise_classifier is not None else None
        return Separation(mixture_features, speech_features, noise_features, mixture_spec, scale, speech,
                          mixture - speech, logits)

    def classify_noise(self, noise_features: torch.Tensor) -> torch.Tensor:
        """Frame-group logits (batch, classes, groups) of the noise classifier for normalised noise features."""
        if self.noise_classifier is None:
            raise ValueError("this model has no noise classifier (train one with loss.weights.noise_class > 0)")
        return self.noise_classifier(noise_features.detach() if self.detach_classifier else noise_features)

    @torch.no_grad()
    def separate(self, mixture: torch.Tensor, scale: torch.Tensor | None = None,
                 offset: torch.Tensor | None = None) -> torch.Tensor:
        """Speech estimate for (batch, samples) or (samples,) audio, in eval mode."""
        was_training = self.training
        self.eval()
        try:
            one = mixture.dim() == 1
            batch = mixture[None] if one else mixture
            scale, offset = (None if v is None else torch.as_tensor(v, dtype=batch.dtype, device=batch.device).reshape(-1, 1)
                             for v in (scale, offset))
            speech = self(batch, scale, offset).speech
            return speech[0] if one else speech
        finally:
            self.train(was_training)


def centred_level(mixture: torch.Tensor, scale: torch.Tensor | None = None,
                  offset: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The mixture (batch, samples) less its DC offset, and the RMS about it that normalises it.

    Speech has no DC offset, so a recording's is noise; left in, it passes the mask's DC bin: 12 of
    the test split's 18 siren mixtures have noise whose mean is 0.77-0.90 of its RMS, and removing
    it raised the shipped model's SI-SDRi on the sirens from 6.3 to 9.0 dB (README, "The shipped model").
    `offset` and `scale` (batch, 1), when given, replace the mixture's own mean and RMS.
    """
    offset = mixture.mean(dim=-1, keepdim=True) if offset is None else upcast(offset)
    centred = mixture - offset
    return centred, rms(centred) if scale is None else upcast(scale)


def apply_output(out: torch.Tensor, mixture_features: torch.Tensor, output: str = "mask",
                 representation: str = "complex") -> torch.Tensor:
    """The estimate from the U-Net's output `out`: the output itself (`direct`) or a bounded mask on the mixture.

    Magnitude features get a sigmoid mask. Complex features get a complex mask (re, im) whose
    magnitude m is squashed to tanh(m) with its phase kept, written in real arithmetic so the model
    exports to ONNX (no complex type there). The squash multiplies by tanh(m)/m computed from m²
    (`sepgan.numerics.tanh_ratio`): the root of m² = 0 is never taken, so the gradient is finite
    where the network outputs exact zeros (computing m = sqrt(re² + im²) first trained to NaN
    under bf16, where such zeros are common).

    The output may hold one such mask per frame of a window centred on each frame, (re, im) for
    the earliest frame first: the estimate is then the sum of each mask times the mixture shifted
    by that frame's offset (zero beyond the ends), a deep filter.
    """
    if output == "direct":
        return out
    if representation == "magnitude":
        return torch.sigmoid(out) * mixture_features
    frames = out.shape[1] // 2
    mix_re, mix_im = mixture_features[:, 0], mixture_features[:, 1]
    estimate_re = estimate_im = 0
    for k in range(frames):
        mask_re, mask_im = bounded_complex_mask(out[:, 2 * k], out[:, 2 * k + 1])
        shifted_re, shifted_im = _shift_frames(mix_re, k - frames // 2), _shift_frames(mix_im, k - frames // 2)
        estimate_re = estimate_re + mask_re * shifted_re - mask_im * shifted_im
        estimate_im = estimate_im + mask_re * shifted_im + mask_im * shifted_re
    return torch.stack((estimate_re, estimate_im), dim=1)


def bounded_complex_mask(re: torch.Tensor, im: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The complex mask (re, im) with its magnitude m squashed to tanh(m) and its phase kept (see `apply_output`)."""
    squash = tanh_ratio(re * re + im * im)
    return re * squash, im * squash


def _shift_frames(x: torch.Tensor, offset: int) -> torch.Tensor:
    """x (..., frames) at frame t + offset for every t, zero past either end."""
    if offset == 0:
        return x
    frames = x.shape[-1]
    if offset > 0:
        return torch.nn.functional.pad(x[..., offset:], (0, min(offset, frames)))
    return torch.nn.functional.pad(x[..., :max(frames + offset, 0)], (min(-offset, frames), 0))
