"""Callbacks: validation examples for whatever logger is in use, validation at the last step, and a
`last.ckpt` that is always the state to resume from (also on SIGINT/SIGTERM)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from pytorch_lightning.trainer.states import TrainerFn

from sepgan.atomic import AtomicFile
from sepgan.audio import save_audio
from sepgan.plots import figure_to_array, plt, spectrogram_figure

log = logging.getLogger("sepgan")


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


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT or SIGTERM, after `LastCheckpoint` saved where it was."""

    def __init__(self, signum: int, step: int, checkpoint: str):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"{signal.Signals(signum).name} at step {step}: saved {checkpoint}")


def model_checkpoint(trainer: pl.Trainer) -> ModelCheckpoint | None:
    """The trainer's (first) `ModelCheckpoint`, the one that keeps the best checkpoints, if any."""
    return next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)


class LastCheckpoint(Checkpoint):
    """Keeps `last.ckpt` the state to resume from: saved at every checkpoint event and at the end of training.

    Lightning's `ModelCheckpoint(save_last=True)` rewrites `last.ckpt` only when it saves another
    checkpoint (with one best kept: only on a new best), so a resume would silently drop every step
    after the last improvement; this callback takes the job over (it turns `save_last` off on the
    `ModelCheckpoint`) and saves when `ModelCheckpoint` considers saving: after every validation, or
    at the end of the training epoch when validation runs once per epoch, and at every epoch's end.
    Being a `Checkpoint`, it runs after the other callbacks and after `ModelCheckpoint`, so the file
    holds this validation's new best and the adversarial guard's decision. The file is written whole
    or not at all: a kill while saving leaves the previous one.

    SIGINT (Ctrl+C) or SIGTERM while training: the step in progress finishes (with its validation, if
    one is due), `last.ckpt` is saved before the next step starts and `TrainingInterrupted` ends the
    run; a second signal stops at once without saving. Under DDP any rank's signal stops every rank.

    Resuming into another folder (`ckpt_path=PATH`) keeps the best score and path of the run it
    continues (Lightning keeps them only when the checkpoint folder is the same), so "best" stays the
    best of the whole run.
    """

    def __init__(self):
        self.signum: int | None = None
        self.saved_step: int | None = None
        self._handlers: dict[int, object] = {}

    def path(self, trainer: pl.Trainer) -> Path:
        best = model_checkpoint(trainer)
        folder = best.dirpath if best is not None and best.dirpath else Path(trainer.default_root_dir) / "checkpoints"
        return Path(folder) / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}{ModelCheckpoint.FILE_EXTENSION}"

    def save(self, trainer: pl.Trainer) -> None:
        path = self.path(trainer)
        out = AtomicFile(path, overwrite=True) if trainer.is_global_zero else None
        try:
            trainer.save_checkpoint(out.tmp if out else path)  # rank 0 writes; every rank takes part
        except BaseException:
            if out:
                out.discard()
            raise
        if out:
            out.commit()
        self.saved_step = trainer.global_step

    def _save_if_new(self, trainer: pl.Trainer) -> None:
        if (trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking and not trainer.fast_dev_run
                and self.saved_step != trainer.global_step):
            self.save(trainer)

    # ---- when ------------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        best = model_checkpoint(trainer)
        if best is not None:
            best.save_last = False  # this callback writes last.ckpt

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        best = model_checkpoint(trainer)
        state = (checkpoint.get("callbacks") or {}).get(best.state_key) if best is not None else None
        if state and state.get("dirpath") != best.dirpath:
            state["dirpath"] = best.dirpath  # so that ModelCheckpoint reloads the best score, not only its path

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        best = model_checkpoint(trainer)
        if best is None or not best._should_save_on_train_epoch_end(trainer):  # else it saves at the epoch's end
            self._save_if_new(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save_if_new(trainer)
        self._stop_if_interrupted(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save_if_new(trainer)
        self._restore_handlers()
        self._stop_if_interrupted(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()

    # ---- signals ---------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):  # replaces Lightning's SIGTERM handler while training
            self._handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt  # the second signal: stop now
        self.signum = signum
        log.warning("%s: finishing this step and saving last.ckpt before stopping (again to stop at once, "
                    "without saving)", signal.Signals(signum).name)

    def _restore_handlers(self) -> None:
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        self._handlers = {}

    def on_train_batch_start(self, trainer: pl.Trainer, *args) -> None:
        # The previous step is complete here, its validation and checkpoints included.
        self._stop_if_interrupted(trainer)

    def _stop_if_interrupted(self, trainer: pl.Trainer) -> None:
        # Lightning's own SIGTERM handler is the one in place before training starts (the sanity check)
        signalled = self.signum is not None or trainer.received_sigterm
        if not trainer.strategy.reduce_boolean_decision(signalled, all=False):
            return  # every rank takes part in this decision, at the same points
        self.signum = self.signum or signal.SIGTERM  # another rank's signal, or Lightning's SIGTERM
        self._save_if_new(trainer)
        raise TrainingInterrupted(self.signum, trainer.global_step, str(self.path(trainer)))
