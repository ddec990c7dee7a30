import numpy as np
import pytest

from sepgan.data.mixing import Mixer, active_excerpt, crop_or_pad, power


def snr_of(example) -> float:
    return 10 * np.log10(power(example["speech"]) / power(example["noise"]))


@pytest.mark.parametrize("snr", [-10.0, -2.5, 0.0, 7.3, 20.0])
def test_mix_hits_the_asked_snr_and_level(snr):
    rng = np.random.default_rng(0)
    speech, noise = rng.standard_normal(8000) * 0.3, rng.standard_normal(8000) * 0.01
    out = Mixer(8000).mix(speech, noise, snr, gain_db=-20.0)
    assert abs(snr_of(out) - snr) < 0.1
    np.testing.assert_allclose(out["mixture"], out["speech"] + out["noise"], atol=1e-6)
    assert abs(10 * np.log10(power(out["mixture"])) - (-20.0)) < 0.1


def test_loud_mixtures_are_turned_down_instead_of_clipping():
    rng = np.random.default_rng(1)
    speech = np.zeros(1000)
    speech[500] = 1.0  # a click: high peak, low RMS
    out = Mixer(1000).mix(speech + 1e-3 * rng.standard_normal(1000), rng.standard_normal(1000), 10.0, gain_db=-3.0)
    assert np.max(np.abs(out["mixture"])) <= 0.99 + 1e-6
    assert abs(snr_of(out) - 10.0) < 0.1


def test_random_mixtures_respect_the_ranges():
    rng = np.random.default_rng(2)
    mixer = Mixer(4000, snr_db=(0.0, 5.0), gain_db=(-30.0, -20.0))
    for _ in range(20):
        out = mixer(rng.standard_normal(10000), rng.standard_normal(3000), rng)
        assert out["mixture"].shape == (4000,)
        assert 0.0 - 0.1 <= snr_of(out) <= 5.0 + 0.1
        assert abs(snr_of(out) - out["snr_db"]) < 0.1


def test_crop_pad_and_loop():
    rng = np.random.default_rng(3)
    short = np.arange(1, 11, dtype=np.float32)
    padded = crop_or_pad(short, 25, rng, loop=False)
    assert padded.shape == (25,) and np.count_nonzero(padded) == 10
    looped = crop_or_pad(short, 25, rng, loop=True)
    assert looped.shape == (25,) and np.count_nonzero(looped) == 25


def test_silence_gives_no_excerpt():
    rng = np.random.default_rng(4)
    assert active_excerpt(np.zeros(1000), 100, rng, loop=False) is None
    assert Mixer(100)(np.zeros(1000), np.ones(1000), rng) is None
    with pytest.raises(ValueError, match="silent"):
        Mixer(100).mix(np.zeros(100), np.ones(100), 0.0, -20.0)


def test_bad_ranges_are_refused():
    with pytest.raises(ValueError, match="snr_db"):
        Mixer(100, snr_db=(10.0, 0.0))
