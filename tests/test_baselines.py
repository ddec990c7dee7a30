import numpy as np
import pytest
import torch

from sepgan.audio import FrontEnd
from sepgan.baselines import ideal_ratio_mask, oracle_mask, phase_sensitive_mask, spectral_gating
from sepgan.data.synthetic import noise as synthetic_noise
from sepgan.data.synthetic import speech_like
from sepgan.metrics import si_sdr_db, stoi

SR = 16000
SPEECH = speech_like(1, 0, SR, 2.0).astype(np.float32)
HUM = synthetic_noise("air_conditioner", 0, SR, 2.0)
HUM = (HUM / np.sqrt(np.mean(HUM**2)) * np.sqrt(np.mean(SPEECH**2))).astype(np.float32)  # 0 dB SNR
MIXTURE = SPEECH + HUM
FRONTEND = FrontEnd(SR, 512, 128, "complex", compress=0.3)


@pytest.mark.parametrize("kind", ["irm", "psm"])
def test_oracle_masks_beat_the_noisy_input_by_far(kind):
    estimate = oracle_mask(MIXTURE, SPEECH, FRONTEND, kind)
    assert estimate.shape == MIXTURE.shape and estimate.dtype == np.float32
    assert si_sdr_db(estimate, SPEECH) > si_sdr_db(MIXTURE, SPEECH) + 10
    assert stoi(estimate, SPEECH, SR) > stoi(MIXTURE, SPEECH, SR)


def test_oracle_masks_are_bounded_and_pass_clean_speech_through():
    spec = FRONTEND.stft(torch.from_numpy(SPEECH).double())
    noise_spec = FRONTEND.stft(torch.from_numpy(HUM).double())
    irm = ideal_ratio_mask(spec, noise_spec)
    psm = phase_sensitive_mask(spec, spec + noise_spec)
    for mask in (irm, psm):
        assert mask.min() >= 0 and mask.max() <= 1
    assert psm.min() == 0  # bins where speech and mixture are out of phase are truncated, not negative
    # with no noise both masks are 1 and the estimate is the speech itself
    assert si_sdr_db(oracle_mask(SPEECH, SPEECH, FRONTEND, "irm"), SPEECH) > 60
    assert si_sdr_db(oracle_mask(SPEECH, SPEECH, FRONTEND, "psm"), SPEECH) > 60


def test_oracle_mask_rejects_bad_arguments():
    with pytest.raises(ValueError, match="irm"):
        oracle_mask(MIXTURE, SPEECH, FRONTEND, "ibm")
    with pytest.raises(ValueError, match="length"):
        oracle_mask(MIXTURE, SPEECH[:-10], FRONTEND)


def test_spectral_gating_keeps_the_length_and_removes_steady_noise():
    estimate = spectral_gating(MIXTURE, SR)
    assert estimate.shape == MIXTURE.shape and np.all(np.isfinite(estimate))
    residual_before = np.mean(HUM**2)
    # the hum left in the estimate: project out the speech and compare what remains
    alpha = np.dot(estimate, SPEECH) / np.dot(SPEECH, SPEECH)
    assert np.mean((estimate - alpha * SPEECH) ** 2) < 0.5 * residual_before
