"""Write the held-out test mixtures as recordings at another sample rate, to score the user's path.

    python experiments/resampled_pairs.py --rate 48000 --out /tmp/test48k
    sepgan evaluate --noisy-dir /tmp/test48k/noisy --clean-dir /tmp/test48k/clean

Most recordings people bring are at 44.1 or 48 kHz; sepgan reads them at the model's 16 kHz through
a resampler whose sharp anti-alias low-pass sits just below 8 kHz. The training speech (LibriSpeech
at 16 kHz) has no such edge, and a model that never saw one can take everything above 4 kHz for
noise. This writes the same mixtures that `sepgan evaluate --data root=../shared/data
segment_seconds=4 --split test` scores (noisy and clean, 32-bit float WAV, same names) upsampled to
`--rate`, so that evaluating the folders puts them through that resampler, references included.
Upsampled 16 kHz audio has nothing above 8 kHz, unlike a real 48 kHz recording; what the model
meets after the way down is the same edge.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

from sepgan.audio import resample
from sepgan.evaluation import ConfigMixtures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=48000, help="sample rate of the written files")
    parser.add_argument("--out", required=True, help="a new folder: noisy/ and clean/ are written in it")
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--root", default="../shared/data")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        parser.error(f"{out} exists; give a new folder (nothing is overwritten)")
    mixtures = ConfigMixtures([f"root={args.root}", "segment_seconds=4"], 16000, "test", args.examples)
    for sub in ("noisy", "clean"):
        (out / sub).mkdir(parents=True)
    for example in mixtures:
        for sub, audio in (("noisy", example.mixture), ("clean", example.speech)):
            at_rate = resample(np.asarray(audio, np.float32)[None], 16000, args.rate)[0]
            sf.write(out / sub / f"{example.name}.wav", at_rate, args.rate, subtype="FLOAT")
    print(f"wrote {len(mixtures)} noisy/clean pairs at {args.rate} Hz under {out}")


if __name__ == "__main__":
    main()
