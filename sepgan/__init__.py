"""sepgan: U-Nets on STFT spectrograms that remove noise from speech.

Layers, each importing only those above it:
- library: `audio`, `data`, `models`, `losses`, `metrics`, `baselines`, `evaluation`, `plots`, `atomic`
  (no Lightning, no Hydra);
- `inference`: backends (PyTorch, ONNX Runtime), chunked separation of any length, files, export,
  and the Python API (`sepgan.load`);
- `training`: the Lightning systems, the three stages, distributed helpers, config builders;
- `commands`: one module per `sepgan` subcommand, and `python -m sepgan.train`;
- `serve`: the web page and HTTP API.
"""

__version__ = "0.2.0"

__all__ = ["__version__", "load"]


def __getattr__(name: str):
    # `sepgan.load` imports torch on first use, so `import sepgan` (and the CLI's start-up) stays fast.
    if name == "load":
        from sepgan.inference.api import load

        return load
    raise AttributeError(f"module 'sepgan' has no attribute '{name}'")
