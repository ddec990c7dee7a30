"""Datasets of mixtures made on the fly, and the LightningDataModule that serves them.

Training examples are new every time (random speech, noise class, excerpt, SNR and gain, and the
augmentations of `data.augment`) unless `train_seed` fixes them (debug=overfit); validation and test
examples are fixed by seed, so every epoch and every run sees the same ones (unaugmented unless
`data.augment.eval`, then augmented the same way each time, since every random choice comes from
the index's generator).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from sepgan.data import synthetic
from sepgan.data.augment import AugmentConfig, Augmenter
from sepgan.data.corpora import (
    Corpus,
    Recording,
    scan_folder,
    scan_librispeech,
    scan_urbansound8k,
    split_by_fold,
    split_by_group,
    synthetic_noise,
    synthetic_speech,
)
from sepgan.data.mixing import Mixer

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


class MixtureDataset(Dataset):
    """`length` mixtures of speech and noise; noise classes are drawn with equal probability.

    With `seed` set, example i is the same every time (validation/test). With `seed=None` each
    access draws fresh randomness from torch's generator (which Lightning seeds per worker and
    rank) mixed with the index: under DDP, ranks without workers share one generator state but
    get different indices from the distributed sampler, so they still train on different examples.
    """

    def __init__(self, speech: Corpus, noise: Corpus, mixer: Mixer, length: int, seed: int | None = None,
                 augmenter: Augmenter | None = None, labels: list[str] | None = None):
        self.speech, self.noise, self.mixer = speech, noise, mixer
        self.length, self.seed, self.augmenter = length, seed, augmenter
        # The classes this split draws from: the corpus's, then babble and coloured noise if augmented.
        self._own_labels = augmenter.labels if augmenter else list(noise.labels)
        # What `noise_class` indexes: `labels` (the training split's, so that a class means the same
        # number in every split even where a split lacks one, like the single cafe recording), then
        # any class of this split they lack.
        self.noise_labels = list(labels or []) + [c for c in self._own_labels if c not in (labels or [])]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.seed is None:
            rng = np.random.default_rng([int(torch.randint(0, 2**62, ())), index])
        else:
            rng = np.random.default_rng([self.seed, index])
        for _ in range(50):
            example = self.augmenter(rng) if self.augmenter is not None else self._plain(rng)
            if example is not None:
                labels = {key: self._index(example.pop(key)) for key in ("noise_class", "noise_class2")}
                return {**{k: torch.as_tensor(v) for k, v in example.items()}, **labels}
        raise RuntimeError("50 draws in a row gave silent speech or noise excerpts; check the corpus for silent files")

    def _index(self, own: int) -> int:
        """A class index of this split's own label list as an index of `noise_labels` (-1: none)."""
        return -1 if own < 0 else self.noise_labels.index(self._own_labels[own])

    def _plain(self, rng: np.random.Generator) -> dict | None:
        """A recorded-noise mixture by `mixer` (the unaugmented example; its draws fix the val/test sets)."""
        speech = self.speech.load(int(rng.integers(len(self.speech))))
        label = self.noise.labels[rng.integers(len(self.noise.labels))]
        noise_index = self.noise.by_label[label][rng.integers(len(self.noise.by_label[label]))]
        example = self.mixer(speech, self.noise.load(noise_index), rng)
        if example is not None:
            example["noise_class"] = self.noise.labels.index(label)
            example["noise_class2"] = -1  # the index of a second noise source's class (augmented mixtures only)
        return example


class SeparationDataModule(pl.LightningDataModule):
    """Speech and noise corpora (real from `root`/`speech_dir`/`noise_dir`, or the synthetic stand-in), split and mixed.

    Real noise classes are the sub-folders of the noise folder (or UrbanSound8K classes); a class
    not found there but known to the synthetic generator (e.g. `tone`) is synthesised, as the
    study did for tones. `augment` holds the settings of `AugmentConfig` (the config's
    `data.augment`); left out, mixtures are not augmented.
    """

    def __init__(
        self,
        sample_rate: int,
        root: str | None = None,
        speech_dir: str | None = None,
        noise_dir: str | None = None,
        speech_subdir: str = "speech/librispeech_train-clean-100",
        noise_subdir: str = "noise",
        noise_classes: list[str] | None = None,
        folds: dict[str, list[int]] | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        segment_seconds: float = 2.0,
        snr_db: tuple[float, float] = (-5.0, 10.0),
        gain_db: tuple[float, float] = (-25.0, -10.0),
        batch_size: int = 8,
        num_workers: int = 2,
        train_examples: int = 2000,
        val_examples: int = 64,
        test_examples: int = 64,
        seed: int = 0,
        train_seed: int | None = None,
        synthetic_speakers: int = 60,
        synthetic_utterances: int = 3,
        synthetic_noise_recordings: int = 24,
        synthetic_seconds: float = 4.0,
        augment: dict | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.mixer = Mixer(int(round(segment_seconds * sample_rate)), tuple(snr_db), tuple(gain_db))
        # None (the argument left out) = no augmentation; the config's data.augment turns it on
        self.augment = AugmentConfig.from_dict(augment) if augment is not None else AugmentConfig(enabled=False)
        self.corpora: dict[str, tuple[Corpus, Corpus]] = {}
        self.datasets: dict[str, MixtureDataset] = {}

    # ---- corpora -------------------------------------------------------------------------------
    def _speech_recordings(self) -> list[Recording]:
        h = self.hparams
        if h.speech_dir is None and h.root is None:
            return synthetic_speech(h.synthetic_speakers, h.synthetic_utterances)
        path = Path(h.speech_dir) if h.speech_dir else Path(h.root) / h.speech_subdir
        return scan_librispeech(path)

    def _noise_recordings(self) -> list[Recording]:
        h = self.hparams
        wanted = list(h.noise_classes) if h.noise_classes else None
        if h.noise_dir is None and h.root is None:
            return synthetic_noise(wanted or list(synthetic.NOISE_KINDS), h.synthetic_noise_recordings)
        path = Path(h.noise_dir) if h.noise_dir else Path(h.root) / h.noise_subdir
        if (path / "metadata" / "UrbanSound8K.csv").exists():
            real = scan_urbansound8k(path)
        else:
            real = scan_folder(path, what="noise folder")
        available = sorted({r.label for r in real})
        if wanted is None:
            return real
        missing = [c for c in wanted if c not in available]
        unknown = [c for c in missing if c not in synthetic.NOISE_KINDS]
        if unknown:
            raise ValueError(f"data.noise_classes: unknown class(es) {unknown}; classes in '{path}': {available}; "
                             f"synthetic classes: {list(synthetic.NOISE_KINDS)}")
        if missing:
            log.info("noise classes %s are not in '%s': using the synthetic generator for them", missing, path)
        return [r for r in real if r.label in wanted] + synthetic_noise(missing, self.hparams.synthetic_noise_recordings)

    def _split_noise(self, recordings: list[Recording]) -> dict[str, list[Recording]]:
        """Split each class on its own, so every class appears in every split (classes with fewer than
        3 source recordings, like a single cafe recording, can only be trained on)."""
        h = self.hparams
        out = {name: [] for name in SPLITS}
        for label in sorted({r.label for r in recordings}):
            members = [r for r in recordings if r.label == label]
            if len({r.group for r in members}) < 3:
                log.warning("noise class '%s' has fewer than 3 source recordings: used for training only", label)
                out["train"] += members
                continue
            if h.folds and members[0].fold is not None:
                parts = split_by_fold(members, h.folds)
            else:
                parts = split_by_group(members, h.val_fraction, h.test_fraction, h.seed)
            for name in SPLITS:
                out[name] += parts[name]
        return out

    def build_corpora(self) -> None:
        h = self.hparams
        speech = split_by_group(self._speech_recordings(), h.val_fraction, h.test_fraction, h.seed)
        noise = self._split_noise(self._noise_recordings())
        for name in SPLITS:
            self.corpora[name] = (Corpus(speech[name], h.sample_rate, h.synthetic_seconds),
                                  Corpus(noise[name], h.sample_rate, h.synthetic_seconds))
            for corpus in self.corpora[name]:
                corpus.check_readable()
        train_speech, train_noise = self.corpora["train"]
        log.info("data: %d speech recordings (%d speakers) and %d noise recordings in %d classes for training",
                 len(train_speech), len({r.group for r in train_speech.recordings}), len(train_noise),
                 len(train_noise.labels))

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        h = self.hparams
        self.build_corpora()
        lengths = {"train": h.train_examples, "val": h.val_examples, "test": h.test_examples}
        seeds = {"train": h.train_seed, "val": h.seed + 1, "test": h.seed + 2}
        for name in SPLITS:
            speech, noise = self.corpora[name]
            # Decode everything once in this process, before data-loader workers fork and share it.
            speech.preload()
            noise.preload()
            augmented = self.augment.enabled and (name == "train" or self.augment.eval)
            augmenter = Augmenter(self.augment, speech, noise, self.mixer, h.sample_rate) if augmented else None
            labels = self.datasets["train"].noise_labels if name != "train" else None
            self.datasets[name] = MixtureDataset(speech, noise, self.mixer, lengths[name], seeds[name], augmenter,
                                                 labels)

    def fixed_training_mixtures(self, count: int) -> MixtureDataset:
        """`count` mixtures of the training split's speech and noise, mixed as validation and test are
        (augmented only with `augment.eval`) and fixed by seed. A model that scores clearly higher on
        them than on the held-out splits has memorised its training recordings (over-fitting).
        Training draws random mixtures of the same recordings, never these exact ones (unless
        `train_seed` is set to `seed` + 3 with augmentation off)."""
        self.setup()
        speech, noise = self.corpora["train"]
        augmenter = self.datasets["train"].augmenter if self.augment.eval else None
        return MixtureDataset(speech, noise, self.mixer, count, self.hparams.seed + 3, augmenter,
                              self.datasets["train"].noise_labels)

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        h = self.hparams
        ranks = self.trainer.world_size if self.trainer is not None else 1
        if name != "train" and len(self.datasets[name]) % ranks:
            log.warning("data.%s_examples=%d does not divide between %d ranks: Lightning's distributed sampler "
                        "repeats examples to even them out, so the %s figures count some twice and differ "
                        "from a single device's; use a multiple of %d", name, len(self.datasets[name]), ranks,
                        name, ranks)
        return DataLoader(self.datasets[name], batch_size=h.batch_size, shuffle=shuffle, num_workers=h.num_workers,
                          persistent_workers=h.num_workers > 0, drop_last=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=False)  # every example is already random

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
