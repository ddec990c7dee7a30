"""Which run `ckpt_path=last` continues, and what carries over into it.

A run folder holds `config.yaml` (written as it starts) and `results.json` (the figures of every
stage finished so far, rewritten as each one ends); each stage keeps `checkpoints/last.ckpt`, the
state after its latest validation. `ckpt_path=last` continues a run in its own folder: the run in
`paths.output_dir` if it holds one (the folder of a sweep job, or `hydra.run.dir=FOLDER`), else the
newest run of the experiment with the same `stage` (`<log_dir>/<name>/runs/*`, newest by its last
write). Hydra's `hydra.run.dir` asks `run_folder` for that folder, so a resumed run makes no new one.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("sepgan")

CONFIG = "config.yaml"
COMPARED = ("data", "frontend", "model", "loss", "optim", "gan", "trainer")  # what a continued run should keep
RESULTS = "results.json"
LAST = "last.ckpt"


def is_run(folder: str | Path) -> bool:
    return Path(folder, CONFIG).is_file()


def run_stage(folder: str | Path) -> str | None:
    """The `stage` a run was started with (gan, generator, ...)."""
    return OmegaConf.load(Path(folder, CONFIG)).get("stage", "generator")


def last_write(folder: Path) -> float:
    files = [folder / CONFIG, folder / RESULTS, *folder.glob(f"checkpoints/{LAST}"), *folder.glob(f"*/checkpoints/{LAST}")]
    return max(f.stat().st_mtime for f in files if f.exists())


def newest_run(runs: str | Path, stage: str) -> Path | None:
    """The run under `runs` (a `<log_dir>/<name>/runs` folder) with this `stage` that was written to last."""
    folders = [f for f in Path(runs).glob("*") if is_run(f) and run_stage(f) == stage] if Path(runs).is_dir() else []
    return max(folders, key=last_write, default=None)


def run_folder(runs: str, stamp: str, ckpt_path: str | None, stage: str | None) -> str:
    """Hydra's `hydra.run.dir`: `runs/<stamp>`, or with `ckpt_path=last` the run it continues."""
    if ckpt_path == "last" and (found := newest_run(runs, stage or "generator")) is not None:
        return str(found)
    return str(Path(runs, stamp))


def in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_to_continue(cfg: DictConfig) -> Path | None:
    """The run folder `ckpt_path=last` continues: this output folder's run, else (outside a sweep) the newest one."""
    here = Path(cfg.paths.output_dir)
    if is_run(here):
        return here
    if in_sweep():  # a sweep's jobs continue only their own folders (hydra.sweep.dir=the earlier sweep)
        return None
    return newest_run(Path(cfg.paths.log_dir, cfg.name, "runs"), cfg.get("stage", "generator"))


def continue_run(cfg: DictConfig) -> None:
    """With `ckpt_path=last`, point `paths.output_dir` at the run to continue and say what differs from its config."""
    if cfg.get("ckpt_path") != "last":
        return
    folder = run_to_continue(cfg)
    if folder is None:
        raise FileNotFoundError(f"ckpt_path=last: no stage={cfg.get('stage', 'generator')} run of '{cfg.name}' "
                                f"under '{Path(cfg.paths.log_dir, cfg.name, 'runs')}' to continue; train once "
                                f"first, or give ckpt_path=PATH")
    if Path(cfg.paths.output_dir).resolve() != folder.resolve():
        cfg.paths.output_dir = str(folder)
    log.info("ckpt_path=last: continuing the run in %s", folder)
    before, now = OmegaConf.load(folder / CONFIG), OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    changed = [line for key in COMPARED for line in differences(before.get(key), now.get(key), f"{key}.")]
    if changed:
        log.warning("the run continues with settings that differ from those it started with: %s", "; ".join(changed))


def differences(before: DictConfig | None, now: DictConfig | None, prefix: str = "") -> list[str]:
    """`key: old -> new` for every leaf that differs."""
    out = []
    for key in sorted(set(before or {}) | set(now or {})):
        name = f"{prefix}{key}"
        old, new = (before or {}).get(key), (now or {}).get(key)
        if isinstance(old, DictConfig) and isinstance(new, DictConfig):
            out += differences(old, new, f"{name}.")
        elif old != new:
            out.append(f"{name}: {OmegaConf.to_container(old) if isinstance(old, DictConfig) else old} -> "
                       f"{OmegaConf.to_container(new) if isinstance(new, DictConfig) else new}")
    return out


def stage_checkpoint(cfg: DictConfig) -> str | None:
    """The checkpoint a stage continues from: its folder's `last.ckpt` for `ckpt_path=last`, or `ckpt_path`."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path in (None, ""):
        return None
    if ckpt_path != "last":
        if not Path(ckpt_path).is_file():
            raise FileNotFoundError(f"ckpt_path: checkpoint '{ckpt_path}' not found")
        return str(ckpt_path)
    path = Path(cfg.paths.output_dir, "checkpoints", LAST)
    if not path.is_file():
        log.info("no %s in %s: the stage starts from its beginning", LAST, path.parent.parent)
        return None
    return str(path)


def logged_steps(checkpoint: str | Path) -> int | None:
    """The loggers' step count saved in a Lightning checkpoint (it differs from `global_step` with several optimizers)."""
    state = torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=False)
    try:
        return int(state["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"])
    except (KeyError, TypeError):
        return None


def earlier_csv_rows(metrics_csv: Path, checkpoint: str | Path) -> list[tuple[int, dict[str, float]]]:
    """The rows of a stage's `metrics.csv` up to the step its checkpoint holds (later ones are trained again).

    Lightning's CSV logger starts the file afresh when it opens it; the stage puts these back first.
    """
    if not metrics_csv.is_file():
        return []
    until = logged_steps(checkpoint)
    rows = []
    with open(metrics_csv, newline="") as fh:
        for row in csv.DictReader(fh):
            step = int(float(row.pop("step")))
            if until is None or step <= until:
                rows.append((step, {k: _number(v) for k, v in row.items() if v not in ("", None)}))
    return rows


def _number(text: str) -> int | float:
    return int(text) if text.lstrip("-").isdigit() else float(text)


def checkpoint_step(checkpoint: str | Path) -> int:
    """The `global_step` a Lightning checkpoint was saved at."""
    return int(torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=False)["global_step"])
