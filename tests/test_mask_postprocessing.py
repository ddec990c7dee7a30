"""experiments/mask_postprocessing.py scores the mask as trained as its reference, and spreads masks to a finer grid as documented."""

import importlib.util
from pathlib import Path

import numpy as np
import torch

from tests.conftest import noisy_speech, tiny_separator

_spec = importlib.util.spec_from_file_location(
    "mask_postprocessing", Path(__file__).parents[1] / "experiments" / "mask_postprocessing.py")
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)


def test_exponent_one_is_the_model_own_speech_and_other_exponents_change_it():
    model = tiny_separator().eval()
    mixture = noisy_speech(1.0).astype(np.float32) + 0.05  # with an offset, which both paths remove
    out = probe.variants(model, mixture, [1.0, 1.5])
    np.testing.assert_allclose(out["exponent 1"], model.separate(torch.from_numpy(mixture)).numpy(), atol=1e-5)
    assert np.abs(out["exponent 1.5"] - out["exponent 1"]).max() > 1e-3
    assert out["finer grid"].shape == mixture.shape


def test_finer_grid_keeps_shared_frames_and_averages_between_them():
    mask = torch.tensor([[1.0, 3.0, 5.0]])
    torch.testing.assert_close(probe.on_finer_grid(mask, 6), torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 5.0]]))
