"""Ablation of the long-context bottleneck and the MR-STFT loss; writes `experiments/ABLATION.md`.

    python experiments/run_ablation.py                  # train and score every variant, then write the report
    python experiments/run_ablation.py --steps 300      # a larger budget (the same for every variant)
    python experiments/run_ablation.py --report         # only rewrite the report from experiments/ablation/

Every variant starts from the shipped model (`sepgan/pretrained/sepgan-16k.ckpt`; the dilated
bottleneck starts as the identity, so the shipped weights load into it unchanged) and is fine-tuned
with `python -m sepgan.train`'s own code for the same number of steps on the same data (the real
recordings of `../shared/data` at 16 kHz, 3 s mixtures, the same seed, so the same batches), one
after the other, into `experiments/runs/ablation-<name>/` (not in git). Fine-tuning, not training
from scratch: on the shared 2-core machine a step took 10-20 s, so a from-scratch budget that ends
anywhere near the shipped model was out of reach, while a few dozen steps from it show whether a
change helps the model we have. Each variant and the starting point are scored on the same held-out
test mixtures (other speakers, other noise recordings), and each architecture's real-time factor is
measured on one thread, in the same process, so the timings are comparable:
- `sepgan separate`'s path as it was when this ran: the checkpoint through `ChunkedSeparator` (4 s chunks,
  exact context; `sepgan separate` now defaults to 30 s)
  on 60 s of audio, with PyTorch and, per architecture, with onnxruntime after `export_onnx`;
- the same 60 s in one piece (no chunk context), to show what the context costs.
Figures go to `experiments/ablation/<name>.json`; every number in the report comes from those files.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch

from sepgan.commands.bench import bench_signal
from sepgan.commands.train import run as run_stages
from sepgan.evaluation import ConfigMixtures, evaluate
from sepgan.inference.backends import OnnxBackend, TorchBackend, receptive_field
from sepgan.inference.chunked import ChunkedSeparator
from sepgan.inference.onnx_export import export_onnx
from sepgan.models import load_separator, save_separator
from sepgan.pretrained import default_checkpoint
from sepgan.training import stages
from sepgan.training.config import build_separator, compose_config

HERE = Path(__file__).resolve().parent
SHARED = (HERE.parent.parent / "shared" / "data").resolve()
RESULTS = HERE / "ablation"
TEST = dict(split="test", seconds=3.0)
METRICS = ("si_sdr", "si_sdri", "pesq", "stoi")
RTF_SECONDS, CHUNK_SECONDS = 60.0, 4.0

BASELINE = ["model=small", "model.unet.n_blocks=9"]  # the shipped model's architecture
VARIANTS = {
    # name: (what changes, overrides)
    "baseline": ("shipped architecture (`small`, 9 TFC-TDF blocks), SI-SDR loss", BASELINE),
    "dilated": ("+ dilated temporal bottleneck (`model=small_dilated`)", ["model=small_dilated"]),
    "mrstft": ("+ MR-STFT loss (`loss=si_sdr_mrstft`)", [*BASELINE, "loss=si_sdr_mrstft"]),
    "both": ("+ both", ["model=small_dilated", "loss=si_sdr_mrstft"]),
}


def budget(steps: int) -> list[str]:
    """Settings every variant shares: data, segment length, optimiser, steps; one validation at the end."""
    batch = 4  # of 3 s mixtures: the dilated bottleneck reaches 1.9 s each side, which 1 s mixtures never show it
    return [f"data.root={SHARED}", "optim=adam_cosine", "optim.optimizer.lr=3e-4", "data.segment_seconds=3.0",
            f"data.batch_size={batch}", f"data.train_examples={steps * batch}", "data.val_examples=8",
            "data.num_workers=1", f"trainer.max_steps={steps}", "trainer.max_epochs=-1",
            "callbacks.validation_examples.count=0"]


def start_from(name: str, overrides: list[str]) -> Path:
    """The shipped model's weights in the variant's architecture (new layers at their identity start)."""
    shipped = load_separator(default_checkpoint())
    model = build_separator(compose_config(overrides))
    missing, unexpected = model.load_state_dict(shipped.state_dict(), strict=False)
    if unexpected or not all(".temporal." in key for key in missing):
        raise SystemExit(f"{name}: the shipped weights do not fit this architecture ({unexpected or missing})")
    path = HERE / "runs" / f"ablation-{name}" / "start.ckpt"
    save_separator(model, path)
    return path


def train(name: str, overrides: list[str], steps: int) -> stages.StageResult:
    run = HERE / "runs" / f"ablation-{name}"
    (result,) = run_stages(compose_config([*budget(steps), *overrides, f"init_from={start_from(name, overrides)}",
                                           f"paths.output_dir={run}", f"paths.log_dir={HERE / 'runs'}",
                                           f"name=ablation-{name}"]))
    return result


def test_examples(count: int) -> list:
    """The held-out test mixtures, made once and scored for every variant."""
    return list(ConfigMixtures([f"root={SHARED}", f"segment_seconds={TEST['seconds']}"], 16000, TEST["split"], count))


def score(checkpoint: str, examples: list) -> dict:
    """Means over the held-out test mixtures (the same for every variant) for the input and the model."""
    summary = evaluate(examples, load_separator(checkpoint), methods=("noisy", "model"), metrics=METRICS,
                       progress=False).summary()
    return {method: {metric: values["mean"] for metric, values in summary["methods"][method].items()}
            for method in ("noisy", "model")}


def rtf(backend, signal) -> float:
    """Seconds per second of audio of the chunked path in 4 s chunks (as the table was measured), after a 1 s warm-up."""
    engine = ChunkedSeparator(backend, CHUNK_SECONDS)
    engine.separate(signal[:backend.frontend.sample_rate])
    start = time.perf_counter()
    engine.separate(signal)
    return (time.perf_counter() - start) / RTF_SECONDS


def speed(name: str, checkpoint: str, onnx: bool) -> dict:
    """One-thread real-time factors (chunked PyTorch, whole-file PyTorch, chunked ONNX) and sizes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = load_separator(checkpoint)
        signal = bench_signal(RTF_SECONDS, model.frontend.sample_rate)
        parameters = sum(p.numel() for p in model.parameters())
        out = {"load_average_1min": os.getloadavg()[0], "parameters": parameters, "mib": parameters * 4 / 2**20, "receptive_field_frames": receptive_field(model),
               "rtf_torch_chunked": rtf(TorchBackend(model), signal)}
        whole = torch.from_numpy(signal)
        model.separate(whole[:16000])
        start = time.perf_counter()
        model.separate(whole)
        out["rtf_torch_whole"] = (time.perf_counter() - start) / RTF_SECONDS
        if onnx:
            path = export_onnx(model, HERE / "runs" / f"ablation-{name}" / "model.onnx")
            out["rtf_onnx_chunked"] = rtf(OnnxBackend(path, threads=1), signal)
            out["onnx_mib"] = path.stat().st_size / 2**20
        return out
    finally:
        torch.set_num_threads(threads)


def run(names: list[str], steps: int, test_count: int) -> None:
    RESULTS.mkdir(exist_ok=True)
    settings = dict(TEST, count=test_count)
    examples = test_examples(test_count)
    stored = RESULTS / "start.json"
    if not stored.exists() or json.loads(stored.read_text())["test_settings"] != settings:
        start = {"name": "start", "what": "the shipped model, before fine-tuning (0 steps)",
                 "test": score(str(default_checkpoint()), examples), "test_settings": settings}
        stored.write_text(json.dumps(start, indent=2))
    records = {}
    for name in names:  # training and scoring first, one variant after the other
        what, overrides = VARIANTS[name]
        print(f"== {name}: training {steps} steps", flush=True)
        started = time.perf_counter()
        result = train(name, overrides, steps)
        records[name] = {"name": name, "what": what, "overrides": budget(steps) + overrides,
                         "stage": stages.as_dict([result])[0], "train_seconds": time.perf_counter() - started,
                         "test": score(result.checkpoint, examples), "test_settings": settings}
        (RESULTS / f"{name}.json").write_text(json.dumps(records[name], indent=2))
    architectures: set[str] = set()
    for name in names:  # then every timing, close together; ONNX once per architecture
        print(f"== {name}: real-time factors", flush=True)
        model_overrides = tuple(o for o in VARIANTS[name][1] if o.startswith("model"))
        records[name]["speed"] = speed(name, records[name]["stage"]["checkpoint"], model_overrides not in architectures)
        architectures.add(model_overrides)
        (RESULTS / f"{name}.json").write_text(json.dumps(records[name], indent=2))


def measure_speed(names: list[str]) -> None:
    """Speed of stored variants, into their result files (when the training phase ran elsewhere)."""
    for name in names:
        print(f"== {name}: real-time factors", flush=True)
        record = json.loads((RESULTS / f"{name}.json").read_text())
        record["speed"] = speed(name, record["stage"]["checkpoint"], onnx=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2))


def architecture(name: str) -> tuple[str, ...]:
    return tuple(o for o in VARIANTS[name][1] if o.startswith("model"))


def _f(value, digits: int = 2) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def write_report() -> Path:
    records = [json.loads((RESULTS / f"{n}.json").read_text()) for n in VARIANTS if (RESULTS / f"{n}.json").exists()]
    if not records:
        raise SystemExit(f"no results in {RESULTS}: run without --report first")
    first = records[0]
    shared = ("model", "loss", "init_from")
    lines = [
        "# Ablation: long-context bottleneck and MR-STFT loss",
        "",
        "Written by `python experiments/run_ablation.py` from `experiments/ablation/*.json`. Every variant started",
        f"from the shipped model and was fine-tuned for the same {first['stage']['steps']} steps on the same data, "
        f"then scored on the same {first['test_settings']['count']} held-out {first['test_settings']['seconds']:g} s "
        "test mixtures (other speakers, other noise recordings, 16 kHz).",
        "",
        "Budget (every variant): `" + " ".join(o for o in first["overrides"] if not o.startswith(shared)) + "`",
        "",
        "| variant | params | steps | train time | val SI-SDRi | test SI-SDRi | PESQ | STOI | receptive field | "
        "RTF torch, 4 s chunks | RTF torch, whole | RTF ONNX, 4 s chunks |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if (RESULTS / "start.json").exists():
        t = json.loads((RESULTS / "start.json").read_text())["test"]["model"]
        lines.append(f"| start: the shipped model, not fine-tuned | 0.95 M | 0 | – | – | {_f(t['si_sdri'])} | "
                     f"{_f(t['pesq'])} | {_f(t['stoi'])} | as baseline | as baseline | as baseline | as baseline |")
    timed: dict[tuple, dict] = {}
    for r in records:
        timed.setdefault(architecture(r["name"]), r.get("speed", {}))
    for r in records:
        # The loss does not change the speed: a figure a variant lacks (ONNX) is its architecture's.
        s = {**timed[architecture(r["name"])], **r.get("speed", {})}
        t, m = r["test"]["model"], r["stage"]["metrics"]
        lines.append(
            f"| {r['name']}: {r['what']} | {s.get('parameters', 0) / 1e6:.2f} M | {r['stage']['steps']} | "
            f"{r['train_seconds'] / 60:.1f} min | {_f(m.get('val/si_sdri'))} | {_f(t['si_sdri'])} | {_f(t['pesq'])} | "
            f"{_f(t['stoi'])} | ±{s.get('receptive_field_frames', '–')} frames | {_f(s.get('rtf_torch_chunked'), 3)} | "
            f"{_f(s.get('rtf_torch_whole'), 3)} | {_f(s.get('rtf_onnx_chunked'), 3)} |")
    noisy = first["test"]["noisy"]
    loads = [r["speed"]["load_average_1min"] for r in records if "speed" in r]
    lines += [
        "",
        f"The unprocessed test mixtures score SI-SDR {_f(noisy['si_sdr'])} dB, PESQ {_f(noisy['pesq'])}, "
        f"STOI {_f(noisy['stoi'])}. SI-SDRi in dB; PESQ wide band. Real-time factors: one thread, "
        f"{RTF_SECONDS:g} s of audio, seconds of processing per second of audio, measured in the same run one "
        "after the other (ONNX once per architecture); `4 s chunks` is `sepgan separate`'s default path (exact "
        "context each side, as large as the receptive field needs), `whole` the file in one piece. The receptive "
        "field is in STFT frames of 8 ms each side."
        + (f" The machine's 1-minute load average during the timings was {min(loads):.1f}-{max(loads):.1f} on 2 "
           "cores, so absolute RTFs are inflated; compare rows, not against other runs." if loads else ""),
        "",
    ]
    path = HERE / "ABLATION.md"
    notes = path.read_text().split("<!-- notes -->", 1)[1] if path.exists() and "<!-- notes -->" in path.read_text() else "\n"
    path.write_text("\n".join(lines) + "<!-- notes -->" + notes)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), help="run just these variants")
    parser.add_argument("--steps", type=int, default=12, help="fine-tuning steps of every variant (default 12)")
    parser.add_argument("--test-count", type=int, default=6, help="held-out test mixtures (default 6)")
    parser.add_argument("--speed-only", action="store_true", help="only time the stored variants (--only)")
    parser.add_argument("--report", action="store_true", help="only write the report from stored results")
    args = parser.parse_args()
    if args.speed_only:
        measure_speed(args.only or list(VARIANTS))
    elif not args.report:
        run(args.only or list(VARIANTS), args.steps, args.test_count)
    print(f"wrote {write_report()}")


if __name__ == "__main__":
    main()
