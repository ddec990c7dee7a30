"""Where in frequency a model's speech differs from the clean speech: level and error per band, per file.

    python experiments/band_levels.py --noisy-dir ../shared/data/speech/vctk_p287_denoiser_debug/noisy \
        --clean-dir ../shared/data/speech/vctk_p287_denoiser_debug/clean

For each noisy/clean pair (read as `sepgan evaluate` reads them) it prints, per band, the model's
speech level against the clean speech's (dB; negative: speech removed) and the error's level against
the clean speech's (dB; near 0: as loud as the speech itself), from STFT band energies.
"""

from __future__ import annotations

import argparse

import librosa
import numpy as np

from sepgan.evaluation import FolderPairs, model_speech
from sepgan.inference.backends import load_backend
from sepgan.inference.chunked import ChunkedSeparator
from sepgan.pretrained import default_checkpoint

EDGES_HZ = (0, 250, 500, 1000, 2000, 4000, 8001)


def band_energies(x: np.ndarray, sample_rate: int) -> np.ndarray:
    power = np.abs(librosa.stft(x, n_fft=512, hop_length=256)) ** 2
    freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=512)
    return np.array([power[(freqs >= lo) & (freqs < hi)].sum() for lo, hi in zip(EDGES_HZ[:-1], EDGES_HZ[1:])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="default: the shipped model")
    parser.add_argument("--noisy-dir", required=True)
    parser.add_argument("--clean-dir", required=True)
    args = parser.parse_args()
    separator = ChunkedSeparator(load_backend(args.checkpoint or default_checkpoint()))
    rate = separator.frontend.sample_rate
    bands = " ".join(f"{lo / 1000:g}-{min(hi, rate // 2) / 1000:g}k" for lo, hi in zip(EDGES_HZ[:-1], EDGES_HZ[1:]))
    print(f"bands (kHz): {bands}")
    for example in FolderPairs(args.noisy_dir, args.clean_dir, rate):
        speech = model_speech(separator, example.mixture)
        clean = band_energies(example.speech, rate) + 1e-12
        level = 10 * np.log10(band_energies(speech, rate) / clean + 1e-12)
        error = 10 * np.log10(band_energies(speech - example.speech, rate) / clean + 1e-12)
        print(f"{example.name}: speech vs clean {np.round(level, 1)} dB; error vs clean {np.round(error, 1)} dB")


if __name__ == "__main__":
    main()
