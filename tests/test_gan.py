import json
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from sepgan.training import stages
from sepgan.data import SeparationDataModule
from sepgan.losses import ADVERSARIAL_OBJECTIVES, SeparationLoss
from sepgan.models import Discriminator, Separator, load_separator
from sepgan.audio import FrontEnd
from sepgan.models.checkpoints import read_checkpoint
from sepgan.training.systems.adversarial import AdversarialSystem
from tests.conftest import TINY

GAN = ["+experiment=gan", "gan.steps.discriminator=2", "gan.steps.adversarial=2", "gan.val_check_steps=1",
       "trainer.max_steps=2", "gan.discriminator.channels=[4,8]"]


@pytest.fixture
def generator_checkpoint(make_cfg, tmp_path):
    """A barely trained tiny generator: its estimates are easy to tell from clean speech."""
    return stages.run_generator(make_cfg("+experiment=gan", "trainer.max_steps=1",
                                         output_dir=tmp_path / "generator")).checkpoint


def separator_state(path):
    return {k: v for k, v in read_checkpoint(path)["state_dict"].items() if k.startswith("separator.")}


def test_pipeline_runs_three_stages_and_hands_checkpoints_on(make_cfg, tmp_path, monkeypatch):
    loaded = []
    original = stages.load_discriminator
    monkeypatch.setattr(stages, "load_discriminator", lambda p: loaded.append(p) or original(p))
    results = stages.run_gan(make_cfg(*GAN))
    assert [r.stage for r in results] == ["generator", "discriminator", "adversarial"]
    generator, discriminator, adversarial = results
    assert Path(generator.checkpoint).parent == tmp_path / "run" / "1_generator" / "checkpoints"
    # the frozen generator inside the discriminator stage is the stage-1 checkpoint, unchanged
    first, second = separator_state(generator.checkpoint), separator_state(discriminator.checkpoint)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert loaded == [discriminator.checkpoint]
    assert Path(adversarial.checkpoint).exists() and "3_adversarial" in adversarial.checkpoint
    assert "baseline_val/si_sdri" in adversarial.metrics and "val/disc/accuracy" in adversarial.metrics
    assert "val SI-SDRi" in stages.summary(results) and "adversarial" in stages.summary(results)


def test_discriminator_learns_to_tell_estimates_from_speech(make_cfg, generator_checkpoint):
    cfg = make_cfg("+experiment=gan", "stage=discriminator", f"init_from={generator_checkpoint}",
                   "gan.steps.discriminator=100", "gan.val_check_steps=100", "data.val_examples=16",
                   "gan.discriminator_optimizer.lr=1e-3")
    result = stages.run_discriminator(cfg)
    assert result.metrics["val/disc/accuracy"] > 0.75


def test_discriminator_stage_stops_early_on_its_own_accuracy(make_cfg, generator_checkpoint):
    # early stopping watches val/disc/accuracy there, as the checkpoints do (val/si_sdri is never logged);
    # an accuracy cannot rise by 2, so the second validation stops it
    cfg = make_cfg("+experiment=gan", "stage=discriminator", f"init_from={generator_checkpoint}",
                   "callbacks=[default,early_stopping]", "callbacks.early_stopping.patience=1",
                   "callbacks.early_stopping.min_delta=2", "gan.steps.discriminator=6", "gan.val_check_steps=1")
    assert stages.run_discriminator(cfg).steps == 2


def test_adversarial_step_changes_both_networks():
    torch.manual_seed(0)
    frontend = FrontEnd(8000, 256, 64)
    separator = Separator(frontend, unet=dict(n_blocks=3, channels=4))
    discriminator = Discriminator(frontend.channels, channels=[4, 8])
    system = AdversarialSystem(separator, SeparationLoss(dict(si_sdr=1.0, adversarial=0.1, feature_matching=0.1)),
                               lambda params: torch.optim.Adam(params, 1e-3), discriminator, "hinge",
                               lambda params: torch.optim.Adam(params, 1e-3), disc_steps=2)
    before = {k: v.clone() for k, v in system.state_dict().items()}
    data = SeparationDataModule(8000, segment_seconds=0.5, batch_size=2, num_workers=0, train_examples=2,
                                val_examples=2, synthetic_speakers=4, synthetic_utterances=1,
                                synthetic_noise_recordings=3, synthetic_seconds=1.0)
    pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, limit_val_batches=0).fit(system, datamodule=data)
    changed = {k for k, v in system.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("separator.net.") for k in changed)
    assert any(k.startswith("discriminator.") for k in changed)


@pytest.mark.parametrize("name", sorted(ADVERSARIAL_OBJECTIVES))
def test_objectives_reward_the_right_player(name):
    objective = ADVERSARIAL_OBJECTIVES[name]
    confident_real, confident_fake = torch.full((4,), 3.0), torch.full((4,), -3.0)
    assert objective.discriminator(confident_real, confident_fake) < objective.discriminator(confident_fake, confident_real)
    assert objective.generator(confident_real) < objective.generator(confident_fake)
    assert objective.says_real(confident_real).all() and not objective.says_real(confident_fake).any()


@pytest.fixture
def wrecking_adversarial_steps(monkeypatch):
    """Force a degradation: after every adversarial training step, scramble the generator's output layer."""
    step = AdversarialSystem.training_step

    def wrecking_step(self, batch, batch_idx):
        step(self, batch, batch_idx)
        with torch.no_grad():
            self.separator.net.last.weight.normal_(0, 10.0)

    monkeypatch.setattr(AdversarialSystem, "training_step", wrecking_step)


def test_guard_rolls_back_a_forced_degradation(make_cfg, generator_checkpoint, wrecking_adversarial_steps):
    cfg = make_cfg("+experiment=gan", "stage=adversarial", f"init_from={generator_checkpoint}",
                   "gan.steps.adversarial=3", "gan.val_check_steps=1", "gan.guard.patience=1",
                   "gan.guard.action=rollback")
    result = stages.run_adversarial(cfg)
    assert any("guard fired (rollback)" in note for note in result.notes)
    assert any("rolled back" in note for note in result.notes)
    assert result.steps < 3
    assert result.metrics["val/si_sdri"] == pytest.approx(result.metrics["baseline_val/si_sdri"], abs=1e-3)
    restored, original = load_separator(result.checkpoint), load_separator(generator_checkpoint)
    for (name, a), (_, b) in zip(restored.state_dict().items(), original.state_dict().items()):
        assert torch.equal(a, b), name


def test_guard_only_warns_when_asked(make_cfg, generator_checkpoint, wrecking_adversarial_steps):
    cfg = make_cfg("+experiment=gan", "stage=adversarial", f"init_from={generator_checkpoint}",
                   "gan.steps.adversarial=2", "gan.val_check_steps=1", "gan.guard.action=warn")
    result = stages.run_adversarial(cfg)
    assert result.steps == 2
    assert any("ends WORSE than the pretrained generator" in note for note in result.notes)


def test_later_stages_need_a_generator_checkpoint(make_cfg):
    with pytest.raises(ValueError, match="init_from"):
        stages.run_discriminator(make_cfg("+experiment=gan", "stage=discriminator"))


def test_multirun_sweep_makes_one_folder_per_value(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "sepgan.train", "-m", *TINY, *GAN, "loss.weights.adversarial=0.001,0.1",
         f"paths.log_dir={tmp_path}"],
        capture_output=True, text=True, timeout=900, cwd=Path(__file__).parents[1],
    )
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = sorted(tmp_path.glob("gan/multiruns/*/*/results.json"))
    assert len(jobs) == 2 and jobs[0].parent != jobs[1].parent
    weights = {OmegaConf.load(job.parent / "config.yaml").loss.weights.adversarial for job in jobs}
    assert weights == {0.001, 0.1}
    for job in jobs:
        assert [r["stage"] for r in json.loads(job.read_text())] == ["generator", "discriminator", "adversarial"]
