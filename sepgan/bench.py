"""`python -m sepgan.bench` (`make bench`): speed figures of the model presets on this machine.

Training throughput is examples per second of full optimisation steps (forward, loss, backward,
Adam) on 2-second 16 kHz mixtures in batches of 8. Shared machines vary from run to run, so
every figure is printed next to the others of the same run, and written as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from sepgan.config import build_separator, compose_config
from sepgan.losses import SeparationLoss
from sepgan.models import Separator

PRESETS = ("model_a", "model_b", "tfc_tdf", "small")


def training_throughput(model: Separator, batch: int = 8, seconds: float = 2.0, steps: int = 3) -> float:
    """Examples per second over `steps` optimisation steps, after one warm-up step."""
    sr = model.frontend.sample_rate
    speech, noise = torch.randn(batch, int(seconds * sr)) * 0.1, torch.randn(batch, int(seconds * sr)) * 0.1
    loss = SeparationLoss({"mse": 1.0})
    optimizer = torch.optim.Adam(model.parameters())
    model.train()

    def step():
        total, _ = loss(model(speech + noise), speech, noise, model.frontend)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per preset")
    parser.add_argument("--json", default="bench.json", help="where to write the figures")
    args = parser.parse_args(argv)

    results = {"threads": torch.get_num_threads(), "torch": torch.__version__, "models": {}}
    print(f"{'model':<10} {'params':>9} {'train ex/s':>11}")
    for name in args.presets:
        model = build_separator(compose_config([f"model={name}"]))
        params = sum(p.numel() for p in model.parameters())
        speed = training_throughput(model, steps=args.steps)
        results["models"][name] = {"params": params, "train_examples_per_s": speed}
        print(f"{name:<10} {params:>9,d} {speed:>11.2f}", flush=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"written: {args.json}")
    return results


if __name__ == "__main__":
    main()
