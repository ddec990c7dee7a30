"""Real-time factors of the shipped model and variants of its configuration, timed side by side.

    python experiments/model_speed.py --variant frontend.hop_length=128 unet.frame_stack=2 \
        --variant frontend.hop_length=128

Each `--variant` is the shipped separator's configuration with those keys changed, started from its
weights by `transfer_weights` where they fit (a speed does not depend on what the weights learned, so
no trained checkpoint is needed to reproduce one). Every model is timed as `make bench` times the shipped one:
the chunked separator on 60 s of audio, one thread, after a 1 s warm-up, with the PyTorch backend
(in float32, and in bf16 where the CPU computes it natively: `sepgan separate`'s `--precision auto`)
and with ONNX Runtime (exported to a temporary folder, in float32 and with int8 convolutions:
`sepgan export-onnx --int8`). The models take turns in each of `--rounds`
rounds, so a machine that gets busier or quieter during the run shifts them all alike.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch


def variant(shipped, path: str, changes: list[str]):
    """The shipped configuration with `section.key=value` changes, from the shipped weights where they fit."""
    import yaml

    from sepgan.models.checkpoints import transfer_weights
    from sepgan.models.separator import Separator

    config = copy.deepcopy(shipped.config)
    config.pop("noise_classifier", None)  # not part of separation
    for change in changes:
        key, _, value = change.partition("=")
        section, _, name = key.partition(".")
        if section not in ("frontend", "unet") or not name or not value:
            raise SystemExit(f"--variant takes frontend.KEY=VALUE or unet.KEY=VALUE, got '{change}'")
        config[section][name] = yaml.safe_load(value)  # 128 -> int, sine -> str
    model = Separator(**config)
    try:
        transfer_weights(model, path)
    except ValueError:  # e.g. a narrower U-Net: its own initial weights time the same
        pass
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", nargs="+", action="append", default=[], metavar="KEY=VALUE",
                        help="a configuration to time beside the shipped one (repeat for several)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each model and backend (default: 3)")
    args = parser.parse_args()

    from sepgan.commands.bench import SAMPLE_RATE, bench_signal
    from sepgan.inference.backends import OnnxBackend, TorchBackend
    from sepgan.inference.chunked import ChunkedSeparator
    from sepgan.inference.onnx_export import export_int8_copy, export_onnx
    from sepgan.inference.precision import native_bf16
    from sepgan.models import load_separator
    from sepgan.pretrained import default_checkpoint

    torch.set_num_threads(1)
    signal = bench_signal(60.0)
    shipped = load_separator(default_checkpoint())
    models = {"shipped": shipped}
    models.update({" ".join(changes): variant(shipped, default_checkpoint(), changes) for changes in args.variant})
    engines = {}
    columns = {"torch": "PyTorch", **({"bf16": "PyTorch bf16"} if native_bf16(torch.device("cpu")) else {}),
               "onnx": "ONNX Runtime", "int8": "ONNX Runtime int8"}
    with tempfile.TemporaryDirectory() as folder:
        for i, (name, model) in enumerate(models.items()):
            onnx = export_onnx(model, Path(folder) / f"model{i}.onnx")
            engines[(name, "torch")] = ChunkedSeparator(TorchBackend(model))
            if "bf16" in columns:
                engines[(name, "bf16")] = ChunkedSeparator(TorchBackend(model, precision="bf16"))
            engines[(name, "onnx")] = ChunkedSeparator(OnnxBackend(onnx, threads=1))
            int8 = export_int8_copy(model, onnx, Path(folder) / f"model{i}-int8.onnx")
            engines[(name, "int8")] = ChunkedSeparator(OnnxBackend(int8, threads=1))
        for engine in engines.values():
            engine.separate(signal[:SAMPLE_RATE], SAMPLE_RATE)
        rtfs = {key: [] for key in engines}
        for _ in range(args.rounds):
            for key, engine in engines.items():
                start = time.perf_counter()
                engine.separate(signal, SAMPLE_RATE)
                rtfs[key].append((time.perf_counter() - start) / 60.0)
    print(f"| model | {' | '.join(columns.values())} |\n|---{'|---' * len(columns)}|")
    for name in models:
        cells = [" ".join(f"{r:.4f}" for r in rtfs[(name, backend)]) for backend in columns]
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
