"""A callback the DDP tests add from the command line (`+callbacks.probe._target_=tests.ddp_probe.RankProbe`):
each rank writes what it trained on and what its weights ended as, so a test can compare the ranks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytorch_lightning as pl
import torch


def fingerprint(tensor: torch.Tensor) -> str:
    return hashlib.sha1(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


class RankProbe(pl.Callback):
    def __init__(self):
        self.batches: list[str] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: dict, batch_idx: int):
        self.batches += [fingerprint(example) for example in batch["mixture"]]

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        weights = torch.cat([p.detach().flatten() for p in pl_module.parameters()])
        record = {"rank": trainer.global_rank, "world_size": trainer.world_size, "examples": self.batches,
                  "weights": fingerprint(weights), "backend": getattr(trainer.strategy, "process_group_backend", None)}
        Path(trainer.default_root_dir, f"rank_{trainer.global_rank}.json").write_text(json.dumps(record))
