"""Replace .gpu/data with a subset of the *training split* of ../shared/data, for training on a lent GPU.

Why: only 64 MiB travel to the GPU machine, so it trains on a subset, and the run there splits that subset
again into train/val/test. A plain subset (like ../shared/gpu/bundle.sh's) is split differently from the
full corpus, so recordings of the full test split could land in the GPU run's training split and the test
figures scored here afterwards would be flattered. Taking files only from the full training split rules
that out. Noise is resampled to 16 kHz and picked round-robin over source recordings, so each class keeps
as many distinct recordings as the byte budget allows. The 64 MiB count the tracked files too (about
19.3 MiB with the shipped models and the ablation's score files) and the wheels (2 MiB); noise takes about
23 MiB, so speech gets 18 (83 training speakers; 62.5 MiB in all).

    python experiments/gpu_train_data.py [--root ../shared/data] [--noise-per-class 30] [--speech-mb 18]
"""
from __future__ import annotations

import argparse
import itertools
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

from sepgan.audio import load_audio
from sepgan.data import SeparationDataModule


def round_robin_by_group(recordings, count):
    """Up to `count` recordings, one per source recording in turn."""
    groups = defaultdict(list)
    for r in sorted(recordings, key=lambda r: r.key):
        groups[r.group].append(r)
    order = [r for layer in itertools.zip_longest(*groups.values()) for r in layer if r is not None]
    return order[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data")
    parser.add_argument("--out", default=".gpu/data")
    parser.add_argument("--noise-per-class", type=int, default=30)
    parser.add_argument("--speech-mb", type=float, default=18.0)
    args = parser.parse_args()

    data = SeparationDataModule(root=args.root, sample_rate=16000)
    data.build_corpora()
    speech, noise = data.corpora["train"]
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)

    budget, used, speakers = args.speech_mb * 2**20, 0, 0
    for r in sorted(speech.recordings, key=lambda r: r.key):
        size = Path(r.path).stat().st_size
        if used + size > budget:
            continue
        target = out / data.hparams.speech_subdir / Path(r.path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(r.path, target)
        used, speakers = used + size, speakers + 1

    clips = 0
    for label in noise.labels:
        members = [noise.recordings[i] for i in noise.by_label[label]]
        for r in round_robin_by_group(members, args.noise_per_class):
            x, _ = load_audio(r.path, 16000, mono=True)
            target = out / "noise" / label / (Path(r.path).stem + ".flac")
            target.parent.mkdir(parents=True, exist_ok=True)
            sf.write(target, np.clip(x[0], -1, 1), 16000, subtype="PCM_16")
            clips += 1
    print(f"{out}: {speakers} of {len(speech.recordings)} training speakers ({used / 2**20:.1f} MiB), "
          f"{clips} noise clips of the training split in {len(noise.labels)} classes")


if __name__ == "__main__":
    main()
