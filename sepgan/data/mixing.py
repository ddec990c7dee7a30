"""On-the-fly mixing: a speech segment plus a noise segment at a chosen SNR and level."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def crop_or_pad(x: np.ndarray, length: int, rng: np.random.Generator, loop: bool) -> np.ndarray:
    """A `length`-sample excerpt at a random offset; shorter signals are looped or zero-padded."""
    if len(x) >= length:
        start = rng.integers(0, len(x) - length + 1)
        return x[start:start + length]
    if loop:
        reps = -(-length // len(x)) + 1
        tiled = np.tile(x, reps)
        start = rng.integers(0, len(x))
        return tiled[start:start + length]
    out = np.zeros(length, dtype=x.dtype)
    start = rng.integers(0, length - len(x) + 1)
    out[start:start + len(x)] = x
    return out


def active_excerpt(x: np.ndarray, length: int, rng: np.random.Generator, loop: bool, tries: int = 8,
                   mean_power: float | None = None) -> np.ndarray | None:
    """An excerpt with at least 1% of the signal's mean power (not a pause), or None if none is found.

    `mean_power` is power(x), when the caller has it already (it costs a pass over the whole recording)."""
    floor = 0.01 * (power(x) if mean_power is None else mean_power)
    if floor == 0.0:
        return None
    for _ in range(tries):
        seg = crop_or_pad(x, length, rng, loop)
        if power(seg) > floor:
            return seg
    return None


@dataclass(frozen=True)
class Mixer:
    """Scales noise to an SNR drawn from `snr_db`, then the mixture to an RMS level drawn from `gain_db` (dBFS).

    The gain never clips: if the mixture would peak above 0.99 it is turned down, which leaves the
    SNR untouched. Silent speech is allowed only when both are given explicitly (SNR undefined).
    """

    segment: int
    snr_db: tuple[float, float] = (-5.0, 10.0)
    gain_db: tuple[float, float] = (-25.0, -10.0)

    def __post_init__(self):
        if self.segment < 1:
            raise ValueError(f"segment length must be positive, got {self.segment} samples")
        for name, (lo, hi) in (("snr_db", self.snr_db), ("gain_db", self.gain_db)):
            if lo > hi:
                raise ValueError(f"data.{name}: range [{lo}, {hi}] has its low end above its high end")

    def mix(self, speech: np.ndarray, noise: np.ndarray, snr_db: float, gain_db: float,
            target: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Mix equal-length segments at exactly `snr_db`, with the mixture's RMS at `gain_db` dBFS.

        `target` (e.g. the dry or early part of reverberant `speech`) is returned as the speech, and
        the noise is then mixture − target, so that mixture = speech + noise still holds.
        """
        ps, pn = power(speech), power(noise)
        if ps == 0.0 or pn == 0.0:
            raise ValueError("cannot set an SNR with a silent speech or noise segment")
        noise = noise * np.sqrt(ps / (pn * 10 ** (snr_db / 10)))
        mixture = speech + noise
        gain = 10 ** (gain_db / 20) / np.sqrt(power(mixture))
        peak = float(np.max(np.abs(mixture))) * gain
        if peak > 0.99:
            gain *= 0.99 / peak
        if target is not None:
            speech, noise = target, mixture - target
        return {
            "mixture": (mixture * gain).astype(np.float32),
            "speech": (speech * gain).astype(np.float32),
            "noise": (noise * gain).astype(np.float32),
            "snr_db": np.float32(snr_db),
        }

    def __call__(self, speech: np.ndarray, noise: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray] | None:
        """A random excerpt of each at a random SNR and gain; None when an excerpt is silent."""
        s = active_excerpt(speech, self.segment, rng, loop=False)
        n = active_excerpt(noise, self.segment, rng, loop=True)
        if s is None or n is None:
            return None
        return self.mix(s, n, rng.uniform(*self.snr_db), rng.uniform(*self.gain_db))
