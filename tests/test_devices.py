"""Inference keeps every tensor on the model's device (`--device cuda`), checked without a GPU.

The model goes to PyTorch's `meta` device: tensors there have shapes but no data, and any
operation that mixes them with a CPU tensor fails ("Tensor on device meta is not on the expected
device cpu"), as mixing CPU and CUDA tensors does. A path that keeps everything on the model's
device runs until it copies its result back to the CPU, which a meta tensor cannot do ("Cannot
copy out of meta tensor"): reaching that error is the pass mark. `torch.istft` has no meta
implementation, so a stand-in checks that its window sits beside its input and returns zeros.
"""

import numpy as np
import pytest
import torch

from sepgan.evaluation import Example, evaluate, model_speech
from sepgan.inference import backends
from sepgan.inference.backends import TorchBackend, receptive_field
from sepgan.inference.chunked import ChunkedSeparator
from tests.conftest import tiny_separator

REACHED_THE_COPY_BACK = "Cannot copy out of meta tensor"


@pytest.fixture
def meta_istft(monkeypatch):
    real = torch.istft

    def istft(spec, n_fft, hop_length=None, win_length=None, window=None, center=True, normalized=False,
              onesided=None, length=None, return_complex=False):
        if spec.device.type != "meta":
            return real(spec, n_fft, hop_length, win_length, window, center, normalized, onesided, length,
                        return_complex)
        assert window is not None and window.device == spec.device, "the STFT window is not on the model's device"
        return torch.zeros(spec.shape[0], length, device=spec.device)

    monkeypatch.setattr(torch, "istft", istft)


def test_a_cpu_tensor_meeting_the_meta_model_is_caught():
    """The premise: mixing devices fails loudly, so the tests below would catch an implicit CPU tensor."""
    model = tiny_separator().to("meta")
    fe = model.frontend
    with pytest.raises(RuntimeError, match="device"):
        model.separate_features(torch.randn(1, fe.channels, fe.n_freq, 16))


def test_receptive_field_is_measured_on_the_model_device():
    with pytest.raises(NotImplementedError, match=REACHED_THE_COPY_BACK):
        receptive_field(tiny_separator().to("meta"))


def test_chunked_separation_keeps_every_tensor_on_the_backend_device(meta_istft):
    backend = TorchBackend(tiny_separator(), "meta")
    assert {p.device.type for p in backend.model.parameters()} == {"meta"}
    backend._receptive_field = 5  # measuring it needs data (see the test above)
    engine = ChunkedSeparator(backend, chunk_seconds=0.5, batch_size=2)
    with pytest.raises(NotImplementedError, match=REACHED_THE_COPY_BACK):
        engine.separate(np.random.default_rng(0).standard_normal((2, 20000)).astype(np.float32))


def test_evaluation_runs_the_model_where_its_weights_are(meta_istft):
    mixture = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    with pytest.raises(NotImplementedError, match=REACHED_THE_COPY_BACK):
        model_speech(tiny_separator().to("meta"), mixture)
    example = Example("a", mixture, 0.5 * mixture, 0.5 * mixture, 16000)
    with pytest.raises(NotImplementedError, match=REACHED_THE_COPY_BACK):
        evaluate([example], tiny_separator(), methods=("model",), metrics=("si_sdr",), progress=False, device="meta")


def test_load_backend_and_the_server_pass_the_device_on(tiny_checkpoint, monkeypatch):
    from sepgan.serve import service

    assert backends.load_backend(tiny_checkpoint, device="meta").device == torch.device("meta")
    seen = []
    monkeypatch.setattr(service, "load_backend", lambda *args, **kwargs: seen.append(args) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        service.Service(service.Settings(checkpoint=tiny_checkpoint, device="cuda:1"))
    assert seen[0][2] == "cuda:1"
