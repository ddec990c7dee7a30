"""Callbacks that send listenable and visible validation examples to whatever logger is in use."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

from sepgan.audio import save_audio
from sepgan.plots import figure_to_array, plt, spectrogram_figure


class ValidationExamples(pl.Callback):
    """After every validation epoch: audio (mixture, target, estimate) and a spectrogram picture of a few examples.

    W&B and TensorBoard get them as media; any other logger (CSV) gets wav and png files in
    `<log dir>/examples/step_<N>/`.
    """

    def __init__(self, count: int = 2):
        self.count = count

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run or not trainer.is_global_zero or self.count <= 0:
            return
        dataset = trainer.datamodule.datasets["val"]
        separator = pl_module.separator
        frontend = separator.frontend
        batch = [dataset[i] for i in range(min(self.count, len(dataset)))]
        mixture = torch.stack([b["mixture"] for b in batch]).to(pl_module.device)
        estimate = separator.separate(mixture).cpu()
        step = trainer.global_step
        for i, example in enumerate(batch):
            audio = {"mixture": example["mixture"], "speech": example["speech"], "estimate": estimate[i]}
            fig = spectrogram_figure(audio, frontend)
            for logger in trainer.loggers:
                self._send(logger, f"val_example_{i}", audio, fig, frontend.sample_rate, step)
            plt.close(fig)

    def _send(self, logger, key: str, audio: dict, fig, sample_rate: int, step: int) -> None:
        if isinstance(logger, WandbLogger):
            logger.log_audio(key=f"{key}/audio", audios=[a.numpy() for a in audio.values()], step=step,
                             sample_rate=[sample_rate] * len(audio), caption=list(audio))
            logger.log_image(key=f"{key}/spectrogram", images=[figure_to_array(fig)], step=step)
        elif isinstance(logger, TensorBoardLogger):
            for name, wav in audio.items():
                logger.experiment.add_audio(f"{key}/{name}", wav[None], step, sample_rate)
            logger.experiment.add_figure(f"{key}/spectrogram", fig, step, close=False)
        elif logger.log_dir:  # file-based loggers (CSV); loggers without a folder get nothing
            folder = Path(logger.log_dir) / "examples" / f"step_{step:07d}"
            for name, wav in audio.items():
                save_audio(folder / f"{key}_{name}.wav", wav, sample_rate)
            fig.savefig(folder / f"{key}_spectrogram.png", dpi=80)


class ValidateOnLastStep(pl.Callback):
    """Validate (and so checkpoint) at `trainer.max_steps` even when it falls inside an epoch.

    Lightning stops at max_steps without validating unless the step ends an epoch; asking it to
    stop from here makes it run the validation loop first, so the best/last checkpoints and the
    reported SI-SDRi belong to the final weights.
    """

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True
