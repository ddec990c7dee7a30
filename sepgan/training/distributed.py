"""Several devices: which trainer settings start processes of their own, and which cannot work here.

Lightning's `ddp` starts ranks 1..N-1 by re-running the command line (rank 0 is the process
itself). That is what sepgan uses, because every rank then runs the whole stage and keeps its
state. Strategies that start their processes from Python (`ddp_spawn`, `ddp_fork`,
`start_method: spawn`) are refused: they hand back only the weights and the last metrics of each
`Trainer` call, while sepgan's stages call the Trainer several times and need what happened in
between (the adversarial guard's decisions, step counts, the loggers' files); spawning also copies
the whole data set into every process at every call. Tried: the pipeline failed in the CSV logger.

When a scheduler starts the ranks (SLURM tasks, torchrun), Lightning does not start any.
"""

from __future__ import annotations

import torch
from lightning_fabric.plugins.environments import LSFEnvironment, SLURMEnvironment, TorchElasticEnvironment
from omegaconf import DictConfig

MULTI_PROCESS_STRATEGIES = ("ddp", "fsdp", "deepspeed")  # Lightning starts a process per device for these
SPAWN_START_METHODS = ("spawn", "fork", "forkserver", "notebook")


def strategy_description(trainer_cfg: DictConfig) -> tuple[str, str | None]:
    """(name, start method) of the configured strategy: a Lightning name or a `_target_` class."""
    strategy = trainer_cfg.get("strategy", "auto")
    if isinstance(strategy, str):
        name = strategy.lower()
        method = next((m for m in SPAWN_START_METHODS if f"_{m}" in name), None)
        return name, method or ("popen" if name.startswith(MULTI_PROCESS_STRATEGIES) else None)
    target = str(strategy.get("_target_", "")).rsplit(".", 1)[-1].lower()
    return target.removesuffix("strategy"), strategy.get("start_method", "popen")


def check_strategy(trainer_cfg: DictConfig) -> None:
    """Refuse spawn-based strategies with a message that names the setting and the alternative."""
    name, method = strategy_description(trainer_cfg)
    if method in SPAWN_START_METHODS:
        raise ValueError(
            f"trainer.strategy: '{name}' with start method '{method}' is not supported: sepgan's stages call the "
            f"Trainer several times and keep state between the calls (guard decisions, step counts, logger files), "
            f"which spawned processes do not hand back. Use trainer=ddp (or trainer=ddp_sim on CPUs); inside a "
            f"sweep (-m) sepgan runs each such job as a run of its own, so ddp is safe there too")


def ranks_started_by_scheduler() -> bool:
    """True when a cluster scheduler or torchrun has started the rank processes (Lightning then starts none)."""
    return any(env.detect() for env in (SLURMEnvironment, TorchElasticEnvironment, LSFEnvironment))


def starts_rank_processes(trainer_cfg: DictConfig) -> bool:
    """True when Lightning would start processes for the other ranks by re-running the command line."""
    name, _ = strategy_description(trainer_cfg)
    several = str(trainer_cfg.get("devices", 1)) != "1" or int(trainer_cfg.get("num_nodes", 1)) > 1
    return name.startswith(MULTI_PROCESS_STRATEGIES) and several and not ranks_started_by_scheduler()


def strategy_with_unused_parameters(trainer_cfg: DictConfig) -> str | dict:
    """`trainer.strategy` with DDP told to expect parameters that get no gradient in a backward pass.

    The adversarial stage updates two networks in turn after one forward: each backward leaves the
    other network's parameters without a gradient, which DDP otherwise takes for a bug.
    """
    strategy = trainer_cfg.get("strategy", "auto")
    if isinstance(strategy, str):
        return "ddp_find_unused_parameters_true" if strategy.lower() == "ddp" else strategy
    return {"find_unused_parameters": True} if strategy_description(trainer_cfg)[0] == "ddp" else {}


def mixed_precision() -> str:
    """The precision of `trainer=gpu` and `trainer=ddp`: bf16 mixed precision on GPUs that compute it
    natively, float32 everywhere else.

    Only the U-Net's body runs in 16 bits (`sepgan.numerics.full_precision` keeps spectra, masks and losses
    in float32), and a run that goes non-finite stops at once and says where. On an H200 the shipped recipe
    in bf16 ended +0.04 to +0.21 dB from float32 on the same steps (three runs), fp16 with loss scaling
    -0.27 and +0.19; on the short GAN pipeline four seeds left fp16 0.37 dB behind on average, about one
    standard error (0.33 dB): not shown to differ, nor to be equal (README, "Mixed precision"). So GPUs
    without native bf16 get float32 rather than fp16 (`trainer.precision=16-mixed` still asks for it)."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False):
        return "bf16-mixed"
    return "32-true"
