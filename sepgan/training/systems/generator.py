"""Stage 1: supervised pretraining of the generator (the separator) with any weighted loss."""

from __future__ import annotations

import logging
from typing import Callable

import pytorch_lightning as pl
import torch
from torchmetrics import MeanMetric

from sepgan.losses import SeparationLoss
from sepgan.metrics import si_sdr
from sepgan.models import Separation, Separator
from sepgan.models.noise_classifier import multi_hot, pooled_probabilities
from sepgan.training.systems.finite import FiniteTraining

log = logging.getLogger("sepgan")


class GeneratorSystem(FiniteTraining, pl.LightningModule):
    """Trains a `Separator` on batches {mixture, speech, noise}; validates by SI-SDR and SI-SDRi.

    `optimizer` is a factory taking the parameters (Hydra's `_partial_: true`), so Adam, SGD or
    anything else comes from config; `scheduler` likewise takes the optimizer, or is None.
    A NaN or an infinity in a loss term, a gradient or a validation figure stops the stage
    (`FiniteTraining`).
    """

    stage = "generator"

    def __init__(self, separator: Separator, loss: SeparationLoss, optimizer: Callable, scheduler: Callable | None = None,
                 freeze_separator: bool = False):
        super().__init__()
        classifier = getattr(separator, "noise_classifier", None)  # a separator of voices has none
        if freeze_separator and classifier is None:
            raise ValueError("freeze_separator=true trains only the noise classifier, and this model has none "
                             "(set loss.weights.noise_class > 0)")
        self.separator = separator
        # Only the noise classifier learns; the separation stays exactly as loaded (weights and
        # batch-norm statistics), e.g. to add naming to a trained model.
        self.freeze_separator = freeze_separator
        if freeze_separator:
            for name, parameter in separator.named_parameters():
                parameter.requires_grad_(name.startswith("noise_classifier."))
        # A classifier this run does not train stays as it is (its batch-norm statistics too), but the
        # separator it listens to changes under it.
        self.stale_classifier = classifier is not None and "noise_class" not in getattr(loss, "weights", {})
        if self.stale_classifier:
            log.warning("the model's noise classifier is not trained in this run (loss.weights.noise_class=0) "
                        "while its separator is: retrain it afterwards (loss.weights.noise_class=1 "
                        "freeze_separator=true) or its reports may not fit the new separator")
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
        return self._loss(self.separator(batch["mixture"]), batch)[1]

    def _loss(self, sep: Separation, batch: dict):
        return self.loss(sep, batch["speech"], batch["noise"], self.separator.frontend, self.noise_targets(batch))

    def noise_targets(self, batch: dict) -> torch.Tensor | None:
        """The batch's noise classes as multi-hot targets of the model's noise classifier; None without one."""
        classifier = getattr(self.separator, "noise_classifier", None)
        if classifier is None or "noise_class" not in batch:
            return None
        return multi_hot(batch["noise_class"], batch.get("noise_class2"), len(classifier.classes))

    def _step(self, batch: dict, stage: str):
        sep = self.separator(batch["mixture"])
        total, terms = self._loss(sep, batch)
        self._check_and_log(stage, total, terms, batch)
        if stage == "val" and sep.noise_logits is not None:
            self._log_noise_accuracy(sep.noise_logits, batch)
        return sep, total

    def _log_noise_accuracy(self, logits: torch.Tensor, batch: dict) -> None:
        """Validation accuracy of the classifier: its most probable class is the mixture's (first) noise class."""
        predicted = pooled_probabilities(logits).argmax(-1)
        correct = (predicted == batch["noise_class"].to(predicted.device)).float().mean()
        self.log("val/noise_accuracy", correct, on_epoch=True, batch_size=logits.shape[0])

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
        if self.freeze_separator:  # each step: Lightning sets every module's mode itself around validation
            self.separator.eval()
            self.separator.noise_classifier.train()
        elif self.stale_classifier:
            self.separator.noise_classifier.eval()
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
        optimizer = self.optimizer_factory(params=[p for p in self.separator.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer),
                                                         "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Lets `load_separator` rebuild the model from the checkpoint alone, without Hydra.
        checkpoint["separator_config"] = self.separator.config
