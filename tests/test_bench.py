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


@pytest.mark.parametrize("native_bf16", [True, False])
def test_shipped_model_is_timed_as_separate_runs_it_with_both_backends(tiny_checkpoint, monkeypatch, native_bf16):
    import sepgan.commands.bench as bench

    monkeypatch.setattr(bench, "default_checkpoint", lambda: tiny_checkpoint)
    monkeypatch.setattr(bench, "native_bf16", lambda device: native_bf16)
    engines = []
    monkeypatch.setattr(bench, "ChunkedSeparator", lambda *a, **k: engines.append(ChunkedSeparator(*a, **k)) or engines[-1])
    calls = []
    real_timed = bench.timed
    monkeypatch.setattr(bench, "timed", lambda run, seconds: calls.append(len(calls)) or real_timed(run, seconds))
    figures = bench.shipped_figures(bench.bench_signal(3.0), gating_rtf=0.01, rounds=3)
    timed = ["torch", "onnx", "onnx_int8"] + ["torch_bf16"] * native_bf16  # bf16 only where the CPU computes it natively
    # every backend, with and without --shifts 2, and DeepFilterNet3 whole and its networks, in each of three rounds
    assert len(calls) == 3 * (2 * len(timed) + 2)
    assert [len(engine.offsets) for engine in engines] == [1, 2] * len(timed)  # each backend, then with --shifts 2
    assert [engine.backend.precision for engine in engines if engine.backend.name == "torch"] == \
        ["fp32", "fp32"] + ["bf16", "bf16"] * native_bf16
    assert [engine.backend.precision for engine in engines if engine.backend.name == "onnx"] == ["fp32"] * 2 + ["int8"] * 2
    for backend in timed + [f"{name}_shifts2" for name in timed] + ["deepfilternet3", "deepfilternet3_networks"]:
        assert len(figures[backend]["rtf_rounds"]) == 3 and min(figures[backend]["rtf_rounds"]) > 0
        assert figures[backend]["rtf"] == sorted(figures[backend]["rtf_rounds"])[1]  # the median
        assert figures[backend]["vs_noisereduce"] == pytest.approx(figures[backend]["rtf"] / 0.01)
    assert "torch_bf16" in figures if native_bf16 else "torch_bf16" not in figures
    assert figures["audio_seconds"] == 3.0 and figures["chunk_seconds"] > 0
    table = bench._shipped_table(figures)
    assert "median of 3 rounds" in table and "fastest" in table
    assert "the shipped model" in table and "onnx, --shifts 2" in table and "onnx, int8" in table and ("torch, bf16" in table) == native_bf16
    assert "DeepFilterNet3 (libDF)" in table and "DFN3 networks only, onnx" in table


def test_bench_goes_on_without_deepfilternet3(tiny_checkpoint, monkeypatch, capsys):
    import sepgan.commands.bench as bench
    from sepgan.deepfilternet3 import DeepFilterNet3Unavailable

    def unavailable():
        raise DeepFilterNet3Unavailable("DeepFilterNet3 is not installed: pip install 'sepgan[baselines]'")

    monkeypatch.setattr(bench, "default_checkpoint", lambda: tiny_checkpoint)
    monkeypatch.setattr(bench, "DeepFilterNet3", unavailable)
    figures = bench.shipped_figures(bench.bench_signal(2.0), gating_rtf=0.01, rounds=1)
    assert "deepfilternet3" not in figures and "deepfilternet3_networks" not in figures and figures["torch"]["rtf"] > 0
    assert "not timing DeepFilterNet3: DeepFilterNet3 is not installed" in capsys.readouterr().out


def test_bench_refuses_fewer_than_one_round(capsys):
    with pytest.raises(SystemExit):
        main(["--rounds", "0", "--no-shipped"])
    assert "--rounds must be at least 1, got 0" in capsys.readouterr().err
