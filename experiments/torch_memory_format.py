"""The PyTorch backend's speed with channels-last memory (its default) against plain contiguous memory.

    python experiments/torch_memory_format.py            # both, each in a fresh process, twice

As the shipped-model part of `make bench` times it: the shipped model through the chunked separator
on 60 s of audio, one thread, after a 1 s warm-up; the first timed run is what a one-off `sepgan
separate` pays (oneDNN prepares its convolutions for the 30 s chunks' shape then), the later two
what a long-running server pays.
"""

from __future__ import annotations

import subprocess
import sys
import time

import torch


def timings(layout: str) -> list[float]:
    from sepgan.commands.bench import SAMPLE_RATE, bench_signal
    from sepgan.inference.backends import TorchBackend
    from sepgan.inference.chunked import ChunkedSeparator
    from sepgan.models import load_separator
    from sepgan.pretrained import default_checkpoint

    torch.set_num_threads(1)
    signal = bench_signal(60.0)
    backend = TorchBackend(load_separator(default_checkpoint()))
    if layout == "contiguous":  # the backend as it was: weights and features in the default layout
        backend.model.to(memory_format=torch.contiguous_format)
        backend.speech_features = lambda features: backend.model.separate_features(features)[0]
    engine = ChunkedSeparator(backend)
    engine.separate(signal[:SAMPLE_RATE], SAMPLE_RATE)
    rtfs = []
    for _ in range(3):  # the chunked separator runs the model under inference_mode itself
        start = time.perf_counter()
        engine.separate(signal, SAMPLE_RATE)
        rtfs.append((time.perf_counter() - start) / 60.0)
    return rtfs


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(" ".join(f"{rtf:.4f}" for rtf in timings(sys.argv[1])))
    else:
        for _ in range(2):
            for layout in ("contiguous", "channels_last"):
                out = subprocess.run([sys.executable, __file__, layout], capture_output=True, text=True, check=True)
                print(f"{layout:<14} real-time factor, runs 1-3: {out.stdout.strip()}")
