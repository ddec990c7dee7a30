"""The shipped model: it loads, cleans held-out real mixtures, and the notebook that shows it runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sepgan.evaluation import ConfigMixtures
from sepgan.metrics import si_sdr_db
from sepgan.models import load_separator
from sepgan.pretrained import default_checkpoint

from .conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data beside the repository")


def test_shipped_model_is_small_and_holds_only_the_separator():
    path = default_checkpoint()
    assert path.stat().st_size <= 10 * 2**20
    assert "optimizer_states" not in torch.load(path, map_location="cpu", weights_only=False)
    assert load_separator(path).frontend.sample_rate == 16000


@needs_shared
def test_shipped_model_improves_held_out_real_mixtures():
    separator = load_separator(default_checkpoint())
    examples = ConfigMixtures([f"root={SHARED_DATA}", "segment_seconds=3.0"], 16000, "test", 6)
    gains = []
    for example in examples:
        estimate = separator.separate(torch.from_numpy(example.mixture)).numpy()
        gains.append(si_sdr_db(estimate, example.speech) - si_sdr_db(example.mixture, example.speech))
    assert np.mean(gains) > 3.0, gains


@needs_shared
def test_notebook_runs_top_to_bottom(monkeypatch, capsys):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(REPO / "notebooks")
    notebook = json.loads((REPO / "notebooks" / "explore_results.ipynb").read_text())
    namespace: dict = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), "explore_results.ipynb", "exec"), namespace)
    out = capsys.readouterr().out
    assert "runs:" in out and "input SNR" in out
    assert namespace["estimate"].shape == namespace["mixture"].shape
