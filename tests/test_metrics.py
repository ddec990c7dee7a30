import warnings

import numpy as np
import pytest
import torch

from sepgan.audio import load_audio
from sepgan.data.synthetic import speech_like
from sepgan.metrics import (
    MetricWarning,
    bss_eval,
    pesq,
    pesq_mode,
    si_sdr,
    si_sdr_db,
    speech_scores,
    stoi,
)
from tests.conftest import SHARED_DATA

SR = 16000
SPEECH = speech_like(0, 0, SR, 2.0).astype(np.float32)
NOISE = (np.random.default_rng(0).standard_normal(len(SPEECH)) * np.sqrt(np.mean(SPEECH**2))).astype(np.float32)
VCTK = SHARED_DATA / "speech" / "vctk_p287_denoiser_debug"


def test_si_sdr_of_a_scaled_copy_is_very_high_and_of_noise_very_low():
    assert si_sdr_db(0.3 * SPEECH, SPEECH) > 60
    assert si_sdr_db(NOISE, SPEECH) < -15
    # torch version on a batch agrees with the numpy wrapper
    batch = si_sdr(torch.from_numpy(np.stack([SPEECH + NOISE, SPEECH + 0.1 * NOISE])).double(),
                   torch.from_numpy(SPEECH).double())
    assert batch[0].item() == pytest.approx(si_sdr_db(SPEECH + NOISE, SPEECH), abs=1e-6)
    assert batch[1] > batch[0] + 15


def test_mir_eval_sdr_agrees_with_si_sdr_when_the_only_error_is_added_noise():
    # White noise, no filtering: BSS-eval's 512-tap filter absorbs only ~512/32000 of the noise.
    for gain in (0.1, 0.3, 1.0):
        estimate = SPEECH + gain * NOISE
        assert bss_eval(estimate, SPEECH)["sdr"] == pytest.approx(si_sdr_db(estimate, SPEECH), abs=0.3)


def test_known_noise_makes_sir_the_noise_left_and_sar_high():
    scores = bss_eval(SPEECH + 0.1 * NOISE, SPEECH, NOISE)  # equal powers: noise 20 dB down
    assert scores["sir"] == pytest.approx(20.0, abs=0.5)
    assert scores["sar"] > 60
    assert scores["sdr"] == pytest.approx(scores["sir"], abs=0.5)
    assert bss_eval(SPEECH + 0.1 * NOISE, SPEECH)["sir"] == float("inf")  # no interfering source given


def test_silent_signals_give_nan_with_a_reason():
    with pytest.warns(MetricWarning, match="all zeros"):
        assert np.isnan(bss_eval(np.zeros_like(SPEECH), SPEECH, NOISE)["sdr"])
    with pytest.warns(MetricWarning, match="PESQ undefined"):
        assert np.isnan(pesq(SPEECH, np.zeros_like(SPEECH), SR))


def test_stoi_is_one_for_the_clean_speech_and_nan_when_too_short():
    assert stoi(SPEECH, SPEECH, SR) == pytest.approx(1.0, abs=1e-6)
    assert stoi(SPEECH + NOISE, SPEECH, SR) < stoi(SPEECH + 0.1 * NOISE, SPEECH, SR) < 1.0
    short = SPEECH[: SR // 10]
    with pytest.warns(MetricWarning, match="STOI undefined"):
        assert np.isnan(stoi(short, short, SR))


@pytest.mark.skipif(not VCTK.is_dir(), reason="needs ../shared/data")
def test_pesq_on_real_speech_orders_clean_above_noisy():
    clean = load_audio(VCTK / "clean" / "p287_002.wav")[0][0]
    noisy = load_audio(VCTK / "noisy" / "p287_002.wav")[0][0]
    assert pesq(clean, clean, SR) > 4.5  # wide-band maximum is 4.64
    assert 1.0 < pesq(noisy, clean, SR) < 3.0
    # 8 kHz audio is scored narrow band; 48 kHz is resampled to 16 kHz wide band
    assert pesq_mode(8000) == "nb" and pesq_mode(48000) == "wb"
    from sepgan.audio import resample
    assert pesq(resample(noisy, SR, 48000), resample(clean, SR, 48000), 48000) == pytest.approx(
        pesq(noisy, clean, SR), abs=0.1)


def test_speech_scores_returns_the_requested_measures_in_order():
    with warnings.catch_warnings():
        warnings.simplefilter("error", MetricWarning)  # nothing undefined here
        scores = speech_scores(SPEECH + 0.1 * NOISE, SPEECH, SR, NOISE, input_si_sdr=5.0)
    assert list(scores) == ["si_sdr", "si_sdri", "sdr", "sir", "sar", "pesq", "stoi", "estoi"]
    assert scores["si_sdri"] == pytest.approx(scores["si_sdr"] - 5.0)
    assert list(speech_scores(SPEECH, SPEECH, SR, metrics=("stoi", "si_sdr"))) == ["si_sdr", "stoi"]
    with pytest.raises(ValueError, match="unknown metric"):
        speech_scores(SPEECH, SPEECH, SR, metrics=("mos",))
    with pytest.raises(ValueError, match="equal length"):
        speech_scores(SPEECH[:-1], SPEECH, SR)
