"""Reference points for a denoiser's scores: a classical method and oracle masks (no Lightning, no Hydra).

- `spectral_gating`: noisereduce's non-stationary spectral gating with its own defaults, the
  classical baseline a learned model has to beat.
- `oracle_mask`: the ideal ratio mask or the phase-sensitive mask, computed from the clean speech
  and applied to the mixture's STFT through the model's own front-end. No mask-based model with
  that STFT can do much better, so they bound what the architecture could reach.

All take and return 1-D float32 numpy signals of one length.
"""

from __future__ import annotations

import numpy as np
import torch

from sepgan.audio import FrontEnd

ORACLES = ("irm", "psm")


def spectral_gating(mixture: np.ndarray, sample_rate: int) -> np.ndarray:
    """Speech estimate by noisereduce's non-stationary spectral gating (no noise clip needed)."""
    import noisereduce  # imported here: it pulls in scipy.stats, seconds at start-up

    estimate = noisereduce.reduce_noise(y=np.asarray(mixture, np.float32), sr=sample_rate, stationary=False, n_jobs=1)
    return np.asarray(estimate, np.float32)[: len(mixture)]


def ideal_ratio_mask(speech_spec: torch.Tensor, noise_spec: torch.Tensor) -> torch.Tensor:
    """IRM = sqrt(|S|² / (|S|² + |N|²)) per time-frequency bin, in [0, 1] (Wang et al., 2014)."""
    speech_power, noise_power = speech_spec.abs().pow(2), noise_spec.abs().pow(2)
    return (speech_power / (speech_power + noise_power).clamp_min(1e-20)).sqrt()


def phase_sensitive_mask(speech_spec: torch.Tensor, mixture_spec: torch.Tensor) -> torch.Tensor:
    """PSM = |S|/|Y|·cos(∠S − ∠Y) = Re(S·conj(Y))/|Y|², truncated to [0, 1] (Erdogan et al., 2015)."""
    psm = (speech_spec * mixture_spec.conj()).real / mixture_spec.abs().pow(2).clamp_min(1e-20)
    return psm.clamp(0.0, 1.0)


def oracle_mask(mixture: np.ndarray, speech: np.ndarray, frontend: FrontEnd, kind: str = "irm") -> np.ndarray:
    """Speech estimate by an oracle mask (`irm` or `psm`) on the mixture's STFT; the noise is mixture − speech."""
    if kind not in ORACLES:
        raise ValueError(f"oracle mask must be one of {ORACLES}, got '{kind}'")
    if len(mixture) != len(speech):
        raise ValueError(f"mixture and speech differ in length ({len(mixture)} and {len(speech)} samples)")
    y = torch.from_numpy(np.asarray(mixture, np.float64))
    s = torch.from_numpy(np.asarray(speech, np.float64))
    mixture_spec, speech_spec = frontend.stft(y), frontend.stft(s)
    if kind == "irm":
        mask = ideal_ratio_mask(speech_spec, mixture_spec - speech_spec)  # the STFT is linear
    else:
        mask = phase_sensitive_mask(speech_spec, mixture_spec)
    return frontend.istft(mask * mixture_spec, len(mixture)).numpy().astype(np.float32)
