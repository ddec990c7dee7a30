"""`python -m sepgan.commands.bench` (`make bench`): speed figures of the model presets on this machine.

- Inference real-time factor (RTF = processing time ÷ audio duration; below 1 is faster than real
  time) of each preset on 10 s and 60 s of 16 kHz audio in one piece, with 1 thread and with all
  threads, and the peak memory inference adds (Linux: the process's peak RSS, reset before each run).
- noisereduce's spectral gating on the same audio in the same run: shared machines vary from run
  to run, so the model's RTF is also given as a multiple of this in-run comparison.
- Training throughput: examples per second of full optimisation steps (forward, loss, backward,
  Adam) on 2-second 16 kHz mixtures in batches of 8, with all threads.
- The shipped model as `sepgan separate` runs it (the chunked separator with its default chunks),
  on the longest input with 1 thread: PyTorch in float32, and in bf16 where the CPU computes it
  natively (what `--precision auto` picks there), and ONNX Runtime on fresh exports of it, in float32
  and with int8 convolutions (`sepgan export-onnx --int8`); and DeepFilterNet3, the released enhancer
  to beat, where `sepgan[baselines]` is installed: whole, through its authors' C runtime, and its
  three networks alone in ONNX Runtime (a lower bound on its time there: the speed aims' yardstick). These
  take turns over `--rounds` rounds (default 3) and each is given as its median: backends within a
  fifth of each other cannot be told apart by one run each on a shared machine.

Every other inference figure is one timed run after a 1-second warm-up; the input is the project's
synthetic speech with a synthetic hum at 5 dB SNR (the U-Net's cost does not depend on content).
Prints a table and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from sepgan.baselines import spectral_gating
from sepgan.deepfilternet3 import DeepFilterNet3, DeepFilterNet3Networks, DeepFilterNet3Unavailable
from sepgan.training.config import build_separator, compose_config
from sepgan.data.synthetic import noise as synthetic_noise
from sepgan.data.synthetic import speech_like
from sepgan.losses import SeparationLoss
from sepgan.inference.backends import OnnxBackend, TorchBackend
from sepgan.inference.chunked import ChunkedSeparator
from sepgan.inference.onnx_export import export_int8_copy, export_onnx
from sepgan.inference.precision import native_bf16
from sepgan.models import Separator, load_separator
from sepgan.pretrained import default_checkpoint

PRESETS = ("model_a", "model_b", "tfc_tdf", "small")
SAMPLE_RATE = 16000
LENGTHS = (10.0, 60.0)


def training_throughput(model: Separator, batch: int = 8, seconds: float = 2.0, steps: int = 1) -> float:
    """Examples per second over `steps` optimisation steps, after a warm-up step on a batch of 2 (first-call costs)."""
    sr = model.frontend.sample_rate
    speech, noise = torch.randn(batch, int(seconds * sr)) * 0.1, torch.randn(batch, int(seconds * sr)) * 0.1
    loss = SeparationLoss({"mse": 1.0})
    optimizer = torch.optim.Adam(model.parameters())
    model.train()

    def step(n: int):
        total, _ = loss(model(speech[:n] + noise[:n]), speech[:n], noise[:n], model.frontend)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()

    step(min(2, batch))
    start = time.perf_counter()
    for _ in range(steps):
        step(batch)
    return batch * steps / (time.perf_counter() - start)


def all_threads() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_memory() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux >= 4.0); False where that is not possible.

    Freed memory that the C allocator still holds is handed back first (glibc's malloc_trim), or a
    run that reuses an earlier model's buffers would seem to need no memory at all.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def timed(run: Callable[[], object], seconds_of_audio: float) -> dict[str, float | None]:
    """RTF of one call of `run`, and the memory (MB) its peak RSS rose above the RSS before it."""
    measurable = _reset_peak_memory()
    before = _status_mb("VmRSS")
    start = time.perf_counter()
    run()
    elapsed = time.perf_counter() - start
    peak = _status_mb("VmHWM") if measurable else None
    return {"rtf": elapsed / seconds_of_audio,
            "peak_added_mb": round(peak - before, 1) if peak is not None and before is not None else None}


def bench_signal(seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Synthetic speech plus a synthetic hum at 5 dB SNR, about -20 dBFS."""
    speech = speech_like(0, 0, sample_rate, seconds)
    hum = synthetic_noise("air_conditioner", 0, sample_rate, seconds)
    hum *= np.sqrt(np.mean(speech**2) / np.mean(hum**2) / 10 ** 0.5)
    mixture = speech + hum
    return (mixture * 0.1 / np.sqrt(np.mean(mixture**2))).astype(np.float32)


def inference_figures(model: Separator, signals: dict[float, np.ndarray], threads: list[int]) -> dict:
    """{"10s": {"1": {"rtf", "peak_added_mb"}, "2": ...}, "60s": ...} for one model."""
    model.eval()
    out: dict[str, dict] = {}
    for n in threads:
        torch.set_num_threads(n)
        model.separate(torch.from_numpy(signals[min(signals)][:SAMPLE_RATE]))  # warm-up: 1 s
        for seconds, signal in signals.items():
            wav = torch.from_numpy(signal)
            out.setdefault(f"{seconds:g}s", {})[str(n)] = timed(lambda: model.separate(wav), seconds)
    return out


def shipped_figures(signal: np.ndarray, gating_rtf: float, rounds: int = 3) -> dict:
    """RTF (1 thread) of the shipped model through the chunked separator: PyTorch (float32, and bf16 where
    the CPU computes it natively) and ONNX Runtime (float32, and int8 convolutions: `export-onnx --int8`);
    and of DeepFilterNet3 where it is installed: whole through libDF (one thread; its model load is not
    timed), and its networks alone in ONNX Runtime.

    The backends take turns in each of `rounds` rounds, so a machine that grows busier or quieter during
    the bench shifts them alike; each figure is the median of its rounds, its peak memory the largest.
    """
    model = load_separator(default_checkpoint())
    seconds = len(signal) / SAMPLE_RATE
    figures = {"checkpoint": default_checkpoint().name, "params": sum(p.numel() for p in model.parameters()),
               "audio_seconds": seconds, "native_bf16": native_bf16(torch.device("cpu")), "rounds": rounds}
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = export_onnx(model, Path(folder) / "shipped.onnx")
        int8_path = export_int8_copy(model, onnx_path, Path(folder) / "shipped-int8.onnx")
        backends = {"torch": TorchBackend(model), "onnx": OnnxBackend(onnx_path, threads=1),
                    "onnx_int8": OnnxBackend(int8_path, threads=1)}
        if figures["native_bf16"]:
            backends["torch_bf16"] = TorchBackend(model, precision="bf16")
        engines = {}
        for backend_name, backend in backends.items():
            for shifts in (1, 2):  # `--shifts 2`: a little cleaner, for what it costs here
                name = backend_name if shifts == 1 else f"{backend_name}_shifts{shifts}"
                engines[name] = ChunkedSeparator(backend, shifts=shifts)
                engines[name].separate(signal[:SAMPLE_RATE], SAMPLE_RATE)  # warm-up
        try:  # resampled to its 48 kHz and back, as a user with 16 kHz audio runs it
            engines["deepfilternet3"] = DeepFilterNet3()
            engines["deepfilternet3_networks"] = _NetworksOnly(DeepFilterNet3Networks(threads=1))
        except DeepFilterNet3Unavailable as error:
            print(f"not timing DeepFilterNet3: {error}", flush=True)
        runs: dict[str, list[dict]] = {name: [] for name in engines}
        for _ in range(rounds):
            for name, engine in engines.items():
                if hasattr(engine, "prepare"):  # DeepFilterNet3 loads a fresh state per signal: not timed, as
                    engine.prepare()            # loading the shipped model is not
                runs[name].append(timed(lambda: engine.separate(signal, SAMPLE_RATE), seconds))
        for name, timings in runs.items():
            rtfs = [t["rtf"] for t in timings]
            peaks = [t["peak_added_mb"] for t in timings if t["peak_added_mb"] is not None]
            median = float(np.median(rtfs))
            figures[name] = {"rtf": median, "rtf_rounds": rtfs, "peak_added_mb": max(peaks) if peaks else None,
                             "vs_noisereduce": median / gating_rtf}
        figures["chunk_seconds"] = engines["torch"].core / SAMPLE_RATE
    return figures


class _NetworksOnly:
    """DeepFilterNet3's networks timed as if they separated the signal (see `DeepFilterNet3Networks`)."""

    def __init__(self, networks: DeepFilterNet3Networks):
        self.networks = networks
        networks.run(1.0)  # warm-up

    def separate(self, signal: np.ndarray, sample_rate: int) -> None:
        self.networks.run(len(signal) / sample_rate)


SHIPPED_ROWS = {"torch": "torch", "torch_bf16": "torch, bf16", "onnx": "onnx", "onnx_int8": "onnx, int8",
                "torch_shifts2": "torch, --shifts 2", "torch_bf16_shifts2": "torch, bf16, --shifts 2",
                "onnx_shifts2": "onnx, --shifts 2", "onnx_int8_shifts2": "onnx, int8, --shifts 2",
                "deepfilternet3": "DeepFilterNet3 (libDF)",
                "deepfilternet3_networks": "DFN3 networks only, onnx"}


def _shipped_table(figures: dict) -> str:
    lines = [f"the shipped model ({figures['checkpoint']}, {figures['params']:,d} params) as `sepgan separate` runs it: "
             f"{figures['chunk_seconds']:g} s chunks, {figures['audio_seconds']:g} s of audio, 1 thread; RTF: the "
             f"median of {figures['rounds']} rounds in which the backends took turns",
             f"{'backend':<24} {'RTF':>8} {'fastest':>8} {'slowest':>8} {'vs gating':>10} {'peak MB':>8}"]
    lines += [f"{label:<24} {figures[name]['rtf']:>8.3f} {min(figures[name]['rtf_rounds']):>8.3f} "
              f"{max(figures[name]['rtf_rounds']):>8.3f} {figures[name]['vs_noisereduce']:>10.2f} "
              f"{_mb(figures[name]['peak_added_mb']):>8}" for name, label in SHIPPED_ROWS.items() if name in figures]
    return "\n".join(lines)


def _table(results: dict, threads: list[int]) -> str:
    lengths = [f"{s:g}s" for s in results["audio_seconds"]]
    longest, one = lengths[-1], str(threads[0])
    columns = [(length, str(n)) for length in lengths for n in threads]
    head = (f"{'':<12} {'params':>9} " + " ".join(f"{f'RTF {l} x{n}':>12}" for l, n in columns)
            + f" {f'vs gating':>10} {f'peak MB':>8} {'train ex/s':>11} {'vs first':>9}")
    lines = [f"inference real-time factor on 16 kHz audio (time / duration; xN = N threads); 'vs gating': "
             f"RTF {longest} x{one} as a multiple of noisereduce's; peak MB: memory added by the {longest} "
             f"x{one} run; train ex/s (x{threads[-1]}) relative to the first model", head]
    gating = results["noisereduce"]
    # noisereduce runs on one thread (n_jobs=1) whatever torch's setting: one figure per length, in
    # the columns of the fewest threads
    lines.append(f"{'noisereduce':<12} {'-':>9} "
                 + " ".join(f"{gating[l]['rtf']:>12.3f}" if n == one else f"{'-':>12}" for l, n in columns)
                 + f" {1.0:>10.2f} {_mb(gating[longest]['peak_added_mb']):>8} {'-':>11} {'-':>9}")
    first = None
    for name, figures in results["models"].items():
        speed = figures["train_examples_per_s"]
        first = first or speed
        inference = figures["inference"]
        lines.append(f"{name:<12} {figures['params']:>9,d} "
                     + " ".join(f"{inference[l][n]['rtf']:>12.3f}" for l, n in columns)
                     + f" {figures['rtf_vs_noisereduce']:>10.2f} {_mb(inference[longest][one]['peak_added_mb']):>8}"
                     + f" {speed:>11.2f} {speed / first:>9.2f}")
    return "\n".join(lines)


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="sepgan bench", description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--seconds", nargs="+", type=float, default=list(LENGTHS),
                        help="lengths of the inference inputs (default: 10 60)")
    parser.add_argument("--steps", type=int, default=1, help="timed training steps per preset (default: 1)")
    parser.add_argument("--batch", type=int, default=8, help="training batch size (default: 8)")
    parser.add_argument("--threads", nargs="+", type=int,
                        help="thread counts to measure inference with (default: 1 and all cores)")
    parser.add_argument("--json", default="bench.json", help="where to write the figures (default: bench.json)")
    parser.add_argument("--no-shipped", action="store_true", help="leave out the shipped model's chunked figures")
    parser.add_argument("--rounds", type=int, default=3,
                        help="timed runs of each backend of the shipped model, taking turns (default: 3)")
    args = parser.parse_args(argv)

    if not args.no_shipped:
        default_checkpoint()  # no shipped model: say so now, not after minutes of measuring
    threads = sorted(set(args.threads or (1, all_threads())))
    if threads[0] < 1:
        parser.error(f"--threads must be positive, got {threads[0]}")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    seconds = sorted(args.seconds)
    longest = bench_signal(seconds[-1])
    signals = {s: longest[: int(s * SAMPLE_RATE)] for s in seconds}
    # the load average tells how busy the machine was (other processes compete for the same cores)
    results = {"torch": torch.__version__, "threads": threads, "audio_seconds": seconds,
               "sample_rate": SAMPLE_RATE, "load_average_before": os.getloadavg()[0], "noisereduce": {},
               "models": {}}
    started, original_threads = time.perf_counter(), torch.get_num_threads()
    try:
        _measure(results, signals, threads, args)
    finally:
        torch.set_num_threads(original_threads)
    results["bench_seconds"] = round(time.perf_counter() - started, 1)
    results["load_average_after"] = os.getloadavg()[0]
    print(_table(results, threads))
    if "shipped" in results:
        print(_shipped_table(results["shipped"]))
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {args.json} (bench took {results['bench_seconds']:.0f} s; 1-minute load average "
          f"{results['load_average_before']:.1f} before, {results['load_average_after']:.1f} after, on "
          f"{all_threads()} cores)")
    return results


def _measure(results: dict, signals: dict[float, np.ndarray], threads: list[int], args: argparse.Namespace) -> None:
    started = time.perf_counter()
    seconds = sorted(signals)
    for s, signal in signals.items():
        spectral_gating(signal[:SAMPLE_RATE], SAMPLE_RATE)  # warm-up
        results["noisereduce"][f"{s:g}s"] = timed(lambda: spectral_gating(signal, SAMPLE_RATE), s)
    gating_rtf = results["noisereduce"][f"{seconds[-1]:g}s"]["rtf"]
    for name in args.presets:
        model = build_separator(compose_config([f"model={name}"]))
        figures = {"params": sum(p.numel() for p in model.parameters()),
                   "inference": inference_figures(model, signals, threads)}
        figures["rtf_vs_noisereduce"] = figures["inference"][f"{seconds[-1]:g}s"][str(threads[0])]["rtf"] / gating_rtf
        torch.set_num_threads(threads[-1])
        figures["train_examples_per_s"] = training_throughput(model, batch=args.batch, steps=args.steps)
        results["models"][name] = figures
        print(f"measured {name} ({time.perf_counter() - started:.0f} s so far)", flush=True)
    if not args.no_shipped:
        results["shipped"] = shipped_figures(signals[seconds[-1]], gating_rtf, rounds=args.rounds)
        print(f"measured the shipped model ({time.perf_counter() - started:.0f} s so far)", flush=True)


if __name__ == "__main__":
    main()
