import subprocess
import sys

import pytest

import sepgan
from sepgan.commands import COMMANDS, main
from sepgan.pretrained import default_checkpoint


def test_unknown_command_prints_usage(capsys):
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "usage: sepgan" in err and "unknown command 'frobnicate'" in err
    assert main([]) == 2
    assert "no command given" in capsys.readouterr().err


def test_help_lists_every_command_with_its_summary_and_training(capsys):
    assert main(["--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in COMMANDS:
        (line,) = [l for l in lines if l.startswith(f"  {name} ")]
        assert len(line.split(maxsplit=1)[1]) > 20, line  # a one-line summary follows the name
    assert any("separate" in l and "clean files or whole folders" in l for l in lines)
    assert any("python -m sepgan.train experiment=NAME" in l for l in lines)


def test_version_and_help_start_without_torch():
    code = ("import sys; from sepgan.commands import main; main(['--version']); main(['--help']); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith(f"sepgan {sepgan.__version__}\n") and out.split()[-1] == "False"


def test_missing_shipped_model_is_explained(monkeypatch, tmp_path):
    monkeypatch.setattr("sepgan.pretrained.DEFAULT_CHECKPOINT", tmp_path / "none.ckpt")
    with pytest.raises(FileNotFoundError, match="--checkpoint"):
        default_checkpoint()
