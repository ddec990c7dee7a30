"""Separation quality measures, independent of Lightning and Hydra (usable from a notebook).

`si_sdr` works on torch tensors of any batch shape (training logs it); the others score one
speech estimate against its clean reference as numpy arrays, through well-kept reference
implementations: mir_eval (BSS-eval SDR/SIR/SAR), pesq (ITU-T P.862), pystoi (STOI, ESTOI).
A measure that is undefined for a pair of signals (silent, too short) is NaN, with a
`MetricWarning` that says why, so one odd file never stops an evaluation.

Those libraries are imported inside the functions that use them: mir_eval alone takes seconds to
import (scipy.stats), and training imports this module only for `si_sdr`.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from sepgan.audio import resample

METRICS = ("si_sdr", "si_sdri", "sdr", "sir", "sar", "pesq", "stoi", "estoi")


class MetricWarning(UserWarning):
    """A measure could not be computed for one signal pair (the value is NaN)."""


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant signal-to-distortion ratio in dB over the last axis (Le Roux et al., 2019).

    Both signals are made zero-mean; the reference is scaled by the projection of the estimate
    onto it, so a louder or quieter copy of the reference scores the same.
    """
    estimate = estimate - estimate.mean(dim=-1, keepdim=True)
    reference = reference - reference.mean(dim=-1, keepdim=True)
    alpha = (estimate * reference).sum(-1, keepdim=True) / (reference.pow(2).sum(-1, keepdim=True) + eps)
    target = alpha * reference
    residual = estimate - target
    return 10 * torch.log10((target.pow(2).sum(-1) + eps) / (residual.pow(2).sum(-1) + eps))


def si_sdr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    """`si_sdr` of two 1-D numpy signals, in float64."""
    return float(si_sdr(torch.from_numpy(np.asarray(estimate, np.float64)),
                        torch.from_numpy(np.asarray(reference, np.float64))))


def _is_silent(x: np.ndarray) -> bool:
    return not np.any(x)


def bss_eval(estimate: np.ndarray, speech: np.ndarray, noise: np.ndarray | None = None) -> dict[str, float]:
    """SDR, SIR and SAR (dB) of a speech estimate by mir_eval's `bss_eval_sources` (512-tap filter).

    With the noise known it is the second reference source, so SIR measures the noise left in the
    estimate; without it there is no interfering source and SIR is infinite. With
    `compute_permutation=False` the speech figures depend only on the speech estimate and the
    references; mir_eval still wants one estimate per reference, so the speech estimate fills the
    noise slot too (the noise's own figures are discarded).
    """
    nan = {"sdr": float("nan"), "sir": float("nan"), "sar": float("nan")}
    if _is_silent(estimate) or _is_silent(speech) or (noise is not None and _is_silent(noise)):
        warnings.warn("SDR/SIR/SAR undefined: the estimate or a reference is all zeros", MetricWarning, stacklevel=2)
        return nan
    references = np.stack([speech, noise]) if noise is not None else speech[None]
    estimates = np.stack([estimate] * len(references))
    from mir_eval.separation import bss_eval_sources

    with warnings.catch_warnings():
        # mir_eval 0.8 flags its separation module as deprecated (pinned below 0.9 in pyproject).
        warnings.simplefilter("ignore", FutureWarning)
        sdr, sir, sar, _ = bss_eval_sources(references.astype(np.float64), estimates.astype(np.float64),
                                            compute_permutation=False)
    return {"sdr": float(sdr[0]), "sir": float(sir[0]), "sar": float(sar[0])}


def pesq_mode(sample_rate: int) -> str:
    """Wide band (P.862.2, scored at 16 kHz) when the audio reaches 8 kHz, else narrow band at 8 kHz."""
    return "wb" if sample_rate >= 16000 else "nb"


def pesq(estimate: np.ndarray, speech: np.ndarray, sample_rate: int, mode: str | None = None) -> float:
    """PESQ (MOS-LQO, about 1 to 4.6) of a speech estimate; audio is resampled to 16 kHz (wb) or 8 kHz (nb)."""
    from pesq import PesqError, pesq as pesq_score

    mode = mode or pesq_mode(sample_rate)
    rate = 16000 if mode == "wb" else 8000
    reference, degraded = (resample(np.asarray(x, np.float32), sample_rate, rate) for x in (speech, estimate))
    try:
        return float(pesq_score(rate, reference, degraded, mode))
    except PesqError as err:  # silent reference ("no utterances") or too short a signal
        warnings.warn(f"PESQ undefined: {type(err).__name__} ({err})", MetricWarning, stacklevel=2)
        return float("nan")


def stoi(estimate: np.ndarray, speech: np.ndarray, sample_rate: int, extended: bool = False) -> float:
    """STOI (0 to 1), or ESTOI with `extended=True`, of a speech estimate (pystoi resamples to 10 kHz)."""
    from pystoi import stoi as stoi_score

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        value = float(stoi_score(speech, estimate, sample_rate, extended=extended))
    # pystoi returns 1e-5 with a warning when fewer than 30 frames (about 0.4 s) of speech remain
    # after dropping silent frames; that is no score, so say so instead.
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        name = "ESTOI" if extended else "STOI"
        warnings.warn(f"{name} undefined: less than about 0.4 s of non-silent speech", MetricWarning, stacklevel=2)
        return float("nan")
    return value


def speech_scores(estimate: np.ndarray, speech: np.ndarray, sample_rate: int, noise: np.ndarray | None = None,
                  input_si_sdr: float | None = None, metrics: tuple[str, ...] = METRICS) -> dict[str, float]:
    """Every requested measure of one speech estimate against the clean `speech` (1-D, equal lengths).

    `input_si_sdr` (the noisy input's SI-SDR) turns SI-SDR into SI-SDRi, the improvement.
    """
    if estimate.shape != speech.shape or estimate.ndim != 1:
        raise ValueError(f"estimate and speech must be 1-D and of equal length, got {estimate.shape} and {speech.shape}")
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {list(METRICS)}")
    scores: dict[str, float] = {}
    if "si_sdr" in metrics or "si_sdri" in metrics:
        value = si_sdr_db(estimate, speech)
        if "si_sdr" in metrics:
            scores["si_sdr"] = value
        if "si_sdri" in metrics:
            scores["si_sdri"] = value - input_si_sdr if input_si_sdr is not None else float("nan")
    if {"sdr", "sir", "sar"} & set(metrics):
        scores.update({k: v for k, v in bss_eval(estimate, speech, noise).items() if k in metrics})
    if "pesq" in metrics:
        scores["pesq"] = pesq(estimate, speech, sample_rate)
    if "stoi" in metrics:
        scores["stoi"] = stoi(estimate, speech, sample_rate)
    if "estoi" in metrics:
        scores["estoi"] = stoi(estimate, speech, sample_rate, extended=True)
    return {name: scores[name] for name in METRICS if name in scores}
