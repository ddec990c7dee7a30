"""Separation quality measures, independent of Lightning (usable on any tensors)."""

from __future__ import annotations

import torch


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
