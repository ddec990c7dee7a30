"""Permutation-invariant training (PIT) on SI-SDR, for separating speakers.

Two voices have no natural order: "speaker 1" of a mixture is whichever the data put first. PIT
(Yu et al., 2017) scores every assignment of estimates to references and trains on the best one,
per example. With a handful of sources the permutations are few (2 for two speakers), so they are
enumerated; the pairwise SI-SDR matrix is computed once and each permutation only sums entries.
"""

from __future__ import annotations

from itertools import permutations

import torch
from torch import nn

from sepgan.metrics import si_sdr


def pairwise_si_sdr(estimates: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """(batch, est, ref) SI-SDR in dB of every estimate against every reference, both (batch, sources, samples)."""
    if estimates.shape != references.shape:
        raise ValueError(f"estimates {tuple(estimates.shape)} and references {tuple(references.shape)} differ in shape")
    return si_sdr(estimates[:, :, None, :], references[:, None, :, :])


def best_permutation(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For (batch, est, ref) scores: the highest mean score and its permutation per example.

    Returns (mean score (batch,), permutation (batch, sources)) where `permutation[b, i]` is the
    reference matched to estimate i.
    """
    sources = scores.shape[-1]
    perms = torch.tensor(list(permutations(range(sources))), device=scores.device)  # (P, sources)
    idx = torch.arange(sources, device=scores.device)
    totals = scores[:, idx[None, :], perms].mean(-1)  # (batch, P)
    best, which = totals.max(dim=-1)
    return best, perms[which]


def pit_si_sdr(estimates: torch.Tensor, references: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example SI-SDR (dB, mean over sources) under the best permutation, and that permutation."""
    return best_permutation(pairwise_si_sdr(estimates, references))


def reorder(references: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """References (batch, sources, ...) put in the estimates' order: out[b, i] = references[b, permutation[b, i]]."""
    index = permutation.reshape(*permutation.shape, *([1] * (references.dim() - 2))).expand_as(references)
    return references.gather(1, index)


class PITLoss(nn.Module):
    """Negative SI-SDR under the best permutation, averaged over the batch (the training loss for speakers).

    `weights` mirrors `SeparationLoss` so configs and the stages treat both alike; the only reconstruction
    term is `si_sdr` (spectrogram terms would need the permutation first); `adversarial` and
    `feature_matching` weigh the adversarial stage's terms.
    """

    TERMS = ("si_sdr",)
    ADVERSARIAL_TERMS = ("adversarial", "feature_matching")  # for the adversarial stage, as in SeparationLoss

    def __init__(self, weights: dict[str, float] | None = None):
        super().__init__()
        weights = {"si_sdr": 1.0} if weights is None else dict(weights)
        self.adversarial_weights = {name: float(weights.pop(name, 0.0)) for name in self.ADVERSARIAL_TERMS}
        unknown = sorted(name for name, w in weights.items() if name not in self.TERMS and float(w) != 0.0)
        if unknown:
            raise ValueError(f"loss.weights: {unknown} not available with permutation-invariant training; "
                             f"known terms: {list(self.TERMS)}")
        self.weights = {name: float(w) for name, w in weights.items() if name in self.TERMS and float(w) != 0.0}
        if not self.weights:
            raise ValueError("loss.weights: si_sdr has weight 0, so nothing would be trained")

    def forward(self, estimates: torch.Tensor, references: torch.Tensor):
        """(total loss, {"si_sdr": loss term}, permutation) for (batch, sources, samples) waveforms."""
        score, permutation = pit_si_sdr(estimates, references)
        term = -score.mean()
        return self.weights["si_sdr"] * term, {"si_sdr": term}, permutation
