"""Resuming: `last.ckpt` is always the latest state, `ckpt_path=last` continues the interrupted stage of the
newest run in its own folder, and "best" stays the best of the whole run."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from sepgan.commands.train import run
from sepgan.training.config import compose_config
from sepgan.training.stages import run_generator
from sepgan.training.systems.adversarial import AdversarialGuard
from tests.conftest import TINY

ROOT = Path(__file__).parents[1]
# Validation every 2 steps in every stage: 8 generator steps (4 epochs of 2 batches), 8 discriminator steps,
# 12 adversarial ones (6 batches: the adversarial stage counts both players' optimizer steps).
GAN = [*TINY, "+experiment=gan", "callbacks.validation_examples.count=0", "gan.discriminator.channels=[4,8]",
       "trainer.max_epochs=4", "gan.steps.discriminator=8", "gan.steps.adversarial=12", "gan.val_check_steps=2"]
FINAL_STEPS = {"1_generator": 8, "2_discriminator": 8, "3_adversarial": 12}
# The best checkpoint is the first one and never improves: monitoring the step, lowest first.
BEST_IS_FIRST = ["callbacks.model_checkpoint.monitor=step", "callbacks.model_checkpoint.mode=min"]


def step_of(checkpoint: Path) -> int:
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"]


def start_and_kill(log_dir: Path, output: Path, stage_folder: str, *extra: str) -> None:
    """Start the tiny GAN run and SIGKILL it as soon as `stage_folder` has saved its first last.ckpt."""
    with open(output, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sepgan.train", *GAN, f"paths.log_dir={log_dir}", *extra],
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 600
        while not list(log_dir.glob(f"gan/runs/*/{stage_folder}/checkpoints/last.ckpt")):
            assert proc.poll() is None, output.read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_gan_run_killed_in_each_stage_continues_where_its_last_checkpoint_was(tmp_path, capsys, train_main):
    logs = tmp_path / "logs"
    stages = list(FINAL_STEPS)
    start_and_kill(logs, tmp_path / "out0.log", stages[0])
    run_folder, = (logs / "gan" / "runs").iterdir()
    for index, stage in enumerate(stages):
        # what is on disk after the kill: the stages before this one finished, this one has a last.ckpt
        finished = json.loads((run_folder / "results.json").read_text())
        assert [r["stage"] for r in finished] == [s.split("_")[1] for s in stages[:index]]
        killed_at = step_of(run_folder / stage / "checkpoints" / "last.ckpt")
        assert 0 < killed_at < FINAL_STEPS[stage]
        expected = f"continuing from step {killed_at} of {run_folder / stage / 'checkpoints' / 'last.ckpt'}"
        if index + 1 < len(stages):  # resume, and kill again in the next stage
            output = tmp_path / f"out{index + 1}.log"
            start_and_kill(logs, output, stages[index + 1], "ckpt_path=last")
            text = output.read_text()
        else:  # the last resume runs to the end, in this process (quicker to start)
            train_main(*GAN, f"paths.log_dir={logs}", "ckpt_path=last")
            text = capsys.readouterr().out
        assert expected in text, text[-3000:]
        for done in stages[:index]:
            assert f"stage {done.split('_')[1]} finished before: skipped" in text
    assert [p.name for p in (logs / "gan" / "runs").iterdir()] == [run_folder.name]  # no new run folder
    table = text[text.index("stage           steps"):]
    for stage, steps in FINAL_STEPS.items():
        assert any(line.split()[:2] == [stage.split("_")[1], str(steps)] for line in table.splitlines()), table
        assert step_of(run_folder / stage / "checkpoints" / "last.ckpt") == steps
    assert [r["stage"] for r in json.loads((run_folder / "results.json").read_text())] == \
        ["generator", "discriminator", "adversarial"]


def test_last_checkpoint_holds_the_final_step_when_the_best_is_an_early_one(make_cfg, tmp_path):
    result = run_generator(make_cfg("+experiment=tone", "trainer.max_steps=6", *BEST_IS_FIRST))
    checkpoints = tmp_path / "run" / "checkpoints"
    assert result.steps == 6 and Path(result.checkpoint).name == "best-2.ckpt"
    assert step_of(checkpoints / "last.ckpt") == 6


def test_best_checkpoint_is_the_best_of_the_whole_run_after_a_resume(make_cfg, tmp_path, caplog):
    folder = tmp_path / "logs" / "tone" / "runs" / "first"
    first = run_generator(make_cfg("+experiment=tone", "trainer.max_steps=4", *BEST_IS_FIRST, output_dir=folder))
    assert Path(first.checkpoint).name == "best-2.ckpt"
    # ckpt_path=last continues the run in its own folder
    resumed = run(make_cfg("+experiment=tone", "trainer.max_steps=8", "ckpt_path=last", *BEST_IS_FIRST,
                           output_dir=tmp_path / "elsewhere"))[0]
    assert resumed.steps == 8 and resumed.checkpoint == first.checkpoint
    assert resumed.metrics["best_val/si_sdri"] == 2  # the monitored value: the step of the best
    assert not (tmp_path / "elsewhere").exists()
    assert "settings that differ from those it started with: trainer.max_steps: 4 -> 8" in caplog.text
    # ckpt_path=PATH starts a new folder, and still knows the best of the run it continues
    longer = run_generator(make_cfg("+experiment=tone", "trainer.max_steps=10", *BEST_IS_FIRST,
                                    f"ckpt_path={folder / 'checkpoints' / 'last.ckpt'}",
                                    output_dir=tmp_path / "longer"))
    assert longer.steps == 10 and longer.checkpoint == first.checkpoint
    assert not list((tmp_path / "longer" / "checkpoints").glob("best-*.ckpt"))


def test_metrics_of_a_resumed_stage_keep_the_steps_before_the_resume(make_cfg, tmp_path):
    run_generator(make_cfg("+experiment=tone", "trainer.max_steps=4", "trainer.log_every_n_steps=1"))
    run(make_cfg("+experiment=tone", "trainer.max_steps=6", "trainer.log_every_n_steps=1", "ckpt_path=last"))
    rows = (tmp_path / "run" / "csv" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    steps = [int(row.split(",")[header.index("step")]) for row in rows[1:]
             if row.split(",")[header.index("val/si_sdri")]]
    assert steps == sorted(steps) and len(steps) == 3  # the validations at steps 2, 4 and 6, once each


def test_a_finished_run_is_not_trained_again(make_cfg):
    first = run(make_cfg("+experiment=tone", "trainer.max_steps=2"))[0]
    again = run(make_cfg("+experiment=tone", "trainer.max_steps=2", "ckpt_path=last"))[0]
    assert again.checkpoint == first.checkpoint and again.steps == 2
    assert any("finished before the resume" in note for note in again.notes)


def test_sigterm_saves_a_checkpoint_and_says_how_to_continue(tmp_path):
    logs = tmp_path / "logs"
    command = [sys.executable, "-m", "sepgan.train", "+experiment=tone", *TINY, "trainer.max_steps=400",
               "data.train_examples=800", "trainer.log_every_n_steps=1", f"paths.log_dir={logs}"]
    with open(tmp_path / "out.log", "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        while not list(logs.glob("tone/runs/*/csv/metrics.csv")):  # written after the first step
            assert proc.poll() is None, (tmp_path / "out.log").read_text()[-3000:]
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=300) == 128 + signal.SIGTERM
    text = (tmp_path / "out.log").read_text()
    last, = logs.glob("tone/runs/*/checkpoints/last.ckpt")
    stopped = step_of(last)
    assert 0 < stopped < 400 and f"SIGTERM: stopped at step {stopped}, saved {last}" in text, text[-3000:]
    assert text.strip().splitlines()[-1].endswith("ckpt_path=last")


class SignalAtStep(pl.Callback):
    """Sends this process SIGINT after training step `step`, as Ctrl+C would."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def epochs_of_rows(run_folder: Path) -> tuple[list[int], list[int]]:
    """The epoch of every training step's row and of every validation's row in a run's metrics.csv."""
    rows = list(csv.DictReader(open(run_folder / "csv" / "metrics.csv")))
    return ([int(r["epoch"]) for r in rows if r.get("train/loss_step")],
            [int(r["epoch"]) for r in rows if r.get("val/si_sdri")])


def test_ctrl_c_stops_after_the_step_and_the_run_continues_exactly(tmp_path, capsys, train_main):
    # 2 epochs of 3 steps, validated at each epoch's end; Ctrl+C after step 2, in the first epoch
    common = ["+experiment=tone", *TINY, "callbacks.validation_examples.count=0", "data.train_examples=6",
              "trainer.max_epochs=2", "trainer.log_every_n_steps=1"]
    reference = run(compose_config([*common, f"paths.output_dir={tmp_path / 'reference'}",
                                    f"paths.log_dir={tmp_path / 'reference_logs'}"]))[0]
    logs = tmp_path / "logs"
    with pytest.raises(SystemExit) as stop:
        train_main(*common, f"paths.log_dir={logs}", "+callbacks.interrupt._target_=tests.test_resume.SignalAtStep",
                   "+callbacks.interrupt.step=2")
    assert stop.value.code == 128 + signal.SIGINT
    run_folder, = (logs / "tone" / "runs").iterdir()
    last = run_folder / "checkpoints" / "last.ckpt"
    err = capsys.readouterr().err
    assert f"SIGINT: stopped at step 2, saved {last}" in err and err.strip().endswith("ckpt_path=last"), err
    assert step_of(last) == 2

    train_main(*common, f"paths.log_dir={logs}", "ckpt_path=last")
    assert f"continued from step 2 ({last})" in capsys.readouterr().out
    resumed = json.loads((run_folder / "results.json").read_text())[0]
    assert resumed["steps"] == reference.steps == 6
    # every epoch has its 3 steps and its validation, as without the interruption
    assert epochs_of_rows(run_folder) == epochs_of_rows(tmp_path / "reference") == ([0, 0, 0, 1, 1, 1], [0, 1])


def test_the_adversarial_guard_keeps_its_state_across_a_resume():
    guard = AdversarialGuard(baseline=1.0, action="rollback", patience=2)
    guard.best_score, guard.best_state, guard.strikes = 2.0, {"w": torch.ones(2)}, 1
    guard.messages.append("below the baseline (1/2)")
    resumed = AdversarialGuard(baseline=1.0, action="rollback", patience=2)
    resumed.load_state_dict(guard.state_dict())
    resumed.on_fit_start(SimpleNamespace(), SimpleNamespace(state_dict=lambda: {"w": torch.zeros(2)}))
    assert resumed.best_score == 2.0 and torch.equal(resumed.best_state["w"], torch.ones(2))
    assert resumed.strikes == 1 and resumed.messages == ["below the baseline (1/2)"]
    # a guard that had fired stops the resumed stage before it trains (and rolls back at its end)
    resumed.fired, trainer = True, SimpleNamespace(should_stop=False)
    resumed.on_train_start(trainer, None)
    assert trainer.should_stop
