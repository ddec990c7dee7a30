"""Which frame-grid offsets help when their speech estimates are averaged (what `--shifts` exploits).

    python experiments/frame_grids.py --offsets 0,128 0,64,128,192 0,1024 0,2048

Each set of offsets (samples of delay before the STFT, as `ChunkedSeparator` applies them for
`--shifts`) is scored on the same validation mixtures as `sepgan evaluate --split val`, and its
SI-SDRi is printed paired against one grid (mean difference ± one standard error). Offsets below a
hop move the STFT frames (what `--shifts N` does: multiples of hop / N); whole hops up to the
U-Net's time grid (2**levels frames) move only the U-Net's strided convolutions, not the frames.
"""

from __future__ import annotations

import argparse

import numpy as np

from sepgan.evaluation import ConfigMixtures
from sepgan.inference.backends import load_backend
from sepgan.inference.chunked import ChunkedSeparator
from sepgan.metrics import si_sdr_db
from sepgan.pretrained import default_checkpoint


def improvements(separator: ChunkedSeparator, examples: list) -> np.ndarray:
    return np.array([si_sdr_db(separator.separate(e.mixture), e.speech) - si_sdr_db(e.mixture, e.speech)
                     for e in examples])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="default: the shipped model")
    parser.add_argument("--offsets", nargs="+", required=True, help="comma-separated sample offsets, one set each")
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--data", nargs="*", default=["root=../shared/data", "segment_seconds=4"])
    args = parser.parse_args()

    backend = load_backend(args.checkpoint or default_checkpoint())
    examples = list(ConfigMixtures(args.data, backend.frontend.sample_rate, "val", args.examples))
    one_grid = improvements(ChunkedSeparator(backend), examples)
    print(f"one grid: SI-SDRi {one_grid.mean():.2f} dB over {len(examples)} validation mixtures")
    for spec in args.offsets:
        offsets = [int(x) for x in spec.split(",")]
        context = (ChunkedSeparator(backend).context + max(offsets)) / backend.frontend.sample_rate
        separator = ChunkedSeparator(backend, context_seconds=context)  # a grid that starts earlier needs more
        separator.offsets = offsets
        diff = improvements(separator, examples) - one_grid
        print(f"offsets {spec}: {diff.mean():+.3f} ± {diff.std(ddof=1) / np.sqrt(len(diff)):.3f} dB")


if __name__ == "__main__":
    main()
