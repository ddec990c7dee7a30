"""The three training stages and the pipeline that chains them, built from a Hydra config.

- `generator`: supervised pretraining (`GeneratorSystem`);
- `discriminator`: the generator frozen, a discriminator learns real versus estimated speech;
- `adversarial`: both trained together, guarded against making the generator worse;
- `gan`: the three in order, each in its own sub-folder of the run, handing checkpoints on;
- `validate`: a generator checkpoint on the validation set;
- `test` (after any of them with `test_after_training=true`): the checkpoint handed on, scored on
  mixtures of the test split as `sepgan evaluate --data` scores it.

Each stage returns a `StageResult` with its figures and the checkpoint it hands on; `Progress` records
them in the run's `results.json` as they come, which is what a resumed run (`ckpt_path=last`,
`sepgan.training.resume`) skips.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities import rank_zero_only

from sepgan.atomic import AtomicFile
from sepgan.training.config import build_separator
from sepgan.data import SeparationDataModule
from sepgan.training import resume
from sepgan.training.distributed import strategy_with_unused_parameters
from sepgan.models import Separator, SpeakerSeparator, load_discriminator, load_separator, transfer_weights
from sepgan.models.checkpoints import front_end_changes
from sepgan.training.systems.adversarial import AdversarialGuard, AdversarialSystem
from sepgan.training.systems.callbacks import LastCheckpoint, model_checkpoint
from sepgan.training.systems.discriminator import DiscriminatorSystem
from sepgan.training.systems.finite import NonFiniteError
from sepgan.training.systems.generator import GeneratorSystem
from sepgan.training.systems.speakers import SpeakerAdversarialSystem, SpeakerDiscriminatorSystem, SpeakersSystem

log = logging.getLogger("sepgan")


@dataclass
class StageResult:
    stage: str
    steps: int
    seconds: float
    checkpoint: str | None  # what the next stage (or a user) should load
    metrics: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    failure: str | None = None  # why the stage stopped early (training went non-finite); then checkpoint is None


# ---- building blocks ---------------------------------------------------------------------------


def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def build_loggers(cfg: DictConfig, stage: str) -> list:
    loggers = []
    for conf in (cfg.get("logger") or {}).values():
        if conf is None:
            continue
        extra = {}
        if conf["_target_"].endswith("WandbLogger"):
            extra["job_type"] = stage  # runs of one pipeline share the group, one job type per stage
            if not conf.get("offline") and not wandb_has_credentials() \
                    and os.environ.get("WANDB_MODE") not in ("online", "disabled"):
                log.info("W&B: no API key found, logging offline (upload later with `wandb sync`)")
                extra["offline"] = True
        loggers.append(instantiate(conf, **extra))
    return loggers


def build_trainer(cfg: DictConfig, stage: str, extra_callbacks: tuple = (), resume_from: str | None = None,
                  **overrides) -> pl.Trainer:
    """The configured Trainer with the configured loggers and callbacks and a `LastCheckpoint`; `overrides` win
    over the config. `resume_from`: the checkpoint the stage continues from, whose earlier CSV rows are kept."""
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = build_loggers(cfg, stage)
    with warnings.catch_warnings():
        if resume_from:  # the CSV logger's "previous log files ... will be deleted": they are put back here
            warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
        for logger in loggers:
            if isinstance(logger, CSVLogger) and resume_from:  # read before the logger empties metrics.csv
                for step, row in resume.earlier_csv_rows(Path(logger.log_dir, "metrics.csv"), resume_from):
                    logger.log_metrics(row, step)
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    last = [LastCheckpoint()] if cfg.trainer.get("enable_checkpointing", True) else []
    return instantiate(cfg.trainer, logger=loggers, callbacks=[*callbacks, *last, *extra_callbacks], **overrides)


def validation_si_sdri(cfg: DictConfig, system: pl.LightningModule, datamodule) -> float:
    """Validation SI-SDRi of a system's generator as it is now, with no logging or checkpoints."""
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False)
    return float(trainer.validate(system, datamodule=datamodule, verbose=False)[0]["val/si_sdri"])


def build_datamodule(cfg: DictConfig, separator: Separator) -> SeparationDataModule:
    """The data module at the separator's sample rate, checked against its window length."""
    sample_rate = separator.frontend.sample_rate
    if sample_rate != cfg.data.sample_rate:
        log.info("data: using the generator's sample rate, %d Hz", sample_rate)
    datamodule = instantiate(cfg.data, sample_rate=sample_rate, _convert_="all")
    n_fft, segment = separator.frontend.n_fft, datamodule.mixer.segment
    if n_fft > segment:
        raise ValueError(f"frontend.n_fft={n_fft} is longer than a training segment "
                         f"(data.segment_seconds={cfg.data.segment_seconds} s = {segment} samples); "
                         f"lower frontend.n_fft or raise data.segment_seconds")
    return datamodule


def build_loss(cfg: DictConfig):
    return instantiate(cfg.loss, _convert_="all")


def save_config(cfg: DictConfig) -> None:
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))


def _final_checkpoint(cfg: DictConfig, trainer: pl.Trainer) -> str:
    """Save the weights as they are now to `<stage folder>/checkpoints/final.ckpt`, and return its path."""
    final = str(Path(cfg.paths.output_dir) / "checkpoints" / "final.ckpt")
    trainer.save_checkpoint(final, weights_only=False)
    return final


def _finish(trainer: pl.Trainer, system: pl.LightningModule, datamodule, stage: str, started: float,
            checkpoint: str | None) -> StageResult:
    """Validate if the last step was not validated, and collect the stage's figures."""
    if getattr(system, "last_validated_step", trainer.global_step) != trainer.global_step:
        trainer.validate(system, datamodule=datamodule, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/") and v.numel() == 1}
    return StageResult(stage, trainer.global_step, time.perf_counter() - started, checkpoint, metrics)


def _failed(trainer: pl.Trainer | None, stage: str, started: float, error: NonFiniteError) -> StageResult:
    """The result of a stage that went non-finite: no checkpoint handed on, the reason in `failure`."""
    log.error("%s", error)
    result = StageResult(stage, trainer.global_step if trainer else 0, time.perf_counter() - started, None,
                         failure=str(error))
    callback = model_checkpoint(trainer) if trainer else None
    if callback is not None and callback.best_model_path:
        result.notes.append(f"not handed on: {callback.best_model_path}, the best checkpoint before the failure "
                            f"(finite, validation SI-SDRi {float(callback.best_model_score):.2f} dB)"
                            if callback.best_model_score is not None else
                            f"not handed on: {callback.best_model_path}, saved before the failure")
    return result


def _fit(trainer: pl.Trainer, system: pl.LightningModule, datamodule, checkpoint: str | None) -> list[str]:
    """`trainer.fit`, continuing from `checkpoint` if given; returns a note saying so."""
    notes = []
    if checkpoint:
        step = resume.checkpoint_step(checkpoint)
        log.info("continuing from step %d of %s", step, checkpoint)
        notes.append(f"continued from step {step} ({checkpoint})")
    with warnings.catch_warnings():
        if checkpoint:  # continuing in the same folder is the point; before the first validation after a resume
            # at an epoch's end Lightning looks for the monitored value, which is not there yet; and the training
            # mixtures are drawn afresh anyway (no data loader state to resume)
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            warnings.filterwarnings("ignore", message=r"`ModelCheckpoint\(monitor=.*could not find the monitored key")
            warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch")
        trainer.fit(system, datamodule=datamodule, ckpt_path=checkpoint)
    return notes


def _begin(cfg: DictConfig) -> float:
    """What every stage does first: seed everything, write its config; returns the start time."""
    started = time.perf_counter()
    pl.seed_everything(cfg.seed, workers=True)
    save_config(cfg)
    return started


def _require(path: str | None, stage: str) -> str:
    if not path:
        raise ValueError(f"stage={stage} needs a generator checkpoint: pass init_from=PATH "
                         f"(e.g. the best-*.ckpt of a generator run)")
    return path


def _generator_system(separator, loss, optim, freeze_separator: bool = False) -> GeneratorSystem:
    """The stage-1 system for a separator: speech versus noise, or several voices (trained by PIT)."""
    if isinstance(separator, SpeakerSeparator):
        return SpeakersSystem(separator, loss, optimizer=optim.optimizer, scheduler=optim.get("scheduler"))
    return GeneratorSystem(separator, loss, optimizer=optim.optimizer, scheduler=optim.get("scheduler"),
                           freeze_separator=freeze_separator)


def _monitoring(cfg: DictConfig, metric: str, mode: str) -> DictConfig:
    """A copy of `cfg` whose checkpoint and early-stopping callbacks watch `metric` (`mode`: min or max)."""
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        for callback in (cfg.get("callbacks") or {}).values():
            if callback is not None and "monitor" in callback:
                callback.monitor, callback.mode = metric, mode
    return cfg


def _with_noise_classifier(cfg: DictConfig, separator: Separator, datamodule: SeparationDataModule) -> None:
    """Give the separator a noise classifier for the training data's noise classes (loss.weights.noise_class)."""
    datamodule.setup("fit")
    classes = list(datamodule.datasets["train"].noise_labels)
    if separator.noise_classifier is None:
        settings = {k: v for k, v in (cfg.model.get("noise_classifier") or {}).items() if k != "classes"}
        separator.attach_noise_classifier(classes, **settings)
        log.info("noise classifier for %d classes: %s", len(classes), ", ".join(classes))
    elif separator.noise_classifier.classes != classes:
        raise ValueError(f"the model's noise classifier names {separator.noise_classifier.classes}, but the "
                         f"training data's noise classes are {classes}")


def _for_voices(separator, speech_cls: type, voices_cls: type) -> type:
    """The system class for a separator: speech versus noise, or several voices."""
    return voices_cls if isinstance(separator, SpeakerSeparator) else speech_cls


# ---- stages ------------------------------------------------------------------------------------


def run_generator(cfg: DictConfig, datamodule: SeparationDataModule | None = None) -> StageResult:
    """Stage 1: supervised pretraining; hands on the best checkpoint by validation SI-SDRi.

    With `init_from=CKPT` it starts from that generator's weights (and front-end) with a fresh
    optimizer and schedule, e.g. to fine-tune a model on other data or anneal its learning rate;
    with `init_weights=CKPT` the configured model starts from whichever of its weights fit.
    """
    if cfg.get("freeze_separator"):  # the separation cannot change: keep the checkpoint that names noise best
        cfg = _monitoring(cfg, "val/loss/noise_class", "min")
    started = _begin(cfg)
    separator = load_separator(cfg.init_from).train() if cfg.get("init_from") else build_separator(cfg)
    datamodule = datamodule or build_datamodule(cfg, separator)
    loss = build_loss(cfg)
    if not loss.weights:
        raise ValueError("generator pretraining needs a reconstruction term in loss.weights "
                         f"(one of {list(loss.TERMS)}); adversarial weights act only in the adversarial stage")
    if "noise_class" in loss.weights:
        _with_noise_classifier(cfg, separator, datamodule)
    if cfg.get("init_weights"):
        copied, fresh = transfer_weights(separator, cfg.init_weights)
        log.info("init_weights: %d tensors copied from %s; %d start fresh%s", len(copied), cfg.init_weights,
                 len(fresh), f" ({', '.join(fresh[:6])}{', ...' if len(fresh) > 6 else ''})" if fresh else "")
        changes = front_end_changes(separator, cfg.init_weights)
        if changes:
            log.warning("init_weights: %s was trained on another spectrogram (%s): this run starts near that "
                        "model, not as it", cfg.init_weights, "; ".join(changes))
    system = _generator_system(separator, loss, instantiate(cfg.optim), bool(cfg.get("freeze_separator")))
    resume_from = resume.stage_checkpoint(cfg)
    trainer = build_trainer(cfg, "generator", resume_from=resume_from)
    try:
        notes = _fit(trainer, system, datamodule, resume_from)
        best = model_checkpoint(trainer)
        result = _finish(trainer, system, datamodule, "generator", started,
                         (best.best_model_path if best else "") or None)
    except NonFiniteError as err:
        return _failed(trainer, "generator", started, err)
    # Without a best checkpoint (fast_dev_run saves none; enable_checkpointing=false) the final
    # weights are handed on, so the next stage and test_after_training still have a generator.
    # Saved only now, after `_finish` has checked the last validation.
    result.checkpoint = result.checkpoint or _final_checkpoint(cfg, trainer)
    if best is not None and best.best_model_score is not None and not cfg.get("freeze_separator"):
        result.metrics["best_val/si_sdri"] = float(best.best_model_score)
    result.notes += notes
    return result


def run_discriminator(cfg: DictConfig, generator_checkpoint: str | None = None,
                      datamodule: SeparationDataModule | None = None) -> StageResult:
    """Stage 2: the generator frozen, the discriminator trained for `gan.steps.discriminator` steps."""
    cfg = _monitoring(cfg, "val/disc/accuracy", "max")  # checkpoints (and early stopping) by discriminator accuracy
    callbacks = cfg.get("callbacks") or {}
    with open_dict(cfg):  # no generator audio to log
        if "validation_examples" in callbacks:
            callbacks.validation_examples = None
    started = _begin(cfg)
    checkpoint = _require(generator_checkpoint or cfg.get("init_from"), "discriminator")
    separator = load_separator(checkpoint)
    datamodule = datamodule or build_datamodule(cfg, separator)
    discriminator = instantiate(cfg.gan.discriminator, in_channels=separator.frontend.channels, _convert_="all")
    system = _for_voices(separator, DiscriminatorSystem, SpeakerDiscriminatorSystem)(
        separator, discriminator, cfg.gan.objective, instantiate(cfg.gan.discriminator_optimizer))
    resume_from = resume.stage_checkpoint(cfg)
    trainer = build_trainer(cfg, "discriminator", resume_from=resume_from, max_steps=cfg.gan.steps.discriminator,
                            max_epochs=-1, check_val_every_n_epoch=None, val_check_interval=cfg.gan.val_check_steps)
    try:
        notes = _fit(trainer, system, datamodule, resume_from)
        result = _finish(trainer, system, datamodule, "discriminator", started, None)
    except NonFiniteError as err:
        return _failed(trainer, "discriminator", started, err)
    result.checkpoint = _final_checkpoint(cfg, trainer)  # only once the last validation was found finite
    result.notes += notes
    return result


def run_adversarial(cfg: DictConfig, generator_checkpoint: str | None = None, discriminator_checkpoint: str | None = None,
                    datamodule: SeparationDataModule | None = None) -> StageResult:
    """Stage 3: adversarial fine-tuning, guarded; hands on `final.ckpt` (rolled back if the guard says so)."""
    started = _begin(cfg)
    checkpoint = _require(generator_checkpoint or cfg.get("init_from"), "adversarial")
    separator = load_separator(checkpoint)
    separator.train()
    datamodule = datamodule or build_datamodule(cfg, separator)
    discriminator_checkpoint = discriminator_checkpoint or cfg.get("discriminator_from")
    if discriminator_checkpoint:
        discriminator = load_discriminator(discriminator_checkpoint).train()
    else:
        log.info("adversarial stage: no discriminator checkpoint given, starting from a fresh discriminator")
        discriminator = instantiate(cfg.gan.discriminator, in_channels=separator.frontend.channels, _convert_="all")
    gan = cfg.gan
    system = _for_voices(separator, AdversarialSystem, SpeakerAdversarialSystem)(
        separator, build_loss(cfg), instantiate(gan.generator_optimizer), discriminator, gan.objective,
        instantiate(gan.discriminator_optimizer), gan.disc_steps, gradient_clip=cfg.trainer.get("gradient_clip_val"))
    try:
        baseline = validation_si_sdri(cfg, system, datamodule)  # the pretrained generator: the guard's baseline
    except NonFiniteError as err:
        return _failed(None, "adversarial", started, err)
    guard = AdversarialGuard(baseline, **gan.guard)
    # Manual optimisation clips its own gradients; Lightning refuses a Trainer-level clip value with it.
    resume_from = resume.stage_checkpoint(cfg)
    trainer = build_trainer(cfg, "adversarial", resume_from=resume_from, max_steps=gan.steps.adversarial, max_epochs=-1,
                            check_val_every_n_epoch=None, val_check_interval=gan.val_check_steps,
                            gradient_clip_val=None, extra_callbacks=[guard],
                            strategy=strategy_with_unused_parameters(cfg.trainer))
    final = str(Path(cfg.paths.output_dir) / "checkpoints" / "final.ckpt")
    try:
        notes = _fit(trainer, system, datamodule, resume_from)
        result = _finish(trainer, system, datamodule, "adversarial", started, final)
    except NonFiniteError as err:
        return _failed(trainer, "adversarial", started, err)
    trainer.save_checkpoint(final, weights_only=False)
    result.metrics["baseline_val/si_sdri"] = baseline
    result.notes += notes + guard.messages
    si_sdri = result.metrics["val/si_sdri"]
    if si_sdri < baseline - gan.guard.tolerance_db:
        result.notes.append(f"WARNING: the adversarial stage ends WORSE than the pretrained generator: "
                            f"validation SI-SDRi {si_sdri:.2f} dB < {baseline:.2f} dB")
    return result


def run_validation(cfg: DictConfig) -> StageResult:
    """A generator checkpoint (`init_from`) on the validation set, on any number of devices."""
    started = _begin(cfg)
    checkpoint = _require(cfg.get("init_from"), "validate")
    separator = load_separator(checkpoint)
    datamodule = build_datamodule(cfg, separator)
    system = _generator_system(separator, build_loss(cfg), instantiate(cfg.optim))
    try:
        metrics = build_trainer(cfg, "validate").validate(system, datamodule=datamodule, verbose=False)[0]
    except NonFiniteError as err:
        return _failed(None, "validate", started, err)
    return StageResult("validate", 0, time.perf_counter() - started, checkpoint,
                       {k: float(v) for k, v in metrics.items() if k.startswith("val/")})


def run_test(cfg: DictConfig, checkpoint: str) -> StageResult:
    """Score `checkpoint` on the first `test.examples` mixtures of the run's test split (as `sepgan evaluate --data`).

    The methods (`test.methods`: the model and the noisy input by default) and measures
    (`test.metrics`) are the config's; per-file scores, the summary and a table go to
    `<run folder>/test/`. The figures are means over the mixtures: `test/<metric>` for the model,
    `test/<method>/<metric>` for the others (e.g. `test/noisy/stoi`).
    """
    from sepgan.evaluation import ConfigMixtures, evaluate  # scoring libraries: imported only when asked for

    started = time.perf_counter()
    separator = load_separator(checkpoint)
    test = cfg.test
    examples = ConfigMixtures(data=cfg.data, sample_rate=separator.frontend.sample_rate, split="test",
                              count=test.examples)
    report = evaluate(examples, separator, test.methods, test.metrics, progress=False,
                      info={"checkpoint": checkpoint, "split": "test", "examples": test.examples})
    folder = Path(cfg.paths.output_dir) / "test"
    report.write(folder, overwrite=True)
    metrics = {("test/" if method == "model" else f"test/{method}/") + metric: stats["mean"]
               for method, scores in report.summary()["methods"].items() for metric, stats in scores.items()}
    notes = [f"{len(report.files)} mixtures of the test split; per file: {folder / 'per_file.csv'}"]
    notes += [f"skipped {name}: {why}" for name, why in report.skipped.items()]
    return StageResult("test", 0, time.perf_counter() - started, checkpoint, metrics, notes)


def stage_config(cfg: DictConfig, index: int, stage: str) -> DictConfig:
    """A copy of `cfg` whose outputs go to `<run folder>/<index>_<stage>/`."""
    sub = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))  # interpolations follow the new folder
    with open_dict(sub):
        sub.paths.output_dir = str(Path(cfg.paths.output_dir) / f"{index}_{stage}")
    return sub


def run_gan(cfg: DictConfig) -> list[StageResult]:
    """The three stages in order, each in its own folder, checkpoints handed on, one data module for all.

    With `ckpt_path=last` the stages the run finished are skipped (their recorded checkpoints are handed
    on) and the one it was in continues from its `last.ckpt`.
    """
    save_config(cfg)
    progress = Progress(cfg)
    datamodule = build_datamodule(cfg, build_separator(cfg))
    generator = progress.run("generator", lambda: run_generator(stage_config(cfg, 1, "generator"), datamodule))
    if generator.failure:  # nothing to hand on: the later stages do not run
        return [generator]
    discriminator = progress.run("discriminator", lambda: run_discriminator(
        stage_config(cfg, 2, "discriminator"), generator.checkpoint, datamodule))
    if discriminator.failure:
        return [generator, discriminator]
    adversarial = progress.run("adversarial", lambda: run_adversarial(
        stage_config(cfg, 3, "adversarial"), generator.checkpoint, discriminator.checkpoint, datamodule))
    return [generator, discriminator, adversarial]


def _test_line(result: StageResult) -> str:
    """`test  SI-SDR 9.10 dB (noisy input 1.19 dB), SI-SDRi 7.91 dB, STOI 0.871 (noisy input 0.802)`."""
    from sepgan.evaluation import LABELS, METRIC_LABELS

    def text(metric: str, number: float) -> str:
        return f"{number:.3f}" if metric in ("stoi", "estoi") else f"{number:.2f}" + (" dB" if metric != "pesq" else "")

    parts = []
    for metric in (key.removeprefix("test/") for key in result.metrics if key.count("/") == 1):
        references = [f"{LABELS[m]} {text(metric, result.metrics[f'test/{m}/{metric}'])}" for m in LABELS
                      if f"test/{m}/{metric}" in result.metrics and metric != "si_sdri"]  # SI-SDRi of the input is 0
        parts.append(f"{METRIC_LABELS[metric]} {text(metric, result.metrics['test/' + metric])}"
                     + (f" ({', '.join(references)})" if references else ""))
    return f"{'test':<14} " + ", ".join(parts)


class Progress:
    """The stages of a run finished so far, kept in its `results.json` (rewritten whole as each one ends).

    A new run starts the file empty (a reused folder's old record goes); a resumed one (`ckpt_path=last`)
    reads it, and `run` hands back what a finished stage recorded instead of training it again.
    """

    def __init__(self, cfg: DictConfig):
        self.path = Path(cfg.paths.output_dir, resume.RESULTS)
        resuming = cfg.get("ckpt_path") == "last" and self.path.is_file()
        self.finished = [StageResult(**r) for r in json.loads(self.path.read_text())] if resuming else []
        if not resuming:
            self._write()

    def run(self, stage: str, train: Callable[[], StageResult]) -> StageResult:
        done = next((r for r in self.finished if r.stage == stage and not r.failure), None)
        if done is not None:
            log.info("stage %s finished before: skipped (%d steps, hands on %s)", stage, done.steps, done.checkpoint)
            return replace(done, notes=[*done.notes, "finished before the resume: figures as recorded then"])
        result = train()
        self.finished.append(result)
        self._write()
        return result

    def _write(self) -> None:
        if rank_zero_only.rank == 0:  # under DDP every rank runs the stages; one writes
            with AtomicFile(self.path, overwrite=True) as out:
                out.tmp.write_text(json.dumps(as_dict(self.finished), indent=2))


def summary(results: list[StageResult]) -> str:
    """A table of every stage's figures, then the test figures and any warning, for the end of a run."""
    lines = [f"{'stage':<14} {'steps':>6} {'time':>8}  {'val SI-SDRi':>11}  {'disc. accuracy':>14}  checkpoint"]
    for r in results:
        if r.failure:
            lines.append(f"{r.stage:<14} {r.steps:>6} {r.seconds:>7.0f}s  {'FAILED':>11}  {'-':>14}  none (non-finite)")
            continue
        if r.stage == "test":
            lines.append(_test_line(r))
            continue
        si_sdri = f"{r.metrics['val/si_sdri']:.2f} dB" if "val/si_sdri" in r.metrics else "-"
        acc = r.metrics.get("val/disc/accuracy")
        acc_text = f"{acc:.2f}" if acc is not None else "-"
        lines.append(f"{r.stage:<14} {r.steps:>6} {r.seconds:>7.0f}s  {si_sdri:>11}  {acc_text:>14}  {r.checkpoint}")
    for r in results:
        lines += [f"[{r.stage}] FAILED: {r.failure}"] if r.failure else []
        lines += [f"[{r.stage}] {note}" for note in r.notes]
    return "\n".join(lines)


def as_dict(results: list[StageResult]) -> list[dict]:
    return [asdict(r) for r in results]
