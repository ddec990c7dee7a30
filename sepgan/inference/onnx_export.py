"""The model between the STFTs as an ONNX file (`sepgan export-onnx`), checked against PyTorch.

Only `Separator.separate_features` is exported (features in, speech and noise features out, any
batch size and number of frames); the STFT and its inverse stay outside, in `FrontEnd`, for both
backends. The file carries the front-end settings, the U-Net's time factor and its receptive field
as metadata, so `sepgan separate --checkpoint model.onnx` needs nothing else.

`int8=True` also quantizes the convolutions (static int8, ranges calibrated on synthetic mixtures).
Why: from a third of the file size, within 0.08 dB (README, "ONNX"), and on a CPU with VNNI ONNX
Runtime then separates the shipped model in about a fifth less time (17-22 % for version 9, 23 % for
version 8); on one without (AVX2 alone) in the same time.
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
from sepgan.inference.backends import (META_FRONTEND, META_PRECISION, META_RECEPTIVE_FIELD, META_TIME_FACTOR, OnnxBackend,
                                       receptive_field)
from sepgan.data import synthetic
from sepgan.models import Separator
from sepgan.models.separator import centred_level

TOLERANCE = 1e-4  # largest accepted max|onnx - torch| / max|torch|
INT8_MIN_SNR_DB = 20.0  # an int8 file's speech features must stay this far (in dB) above their difference from PyTorch's
CALIBRATION_MIXTURES = 16  # synthetic mixtures of 4 s whose features set the int8 ranges


class _Features(nn.Module):
    """`separate_features` as a module's forward, the shape the exporter wants."""

    def __init__(self, model: Separator):
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.separate_features(features)


def export_onnx(model: Separator, path: str | Path, int8: bool = False) -> Path:
    """Write `model` as ONNX with dynamic batch and length (atomically: temp file, then rename);
    `int8`: with its convolutions quantized (`quantize_int8`)."""
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
    return _write(model, program.model_proto, path, int8)


def export_int8_copy(model: Separator, exported: str | Path, path: str | Path) -> Path:
    """Write an int8 version of `model`'s float32 export `exported` to `path`, without exporting again
    (the exporter takes most of a minute; `make bench` and `experiments/model_speed.py` time both)."""
    import onnx

    return _write(model, onnx.load(str(exported)), path, int8=True)


def _write(model: Separator, proto, path: str | Path, int8: bool) -> Path:
    """Save the exported graph with the metadata that `OnnxBackend` needs, quantized first if `int8`."""
    import onnx

    if int8:
        proto = quantize_int8(proto, calibration_features(model))
    onnx.helper.set_model_props(proto, {
        META_FRONTEND: json.dumps(asdict(model.frontend)),
        META_TIME_FACTOR: str(model.net.time_factor),
        META_RECEPTIVE_FIELD: str(receptive_field(model)),
        META_PRECISION: "int8" if int8 else "fp32",
    })
    with AtomicFile(path, overwrite=True) as target:
        onnx.save(proto, str(target.tmp))
    return Path(path)


def _synthetic_features(model: Separator, index: int, seconds: float, snr_db: float | None = None) -> torch.Tensor:
    """Normalised features, as the separator computes them, of a synthetic speech-like signal plus
    synthetic noise: two channels (speech + noise, speech - noise / 2), or one at `snr_db`."""
    fe = model.frontend
    speech = synthetic.speech_like(index, 0, fe.sample_rate, seconds)
    noise = synthetic.noise(synthetic.NOISE_KINDS[index % len(synthetic.NOISE_KINDS)], index, fe.sample_rate, seconds)
    if snr_db is None:
        mixture = torch.from_numpy(np.stack([speech + noise, speech - 0.5 * noise]))
    else:
        noise = noise * np.sqrt(np.mean(speech**2) / max(np.mean(noise**2), 1e-12) / 10 ** (snr_db / 10))
        mixture = torch.from_numpy((speech + noise)[None].astype(np.float32))
    centred, scale = centred_level(mixture)
    return fe.encode(centred / scale)


def calibration_features(model: Separator, count: int = CALIBRATION_MIXTURES, seconds: float = 4.0) -> list[np.ndarray]:
    """Features of `count` synthetic mixtures at -5...15 dB SNR (seeded): what sets the int8 ranges.

    Synthetic, so that exporting needs no data; on version 8 these ranges scored within a
    standard error of ranges from 32 training mixtures of real recordings (the test split against
    float32: -0.012 +- 0.012 and -0.003 +- 0.010 dB).
    """
    snrs = np.random.default_rng(0).uniform(-5.0, 15.0, count)
    return [_synthetic_features(model.eval().cpu(), i, seconds, float(snr)).numpy() for i, snr in enumerate(snrs)]


def quantize_int8(proto, features: list[np.ndarray]):
    """The exported graph with every convolution in int8: weights per output channel, activations
    (unsigned) with ranges from running `features` through it (ONNX Runtime's static quantization).

    Only convolutions: they are most of the work, and quantizing the matrix products over frequency
    (the TDF layers) and the transposed convolutions too made the network slower, not faster, here.
    Weights use 7 of their 8 bits (`reduce_range`): on x86 CPUs without VNNI (AVX2 alone) ONNX Runtime
    multiplies uint8 by int8 in pairs summed into 16 bits, which saturate with full-range weights; the
    shipped model's int8 file then fell to 8-9 dB above its difference from float32 on such a machine,
    where it keeps 23.5-29.8 dB with 7-bit weights (versions 9 to 11; version 9: 26.6 with 8 bits on a CPU with VNNI).
    """
    import tempfile

    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Features(CalibrationDataReader):
        def __init__(self):
            self._next = iter(features)

        def get_next(self):
            batch = next(self._next, None)
            return None if batch is None else {"features": batch}

    with tempfile.TemporaryDirectory() as folder:
        plain, prepared, quantized = (Path(folder) / name for name in ("plain.onnx", "prepared.onnx", "int8.onnx"))
        onnx.save(proto, str(plain))
        quant_pre_process(str(plain), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(quantized), Features(), quant_format=QuantFormat.QOperator,
                        op_types_to_quantize=["Conv"], per_channel=True, reduce_range=True,
                        activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
        return onnx.load(str(quantized))


def _speech_pairs(model: Separator, path: str | Path, seconds: tuple[float, ...]):
    """(PyTorch's, onnxruntime's) speech features of synthetic mixtures of each length.

    The lengths differ from the one traced at export, so the comparison also covers the dynamic length.
    """
    model = model.eval().cpu()
    backend = OnnxBackend(path)
    for i, length in enumerate(seconds):
        features = _synthetic_features(model, i, length)
        with torch.inference_mode():
            expected = model.separate_features(features)[0]
        yield expected, backend.speech_features(features)


def check_onnx(model: Separator, path: str | Path, seconds: tuple[float, ...] = (1.3, 4.7)) -> float:
    """Largest relative difference of speech features, onnxruntime vs PyTorch, over a few lengths."""
    return max(float((got - expected).abs().max() / expected.abs().max())
               for expected, got in _speech_pairs(model, path, seconds))


def check_onnx_snr(model: Separator, path: str | Path, seconds: tuple[float, ...] = (1.3, 4.7)) -> float:
    """Lowest ratio (dB), over a few lengths, of PyTorch's speech features to their difference from
    onnxruntime's: the check of an int8 file, whose every value moves a little."""
    return min(float(10 * torch.log10(expected.pow(2).sum() / (got - expected).pow(2).sum().clamp_min(1e-30)))
               for expected, got in _speech_pairs(model, path, seconds))
