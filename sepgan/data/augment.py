"""Training-data augmentations: noise kinds beyond the recorded classes, random channels, rooms.

A model trained on ten classes of recorded noise at −5…10 dB learns those ten classes. These make
the training mixtures vary like recordings from elsewhere do:

- noise sources: recorded clips, babble of 2–6 talkers of the same split (never the target's
  speaker), stationary coloured noise with a random spectral slope, synthetic sirens and alarms
  (`siren_noise`), and mixtures of two sources;
- channels: random peaking/shelving equalisers (RBJ biquads) and band-limiting (a sharp elliptic
  low-pass, as in telephone or low-rate recordings, with an optional high-pass), drawn separately for
  the speech and for each noise source;
- rooms: a statistical room impulse response (see `room_impulse_response`), with a dry or an
  early-reverberant target;
- resampling: the whole recording (speech, target and noise alike) through a sharp anti-alias
  low-pass just below the Nyquist frequency, as every 44.1/48 kHz file read at 16 kHz has been; a
  model that never saw that edge takes the speech above 4 kHz for noise;
- speed: the speech, or a recorded noise clip, played faster or slower (tempo and pitch together,
  by resampling, as speed perturbation does for speech recognisers): voices higher and lower than
  the training speakers', and noises at pitches the recordings never had (off by default);
- phase: the whole recording (speech, target and noise alike) through an all-pass that shifts
  every frequency's phase by one random angle (a polarity inversion is the shift by 180°); it
  sounds the same but rotates the complex spectrogram (`phase_shifted`; off by default: it did
  not help the shipped recipe, experiments/ABLATION.md);
- wider SNR and level ranges than the unaugmented mixtures.

Plain numpy/scipy (and sepgan's soxr resampler); every random choice comes from the `rng` passed in, so an index-seeded
generator gives the same example every time. The mixture is always target speech + noise: with a
room, the noise is the mixture minus the target (the added noise and the late reverberation).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import fft as sp_fft
from scipy import signal as sps

from sepgan.audio import resample
from sepgan.data.corpora import Corpus
from sepgan.data.mixing import Mixer, active_excerpt, crop_or_pad, power

BABBLE, COLOURED = "babble", "coloured noise"  # labels of the generated noise kinds (noise_class)
SIREN = "siren"  # the synthetic sirens' label: UrbanSound8K's own class name, so both teach the classifier one class
SOURCE_KINDS = ("recorded", BABBLE, "coloured", SIREN)  # the keys of data.augment.sources


# ---- configuration (data.augment in sepgan/conf/data/default.yaml) -------------------------------
@dataclass(frozen=True)
class Equaliser:
    speech: float = 0.3  # probability that the speech is equalised
    noise: float = 0.5  # probability for each noise source
    filters: tuple[int, int] = (1, 3)  # how many biquads (peaking, low or high shelf)
    gain_db: tuple[float, float] = (-12.0, 12.0)


@dataclass(frozen=True)
class BandLimit:
    speech: float = 0.15  # probability that the speech is band-limited
    noise: float = 0.15  # probability for each noise source
    cutoff_hz: tuple[float, float] = (2500.0, 7000.0)  # low-pass; clipped to 0.45 × sample rate
    high_pass: float = 0.5  # probability of a high-pass as well (telephone-like band)
    high_pass_hz: tuple[float, float] = (100.0, 400.0)


@dataclass(frozen=True)
class Reverb:
    prob: float = 0.0  # probability that an example is in a room
    rt60: tuple[float, float] = (0.2, 1.0)  # seconds, below 2 kHz
    drr_db: tuple[float, float] = (-3.0, 12.0)  # direct-to-reverberant energy ratio
    hf_ratio: float = 0.6  # RT60 above 2 kHz relative to below (air and wall absorption)
    target: str = "early"  # early: direct path + first early_ms (the model keeps those); dry: the source
    early_ms: float = 50.0
    noise: bool = True  # the noise is reverberant too (its own response in the same room)


@dataclass(frozen=True)
class Resampled:
    prob: float = 0.5  # probability that an example's recording went through a resampler's low-pass
    cutoff: tuple[float, float] = (0.85, 0.99)  # its edge, as a fraction of the Nyquist frequency


@dataclass(frozen=True)
class Speed:
    speech: float = 0.0  # probability that the speech is played faster or slower (pitch with it)
    noise: float = 0.0  # probability for each recorded noise clip
    factor: tuple[float, float] = (0.9, 1.1)  # the rate: 1.1 is 10 % faster and higher


@dataclass(frozen=True)
class AugmentConfig:
    enabled: bool = True
    eval: bool = False  # validation/test augmented too (fixed per index); false: unaugmented
    snr_db: tuple[float, float] = (-5.0, 20.0)
    gain_db: tuple[float, float] = (-35.0, -5.0)
    sources: dict[str, float] = field(
        default_factory=lambda: {"recorded": 0.6, BABBLE: 0.2, "coloured": 0.2, SIREN: 0.1})
    second_source: float = 0.3  # probability of a second noise source
    second_source_db: tuple[float, float] = (-10.0, 0.0)  # its level relative to the first
    babble_talkers: tuple[int, int] = (2, 6)
    coloured_exponent: tuple[float, float] = (-1.0, 2.0)  # power ∝ 1/f^x: blue −1, white 0, pink 1, brown 2
    eq: Equaliser = Equaliser()
    band_limit: BandLimit = BandLimit()
    reverb: Reverb = Reverb()
    resampled: Resampled = Resampled()
    speed: Speed = Speed()
    phase: float = 0.0  # probability that an example's phase is shifted by a random angle (all-pass)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None, prefix: str = "data.augment") -> "AugmentConfig":
        """Build from the config's mapping, naming any unknown key or bad value."""
        return _build(cls, dict(values or {}), prefix)

    def check(self, prefix: str = "data.augment") -> None:
        ranges = {"snr_db": self.snr_db, "gain_db": self.gain_db, "second_source_db": self.second_source_db,
                  "babble_talkers": self.babble_talkers, "coloured_exponent": self.coloured_exponent,
                  "eq.filters": self.eq.filters, "eq.gain_db": self.eq.gain_db,
                  "band_limit.cutoff_hz": self.band_limit.cutoff_hz,
                  "band_limit.high_pass_hz": self.band_limit.high_pass_hz,
                  "reverb.rt60": self.reverb.rt60, "reverb.drr_db": self.reverb.drr_db,
                  "resampled.cutoff": self.resampled.cutoff, "speed.factor": self.speed.factor}
        for name, value in ranges.items():
            if len(value) != 2 or value[0] > value[1]:
                raise ValueError(f"{prefix}.{name}: expected [low, high] with low <= high, got {list(value)}")
        probabilities = {"second_source": self.second_source, "eq.speech": self.eq.speech, "eq.noise": self.eq.noise,
                         "band_limit.speech": self.band_limit.speech, "band_limit.noise": self.band_limit.noise,
                         "band_limit.high_pass": self.band_limit.high_pass, "reverb.prob": self.reverb.prob,
                         "resampled.prob": self.resampled.prob, "speed.speech": self.speed.speech,
                         "speed.noise": self.speed.noise, "phase": self.phase}
        for name, p in probabilities.items():
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{prefix}.{name}: a probability between 0 and 1, got {p}")
        unknown = sorted(set(self.sources) - set(SOURCE_KINDS))
        if unknown or any(w < 0 for w in self.sources.values()) or sum(self.sources.values()) <= 0:
            raise ValueError(f"{prefix}.sources: weights >= 0, not all zero, of {', '.join(SOURCE_KINDS)}; "
                             f"got {dict(self.sources)}")
        if self.babble_talkers[0] < 1:
            raise ValueError(f"{prefix}.babble_talkers: at least 1 talker, got {list(self.babble_talkers)}")
        if self.reverb.target not in ("early", "dry"):
            raise ValueError(f"{prefix}.reverb.target: 'early' or 'dry', got '{self.reverb.target}'")
        if self.reverb.rt60[0] <= 0 or self.reverb.hf_ratio <= 0 or self.reverb.early_ms < 0:
            raise ValueError(f"{prefix}.reverb: rt60 and hf_ratio must be positive and early_ms >= 0")
        if not (0.0 < self.resampled.cutoff[0] and self.resampled.cutoff[1] <= 0.99):
            raise ValueError(f"{prefix}.resampled.cutoff: fractions of the Nyquist frequency in (0, 0.99], "
                             f"got {list(self.resampled.cutoff)}")
        if not (0.5 <= self.speed.factor[0] and self.speed.factor[1] <= 2.0):
            raise ValueError(f"{prefix}.speed.factor: rates between 0.5 and 2, got {list(self.speed.factor)}")


def _build(cls, values: dict[str, Any], prefix: str):
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{prefix}: unknown key(s) {unknown}; known: {sorted(known)}")
    kwargs = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        if is_dataclass(default):
            kwargs[name] = _build(type(default), dict(value or {}), f"{prefix}.{name}")
        elif isinstance(default, tuple):
            kwargs[name] = tuple(value)
        elif isinstance(default, dict):
            kwargs[name] = {str(k): float(v) for k, v in dict(value).items()}
        else:
            kwargs[name] = value
    config = cls(**kwargs)
    if cls is AugmentConfig:
        config.check(prefix)
    return config


# ---- signals -------------------------------------------------------------------------------------
def coloured_noise(length: int, exponent: float, sample_rate: int, rng: np.random.Generator,
                   floor_hz: float = 50.0) -> np.ndarray:
    """Stationary Gaussian noise whose power falls as 1/f^exponent (per octave −3·exponent dB).

    Below `floor_hz` the spectrum is flat: brown noise would otherwise put most of its power in
    inaudible rumble, and the SNR would then measure that rumble.
    """
    freqs = np.fft.rfftfreq(length, 1.0 / sample_rate)
    amplitude = np.maximum(freqs, floor_hz) ** (-exponent / 2)
    amplitude[0] = 0.0
    spectrum = amplitude * (rng.standard_normal(len(freqs)) + 1j * rng.standard_normal(len(freqs)))
    x = np.fft.irfft(spectrum, n=length)
    return x / np.sqrt(power(x))


SIREN_PATTERNS = ("wail", "yelp", "two_tone", "pulse")


def siren_noise(length: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic siren or alarm at unit power: one of `SIREN_PATTERNS`, each drawn afresh.

    Why: version 6 of the shipped model removed the training split's recorded sirens by 11.4 dB
    SI-SDRi but the test split's by 5.6, the largest gap of any class: some thirty recorded clips
    teach those sirens, not sirens (experiments/ABLATION.md, "synthetic sirens"). These vary what a siren is: a wail (a sweep up and down between
    two pitches over 2–7 s), a yelp (the same sweep every 0.12–0.5 s), a two-tone (two pitches in
    turn, the European "hi-lo") or a pulse (a beeping alarm), on a fundamental of 350–900 Hz
    (pulses 0.8–4 kHz) with 1–8 harmonics, odd ones only half the time (electronic sirens are
    square-ish waves), a Doppler drift of up to ±6 % and a level that changes by up to ±6 dB
    across the excerpt (a passing vehicle).
    """
    t = np.arange(length) / sample_rate
    pattern = SIREN_PATTERNS[rng.integers(len(SIREN_PATTERNS))]
    low = rng.uniform(350.0, 900.0)
    if pattern in ("wail", "yelp"):
        high = low * rng.uniform(1.4, 2.6)
        period = rng.uniform(2.0, 7.0) if pattern == "wail" else rng.uniform(0.12, 0.5)
        position, rise = (t / period + rng.uniform()) % 1.0, rng.uniform(0.3, 0.7)  # rise: the share spent rising
        sweep = np.where(position < rise, position / rise, (1.0 - position) / (1.0 - rise))
        freq = low * (high / low) ** sweep
    elif pattern == "two_tone":
        high = low * rng.uniform(1.15, 1.5)
        freq = np.where((t / rng.uniform(0.6, 2.0) + rng.uniform()) % 1.0 < 0.5, low, high)
    else:
        freq = np.full(length, rng.uniform(800.0, 4000.0))
    freq = freq * (1.0 + rng.uniform(-0.06, 0.06) * t / max(t[-1], 1e-9))
    phase = 2 * np.pi * np.cumsum(freq) / sample_rate + rng.uniform(0, 2 * np.pi)
    step, slope = (2 if rng.random() < 0.5 else 1), rng.uniform(0.5, 2.0)
    harmonics = [k for k in range(1, int(rng.integers(1, 9)) + 1, step) if k * freq.max() < 0.45 * sample_rate]
    x = sum(k ** -slope * np.sin(k * phase) for k in harmonics or [1])
    if pattern == "pulse":
        gate = ((t / rng.uniform(0.15, 1.0) + rng.uniform()) % 1.0 < rng.uniform(0.3, 0.7)).astype(np.float64)
        ramp = np.hanning(max(3, int(0.01 * sample_rate)))  # 10 ms on and off, not clicks
        x = x * np.convolve(gate, ramp / ramp.sum(), mode="same")
    x = x * 10 ** (rng.uniform(-6.0, 6.0) * (t / max(t[-1], 1e-9) - 0.5) / 20)
    p = power(x)
    return x / np.sqrt(p) if p > 0 else x


def biquad(kind: str, f0: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """One second-order section (b0 b1 b2 a0 a1 a2) of the Audio EQ Cookbook (R. Bristow-Johnson)."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * f0 / sample_rate
    cos, alpha = np.cos(w0), np.sin(w0) / (2 * q)
    if kind == "peaking":
        b = [1 + alpha * a, -2 * cos, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cos, 1 - alpha / a]
    elif kind in ("low_shelf", "high_shelf"):
        s = 1 if kind == "low_shelf" else -1  # the high shelf is the low shelf with cos(w0) negated
        root = 2 * np.sqrt(a) * alpha
        b = [a * ((a + 1) - s * (a - 1) * cos + root), 2 * s * a * ((a - 1) - s * (a + 1) * cos),
             a * ((a + 1) - s * (a - 1) * cos - root)]
        den = [(a + 1) + s * (a - 1) * cos + root, -2 * s * ((a - 1) + s * (a + 1) * cos),
               (a + 1) + s * (a - 1) * cos - root]
    else:
        raise ValueError(f"unknown biquad kind '{kind}'")
    return np.array(b + den) / den[0]


def random_equaliser(sample_rate: int, rng: np.random.Generator, cfg: Equaliser) -> np.ndarray:
    """`cfg.filters` random biquads as second-order sections: peaks/dips anywhere, shelves low or high."""
    nyquist = sample_rate / 2
    sections = []
    for _ in range(rng.integers(cfg.filters[0], cfg.filters[1] + 1)):
        kind = ("peaking", "low_shelf", "high_shelf")[rng.integers(3)]
        low, high = {"peaking": (100.0, 0.8 * nyquist), "low_shelf": (80.0, 500.0),
                     "high_shelf": (min(1500.0, 0.5 * nyquist), 0.8 * nyquist)}[kind]
        f0 = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        q = float(np.exp(rng.uniform(np.log(0.5), np.log(4.0)))) if kind == "peaking" else 0.707
        sections.append(biquad(kind, f0, rng.uniform(*cfg.gain_db), q, sample_rate))
    return np.array(sections).reshape(-1, 6)


def band_limiter(sample_rate: int, rng: np.random.Generator, cfg: BandLimit) -> np.ndarray | None:
    """A sharp low-pass (elliptic, 60 dB down just above the cut-off), sometimes with a high-pass."""
    high = min(cfg.cutoff_hz[1], 0.45 * sample_rate)
    low = min(cfg.cutoff_hz[0], high)
    if low >= 0.45 * sample_rate:
        return None  # nothing to cut at this sample rate
    sos = [design("ellip", float(rng.uniform(low, high)), "lowpass", sample_rate)]
    if rng.random() < cfg.high_pass:
        sos.append(design("butter", float(rng.uniform(*cfg.high_pass_hz)), "highpass", sample_rate))
    return np.concatenate(sos)


def design(family: str, cutoff_hz: float, btype: str, sample_rate: int) -> np.ndarray:
    """Second-order sections of an order-8 elliptic (0.5 dB ripple, 60 dB stop band) or order-4
    Butterworth filter. The cut-off is rounded to 10 Hz so that designs (milliseconds each, more
    than the filtering) are reused."""
    return _design(family, round(cutoff_hz / 10) * 10, btype, sample_rate)


@lru_cache(maxsize=1024)
def _design(family: str, cutoff_hz: float, btype: str, sample_rate: int) -> np.ndarray:
    if family == "ellip":
        return sps.ellip(8, 0.5, 60, cutoff_hz, btype, fs=sample_rate, output="sos")
    return sps.butter(4, cutoff_hz, btype, fs=sample_rate, output="sos")


def room_impulse_response(sample_rate: int, rt60: float, drr_db: float, rng: np.random.Generator,
                          hf_ratio: float = 0.6, crossover_hz: float = 2000.0) -> np.ndarray:
    """A statistical room impulse response with the direct path at sample 0.

    Not a geometric simulation: after the direct path, the reverberation is Gaussian noise under an
    exponential decay of 60 dB in `rt60` seconds (Polack's model of a diffuse field), starting after a
    random 1–10 ms gap (the first reflections' extra path). High frequencies decay faster: above
    `crossover_hz` the decay time is `hf_ratio` × rt60. The tail's energy is set so that direct /
    reverberant energy is `drr_db`. Length: rt60 (the tail is then 60 dB down).
    """
    length = max(int(rt60 * sample_rate), 2)
    t = np.arange(length) / sample_rate
    noise = rng.standard_normal(length)
    low = sps.sosfilt(design("butter", crossover_hz, "lowpass", sample_rate), noise)
    decay = -3 * np.log(10) * t / rt60  # amplitude: e^decay is 60 dB down at rt60
    tail = low * np.exp(decay) + (noise - low) * np.exp(decay / hf_ratio)
    gap = int(rng.uniform(0.001, 0.01) * sample_rate)
    tail[:gap] = 0.0
    tail *= np.sqrt(10 ** (-drr_db / 10) / max(float(np.sum(tail**2)), 1e-20))
    tail[0] = 1.0  # the direct path, unit energy
    return tail


def sped_up(x: np.ndarray, factor: float) -> np.ndarray:
    """x played `factor` times as fast (tempo and pitch together): x taken as recorded at `factor` times
    its rate and resampled back (sepgan.audio.resample, soxr), so len(x) / factor samples."""
    return resample(np.asarray(x, np.float32), factor, 1.0)


def phase_shifted(x: np.ndarray, angle: float) -> np.ndarray:
    """x with every frequency's phase moved by `angle` radians: cos(angle)·x − sin(angle)·H(x), H the Hilbert transform.

    Linear, so speech and noise shifted alike still add up to the shifted mixture; the magnitude
    spectrum is unchanged (but for DC and Nyquist, which have no phase to move and are scaled by
    cos(angle)). The transform is circular over the excerpt, as the room's noise convolution is.
    An STFT of the result is, away from the ends, the input's STFT times exp(i·angle).
    """
    return np.cos(angle) * x - np.sin(angle) * np.imag(sps.hilbert(x))


def convolve(x: np.ndarray, responses: list[np.ndarray], context: int, length: int) -> list[np.ndarray]:
    """`length` samples of x ⊛ each response after the first `context` samples of x (its left context);
    x is transformed once for all of them."""
    n = sp_fft.next_fast_len(len(x) + max(len(h) for h in responses) - 1, real=True)
    spectrum = sp_fft.rfft(x, n)
    return [sp_fft.irfft(spectrum * sp_fft.rfft(h, n), n)[context:context + length] for h in responses]


def circular_convolve(x: np.ndarray, response: np.ndarray) -> np.ndarray:
    """x ⊛ response with the tail wrapped round to the start: a noise excerpt has no past to reverberate,
    and wrapping gives its start the reverberation a continuing noise would have."""
    n = len(x)
    folded = np.zeros(n)
    for start in range(0, len(response), n):
        chunk = response[start:start + n]
        folded[:len(chunk)] += chunk
    return sp_fft.irfft(sp_fft.rfft(x) * sp_fft.rfft(folded), n)


# ---- examples ------------------------------------------------------------------------------------
class Augmenter:
    """Makes one augmented example from a split's speech and noise corpora and an `rng`.

    Babble talkers come from the same split's speech corpus (training talkers for training
    mixtures) and never include the target's speaker.
    """

    def __init__(self, cfg: AugmentConfig, speech: Corpus, noise: Corpus, mixer: Mixer, sample_rate: int):
        self.cfg, self.speech, self.noise, self.sample_rate = cfg, speech, noise, sample_rate
        self.mixer = Mixer(mixer.segment, cfg.snr_db, cfg.gain_db)
        self.segment = mixer.segment
        generated = (BABBLE, COLOURED) + ((SIREN,) if cfg.sources.get(SIREN, 0) > 0 else ())
        self.labels = noise.labels + [label for label in generated if label not in noise.labels]
        self.speakers: dict[str, list[int]] = {}
        for i, r in enumerate(speech.recordings):
            self.speakers.setdefault(r.group, []).append(i)
        kinds = [k for k, w in cfg.sources.items() if w > 0]
        self.kinds, weights = kinds, np.array([cfg.sources[k] for k in kinds])
        self.weights = weights / weights.sum()
        self.context = int(cfg.reverb.rt60[1] * sample_rate) if cfg.reverb.prob > 0 else 0
        self._powers: dict[tuple[int, int], float] = {}

    def mean_power(self, corpus: Corpus, index: int) -> float:
        """power() of a whole recording, kept: it costs a pass over the recording, and babble reads many."""
        key = (id(corpus), index)
        if key not in self._powers:
            self._powers[key] = power(corpus.load(index))
        return self._powers[key]

    def excerpt(self, corpus: Corpus, index: int, rng: np.random.Generator, speed: float = 0.0) -> np.ndarray | None:
        """A looped excerpt of a recording that is not a pause, played at another speed with probability `speed`."""
        return active_excerpt(self.speed_changed(corpus.load(index), rng, speed), self.segment, rng, loop=True,
                              mean_power=self.mean_power(corpus, index))

    def speed_changed(self, x: np.ndarray, rng: np.random.Generator, prob: float) -> np.ndarray:
        """x at a random rate of `speed.factor` with probability `prob` (no draw when prob is 0, so that
        the mixtures of recipes without it stay as they were)."""
        if prob > 0 and rng.random() < prob:
            return sped_up(x, rng.uniform(*self.cfg.speed.factor))
        return x

    def __call__(self, rng: np.random.Generator) -> dict[str, Any] | None:
        """An example (mixture, speech, noise, snr_db, noise_class, noise_class2), or None when an excerpt was silent.

        `noise_class2` is the second noise source's class, or -1 when there is none.
        """
        index = int(rng.integers(len(self.speech)))
        speech = self.speech_excerpt(index, rng)
        first = self.noise_source(rng, self.speech.recordings[index].group)
        if speech is None or first is None:
            return None
        noise, label = first
        second_label = None
        if rng.random() < self.cfg.second_source:
            second = self.noise_source(rng, self.speech.recordings[index].group)
            if second is None:
                return None
            noise = noise + second[0] * 10 ** (rng.uniform(*self.cfg.second_source_db) / 20)
            second_label = second[1]
        speech = self.channel(speech, rng, self.cfg.eq.speech, self.cfg.band_limit.speech)
        target = speech[self.context:]
        reverb = self.cfg.reverb
        if rng.random() < reverb.prob:
            rt60 = rng.uniform(*reverb.rt60)
            rir = self.room(rng, rt60)
            early = rir[:int(reverb.early_ms / 1000 * self.sample_rate) + 1]
            reverberant, early = convolve(speech, [rir, early], self.context, self.segment)
            target = speech[self.context:] if reverb.target == "dry" else early
            if reverb.noise:
                noise = circular_convolve(noise, self.room(rng, rt60))
        else:
            reverberant = target
        if self.cfg.resampled.prob > 0 and rng.random() < self.cfg.resampled.prob:  # no draw when off
            edge = rng.uniform(*self.cfg.resampled.cutoff) * self.sample_rate / 2
            sos = design("ellip", edge, "lowpass", self.sample_rate)
            reverberant, target, noise = (sps.sosfilt(sos, x) for x in (reverberant, target, noise))
        if self.cfg.phase > 0 and rng.random() < self.cfg.phase:  # no draw when off
            angle = rng.uniform(0.0, 2 * np.pi)
            reverberant, target, noise = (phase_shifted(x, angle) for x in (reverberant, target, noise))
        if power(reverberant) == 0.0 or power(noise) == 0.0:
            return None
        example = self.mixer.mix(reverberant, noise, rng.uniform(*self.cfg.snr_db), rng.uniform(*self.cfg.gain_db),
                                 target=target)
        example["noise_class"] = self.labels.index(label)
        example["noise_class2"] = -1 if second_label is None else self.labels.index(second_label)
        return example

    def room(self, rng: np.random.Generator, rt60: float) -> np.ndarray:
        """A response of the room with this RT60, from a random position (direct-to-reverberant ratio)."""
        r = self.cfg.reverb
        return room_impulse_response(self.sample_rate, rt60, rng.uniform(*r.drr_db), rng, r.hf_ratio)

    def speech_excerpt(self, index: int, rng: np.random.Generator, tries: int = 8) -> np.ndarray | None:
        """A segment that is not a pause, with `context` samples before it (the reverberation's past)."""
        x, length = self.speed_changed(self.speech.load(index), rng, self.cfg.speed.speech), self.segment
        floor = 0.01 * self.mean_power(self.speech, index)
        padded = np.concatenate([np.zeros(self.context, x.dtype), x])
        for _ in range(tries if floor > 0 else 0):
            if len(x) >= length:
                start = int(rng.integers(0, len(x) - length + 1))
                seg = padded[start:start + self.context + length]
            else:
                seg = np.concatenate([np.zeros(self.context, x.dtype), crop_or_pad(x, length, rng, loop=False)])
            if power(seg[self.context:]) > floor:
                return seg.astype(np.float64)
        return None

    def babble(self, rng: np.random.Generator, exclude: str) -> tuple[np.ndarray, list[int]]:
        """Talkers of distinct speakers other than `exclude`, each at its own level (±3 dB), summed.

        Returns the babble and the speech corpus indices of the recordings used. With fewer other
        speakers than asked, all of them talk.
        """
        others = [g for g in self.speakers if g != exclude]
        count = min(int(rng.integers(self.cfg.babble_talkers[0], self.cfg.babble_talkers[1] + 1)), len(others))
        out, used = np.zeros(self.segment), []
        for g in rng.choice(len(others), size=count, replace=False):
            members = self.speakers[others[g]]
            index = members[rng.integers(len(members))]
            x = self.excerpt(self.speech, index, rng)
            if x is not None:
                out += x / np.sqrt(power(x)) * 10 ** (rng.uniform(-3, 3) / 20)
                used.append(index)
        return out, used

    def channel(self, x: np.ndarray, rng: np.random.Generator, p_eq: float, p_band: float) -> np.ndarray:
        """x through a random equaliser (with probability p_eq) and band-limit (p_band)."""
        sections = []
        if rng.random() < p_eq:
            sections.append(random_equaliser(self.sample_rate, rng, self.cfg.eq))
        if rng.random() < p_band:
            limiter = band_limiter(self.sample_rate, rng, self.cfg.band_limit)
            if limiter is not None:
                sections.append(limiter)
        return sps.sosfilt(np.concatenate(sections), x) if sections else x

    def noise_source(self, rng: np.random.Generator, speaker: str) -> tuple[np.ndarray, str] | None:
        """One noise source at unit power, through a random channel, and its label."""
        kind = self.kinds[rng.choice(len(self.kinds), p=self.weights)]
        if kind == BABBLE and len(self.speakers) > 1:
            x, label = self.babble(rng, speaker)[0], BABBLE
        elif kind == "coloured":
            x = coloured_noise(self.segment, rng.uniform(*self.cfg.coloured_exponent), self.sample_rate, rng)
            label = COLOURED
        elif kind == SIREN:
            x, label = siren_noise(self.segment, self.sample_rate, rng), SIREN
        else:  # recorded (also babble when the split has a single speaker)
            label = self.noise.labels[rng.integers(len(self.noise.labels))]
            members = self.noise.by_label[label]
            x = self.excerpt(self.noise, members[rng.integers(len(members))], rng, self.cfg.speed.noise)
        if x is None:
            return None
        x = self.channel(np.asarray(x, np.float64), rng, self.cfg.eq.noise, self.cfg.band_limit.noise)
        p = power(x)
        return (x / np.sqrt(p), label) if p > 0 else None
