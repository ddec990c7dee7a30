"""Noises the web page can add to an upload before cleaning it, to try the model as the study's site did.

Two sources: the embedded synthetic kinds (always there) and the classes of a noise folder given
to the server (sub-folder = class, e.g. ../shared/data/noise). Options are named `synthetic/KIND`
and `folder/CLASS`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sepgan.audio import load_audio
from sepgan.data import synthetic
from sepgan.data.corpora import scan_folder
from sepgan.data.mixing import crop_or_pad, power

SYNTHETIC_SECONDS = 20.0  # generated once per request, then looped: synthesis of long noise is slow


class NoiseCatalogue:
    def __init__(self, folder: str | Path | None = None):
        self.files: dict[str, list[Path]] = {}
        if folder is not None:
            if not Path(folder).is_dir():
                raise FileNotFoundError(f"noise folder '{folder}' does not exist or is not a folder")
            for recording in scan_folder(folder, what="noise folder"):
                self.files.setdefault(recording.label, []).append(recording.path)

    def options(self) -> list[dict]:
        """Every noise on offer, as {"id", "label", "source"}."""
        found = [dict(id=f"synthetic/{kind}", label=kind.replace("_", " "), source="synthetic")
                 for kind in synthetic.NOISE_KINDS]
        found += [dict(id=f"folder/{name}", label=f"{name.replace('_', ' ')} ({len(files)} recordings)",
                       source="folder") for name, files in sorted(self.files.items())]
        return found

    def noise(self, option: str, sample_rate: int, length: int, seed: int = 0) -> np.ndarray:
        """`length` samples of the chosen noise at `sample_rate` (looped if the source is shorter)."""
        source, _, name = option.partition("/")
        rng = np.random.default_rng(seed)
        if source == "synthetic" and name in synthetic.NOISE_KINDS:
            wav = synthetic.noise(name, seed, sample_rate, min(length / sample_rate, SYNTHETIC_SECONDS))
        elif source == "folder" and name in self.files:
            files = self.files[name]
            wav = load_audio(files[rng.integers(len(files))], sample_rate)[0][0]
        else:
            known = ", ".join(o["id"] for o in self.options())
            raise KeyError(f"unknown noise '{option}'; known: {known}")
        if power(wav) == 0.0:
            raise ValueError(f"the noise recording picked for '{option}' is silent; try another seed")
        return crop_or_pad(wav, length, rng, loop=True)

    def add(self, wav: np.ndarray, sample_rate: int, option: str, snr_db: float, seed: int = 0) -> np.ndarray:
        """`wav` (channels, samples) with the noise added at exactly `snr_db`, at about its own level.

        `Mixer.mix`'s arithmetic (the noise scaled to the SNR, the sum brought to the upload's level,
        turned down if it would peak above 0.99) in float32 with one new array, not its float64 copies
        of every signal: an upload can be minutes of several channels (about 4x the upload's decoded
        size at most, where `Mixer.mix` took 10x).
        """
        clean = power(wav)
        if clean == 0.0:
            raise ValueError("the upload is silent: a signal-to-noise ratio needs some signal")
        noise = self.noise(option, sample_rate, wav.shape[-1], seed).astype(np.float32)  # one channel, added to each
        noise *= np.float32(np.sqrt(clean / (power(noise) * 10 ** (snr_db / 10))))
        mixture = np.add(wav, noise, dtype=np.float32)
        gain = np.sqrt(clean / power(mixture))
        gain = min(gain, 0.99 / float(np.max(np.abs(mixture))))
        mixture *= np.float32(gain)
        return mixture
