"""An embedded stand-in corpus: speech-like signals and noises synthesised from a seed.

It exists so that every command runs on a fresh machine with no download. It is NOT speech: models
trained on it learn to separate harmonic, formant-shaped, syllabic sounds from tones, hums, bursts
and sweeps, which is enough to check that the machinery works and to reproduce the study's tone
experiment. For real results use recorded speech and noise (LibriSpeech and UrbanSound8K, e.g. the
copies in ../shared/data) through `data.root`.

Every signal is a pure function of (kind, seed, sample rate, seconds), so splits by seed are
disjoint and repeatable.
"""

from __future__ import annotations

import numpy as np
from scipy import signal as sps
from scipy.ndimage import uniform_filter1d

NOISE_KINDS = ("tone", "air_conditioner", "dog_bark", "siren")

# Formant frequencies (Hz) of five vowels for an adult voice (Peterson & Barney style values).
_VOWELS = np.array([
    [730, 1090, 2440],  # a
    [530, 1840, 2480],  # e
    [270, 2290, 3010],  # i
    [570, 840, 2410],  # o
    [300, 870, 2240],  # u
], dtype=np.float64)
_FORMANT_BANDWIDTHS = np.array([80.0, 110.0, 160.0])


def _rng(kind: str, seed: int) -> np.random.Generator:
    # A stable per-kind stream: crc-like sum of the name keeps "tone 3" and "siren 3" different.
    return np.random.default_rng([sum(ord(c) * 31**i for i, c in enumerate(kind)) % 2**31, seed])


def _stft_filter(x: np.ndarray, sr: int, envelope) -> np.ndarray:
    """Filter x with a time-varying magnitude response envelope(freqs, times) -> (freqs, times)."""
    nperseg = int(0.032 * sr) // 2 * 2
    f, t, spec = sps.stft(x, fs=sr, nperseg=nperseg, noverlap=nperseg * 3 // 4)
    spec *= envelope(f, t)
    _, y = sps.istft(spec, fs=sr, nperseg=nperseg, noverlap=nperseg * 3 // 4)
    return y[: len(x)] if len(y) >= len(x) else np.pad(y, (0, len(x) - len(y)))


def _normalise(x: np.ndarray, rms: float = 0.05) -> np.ndarray:
    return (x * rms / max(float(np.sqrt(np.mean(x**2))), 1e-9)).astype(np.float32)


def speaker_traits(speaker: int) -> dict:
    """A synthetic speaker: mean pitch, vocal-tract scaling and speaking rate."""
    rng = _rng("speaker", speaker)
    return dict(
        f0=float(rng.uniform(85, 250)),
        tract=float(rng.uniform(0.85, 1.2)),
        syllable_rate=float(rng.uniform(3.0, 5.5)),
    )


def speech_like(speaker: int, utterance: int, sample_rate: int, seconds: float) -> np.ndarray:
    """Voiced harmonics on a pitch contour through moving formant filters, in syllables and phrases."""
    traits = speaker_traits(speaker)
    rng = _rng("speech", speaker * 100_003 + utterance)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate

    # Syllables grouped into phrases separated by pauses; an amplitude envelope and vowel targets.
    env = np.zeros(n)
    unvoiced = np.zeros(n)
    formants = np.tile(_VOWELS[0], (n, 1))
    pos = int(rng.uniform(0.05, 0.3) * sample_rate)
    while pos < n:
        for _ in range(rng.integers(2, 8)):
            dur = int(rng.uniform(0.6, 1.4) / traits["syllable_rate"] * sample_rate)
            end = min(pos + dur, n)
            if end <= pos:
                break
            seg = np.sin(np.linspace(0, np.pi, end - pos)) ** 0.7
            env[pos:end] = np.maximum(env[pos:end], seg * rng.uniform(0.5, 1.0))
            formants[pos:end] = _VOWELS[rng.integers(len(_VOWELS))] * traits["tract"]
            if rng.random() < 0.4:  # a fricative onset
                fric = min(int(rng.uniform(0.04, 0.1) * sample_rate), end - pos)
                unvoiced[pos:pos + fric] = np.hanning(2 * fric)[:fric] * rng.uniform(0.3, 0.7)
            pos = end
        pos += int(rng.uniform(0.15, 0.6) * sample_rate)

    # Smooth formant transitions (about 40 ms) instead of jumps.
    formants = uniform_filter1d(formants, int(0.04 * sample_rate), axis=0, mode="nearest")

    # Pitch: declination across the utterance, slow intonation and a little jitter.
    f0 = traits["f0"] * (1.1 - 0.2 * t / max(seconds, 1e-3))
    f0 *= 1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t + rng.uniform(0, 2 * np.pi))
    f0 *= 1 + 0.005 * rng.standard_normal(n).cumsum() / np.sqrt(np.arange(1, n + 1))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    sawtooth = 2 * ((phase / (2 * np.pi)) % 1.0) - 1  # every harmonic, falling 6 dB/octave
    excitation = sawtooth * env + rng.standard_normal(n) * (0.02 * env + 0.8 * unvoiced)

    def envelope(freqs, times):
        idx = np.clip((times * sample_rate).astype(int), 0, n - 1)
        fr = formants[idx]  # (frames, 3)
        resp = np.zeros((len(freqs), len(times)))
        for k in range(3):
            centre, bw = fr[:, k][None, :], _FORMANT_BANDWIDTHS[k]
            resp += (1.0 / (k + 1)) / (1 + ((freqs[:, None] - centre) / bw) ** 2)
        high = (freqs[:, None] > 2500) * unvoiced[idx][None, :] * 2.0  # fricatives are bright
        return resp + high

    return _normalise(_stft_filter(excitation, sample_rate, envelope))


def _tone(rng, t, sr):
    if rng.random() < 0.5:
        freq = np.full_like(t, np.exp(rng.uniform(np.log(100), np.log(4000))))
    else:  # a glide between two frequencies, up or down, possibly back and forth
        lo, hi = sorted(np.exp(rng.uniform(np.log(100), np.log(4000), size=2)))
        period = rng.uniform(0.5, 4.0)
        freq = lo * (hi / lo) ** (0.5 - 0.5 * np.cos(2 * np.pi * t / period))
    return np.sin(2 * np.pi * np.cumsum(freq) / sr + rng.uniform(0, 2 * np.pi))


def _air_conditioner(rng, t, sr):
    n = len(t)
    white = rng.standard_normal(n)
    cutoff, resonance = rng.uniform(300, 1500), rng.uniform(150, 600)
    mains = rng.choice([50.0, 60.0])

    def fan(freqs, _times):  # low-passed broadband rush with a broad resonance of the housing
        shape = 1 / np.sqrt(1 + (freqs / cutoff) ** 4) + 0.6 * np.exp(-0.5 * ((freqs - resonance) / 80) ** 2)
        return shape[:, None]

    rush = _stft_filter(white, sr, fan)
    rush /= np.sqrt(np.mean(rush**2)) + 1e-9
    hum = sum(0.6 / k * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 2 * np.pi)) for k in range(1, 9))
    blade = 1 + 0.15 * np.sin(2 * np.pi * rng.uniform(8, 30) * t)
    return rush * blade + hum * rng.uniform(0.3, 1.0)


def _dog_bark(rng, t, sr):
    n = len(t)
    out = np.zeros(n)
    pos = int(rng.uniform(0, 0.4) * sr)
    while pos < n:
        dur = int(rng.uniform(0.08, 0.25) * sr)
        tt = np.arange(dur) / sr
        f0 = rng.uniform(350, 900) * (1 - rng.uniform(0.2, 0.4) * tt / tt[-1])
        phase = 2 * np.pi * np.cumsum(f0) / sr
        burst = (2 * ((phase / (2 * np.pi)) % 1) - 1) + 0.5 * rng.standard_normal(dur)
        burst *= (1 - np.exp(-tt / 0.005)) * np.exp(-tt / rng.uniform(0.04, 0.12))
        end = min(pos + dur, n)
        out[pos:end] += burst[: end - pos] * rng.uniform(0.5, 1.0)
        pos += dur + int(rng.uniform(0.15, 1.0) * sr)
    centre = rng.uniform(900, 2000)
    out = _stft_filter(out, sr, lambda f, _t: (0.3 + np.exp(-0.5 * ((f - centre) / 600) ** 2))[:, None])
    return out + 1e-3 * rng.standard_normal(n)  # a faint room floor between barks


def _siren(rng, t, sr):
    centre, depth = rng.uniform(700, 1100), rng.uniform(200, 500)
    rate = rng.uniform(0.15, 0.5) if rng.random() < 0.6 else rng.uniform(2.5, 5.0)  # wail or yelp
    freq = centre + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(freq) / sr
    return sum(a * np.sin(k * phase) for k, a in ((1, 1.0), (2, 0.4), (3, 0.2)))


_NOISES = {"tone": _tone, "air_conditioner": _air_conditioner, "dog_bark": _dog_bark, "siren": _siren}


def noise(kind: str, seed: int, sample_rate: int, seconds: float) -> np.ndarray:
    """One synthetic noise recording of `kind` (see NOISE_KINDS)."""
    if kind not in _NOISES:
        raise ValueError(f"unknown synthetic noise '{kind}'; known: {list(NOISE_KINDS)}")
    rng = _rng(kind, seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return _normalise(_NOISES[kind](rng, t, sample_rate))
