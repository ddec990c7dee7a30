"""Stage 1: supervised pretraining of the generator (the separator) with any weighted loss."""

from __future__ import annotations

from typing import Callable

import pytorch_lightning as pl
import torch
from torchmetrics import MeanMetric

from sepgan.losses import SeparationLoss
from sepgan.metrics import si_sdr
from sepgan.models import Separation, Separator
from sepgan.training.systems.finite import FiniteTraining


class GeneratorSystem(FiniteTraining, pl.LightningModule):
    """Trains a `Separator` on batches {mixture, speech, noise}; validates by SI-SDR and SI-SDRi.

    `optimizer` is a factory taking the parameters (Hydra's `_partial_: true`), so Adam, SGD or
    anything else comes from config; `scheduler` likewise takes the optimizer, or is None.
    A NaN or an infinity in a loss term, a gradient or a validation figure stops the stage
    (`FiniteTraining`).
    """

    stage = "generator"

    def __init__(self, separator: Separator, loss: SeparationLoss, optimizer: Callable, scheduler: Callable | None = None):
        super().__init__()
        self.separator = separator
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.val_si_sdr = MeanMetric()
        self.val_si_sdri = MeanMetric()
        self.last_validated_step = -1

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        return self.separator(mixture).speech

    def networks(self) -> dict:
        return {"generator": (0, self.separator)}

    def loss_terms(self, network: str, batch: dict) -> dict[str, torch.Tensor]:
        return self.loss(self.separator(batch["mixture"]), batch["speech"], batch["noise"], self.separator.frontend)[1]

    def _step(self, batch: dict, stage: str):
        sep = self.separator(batch["mixture"])
        total, terms = self.loss(sep, batch["speech"], batch["noise"], self.separator.frontend)
        self._check_and_log(stage, total, terms, batch)
        return sep, total

    def _check_and_log(self, stage: str, total: torch.Tensor, terms: dict[str, torch.Tensor], batch: dict) -> None:
        """Hand the loss terms to the non-finite watch and log them (per step in training, per epoch in validation)."""
        if stage == "train":
            self.watch("generator", terms, batch)
        else:
            self.watch_validation({f"loss/{name}": value for name, value in terms.items()})
        on_step = stage == "train"
        batch_size = batch["mixture"].shape[0]
        self.log(f"{stage}/loss", total, prog_bar=True, on_step=on_step, on_epoch=True, batch_size=batch_size,
                 sync_dist=not on_step)
        for name, value in terms.items():
            self.log(f"{stage}/loss/{name}", value, on_step=on_step, on_epoch=True, batch_size=batch_size,
                     sync_dist=not on_step)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[1]

    def validation_step(self, batch: dict, batch_idx: int) -> Separation:
        """Logs the validation figures; returns the separation so that subclasses score it too."""
        sep, _ = self._step(batch, "val")
        estimate = si_sdr(sep.speech, batch["speech"])
        self.watch_validation({"si_sdr": estimate})
        self.val_si_sdr.update(estimate)
        self.val_si_sdri.update(estimate - si_sdr(batch["mixture"], batch["speech"]))
        self.log("val/si_sdr", self.val_si_sdr, on_epoch=True)
        self.log("val/si_sdri", self.val_si_sdri, on_epoch=True, prog_bar=True)
        return sep

    def on_validation_epoch_end(self) -> None:
        self.check_validation()  # before the checkpoint callbacks see this validation's figures
        if not self.trainer.sanity_checking:
            self.last_validated_step = self.global_step

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.separator.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer),
                                                         "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Lets `load_separator` rebuild the model from the checkpoint alone, without Hydra.
        checkpoint["separator_config"] = self.separator.config
