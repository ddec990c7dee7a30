"""Stage 2: discriminator pretraining on real speech versus a frozen generator's estimates."""

from __future__ import annotations

from typing import Callable

import pytorch_lightning as pl
import torch

from sepgan.losses import AdversarialObjective, adversarial_objective
from sepgan.models import Discriminator, Separator
from sepgan.training.systems.finite import FiniteTraining


def log_discrimination(module: pl.LightningModule, stage: str, objective: AdversarialObjective,
                       real_scores: torch.Tensor, fake_scores: torch.Tensor, loss: torch.Tensor) -> None:
    """Loss and accuracy of the discriminator on real and on estimated speech, under `<stage>/disc/`."""
    acc_real = objective.says_real(real_scores).float().mean()
    acc_fake = (~objective.says_real(fake_scores)).float().mean()
    on_step = stage == "train"
    values = {"loss": loss, "accuracy_real": acc_real, "accuracy_estimated": acc_fake,
              "accuracy": (acc_real + acc_fake) / 2}
    for name, value in values.items():
        module.log(f"{stage}/disc/{name}", value, on_step=on_step, on_epoch=True, sync_dist=not on_step,
                   batch_size=real_scores.shape[0], prog_bar=name == "accuracy")


class DiscriminatorSystem(FiniteTraining, pl.LightningModule):
    """Trains `discriminator` to tell clean speech features from the frozen `separator`'s estimates.

    A NaN or an infinity in its loss, its gradients or a validation stops the stage (`FiniteTraining`).
    """

    stage = "discriminator"

    def __init__(self, separator: Separator, discriminator: Discriminator, objective: str, optimizer: Callable):
        super().__init__()
        self.separator = separator.requires_grad_(False)
        self.discriminator = discriminator
        self.objective = adversarial_objective(objective)
        self.optimizer_factory = optimizer

    def train(self, mode: bool = True):
        # The generator stays in eval mode: batch-norm statistics must not drift while it is frozen.
        super().train(mode)
        self.separator.eval()
        return self

    def networks(self) -> dict:
        return {"discriminator": (0, self.discriminator)}

    def judged(self, batch: dict, sep) -> tuple[torch.Tensor, torch.Tensor]:
        """(real, estimated) features the discriminator judges: clean speech and the separator's speech."""
        return self.separator.frontend.encode(batch["speech"] / sep.scale), sep.speech_features

    def _scores(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            real, fake = self.judged(batch, self.separator(batch["mixture"]))
        real_scores = self.discriminator(real)
        fake_scores = self.discriminator(fake)
        return self.objective.discriminator(real_scores, fake_scores), real_scores, fake_scores

    def loss_terms(self, network: str, batch: dict) -> dict[str, torch.Tensor]:
        return {self.objective.name: self._scores(batch)[0]}

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        loss, real_scores, fake_scores = self._scores(batch)
        if stage == "train":
            self.watch("discriminator", {self.objective.name: loss}, batch)
        else:
            self.watch_validation({f"disc/{self.objective.name}": loss})
        log_discrimination(self, stage, self.objective, real_scores, fake_scores, loss)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.check_validation()

    def configure_optimizers(self):
        return self.optimizer_factory(params=self.discriminator.parameters())

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["separator_config"] = self.separator.config
        checkpoint["discriminator_config"] = self.discriminator.config
