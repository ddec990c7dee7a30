"""Where in frequency a model's speech differs from the clean speech: level and error per band, per file.

    python experiments/band_levels.py --noisy-dir ../shared/data/speech/vctk_p287_denoiser_debug/noisy \
        --clean-dir ../shared/data/speech/vctk_p287_denoiser_debug/clean

For each noisy/clean pair (read as `sepgan evaluate` reads them) it prints, per band, the model's
speech level against the clean speech's (dB; negative: speech removed) and the error's level against
the clean speech's (dB; near 0: as loud as the speech itself), from band energies of the model's
own STFT. Bands above the model's Nyquist frequency are left out.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from sepgan.audio import FrontEnd
from sepgan.evaluation import FolderPairs, model_speech
from sepgan.inference.backends import load_backend
from sepgan.inference.chunked import ChunkedSeparator
from sepgan.pretrained import default_checkpoint

EDGES_HZ = (0, 250, 500, 1000, 2000, 4000, 8000)


def bands(sample_rate: int) -> list[tuple[float, float]]:
    """(low, high) Hz of each band below Nyquist; the last one reaches Nyquist."""
    nyquist = sample_rate / 2
    edges = [e for e in EDGES_HZ if e < nyquist] + [nyquist]
    return list(zip(edges[:-1], edges[1:]))


def band_energies(x: np.ndarray, frontend: FrontEnd) -> np.ndarray:
    power = frontend.stft(torch.from_numpy(np.ascontiguousarray(x))).abs().square().sum(-1).numpy()
    freqs = np.arange(frontend.n_freq) * frontend.sample_rate / frontend.n_fft
    return np.array([power[(freqs >= lo) & ((freqs < hi) | (hi == frontend.sample_rate / 2))].sum()
                     for lo, hi in bands(frontend.sample_rate)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="default: the shipped model")
    parser.add_argument("--noisy-dir", required=True)
    parser.add_argument("--clean-dir", required=True)
    args = parser.parse_args()
    separator = ChunkedSeparator(load_backend(args.checkpoint or default_checkpoint()))
    frontend = separator.frontend
    print("bands (kHz): " + " ".join(f"{lo / 1000:g}-{hi / 1000:g}" for lo, hi in bands(frontend.sample_rate)))
    for example in FolderPairs(args.noisy_dir, args.clean_dir, frontend.sample_rate):
        speech = model_speech(separator, example.mixture)
        clean = band_energies(example.speech, frontend) + 1e-12
        level = 10 * np.log10(band_energies(speech, frontend) / clean + 1e-12)
        error = 10 * np.log10(band_energies(speech - example.speech, frontend) / clean + 1e-12)
        print(f"{example.name}: speech vs clean {np.round(level, 1)} dB; error vs clean {np.round(error, 1)} dB")


if __name__ == "__main__":
    main()
