"""`sepgan serve`: start the web page and HTTP API (uvicorn) on one machine.

The defaults suit a small CPU machine: one worker (requests beyond it wait in line), uploads up to
100 MB and 10 minutes. Page at http://HOST:PORT/, API docs at /docs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sepgan.commands.options import port, positive_float, positive_int, torch_device
from sepgan.inference.precision import PRECISIONS
from sepgan.pretrained import default_checkpoint


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sepgan serve", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="a sepgan .ckpt or an exported .onnx (default: the shipped model)")
    p.add_argument("--backend", choices=["torch", "onnx"], help="default: onnx for .onnx files, else torch")
    p.add_argument("--noise-dir", type=Path, help="a folder of noise recordings, one sub-folder per class, "
                                                  "offered on the page next to the synthetic noises")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port, default=8000)
    p.add_argument("--max-upload-mb", type=positive_float, default=100.0, help="largest accepted upload (default 100)")
    p.add_argument("--max-seconds", type=positive_float, default=600.0, help="longest accepted audio (default 600)")
    p.add_argument("--max-samples", type=positive_int,
                   help="most samples an upload may decode to: channels x seconds x sample rate (at least the "
                        "model's), checked from its header before decoding (default: as many as max-seconds of "
                        "48 kHz stereo)")
    p.add_argument("--workers", type=positive_int, default=1, help="requests processed at once (default 1)")
    p.add_argument("--max-queue", type=int, default=32, help="requests allowed to wait; more get 503 (default 32)")
    p.add_argument("--threads", type=positive_int, help="CPU threads per model call (default: PyTorch's choice)")
    p.add_argument("--device", type=torch_device, default="cpu", help="torch device, e.g. cuda (torch backend)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="the U-Net's arithmetic (torch backend; default auto: bf16 on a CPU that computes it natively, "
                        "about 1.7 times as fast, else fp32)")
    p.add_argument("--shifts", type=positive_int, default=1,
                   help="as `sepgan separate --shifts`: average N STFT frame grids (N times the work; default 1)")
    args = p.parse_args(argv)
    if args.max_queue < 0:
        p.error("--max-queue must not be negative")
    import uvicorn  # the web stack and the model code load only once the arguments are good

    from sepgan.serve.app import Settings, create_app

    try:
        settings = Settings(checkpoint=Path(args.checkpoint) if args.checkpoint else default_checkpoint(),
                            backend=args.backend, noise_dir=args.noise_dir, max_upload_mb=args.max_upload_mb,
                            max_seconds=args.max_seconds, max_samples=args.max_samples, workers=args.workers,
                            max_queue=args.max_queue, threads=args.threads, device=args.device,
                            precision=args.precision, shifts=args.shifts)
        app = create_app(settings)
    except (FileNotFoundError, NotADirectoryError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"sepgan: page at http://{args.host}:{args.port}/ , API docs at http://{args.host}:{args.port}/docs",
          file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
