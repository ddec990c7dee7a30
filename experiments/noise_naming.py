"""How well a model names the noise it removes: accuracy by SNR and a confusion matrix.

    python experiments/noise_naming.py --data root=../shared/data segment_seconds=4 --examples 256
    python experiments/noise_naming.py --data root=../shared/data segment_seconds=4 augment.enabled=true \\
        augment.eval=true --examples 256 --out experiments/noise_naming/augmented    # babble, coloured, pairs

Scores the held-out mixtures `sepgan evaluate --data` scores (the same data overrides give the
same mixtures): each is separated whole, the classifier's frame scores of the removed noise are
pooled over the clip as in training, and the most probable class is compared with the mixture's
noise class (the first source's, for augmented mixtures with two). Writes `confusion.png`,
`naming.json` and `naming.md` to `--out` and prints the table.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from sepgan.evaluation import ConfigMixtures, snr_bin
from sepgan.models import load_separator
from sepgan.models.noise_classifier import pooled_probabilities
from sepgan.pretrained import default_checkpoint


def name_examples(model, examples: ConfigMixtures) -> list[dict]:
    """One row per mixture: its true class and SNR, the predicted class and its pooled probability."""
    rows = []
    classes = model.noise_classifier.classes
    with torch.inference_mode():
        for example in examples:
            mixture = torch.from_numpy(np.ascontiguousarray(example.mixture))[None]
            probabilities = pooled_probabilities(model(mixture).noise_logits)[0]
            best = int(probabilities.argmax())
            rows.append({"name": example.name, "true": example.noise_class, "snr_db": example.snr_db,
                         "predicted": classes[best], "probability": round(float(probabilities[best]), 3)})
    return rows


def summarise(rows: list[dict]) -> dict:
    by_snr: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        by_snr[snr_bin(row["snr_db"])].append(row["true"] == row["predicted"])
    return {"examples": len(rows), "accuracy": float(np.mean([r["true"] == r["predicted"] for r in rows])),
            "by_snr": {k: {"accuracy": float(np.mean(v)), "n": len(v)}
                       for k, v in sorted(by_snr.items(), key=lambda kv: float(kv[0][1:].split(",")[0]))}}


def confusion(rows: list[dict], classes: list[str]) -> np.ndarray:
    """Counts: true class (rows, the classes present) by predicted class (columns, every class)."""
    trues = {r["true"] for r in rows}
    present = [c for c in classes if c in trues] + sorted(trues - set(classes))  # unknown to the model: last
    matrix = np.zeros((len(present), len(classes)), int)
    for row in rows:
        matrix[present.index(row["true"]), classes.index(row["predicted"])] += 1
    return matrix, present


def plot(matrix: np.ndarray, present: list[str], classes: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(classes), 1.0 + 0.5 * len(present)))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), n in np.ndenumerate(matrix):
        if n:
            ax.text(j, i, str(n), ha="center", va="center", fontsize=8, color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(classes)), [c.replace("_", " ") for c in classes], rotation=45, ha="right")
    ax.set_yticks(range(len(present)), [c.replace("_", " ") for c in present])
    ax.set_xlabel("named")
    ax.set_ylabel("true noise")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(summary: dict, matrix: np.ndarray, present: list[str], classes: list[str]) -> str:
    lines = [f"accuracy {summary['accuracy']:.3f} on {summary['examples']} mixtures", "",
             "| input SNR | mixtures | accuracy |", "|---|---|---|"]
    lines += [f"| {k} | {v['n']} | {v['accuracy']:.3f} |" for k, v in summary["by_snr"].items()]
    lines += ["", "| true \\ named | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
    lines += [f"| {c} | " + " | ".join(str(n) for n in row) + " |" for c, row in zip(present, matrix)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a checkpoint with a noise classifier (default: the shipped model)")
    parser.add_argument("--data", nargs="*", default=["root=../shared/data", "segment_seconds=4"],
                        help="data-config overrides, as for sepgan evaluate --data")
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--out", default="experiments/noise_naming/test", help="folder for the figures")
    args = parser.parse_args(argv)

    model = load_separator(args.checkpoint or default_checkpoint())
    if model.noise_classifier is None:
        parser.error("this model has no noise classifier (train one with loss.weights.noise_class > 0)")
    examples = ConfigMixtures(args.data, model.frontend.sample_rate, args.split, args.examples)
    rows = name_examples(model, examples)
    summary = summarise(rows)
    classes = model.noise_classifier.classes
    matrix, present = confusion(rows, classes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(matrix, present, classes, out / "confusion.png",
         f"noise named from the removed noise: {summary['accuracy']:.0%} of {len(rows)} {args.split} mixtures")
    table = markdown(summary, matrix, present, classes)
    (out / "naming.md").write_text(table + "\n")
    (out / "naming.json").write_text(json.dumps({"data": args.data, "split": args.split, **summary,
                                                 "classes": classes, "true_classes": present,
                                                 "confusion": matrix.tolist(), "rows": rows}, indent=2) + "\n")
    print(table)
    print(f"written: {out}/confusion.png, naming.md, naming.json")
    return summary


if __name__ == "__main__":
    main()
