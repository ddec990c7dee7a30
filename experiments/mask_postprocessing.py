"""Does a trained complex-mask model gain from changing its mask after the network, at no training cost?

    python experiments/mask_postprocessing.py --split test --pesq
    python experiments/mask_postprocessing.py --noisy-dir ../shared/data/speech/vctk_p287_denoiser_debug/noisy \
        --clean-dir ../shared/data/speech/vctk_p287_denoiser_debug/clean --pesq

Two cheap changes to the shipped model's output, each scored against the mask as trained (exponent 1)
on the same mixtures as `sepgan evaluate` (paired, ± one standard error):

- `exponent g`: the mask's magnitude m raised to g, its phase kept (m·|m|^(g-1)). Above 1 it suppresses
  more where the model is unsure, below 1 less: the usual knob of a Wiener-style post-filter.
- `finer grid`: the masks the network gives on its hop's frames applied to an STFT at half that hop
  (75 % overlap with the 50 % window); a frame between two of the network's gets the mean of their
  masks. The mean of two frame grids (`--shifts 2`) gains about 0.1 dB for twice the work; this asks
  how much of that a finer synthesis alone gives.

A one-frame complex mask is needed (the shipped models have one).
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

from sepgan.audio import FrontEnd
from sepgan.evaluation import ConfigMixtures, FolderPairs
from sepgan.metrics import pesq, si_sdr_db
from sepgan.models import Separator, load_separator
from sepgan.models.separator import bounded_complex_mask, centred_level
from sepgan.pretrained import default_checkpoint


def masked_speech(fe: FrontEnd, spec: torch.Tensor, mask_re: torch.Tensor, mask_im: torch.Tensor,
                  length: int) -> torch.Tensor:
    """The waveform of the mixture's (normalised) spectrogram `spec` times the complex mask, through `fe`."""
    features = fe.to_features(spec)
    re, im = features[:, 0], features[:, 1]
    speech = torch.stack((mask_re * re - mask_im * im, mask_re * im + mask_im * re), dim=1)
    return fe.istft(fe.from_features(speech, spec), length)


def on_finer_grid(mask: torch.Tensor, frames: int) -> torch.Tensor:
    """Masks (..., T) on the hop's frames spread to `frames` frames at half the hop: frame 2t keeps frame t's
    mask (both grids centre it on the same sample), frame 2t+1 gets the mean of t's and t+1's."""
    out = mask.new_zeros(mask.shape[:-1] + (frames,))
    last = mask.shape[-1] - 1
    even, odd = torch.arange(0, frames, 2), torch.arange(1, frames, 2)
    out[..., even] = mask[..., (even // 2).clamp(max=last)]
    out[..., odd] = (mask[..., (odd // 2).clamp(max=last)] + mask[..., (odd // 2 + 1).clamp(max=last)]) / 2
    return out


def variants(model: Separator, mixture: np.ndarray, exponents: list[float]) -> dict[str, np.ndarray]:
    """The speech estimate of each variant for one mixture, at the mixture's scale."""
    fe = model.frontend
    finer = FrontEnd(**{**dataclasses.asdict(fe), "hop_length": fe.hop_length // 2})
    x = torch.from_numpy(np.ascontiguousarray(mixture, dtype=np.float32))[None]
    out = {}
    with torch.inference_mode():
        centred, scale = centred_level(x)
        spec = fe.stft(centred / scale)
        net_out = model.net(fe.to_features(spec))
        mask_re, mask_im = bounded_complex_mask(net_out[:, 0], net_out[:, 1])
        magnitude = (mask_re * mask_re + mask_im * mask_im).sqrt().clamp_min(1e-8)
        for g in exponents:
            gain = magnitude ** (g - 1)
            out[f"exponent {g:g}"] = masked_speech(fe, spec, mask_re * gain, mask_im * gain, x.shape[-1])
        fine_spec = finer.stft(centred / scale)
        frames = fine_spec.shape[-1]
        out["finer grid"] = masked_speech(finer, fine_spec, on_finer_grid(mask_re, frames),
                                          on_finer_grid(mask_im, frames), x.shape[-1])
    return {name: (y * scale)[0].numpy().astype(np.float64) for name, y in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="default: the shipped model")
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--data", nargs="*", default=["root=../shared/data", "segment_seconds=4"])
    parser.add_argument("--noisy-dir", help="score these recordings (with --clean-dir) instead of a split")
    parser.add_argument("--clean-dir")
    parser.add_argument("--exponents", type=float, nargs="+", default=[0.7, 0.8, 0.9, 1.15, 1.3, 1.5])
    parser.add_argument("--pesq", action="store_true", help="also wide-band PESQ (slower)")
    args = parser.parse_args()
    if bool(args.noisy_dir) != bool(args.clean_dir):
        parser.error("--noisy-dir and --clean-dir go together")
    if any(g <= 0 for g in args.exponents):
        parser.error(f"--exponents must be positive, got {args.exponents}")

    model = load_separator(args.checkpoint or default_checkpoint()).eval()
    if (not isinstance(model, Separator) or model.output != "mask" or model.frontend.representation != "complex"
            or model.mask_frames != 1):
        parser.error("a speech model with a one-frame complex mask is needed")
    sr = model.frontend.sample_rate
    examples = (FolderPairs(args.noisy_dir, args.clean_dir, sr) if args.noisy_dir
                else ConfigMixtures(args.data, sr, args.split, args.examples))
    exponents = [1.0] + [g for g in args.exponents if g != 1.0]
    scores: dict[str, list[tuple[float, float]]] = {}
    for example in examples:
        before = si_sdr_db(example.mixture, example.speech)
        for name, speech in variants(model, example.mixture, exponents).items():
            quality = pesq(speech, example.speech, sr) if args.pesq else float("nan")
            scores.setdefault(name, []).append((si_sdr_db(speech, example.speech) - before, quality))

    where = args.noisy_dir or f"{args.split} split"
    print(f"{len(scores['exponent 1'])} recordings ({where}); differences paired against exponent 1, ± one standard error")
    print("| variant | SI-SDRi | difference | PESQ | difference |")
    print("|---|---|---|---|---|")
    reference = np.array(scores["exponent 1"])
    for name, values in scores.items():
        values = np.array(values)
        diff = values - reference
        error = diff.std(axis=0, ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else np.full(2, np.nan)
        cells = [f"{values[:, i].mean():.3f} | {diff[:, i].mean():+.3f} ± {error[i]:.3f}" for i in range(2)]
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
