import csv

import pytest

from sepgan.audio import AudioError
from sepgan.data.corpora import (
    Corpus,
    scan_folder,
    scan_librispeech,
    scan_urbansound8k,
    split_by_fold,
    split_by_group,
    synthetic_noise,
)
from tests.conftest import write_noise, write_tone


def make_librispeech(root, speakers=5, chapters=2, utterances=2):
    for s in range(speakers):
        for c in range(chapters):
            for u in range(utterances):
                write_tone(root / str(100 + s) / str(10 + c) / f"{100 + s}-{10 + c}-{u:04d}.flac", seconds=0.2)
        (root / str(100 + s) / "10" / "transcript.trans.txt").write_text("ignored\n")


def make_urbansound(root, classes=("dog_bark", "siren"), folds=(1, 2, 3), per_fold=2):
    rows = []
    for fold in folds:
        for ci, cls in enumerate(classes):
            for i in range(per_fold):
                fs_id = 1000 * fold + 10 * ci + i
                name = f"{fs_id}-{ci}-0-0.wav"
                write_noise(root / "audio" / f"fold{fold}" / name, seconds=0.2, seed=fs_id)
                rows.append(dict(slice_file_name=name, fsID=fs_id, start=0, end=0.2, salience=1, fold=fold,
                                 classID=ci, **{"class": cls}))
    (root / "metadata").mkdir(parents=True)
    with open(root / "metadata" / "UrbanSound8K.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_librispeech_is_grouped_by_speaker(tmp_path):
    make_librispeech(tmp_path)
    recs = scan_librispeech(tmp_path)
    assert len(recs) == 20
    assert {r.group for r in recs} == {f"librispeech-speaker-{100 + s}" for s in range(5)}
    assert all(r.label == "speech" for r in recs)


def test_flat_librispeech_files_are_grouped_by_name(tmp_path):
    for s in range(4):
        write_tone(tmp_path / f"{s}-5-0000.flac", seconds=0.1)
        write_tone(tmp_path / f"{s}-6-0001.flac", seconds=0.1)
    assert len({r.group for r in scan_librispeech(tmp_path)}) == 4


def test_urbansound8k_filters_by_class_and_fold(tmp_path):
    make_urbansound(tmp_path)
    recs = scan_urbansound8k(tmp_path, classes=["dog_bark"], folds=[1, 2])
    assert len(recs) == 4 and {r.label for r in recs} == {"dog_bark"} and {r.fold for r in recs} == {1, 2}
    assert all(r.path.exists() for r in recs)
    with pytest.raises(ValueError, match="car_horn"):
        scan_urbansound8k(tmp_path, classes=["car_horn"])
    parts = split_by_fold(scan_urbansound8k(tmp_path), {"train": [1], "val": [2], "test": [3]})
    assert {r.fold for r in parts["val"]} == {2}
    with pytest.raises(ValueError, match="folds"):
        split_by_fold(scan_urbansound8k(tmp_path), {"train": [1], "val": [9], "test": [3]})


def test_folder_labels_come_from_subfolders(tmp_path):
    for cls in ("hum", "bark"):
        for i in range(3):
            write_noise(tmp_path / cls / "deeper" / f"{i}.wav", seconds=0.1, seed=i)
    recs = scan_folder(tmp_path)
    assert {r.label for r in recs} == {"hum", "bark"}
    assert len({r.group for r in recs}) == 6  # unknown naming: one group per file


def test_urbansound_slice_names_group_by_recording(tmp_path):
    for sl in range(3):
        write_noise(tmp_path / "dog_bark" / f"777-3-0-{sl}.flac", seconds=0.1, seed=sl)
    assert {r.group for r in scan_folder(tmp_path)} == {"freesound-777"}


def test_splits_are_disjoint_by_group_and_cover_everything(tmp_path):
    make_librispeech(tmp_path, speakers=12)
    recs = scan_librispeech(tmp_path)
    parts = split_by_group(recs, 0.2, 0.2, seed=0)
    groups = {name: {r.group for r in part} for name, part in parts.items()}
    assert all(groups.values())
    assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"])
    assert not (groups["val"] & groups["test"])
    assert sum(len(p) for p in parts.values()) == len(recs)

    def keys(split):
        return {name: sorted(r.key for r in part) for name, part in split.items()}

    assert keys(parts) == keys(split_by_group(list(reversed(recs)), 0.2, 0.2, seed=0))  # order-independent


def test_too_few_groups_to_split(tmp_path):
    with pytest.raises(ValueError, match="at least 3"):
        split_by_group(synthetic_noise(["tone"], 2), 0.1, 0.1)


def test_missing_and_empty_folders_are_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no audio files"):
        scan_folder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="UrbanSound8K.csv"):
        scan_urbansound8k(tmp_path / "empty")


def test_corrupt_file_is_named_at_start_up(tmp_path):
    write_noise(tmp_path / "a" / "good.wav")
    (tmp_path / "a" / "bad.wav").write_bytes(b"RIFF0000WAVEnonsense")
    corpus = Corpus(scan_folder(tmp_path), 16000)
    with pytest.raises(AudioError, match="bad.wav"):
        corpus.check_readable()


def test_corpus_resamples_and_caches(tmp_path):
    write_tone(tmp_path / "x" / "a.wav", seconds=1.0, sr=22050)
    corpus = Corpus(scan_folder(tmp_path), 16000)
    first = corpus.load(0)
    assert first.shape == (16000,) and corpus.load(0) is first
