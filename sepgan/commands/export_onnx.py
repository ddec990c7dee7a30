"""`sepgan export-onnx --checkpoint CKPT -o model.onnx`: export a model for ONNX Runtime, checked against PyTorch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sepgan.atomic import remove_stale_parts
from sepgan.inference.onnx_export import TOLERANCE, check_onnx, export_onnx
from sepgan.models import load_separator
from sepgan.pretrained import default_checkpoint


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sepgan export-onnx", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="a sepgan .ckpt (default: the shipped model)")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = p.parse_args(argv)
    output = Path(args.output)
    try:
        if output.suffix.lower() != ".onnx":
            raise ValueError(f"output must end in .onnx, got '{output}'")
        if output.exists() and not args.overwrite:
            raise FileExistsError(f"'{output}' exists; not overwritten (--overwrite to replace)")
        model = load_separator(args.checkpoint or default_checkpoint())
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    remove_stale_parts(output.parent, report=lambda message: print(message, file=sys.stderr))
    export_onnx(model, output)
    error = check_onnx(model, output)
    if error > TOLERANCE:
        output.unlink()
        print(f"error: onnxruntime does not match PyTorch (max relative error {error:.2e} > {TOLERANCE:.0e}); "
              f"'{output}' removed", file=sys.stderr)
        return 1
    print(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB); onnxruntime matches PyTorch: "
          f"max relative error {error:.2e} (tolerance {TOLERANCE:.0e})")
    return 0
