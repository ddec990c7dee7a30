"""Stage 3: adversarial fine-tuning of the generator, keeping the reconstruction terms.

The study's adversarial stage dropped the reconstruction loss and its test reconstruction error
rose from 4.03 to 165.5. Here the generator's loss is the configured reconstruction terms plus
the adversarial (and optionally feature-matching) terms, and `AdversarialGuard` watches
validation SI-SDRi against the pretrained generator's.
"""

from __future__ import annotations

import copy
import logging
from typing import Callable

import pytorch_lightning as pl
import torch

from sepgan.losses import SeparationLoss, adversarial_objective, feature_matching
from sepgan.models import Discriminator, Separator
from sepgan.training.systems.discriminator import DiscriminatorSystem, log_discrimination
from sepgan.training.systems.generator import GeneratorSystem

log = logging.getLogger(__name__)


class AdversarialSystem(GeneratorSystem):
    """Manual optimisation of two players: `disc_steps` discriminator updates, then one generator update."""

    stage = "adversarial"

    def __init__(self, separator: Separator, loss: SeparationLoss, optimizer: Callable, discriminator: Discriminator,
                 objective: str, discriminator_optimizer: Callable, disc_steps: int = 1,
                 gradient_clip: float | None = 5.0):
        super().__init__(separator, loss, optimizer)
        if disc_steps < 1:
            raise ValueError(f"gan.disc_steps must be >= 1, got {disc_steps}")
        self.automatic_optimization = False
        self.discriminator = discriminator
        self.objective = adversarial_objective(objective)
        self.discriminator_optimizer_factory = discriminator_optimizer
        self.disc_steps = disc_steps
        self.gradient_clip = gradient_clip

    def configure_optimizers(self):
        return (self.optimizer_factory(params=self.separator.parameters()),
                self.discriminator_optimizer_factory(params=self.discriminator.parameters()))

    def networks(self) -> dict:
        return {"generator": (0, self.separator), "discriminator": (1, self.discriminator)}

    judged = DiscriminatorSystem.judged

    def reconstruction(self, batch: dict, sep) -> tuple[torch.Tensor, dict]:
        """The generator's reconstruction loss and its terms."""
        return self._loss(sep, batch)

    def _discriminator_terms(self, real: torch.Tensor, fake: torch.Tensor):
        """The discriminator's loss as a one-term dict, and its scores on real and estimated features."""
        real_scores = self.discriminator(real)
        fake_scores = self.discriminator(fake.detach())
        return {self.objective.name: self.objective.discriminator(real_scores, fake_scores)}, real_scores, fake_scores

    def _generator_terms(self, batch: dict, sep, real: torch.Tensor, fake: torch.Tensor):
        """The generator's loss: the reconstruction terms plus the adversarial (and feature-matching) ones."""
        reconstruction, terms = self.reconstruction(batch, sep)
        weights = self.loss.adversarial_weights
        fake_scores, fake_activations = self.discriminator(fake, return_features=True)
        terms["adversarial"] = self.objective.generator(fake_scores)
        g_loss = reconstruction + weights["adversarial"] * terms["adversarial"]
        if weights["feature_matching"]:
            _, real_activations = self.discriminator(real, return_features=True)
            terms["feature_matching"] = feature_matching(real_activations, fake_activations)
            g_loss = g_loss + weights["feature_matching"] * terms["feature_matching"]
        return g_loss, terms

    def loss_terms(self, network: str, batch: dict) -> dict[str, torch.Tensor]:
        sep = self.separator(batch["mixture"])
        real, fake = self.judged(batch, sep)
        if network == "discriminator":
            return self._discriminator_terms(real, fake)[0]
        return self._generator_terms(batch, sep, real, fake)[1]

    def _update(self, optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()  # runs on_before_optimizer_step: the finiteness check, then the clipping

    def on_before_optimizer_step(self, optimizer) -> None:
        super().on_before_optimizer_step(optimizer)
        # Clipped here rather than before optimizer.step(): under fp16 loss scaling the gradients are unscaled
        # only inside the step, just before this hook, so clipping earlier would clip scaled gradients.
        if self.gradient_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip, gradient_clip_algorithm="norm")

    def training_step(self, batch: dict, batch_idx: int) -> None:
        g_opt, d_opt = self.optimizers()
        sep = self.separator(batch["mixture"])
        real, fake = self.judged(batch, sep)

        self.discriminator.requires_grad_(True)
        for _ in range(self.disc_steps):
            d_terms, real_scores, fake_scores = self._discriminator_terms(real, fake)
            d_loss = d_terms[self.objective.name]
            self.watch("discriminator", d_terms, batch)
            self._update(d_opt, d_loss)
        log_discrimination(self, "train", self.objective, real_scores, fake_scores, d_loss)

        self.discriminator.requires_grad_(False)  # the generator update leaves the discriminator alone
        g_loss, terms = self._generator_terms(batch, sep, real, fake)
        self.watch("generator", terms, batch)
        self._update(g_opt, g_loss)

        size = batch["mixture"].shape[0]
        self.log("train/loss", g_loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=size)
        for name, value in terms.items():
            self.log(f"train/loss/{name}", value, on_step=True, on_epoch=True, batch_size=size)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        sep = super().validation_step(batch, batch_idx)
        with torch.no_grad():
            real, fake = self.judged(batch, sep)
            real_scores, fake_scores = self.discriminator(real), self.discriminator(fake)
            loss = self.objective.discriminator(real_scores, fake_scores)
        self.watch_validation({f"disc/{self.objective.name}": loss})
        log_discrimination(self, "val", self.objective, real_scores, fake_scores, loss)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["discriminator_config"] = self.discriminator.config


class AdversarialGuard(pl.Callback):
    """Compares validation SI-SDRi with the pretrained generator's (`baseline`) after every validation.

    A validation more than `tolerance_db` below the baseline `patience` times in a row fires the
    guard: `warn` only logs it, `stop` ends the stage, `rollback` ends it and restores the best
    weights seen (the pretrained ones if nothing beat them). Every decision is logged.
    """

    def __init__(self, baseline: float, action: str = "rollback", tolerance_db: float = 0.1, patience: int = 2):
        if action not in ("warn", "stop", "rollback"):
            raise ValueError(f"gan.guard.action must be warn, stop or rollback, got '{action}'")
        self.baseline, self.action = baseline, action
        self.tolerance_db, self.patience = tolerance_db, patience
        self.best_score = baseline
        self.best_state: dict | None = None
        self.strikes = 0
        self.fired = False
        self.messages: list[str] = []

    def _say(self, message: str) -> None:
        log.warning(message)
        self.messages.append(message)

    # Its state travels in the checkpoints, so a resumed stage keeps the best weights, strikes and decisions.
    def state_dict(self) -> dict:
        return {"best_score": self.best_score, "best_state": self.best_state, "strikes": self.strikes,
                "fired": self.fired, "messages": self.messages}

    def load_state_dict(self, state_dict: dict) -> None:
        self.__dict__.update(state_dict)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.best_state is None:  # else restored from the checkpoint the stage resumes from
            self.best_state = copy.deepcopy(pl_module.state_dict())

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.fired and self.action != "warn":  # it fired before the stage was interrupted
            trainer.should_stop = True

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or "val/si_sdri" not in trainer.callback_metrics:
            return
        score = float(trainer.callback_metrics["val/si_sdri"])
        if score > self.best_score:
            self.best_score, self.best_state = score, copy.deepcopy(pl_module.state_dict())
        if score < self.baseline - self.tolerance_db:
            self.strikes += 1
            self._say(f"adversarial stage, step {trainer.global_step}: validation SI-SDRi {score:.2f} dB is below the "
                      f"pretrained generator's {self.baseline:.2f} dB ({self.strikes}/{self.patience})")
            if self.strikes >= self.patience and self.action != "warn":
                self.fired = True
                trainer.should_stop = True
                self._say(f"guard fired ({self.action}): stopping the adversarial stage at step {trainer.global_step}")
        else:
            self.strikes = 0

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.fired and self.action == "rollback":
            pl_module.load_state_dict(self.best_state)
            pl_module.last_validated_step = -1  # the restored weights are validated again before hand-on
            self._say(f"rolled back to the best weights seen: validation SI-SDRi {self.best_score:.2f} dB"
                      + (" (the pretrained generator)" if self.best_score == self.baseline else ""))
