"""How much a complex-spectrogram model's result depends on the mixture's global phase.

    python experiments/phase_rotation.py --split test
    python experiments/phase_rotation.py --split test --checkpoint run/last.ckpt --angles 8

Multiplying every STFT bin of the mixture by one unit complex number exp(i·a) changes nothing a
listener or the ideal mask cares about: the speech's spectrogram is rotated alike, and the ideal
complex mask is the same. A model that has learnt that gives the same speech for every `a` once
its output is rotated back. This scores each mixture at `--angles` evenly spaced rotations of its
(compressed) features, rotated back before the inverse STFT, and prints per noise class the
SI-SDRi at 0° (what `sepgan evaluate` scores), the mean over the angles, and the spread (standard
deviation over the angles), on the same mixtures as `sepgan evaluate --data ... --split S`.
The data augmentation `data.augment.phase` trains a model on such rotations.

`--rotate-edges --keep-offset` repeat the first measurement of experiments/ABLATION.md ("A DC
offset"): every bin rotated, and the mixture normalised as before 2026-11-28 (its mean left in).
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict

import numpy as np
import torch

from sepgan.evaluation import ConfigMixtures
from sepgan.metrics import si_sdr_db
from sepgan.models import Separator, load_separator
from sepgan.models.separator import centred_level
from sepgan.pretrained import default_checkpoint


def rotated(features: torch.Tensor, angle: float, edges: bool = False) -> torch.Tensor:
    """(re, im) features (batch, 2, freq, frames) times exp(i·angle), but for the DC and Nyquist bins
    unless `edges`.

    Those two are real in the spectrogram of any real signal (an all-pass phase shift of one, as
    `data.augment.phase` makes, leaves them real too). Rotated, they are an input no model has
    seen: the shipped model's mask suppressed such a DC bin, which removed a DC offset in the test
    split's sirens and looked like a 1 dB sensitivity to the phase.
    """
    c, s = math.cos(angle), math.sin(angle)
    re, im = features[:, 0], features[:, 1]
    out = torch.stack((c * re - s * im, s * re + c * im), dim=1)
    if not edges:
        out[:, :, [0, -1]] = features[:, :, [0, -1]]
    return out


def speech_at_angles(model: Separator, mixture: np.ndarray, angles: list[float], edges: bool = False,
                     keep_offset: bool = False) -> list[np.ndarray]:
    """The model's speech for the mixture's features rotated by each angle (and its output rotated back).

    Normalised as the model normalises a mixture; `keep_offset` leaves its mean in, as before 2026-11-28.
    """
    fe = model.frontend
    x = torch.from_numpy(np.ascontiguousarray(mixture, dtype=np.float32))[None]
    with torch.inference_mode():
        centred, scale = centred_level(x, offset=torch.zeros(1, 1) if keep_offset else None)
        spec = fe.stft(centred / scale)
        features = fe.to_features(spec)
        out = []
        for angle in angles:
            speech_features = rotated(model.separate_features(rotated(features, angle, edges))[0], -angle, edges)
            out.append((fe.istft(fe.from_features(speech_features, spec), x.shape[-1]) * scale)[0].numpy())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="default: the shipped model")
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--angles", type=int, default=8, help="evenly spaced over the circle, 0° first")
    parser.add_argument("--data", nargs="*", default=["root=../shared/data", "segment_seconds=4"])
    parser.add_argument("--rotate-edges", action="store_true", help="rotate the DC and Nyquist bins too")
    parser.add_argument("--keep-offset", action="store_true", help="leave the mixture's mean in (before 2026-11-28)")
    args = parser.parse_args()
    if args.angles < 2:
        parser.error(f"--angles must be at least 2, got {args.angles}")

    model = load_separator(args.checkpoint or default_checkpoint()).eval()
    if not isinstance(model, Separator) or model.frontend.representation != "complex":
        parser.error("a speech model on complex features is needed: magnitude features have no phase to rotate")
    angles = [2 * math.pi * k / args.angles for k in range(args.angles)]
    scores: dict[str, list[np.ndarray]] = defaultdict(list)  # class -> per mixture, SI-SDRi at each angle
    for example in ConfigMixtures(args.data, model.frontend.sample_rate, args.split, args.examples):
        before = si_sdr_db(example.mixture, example.speech)
        speech = speech_at_angles(model, example.mixture, angles, args.rotate_edges, args.keep_offset)
        scores[example.noise_class].append(np.array([si_sdr_db(y, example.speech) - before for y in speech]))

    print(f"SI-SDRi (dB) over {args.angles} rotations, {args.split} split")
    print("| noise | mixtures | at 0° | mean over angles | spread (mean) | spread (largest) |")
    print("|---|---|---|---|---|---|")
    rows = {**scores, "all": [s for per_class in scores.values() for s in per_class]}
    for name, per_mixture in sorted(rows.items(), key=lambda kv: (kv[0] == "all", kv[0])):
        table = np.stack(per_mixture)
        spread = table.std(axis=1)
        print(f"| {name} | {len(table)} | {table[:, 0].mean():.2f} | {table.mean():.2f} | {spread.mean():.2f} | "
              f"{spread.max():.2f} |")


if __name__ == "__main__":
    main()
