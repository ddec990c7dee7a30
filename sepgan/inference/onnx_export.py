"""The model between the STFTs as an ONNX file (`sepgan export-onnx`), checked against PyTorch.

Only `Separator.separate_features` is exported (features in, speech and noise features out, any
batch size and number of frames); the STFT and its inverse stay outside, in `FrontEnd`, for both
backends. The file carries the front-end settings, the U-Net's time factor and its receptive field
as metadata, so `sepgan separate --checkpoint model.onnx` needs nothing else.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sepgan.atomic import AtomicFile
from sepgan.inference.backends import META_FRONTEND, META_RECEPTIVE_FIELD, META_TIME_FACTOR, OnnxBackend, receptive_field
from sepgan.data import synthetic
from sepgan.models import Separator
from sepgan.models.separator import centred_level

TOLERANCE = 1e-4  # largest accepted max|onnx - torch| / max|torch|


class _Features(nn.Module):
    """`separate_features` as a module's forward, the shape the exporter wants."""

    def __init__(self, model: Separator):
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.separate_features(features)


def export_onnx(model: Separator, path: str | Path) -> Path:
    """Write `model` as ONNX with dynamic batch and length (atomically: temp file, then rename)."""
    import onnx

    model = model.eval().cpu()
    fe = model.frontend
    example = torch.randn(2, fe.channels, fe.n_freq, 5 * model.net.time_factor + 3)
    dynamic = {"features": {0: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}}
    # The exporter reports each step on stdout and warns about absent optional packages: quiet both.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.onnx.export(_Features(model).eval(), (example,), dynamo=True, dynamic_shapes=dynamic,
                                    input_names=["features"], output_names=["speech", "noise"])
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {
        META_FRONTEND: json.dumps(asdict(fe)),
        META_TIME_FACTOR: str(model.net.time_factor),
        META_RECEPTIVE_FIELD: str(receptive_field(model)),
    })
    with AtomicFile(path, overwrite=True) as target:
        onnx.save(proto, str(target.tmp))
    return Path(path)


def check_onnx(model: Separator, path: str | Path, seconds: tuple[float, ...] = (1.3, 4.7)) -> float:
    """Largest relative difference of speech features, onnxruntime vs PyTorch, over a few lengths.

    The inputs are synthetic speech-like signals with synthetic noise, at lengths other than the
    one traced at export, so the check also covers the dynamic length.
    """
    model = model.eval().cpu()
    backend = OnnxBackend(path)
    fe = model.frontend
    worst = 0.0
    for i, length in enumerate(seconds):
        speech = synthetic.speech_like(i, 0, fe.sample_rate, length)
        noise = synthetic.noise(synthetic.NOISE_KINDS[i % len(synthetic.NOISE_KINDS)], i, fe.sample_rate, length)
        mixture = torch.from_numpy(np.stack([speech + noise, speech - 0.5 * noise]))
        centred, scale = centred_level(mixture)
        features = fe.encode(centred / scale)
        with torch.inference_mode():
            expected = model.separate_features(features)[0]
        got = backend.speech_features(features)
        worst = max(worst, float((got - expected).abs().max() / expected.abs().max()))
    return worst
