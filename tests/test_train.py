import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sepgan.commands.train import run
from sepgan.models import load_separator
from sepgan.training.stages import run_generator
from tests.conftest import SHARED_DATA, TINY

EXPERIMENTS = sorted(p.stem for p in (Path(__file__).parents[1] / "sepgan" / "conf" / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_fast_dev_run_of_every_experiment(make_cfg, experiment):
    result = run_generator(make_cfg(f"+experiment={experiment}", "+trainer.fast_dev_run=true"))
    assert result.steps == 1
    assert torch.isfinite(torch.tensor(result.metrics["val/si_sdri"]))


@pytest.mark.parametrize("overrides", [["model=model_b", "frontend=magnitude"], ["model=tfc_tdf", "loss=article"],
                                       ["loss.weights.ssim=1", "loss.weights.projection=1", "loss.weights.si_sdr=0.1",
                                        "loss.weights.huber_noise=1", "optim=sgd"]])
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
