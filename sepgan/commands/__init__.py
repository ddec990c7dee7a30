"""The `sepgan` command: `sepgan <command> [options]`, one module per command.

Training has its own Hydra entry point, `python -m sepgan.train`; every other command lives here.
"""

from __future__ import annotations

import importlib
import sys

# command -> module with a `main(argv) -> int | None`
COMMANDS = {
    "bench": "sepgan.commands.bench",
    "evaluate": "sepgan.commands.evaluate",
    "export-onnx": "sepgan.commands.export_onnx",
    "separate": "sepgan.commands.separate",
    "serve": "sepgan.commands.serve",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        names = ", ".join(sorted(COMMANDS))
        print(f"usage: sepgan <command> [options]   (commands: {names}; `sepgan <command> -h` for help)\n"
              f"training: python -m sepgan.train experiment=NAME", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(COMMANDS[argv[0]])
    code = module.main(argv[1:])
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
