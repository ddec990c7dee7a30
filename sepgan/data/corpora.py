"""Collections of recordings: real corpora on disk and the embedded synthetic set.

A `Recording` has a `group` (the speaker, or the source recording a noise clip was cut from) and a
`label` (noise class, or "speech"). Splits are made by group, so validation and test never share a
speaker or a noise recording with training.

Layouts understood:
- any folder of audio, searched recursively; the label is the first sub-folder's name;
- LibriSpeech (`speaker/chapter/*.flac`, or flat files named `speaker-chapter-utterance.flac`);
- UrbanSound8K (`metadata/UrbanSound8K.csv` and `audio/foldN/`), with class and fold filters;
  loose UrbanSound8K slices (`fsID-classID-occurrence-slice.wav`) are grouped by their fsID.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from sepgan.audio import AUDIO_EXTENSIONS, AudioError, audio_info, find_audio_files, load_audio
from sepgan.data import synthetic

_LIBRISPEECH_NAME = re.compile(r"^(\d+)-(\d+)-(\d+)$")
_URBANSOUND_NAME = re.compile(r"^(\d+)-(\d+)-(\d+)-(\d+)$")
_VCTK_NAME = re.compile(r"^(p\d+)_\d+")


@dataclass(frozen=True)
class Recording:
    key: str  # unique: a file path, or "synthetic:<kind>:<seed>"
    group: str  # recordings sharing a group always land in the same split
    label: str  # noise class, or "speech"
    path: Path | None = None  # None for synthetic recordings
    seed: int = 0  # synthetic recordings are made from (label, seed)
    fold: int | None = None  # UrbanSound8K fold, when known


def group_from_name(path: Path, root: Path) -> str:
    """Speaker or source recording of a file, from the naming conventions of common corpora."""
    stem = path.stem
    if m := _LIBRISPEECH_NAME.match(stem):
        return f"librispeech-speaker-{m.group(1)}"
    if m := _URBANSOUND_NAME.match(stem):
        return f"freesound-{m.group(1)}"
    if m := _VCTK_NAME.match(stem):
        return f"vctk-{m.group(1)}"
    return str(path.relative_to(root))  # unknown convention: each file is its own group


def _check_dir(path: Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{what}: folder '{path}' does not exist; check the path (data.root, "
                                f"data.speech_dir or data.noise_dir), or use data.root=null for the "
                                f"embedded synthetic set")
    if not path.is_dir():
        raise NotADirectoryError(f"{what}: '{path}' is a file, expected a folder of audio")
    return path


def scan_folder(root: str | Path, label: str | None = None, what: str = "audio folder") -> list[Recording]:
    """Every audio file under `root`; label = `label`, or the first sub-folder's name."""
    root = _check_dir(Path(root), what)
    files = find_audio_files(root)[0]
    if not files:
        raise FileNotFoundError(f"{what}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found under '{root}'")
    recordings = []
    for p in files:
        rel = p.relative_to(root)
        name = label or (rel.parts[0] if len(rel.parts) > 1 else root.name)
        recordings.append(Recording(str(p), group_from_name(p, root), name, p))
    return recordings


def scan_librispeech(root: str | Path) -> list[Recording]:
    """LibriSpeech `speaker/chapter/*.flac`: grouped by speaker folder (or by file name when flat)."""
    root = _check_dir(Path(root), "LibriSpeech")
    recordings = scan_folder(root, label="speech", what="LibriSpeech")
    out = []
    for r in recordings:
        parts = r.path.relative_to(root).parts
        group = f"librispeech-speaker-{parts[0]}" if len(parts) == 3 else r.group
        out.append(replace(r, group=group))
    return out


def scan_urbansound8k(root: str | Path, classes: list[str] | None = None, folds: list[int] | None = None) -> list[Recording]:
    """UrbanSound8K from its metadata CSV; grouped by Freesound recording (fsID)."""
    root = _check_dir(Path(root), "UrbanSound8K")
    meta = root / "metadata" / "UrbanSound8K.csv"
    if not meta.exists():
        raise FileNotFoundError(f"UrbanSound8K: '{meta}' not found; expected the dataset's layout "
                                f"(metadata/UrbanSound8K.csv and audio/fold1..fold10)")
    with open(meta, newline="") as fh:
        rows = list(csv.DictReader(fh))
    available = sorted({r["class"] for r in rows})
    unknown = sorted(set(classes or []) - set(available))
    if unknown:
        raise ValueError(f"UrbanSound8K: unknown class(es) {unknown}; available: {available}")
    recordings = []
    for r in rows:
        if classes and r["class"] not in classes:
            continue
        if folds and int(r["fold"]) not in folds:
            continue
        path = root / "audio" / f"fold{r['fold']}" / r["slice_file_name"]
        recordings.append(Recording(str(path), f"freesound-{r['fsID']}", r["class"], path, fold=int(r["fold"])))
    if not recordings:
        raise FileNotFoundError(f"UrbanSound8K: no clips match classes={classes} folds={folds} under '{root}'")
    return recordings


def synthetic_speech(speakers: int, utterances: int) -> list[Recording]:
    return [Recording(f"synthetic:speech:{s}:{u}", f"synthetic-speaker-{s}", "speech", seed=s * 1000 + u)
            for s in range(speakers) for u in range(utterances)]


def synthetic_noise(kinds: list[str], recordings: int) -> list[Recording]:
    unknown = sorted(set(kinds) - set(synthetic.NOISE_KINDS))
    if unknown:
        raise ValueError(f"unknown synthetic noise class(es) {unknown}; known: {list(synthetic.NOISE_KINDS)}")
    return [Recording(f"synthetic:{k}:{i}", f"synthetic-{k}-{i}", k, seed=i) for k in kinds for i in range(recordings)]


def _stable_unit(text: str, seed: int) -> float:
    """A repeatable number in [0, 1) for a text, independent of Python's hash randomisation."""
    digest = hashlib.sha1(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_group(recordings: list[Recording], val: float, test: float, seed: int = 0) -> dict[str, list[Recording]]:
    """Train/val/test lists with no group in two splits; each split gets at least one group.

    Groups are ordered by a seeded hash, so adding a file to a corpus moves few others.
    """
    groups = sorted({r.group for r in recordings}, key=lambda g: _stable_unit(g, seed))
    if len(groups) < 3:
        label = recordings[0].label if recordings else "?"
        raise ValueError(f"'{label}': need recordings from at least 3 speakers/source recordings to make "
                         f"disjoint train/val/test splits, found {len(groups)}")
    n_val = max(1, round(val * len(groups)))
    n_test = max(1, round(test * len(groups)))
    if n_val + n_test >= len(groups):
        n_val = n_test = 1
    assign = {g: "val" for g in groups[:n_val]}
    assign.update({g: "test" for g in groups[n_val:n_val + n_test]})
    out = {"train": [], "val": [], "test": []}
    for r in recordings:
        out[assign.get(r.group, "train")].append(r)
    return out


def split_by_fold(recordings: list[Recording], folds: dict[str, list[int]]) -> dict[str, list[Recording]]:
    """Train/val/test by UrbanSound8K fold (recording-disjoint by the dataset's design)."""
    out = {}
    for name in ("train", "val", "test"):
        wanted = set(folds[name])
        out[name] = [r for r in recordings if r.fold in wanted]
        if not out[name]:
            raise ValueError(f"no noise clips in folds {sorted(wanted)} for the {name} split")
    return out


class Corpus:
    """Recordings at one sample rate, decoded on first use and kept in memory (mono float32)."""

    def __init__(self, recordings: list[Recording], sample_rate: int, synthetic_seconds: float = 4.0):
        if not recordings:
            raise ValueError("a corpus needs at least one recording")
        self.recordings = list(recordings)
        self.sample_rate = sample_rate
        self.synthetic_seconds = synthetic_seconds
        self._cache: dict[int, np.ndarray] = {}
        self.labels = sorted({r.label for r in self.recordings})
        self.by_label = {lab: [i for i, r in enumerate(self.recordings) if r.label == lab] for lab in self.labels}

    def __len__(self) -> int:
        return len(self.recordings)

    def check_readable(self) -> None:
        """Read every file's header now, so a corrupt file fails at start-up with its name."""
        for r in self.recordings:
            if r.path is not None:
                audio_info(r.path)

    def load(self, index: int) -> np.ndarray:
        if index not in self._cache:
            self._cache[index] = self._decode(self.recordings[index])
        return self._cache[index]

    def _decode(self, r: Recording) -> np.ndarray:
        if r.path is None:
            if r.label == "speech":
                return synthetic.speech_like(r.seed // 1000, r.seed % 1000, self.sample_rate, self.synthetic_seconds)
            return synthetic.noise(r.label, r.seed, self.sample_rate, self.synthetic_seconds)
        try:
            wav, _ = load_audio(r.path, self.sample_rate)
        except AudioError as err:
            raise AudioError(f"{err} (listed in the corpus; remove or replace the file)") from None
        return wav[0]

    def preload(self) -> None:
        for i in range(len(self)):
            self.load(i)

    def total_seconds(self) -> float:
        return sum(len(self.load(i)) for i in range(len(self))) / self.sample_rate
