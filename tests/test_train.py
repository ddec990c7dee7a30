import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sepgan.commands.train import objective, run
from sepgan.models import load_separator
from sepgan.training.config import accept_appended_groups, compose_config
from sepgan.training.stages import run_generator
from tests.conftest import SHARED_DATA, TINY

EXPERIMENTS = sorted(p.stem for p in (Path(__file__).parents[1] / "sepgan" / "conf" / "experiment").glob("*.yaml"))


# Two-speaker mixtures need two speakers in each of the three splits.
EXTRA = {"two_speakers": ["data.synthetic_speakers=8", "data.val_fraction=0.25", "data.test_fraction=0.25"]}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_fast_dev_run_of_every_experiment(make_cfg, experiment):
    result = run_generator(make_cfg(f"+experiment={experiment}", "+trainer.fast_dev_run=true",
                                    *EXTRA.get(experiment, [])))
    assert result.steps == 1
    assert torch.isfinite(torch.tensor(result.metrics["val/si_sdri"]))


@pytest.mark.parametrize("overrides", [["model=model_b", "frontend=magnitude"], ["model=tfc_tdf", "loss=article"],
                                       ["loss.weights.ssim=1", "loss.weights.projection=1", "loss.weights.si_sdr=0.1",
                                        "loss.weights.huber_noise=1", "optim=sgd"],
                                       ["model=small_dilated", "loss=si_sdr_mrstft"]])
def test_model_and_loss_variants_train(make_cfg, overrides):
    result = run_generator(make_cfg("+experiment=dog_bark", "+trainer.fast_dev_run=true", *overrides))
    assert result.steps == 1


def test_run_saves_config_and_checkpoints_and_resume_continues(make_cfg, tmp_path):
    first = run_generator(make_cfg("+experiment=tone", "trainer.max_steps=2", output_dir=tmp_path / "logs/tone/runs/a"))
    assert first.steps == 2
    folder = tmp_path / "logs" / "tone" / "runs" / "a"
    assert (folder / "config.yaml").read_text().count("noise_classes") == 1
    assert (folder / "checkpoints" / "last.ckpt").exists() and Path(first.checkpoint).exists()
    assert list((folder / "csv").glob("examples/step_*/val_example_0_estimate.wav"))
    model = load_separator(first.checkpoint)
    assert model.separate(torch.randn(8000)).shape == (8000,)

    # ckpt_path=last continues the newest run of the experiment, in its own folder.
    second = run(make_cfg("+experiment=tone", "trainer.max_steps=4", "ckpt_path=last",
                          output_dir=tmp_path / "logs/tone/runs/b"))[0]
    assert second.steps == 4 and any("continued from step 2" in note for note in second.notes)
    assert not (tmp_path / "logs/tone/runs/b").exists()


def test_ckpt_last_without_a_previous_run_is_explained(make_cfg):
    with pytest.raises(FileNotFoundError, match="no stage=generator run of 'tone' .* to continue"):
        run(make_cfg("+experiment=tone", "ckpt_path=last"))


def test_window_longer_than_segment_is_explained(make_cfg):
    with pytest.raises(ValueError, match="n_fft"):
        run_generator(make_cfg("frontend.n_fft=16384", "frontend.hop_length=4096"))


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="../shared/data is not beside the repository")
def test_real_recordings_train(make_cfg):
    result = run_generator(make_cfg("+experiment=dog_bark", f"data.root={SHARED_DATA}", "trainer.max_steps=2"))
    assert result.steps == 2


def test_command_line_entry_point_prints_si_sdri(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "sepgan.train", "+experiment=tone", *TINY, "trainer.max_steps=1",
         f"paths.log_dir={tmp_path}"],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1],
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "val SI-SDRi" in out.stdout and "generator" in out.stdout
    assert list(tmp_path.glob("tone/runs/*/config.yaml"))


def test_wandb_without_a_key_logs_offline(make_cfg, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    run_generator(make_cfg("+experiment=tone", "logger=csv_wandb", "trainer.max_steps=1"))
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert runs and list(runs[0].glob("*.wandb"))


def test_tensorboard_gets_events(make_cfg, tmp_path):
    run_generator(make_cfg("+experiment=tone", "logger=tensorboard", "trainer.max_steps=1"))
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_generator_can_start_from_a_checkpoint(make_cfg, tmp_path):
    first = run_generator(make_cfg("+experiment=tone", "trainer.max_steps=1", output_dir=tmp_path / "a"))
    start = load_separator(first.checkpoint)
    # A different front-end in the config does not matter: the checkpoint's own is used.
    second = run_generator(make_cfg("+experiment=tone", "trainer.max_steps=1", f"init_from={first.checkpoint}",
                                    "frontend=article", output_dir=tmp_path / "b"))
    tuned = load_separator(second.checkpoint)
    assert tuned.config == start.config
    assert any(not torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), start.state_dict().values()))


# ---- conventions of the Lightning-Hydra template ------------------------------------------------------


def test_experiment_is_chosen_with_or_without_a_plus():
    assert compose_config(["experiment=gan"]) == compose_config(["+experiment=gan"])
    assert compose_config(["experiment=gan"]).stage == "gan"  # the experiment wins over train.yaml
    assert compose_config(["debug=limit", "+experiment=tone"]).trainer.limit_train_batches == 10
    assert accept_appended_groups(["+experiment=gan", "++debug=limit", "+trainer.fast_dev_run=true",
                                   "+callbacks.probe._target_=x.Y"]) == \
        ["experiment=gan", "debug=limit", "+trainer.fast_dev_run=true", "+callbacks.probe._target_=x.Y"]


def test_gan_pipeline_fast_dev_run_from_the_command_line_then_test(tmp_path):
    """`experiment=` without a plus, debug=fast_dev_run through all three stages, test_after_training."""
    out = subprocess.run(
        [sys.executable, "-m", "sepgan.train", "experiment=gan", "debug=fast_dev_run", *TINY,
         "data.segment_seconds=1.0", "gan.discriminator.channels=[4,8]", "test_after_training=true",
         f"paths.log_dir={tmp_path}"],
        capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[1],
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = tmp_path.glob("gan/runs/*")
    results = json.loads((run / "results.json").read_text())
    assert [r["stage"] for r in results] == ["generator", "discriminator", "adversarial", "test"]
    # fast_dev_run wins over the step counts the GAN stages set; each stage still hands its weights on
    assert all(0 < r["steps"] <= 2 for r in results[:3])  # manual optimisation counts both players' steps
    handed_on = [Path(r["checkpoint"]).relative_to(run).as_posix() for r in results[:3]]
    assert handed_on == [f"{i}_{r['stage']}/checkpoints/final.ckpt" for i, r in enumerate(results[:3], 1)]
    test = results[-1]
    assert test["checkpoint"] == results[-2]["checkpoint"]  # the pipeline's final generator is what is scored
    figures = test["metrics"]
    assert set(figures) == {"test/si_sdr", "test/si_sdri", "test/stoi", "test/noisy/si_sdr", "test/noisy/si_sdri",
                            "test/noisy/stoi"}
    assert figures["test/si_sdri"] == pytest.approx(figures["test/si_sdr"] - figures["test/noisy/si_sdr"], abs=1e-6)
    summary = json.loads((run / "test" / "summary.json").read_text())
    assert summary["files"] == 2
    assert summary["methods"]["model"]["si_sdr"]["mean"] == pytest.approx(figures["test/si_sdr"])
    assert f"test           SI-SDR {figures['test/si_sdr']:.2f} dB (noisy input" in out.stdout


def test_optimized_metric_is_read_from_the_last_stage_that_reports_it():
    results = [{"stage": "generator", "metrics": {"val/si_sdri": 1.0, "best_val/si_sdri": 2.0}},
               {"stage": "adversarial", "metrics": {"val/si_sdri": 3.0, "val/loss": -3.0}},
               {"stage": "test", "metrics": {"test/si_sdri": 4.0}}]
    assert objective(results, "val/si_sdri") == 3.0
    assert objective(results, "best_val/si_sdri") == 2.0
    assert objective(results, "test/si_sdri") == 4.0
    with pytest.raises(KeyError, match=r"test/stoi is not among .*val/loss.*test_after_training=true"):
        objective(results, "test/stoi")


def test_callbacks_none_trains_and_still_hands_a_checkpoint_on(tmp_path):
    tiny = [o for o in TINY if not o.startswith("callbacks.")]
    cfg = compose_config([*tiny, "+experiment=tone", "callbacks=none", "trainer.max_steps=2",
                          f"paths.output_dir={tmp_path}", f"paths.log_dir={tmp_path / 'logs'}"])
    assert dict(cfg.callbacks) == {}
    result = run_generator(cfg)
    assert result.steps == 2 and Path(result.checkpoint).exists()
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()  # resumable whatever callbacks are configured
    assert not list(tmp_path.glob("**/examples"))


def test_early_stopping_ends_training_when_validation_stops_improving(make_cfg):
    # 2 steps an epoch; the second validation is not 100 dB better than the first: stop after it
    result = run_generator(make_cfg("+experiment=tone", "callbacks=[default,early_stopping]", "trainer.max_epochs=10",
                                    "callbacks.early_stopping.patience=1", "callbacks.early_stopping.min_delta=100"))
    assert result.steps == 4


DEBUG = sorted(p.stem for p in (Path(__file__).parents[1] / "sepgan" / "conf" / "debug").glob("*.yaml"))


@pytest.mark.parametrize("debug", DEBUG)
def test_every_debug_config_composes_into_a_trainer(make_cfg, debug):
    from hydra.utils import instantiate

    cfg = make_cfg("+experiment=gan", f"debug={debug}")
    assert cfg.paths.log_dir.endswith("logs")  # the command line's paths.log_dir wins over debug's logs/debug
    trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
    assert trainer.max_epochs >= 1


def test_debug_overfit_repeats_the_same_training_mixtures(make_cfg):
    from sepgan.training.config import build_separator
    from sepgan.training.stages import build_datamodule

    for overrides, same in ((["debug=overfit"], True), ([], False)):
        cfg = make_cfg(*overrides)
        data = build_datamodule(cfg, build_separator(cfg))
        data.setup()
        first, again = (data.datasets["train"][0]["mixture"] for _ in range(2))
        assert torch.equal(first, again) == same


def test_debug_profiler_writes_a_report_in_the_run_folder(make_cfg, tmp_path):
    run_generator(make_cfg("+experiment=tone", "debug=profiler", "trainer.max_steps=2"))
    assert "run_training_epoch" in (tmp_path / "run" / "fit-profile.txt").read_text()


def test_init_weights_from_another_front_end_warns_and_names_the_setting(make_cfg, tmp_path, caplog):
    """Weights trained on Hann spectrograms start a sine-window model: the run says the start is not that model."""
    from sepgan.training.config import build_separator
    from tests.conftest import save_checkpoint

    save_checkpoint(build_separator(make_cfg("experiment=demo")), tmp_path / "hann.ckpt")
    with caplog.at_level("WARNING", logger="sepgan"):
        run_generator(make_cfg("experiment=demo", f"init_weights={tmp_path / 'hann.ckpt'}", "frontend.window=sine",
                               "trainer.max_steps=1"))
    assert "frontend.window: hann -> sine" in caplog.text
