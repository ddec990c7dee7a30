"""Training entry point: `python -m sepgan.train +experiment=NAME [key=value ...]`.

Hydra composes `conf/train.yaml` with the chosen groups and overrides; `stage` picks what runs:
`generator` (default), `discriminator`, `adversarial` (these two need `init_from=CHECKPOINT`), or
`gan` (all three in order). Each run gets its own folder and ends with a summary of the
validation figures each stage reached.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from sepgan import stages

log = logging.getLogger("sepgan.train")


def run(cfg: DictConfig) -> list[stages.StageResult]:
    """Run the configured stage(s) and write `results.json` in the run folder."""
    stage = cfg.get("stage", "generator")
    if stage == "gan":
        results = stages.run_gan(cfg)
    elif stage == "generator":
        results = [stages.run_generator(cfg)]
    elif stage == "discriminator":
        results = [stages.run_discriminator(cfg)]
    elif stage == "adversarial":
        results = [stages.run_adversarial(cfg)]
    else:
        raise ValueError(f"stage must be one of generator, discriminator, adversarial, gan; got '{stage}'")
    Path(cfg.paths.output_dir, "results.json").write_text(json.dumps(stages.as_dict(results), indent=2))
    return results


def avoid_ddp_in_sweeps(cfg: DictConfig) -> None:
    """Lightning's ddp re-launches the command line per rank, which inside `-m` re-runs the whole sweep."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN \
            and cfg.trainer.get("strategy") == "ddp":
        log.warning("trainer.strategy=ddp inside a multirun would re-run the sweep in every rank: using ddp_spawn")
        with open_dict(cfg):
            cfg.trainer.strategy = "ddp_spawn"


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    avoid_ddp_in_sweeps(cfg)
    results = run(cfg)
    print("\n" + stages.summary(results) + f"\nrun folder: {cfg.paths.output_dir}", flush=True)
    return results[-1].metrics.get("val/si_sdri")  # the objective for Hydra sweepers


if __name__ == "__main__":
    main()
