"""Reading the project's Hydra configs from Python (benchmarks, tests, notebooks) without a command line."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from sepgan.training.distributed import mixed_precision
from sepgan.training.resume import run_folder

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"  # inside the package, so an installed wheel can train


def sqlite_url(path: str) -> str:
    """An SQLAlchemy URL for an SQLite file at `path`, its folder made (SQLite makes files, not folders)."""
    file = Path(path).expanduser().resolve()
    file.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{file}"


# `${mixed_precision:}` is trainer=gpu/ddp's precision: bf16 where the GPU computes it natively, else 32-true;
# `hparams_search=optuna` keeps its trials in `${sqlite_url:PATH}`.
OmegaConf.register_new_resolver("mixed_precision", mixed_precision, replace=True)
OmegaConf.register_new_resolver("sqlite_url", sqlite_url, replace=True)
# `hydra.run.dir: ${run_folder:RUNS,STAMP,${ckpt_path},${stage}}`: a new folder, or the run `ckpt_path=last` continues.
OmegaConf.register_new_resolver("run_folder", run_folder, replace=True)


@cache
def optional_groups() -> frozenset[str]:
    """The config groups `train.yaml` lists without a choice (`experiment: null`, `debug: null`, ...)."""
    defaults = OmegaConf.load(CONF_DIR / "train.yaml").defaults
    return frozenset(group for entry in defaults if isinstance(entry, DictConfig)
                     for group, choice in entry.items() if choice is None)


def accept_appended_groups(overrides: list[str] | tuple[str, ...]) -> list[str]:
    """`+experiment=gan` read as `experiment=gan`, for every group of `optional_groups()`.

    Hydra 1.3 refuses to append (`+`) a group that the defaults list already names, even with a null
    choice ("Multiple values for experiment"), and without the entry it refuses `experiment=gan`
    ("Could not override 'experiment'"). sepgan's experiments were chosen with `+experiment=NAME`
    before the entry existed; both spellings mean the same, so the `+` is dropped before Hydra reads it.
    """
    groups = optional_groups()
    return [o.lstrip("+") if o.lstrip("+").partition("=")[0] in groups else o for o in overrides]


def compose_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The training config with `overrides`, as `python -m sepgan.train` would compose it."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=accept_appended_groups(overrides))


def build_separator(cfg: DictConfig):
    """The separator a config describes (front-end + model), untrained."""
    return instantiate(cfg.model, frontend=instantiate(cfg.frontend), _convert_="all")
