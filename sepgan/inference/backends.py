"""Inference backends: the model between the STFTs, run by PyTorch or by onnxruntime.

The STFT and its inverse stay in PyTorch (`FrontEnd`) for both, so a backend only maps normalised
mixture features to speech features. Each also tells the chunked separator what it needs to cut
a long file without changing the result: the U-Net's time down-sampling factor (chunks must start
on its grid) and its receptive field in frames (how much context each chunk needs).
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from sepgan.audio import FrontEnd
from sepgan.inference.precision import resolve_precision
from sepgan.models import Separator, load_separator
from sepgan.models.receptive_field import receptive_field

# Keys of the metadata an exported ONNX model carries, so that it alone is enough to run it.
META_FRONTEND = "sepgan.frontend"
META_TIME_FACTOR = "sepgan.time_factor"
META_RECEPTIVE_FIELD = "sepgan.receptive_field"
META_PRECISION = "sepgan.precision"  # "int8" for `export-onnx --int8`; absent (float32) in files from before it


class Backend(Protocol):
    """What the chunked separator needs of a model: its front-end, its grid and reach, and features in, speech out."""

    name: str
    frontend: FrontEnd
    time_factor: int  # chunks must start on multiples of hop x time_factor samples
    receptive_field: int  # frames of context each side that an output frame depends on
    precision: str  # the network's arithmetic: "fp32" or "bf16" (sepgan.inference.precision), "int8" (ONNX)

    def speech_features(self, features: torch.Tensor) -> torch.Tensor: ...

    def describe(self) -> dict: ...


class TorchBackend:
    """`precision="bf16"` runs the U-Net's layers in bf16 under autocast; the STFT, the mask and every
    spectrum stay in float32 (`Separator.estimate`), so the result is float32 and close to it."""

    name = "torch"

    def __init__(self, model: Separator, device: str | torch.device = "cpu", precision: str = "fp32"):
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, self.device)
        # channels-last weights and features: oneDNN's CPU convolutions run them faster, with the same
        # results (the shipped model, 60 s, one thread: 0.028 -> 0.024 after the first run, which gains
        # little; experiments/torch_memory_format.py)
        self.model = model.eval().to(self.device, memory_format=torch.channels_last)
        self.frontend = model.frontend
        self.time_factor = model.net.time_factor
        # measured when the checkpoint was saved (`save_separator`), else on first use
        self._receptive_field: int | None = getattr(model, "stored_receptive_field", None)

    @property
    def receptive_field(self) -> int:
        if self._receptive_field is None:
            self._receptive_field = receptive_field(self.model)
        return self._receptive_field

    def speech_features(self, features: torch.Tensor) -> torch.Tensor:
        """Speech features on the model's device, whatever device `features` came from."""
        bf16 = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.precision == "bf16" else nullcontext()
        with torch.inference_mode(), bf16:
            features = features.to(self.device).contiguous(memory_format=torch.channels_last)
            return self.model.separate_features(features)[0]

    def describe(self) -> dict:
        return dict(backend=self.name, precision=self.precision,
                    parameters=sum(p.numel() for p in self.model.parameters()), **self.model.config)


class OnnxBackend:
    name = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort  # optional at import time: only this backend needs it

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: '{path}'")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:
            raise ValueError(f"cannot load ONNX model '{path}': {err}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        missing = [k for k in (META_FRONTEND, META_TIME_FACTOR, META_RECEPTIVE_FIELD) if k not in meta]
        if missing:
            raise ValueError(f"'{path}' was not written by `sepgan export-onnx` (no {', '.join(missing)} metadata)")
        self.frontend = FrontEnd(**json.loads(meta[META_FRONTEND]))
        self.time_factor = int(meta[META_TIME_FACTOR])
        self.receptive_field = int(meta[META_RECEPTIVE_FIELD])
        # float32, or int8 convolutions (`export-onnx --int8`): what the file holds, not a choice here
        self.precision = meta.get(META_PRECISION, "fp32")
        self.path = path

    def speech_features(self, features: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(features.detach().cpu().numpy(), dtype=np.float32)
        (speech,) = self.session.run(["speech"], {"features": x})
        return torch.from_numpy(speech)

    def describe(self) -> dict:
        return dict(backend=self.name, precision=self.precision, onnx=self.path.name, frontend=asdict(self.frontend))


def load_backend(path: str | Path, backend: str | None = None, device: str = "cpu",
                 threads: int | None = None, precision: str = "fp32") -> Backend:
    """A backend for a sepgan checkpoint (`.ckpt`, PyTorch) or an exported model (`.onnx`).

    `backend` defaults to the one the file's extension implies; asking for ONNX with a checkpoint
    is refused with the command that makes the ONNX file, since exporting takes a while.
    `precision` is the PyTorch backend's; ONNX Runtime runs the file as exported (float32, or int8
    convolutions), so only "auto" and "fp32", the default of `separate` and of `evaluate`, pass there.
    """
    path = Path(path)
    kind = backend or ("onnx" if path.suffix.lower() == ".onnx" else "torch")
    if kind == "onnx":
        if path.suffix.lower() != ".onnx":
            raise ValueError(f"--backend onnx needs an .onnx model, got '{path}'; make one with "
                             f"`sepgan export-onnx --checkpoint {path} -o {path.with_suffix('.onnx')}`")
        if precision not in ("auto", "fp32"):
            raise ValueError(f"--precision {precision} needs the torch backend (a .ckpt); ONNX Runtime runs the "
                             f"file as exported (float32, or int8 from `sepgan export-onnx --int8`)")
        return OnnxBackend(path, threads)
    if kind != "torch":
        raise ValueError(f"unknown backend '{kind}'; choose torch or onnx")
    if path.suffix.lower() == ".onnx":
        raise ValueError(f"'{path}' is an ONNX model: use --backend onnx (or no --backend)")
    model = load_separator(path)
    if not isinstance(model, Separator):  # a separator of voices: its outputs are not speech and noise
        raise ValueError(f"'{path}' separates {model.sources} speakers; use `sepgan separate --speakers "
                         f"{model.sources}` (speech commands need a speech-versus-noise model)")
    return TorchBackend(model, device, precision)
