"""Two-speaker separation on held-out speakers: a checkpoint's PIT SI-SDRi beside the oracle IRM's.

    python experiments/two_speakers.py --checkpoint RUN/checkpoints/best-N.ckpt --root /work/shared/data \
        --split test --examples 200 --seconds 4 --out experiments/two_speakers/test.json [--per-example test.csv]

Mixtures come from `TwoSpeakerDataModule` with the training run's splits (same seed and fractions),
so the speakers of `val`/`test` were never heard in training. SI-SDRi of a voice is its estimate's
SI-SDR minus the mixture's SI-SDR against it; the model's estimates are matched to the voices by the
best permutation (PIT). The oracle IRM masks the mixture's STFT (the model's front-end) with
sqrt(|S_k|^2 / sum_j |S_j|^2) for each voice k: an upper reference for a magnitude mask.
`--per-example` writes each mixture's figures, so that two checkpoints scored on the same mixtures
can be compared pair by pair.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch

from sepgan.audio import FrontEnd
from sepgan.data.two_speakers import TwoSpeakerDataModule
from sepgan.metrics import si_sdr
from sepgan.models import load_separator
from sepgan.pit import pit_si_sdr


def oracle_irm(mixture: torch.Tensor, sources: torch.Tensor, frontend: FrontEnd) -> torch.Tensor:
    """Voices (batch, sources, samples) by ideal ratio masks on the mixture's STFT."""
    mixture_spec, source_specs = frontend.stft(mixture), frontend.stft(sources)
    power = source_specs.abs().pow(2)
    masks = (power / power.sum(dim=1, keepdim=True).clamp_min(1e-20)).sqrt()
    return frontend.istft(masks * mixture_spec[:, None], mixture.shape[-1])


def scores(estimates: torch.Tensor, sources: torch.Tensor, mixture: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-example PIT SI-SDR and SI-SDRi (dB, mean over voices)."""
    best, _ = pit_si_sdr(estimates, sources)
    reference = si_sdr(mixture[:, None].expand_as(sources), sources).mean(-1)
    return best.numpy(), (best - reference).numpy()


def evaluate(checkpoint: str, root: str | None, split: str, examples: int, seconds: float, seed: int,
             val_fraction: float, test_fraction: float, batch_size: int = 8) -> tuple[dict, dict[str, list]]:
    """The mean figures and the per-example ones (each a list over the split's mixtures, in order)."""
    model = load_separator(checkpoint)
    fe = model.frontend
    data = TwoSpeakerDataModule(sample_rate=fe.sample_rate, root=root, segment_seconds=seconds, seed=seed,
                                val_fraction=val_fraction, test_fraction=test_fraction, val_examples=examples,
                                test_examples=examples, train_examples=1, num_workers=0, sources=model.sources)
    data.setup()
    dataset = data.datasets[split]
    rows = {name: [] for name in ("mixture_si_sdr", "model_si_sdr", "model_si_sdri", "irm_si_sdr", "irm_si_sdri")}
    for start in range(0, len(dataset), batch_size):
        batch = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        mixture = torch.stack([b["mixture"] for b in batch]).double()
        sources = torch.stack([b["sources"] for b in batch]).double()
        estimates = model.separate(mixture.float()).double()
        s, si = scores(estimates, sources, mixture)
        irm_s, irm_si = scores(oracle_irm(mixture, sources, fe), sources, mixture)
        rows["mixture_si_sdr"] += list(s - si)
        rows["model_si_sdr"] += list(s)
        rows["model_si_sdri"] += list(si)
        rows["irm_si_sdr"] += list(irm_s)
        rows["irm_si_sdri"] += list(irm_si)
    summary = dict(checkpoint=str(checkpoint), split=split, examples=len(dataset), seconds=seconds,
                   speakers=len(dataset.speakers), sample_rate=fe.sample_rate,
                   corpus=root or "synthetic", **{k: round(float(np.mean(v)), 2) for k, v in rows.items()})
    return summary, rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--root", help="folder with speech/librispeech_train-clean-100 (default: synthetic voices)")
    p.add_argument("--split", default="test", choices=["val", "test"])
    p.add_argument("--examples", type=int, default=200)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--seed", type=int, default=0, help="data.seed of the training run (fixes the splits)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--out", help="write the figures as JSON here too")
    p.add_argument("--per-example", help="write each mixture's figures as CSV here")
    args = p.parse_args(argv)
    torch.set_grad_enabled(False)
    result, rows = evaluate(args.checkpoint, args.root, args.split, args.examples, args.seconds, args.seed,
                      args.val_fraction, args.test_fraction)
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if args.per_example:
        Path(args.per_example).parent.mkdir(parents=True, exist_ok=True)
        with open(args.per_example, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["example", *rows])
            writer.writerows([i, *(f"{float(v):.4f}" for v in values)] for i, values in enumerate(zip(*rows.values())))


if __name__ == "__main__":
    main()
