"""Mixtures of several speakers (optionally plus noise), made on the fly, and their DataModule.

Each example takes `sources` utterances of different speakers of one split (so validation and test
speakers are never heard in training), an active excerpt of each, sets their levels `speaker_level_db`
apart at most (WSJ0-2mix mixes at 0-5 dB relative level), optionally adds noise at an SNR to the
voices' sum, and sets the mixture's level as the speech/noise mixer does. Batches hold `mixture`
(batch, samples), `sources` (batch, sources, samples) and `noise` (zeros without noise).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import Dataset

from sepgan.data.corpora import Corpus, split_by_group
from sepgan.data.datamodule import SPLITS, SeparationDataModule
from sepgan.data.mixing import Mixer, active_excerpt, power

log = logging.getLogger(__name__)


class SpeakerMixtureDataset(Dataset):
    """`length` mixtures of `sources` different speakers; fixed by `seed`, or fresh each time with `seed=None`."""

    def __init__(self, speech: Corpus, mixer: Mixer, length: int, seed: int | None = None, sources: int = 2,
                 speaker_level_db: float = 5.0, noise: Corpus | None = None):
        self.by_speaker = {}
        for i, r in enumerate(speech.recordings):
            self.by_speaker.setdefault(r.group, []).append(i)
        if len(self.by_speaker) < sources:
            raise ValueError(f"{sources}-speaker mixtures need at least {sources} speakers in each split, found "
                             f"{len(self.by_speaker)}; use more speakers or larger data.val_fraction/test_fraction")
        self.speakers = sorted(self.by_speaker)
        self.speech, self.mixer, self.length, self.seed = speech, mixer, length, seed
        self.sources, self.speaker_level_db, self.noise = sources, speaker_level_db, noise

    def __len__(self) -> int:
        return self.length

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is None:  # as MixtureDataset: torch's per-worker generator mixed with the index
            return np.random.default_rng([int(torch.randint(0, 2**62, ())), index])
        return np.random.default_rng([self.seed, index])

    def _voices(self, rng: np.random.Generator) -> np.ndarray | None:
        """(sources, segment) excerpts of different speakers at unit power times a random relative gain."""
        voices = []
        for speaker in rng.choice(len(self.speakers), self.sources, replace=False):
            utterances = self.by_speaker[self.speakers[speaker]]
            x = active_excerpt(self.speech.load(utterances[rng.integers(len(utterances))]), self.mixer.segment,
                               rng, loop=False)
            if x is None:
                return None
            voices.append(x / np.sqrt(power(x)))
        gains_db = rng.uniform(-self.speaker_level_db / 2, self.speaker_level_db / 2, self.sources)
        return np.stack(voices) * 10 ** (gains_db[:, None] / 20)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self._rng(index)
        for _ in range(50):
            voices = self._voices(rng)
            if voices is None:
                continue
            speech = voices.sum(axis=0)
            noise = np.zeros_like(speech)
            if self.noise is not None:
                recordings = self.noise.by_label[self.noise.labels[rng.integers(len(self.noise.labels))]]
                n = active_excerpt(self.noise.load(recordings[rng.integers(len(recordings))]), self.mixer.segment,
                                   rng, loop=True)
                if n is None:
                    continue
                noise = n * np.sqrt(power(speech) / (power(n) * 10 ** (rng.uniform(*self.mixer.snr_db) / 10)))
            mixture = speech + noise
            gain = 10 ** (rng.uniform(*self.mixer.gain_db) / 20) / np.sqrt(power(mixture))
            gain = min(gain, 0.99 / (float(np.max(np.abs(mixture))) + 1e-12))
            return {"mixture": torch.as_tensor(mixture * gain, dtype=torch.float32),
                    "sources": torch.as_tensor(voices * gain, dtype=torch.float32),
                    "noise": torch.as_tensor(noise * gain, dtype=torch.float32)}
        raise RuntimeError("50 draws in a row gave silent excerpts; check the corpus for silent files")


class TwoSpeakerDataModule(SeparationDataModule):
    """Speaker mixtures over the same corpora and splits as `SeparationDataModule` (speakers split by group).

    `noise: true` adds the configured noise classes at `snr_db` to the voices' sum; by default the
    mixtures are voices only, and no noise corpus is read.
    """

    def __init__(self, *args, sources: int = 2, speaker_level_db: float = 5.0, noise: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if sources < 2:
            raise ValueError(f"data.sources must be at least 2 speakers, got {sources}")
        self.sources, self.speaker_level_db, self.noise = sources, speaker_level_db, noise

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        h = self.hparams
        speech = split_by_group(self._speech_recordings(), h.val_fraction, h.test_fraction, h.seed)
        noise = self._split_noise(self._noise_recordings()) if self.noise else None
        lengths = {"train": h.train_examples, "val": h.val_examples, "test": h.test_examples}
        seeds = {"train": None, "val": h.seed + 1, "test": h.seed + 2}
        for name in SPLITS:
            corpora = [Corpus(speech[name], h.sample_rate, h.synthetic_seconds)]
            if noise is not None:
                corpora.append(Corpus(noise[name], h.sample_rate, h.synthetic_seconds))
            for corpus in corpora:  # decoded once here, before data-loader workers fork
                corpus.check_readable()
                corpus.preload()
            self.datasets[name] = SpeakerMixtureDataset(
                corpora[0], self.mixer, lengths[name], seeds[name], self.sources, self.speaker_level_db,
                corpora[1] if noise is not None else None)
        log.info("data: %d-speaker mixtures of %d training speakers%s", self.sources,
                 len(self.datasets["train"].speakers), " with noise" if noise is not None else "")
