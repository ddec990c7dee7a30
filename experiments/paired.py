"""Two models' scores on the same mixtures, compared file by file (the "paired" figures of ABLATION.md).

    python experiments/paired.py experiments/ablation/mrstft_off/control_test_per_file.csv \
        experiments/ablation/mrstft_off/mrstft0_test_per_file.csv

Reads two `per_file.csv` written by `sepgan evaluate --out` over the same examples (the same
`--data ... --split --examples`, or the same folder pair) and prints, for each metric, B's mean minus
A's over the files both scored, ± one standard error of that mean difference, and in how many files
B scored higher. Two models scored on the same mixtures differ far less from file to file than the
mixtures do from each other, so the paired error is several times smaller than the difference of
two means' errors: it is what tells a tenth of a decibel from noise. With `--by-noise`, the SI-SDRi
difference per noise class as well. Two methods of one evaluation (the model against DeepFilterNet3):

    python experiments/paired.py per_file.csv per_file.csv --method deepfilternet3 --method-b model
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np


DESCRIPTIVE = ("file", "method", "snr_db", "noise_class", "seconds")  # per_file.csv columns that are not measures


def read_scores(path: Path, method: str) -> dict[str, dict[str, str]]:
    """The rows of `method` in a per_file.csv, by file name."""
    with open(path, newline="") as f:
        rows = {row["file"]: row for row in csv.DictReader(f) if row["method"] == method}
    if not rows:
        raise SystemExit(f"{path}: no rows for method '{method}'")
    return rows


def number(text: str | None) -> float:
    return float(text) if text not in (None, "") else float("nan")


def paired(a: dict, b: dict, metric: str, files: list[str]) -> dict[str, float]:
    """Mean of b - a over the files where both are finite, its standard error, and the count of b > a."""
    x = np.array([number(a[f].get(metric)) for f in files])
    y = np.array([number(b[f].get(metric)) for f in files])
    ok = np.isfinite(x) & np.isfinite(y)
    d = y[ok] - x[ok]
    error = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    return dict(a=x[ok].mean(), b=y[ok].mean(), diff=d.mean(), error=error, better=int((d > 0).sum()), n=len(d))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="per_file.csv of the reference (A)")
    parser.add_argument("b", type=Path, help="per_file.csv of the model compared with it (B)")
    parser.add_argument("--metrics", nargs="+", help="columns to compare (default: those of si_sdri, pesq, stoi "
                                                     "the files have)")
    parser.add_argument("--method", default="model", help="the method column to compare (default: model)")
    parser.add_argument("--method-b", help="B's method column, where it differs from A's (default: --method)")
    parser.add_argument("--by-noise", action="store_true", help="also the SI-SDRi difference per noise class")
    args = parser.parse_args()
    a, b = read_scores(args.a, args.method), read_scores(args.b, args.method_b or args.method)
    files = sorted(set(a) & set(b))
    if not files:
        raise SystemExit("the two files share no example names: were they scored on the same mixtures?")
    if len(files) < max(len(a), len(b)):
        print(f"note: {len(files)} files in common ({len(a)} in A, {len(b)} in B)")
    columns = [c for c in a[files[0]] if c not in DESCRIPTIVE]
    for metric in args.metrics or [m for m in ("si_sdri", "pesq", "stoi") if m in columns]:
        if metric not in columns:
            raise SystemExit(f"no '{metric}' column; these files have {', '.join(columns)}")
        s = paired(a, b, metric, files)
        print(f"{metric:8s} A {s['a']:.3f}  B {s['b']:.3f}  B - A {s['diff']:+.3f} ± {s['error']:.3f}  "
              f"(B higher in {s['better']} of {s['n']})")
    if args.by_noise:
        classes = defaultdict(list)
        for f in files:
            classes[a[f].get("noise_class") or "-"].append(f)
        for name, members in sorted(classes.items()):
            s = paired(a, b, "si_sdri", members)
            print(f"  {name:18s} n={s['n']:3d}  SI-SDRi B - A {s['diff']:+.2f} ± {s['error']:.2f}")


if __name__ == "__main__":
    main()
