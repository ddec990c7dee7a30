"""Training at scale without GPUs: DDP as 2 CPU processes (gloo), Hydra launchers and the Optuna sweeper.

The end-to-end tests run `python -m sepgan.train` in a subprocess: Lightning's ddp starts the second
rank by re-running the command line, which must be the training entry point, not pytest.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DistributedSampler

from sepgan.training.config import build_separator
from sepgan.training.distributed import check_strategy, mixed_precision, starts_rank_processes, strategy_with_unused_parameters
from sepgan.training.stages import build_datamodule, run_generator, run_validation
from sepgan.commands.train import run
from tests.conftest import TINY

ROOT = Path(__file__).parents[1]
TRAINERS = sorted(p.stem for p in (ROOT / "sepgan" / "conf" / "trainer").glob("*.yaml"))


def train_cli(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """`python -m sepgan.train ARGS` from the repository, one thread per process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled", **(env or {})}
    out = subprocess.run([sys.executable, "-m", "sepgan.train", *args], capture_output=True, text=True,
                         timeout=900, cwd=ROOT, env=env)
    if check:
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out


def job_folders(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))


# ---- DDP on two CPU processes ---------------------------------------------------------------------


def test_ddp_sim_fit_gives_each_rank_its_own_share_of_the_data(tmp_path):
    out = train_cli("+experiment=tone", *TINY, "trainer=ddp_sim", "trainer.max_steps=2", "data.train_examples=8",
                    "+callbacks.probe._target_=tests.ddp_probe.RankProbe", f"paths.log_dir={tmp_path}")
    (run_folder,) = tmp_path.glob("tone/runs/*")  # the second rank wrote into the first one's folder
    assert (run_folder / "train_ddp_process_1.log").exists()
    ranks = [json.loads((run_folder / f"rank_{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 and r["backend"] == "gloo" for r in ranks)
    # 8 examples per epoch, 4 per rank: two steps of batch 2 each, and no example on both ranks
    assert len(ranks[0]["examples"]) == len(ranks[1]["examples"]) == 4
    assert not set(ranks[0]["examples"]) & set(ranks[1]["examples"])
    assert ranks[0]["weights"] == ranks[1]["weights"]  # gradients averaged: the replicas stay identical
    assert json.loads((run_folder / "results.json").read_text())[0]["steps"] == 2
    assert out.stdout.count("val SI-SDRi") == 1  # one summary, from rank 0


def test_validating_a_checkpoint_on_two_ranks_gives_the_single_process_figures(make_cfg, tmp_path):
    # A barely trained direct-mapping model: its SI-SDRi differs from example to example.
    checkpoint = run_generator(make_cfg("+experiment=tone", "model.output=direct", "trainer.max_steps=2",
                                        output_dir=tmp_path / "train")).checkpoint
    validate = ["+experiment=tone", "stage=validate", f"init_from={checkpoint}", "data.val_examples=6"]
    single = run_validation(make_cfg(*validate, output_dir=tmp_path / "single")).metrics
    train_cli(*TINY, *validate, "trainer=ddp_sim", f"paths.log_dir={tmp_path / 'ddp'}")
    (results,) = (tmp_path / "ddp").glob("tone/runs/*/results.json")
    two_ranks = json.loads(results.read_text())[0]["metrics"]
    for name in ("val/si_sdri", "val/si_sdr", "val/loss"):
        assert two_ranks[name] == pytest.approx(single[name], abs=0.01), name


def test_ddp_inside_a_multirun_runs_each_job_once(tmp_path):
    train_cli("-m", "+experiment=tone", *TINY, "trainer=ddp_sim", "trainer.max_steps=1",
              "optim.optimizer.lr=0.001,0.002", f"paths.log_dir={tmp_path}")
    (sweep,) = tmp_path.glob("tone/multiruns/*")  # a rank re-running the command line would start a second sweep
    assert not (tmp_path / "tone" / "runs").exists()
    jobs = job_folders(sweep)
    assert [job.name for job in jobs] == ["0", "1"]
    for job, lr in zip(jobs, (0.001, 0.002)):
        assert (job / "train_ddp_process_1.log").exists()  # each job did train on two ranks
        config = OmegaConf.load(job / "config.yaml")
        assert config.optim.optimizer.lr == lr and config.group == f"tone-{sweep.name}"
        assert json.loads((job / "results.json").read_text())[0]["steps"] == 1


@pytest.mark.parametrize("strategy", [["trainer.strategy=ddp_spawn"],
                                      ["trainer=ddp_sim", "trainer.strategy.start_method=spawn"]])
def test_spawned_ranks_are_refused_with_the_reason(make_cfg, strategy):
    with pytest.raises(ValueError, match="trainer.strategy.*Use trainer=ddp"):
        run(make_cfg("+experiment=tone", *strategy))


def test_which_trainers_start_rank_processes(make_cfg, monkeypatch):
    ddp_sim = make_cfg("trainer=ddp_sim").trainer
    assert starts_rank_processes(ddp_sim) and starts_rank_processes(make_cfg("trainer=ddp").trainer)
    assert not starts_rank_processes(make_cfg("trainer=cpu").trainer)
    assert not starts_rank_processes(make_cfg("trainer=ddp", "trainer.devices=1").trainer)
    check_strategy(ddp_sim)  # popen: accepted
    monkeypatch.setenv("SLURM_NTASKS", "2")  # SLURM started the ranks as its tasks
    monkeypatch.setenv("SLURM_JOB_NAME", "sweep")
    assert not starts_rank_processes(ddp_sim)


def test_adversarial_stage_tells_ddp_about_unused_parameters(make_cfg):
    assert strategy_with_unused_parameters(make_cfg("trainer=ddp").trainer) == "ddp_find_unused_parameters_true"
    assert strategy_with_unused_parameters(make_cfg("trainer=ddp_sim").trainer) == {"find_unused_parameters": True}
    assert strategy_with_unused_parameters(make_cfg("trainer=cpu").trainer) == "auto"


def test_ddp_sim_runs_the_gan_pipeline(tmp_path):
    from tests.test_gan import GAN  # the adversarial stage updates two networks after one forward

    train_cli(*TINY, *GAN, "trainer=ddp_sim", f"paths.log_dir={tmp_path}")
    (results,) = tmp_path.glob("gan/runs/*/results.json")
    assert [r["stage"] for r in json.loads(results.read_text())] == ["generator", "discriminator", "adversarial"]


# ---- data under DDP -----------------------------------------------------------------------------------


def test_ranks_draw_different_training_examples_from_the_same_generator_state(make_cfg):
    cfg = make_cfg()
    data = build_datamodule(cfg, build_separator(cfg))
    data.setup()
    train = data.datasets["train"]
    drawn = []
    for rank in (0, 1):
        torch.manual_seed(0)  # every rank is seeded alike (seed_everything), and without workers draws from it
        indices = list(DistributedSampler(train, num_replicas=2, rank=rank, shuffle=False))
        drawn.append(torch.stack([train[i]["mixture"] for i in indices]))
    assert not any(torch.equal(a, b) for a in drawn[0] for b in drawn[1])


def test_an_uneven_validation_split_is_named(make_cfg, caplog):
    cfg = make_cfg("data.val_examples=5")
    data = build_datamodule(cfg, build_separator(cfg))
    data.setup()
    data.trainer = type("TwoRanks", (), {"world_size": 2})()
    with caplog.at_level(logging.WARNING):
        data.val_dataloader()
    assert "data.val_examples=5 does not divide between 2 ranks" in caplog.text


# ---- precision ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("trainer", TRAINERS)
def test_every_trainer_config_resolves(make_cfg, trainer):
    config = OmegaConf.to_container(make_cfg(f"trainer={trainer}").trainer, resolve=True)
    assert config["_target_"] == "pytorch_lightning.Trainer"


def test_gpu_precision_follows_the_device(monkeypatch):
    assert mixed_precision() == "32-true"  # no GPU here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert mixed_precision() == "32-true"  # bf16 only emulated: float32 (fp16 trailed on a GPU)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert mixed_precision() == "bf16-mixed"


def test_mixed_precision_training_keeps_spectra_in_full_precision(make_cfg):
    # CPU autocast runs the U-Net in bf16; a direct-mapping output then feeds the inverse STFT.
    result = run_generator(make_cfg("+experiment=tone", "trainer.precision=bf16-mixed", "model.output=direct",
                                    "trainer.max_steps=1"))
    assert torch.isfinite(torch.tensor(result.metrics["val/si_sdri"]))


# ---- launchers and sweepers ---------------------------------------------------------------------------


def test_submitit_local_multirun_makes_two_finished_runs(tmp_path):
    train_cli("-m", "hydra/launcher=submitit_local", "+experiment=tone", *TINY, "trainer.max_steps=1",
              "optim.optimizer.lr=0.001,0.002", f"paths.log_dir={tmp_path}")
    (sweep,) = tmp_path.glob("tone/multiruns/*")
    jobs = job_folders(sweep)
    assert [job.name for job in jobs] == ["0", "1"]
    configs = [OmegaConf.load(job / "config.yaml") for job in jobs]
    assert {c.optim.optimizer.lr for c in configs} == {0.001, 0.002}
    assert {c.group for c in configs} == {f"tone-{sweep.name}"}  # one W&B group for the sweep
    assert all(json.loads((job / "results.json").read_text())[0]["steps"] == 1 for job in jobs)
    assert len(list(sweep.glob(".submitit/*/*_result.pkl"))) == 2  # submitit's record of two finished jobs


def test_submitit_slurm_submits_what_the_config_asks_for(tmp_path):
    # A cluster that refuses jobs: `srun` exists, `sbatch` keeps the script submitit wrote and says no.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "sbatch").write_text(f"#!/bin/sh\ncp \"$1\" {tmp_path}/job.sh\necho 'no jobs here' >&2\nexit 1\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    out = train_cli("-m", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu",
                    "hydra.launcher.gpus_per_node=4", "hydra.launcher.timeout_min=90", "hydra.launcher.mem_gb=48",
                    "+experiment=tone", "trainer=ddp", "optim.optimizer.lr=0.001,0.002", f"paths.log_dir={tmp_path}",
                    env={"PATH": f"{bin_dir}:{os.environ['PATH']}"}, check=False)
    assert out.returncode != 0 and "no jobs here" in out.stderr
    assert "deprecated" not in out.stderr
    script = (tmp_path / "job.sh").read_text()
    for line in ("--partition=gpu", "--gpus-per-node=4", "--ntasks-per-node=4", "--time=90", "--mem=48GB",
                 "--job-name=tone", "--array=0-1"):
        assert f"#SBATCH {line}" in script, line


def test_slurm_tasks_are_the_ddp_ranks(tmp_path):
    # tests/slurm_standin: sbatch, srun and sacct that run a job's tasks on this machine with SLURM's
    # environment. Lightning must take the two tasks as its ranks and start no process of its own.
    bin_dir = tmp_path / "bin"
    shutil.copytree(ROOT / "tests" / "slurm_standin", bin_dir)
    (bin_dir / "state").mkdir()
    train_cli("-m", "hydra/launcher=submitit_slurm", "hydra.launcher.gpus_per_node=2", "+experiment=tone", *TINY,
              "trainer=ddp_sim", "trainer.max_steps=2", "data.train_examples=8",
              "+callbacks.probe._target_=tests.ddp_probe.RankProbe", f"paths.log_dir={tmp_path / 'logs'}",
              env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    (job,) = tmp_path.glob("logs/tone/multiruns/*/0")
    ranks = [json.loads((job / f"rank_{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    assert not set(ranks[0]["examples"]) & set(ranks[1]["examples"]) and ranks[0]["weights"] == ranks[1]["weights"]
    assert not list(job.glob("train_ddp_process_*.log"))  # no rank started by Lightning
    assert json.loads((job / "results.json").read_text())[0]["steps"] == 2
    (state,) = (bin_dir / "state").iterdir()  # the stand-in sbatch records the job's end just after its tasks
    for _ in range(300):
        if state.read_text().strip() != "RUNNING":
            break
        time.sleep(0.1)
    assert state.read_text().strip() == "COMPLETED"


def test_optuna_search_writes_its_study_and_best_parameters_and_resumes(tmp_path):
    search = ["hparams_search=optuna", "+experiment=tone", *[o for o in TINY if "n_blocks" not in o],
              "model.unet.n_blocks=choice(3,5)", "trainer.max_steps=1", f"paths.log_dir={tmp_path}"]
    train_cli(*search, "hydra.sweeper.n_trials=2")
    storage = f"sqlite:///{tmp_path / 'tone' / 'optuna.db'}"
    trials = optuna.load_study(study_name="tone", storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    (sweep,) = tmp_path.glob("tone/multiruns/*")
    returned = sorted(json.loads((job / "results.json").read_text())[0]["metrics"]["val/si_sdri"]
                      for job in job_folders(sweep))
    assert sorted(t.value for t in trials) == pytest.approx(returned)  # each trial's value is its run's SI-SDRi
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert set(best.best_params) == {"optim.optimizer.lr", "loss.weights.mse", "loss.weights.projection",
                                     "model.unet.n_blocks"}
    assert best.best_value == pytest.approx(max(returned))

    train_cli(*search, "hydra.sweeper.n_trials=1")  # the same command again continues the study
    first, second, resumed = optuna.load_study(study_name="tone", storage=storage).trials
    assert resumed.state == optuna.trial.TrialState.COMPLETE
    assert resumed.params not in (first.params, second.params)  # a new trial, not the first one again
