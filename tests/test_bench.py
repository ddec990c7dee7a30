import json
from pathlib import Path

import pytest
import torch

from sepgan.commands.bench import bench_signal, main, timed
from sepgan.inference.chunked import ChunkedSeparator


def test_timed_gives_the_real_time_factor_and_the_memory_a_run_adds():
    figures = timed(lambda: torch.ones(50_000_000).sum(), seconds_of_audio=2.0)  # 200 MB
    assert figures["rtf"] > 0
    if Path("/proc/self/clear_refs").exists():  # Linux: the peak can be reset and read
        assert 150 < figures["peak_added_mb"] < 400


def test_bench_signal_is_deterministic_speech_with_noise_at_a_sane_level():
    signal = bench_signal(1.0)
    assert signal.shape == (16000,) and signal.dtype.name == "float32"
    assert torch.allclose(torch.from_numpy(signal), torch.from_numpy(bench_signal(1.0)))
    assert 0.05 < float((signal**2).mean() ** 0.5) < 0.2


def test_bench_prints_a_table_and_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    threads_before = torch.get_num_threads()
    results = main(["--presets", "model_b", "--seconds", "0.5", "1", "--steps", "1", "--batch", "1",
                    "--threads", "1", "--json", str(path), "--no-shipped"])
    out = capsys.readouterr().out
    assert "noisereduce" in out and "model_b" in out and "RTF 1s x1" in out
    written = json.loads(path.read_text())
    assert written == json.loads(json.dumps(results))
    figures = written["models"]["model_b"]
    assert set(figures["inference"]) == {"0.5s", "1s"}
    assert all(set(length) == {"1"} and length["1"]["rtf"] > 0 for length in figures["inference"].values())
    assert figures["rtf_vs_noisereduce"] == pytest.approx(
        figures["inference"]["1s"]["1"]["rtf"] / written["noisereduce"]["1s"]["rtf"])
    assert figures["train_examples_per_s"] > 0 and figures["params"] == 156_274
    assert torch.get_num_threads() == threads_before  # the bench leaves torch's setting as it found it


def test_shipped_model_is_timed_as_separate_runs_it_with_both_backends(tiny_checkpoint, monkeypatch):
    import sepgan.commands.bench as bench

    monkeypatch.setattr(bench, "default_checkpoint", lambda: tiny_checkpoint)
    engines = []
    monkeypatch.setattr(bench, "ChunkedSeparator", lambda *a, **k: engines.append(ChunkedSeparator(*a, **k)) or engines[-1])
    figures = bench.shipped_figures(bench.bench_signal(3.0), gating_rtf=0.01)
    assert [len(engine.offsets) for engine in engines] == [1, 2, 1, 2]  # each backend, then with --shifts 2
    for backend in ("torch", "onnx", "torch_shifts2", "onnx_shifts2"):
        assert figures[backend]["rtf"] > 0
        assert figures[backend]["vs_noisereduce"] == pytest.approx(figures[backend]["rtf"] / 0.01)
    assert figures["audio_seconds"] == 3.0 and figures["chunk_seconds"] > 0
    assert "the shipped model" in bench._shipped_table(figures) and "onnx, --shifts 2" in bench._shipped_table(figures)
