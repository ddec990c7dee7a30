"""The wheel as a user installs it: built from the checkout, installed into a fresh virtual
environment outside it, then training, `sepgan separate` and `sepgan evaluate` run from elsewhere.

Installing every dependency anew would take minutes and the network: the wheel goes in with
`--no-deps`, and a `.pth` line makes the test environment's site-packages visible. A plain path
line does not run the `.pth` files inside that folder, so the editable install of the checkout
stays out of sight; the test checks that `sepgan` is the installed copy.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
# The embedded synthetic set, small: built in a second instead of ten.
SMALL_DATA = ["synthetic_speakers=6", "synthetic_utterances=1", "synthetic_noise_recordings=3",
              "synthetic_seconds=1.5", "segment_seconds=1.0"]


def _run(cmd, cwd, env, timeout=120):
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv, env): a fresh virtual environment holding only the wheel, and the environment to run it in."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy, so that the build leaves no build/ or egg-info in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "sepgan", source / "sepgan", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp / "dist", source], tmp, None)
    (wheel,) = (tmp / "dist").glob("sepgan-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp, None)
    python = venv / "bin" / "python"
    # Installed before the .pth exists, so pip sees no sepgan to replace (the shared one must stay).
    _run([*pip, "--python", python, "install", "--no-deps", "--no-index", wheel], tmp, None)
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, None).stdout
    (Path(purelib.strip()) / "shared-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(WANDB_MODE="disabled", PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    return venv, env


def test_installed_wheel_trains_separates_and_evaluates(installed, tmp_path):
    venv, env = installed
    python, sepgan = venv / "bin" / "python", venv / "bin" / "sepgan"
    where = _run([python, "-c", "import sepgan, sepgan.conf, sepgan.pretrained as p; "
                                "print(sepgan.__file__, p.DEFAULT_CHECKPOINT.is_file())"], tmp_path, env).stdout
    assert where.startswith(str(venv)) and where.split()[1] == "True", where  # the wheel's copy, model included

    train = _run([python, "-m", "sepgan.train", "+experiment=demo", "trainer.max_steps=2", *TINY], tmp_path, env).stdout
    assert "run folder:" in train
    assert list((tmp_path / "logs" / "demo").rglob("best-*.ckpt"))  # the configs came from the wheel

    rng = np.random.default_rng(0)
    sf.write(tmp_path / "in.wav", 0.1 * rng.standard_normal(32000), 16000)
    _run([sepgan, "separate", "in.wav", "-o", "out", "--quiet"], tmp_path, env)
    assert sf.info(tmp_path / "out" / "in.wav").frames == 32000

    _run([sepgan, "evaluate", "--data", *SMALL_DATA, "--examples", "2", "--metrics", "si_sdr", "si_sdri",
          "--methods", "noisy", "model", "--no-progress", "--out", "scores"], tmp_path, env)
    summary = json.loads((tmp_path / "scores" / "summary.json").read_text())
    assert summary["files"] == 2 and summary["checkpoint"].startswith(str(venv))
