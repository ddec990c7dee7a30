"""A stage that goes non-finite stops at once, says where, and hands no checkpoint on."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sepgan import losses
from sepgan.models.checkpoints import read_checkpoint
from sepgan.training import stages
from tests.conftest import TINY

GAN = ["+experiment=gan", "gan.steps.discriminator=3", "gan.steps.adversarial=6", "gan.val_check_steps=2",
       "trainer.max_steps=3", "gan.discriminator.channels=[4,8]"]


def nan_from_call(fn, k: int, gradient_only: bool = False):
    """`fn` whose k-th call with gradients on (a training step, not a validation) and every later one is NaN.

    With `gradient_only` the value stays finite and only its gradient is NaN, as sqrt(re² + im²) did at
    exact zeros under bf16.
    """
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        value = fn(*args, **kwargs)
        if not torch.is_grad_enabled():
            return value
        calls["n"] += 1
        if calls["n"] < k:
            return value
        poison = torch.sqrt(value * 0.0)  # 0 forward; d sqrt/dx at 0 is inf, times 0: NaN backward
        return value + poison if gradient_only else value * float("nan")

    return wrapped


def every_checkpoint_is_finite(folder: Path) -> list[Path]:
    found = sorted(folder.rglob("*.ckpt"))
    for path in found:
        for name, tensor in read_checkpoint(path)["state_dict"].items():
            assert not tensor.is_floating_point() or torch.isfinite(tensor).all(), f"{path}: {name}"
    return found


def test_generator_stage_stops_at_a_nan_loss_term_and_hands_nothing_on(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(losses, "si_sdr_loss", nan_from_call(losses.si_sdr_loss, 3))
    result = stages.run_generator(make_cfg("+experiment=tone", "trainer.max_steps=6", "+trainer.val_check_interval=1",
                                           "trainer.check_val_every_n_epoch=null"))
    assert result.failure and result.checkpoint is None and result.steps == 2
    assert "generator stage, step 2" in result.failure and "'si_sdr' = nan" in result.failure
    assert "generator" in result.failure.split("step 2")[1]
    # Validations at steps 1 and 2 saved finite checkpoints; nothing was saved from the NaN on.
    saved = every_checkpoint_is_finite(tmp_path / "run")
    assert saved and any("not handed on" in note for note in result.notes)
    summary = stages.summary([result])
    assert "FAILED" in summary and "step 2" in summary


def test_a_nan_gradient_from_finite_losses_is_traced_to_its_term(make_cfg, monkeypatch):
    monkeypatch.setattr(losses, "si_sdr_loss", nan_from_call(losses.si_sdr_loss, 2, gradient_only=True))
    result = stages.run_generator(make_cfg("+experiment=tone", "loss.weights.mse=1", "trainer.max_steps=4"))
    assert result.failure and result.steps == 1
    assert "step 1" in result.failure and "gradient of the generator from loss term 'si_sdr'" in result.failure
    assert "'mse' = " in result.failure  # the finite terms are shown with their values


@pytest.mark.parametrize("network", ["generator", "discriminator"])
def test_adversarial_stage_stops_naming_the_network(make_cfg, tmp_path, monkeypatch, network):
    if network == "generator":
        # training calls before the adversarial stage: 3 generator steps (the discriminator stage computes no si_sdr)
        monkeypatch.setattr(losses, "si_sdr_loss", nan_from_call(losses.si_sdr_loss, 3 + 2))
        term = "'si_sdr' = nan"
    else:
        lsgan = losses.ADVERSARIAL_OBJECTIVES["lsgan"]
        poisoned = dataclasses.replace(lsgan, discriminator=nan_from_call(lsgan.discriminator, 3 + 2))
        monkeypatch.setitem(losses.ADVERSARIAL_OBJECTIVES, "lsgan", poisoned)
        term = "'lsgan' = nan"
    results = stages.run_gan(make_cfg(*GAN))
    assert [r.stage for r in results] == ["generator", "discriminator", "adversarial"]
    assert results[0].failure is None and results[1].failure is None
    failure = results[2].failure
    assert failure and failure.startswith("adversarial stage, step ") and term in failure
    assert f"of the {network}" in failure
    assert results[2].checkpoint is None and not (tmp_path / "run" / "3_adversarial" / "checkpoints" / "final.ckpt").exists()
    every_checkpoint_is_finite(tmp_path / "run")


def test_a_failed_generator_stage_ends_the_pipeline(make_cfg, monkeypatch):
    monkeypatch.setattr(losses, "si_sdr_loss", nan_from_call(losses.si_sdr_loss, 1))
    results = stages.run_gan(make_cfg(*GAN))
    assert [r.stage for r in results] == ["generator"] and "step 0" in results[0].failure


def test_nan_in_validation_stops_before_the_checkpoint_callback(make_cfg, tmp_path, monkeypatch):
    from sepgan.training.systems import generator

    calls = {"n": 0}
    real = generator.si_sdr

    def nan_in_second_validation(estimate, reference):
        calls["n"] += 1
        value = real(estimate, reference)
        return value * float("nan") if calls["n"] > 4 else value  # sanity check + first validation: 2 calls each

    monkeypatch.setattr(generator, "si_sdr", nan_in_second_validation)
    result = stages.run_generator(make_cfg("+experiment=tone", "trainer.max_steps=4", "+trainer.val_check_interval=1",
                                           "trainer.check_val_every_n_epoch=null", "data.val_examples=2"))
    assert result.failure and "validation at step 2" in result.failure and "'si_sdr'" in result.failure
    every_checkpoint_is_finite(tmp_path / "run")
    assert not list((tmp_path / "run" / "checkpoints").glob("best-step=2*"))


def test_the_command_exits_non_zero_with_the_failure_in_its_summary(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "sepgan.train", "+experiment=tone", *TINY, "trainer.max_steps=20",
         "optim.optimizer.lr=1e30", f"paths.log_dir={tmp_path}"],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1],
    )
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    assert "FAILED" in out.stdout and "generator stage, step" in out.stdout
