import numpy as np
import pytest

from sepgan.data import synthetic


def dominant_frequency(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * sr / len(x))


def test_signals_are_repeatable_and_seed_dependent():
    a = synthetic.noise("siren", 3, 16000, 1.0)
    assert np.array_equal(a, synthetic.noise("siren", 3, 16000, 1.0))
    assert not np.allclose(a, synthetic.noise("siren", 4, 16000, 1.0))
    s = synthetic.speech_like(1, 0, 16000, 2.0)
    assert np.array_equal(s, synthetic.speech_like(1, 0, 16000, 2.0))
    assert not np.allclose(s, synthetic.speech_like(2, 0, 16000, 2.0))


@pytest.mark.parametrize("kind", synthetic.NOISE_KINDS)
def test_every_noise_kind_has_the_asked_length_and_level(kind):
    x = synthetic.noise(kind, 0, 8000, 1.5)
    assert x.shape == (12000,) and x.dtype == np.float32
    assert np.isfinite(x).all() and 0.04 < np.sqrt(np.mean(x**2)) < 0.06


def test_tones_stay_between_100_and_4000_hz():
    for seed in range(20):
        x = synthetic.noise("tone", seed, 16000, 1.0)
        for chunk in np.split(x, 4):
            assert 90 <= dominant_frequency(chunk, 16000) <= 4100


def test_speech_like_has_syllables_pauses_and_harmonics():
    sr = 16000
    x = synthetic.speech_like(5, 2, sr, 4.0)
    frames = x[: len(x) // 400 * 400].reshape(-1, 400)  # 25 ms frames
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    quiet = np.mean(level < level.max() - 30)
    assert 0.05 < quiet < 0.7  # pauses between phrases, but mostly sound
    # A voiced frame has a pitch between 80 and 300 Hz: its autocorrelation peaks at that lag.
    loud = frames[np.argmax(level)]
    ac = np.correlate(loud, loud, "full")[len(loud) - 1:]
    lag = np.argmax(ac[sr // 300: sr // 80]) + sr // 300
    assert 80 <= sr / lag <= 300


def test_unknown_kind_is_named():
    with pytest.raises(ValueError, match="whistle"):
        synthetic.noise("whistle", 0, 16000, 1.0)
