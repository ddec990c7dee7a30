"""Write experiments/REPORT.md from experiments/results/*.json (made by run_study.py); no number is typed in."""

from __future__ import annotations

import json
from pathlib import Path

GROUPS = {
    "noise type": "Noise types (the study's tone, air-conditioner and dog-bark experiments, and all classes)",
    "model": "Model A versus Model B",
    "representation": "Complex versus magnitude spectrograms",
    "loss": "Loss ablation (one model per loss, same budget)",
    "gan": "GAN: before and after the adversarial stage",
}


def _mean(record: dict, method: str, metric: str) -> float | None:
    return record["test"]["methods"].get(method, {}).get(metric, {}).get("mean")


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _val(record: dict) -> float | None:
    return record["stages"][-1]["metrics"].get("val/si_sdri")


def _row(record: dict) -> str:
    stage = record["stages"][-1]
    m = lambda method, metric, d=2: _fmt(_mean(record, method, metric), d)  # noqa: E731
    return (f"| `{record['name']}` | {record['what']} | {sum(s['steps'] for s in record['stages'])} | "
            f"{record['train_seconds'] / 60:.1f} | {_fmt(_val(record))} | **{m('model', 'si_sdri')}** | "
            f"{m('noisy', 'pesq')} → {m('model', 'pesq')} | {m('noisy', 'stoi', 3)} → {m('model', 'stoi', 3)} | "
            f"{m('spectral_gating', 'si_sdri')} | {m('oracle_irm', 'si_sdri')} | [{stage['stage']}](figures/{record.get('same_as', record['name'])}.png) |")


HEADER = ("| run | what varies | steps | train min | val SI-SDRi | test SI-SDRi | PESQ noisy → model | "
          "STOI noisy → model | spectral gating SI-SDRi | oracle IRM SI-SDRi | picture |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")


def _gan_section(records: dict[str, dict]) -> list[str]:
    gan = records.get("gan")
    if gan is None:
        return []
    lines = ["", "Stages of the `gan` run (validation set; the discriminator's accuracy is on real and "
                 "estimated speech together, 0.5 is chance):", "",
             "| stage | steps | seconds | val SI-SDRi | discriminator accuracy |", "|---|---|---|---|---|"]
    for s in gan["stages"]:
        lines.append(f"| {s['stage']} | {s['steps']} | {s['seconds']:.0f} | {_fmt(s['metrics'].get('val/si_sdri'))} | "
                     f"{_fmt(s['metrics'].get('val/disc/accuracy'))} |")
    notes = [n for s in gan["stages"] for n in s["notes"]]
    lines += [""] + [f"- {n}" for n in notes]
    control = records.get("gan_control")
    if control is not None:
        adv, ctl = gan["stages"][-1]["metrics"], control["stages"][-1]["metrics"]
        lines += ["", f"Control (`gan_control`): the same fine-tuning from the same checkpoints without the adversarial "
                      f"term reaches {_fmt(ctl.get('val/si_sdri'))} dB validation SI-SDRi against "
                      f"{_fmt(adv.get('val/si_sdri'))} dB with it (test: {_fmt(_mean(control, 'model', 'si_sdri'))} "
                      f"against {_fmt(_mean(gan, 'model', 'si_sdri'))} dB). The difference is what the "
                      f"discriminator adds; the rest of the gain over the pretrained generator is more "
                      f"reconstruction training."]
    strong = records.get("gan_adversarial_1")
    if strong is not None and control is not None:
        values = [r["stages"][-1]["metrics"].get("val/si_sdri") for r in (control, gan, strong)]
        lines += ["", "Validation SI-SDRi to three decimals, adversarial weight 0 / 0.01 / 1: " +
                  " / ".join(_fmt(v, 3) for v in values) + " dB. At this budget the adversarial term "
                  "barely moves the generator, even at weight 1."]
    return lines


def write_report(here: Path) -> Path:
    records = {p.stem: json.loads(p.read_text()) for p in sorted((here / "results").glob("*.json"))}
    if not records:
        raise SystemExit("no results yet: run experiments/run_study.py first")
    any_record = next(iter(records.values()))
    test = any_record["test_settings"]
    budget = " ".join(f"`{o}`" for o in any_record["overrides"] if not o.startswith(("+experiment", "data.root")))
    lines = [
        "# The study's experiments, reproduced at CPU scale",
        "",
        "Made by `python experiments/run_study.py` (which trains and scores every run) from the files in "
        "`experiments/results/`; every number below is read from them. Speech is LibriSpeech and noise is "
        "UrbanSound8K (plus the café recording) from `../shared/data`; tones are synthetic, as in the study.",
        "",
        f"**Budget.** Every run: {budget}, then its own overrides (the Model A and Model B rows use "
        "those presets instead of `model=small`). The study trained for hours on a GPU; these are minutes on "
        "2 CPU cores, so absolute figures are far below a full training and only the comparisons within a "
        "table carry over.",
        "",
        f"**Test.** {test['count']} mixtures of {test['seconds']:g} s from the {test['split']} split: speakers and "
        "noise recordings that training never saw, SNR −5…10 dB. Columns: training steps and minutes, "
        "validation SI-SDRi at the end of training, then test SI-SDRi of the model (dB, improvement over the "
        "noisy input), PESQ (narrow band at 8 kHz) and STOI of the noisy input and of the model, and the "
        "SI-SDRi of two references scored on the same mixtures: spectral gating (noisereduce) and the "
        "oracle ideal ratio mask (an upper bound for masking). Audio of each picture's example is written "
        "to `experiments/runs/<run>/audio/` by the script.",
    ]
    for group, title in GROUPS.items():
        members = [r for r in records.values() if r["group"] == group]
        if not members:
            continue
        lines += ["", f"## {title}", "", HEADER, *(_row(r) for r in members)]
        if group == "gan":
            lines += _gan_section(records)
    path = here / "REPORT.md"
    path.write_text("\n".join(lines) + "\n")
    print(f"written: {path}")
    return path
