"""Config errors: one short message naming the key and what is allowed, before any folder or data."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sepgan.training.checks import ConfigError, check_config
from tests.conftest import TINY

CASES = [  # override, the start of the message
    ("data.root=/nonexistent", "data.root='/nonexistent': the folder does not exist"),
    ("data.root={empty}", "data.root='{empty}': holds neither speech/librispeech_train-clean-100/ (data.speech_subdir) "
                          "nor noise/ (data.noise_subdir)"),
    ("data.noise_classes=[nope]", "data.noise_classes=['nope']: unknown class(es) nope; classes in the embedded "
                                  "synthetic set: tone, air_conditioner, dog_bark, siren"),
    ("data.noise_classes=dog_bark", "data.noise_classes='dog_bark': expected a list of class names, e.g. [dog_bark]"),
    ("optim.optimizer.lr=abc", "optim.optimizer.lr='abc': expected a number > 0"),
    ("data.batch_size=2.5", "data.batch_size=2.5: expected a whole number >= 1"),
    ("model.unet.n_blocks=4", "model.unet.n_blocks=4: expected an odd number from 3 to 17"),
    ("model.unet.n_blocks=19", "model.unet.n_blocks=19: expected an odd number from 3 to 17"),
    ("frontend.window=hamming", "frontend.window must be one of hann, sine, got 'hamming'"),
    ("gan.objective=wgan", "gan.objective='wgan': expected one of bce, hinge, lsgan"),
    ("stage=pretrain", "stage='pretrain': expected one of generator, discriminator, adversarial, gan, validate"),
    ("ckpt_path=last", "ckpt_path=last: no stage=generator run of 'demo'"),
    ("init_weights=/nonexistent.ckpt", "init_weights='/nonexistent.ckpt': no such checkpoint file"),
    ("freeze_separator=true", "freeze_separator=true trains only the noise classifier: set loss.weights.noise_class"),
]


@pytest.fixture
def train(train_main):
    """The training command with the tiny demo settings, in this process; its exit code."""

    def _train(log_dir: Path, *overrides: str) -> int:
        with pytest.raises(SystemExit) as stop:
            train_main("+experiment=demo", *TINY, f"paths.log_dir={log_dir}", *overrides)
        return stop.value.code

    return _train


@pytest.mark.parametrize(("override", "message"), CASES)
def test_config_error_is_one_short_message_and_leaves_no_folder(override, message, train, tmp_path, capsys,
                                                                 monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    code = train(tmp_path / "logs", override.format(empty=empty), "trainer.max_steps=1")
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("config error: " + message.format(empty=empty)), err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "logs").exists()  # Hydra's run folder was removed, and the folders above it


def test_every_problem_is_listed(make_cfg):
    with pytest.raises(ConfigError) as error:
        check_config(make_cfg("optim.optimizer.lr=abc", "gan.guard.patience=0", "data.snr_db=[10,-5]"))
    assert sorted(p.split("=")[0] for p in error.value.problems) == ["data.snr_db", "gan.guard.patience",
                                                                     "optim.optimizer.lr"]


def test_real_folders_and_classes_are_checked(make_cfg, tmp_path):
    root = tmp_path / "data"
    (root / "speech" / "librispeech_train-clean-100").mkdir(parents=True)
    (root / "noise" / "dog_bark").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"data.root: LibriSpeech: no audio files"):
        check_config(make_cfg(f"data.root={root}"))
    with pytest.raises(ConfigError, match=r"data.root='.*': holds neither speech/librispeech_train-clean-100/"):
        check_config(make_cfg(f"data.root={tmp_path}"))


def test_later_stages_need_a_checkpoint_and_gan_resumes_whole_runs(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="init_from: stage=adversarial needs a generator checkpoint"):
        check_config(make_cfg("stage=adversarial"))
    (tmp_path / "x.ckpt").write_bytes(b"")
    with pytest.raises(ConfigError, match="stage=gan continues whole runs: ckpt_path=last"):
        check_config(make_cfg("stage=gan", f"ckpt_path={tmp_path / 'x.ckpt'}"))


def test_a_config_error_keeps_the_folder_of_the_run_it_would_continue(train, tmp_path, capsys):
    run = tmp_path / "logs" / "demo" / "runs" / "earlier"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("stage: generator\n")
    assert train(tmp_path / "logs", "ckpt_path=last", "optim.optimizer.lr=abc") == 2
    assert "optim.optimizer.lr='abc'" in capsys.readouterr().err
    assert (run / "config.yaml").exists()


def test_command_line_prints_the_message_alone_and_exits_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    out = subprocess.run([sys.executable, "-m", "sepgan.train", "+experiment=demo", *TINY, "optim.optimizer.lr=abc",
                          f"paths.log_dir={tmp_path / 'logs'}"], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).parents[1], env=env)
    assert out.returncode == 2
    assert out.stderr.strip() == "config error: optim.optimizer.lr='abc': expected a number > 0", out.stderr[-2000:]
    assert not (tmp_path / "logs").exists()
