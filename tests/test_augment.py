import numpy as np
import pytest
import torch
from scipy import signal as sps

from sepgan.data import SeparationDataModule
from sepgan.data.augment import (
    BABBLE,
    COLOURED,
    SIREN,
    AugmentConfig,
    Augmenter,
    biquad,
    circular_convolve,
    coloured_noise,
    convolve,
    phase_shifted,
    room_impulse_response,
    siren_noise,
    sped_up,
)
from sepgan.data.mixing import power
from sepgan.training.config import compose_config

from .conftest import band_power_db

SR = 16000
SMALL = dict(sample_rate=SR, segment_seconds=0.5, batch_size=2, num_workers=0, train_examples=4, val_examples=6,
             test_examples=4, synthetic_speakers=12, synthetic_utterances=1, synthetic_noise_recordings=4,
             synthetic_seconds=1.0)
# Everything off: each test turns on what it checks.
QUIET = {"sources": {"recorded": 1.0}, "second_source": 0.0, "eq": {"speech": 0.0, "noise": 0.0},
         "band_limit": {"speech": 0.0, "noise": 0.0}, "reverb": {"prob": 0.0}, "resampled": {"prob": 0.0}}


def datamodule(**augment) -> SeparationDataModule:
    torch.manual_seed(0)  # training examples draw from torch's generator: the same draws whatever ran before
    dm = SeparationDataModule(**SMALL, augment={**QUIET, **augment})
    dm.setup()
    return dm


def examples(dm: SeparationDataModule, count: int = 12, split: str = "train") -> list[dict]:
    return [dm.datasets[split][i] for i in range(count)]


def assert_sums(example: dict) -> None:
    torch.testing.assert_close(example["mixture"], example["speech"] + example["noise"], atol=1e-6, rtol=0)


def peak_hz(x: np.ndarray) -> float:
    f, p = sps.welch(np.asarray(x, np.float64), fs=SR, nperseg=min(8192, len(x)))
    return float(f[np.argmax(p)])


def decay_time(rir: np.ndarray, sos: np.ndarray) -> float:
    """RT60 of a band from the Schroeder backward integral: the fit from −5 to −25 dB, times 3 (T20)."""
    band = sps.sosfilt(sos, rir)
    energy = np.cumsum(band[::-1] ** 2)[::-1]
    curve = 10 * np.log10(energy / energy[0])
    t = np.arange(len(rir)) / SR
    span = (curve <= -5) & (curve >= -25)
    slope = np.polyfit(t[span], curve[span], 1)[0]
    return -60.0 / slope


@pytest.mark.parametrize("exponent", [-1.0, 0.0, 1.0, 2.0])  # blue, white, pink, brown
def test_coloured_noise_has_the_asked_spectral_slope(exponent):
    x = coloured_noise(4 * SR, exponent, SR, np.random.default_rng(0))
    f, p = sps.welch(x, fs=SR, nperseg=2048)
    band = (f >= 200) & (f <= 6000)
    slope = np.polyfit(np.log10(f[band]), np.log10(p[band]), 1)[0]
    assert abs(slope + exponent) < 0.1
    assert abs(power(x) - 1.0) < 1e-9


def test_synthetic_sirens_are_tonal_in_the_siren_band_and_vary_in_pitch_and_level():
    sweeps = gaps = 0
    for seed in range(40):
        x = siren_noise(3 * SR, SR, np.random.default_rng(seed))
        assert x.shape == (3 * SR,) and np.isfinite(x).all() and abs(power(x) - 1.0) < 1e-9
        f, p = sps.welch(x, fs=SR, nperseg=1024)
        flatness = np.exp(np.mean(np.log(p[1:] + 1e-20))) / np.mean(p[1:])
        assert flatness < 0.05  # tones, not noise (white noise: about 0.56)
        assert 300 <= f[np.argmax(p)] <= 4400
        _, _, frames = sps.stft(x, fs=SR, nperseg=512)
        energy = np.abs(frames[:, 2:-2]) ** 2
        loud = energy.sum(0)
        pitch = np.argmax(energy, axis=0)[loud > 0.1 * loud.max()]  # the loudest bin of each sounding frame
        sweeps += pitch.max() > 1.3 * pitch.min()
        gaps += loud.min() < 0.01 * loud.max()  # a pulsing alarm's silences
    assert 5 <= sweeps <= 35 and 3 <= gaps <= 25  # sweeps and two-tones, beeping alarms, and steady tones


def test_siren_sources_are_labelled_siren_and_make_the_noise_of_the_mixture():
    dm = datamodule(sources={SIREN: 1.0})
    labels = dm.datasets["train"].noise_labels
    for example in examples(dm, 6):
        assert_sums(example)
        assert labels[example["noise_class"]] == SIREN
        f, p = sps.welch(example["noise"].numpy().astype(np.float64), fs=SR, nperseg=512)
        assert np.exp(np.mean(np.log(p[1:] + 1e-20))) / np.mean(p[1:]) < 0.1


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_the_siren_label_is_added_only_when_sirens_are_made(weight):
    torch.manual_seed(0)
    dm = SeparationDataModule(**SMALL, noise_classes=["dog_bark"],
                              augment={**QUIET, "sources": {"recorded": 1.0, SIREN: weight}})
    dm.setup()
    labels = dm.datasets["train"].noise_labels
    assert (SIREN in labels) == (weight > 0)
    made = {labels[e["noise_class"]] for e in examples(dm, 12)}
    assert made == ({"dog_bark", SIREN} if weight else {"dog_bark"})


def test_biquads_have_the_asked_gain():
    def gain_at(sos, hz):
        return 20 * np.log10(abs(sps.sosfreqz(sos, worN=[hz], fs=SR)[1][0]))

    peak = biquad("peaking", 1000.0, 9.0, 2.0, SR).reshape(1, 6)
    assert abs(gain_at(peak, 1000.0) - 9.0) < 0.01 and abs(gain_at(peak, 6000.0)) < 0.5
    low = biquad("low_shelf", 300.0, -6.0, 0.707, SR).reshape(1, 6)
    assert abs(gain_at(low, 20.0) + 6.0) < 0.1 and abs(gain_at(low, 6000.0)) < 0.1
    high = biquad("high_shelf", 3000.0, 6.0, 0.707, SR).reshape(1, 6)
    assert abs(gain_at(high, 7900.0) - 6.0) < 0.1 and abs(gain_at(high, 50.0)) < 0.1


def test_band_limited_speech_has_no_energy_above_the_cutoff():
    dm = datamodule(sources={"coloured": 1.0}, coloured_exponent=[0.0, 0.0],
                    band_limit={"speech": 1.0, "noise": 0.0, "cutoff_hz": [2000.0, 2000.0], "high_pass": 0.0})
    for example in examples(dm, 6):
        assert_sums(example)
        speech, noise = example["speech"].numpy(), example["noise"].numpy()
        assert band_power_db(speech, 2400, 8000) < band_power_db(speech, 0, 2000) - 50
        assert band_power_db(noise, 2400, 8000) > band_power_db(noise, 0, 2000)  # white: most of it up there


def test_a_resampled_recording_loses_everything_above_its_edge_speech_and_noise_alike():
    dm = datamodule(sources={"coloured": 1.0}, coloured_exponent=[0.0, 0.0], resampled={"prob": 1.0, "cutoff": [0.5, 0.5]})
    for example in examples(dm, 6):
        assert_sums(example)
        for x in (example["speech"].numpy(), example["noise"].numpy()):
            assert band_power_db(x, 4400, 8000) < band_power_db(x, 0, 4000) - 45
    untouched = datamodule(sources={"coloured": 1.0}, coloured_exponent=[0.0, 0.0])
    noise = examples(untouched, 1)[0]["noise"].numpy()
    assert band_power_db(noise, 4400, 8000) > band_power_db(noise, 0, 4000) - 3  # white without it


def test_a_phase_shift_rotates_the_spectrogram_and_keeps_its_magnitude():
    x = np.random.default_rng(0).standard_normal(SR)
    stft = lambda y: sps.stft(y, nperseg=512, noverlap=256)[2][1:-1, 4:-4]  # no DC/Nyquist, away from the ends
    for angle in (0.5, 2.0, -1.2):
        rotated = stft(phase_shifted(x, angle))
        error = np.sum(np.abs(rotated - stft(x) * np.exp(1j * angle)) ** 2) / np.sum(np.abs(stft(x)) ** 2)
        assert error < 1e-2
        assert not np.allclose(phase_shifted(x, angle), x, atol=0.1)
    np.testing.assert_allclose(phase_shifted(x, np.pi), -x, atol=1e-9)  # 180°: the polarity inverted
    np.testing.assert_allclose(phase_shifted(x, 0.0), x, atol=1e-12)


def test_phase_shifted_examples_keep_speech_plus_noise_and_sound_the_same():
    shifted, plain = examples(datamodule(phase=1.0), 6), examples(datamodule(phase=0.0), 6)
    spectrum = lambda y: np.abs(sps.stft(y / np.sqrt(power(y)), nperseg=512)[2][1:-1])
    for a, b in zip(shifted, plain):
        assert_sums(a)
        for key in ("speech", "noise"):  # the same recordings, phase-shifted (levels differ: the SNR is drawn after)
            x, y = a[key].numpy().astype(np.float64), b[key].numpy().astype(np.float64)
            assert np.mean(np.abs(spectrum(x) - spectrum(y))) < 0.1 * np.mean(spectrum(y))
            assert abs(np.corrcoef(x, y)[0, 1]) < 0.999


@pytest.mark.parametrize("factor", [0.9, 0.93, 0.995, 1.01, 1.07, 1.1])
def test_sped_up_raises_the_pitch_and_shortens_the_recording_by_the_factor(factor):
    tone = np.sin(2 * np.pi * 440 * np.arange(SR) / SR)
    out = sped_up(tone, factor)
    assert abs(len(out) - SR / factor) <= 1
    assert abs(peak_hz(out) - 440 * factor) < 2
    np.testing.assert_allclose(sped_up(tone, 1.0), tone, atol=1e-7)  # rate 1: untouched (float32)


def test_speed_changes_speech_and_recorded_noise_and_the_mixture_stays_their_sum():
    def peaks(speed):
        dm = datamodule(speed=speed)
        augmenter = dm.datasets["train"].augmenter
        for corpus, hz in ((augmenter.speech, 300.0), (augmenter.noise, 1000.0)):  # every recording a steady tone
            corpus._cache = {i: np.sin(2 * np.pi * hz * np.arange(2 * SR) / SR) for i in range(len(corpus))}
        augmenter._powers.clear()
        found = []
        for example in examples(dm, 6):
            assert_sums(example)
            found.append([peak_hz(example[key].numpy()) for key in ("speech", "noise")])
        return np.array(found)
    np.testing.assert_allclose(peaks({}), [[300.0, 1000.0]] * 6, atol=4)
    np.testing.assert_allclose(peaks({"speech": 1.0, "noise": 1.0, "factor": [1.2, 1.2]}), [[360.0, 1200.0]] * 6, atol=4)
    np.testing.assert_allclose(peaks({"speech": 1.0, "factor": [0.8, 0.8]}), [[240.0, 1000.0]] * 6, atol=4)


def test_equalised_noise_is_not_white_any_more():
    dm = datamodule(sources={"coloured": 1.0}, coloured_exponent=[0.0, 0.0],
                    eq={"speech": 0.0, "noise": 1.0, "filters": [3, 3], "gain_db": [12.0, 12.0]})
    white = coloured_noise(8000, 0.0, SR, np.random.default_rng(1))
    spread = lambda x: np.ptp(10 * np.log10(sps.welch(np.asarray(x, np.float64), fs=SR, nperseg=256)[1][2:-2]))
    assert all(spread(e["noise"].numpy()) > spread(white) + 6 for e in examples(dm, 6))


def test_babble_talkers_are_training_speakers_other_than_the_target():
    dm = datamodule(sources={BABBLE: 1.0}, babble_talkers=[3, 3])
    augmenter = dm.datasets["train"].augmenter
    train, held_out = dm.corpora["train"][0], dm.corpora["val"][0].recordings + dm.corpora["test"][0].recordings
    assert augmenter.speech is train
    target = train.recordings[0].group
    rng = np.random.default_rng(0)
    for _ in range(10):
        signal, used = augmenter.babble(rng, target)
        groups = [train.recordings[i].group for i in used]
        assert len(groups) == 3 == len(set(groups)) and target not in groups
        assert not set(groups) & {r.group for r in held_out}
        assert signal.shape == (8000,) and power(signal) > 0
    for example in examples(dm, 4):
        assert_sums(example)
        assert dm.datasets["train"].noise_labels[example["noise_class"]] == BABBLE
    ranged = datamodule(sources={BABBLE: 1.0}, babble_talkers=[2, 6]).datasets["train"].augmenter
    assert {len(ranged.babble(rng, target)[1]) for _ in range(60)} == {2, 3, 4, 5, 6}


def test_snr_and_level_stay_in_the_configured_ranges():
    dm = datamodule(sources={"recorded": 1.0, BABBLE: 1.0, "coloured": 1.0}, second_source=0.5,
                    snr_db=[10.0, 20.0], gain_db=[-40.0, -30.0])
    for example in examples(dm, 20):
        assert_sums(example)
        snr = 10 * np.log10(power(example["speech"].numpy()) / power(example["noise"].numpy()))
        assert 10.0 - 0.01 <= snr <= 20.0 + 0.01 and abs(snr - float(example["snr_db"])) < 0.01
        assert -40.01 <= 10 * np.log10(power(example["mixture"].numpy())) <= -29.99


def test_a_second_source_is_added_as_often_as_asked(monkeypatch):
    calls, original = [], Augmenter.noise_source

    def counted(self, rng, speaker):
        calls.append(speaker)
        return original(self, rng, speaker)

    monkeypatch.setattr(Augmenter, "noise_source", counted)
    for probability, expected in ((0.0, 8), (1.0, 16)):
        calls.clear()
        made = examples(datamodule(second_source=probability), 8)
        assert len(calls) == expected
        # the second source's class is named too (the noise classifier's targets), -1 when there is none
        seconds = [int(example["noise_class2"]) for example in made]
        assert all(c >= 0 for c in seconds) if probability else seconds == [-1] * 8


@pytest.mark.parametrize("rt60", [0.3, 0.8])
def test_room_response_decays_with_the_asked_rt60_and_drr(rt60):
    rir = room_impulse_response(SR, rt60, 3.0, np.random.default_rng(2), hf_ratio=0.5)
    assert len(rir) == int(rt60 * SR) and rir[0] == 1.0 and np.argmax(np.abs(rir)) == 0
    assert abs(10 * np.log10(1.0 / np.sum(rir[1:] ** 2)) - 3.0) < 1e-6
    low = sps.butter(4, 1000, "lowpass", fs=SR, output="sos")
    high = sps.butter(4, 4000, "highpass", fs=SR, output="sos")
    tail = rir.copy()
    tail[0] = 0.0  # the direct path's own ringing in the band filter is not the room's decay
    assert abs(decay_time(tail, low) / rt60 - 1) < 0.1
    assert abs(decay_time(tail, high) / (0.5 * rt60) - 1) < 0.15


def test_reverberant_mixtures_keep_target_plus_noise():
    room = {"prob": 1.0, "rt60": [0.4, 0.4], "drr_db": [0.0, 0.0]}
    early = examples(datamodule(eval=True, reverb={**room, "target": "early"}), 4, "val")
    dry = examples(datamodule(eval=True, reverb={**room, "target": "dry"}), 4, "val")
    for e, d in zip(early, dry):
        assert_sums(e)
        assert_sums(d)
        torch.testing.assert_close(e["mixture"], d["mixture"])  # the same room and noise, another target
        assert not torch.allclose(e["speech"], d["speech"], atol=1e-4)
        # the early target (direct + 50 ms) is closer to the mixture than the dry source is
        corr = lambda a, b: float(torch.dot(a, b) / (a.norm() * b.norm()))
        assert corr(e["speech"], e["mixture"]) > corr(d["speech"], d["mixture"])


def test_validation_and_test_are_fixed_and_unaugmented_by_default():
    plain = SeparationDataModule(**SMALL)
    plain.setup()
    a, b = datamodule(eval=False, second_source=1.0), datamodule(eval=False, second_source=1.0)
    for split in ("val", "test"):
        assert a.datasets[split].augmenter is None
        for i in range(len(a.datasets[split])):
            assert torch.equal(a.datasets[split][i]["mixture"], plain.datasets[split][i]["mixture"])
    assert not torch.equal(a.datasets["train"][0]["mixture"], b.datasets["train"][0]["mixture"])


def test_augmented_validation_is_the_same_in_two_builds():
    config = dict(eval=True, sources={"recorded": 1.0, BABBLE: 1.0, "coloured": 1.0}, second_source=0.5,
                  eq={"speech": 0.5, "noise": 0.5}, band_limit={"speech": 0.3, "noise": 0.3}, reverb={"prob": 0.5})
    a, b = datamodule(**config), datamodule(**config)
    plain = SeparationDataModule(**SMALL)
    plain.setup()
    for split in ("val", "test"):
        for i in range(len(a.datasets[split])):
            x, y = a.datasets[split][i], b.datasets[split][i]
            assert all(torch.equal(x[k], y[k]) for k in ("mixture", "speech", "noise"))
            assert_sums(x)
        assert not torch.equal(a.datasets[split][0]["mixture"], plain.datasets[split][0]["mixture"])
    labels = a.datasets["val"].noise_labels
    assert labels[-2:] == [BABBLE, COLOURED]


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match=r"data.augment: unknown key\(s\) \['revreb'\]"):
        AugmentConfig.from_dict({"revreb": {}})
    with pytest.raises(ValueError, match=r"data.augment.eq: unknown key\(s\) \['gain'\]"):
        AugmentConfig.from_dict({"eq": {"gain": [0, 1]}})
    with pytest.raises(ValueError, match=r"data.augment.snr_db: expected \[low, high\]"):
        AugmentConfig.from_dict({"snr_db": [20, 10]})
    with pytest.raises(ValueError, match=r"data.augment.reverb.prob: a probability"):
        AugmentConfig.from_dict({"reverb": {"prob": 1.5}})
    with pytest.raises(ValueError, match="data.augment.sources"):
        AugmentConfig.from_dict({"sources": {"wind": 1.0}})
    with pytest.raises(ValueError, match=r"data.augment.resampled.cutoff: fractions of the Nyquist"):
        AugmentConfig.from_dict({"resampled": {"cutoff": [0.9, 1.0]}})
    with pytest.raises(ValueError, match=r"data.augment.speed.factor: rates between 0.5 and 2"):
        AugmentConfig.from_dict({"speed": {"factor": [0.3, 1.1]}})
    with pytest.raises(ValueError, match=r"data.augment.speed.noise: a probability"):
        AugmentConfig.from_dict({"speed": {"noise": 2}})
    with pytest.raises(ValueError, match=r"data.augment.phase: a probability"):
        AugmentConfig.from_dict({"phase": -0.5})
    with pytest.raises(ValueError, match="'early' or 'dry'"):
        AugmentConfig.from_dict({"reverb": {"target": "late"}})


def test_config_turns_augmentation_on_for_training_but_not_for_the_study_experiments():
    from hydra.utils import instantiate

    cfg = compose_config(["data.num_workers=0", "data.num_workers=0", "data.train_examples=2", "data.val_examples=2",
                          "data.test_examples=2", "data.synthetic_speakers=6", "data.synthetic_utterances=1",
                          "data.synthetic_noise_recordings=3", "data.synthetic_seconds=1.0"])
    dm = instantiate(cfg.data)
    dm.setup()
    assert dm.datasets["train"].augmenter is not None and dm.datasets["val"].augmenter is None
    assert dm.augment.snr_db == (-5.0, 20.0)
    for experiment in ("tone", "dog_bark", "air_conditioner", "demo"):
        assert compose_config([f"experiment={experiment}"]).data.augment.enabled is False
    assert compose_config(["experiment=pretrained"]).data.augment.enabled is True  # the shipped model's recipe


def test_fft_convolutions_match_direct_ones():
    rng = np.random.default_rng(5)
    x, h = rng.standard_normal(1000), rng.standard_normal(2500)  # a response longer than the signal
    full, short = convolve(x, [h, h[:30]], 200, 700)
    np.testing.assert_allclose(full, np.convolve(x, h)[200:900], atol=1e-9)
    np.testing.assert_allclose(short, np.convolve(x, h[:30])[200:900], atol=1e-9)
    wrapped = np.pad(np.convolve(x, h), (0, 1000))  # every 1000-sample block, the last one zero-padded
    expected = sum(wrapped[s:s + 1000] for s in range(0, len(x) + len(h) - 1, 1000))
    np.testing.assert_allclose(circular_convolve(x, h), expected, atol=1e-9)


def test_evaluate_can_score_augmented_held_out_mixtures_with_their_noise_kinds():
    from sepgan.evaluation import ConfigMixtures

    data = ["synthetic_speakers=30", "synthetic_utterances=1", "synthetic_noise_recordings=3", "synthetic_seconds=1.0",
            "segment_seconds=0.5", "augment.eval=true", "augment.sources.recorded=0"]  # 3 test speakers
    held_out = list(ConfigMixtures(data, 8000, split="test", count=8))
    assert {e.noise_class for e in held_out} == {BABBLE, COLOURED, SIREN}
    assert all(-5.0 - 1e-3 <= e.snr_db <= 20.0 + 1e-3 for e in held_out)
    again = list(ConfigMixtures(data, 8000, split="test", count=8))
    assert all(np.array_equal(a.mixture, b.mixture) for a, b in zip(held_out, again))
