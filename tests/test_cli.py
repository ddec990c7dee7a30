import pytest

from sepgan.cli import main
from sepgan.pretrained import DEFAULT_CHECKPOINT, default_checkpoint


def test_unknown_command_prints_usage(capsys):
    assert main(["frobnicate"]) == 2
    assert "usage: sepgan" in capsys.readouterr().err


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    assert "bench" in capsys.readouterr().err


@pytest.mark.skipif(DEFAULT_CHECKPOINT.exists(), reason="a model is shipped")
def test_missing_shipped_model_is_explained():
    with pytest.raises(FileNotFoundError, match="--checkpoint"):
        default_checkpoint()
