"""Training entry point: `python -m sepgan.train +experiment=NAME [key=value ...]`.

Hydra composes `conf/train.yaml` with the chosen groups and overrides; objects are built from
their `_target_` entries. Each run gets its own folder (resolved config, checkpoints, logs) and
ends by printing the validation SI-SDRi it reached.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from sepgan.config import build_separator
from sepgan.systems.generator import GeneratorSystem

log = logging.getLogger("sepgan.train")


def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def build_loggers(cfg: DictConfig) -> list:
    loggers = []
    for name, conf in (cfg.get("logger") or {}).items():
        if conf is None:
            continue
        extra = {}
        if conf["_target_"].endswith("WandbLogger") and not conf.get("offline") and not wandb_has_credentials() \
                and os.environ.get("WANDB_MODE") not in ("online", "disabled"):
            log.info("W&B: no API key found, logging offline (upload later with `wandb sync`)")
            extra["offline"] = True
        loggers.append(instantiate(conf, **extra))
    return loggers


def build_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    return [instantiate(conf) for conf in (cfg.get("callbacks") or {}).values() if conf is not None]


def build_generator(cfg: DictConfig) -> tuple[GeneratorSystem, pl.LightningDataModule]:
    """The generator system and the data module of a config, with early checks on their fit."""
    separator = build_separator(cfg)
    datamodule = instantiate(cfg.data, _convert_="all")
    n_fft, segment = separator.frontend.n_fft, datamodule.mixer.segment
    if n_fft > segment:
        raise ValueError(f"frontend.n_fft={n_fft} is longer than a training segment "
                         f"(data.segment_seconds={cfg.data.segment_seconds} s = {segment} samples); "
                         f"lower frontend.n_fft or raise data.segment_seconds")
    loss = instantiate(cfg.loss, _convert_="all")
    optim = instantiate(cfg.optim)
    system = GeneratorSystem(separator, loss, optimizer=optim.optimizer, scheduler=optim.get("scheduler"))
    return system, datamodule


def find_last_checkpoint(cfg: DictConfig) -> str:
    """The newest `last.ckpt` of this run folder, or else of any earlier run of the same experiment."""
    here = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if here.exists():
        return str(here)
    candidates = sorted(Path(cfg.paths.log_dir, cfg.name).glob("**/checkpoints/last.ckpt"),
                        key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise FileNotFoundError(f"ckpt_path=last: no last.ckpt under '{Path(cfg.paths.log_dir, cfg.name)}'; "
                                f"train once first, or give ckpt_path=PATH")
    return str(candidates[-1])


def resolve_checkpoint(cfg: DictConfig) -> str | None:
    if cfg.get("ckpt_path") in (None, ""):
        return None
    if cfg.ckpt_path == "last":
        path = find_last_checkpoint(cfg)
        log.info("resuming from %s", path)
        return path
    if not Path(cfg.ckpt_path).exists():
        raise FileNotFoundError(f"ckpt_path: checkpoint '{cfg.ckpt_path}' not found")
    return cfg.ckpt_path


def save_config(cfg: DictConfig) -> None:
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))


def train_generator(cfg: DictConfig) -> dict:
    """Supervised generator pretraining; returns the final and best validation SI-SDRi."""
    pl.seed_everything(cfg.seed, workers=True)
    save_config(cfg)
    system, datamodule = build_generator(cfg)
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=build_loggers(cfg), callbacks=build_callbacks(cfg))
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    trainer.fit(system, datamodule=datamodule, ckpt_path=resolve_checkpoint(cfg))
    if system.last_validated_step != trainer.global_step:  # stopped between validations
        trainer.validate(system, datamodule=datamodule, verbose=False)
    checkpoint = trainer.checkpoint_callback
    result = {
        "val/si_sdri": float(trainer.callback_metrics["val/si_sdri"]),
        "val/si_sdr": float(trainer.callback_metrics["val/si_sdr"]),
        "steps": trainer.global_step,
        "best_val/si_sdri": float(checkpoint.best_model_score) if checkpoint and checkpoint.best_model_score is not None
        else None,
        "best_checkpoint": checkpoint.best_model_path if checkpoint else None,
        "output_dir": str(cfg.paths.output_dir),
    }
    return result


def report(result: dict) -> None:
    best = result["best_val/si_sdri"]
    print(f"\nvalidation SI-SDRi after {result['steps']} steps: {result['val/si_sdri']:.2f} dB"
          + (f" (best {best:.2f} dB: {result['best_checkpoint']})" if best is not None else "")
          + f"\nrun folder: {result['output_dir']}", flush=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    result = train_generator(cfg)
    report(result)
    return result["val/si_sdri"]  # the objective for Hydra sweepers


if __name__ == "__main__":
    main()
