import pytest
import torch

from sepgan.audio import FrontEnd
from sepgan.losses import (
    SeparationLoss,
    compressed_spectral_loss,
    huber,
    mse,
    multi_resolution_stft_loss,
    noise_weighted_mse,
    projection,
    projection_loss,
    si_sdr_loss,
    ssim_loss,
)
from sepgan.models import Separator

torch.manual_seed(0)
SPEECH = torch.randn(4, 4000)
NOISE = torch.randn(4, 4000)


def test_projection_recovers_known_coefficients():
    residual = torch.randn(4, 4000) * 0.01
    a, b, r = projection(0.7 * SPEECH + 0.2 * NOISE + residual, SPEECH, NOISE)
    torch.testing.assert_close(a, torch.full((4,), 0.7), atol=5e-3, rtol=0)
    torch.testing.assert_close(b, torch.full((4,), 0.2), atol=5e-3, rtol=0)
    assert (r.pow(2).mean() - residual.pow(2).mean()).abs() < 1e-5


def test_projection_loss_is_zero_for_the_speech_and_grows_with_noise_and_residual():
    assert projection_loss(SPEECH, SPEECH, NOISE) < 1e-8
    with_noise = [projection_loss(SPEECH + g * NOISE, SPEECH, NOISE) for g in (0.1, 0.3, 1.0)]
    assert with_noise[0] < with_noise[1] < with_noise[2]
    other = torch.randn(4, 4000)
    with_residual = [projection_loss(SPEECH + g * other, SPEECH, NOISE) for g in (0.1, 0.3, 1.0)]
    assert with_residual[0] < with_residual[1] < with_residual[2]
    assert projection_loss(0.5 * SPEECH, SPEECH, NOISE) == pytest.approx(0.25, abs=1e-4)  # (a-1)^2 only
    assert projection_loss(SPEECH, SPEECH, NOISE, residual_weight=0) < 1e-8


def test_noise_weighted_mse_counts_errors_where_noise_is_strong():
    target = torch.zeros(1, 1, 4, 4)
    noise = torch.zeros(1, 1, 4, 4)
    noise[..., 0, :] = 10.0  # strong noise in the first row only
    noise[..., 1:, :] = 0.1
    err_loud, err_quiet = target.clone(), target.clone()
    err_loud[..., 0, 0] = 1.0
    err_quiet[..., 3, 0] = 1.0
    assert mse(err_loud, target) == mse(err_quiet, target)
    assert noise_weighted_mse(err_loud, target, noise) > 50 * noise_weighted_mse(err_quiet, target, noise)
    # independent of the noise level
    torch.testing.assert_close(noise_weighted_mse(err_loud, target, noise),
                               noise_weighted_mse(err_loud, target, 7 * noise))


def test_huber_is_quadratic_then_linear():
    zero = torch.zeros(1)
    assert huber(torch.tensor([0.5]), zero) == pytest.approx(0.125)
    assert huber(torch.tensor([3.0]), zero) == pytest.approx(2.5)


def test_ssim_loss_is_zero_for_identity_and_differentiable():
    fe = FrontEnd(8000, 256, 64)
    target = fe.encode(SPEECH[:2])
    assert ssim_loss(target, target) < 1e-5
    estimate = fe.encode(SPEECH[:2] + 0.5 * NOISE[:2]).requires_grad_()
    loss = ssim_loss(estimate, target)
    loss.backward()
    assert loss > 0.05 and estimate.grad.abs().sum() > 0


def test_si_sdr_loss_prefers_the_cleaner_estimate():
    assert si_sdr_loss(SPEECH + 0.1 * NOISE, SPEECH) < si_sdr_loss(SPEECH + NOISE, SPEECH)


def test_mrstft_is_zero_for_identity_and_grows_with_noise():
    assert multi_resolution_stft_loss(SPEECH, SPEECH) == 0
    slight = multi_resolution_stft_loss(SPEECH + 0.1 * NOISE, SPEECH)
    assert 0 < slight < multi_resolution_stft_loss(SPEECH + NOISE, SPEECH)
    # Magnitudes only: a sign flip (same spectrogram magnitudes, opposite phase) costs nothing.
    assert multi_resolution_stft_loss(-SPEECH, SPEECH) < 1e-5


@pytest.mark.parametrize("estimate, target", [(torch.zeros(2, 4000), torch.zeros(2, 4000)),
                                              (torch.zeros(2, 4000), SPEECH[:2]),
                                              (SPEECH[:2].clone(), SPEECH[:2])])
def test_mrstft_gradients_are_finite_at_zero_and_at_the_optimum(estimate, target):
    estimate.requires_grad_()
    multi_resolution_stft_loss(estimate, target, resolutions=[(256, 64), (512, 128)]).backward()
    assert torch.isfinite(estimate.grad).all()


def test_compressed_loss_is_zero_for_identity_grows_with_noise_and_judges_phase():
    assert compressed_spectral_loss(SPEECH, SPEECH) == 0
    slight = compressed_spectral_loss(SPEECH + 0.1 * NOISE, SPEECH)
    assert 0 < slight < compressed_spectral_loss(SPEECH + NOISE, SPEECH)
    # Its complex share sees a sign flip (same magnitudes, opposite phase); the magnitude share does not.
    assert compressed_spectral_loss(-SPEECH, SPEECH, complex_share=0.0) < 1e-6
    assert compressed_spectral_loss(-SPEECH, SPEECH) > compressed_spectral_loss(SPEECH + NOISE, SPEECH)


def test_compressed_loss_weighs_quiet_bins_more_than_a_plain_mse():
    """Compression shrinks a 100-fold level difference to 100^0.3 (about 4): quiet errors still count.

    A plain MSE of the spectra would weigh the loud error 100^2 = 10 000 times the quiet one.
    """
    loud = compressed_spectral_loss(SPEECH + NOISE, SPEECH)
    quiet = compressed_spectral_loss(0.01 * (SPEECH + NOISE), 0.01 * SPEECH)
    assert loud / quiet == pytest.approx(100 ** 0.6, rel=1e-3)


@pytest.mark.parametrize("estimate, target", [(torch.zeros(2, 4000), torch.zeros(2, 4000)),
                                              (torch.zeros(2, 4000), SPEECH[:2]),
                                              (SPEECH[:2].clone(), SPEECH[:2])])
def test_compressed_loss_gradients_are_finite_at_zero_and_at_the_optimum(estimate, target):
    estimate.requires_grad_()
    compressed_spectral_loss(estimate, target).backward()
    assert torch.isfinite(estimate.grad).all()


def test_mrstft_resolutions_are_checked():
    with pytest.raises(ValueError, match="mrstft_resolutions"):
        SeparationLoss(dict(mrstft=1.0), mrstft_resolutions=[[512]])


def test_weighted_sum_reports_each_term_and_skips_zero_weights():
    fe = FrontEnd(8000, 256, 64)
    model = Separator(fe, unet=dict(n_blocks=3, channels=4))
    sep = model(SPEECH + NOISE)
    weights = dict(mse=2.0, noise_weighted_mse=1.0, huber_noise=0.5, ssim=0.1, projection=1.0, si_sdr=0.01,
                   mrstft=1.0, compressed=1.0)
    total, terms = SeparationLoss(weights)(sep, SPEECH, NOISE, fe)
    assert set(terms) == set(weights)
    torch.testing.assert_close(total, sum(weights[k] * v for k, v in terms.items()))
    total.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    _, only = SeparationLoss(dict(mse=1.0, si_sdr=0.0))(sep, SPEECH, NOISE, fe)
    assert set(only) == {"mse"}


def test_bad_weights_are_named():
    with pytest.raises(ValueError, match="l1"):
        SeparationLoss(dict(l1=1.0))
    with pytest.raises(ValueError, match="every weight is 0"):
        SeparationLoss(dict(mse=0.0))


def test_noise_feature_terms_ignore_a_dc_offset_the_model_never_sees():
    # The separator removes the mixture's offset before the network, so its noise features hold none;
    # the noise target must not either, or these terms would fault the model for what it cannot output.
    fe = FrontEnd(8000, 256, 64)
    torch.manual_seed(0)
    model = Separator(fe, unet=dict(n_blocks=3, channels=4)).eval()
    loss = SeparationLoss(dict(noise_weighted_mse=1.0, huber_noise=1.0))
    _, plain = loss(model(SPEECH + NOISE), SPEECH, NOISE, fe)
    _, shifted = loss(model(SPEECH + NOISE + 0.3), SPEECH, NOISE + 0.3, fe)
    for name in plain:
        torch.testing.assert_close(shifted[name], plain[name], rtol=1e-3, atol=1e-6)
