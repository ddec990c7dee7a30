"""Reproduce the study's experiments at CPU scale and write `experiments/REPORT.md`.

    python experiments/run_study.py            # run what has no result yet, then write the report
    python experiments/run_study.py --report   # only rewrite the report from experiments/results/
    python experiments/run_study.py --only tone dog_bark

Each experiment trains with `python -m sepgan.train`'s own code (Hydra config + overrides) into
`experiments/runs/<name>/` (not in git), then scores its checkpoint on the held-out test split of
`../shared/data` (other speakers, other noise recordings) with `sepgan.evaluation`, and stores the
figures in `experiments/results/<name>.json` and a spectrogram picture in
`experiments/figures/<name>.png`. Every number in the report comes from those files.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from sepgan.training import stages
from sepgan.commands.train import run as run_stages
from sepgan.audio import save_audio
from sepgan.training.config import compose_config
from sepgan.evaluation import ConfigMixtures, evaluate
from sepgan.models import load_separator
from sepgan.plots import plt, spectrogram_figure

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared" / "data"

# The budget of every run: the study's 8 kHz front-end (with ^0.3 magnitude compression), 1 s
# mixtures at -5..10 dB SNR without augmentation (as the stored results were made), batches of 8,
# 300 steps. Hours on a GPU in the study; minutes here.
BUDGET = [
    f"data.root={SHARED}", "data.augment.enabled=false", "frontend=article", "frontend.compress=0.3", "model=small",
    "data.segment_seconds=1.0", "data.train_examples=800", "data.val_examples=64", "data.num_workers=1",
    "trainer.max_steps=300", "trainer.max_epochs=-1", "callbacks.validation_examples.count=0",
]
TEST = dict(split="test", count=48, seconds=3.0)  # held-out mixtures scored per experiment
METRICS = ("si_sdr", "si_sdri", "pesq", "stoi")

EXPERIMENTS = {
    # name: (group in the report, what varies, overrides)
    "tone": ("noise type", "tones (synthetic, as in the study)", ["+experiment=tone"]),
    "air_conditioner": ("noise type", "air conditioner", ["+experiment=air_conditioner"]),
    "dog_bark": ("noise type", "dog barks", ["+experiment=dog_bark"]),
    "general": ("noise type", "all ten UrbanSound8K classes and the cafe", ["+experiment=general"]),
    "gan": ("gan", "three stages: generator, discriminator, adversarial (projection + MSE + SI-SDR + 0.01 adversarial)",
            ["+experiment=gan", "gan.steps.discriminator=100", "gan.steps.adversarial=200", "gan.val_check_steps=50"]),
    # The control: the same 200 fine-tuning steps from the same checkpoints without the adversarial
    # term, so the report can tell what the discriminator adds beyond more reconstruction training.
    "gan_control": ("gan", "control: the adversarial stage with adversarial weight 0",
                    ["+experiment=gan", "stage=adversarial", "init_from={gan:generator}",
                     "discriminator_from={gan:discriminator}", "loss.weights.adversarial=0",
                     "gan.steps.adversarial=200", "gan.val_check_steps=50"]),
    # And with the adversarial term 100 times stronger than the pipeline's default, where it is no
    # longer small next to the reconstruction terms.
    "gan_adversarial_1": ("gan", "the adversarial stage with adversarial weight 1",
                          ["+experiment=gan", "stage=adversarial", "init_from={gan:generator}",
                           "discriminator_from={gan:discriminator}", "loss.weights.adversarial=1",
                           "gan.steps.adversarial=200", "gan.val_check_steps=50"]),
    "model_a": ("model", "Model A: dense U-Net, predicts speech (study preset)",
                ["+experiment=general", "model=model_a"]),
    "model_b": ("model", "Model B: smaller U-Net without BN, predicts noise, Huber loss (study preset)",
                ["+experiment=general", "model=model_b", "loss=huber"]),
    "magnitude": ("representation", "magnitude, mixture phase reused", ["+experiment=general", "frontend.representation=magnitude"]),
    "loss_mse": ("loss", "MSE", ["+experiment=general", "loss.weights.si_sdr=0", "loss.weights.mse=1"]),
    "loss_noise_weighted_mse": ("loss", "noise-weighted MSE",
                                ["+experiment=general", "loss.weights.si_sdr=0", "loss.weights.noise_weighted_mse=1"]),
    "loss_article": ("loss", "study: 1e2 MSE + 1e4 noise-weighted MSE", ["+experiment=general", "loss=article"]),
    "loss_huber": ("loss", "Huber on the noise", ["+experiment=general", "loss=huber"]),
    "loss_ssim": ("loss", "SSIM", ["+experiment=general", "loss.weights.si_sdr=0", "loss.weights.ssim=1"]),
    "loss_projection": ("loss", "source projection", ["+experiment=general", "loss=projection"]),
    "loss_projection_mse_si_sdr": ("loss", "projection + MSE + SI-SDR",
                                   ["+experiment=general", "loss.weights.projection=1", "loss.weights.mse=1"]),
}

# Rows whose settings are exactly those of another run: the report shows that run's figures again
# under this name instead of training the same thing twice.
SAME_AS = {
    "complex": ("general", "representation", "complex (real, imaginary): the `general` run"),
    "loss_si_sdr": ("general", "loss", "SI-SDR (sepgan's default): the `general` run"),
}


def resolve(overrides: list[str]) -> list[str]:
    """Fill `{experiment:stage}` with the checkpoint that stage of an earlier experiment handed on."""
    out = []
    for item in overrides:
        if "={" in item:
            key, ref = item.split("={", 1)
            experiment, stage = ref.rstrip("}").split(":")
            record = json.loads((HERE / "results" / f"{experiment}.json").read_text())
            item = f"{key}={next(s['checkpoint'] for s in record['stages'] if s['stage'] == stage)}"
        out.append(item)
    return out


def train(name: str, overrides: list[str]) -> list[stages.StageResult]:
    # The budget first, so that a run's own choices (model=model_a) win over its defaults (model=small).
    return run_stages(compose_config([*BUDGET, *resolve(overrides), f"paths.output_dir={HERE / 'runs' / name}",
                                      f"paths.log_dir={HERE / 'runs'}", f"name={name}"]))


def score(name: str, overrides: list[str], checkpoint: str) -> dict:
    """Held-out test scores of the model and the reference methods; a picture and audio of one example."""
    separator = load_separator(checkpoint)
    data = [o.split("=", 1)[1] for o in overrides if o.startswith("+experiment=")]
    noise_classes = compose_config([f"+experiment={data[0]}"]).data.noise_classes if data else None
    data_overrides = [f"root={SHARED}", f"segment_seconds={TEST['seconds']}",
                      f"noise_classes={json.dumps(list(noise_classes)) if noise_classes else 'null'}"]
    examples = ConfigMixtures(data_overrides, separator.frontend.sample_rate, TEST["split"], TEST["count"])
    report = evaluate(examples, separator, metrics=METRICS, progress=False)
    summary_path = next(p for p in report.write(HERE / "runs" / name / "test", overwrite=True)
                        if p.name == "summary.json")
    first = next(iter(examples))
    estimate = separator.separate(torch.from_numpy(first.mixture))
    audio = {"mixture": torch.from_numpy(first.mixture), "clean": torch.from_numpy(first.speech), "estimate": estimate}
    fig = spectrogram_figure(audio, separator.frontend)
    fig.savefig(HERE / "figures" / f"{name}.png", dpi=70, bbox_inches="tight")
    plt.close(fig)
    for key, wav in audio.items():
        save_audio(HERE / "runs" / name / "audio" / f"{key}.wav", wav, separator.frontend.sample_rate)
    return json.loads(summary_path.read_text())


def reuse(name: str) -> None:
    """Store another run's record under `name`, with this row's group and description."""
    source, group, what = SAME_AS[name]
    record = json.loads((HERE / "results" / f"{source}.json").read_text())
    record.update(name=name, group=group, what=what, same_as=source)
    (HERE / "results" / f"{name}.json").write_text(json.dumps(record, indent=2))


def run(name: str) -> None:
    group, what, overrides = EXPERIMENTS[name]
    started = time.perf_counter()
    results = train(name, overrides)
    record = {
        "name": name, "group": group, "what": what, "overrides": BUDGET + resolve(overrides),
        "stages": stages.as_dict(results),
        "train_seconds": time.perf_counter() - started,
        "test": score(name, overrides, results[-1].checkpoint),
        "test_settings": TEST,
    }
    (HERE / "results" / f"{name}.json").write_text(json.dumps(record, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(EXPERIMENTS), help="run just these")
    parser.add_argument("--report", action="store_true", help="only write the report from stored results")
    args = parser.parse_args()
    for folder in ("results", "figures"):
        (HERE / folder).mkdir(exist_ok=True)
    if not args.report:
        for name in args.only or EXPERIMENTS:
            if args.only or not (HERE / "results" / f"{name}.json").exists():
                print(f"== {name}", flush=True)
                run(name)
        for name in SAME_AS:
            if (HERE / "results" / f"{SAME_AS[name][0]}.json").exists():
                reuse(name)
    from report import write_report  # noqa: E402 (a sibling script)

    write_report(HERE)


if __name__ == "__main__":
    main()
