"""Training entry point: `python -m sepgan.train experiment=NAME [key=value ...]` (or `+experiment=NAME`).

Hydra composes `conf/train.yaml` with the chosen groups and overrides; `stage` picks what runs:
`generator` (default), `discriminator`, `adversarial` (these two need `init_from=CHECKPOINT`), or
`gan` (all three in order), or `validate` (a generator checkpoint `init_from=CHECKPOINT` on the
validation set). With `test_after_training=true` the checkpoint the run hands on is then scored on
the test split. Each run gets its own folder and ends with a summary of the figures each stage
reached; the `optimized_metric` of the last stage that reports it is what sweepers maximise.

The config is checked first (`sepgan.training.checks`): a setting that cannot work stops the run with
a short message naming it, exit status 2, and no run folder left behind. Ctrl+C or SIGTERM while
training saves `last.ckpt` and exits with 128 + the signal number; `ckpt_path=last` continues the
run (`sepgan.training.resume`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_original_cwd
from omegaconf import DictConfig, open_dict
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

from sepgan.training import resume, stages
from sepgan.training.checks import ConfigError, check_config
from sepgan.training.config import accept_appended_groups
from sepgan.training.distributed import check_strategy, starts_rank_processes
from sepgan.training.systems.callbacks import TrainingInterrupted

log = logging.getLogger("sepgan.train")

# conf/hydra/launcher/submitit_{slurm,local}.yaml keep the plugin's names, which makes Hydra validate them
# against the plugin's schema of the same name and call that matching deprecated. They name their
# `_target_` and every value sepgan sets, so they work without the matching too.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/submitit_\w+' is validated against ConfigStore schema")


def run(cfg: DictConfig) -> list[stages.StageResult]:
    """Run the configured stage(s), recording each one's figures in the run folder's `results.json`.

    With `ckpt_path=last`, continue the run that `sepgan.training.resume` finds (in its own folder).
    """
    check_strategy(cfg.trainer)
    stage = cfg.get("stage", "generator")
    runners = {"generator": stages.run_generator, "discriminator": stages.run_discriminator,
               "adversarial": stages.run_adversarial, "validate": stages.run_validation}
    if stage not in (*runners, "gan"):
        raise ValueError(f"stage must be one of gan, {', '.join(runners)}; got '{stage}'")
    resume.continue_run(cfg)
    results = stages.run_gan(cfg) if stage == "gan" else [stages.Progress(cfg).run(stage, lambda: runners[stage](cfg))]
    if rank_zero_only.rank == 0:  # under DDP every rank runs this; one tests and writes
        if cfg.get("test_after_training") and not any(r.failure for r in results):  # a failed stage hands nothing on
            results.append(stages.run_test(cfg, results[-1].checkpoint))
            Path(cfg.paths.output_dir, "results.json").write_text(json.dumps(stages.as_dict(results), indent=2))
    return results


def objective(results: list[dict], metric: str) -> float:
    """What a sweeper optimises: `metric` (`optimized_metric`) of the last stage that reports it."""
    for result in reversed(results):
        if metric in result["metrics"]:
            return result["metrics"][metric]
    known = sorted({name for result in results for name in result["metrics"]})
    raise KeyError(f"optimized_metric={metric} is not among the run's figures ({', '.join(known)})"
                   + ("; test/ figures need test_after_training=true" if metric.startswith("test/") else ""))


def run_job_on_its_own(cfg: DictConfig) -> float | None:
    """Run this multirun job as a single run in a child process, and return its objective.

    Lightning's ddp starts the other ranks by re-running the command line, which inside a multirun is
    the whole sweep (the Optuna sweeper would even hand each rank different parameters). The child's
    command line is only this job's overrides, written to this job's folder, so that is what gets re-run.
    """
    hydra_cfg = HydraConfig.get()
    output_dir = hydra_cfg.runtime.output_dir
    overrides = [o for o in hydra_cfg.overrides.task if not o.startswith("group=")]
    command = [sys.executable, "-m", "sepgan.train", *overrides, f'group="{cfg.group}"',
               f'hydra.run.dir="{output_dir}"', "hydra.output_subdir=null"]
    log.info("job %s starts %s processes: running it as a run of its own in %s",
             hydra_cfg.job.num, cfg.trainer.devices, output_dir)
    code = subprocess.run(command, cwd=get_original_cwd()).returncode
    results = Path(output_dir, "results.json")
    if code != 0 and results.exists() and any(r.get("failure") for r in json.loads(results.read_text())):
        return float("nan")  # the job went non-finite (its summary says where): a failed trial, not a failed sweep
    if code != 0:
        raise RuntimeError(f"job {hydra_cfg.job.num} ({' '.join(hydra_cfg.overrides.task)}) failed with exit "
                           f"code {code}; see {output_dir}/train.log")
    return objective(json.loads(Path(output_dir, "results.json").read_text()), cfg.optimized_metric)


def group_by_sweep(cfg: DictConfig) -> None:
    """The runs of one sweep share a W&B group, `<name>-<sweep folder>`, unless `group=` was given."""
    hydra_cfg = HydraConfig.get()
    if not any(o.startswith("group=") for o in hydra_cfg.overrides.task):
        with open_dict(cfg):
            cfg.group = f"{cfg.name}-{Path(hydra_cfg.sweep.dir).name}"


def remove_new_folder(cfg: DictConfig) -> None:
    """Remove the run folder Hydra made for this run if it holds nothing else (a failed start leaves none).

    Also its parents up to `paths.log_dir` when they are left empty, and a sweep's folder left with
    only Hydra's `multirun.yaml`. A folder with anything of a run in it (a resumed run's) is kept.
    """
    hydra_cfg = HydraConfig.get()
    folder = Path(hydra_cfg.runtime.output_dir)
    if not folder.is_dir() or any(p.name not in (hydra_cfg.output_subdir, f"{hydra_cfg.job.name}.log")
                                  for p in folder.iterdir()):
        return
    shutil.rmtree(folder)
    stop = Path(cfg.paths.log_dir).resolve().parent
    folder = folder.resolve().parent
    if hydra_cfg.mode == RunMode.MULTIRUN and [p.name for p in folder.iterdir()] == ["multirun.yaml"]:
        (folder / "multirun.yaml").unlink()
    while folder != stop and stop in folder.parents and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def stop_on_config_error(cfg: DictConfig, error: ConfigError) -> None:
    remove_new_folder(cfg)
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise error
    print("config error: " + "\n  ".join(error.problems), file=sys.stderr, flush=True)
    sys.exit(2)


def stop_on_interruption(cfg: DictConfig, signum: int, where: str) -> None:
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("ckpt_path=")]
    if rank_zero_only.rank == 0:
        print(f"\n{signal.Signals(signum).name}: {where}. To continue this run (newest of its experiment):\n"
              f"  python -m sepgan.train {' '.join([*overrides, 'ckpt_path=last'])}", file=sys.stderr, flush=True)
    sys.exit(128 + signum)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def train(cfg: DictConfig) -> float | None:
    try:
        check_config(cfg)
    except ConfigError as error:
        stop_on_config_error(cfg, error)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    if multirun:
        group_by_sweep(cfg)
        if starts_rank_processes(cfg.trainer):
            check_strategy(cfg.trainer)
            return run_job_on_its_own(cfg)
    try:
        results = run(cfg)
    except TrainingInterrupted as stop:
        stop_on_interruption(cfg, stop.signum, f"stopped at step {stop.step}, saved {stop.checkpoint}")
    except (KeyboardInterrupt, SIGTERMException) as stop:  # outside training (Lightning's SIGTERM: before it)
        stop_on_interruption(cfg, signal.SIGTERM if isinstance(stop, SIGTERMException) else signal.SIGINT,
                             f"stopped outside training; the run's checkpoints are in {cfg.paths.output_dir}")
    failed = any(r.failure for r in results)  # training went non-finite: no model came out of it
    if rank_zero_only.rank != 0:
        return None
    print("\n" + stages.summary(results) + f"\nrun folder: {cfg.paths.output_dir}", flush=True)
    if failed:
        if multirun:
            return float("nan")  # a sweeper records the trial as failed and goes on with the others
        sys.exit(1)
    try:
        return objective(stages.as_dict(results), cfg.optimized_metric)
    except KeyError as err:
        if multirun:  # a sweep without its objective is a broken sweep
            raise
        log.warning("%s", err.args[0])  # a single run: the training itself went well
        return None


def main() -> float | None:
    """`python -m sepgan.train`: the Hydra application, with `+experiment=NAME` read as `experiment=NAME`."""
    sys.argv[1:] = accept_appended_groups(sys.argv[1:])
    return train()


if __name__ == "__main__":
    main()
