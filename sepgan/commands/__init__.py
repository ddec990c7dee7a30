"""The `sepgan` command: `sepgan <command> [options]`, one module per command.

Training has its own Hydra entry point, `python -m sepgan.train`; every other command lives here.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import signal
import sys
import threading
from pathlib import Path

import sepgan

# command -> module with a `main(argv) -> int | None`
COMMANDS = {
    "bench": "sepgan.commands.bench",
    "evaluate": "sepgan.commands.evaluate",
    "export-onnx": "sepgan.commands.export_onnx",
    "separate": "sepgan.commands.separate",
    "serve": "sepgan.commands.serve",
}


def summary(module: str) -> str:
    """What a command does: its module docstring's first line after the "`usage`: " part.

    Read from the source without importing it, so `sepgan --help` does not load torch.
    """
    source = Path(importlib.util.find_spec(module).origin).read_text(encoding="utf-8")
    first = (ast.get_docstring(ast.parse(source)) or "").splitlines()[0]
    return first.split(": ", 1)[-1].rstrip(".")


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {summary(module)}" for name, module in sorted(COMMANDS.items())]
    return "\n".join([
        "usage: sepgan <command> [options]", "",
        "Remove noise from speech with U-Nets on STFT spectrograms.", "",
        "commands:", *lines, "",
        "training (Hydra):",
        "  python -m sepgan.train experiment=NAME [key=value ...]   (--help for the config groups)", "",
        "`sepgan <command> -h` shows a command's options; `sepgan --version` the version.",
    ])


class Terminated(KeyboardInterrupt):
    """SIGTERM (what `kill` and schedulers send), raised where the program is so that it unwinds as for
    Ctrl-C: every `AtomicFile` being written is removed, and the command exits with 128 + 15."""


def _terminate(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv and argv[0] in ("-V", "--version"):
        print(f"sepgan {sepgan.__version__}")
        return 0
    if not argv or argv[0] not in COMMANDS:
        problem = f"unknown command '{argv[0]}'" if argv else "no command given"
        print(f"{usage()}\n\nsepgan: error: {problem}", file=sys.stderr)
        return 2
    in_main_thread = threading.current_thread() is threading.main_thread()  # signals can only be set there
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        module = importlib.import_module(COMMANDS[argv[0]])
        code = module.main(argv[1:])
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        print(f"sepgan {argv[0]}: stopped by {'SIGTERM' if terminated else 'Ctrl-C (SIGINT)'}", file=sys.stderr)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
