import pytest

from sepgan.commands import main
from sepgan.pretrained import default_checkpoint


def test_unknown_command_prints_usage(capsys):
    assert main(["frobnicate"]) == 2
    assert "usage: sepgan" in capsys.readouterr().err


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    assert "bench" in capsys.readouterr().err


def test_missing_shipped_model_is_explained(monkeypatch, tmp_path):
    monkeypatch.setattr("sepgan.pretrained.DEFAULT_CHECKPOINT", tmp_path / "none.ckpt")
    with pytest.raises(FileNotFoundError, match="--checkpoint"):
        default_checkpoint()
