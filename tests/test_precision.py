"""Finite gradients at exact zeros, mixed precision that trains (bf16 autocast on the CPU), and bf16 inference."""

import pytest
import torch
from torch import nn

from sepgan.audio import FrontEnd
from sepgan.inference.backends import TorchBackend, load_backend
from sepgan.inference.chunked import ChunkedSeparator
from sepgan.inference.precision import resolve_precision
from sepgan.losses import SeparationLoss, feature_magnitude, projection_loss, si_sdr_loss
from sepgan.models import Separator, load_separator
from sepgan.models.separator import apply_output
from sepgan.numerics import compress, expand, full_precision, magnitude, tanh_ratio
from sepgan.training.stages import run_generator
from tests.conftest import tiny_separator


def finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


# ---- the pieces ---------------------------------------------------------------------------------


def test_tanh_ratio_is_tanh_over_root_with_a_finite_gradient_at_zero():
    power = torch.tensor([0.0, 1e-12, 1e-6, 9.9e-4, 1e-3, 0.5, 4.0, 400.0], dtype=torch.float64, requires_grad=True)
    value = tanh_ratio(power)
    root = power.detach().sqrt()
    expected = torch.where(root > 0, torch.tanh(root) / root, torch.ones_like(root))
    assert torch.allclose(value, expected, rtol=1e-9, atol=0)
    (grad,) = torch.autograd.grad(value.sum(), power)
    assert finite(grad) and grad[0] == pytest.approx(-1 / 3)


def test_the_old_complex_mask_made_nan_gradients_where_the_new_one_does_not():
    out = torch.zeros(1, 2, 3, 4, requires_grad=True)  # a U-Net output of exact zeros (common in bf16)
    mixture = torch.randn(1, 2, 3, 4)
    mag = torch.sqrt(out[:, 0] ** 2 + out[:, 1] ** 2)  # what Separator.estimate computed before
    (old,) = torch.autograd.grad((out[:, 0] * torch.tanh(mag) / mag.clamp_min(1e-8)).sum(), out)
    assert not finite(old)
    (new,) = torch.autograd.grad(apply_output(out, mixture).pow(2).sum(), out)
    assert finite(new)


@pytest.mark.parametrize("power", [0.3, 0.5, 1.0])
def test_compression_has_finite_gradients_at_zero_and_inverts_exactly(power):
    mag = torch.tensor([0.0, 1e-12, 1e-9, 1e-8, 1e-4, 0.3, 5.0], dtype=torch.float64, requires_grad=True)
    squeezed = compress(mag, power)
    (grad,) = torch.autograd.grad(squeezed.sum(), mag)
    assert finite(grad)
    big = mag.detach() >= 1e-8
    assert torch.allclose(squeezed.detach()[big], mag.detach()[big] ** power)
    assert torch.allclose(expand(squeezed.detach(), power), mag.detach(), rtol=1e-12, atol=0)
    (back,) = torch.autograd.grad(expand(compress(mag, power), power).sum(), mag)
    assert finite(back)


def test_magnitude_gradient_is_bounded_by_one_and_zero_at_zero():
    re = torch.tensor([0.0, 1e-30, 3.0], requires_grad=True)
    im = torch.tensor([0.0, 0.0, 4.0], requires_grad=True)
    grads = torch.autograd.grad(magnitude(re, im).sum(), (re, im))
    assert all(finite(g) and g.abs().max() <= 1 for g in grads)
    assert magnitude(re, im)[2].item() == pytest.approx(5.0)


@pytest.mark.parametrize("representation,power", [("complex", 1.0), ("complex", 0.3), ("magnitude", 0.3),
                                                  ("magnitude", 1.0)])
def test_front_end_has_finite_gradients_through_silence(representation, power):
    fe = FrontEnd(8000, 64, 16, representation, power)
    wav = torch.zeros(2, 800)
    wav[1, 400:] = torch.randn(400)  # silence (exact zero bins) next to signal
    wav.requires_grad_(True)
    spec = fe.stft(wav)
    features = fe.to_features(spec)
    (grad,) = torch.autograd.grad(features.sum() + fe.decode(features, 800, spec).pow(2).sum(), wav)
    assert finite(grad)


def zero_output_separator(representation: str, power: float) -> Separator:
    """A separator whose U-Net outputs exact zeros everywhere: every mask and estimate sits at 0."""
    fe = FrontEnd(8000, 64, 16, representation, power)
    model = Separator(fe, dict(n_blocks=3, channels=4, layers=1))
    nn.init.zeros_(model.net.last.weight)
    nn.init.zeros_(model.net.last.bias)
    return model


@pytest.mark.parametrize("representation,power,output", [("complex", 1.0, "mask"), ("complex", 0.3, "mask"),
                                                         ("magnitude", 0.3, "mask"), ("complex", 0.3, "direct")])
@pytest.mark.parametrize("term", SeparationLoss.TERMS)
def test_every_loss_term_has_finite_gradients_when_the_network_outputs_zeros(representation, power, output, term):
    model = zero_output_separator(representation, power)
    model.output = output
    classes = None
    if term == "noise_class":  # the classifier on the noise estimate, its loss reaching the separator too
        model.attach_noise_classifier(["hum", "bark", "siren"], channels=4, detach=False)
        classes = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    torch.manual_seed(0)
    speech = torch.randn(2, 1024) * 0.1
    speech[0, :512] = 0.0  # silent stretches: exact zero bins in the target too
    noise = torch.randn(2, 1024) * 0.05
    sep = model(speech + noise)
    total, terms = SeparationLoss({term: 1.0})(sep, speech, noise, model.frontend, classes)
    assert finite(total)
    total.backward()
    assert all(finite(p.grad) for p in model.parameters() if p.grad is not None)


def test_waveform_losses_have_finite_gradients_for_silent_estimates_and_references():
    estimate = torch.zeros(3, 256, requires_grad=True)
    speech = torch.randn(3, 256)
    speech[1] = 0.0
    noise = torch.randn(3, 256)
    noise[2] = 0.0
    for loss in (si_sdr_loss(estimate, speech), projection_loss(estimate, speech, noise),
                 projection_loss(estimate, torch.zeros_like(speech), torch.zeros_like(noise))):
        (grad,) = torch.autograd.grad(loss, estimate)
        assert finite(loss) and finite(grad)
    features = torch.zeros(1, 2, 3, 3, requires_grad=True)
    (grad,) = torch.autograd.grad(feature_magnitude(features).sum(), features)
    assert finite(grad)


# ---- mixed precision ------------------------------------------------------------------------------


def test_only_the_unet_body_computes_in_bf16_under_autocast():
    model = Separator(FrontEnd(8000, 64, 16, "complex", 0.3), dict(n_blocks=3, channels=4, layers=1))
    seen = {}
    for name, module in model.net.named_modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            module.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sep = model(torch.randn(2, 800))
        with full_precision("cpu"):
            assert not torch.is_autocast_enabled("cpu")
    assert seen["encoders.0.convs.0.2"] == torch.bfloat16
    for tensor in (sep.mixture_features, sep.speech_features, sep.noise_features, sep.speech, sep.noise):
        assert tensor.dtype == torch.float32
    assert sep.mixture_spec.dtype == torch.complex64


@pytest.mark.parametrize("loss_terms", [[], ["loss.weights.mrstft=3", "loss.weights.compressed=50"]],
                         ids=["si_sdr", "shipped_terms"])
def test_bf16_mixed_training_on_cpu_stays_finite_and_validates(make_cfg, loss_terms):
    # the shipped recipe's spectral terms take magnitudes and |X|^0.3 of the estimate: finite under autocast too
    result = run_generator(make_cfg("+experiment=demo", "trainer.precision=bf16-mixed", "trainer.max_steps=4",
                                    "+trainer.val_check_interval=2", "trainer.check_val_every_n_epoch=null",
                                    *loss_terms))
    assert result.failure is None and result.steps == 4
    assert all(map(lambda v: torch.isfinite(torch.tensor(v)), result.metrics.values()))
    assert "val/si_sdri" in result.metrics
    model = load_separator(result.checkpoint)
    assert all(finite(t) for t in model.state_dict().values() if t.is_floating_point())
    assert all(t.dtype != torch.bfloat16 for t in model.state_dict().values())  # weights are kept in float32


# ---- inference in bf16 (`--precision`) ----------------------------------------------------------


def test_bf16_inference_computes_in_bf16_and_returns_float32_close_to_fp32():
    model = tiny_separator()
    signal = torch.randn(3 * 16000).numpy() * 0.1
    fp32 = ChunkedSeparator(TorchBackend(model)).separate(signal, 16000)
    bf16 = ChunkedSeparator(TorchBackend(model, precision="bf16")).separate(signal, 16000)
    assert bf16.dtype == fp32.dtype and bf16.shape == fp32.shape
    error = float(((bf16 - fp32) ** 2).sum() / (fp32**2).sum())
    assert 0 < error < 1e-3  # it ran in bf16 (not the float32 result), 30 dB or more from float32


def test_precision_values_are_checked_and_auto_follows_the_cpu(monkeypatch):
    cpu = torch.device("cpu")
    with pytest.raises(ValueError, match="unknown precision 'half'; choose auto, fp32, bf16"):
        resolve_precision("half", cpu)
    with pytest.raises(ValueError, match="bf16 runs on a CPU or a CUDA GPU, not on 'meta'"):
        resolve_precision("bf16", torch.device("meta"))
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"  # measured on a CPU only
    for avx512_bf16, amx, expected in ((True, False, "bf16"), (False, True, "bf16"), (False, False, "fp32")):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
        assert resolve_precision("auto", cpu) == expected
        assert TorchBackend(tiny_separator(), precision="auto").describe()["precision"] == expected


def test_onnx_models_refuse_bf16_and_take_auto_as_float32(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"")  # refused before it is opened
    with pytest.raises(ValueError, match="--precision bf16 needs the torch backend"):
        load_backend(path, precision="bf16")
    with pytest.raises(ValueError, match="cannot load ONNX model"):  # got past the precision check
        load_backend(path, precision="auto")
