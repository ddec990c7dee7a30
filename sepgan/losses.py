"""Every training loss as a plain function, and `SeparationLoss`, their weighted sum from config.

Spectrogram losses compare features in the separator's normalised domain (mixture RMS = 1), so
their size does not depend on how loud an example is. Waveform losses (projection, SI-SDR) are
scale-invariant by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim
from torch import nn

from sepgan.audio import FrontEnd
from sepgan.metrics import si_sdr
from sepgan.models.separator import Separation
from sepgan.models.noise_classifier import noise_class_loss
from sepgan.numerics import FLOOR, compression_gain, full_precision, magnitude, upcast


def feature_magnitude(features: torch.Tensor) -> torch.Tensor:
    """(batch, 1, freq, frames) magnitude of complex (2-channel) or magnitude (1-channel) features."""
    if features.shape[1] == 2:
        return features.pow(2).sum(dim=1, keepdim=True).add(1e-12).sqrt()
    return features.abs()


def mse(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (estimate - target).pow(2).mean()


def noise_weighted_mse(estimate: torch.Tensor, target: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Squared error weighted per time-frequency bin by the true noise magnitude.

    The study's 1e4*mean((V'-V)^2*|N|): errors count most where the noise is strong, which is
    where a plain MSE lets noise leak through. Weights are divided by their mean per example so
    the term's size does not follow the noise level.
    """
    weight = feature_magnitude(noise)
    weight = weight / weight.mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)
    return ((estimate - target).pow(2) * weight).mean()


def huber(estimate: torch.Tensor, target: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Huber loss (Model B's loss on the noise estimate): quadratic near 0, linear beyond `delta`."""
    return F.huber_loss(estimate, target, delta=delta)


def log_magnitude_image(features: torch.Tensor, reference: torch.Tensor, range_db: float = 80.0) -> torch.Tensor:
    """Log-magnitude in [0, 1]: 1 at the reference's peak, 0 at `range_db` below it (per example)."""
    db = 20 * torch.log10(feature_magnitude(features) + 1e-8)
    peak = (20 * torch.log10(feature_magnitude(reference) + 1e-8)).amax(dim=(1, 2, 3), keepdim=True)
    return ((db - peak + range_db) / range_db).clamp(0.0, 1.0)


def ssim_loss(estimate: torch.Tensor, target: torch.Tensor, range_db: float = 80.0) -> torch.Tensor:
    """1 - SSIM between normalised log-magnitude spectrograms (pytorch-msssim, differentiable)."""
    x = log_magnitude_image(estimate, target, range_db)
    y = log_magnitude_image(target, target, range_db)
    win = min(11, *x.shape[-2:])
    win -= 1 - win % 2  # odd window no larger than the image
    return 1.0 - ssim(x, y, data_range=1.0, size_average=True, win_size=win)


def projection(estimate: torch.Tensor, speech: torch.Tensor, noise: torch.Tensor, eps: float = 1e-6):
    """Least-squares decomposition estimate = a*speech + b*noise + residual, per example.

    Returns (a, b, residual) with a and b of shape (batch,) and the residual like the estimate.
    """
    vv = (speech * speech).sum(-1)
    nn_ = (noise * noise).sum(-1)
    vn = (speech * noise).sum(-1)
    ve = (speech * estimate).sum(-1)
    ne = (noise * estimate).sum(-1)
    ridge = eps * (vv + nn_)  # keeps the 2x2 system solvable when speech and noise are (nearly) parallel
    # > 0 unless speech and noise are both silent; then a = b = 0 instead of 0/0
    det = ((vv + ridge) * (nn_ + ridge) - vn * vn).clamp_min(torch.finfo(vv.dtype).tiny)
    a = ((nn_ + ridge) * ve - vn * ne) / det
    b = ((vv + ridge) * ne - vn * ve) / det
    residual = estimate - a[:, None] * speech - b[:, None] * noise
    return a, b, residual


def projection_loss(estimate: torch.Tensor, speech: torch.Tensor, noise: torch.Tensor,
                    scale_weight: float = 1.0, noise_weight: float = 1.0, residual_weight: float = 1.0) -> torch.Tensor:
    """The study's source projection loss: drive a -> 1, b -> 0 and the residual -> 0.

    Residual energy is measured relative to the speech energy, so the loss is 0 exactly when the
    estimate equals the speech and does not depend on the signal level.
    """
    a, b, residual = projection(estimate, speech, noise)
    residual_ratio = residual.pow(2).sum(-1) / speech.pow(2).sum(-1).clamp_min(1e-8)
    return (scale_weight * (a - 1).pow(2) + noise_weight * b.pow(2) + residual_weight * residual_ratio).mean()


def si_sdr_loss(estimate: torch.Tensor, speech: torch.Tensor) -> torch.Tensor:
    return -si_sdr(estimate, speech).mean()


# (n_fft, hop) of the multi-resolution STFT loss: 16, 32 and 64 ms Hann windows at 16 kHz, hop a quarter.
MRSTFT_RESOLUTIONS = ((256, 64), (512, 128), (1024, 256))


def stft_magnitude(wav: torch.Tensor, n_fft: int, hop: int, eps: float = 1e-7) -> torch.Tensor:
    """(batch, freq, frames) magnitude, floored at sqrt(eps) so its square root and log have finite gradients."""
    spec = torch.stft(wav, n_fft, hop, window=torch.hann_window(n_fft, device=wav.device, dtype=wav.dtype),
                      return_complex=True)
    return (spec.real.pow(2) + spec.imag.pow(2)).clamp_min(eps).sqrt()


def multi_resolution_stft_loss(estimate: torch.Tensor, target: torch.Tensor,
                               resolutions=MRSTFT_RESOLUTIONS, eps: float = 1e-7) -> torch.Tensor:
    """Spectral convergence + log-magnitude L1, averaged over STFT resolutions (Yamamoto et al., 2020).

    A perceptual complement to SI-SDR: it compares magnitudes only, so it does not punish phase
    differences nobody hears, and its log term weighs quiet bins (residual noise between words) as
    much as loud ones. Both waveforms are (batch, samples); the term is 0 exactly when they are
    equal. Magnitudes are floored (`stft_magnitude`), so silence gives finite gradients.
    """
    total = estimate.new_zeros(())
    for n_fft, hop in resolutions:
        est, ref = stft_magnitude(estimate, n_fft, hop, eps), stft_magnitude(target, n_fft, hop, eps)
        # vector_norm's gradient at 0 is 0 (not NaN), so identical inputs are safe; ref's norm is > 0 (floor).
        convergence = torch.linalg.vector_norm(ref - est, dim=(1, 2)) / torch.linalg.vector_norm(ref, dim=(1, 2))
        total = total + convergence.mean() + (ref.log() - est.log()).abs().mean()
    return total / len(resolutions)


def compressed_spectral_loss(estimate: torch.Tensor, target: torch.Tensor, n_fft: int = 512, hop: int = 128,
                             power: float = 0.3, complex_share: float = 0.3) -> torch.Tensor:
    """Mean squared error of power-law compressed spectra (Braun & Tashev, 2021): a loss aimed at PESQ.

    Both waveforms (batch, samples) go through a Hann STFT; each bin's magnitude is compressed to
    |X|^power with its phase kept. The loss mixes the error of the compressed complex spectra
    (`complex_share`, which also judges phase) and of the compressed magnitudes. Compression brings
    quiet bins' errors close to loud ones' (a 100-fold level difference becomes about 4-fold), as
    hearing does, where SI-SDR is ruled by the loudest bins; the gradient stays finite at exact
    zeros (`sepgan.numerics.compression_gain`). 0 exactly when the waveforms are equal.
    """
    window = torch.hann_window(n_fft, device=estimate.device, dtype=estimate.dtype)
    est, ref = (torch.stft(x, n_fft, hop, window=window, return_complex=True) for x in (estimate, target))
    # Floors far below any audible bin (-160 dB re. the normalised level), so silence costs nothing visible.
    est_mag, ref_mag = (magnitude(x.real, x.imag, floor=FLOOR * FLOOR) for x in (est, ref))
    est_gain, ref_gain = compression_gain(est_mag, power), compression_gain(ref_mag, power)
    est_c, ref_c = est_mag * est_gain, ref_mag * ref_gain
    # The compressed complex spectrum X |X|^(power - 1): compressed magnitude, the same phase.
    complex_error = ((est.real * est_gain - ref.real * ref_gain).pow(2)
                     + (est.imag * est_gain - ref.imag * ref_gain).pow(2)).mean()
    magnitude_error = (est_c - ref_c).pow(2).mean()
    return complex_share * complex_error + (1.0 - complex_share) * magnitude_error


class SeparationLoss(nn.Module):
    """Weighted sum of named reconstruction terms; a term with weight 0 is not computed.

    Terms: `mse` (speech features), `noise_weighted_mse` (speech features, weighted by true noise
    magnitude), `huber_noise` (noise features), `ssim` (speech log-magnitude), `projection`
    (speech waveform), `si_sdr` (speech waveform), `mrstft` (multi-resolution STFT magnitudes of
    the speech waveform, at the normalised level), `compressed` (power-law compressed spectra of the
    speech waveform, at the normalised level) and `noise_class` (cross-entropy of the noise
    classifier's pooled scores against the mixture's noise classes). The weights `adversarial` and
    `feature_matching` are kept in `adversarial_weights` for the adversarial stage, which owns the
    discriminator they need.
    """

    TERMS = ("mse", "noise_weighted_mse", "huber_noise", "ssim", "projection", "si_sdr", "mrstft", "compressed",
             "noise_class")
    ADVERSARIAL_TERMS = ("adversarial", "feature_matching")

    def __init__(self, weights: dict[str, float], huber_delta: float = 1.0, ssim_range_db: float = 80.0,
                 projection_weights: dict[str, float] | None = None,
                 mrstft_resolutions: list[list[int]] | None = None):
        super().__init__()
        unknown = sorted(set(weights) - set(self.TERMS) - set(self.ADVERSARIAL_TERMS))
        if unknown:
            raise ValueError(f"unknown loss term(s) {unknown} in loss.weights; known terms: "
                             f"{list(self.TERMS + self.ADVERSARIAL_TERMS)}")
        self.weights = {name: float(w) for name, w in weights.items() if name in self.TERMS and float(w) != 0.0}
        self.adversarial_weights = {name: float(weights.get(name, 0.0)) for name in self.ADVERSARIAL_TERMS}
        if not self.weights and not any(self.adversarial_weights.values()):
            raise ValueError("loss.weights: every weight is 0, so nothing would be trained; give one term a weight")
        self.huber_delta = huber_delta
        self.ssim_range_db = ssim_range_db
        self.projection_weights = dict(projection_weights or {})
        self.mrstft_resolutions = [tuple(r) for r in (mrstft_resolutions or MRSTFT_RESOLUTIONS)]
        if any(len(r) != 2 or min(r) < 1 for r in self.mrstft_resolutions):
            raise ValueError(f"loss.mrstft_resolutions must be [n_fft, hop] pairs, got {mrstft_resolutions}")

    def forward(self, sep: Separation, speech: torch.Tensor, noise: torch.Tensor, frontend: FrontEnd,
                noise_classes: torch.Tensor | None = None):
        """Total loss and a dict of every unweighted term, for `speech`/`noise` waveforms (batch, samples).

        `noise_classes` (batch, classes), multi-hot, is needed by the `noise_class` term only.
        Always computed in float32, also under autocast (SSIM's filters and the STFTs of the targets
        would otherwise run in 16 bits).
        """
        with full_precision(speech):
            return self._terms(sep, upcast(speech), upcast(noise), frontend, noise_classes)

    def _terms(self, sep: Separation, speech: torch.Tensor, noise: torch.Tensor, frontend: FrontEnd,
               noise_classes: torch.Tensor | None = None):
        terms: dict[str, torch.Tensor] = {}
        w = self.weights
        if w.keys() & {"mse", "noise_weighted_mse", "ssim"}:
            speech_features = frontend.encode(speech / sep.scale)
        if w.keys() & {"noise_weighted_mse", "huber_noise"}:
            # What the network's noise features hold: the mixture less its DC offset (`centred_level`) less the speech.
            offset = (speech + noise).mean(dim=-1, keepdim=True)
            noise_features = frontend.encode((noise - offset) / sep.scale)
        if "mse" in w:
            terms["mse"] = mse(sep.speech_features, speech_features)
        if "noise_weighted_mse" in w:
            terms["noise_weighted_mse"] = noise_weighted_mse(sep.speech_features, speech_features, noise_features)
        if "huber_noise" in w:
            terms["huber_noise"] = huber(sep.noise_features, noise_features, self.huber_delta)
        if "ssim" in w:
            terms["ssim"] = ssim_loss(sep.speech_features, speech_features, self.ssim_range_db)
        if "projection" in w:
            terms["projection"] = projection_loss(sep.speech, speech, noise, **self.projection_weights)
        if "si_sdr" in w:
            terms["si_sdr"] = si_sdr_loss(sep.speech, speech)
        if "mrstft" in w:
            terms["mrstft"] = multi_resolution_stft_loss(sep.speech / sep.scale, speech / sep.scale,
                                                         self.mrstft_resolutions)
        if "compressed" in w:
            terms["compressed"] = compressed_spectral_loss(sep.speech / sep.scale, speech / sep.scale)
        if "noise_class" in w:
            if sep.noise_logits is None or noise_classes is None:
                raise ValueError("loss.weights.noise_class needs a model with a noise classifier "
                                 "(model.noise_classifier) and the mixtures' noise classes")
            terms["noise_class"] = noise_class_loss(upcast(sep.noise_logits), noise_classes)
        total = sum((w[name] * value for name, value in terms.items()), sep.speech.new_zeros(()))
        return total, terms


# ---- adversarial objectives -------------------------------------------------------------------


@dataclass(frozen=True)
class AdversarialObjective:
    """How discriminator scores turn into the two players' losses, and which scores mean "real"."""

    name: str
    discriminator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (real scores, fake scores) -> loss
    generator: Callable[[torch.Tensor], torch.Tensor]  # fake scores -> loss
    threshold: float  # scores above it are judged real

    def says_real(self, scores: torch.Tensor) -> torch.Tensor:
        return scores > self.threshold


def _bce(scores: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(scores, torch.full_like(scores, target))


ADVERSARIAL_OBJECTIVES = {
    # Least-squares GAN (Mao et al., 2017): real -> 1, fake -> 0.
    "lsgan": AdversarialObjective(
        "lsgan",
        lambda real, fake: (real - 1).pow(2).mean() + fake.pow(2).mean(),
        lambda fake: (fake - 1).pow(2).mean(),
        0.5,
    ),
    # Non-saturating binary cross-entropy (Goodfellow et al., 2014).
    "bce": AdversarialObjective("bce", lambda real, fake: _bce(real, 1.0) + _bce(fake, 0.0),
                                lambda fake: _bce(fake, 1.0), 0.0),
    # Hinge loss (Lim & Ye, 2017; Miyato et al., 2018).
    "hinge": AdversarialObjective("hinge", lambda real, fake: F.relu(1 - real).mean() + F.relu(1 + fake).mean(),
                                  lambda fake: -fake.mean(), 0.0),
}


def adversarial_objective(name: str) -> AdversarialObjective:
    if name not in ADVERSARIAL_OBJECTIVES:
        raise ValueError(f"gan.objective must be one of {sorted(ADVERSARIAL_OBJECTIVES)}, got '{name}'")
    return ADVERSARIAL_OBJECTIVES[name]


def feature_matching(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Mean L1 distance between the discriminator's activations on real and on estimated speech (in float32)."""
    with full_precision(fake[0]):
        return sum(F.l1_loss(upcast(f), upcast(r).detach()) for r, f in zip(real, fake)) / len(real)
