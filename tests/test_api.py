"""The Python API (`sepgan.load`), torch.hub, and the README's examples of both, run as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import sepgan
from sepgan.commands import main
from sepgan.inference.api import Model, Separated, _resolve
from sepgan.pretrained import DEFAULT_CHECKPOINT
from tests.conftest import noisy_speech

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return sepgan.load(tiny_checkpoint, chunk_seconds=1.0)


def test_import_sepgan_loads_no_torch():
    code = "import sys, sepgan; print('torch' in sys.modules, callable(sepgan.load), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "True"]  # torch comes with the first use of sepgan.load


def test_separate_keeps_type_shape_and_rate_and_adds_up(model):
    stereo = np.stack([noisy_speech(2.5, 44100), noisy_speech(2.5, 44100, seed=1)])
    speech, noise = model.separate(stereo, 44100)
    assert isinstance(speech, np.ndarray) and speech.shape == stereo.shape and speech.dtype == np.float32
    np.testing.assert_allclose(speech + noise, stereo, atol=1e-6)
    assert np.abs(noise).max() > 0.01  # the model's output, not a copy of the input
    # each channel on its own, exactly what the chunked separator gives (it is the one the CLI uses)
    np.testing.assert_allclose(speech[1], model.engine.separate(stereo[1], 44100), atol=1e-6)

    result = model.separate(torch.from_numpy(stereo[0]), 44100)
    assert isinstance(result, Separated) and isinstance(result.speech, torch.Tensor)
    assert result.speech.shape == (stereo.shape[1],)
    np.testing.assert_allclose(result.speech.numpy(), speech[0], atol=1e-6)


def test_dry_mixes_the_input_back(model):
    mixture = noisy_speech(1.0)
    wet = model.separate(mixture, 16000).speech
    assert np.array_equal(model.separate(mixture, 16000, dry=1.0).speech, mixture)
    half = model.separate(mixture, 16000, dry=0.25)
    np.testing.assert_allclose(half.speech, 0.75 * wet + 0.25 * mixture, atol=1e-6)
    np.testing.assert_allclose(half.noise, mixture - half.speech, atol=1e-7)


def test_shifts_reach_the_chunked_separator(tiny_checkpoint):
    shifted = sepgan.load(tiny_checkpoint, chunk_seconds=1.0, shifts=2)
    assert shifted.engine.offsets == [0, shifted.engine.frontend.hop_length // 2]  # what the grids are: test_separate


def test_bad_arguments_are_named(model):
    with pytest.raises(ValueError, match="dry must be between 0"):
        model.separate(noisy_speech(0.5), 16000, dry=1.5)
    with pytest.raises(ValueError, match="sample_rate must be a positive"):
        model.separate(noisy_speech(0.5), 16000.0)
    with pytest.raises(ValueError, match=r"\(channels, samples\)"):
        model.separate(np.zeros((8000, 2), np.float32), 16000)  # soundfile's layout, not transposed
    with pytest.raises(ValueError, match="neither a shipped model .*sepgan-16k"):
        sepgan.load("best-model")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        sepgan.load("missing.ckpt")


def test_shipped_model_by_default_and_by_name(model):
    assert _resolve(None) == _resolve("sepgan-16k") == DEFAULT_CHECKPOINT  # loading it is the README test's
    assert isinstance(model, Model) and repr(model) == "<sepgan model 'tiny.ckpt', torch backend, 16000 Hz>"


def test_separate_file_writes_what_the_command_writes(model, tiny_checkpoint, tmp_path):
    sf.write(tmp_path / "in.flac", noisy_speech(1.5, 22050), 22050, subtype="PCM_24")
    summary = model.separate_file(tmp_path / "in.flac", tmp_path / "api.flac", tmp_path / "noise.flac", dry=0.1)
    assert summary["seconds"] == pytest.approx(1.5)
    assert main(["separate", str(tmp_path / "in.flac"), "-o", str(tmp_path / "cli"), "--checkpoint",
                 str(tiny_checkpoint), "--chunk-seconds", "1", "--dry", "0.1", "--quiet"]) == 0
    api, cli = (sf.read(p)[0] for p in (tmp_path / "api.flac", tmp_path / "cli" / "in.flac"))
    assert np.array_equal(api, cli) and sf.info(tmp_path / "api.flac").subtype == "PCM_24"
    mixture, noise = sf.read(tmp_path / "in.flac")[0], sf.read(tmp_path / "noise.flac")[0]
    assert np.abs(api + noise - mixture).max() < 3 / 2**23


def test_torch_hub_loads_the_checkouts_own_package(tmp_path):
    """From elsewhere and without PYTHONPATH, torch.hub imports `sepgan` from the given checkout."""
    code = (f"import torch; m = torch.hub.load({str(ROOT)!r}, 'sepgan', source='local'); "
            f"import sepgan; print(sepgan.__file__, m.sample_rate)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [str(ROOT / "sepgan" / "__init__.py"), "16000"]


def _section_code(title: str) -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_python_api_examples_run_as_written(tmp_path, monkeypatch):
    blocks = _section_code("Python API")
    assert len(blocks) == 3 and "torch.hub.load" in blocks[1] and "2speakers" in blocks[2]
    monkeypatch.chdir(tmp_path)  # the examples write their files into the working folder
    namespace: dict = {}
    for block in blocks:
        exec(compile(block.replace("/path/to/sepgan", str(ROOT)), "README.md", "exec"), namespace)
    assert sf.info(tmp_path / "clean.wav").frames == 3 * 44100 and (tmp_path / "noise.wav").is_file()
    assert isinstance(namespace["speech"], torch.Tensor) and namespace["speech"].shape == (16000,)
    assert namespace["first"].shape == namespace["second"].shape == (2, 3 * 44100)
    assert [sf.info(tmp_path / "out" / f"talk_speaker{k}.wav").frames for k in (1, 2)] == [3 * 44100] * 2
