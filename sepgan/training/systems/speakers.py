"""The stages for several speakers: a `SpeakerSeparator` trained by permutation-invariant SI-SDR, then
a discriminator that judges each separated voice against the true voices, then both together."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from sepgan.metrics import si_sdr
from sepgan.models import SpeakerSeparator
from sepgan.pit import pit_si_sdr, reorder
from sepgan.plots import plt, spectrogram_figure
from sepgan.training.systems.adversarial import AdversarialSystem
from sepgan.training.systems.callbacks import ValidationExamples
from sepgan.training.systems.discriminator import DiscriminatorSystem
from sepgan.training.systems.generator import GeneratorSystem


class SpeakersSystem(GeneratorSystem):
    """Trains a `SpeakerSeparator` with a `PITLoss` on batches {mixture, sources}; validates by PIT SI-SDR
    of the voices and its improvement.

    SI-SDRi of a voice is its SI-SDR minus the mixture's SI-SDR against that voice, averaged over voices,
    so the figures read like the speech-versus-noise ones (`val/si_sdri` drives checkpointing as there).
    """

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        return self.separator(mixture).sources

    def loss_terms(self, network: str, batch: dict) -> dict[str, torch.Tensor]:
        return self.loss(self.separator(batch["mixture"]).sources, batch["sources"])[1]

    def _step(self, batch: dict, stage: str):
        sep = self.separator(batch["mixture"])
        total, terms, _ = self.loss(sep.sources, batch["sources"])
        self._check_and_log(stage, total, terms, batch)
        return sep, total

    def validation_step(self, batch: dict, batch_idx: int):
        sep, _ = self._step(batch, "val")
        estimate, _ = pit_si_sdr(sep.sources, batch["sources"])
        self.watch_validation({"si_sdr": estimate})
        mixture = batch["mixture"][:, None].expand_as(batch["sources"])
        self.val_si_sdr.update(estimate)
        self.val_si_sdri.update(estimate - si_sdr(mixture, batch["sources"]).mean(-1))
        self.log("val/si_sdr", self.val_si_sdr, on_epoch=True)
        self.log("val/si_sdri", self.val_si_sdri, on_epoch=True, prog_bar=True)
        return sep


def voice_features(separator: SpeakerSeparator, sources: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Features (batch*sources, channels, freq, frames) of the true voices, normalised as the mixture was."""
    return separator.frontend.encode(sources.flatten(0, 1) / scale.repeat_interleave(sources.shape[1], dim=0))


class SpeakerDiscriminatorSystem(DiscriminatorSystem):
    """The discriminator judges every voice on its own: true voices are real, separated voices estimated.

    No permutation is needed: real and estimated voices are judged as two sets, not as pairs.
    """

    def judged(self, batch: dict, sep) -> tuple[torch.Tensor, torch.Tensor]:
        return voice_features(self.separator, batch["sources"], sep.scale), sep.source_features.flatten(0, 1)


class SpeakerAdversarialSystem(AdversarialSystem, SpeakersSystem):
    """Adversarial fine-tuning for voices: PIT SI-SDR plus the adversarial terms on each separated voice."""

    judged = SpeakerDiscriminatorSystem.judged

    def reconstruction(self, batch: dict, sep) -> tuple[torch.Tensor, dict]:
        total, terms, _ = self.loss(sep.sources, batch["sources"])
        return total, terms

    loss_terms = AdversarialSystem.loss_terms


class SpeakerValidationExamples(ValidationExamples):
    """`ValidationExamples` for voices: the mixture, each voice and its estimate (matched by PIT)."""

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run or not trainer.is_global_zero or self.count <= 0:
            return
        dataset = trainer.datamodule.datasets["val"]
        frontend = pl_module.separator.frontend
        batch = [dataset[i] for i in range(min(self.count, len(dataset)))]
        mixture = torch.stack([b["mixture"] for b in batch]).to(pl_module.device)
        sources = torch.stack([b["sources"] for b in batch])
        estimates = pl_module.separator.separate(mixture).cpu()
        _, perm = pit_si_sdr(estimates, sources)
        sources = reorder(sources, perm)  # voice k of the pictures is the one estimate k matched
        for i in range(len(batch)):
            audio = {"mixture": mixture[i].cpu()}
            for k in range(sources.shape[1]):
                audio[f"speaker{k + 1}"] = sources[i, k]
                audio[f"estimate{k + 1}"] = estimates[i, k]
            fig = spectrogram_figure(audio, frontend)
            for logger in trainer.loggers:
                self._send(logger, f"val_example_{i}", audio, fig, frontend.sample_rate, trainer.global_step)
            plt.close(fig)
