"""Which parts of the shipped recipe earn their place; writes `experiments/ABLATION.md`.

    python experiments/run_ablation.py                          # train and score every variant, one after the other
    python experiments/run_ablation.py --only plain augment &   # or two at a time, one thread each (2 cores)
    python experiments/run_ablation.py --only dilated mrstft
    python experiments/run_ablation.py --speed-only             # then the real-time factors, on an idle machine
    python experiments/run_ablation.py --report                 # only rewrite the report from experiments/ablation/

The shipped recipe (`experiment=pretrained`) is built up one change at a time, and every variant is
trained **from scratch** (`init_weights=null`) with the same budget: the same steps, batch,
3 s mixtures, optimiser and seed, with `python -m sepgan.train`'s own code, into
`experiments/runs/ablation-<name>/` (not in git):

- `plain`: the study's kind of training on the shipped U-Net (`small`, 9 TFC-TDF blocks, 16 ms hop):
  SI-SDR loss, mixtures of a speaker and one recorded noise clip at -5...10 dB;
- `augment`: + the augmentations of `data.augment` (babble, coloured noise, second sources, EQ,
  band-limiting, -5...20 dB);
- `augment_snr`: `augment` with the plain mixtures' SNR range (a side branch: how much of what
  `augment` costs on the test split is its wider SNR range);
- `dilated`: + the dilated temporal bottleneck (`model=small_dilated`);
- `mrstft`: + the MR-STFT loss, which is the shipped recipe;
- `deepfilter`: + a complex mask over 3 frames (`model.mask_frames=3`), a deep filter.

Each is scored on the same two sets as the shipped model in the README: the held-out test split of
`../shared/data` (128 mixtures of 4 s: other speakers, other noise recordings) and the VCTK p287
pair (a voice, noise and recording conditions never seen in training). The shipped model is scored
on both as the reference. Real-time factors are measured per architecture on one thread on 60 s of
audio, through `sepgan separate`'s chunked path with PyTorch and with onnxruntime. Every figure goes
to `experiments/ablation/<name>.json`; the report's figures come from those files, its settings
(batch, sets, chunking) from the recipe as described here.
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
from sepgan.evaluation import ConfigMixtures, FolderPairs, evaluate
from sepgan.inference.backends import OnnxBackend, TorchBackend, receptive_field
from sepgan.inference.chunked import ChunkedSeparator
from sepgan.inference.onnx_export import export_onnx
from sepgan.models import load_separator
from sepgan.pretrained import default_checkpoint
from sepgan.training import stages
from sepgan.training.config import compose_config

HERE = Path(__file__).resolve().parent
SHARED = (HERE.parent.parent / "shared" / "data").resolve()
VCTK = SHARED / "speech" / "vctk_p287_denoiser_debug"
RESULTS = HERE / "ablation"
TEST_SECONDS, TEST_COUNT = 4.0, 128  # the README's `sepgan evaluate ... segment_seconds=4 --split test --examples 128`
METRICS = ("si_sdr", "si_sdri", "pesq", "stoi")
RTF_SECONDS = 60.0

SHIPPED_UNET = ["model=small", "model.unet.n_blocks=9"]
VARIANTS = {
    # name: (what it adds, overrides on top of `experiment=pretrained init_weights=null`)
    "plain": ("`small` U-Net (9 TFC-TDF blocks), SI-SDR loss, recorded noise clips at −5…10 dB",
              [*SHIPPED_UNET, "loss=default", "data.augment.enabled=false"]),
    "augment": ("+ augmented mixtures (`data.augment`)", [*SHIPPED_UNET, "loss=default"]),
    "augment_snr": ("`augment` with the plain mixtures' −5…10 dB instead of −5…20 dB (`data.augment.snr_db`)",
                    [*SHIPPED_UNET, "loss=default", "data.augment.snr_db=[-5,10]"]),
    "dilated": ("+ dilated temporal bottleneck (`model=small_dilated`)", ["loss=default"]),
    "mrstft": ("+ MR-STFT loss = the shipped recipe (`experiment=pretrained`)", []),
    "deepfilter": ("+ a deep filter over 3 frames instead of a one-frame mask (`model.mask_frames=3`)",
                   ["model.mask_frames=3"]),
}


def budget(steps: int) -> list[str]:
    """Settings every variant shares: the shipped recipe's data and optimiser, from scratch, `steps` steps.

    The recipe as it was when the table was measured (2026-11-26): Hann windows, no resampled
    recordings, no synthetic sirens and no compressed spectral loss, which came to `experiment=pretrained` later.
    """
    return ["experiment=pretrained", "init_weights=null", "frontend.window=hann", "data.augment.resampled.prob=0",
            "data.augment.sources.siren=0", "loss.weights.compressed=0",
            f"data.root={SHARED}", f"trainer.max_steps={steps}", "data.num_workers=1",
            "callbacks.validation_examples.count=0", "test_after_training=false"]


def train(name: str, steps: int) -> stages.StageResult:
    run = HERE / "runs" / f"ablation-{name}"
    (result,) = run_stages(compose_config([*budget(steps), *VARIANTS[name][1], f"paths.output_dir={run}",
                                           f"paths.log_dir={HERE / 'runs'}", f"name=ablation-{name}"]))
    return result


def score(checkpoint: str) -> dict:
    """Means for the input and the model on the test split and on the VCTK pair."""
    model = load_separator(checkpoint)
    sets = {"test": ConfigMixtures([f"root={SHARED}", f"segment_seconds={TEST_SECONDS}"], 16000, "test", TEST_COUNT),
            "vctk": FolderPairs(VCTK / "noisy", VCTK / "clean", 16000)}
    out = {}
    for name, examples in sets.items():
        summary = evaluate(examples, model, methods=("noisy", "model"), metrics=METRICS, progress=False).summary()
        out[name] = {method: {metric: values["mean"] for metric, values in summary["methods"][method].items()}
                     for method in ("noisy", "model")}
    return out


def rtf(backend, signal) -> float:
    """Seconds per second of audio through `sepgan separate`'s chunked path, after a 1 s warm-up."""
    engine = ChunkedSeparator(backend)
    engine.separate(signal[:backend.frontend.sample_rate])
    start = time.perf_counter()
    engine.separate(signal)
    return (time.perf_counter() - start) / RTF_SECONDS


def speed(name: str, checkpoint: str) -> dict:
    """One-thread real-time factors (PyTorch and onnxruntime, chunked as `sepgan separate` runs) and sizes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = load_separator(checkpoint)
        signal = bench_signal(RTF_SECONDS, model.frontend.sample_rate)
        path = export_onnx(model, HERE / "runs" / f"ablation-{name}" / "model.onnx")
        return {"load_average_1min": os.getloadavg()[0], "parameters": sum(p.numel() for p in model.parameters()),
                "receptive_field_frames": receptive_field(model), "rtf_torch": rtf(TorchBackend(model), signal),
                "rtf_onnx": rtf(OnnxBackend(path, threads=1), signal)}
    finally:
        torch.set_num_threads(threads)


def run(names: list[str], steps: int) -> None:
    RESULTS.mkdir(exist_ok=True)
    for name in names:
        print(f"== {name}: training {steps} steps from scratch", flush=True)
        started = time.perf_counter()
        result = train(name, steps)
        record = {"name": name, "what": VARIANTS[name][0], "overrides": budget(steps) + VARIANTS[name][1],
                  "stage": stages.as_dict([result])[0], "train_seconds": time.perf_counter() - started}
        print(f"== {name}: scoring", flush=True)
        record["score"] = score(result.checkpoint)
        (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2))


def score_shipped() -> None:
    record = {"name": "shipped", "what": "the shipped model (version 6: from version 1's weights, the `mrstft` recipe for 4000 steps of 8, 4000 of 32, 3000 of 8 at −5…15 dB, 2000 of 8 with resampled recordings, then 2000 of 8 with the sine window)",
              "checkpoint": str(default_checkpoint()), "score": score(str(default_checkpoint()))}
    (RESULTS / "shipped.json").write_text(json.dumps(record, indent=2))


def measure_speed() -> None:
    """Real-time factors, once per architecture (the loss and the data do not change them)."""
    for name in ("augment", "dilated", "deepfilter"):
        print(f"== {name}: real-time factors", flush=True)
        record = json.loads((RESULTS / f"{name}.json").read_text())
        record["speed"] = speed(name, record["stage"]["checkpoint"])
        (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2))


def _f(value, digits: int = 2) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _scores(score: dict) -> str:
    t, v = score["test"]["model"], score["vctk"]["model"]
    return (f"{_f(t['si_sdri'])} | {_f(t['pesq'])} | {_f(t['stoi'], 3)} | "
            f"{_f(v['si_sdri'])} | {_f(v['pesq'])} | {_f(v['stoi'], 3)}")


def write_report() -> Path:
    records = [json.loads((RESULTS / f"{n}.json").read_text()) for n in VARIANTS if (RESULTS / f"{n}.json").exists()]
    if not records:
        raise SystemExit(f"no results in {RESULTS}: run without --report first")
    first = records[0]
    timed = {r["name"]: r.get("speed", {}) for r in records}
    speeds = {"small": timed.get("augment"), "small_dilated": timed.get("dilated"),
              "small_dilated, mask_frames=3": timed.get("deepfilter")}
    lines = [
        "# Ablation: what each part of the shipped recipe earns",
        "",
        "Written by `python experiments/run_ablation.py` from `experiments/ablation/*.json`. Each row adds one",
        "change to the row above (`augment_snr` is a side branch of `augment`, and `dilated` builds on `augment`);",
        f"every variant was trained from scratch for {first['stage']['steps']} steps with the same",
        "budget, then scored on the held-out test split (128 mixtures of 4 s, −5…10 dB, unseen speakers and",
        "noise recordings) and on the VCTK p287 pair (voice, noise and recording conditions never seen).",
        "",
        "Budget (every variant): `" + " ".join(budget(first["stage"]["steps"])) + "` (batch 8 of 3 s, "
        "Adam 1e-3 on a cosine, seed 1234).",
        "",
        "| variant | val SI-SDRi | test SI-SDRi | test PESQ | test STOI | VCTK SI-SDRi | VCTK PESQ | VCTK STOI | train time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    noisy = first["score"]
    lines.append(f"| noisy input | – | 0.00 | {_f(noisy['test']['noisy']['pesq'])} | {_f(noisy['test']['noisy']['stoi'], 3)} | "
                 f"0.00 | {_f(noisy['vctk']['noisy']['pesq'])} | {_f(noisy['vctk']['noisy']['stoi'], 3)} | – |")
    for r in records:
        lines.append(f"| {r['name']}: {r['what']} | {_f(r['stage']['metrics'].get('val/si_sdri'))} | {_scores(r['score'])} | "
                     f"{r['train_seconds'] / 60:.0f} min |")
    shipped = RESULTS / "shipped.json"
    if shipped.exists():
        s = json.loads(shipped.read_text())
        lines.append(f"| reference: {s['what']} | – | {_scores(s['score'])} | – |")
    lines += ["", "| architecture | parameters | receptive field | RTF PyTorch | RTF ONNX Runtime | load average |",
              "|---|---|---|---|---|---|"]
    for arch, s in speeds.items():
        if s:
            lines.append(f"| `{arch}` | {s['parameters'] / 1e6:.2f} M | ±{s['receptive_field_frames']} frames | "
                         f"{_f(s['rtf_torch'], 3)} | {_f(s['rtf_onnx'], 3)} | {_f(s['load_average_1min'], 1)} |")
    lines += ["", "SI-SDRi in dB; PESQ wide band. Validation: 128 unaugmented mixtures of the validation speakers. "
              "Real-time factors: one thread, 60 s of audio through `sepgan separate`'s chunked path (30 s chunks "
              "with the context the receptive field needs); frames of 16 ms.", ""]
    path = HERE / "ABLATION.md"
    notes = path.read_text().split("<!-- notes -->", 1)[1] if path.exists() and "<!-- notes -->" in path.read_text() else "\n"
    path.write_text("\n".join(lines) + "<!-- notes -->" + notes)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), help="train and score just these variants")
    parser.add_argument("--steps", type=int, default=1200, help="training steps of every variant (default 1200)")
    parser.add_argument("--shipped", action="store_true", help="score the shipped model on the same sets")
    parser.add_argument("--speed-only", action="store_true", help="only time the stored variants' architectures")
    parser.add_argument("--report", action="store_true", help="only write the report from stored results")
    args = parser.parse_args()
    if args.speed_only:
        measure_speed()
    elif args.shipped:
        score_shipped()
    elif not args.report:
        run(args.only or list(VARIANTS), args.steps)
    print(f"wrote {write_report()}")


if __name__ == "__main__":
    main()
