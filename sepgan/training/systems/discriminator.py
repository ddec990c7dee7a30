"""Stage 2: discriminator pretraining on real speech versus a frozen generator's estimates."""

from __future__ import annotations

from typing import Callable

import pytorch_lightning as pl
import torch

from sepgan.losses import AdversarialObjective, adversarial_objective
from sepgan.models import Discriminator, Separator


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


class DiscriminatorSystem(pl.LightningModule):
    """Trains `discriminator` to tell clean speech features from the frozen `separator`'s estimates."""

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

    def judged(self, batch: dict, sep) -> tuple[torch.Tensor, torch.Tensor]:
        """(real, estimated) features the discriminator judges: clean speech and the separator's speech."""
        return self.separator.frontend.encode(batch["speech"] / sep.scale), sep.speech_features

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        with torch.no_grad():
            real, fake = self.judged(batch, self.separator(batch["mixture"]))
        real_scores = self.discriminator(real)
        fake_scores = self.discriminator(fake)
        loss = self.objective.discriminator(real_scores, fake_scores)
        log_discrimination(self, stage, self.objective, real_scores, fake_scores, loss)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self):
        return self.optimizer_factory(params=self.discriminator.parameters())

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["separator_config"] = self.separator.config
        checkpoint["discriminator_config"] = self.discriminator.config
