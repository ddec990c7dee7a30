"""`sepgan evaluate` (or `python -m sepgan.commands.evaluate`): score a checkpoint against the noisy input, spectral gating, oracle masks and, asked for, DeepFilterNet3.

Examples come from a noisy/clean folder pair (`--noisy-dir`, `--clean-dir`) or from the held-out
mixtures of a data config (`--data root=../shared/data noise_classes=[dog_bark]`; `--split train`:
fixed mixtures of its training recordings, to detect over-fitting). Prints a
Markdown table of means and writes per_file.csv, summary.json and table.md to `--out`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

from sepgan.audio import AudioError
from sepgan.commands.options import positive_int
from sepgan.evaluation import (
    CONFIG_SPLITS,
    DEFAULT_METHODS,
    METHODS,
    ConfigMixtures,
    EvaluationError,
    FolderPairs,
    Report,
    check_output_dir,
    evaluate,
    listing,
)
from sepgan.inference.precision import PRECISIONS
from sepgan.metrics import METRICS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sepgan evaluate", description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("--checkpoint", help="a sepgan .ckpt, or an .onnx from `sepgan export-onnx` "
                                             "(default: the shipped model)")
    parser.add_argument("--device", default="cpu", help="torch device for a .ckpt, e.g. cuda (default: cpu)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="the U-Net's arithmetic for a .ckpt (default: fp32, the same scores on every machine; "
                             "auto: bf16 where the CPU computes it natively, as `sepgan separate` runs)")
    source = parser.add_argument_group("examples (a folder pair, or --data)")
    source.add_argument("--noisy-dir", type=Path, help="folder of noisy recordings")
    source.add_argument("--clean-dir", type=Path, help="folder of the clean recordings, same file names")
    source.add_argument("--data", nargs="*", metavar="OVERRIDE",
                        help="mixtures from the data config, with data-group overrides (e.g. root=../shared/data "
                             "noise_classes=[dog_bark]); no override: the embedded synthetic set")
    source.add_argument("--split", default="test", choices=CONFIG_SPLITS,
                        help="with --data (default: test); train: the training recordings, mixed as the "
                             "held-out splits are (a clearly higher score there than held out is over-fitting)")
    source.add_argument("--examples", type=int, default=64, help="with --data: number of mixtures (default: 64)")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS, metavar="METHOD",
                        help=f"what to score, of {' '.join(METHODS)} (default: all but deepfilternet3, the "
                             f"released enhancer, which needs `pip install 'sepgan[baselines]'`; the oracles use "
                             f"the checkpoint's STFT)")
    parser.add_argument("--metrics", nargs="+", default=list(METRICS), choices=METRICS, metavar="METRIC",
                        help=f"which measures, of {' '.join(METRICS)} (default: all; sdr/sir/sar and pesq are "
                             f"the slow ones)")
    parser.add_argument("--dry", type=float, default=0.0,
                        help="share of the input mixed into the model's speech, as `sepgan separate --dry` "
                             "(0 to 1; default: 0)")
    parser.add_argument("--shifts", type=positive_int, default=1,
                        help="as `sepgan separate --shifts`: average N STFT frame grids (default: 1)")
    parser.add_argument("--out", type=Path, help="output folder (default: evaluations/<checkpoint>-<time>)")
    parser.add_argument("--overwrite", action="store_true", help="replace result files already in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    folders = args.noisy_dir is not None or args.clean_dir is not None
    if folders == (args.data is not None):
        parser.error("give either --noisy-dir and --clean-dir, or --data [OVERRIDE ...]")
    if folders and (args.noisy_dir is None or args.clean_dir is None):
        parser.error("--noisy-dir and --clean-dir go together")
    return args


def _print_notes(report: Report) -> None:
    """What was done to the inputs, grouped by kind so a corpus of 48 kHz files gives one line, not hundreds."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for name, notes in report.notes.items():
        for note in notes:
            grouped[note].append(name)
    for note, names in grouped.items():
        print(f"note: {note}: {listing(names, 5)}", file=sys.stderr)
    for name, why in report.skipped.items():
        print(f"skipped {name}: {why}", file=sys.stderr)


def run(args: argparse.Namespace) -> Report:
    from sepgan.inference.backends import load_backend
    from sepgan.inference.chunked import ChunkedSeparator
    from sepgan.pretrained import default_checkpoint

    separator = frontend = None
    checkpoint = None
    precision = "fp32"
    if "model" in args.methods or any(m.startswith("oracle_") for m in args.methods) or args.checkpoint:
        checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
        # In chunks as `sepgan separate` runs it: the model's memory does not grow with the file, and
        # the result is the whole-file one (the chunking is exact).
        backend = load_backend(checkpoint, device=args.device, precision=args.precision)
        separator = ChunkedSeparator(backend, shifts=args.shifts)
        precision = backend.precision
        frontend = separator.frontend
    if frontend is None:  # noisy input and spectral gating only: no model needed, 16 kHz
        from sepgan.audio import FrontEnd
        frontend = FrontEnd()
    out = args.out or Path("evaluations") / f"{checkpoint.stem if checkpoint else 'baselines'}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_output_dir(out, args.overwrite)  # before hours of work, not after
    if args.data is not None:
        examples = ConfigMixtures(args.data, frontend.sample_rate, args.split, args.examples)
        source = {"data": args.data, "split": args.split, "examples": args.examples}
    else:
        examples = FolderPairs(args.noisy_dir, args.clean_dir, frontend.sample_rate)
        source = {"noisy_dir": str(args.noisy_dir), "clean_dir": str(args.clean_dir)}
    info = {"checkpoint": str(checkpoint) if checkpoint else None, **source,
            **({"shifts": args.shifts} if args.shifts != 1 and "model" in args.methods else {}),
            **({"precision": precision} if precision != "fp32" and "model" in args.methods else {})}
    report = evaluate(examples, separator if "model" in args.methods else None, args.methods, args.metrics,
                      frontend=frontend, progress=not args.no_progress, info=info, dry=args.dry)
    paths = report.write(out, overwrite=args.overwrite)
    _print_notes(report)
    print(report.markdown())
    print("written: " + ", ".join(str(p) for p in paths))
    return report


def main(argv: list[str] | None = None) -> Report | int:
    args = parse_args(argv)
    try:
        return run(args)
    except (EvaluationError, AudioError, FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"sepgan evaluate: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    result = main()
    sys.exit(result if isinstance(result, int) else 0)
