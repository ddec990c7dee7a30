"""The `sepgan` command: `sepgan <command> [options]`, one module per command.

Training has its own Hydra entry point, `python -m sepgan.train`; every other command lives here.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading

# command -> module with a `main(argv) -> int | None`
COMMANDS = {
    "bench": "sepgan.commands.bench",
    "evaluate": "sepgan.commands.evaluate",
    "export-onnx": "sepgan.commands.export_onnx",
    "separate": "sepgan.commands.separate",
    "serve": "sepgan.commands.serve",
}


class Terminated(KeyboardInterrupt):
    """SIGTERM (what `kill` and schedulers send), raised where the program is so that it unwinds as for
    Ctrl-C: every `AtomicFile` being written is removed, and the command exits with 128 + 15."""


def _terminate(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        names = ", ".join(sorted(COMMANDS))
        print(f"usage: sepgan <command> [options]   (commands: {names}; `sepgan <command> -h` for help)\n"
              f"training: python -m sepgan.train +experiment=NAME", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
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
