"""A "model soup": the separator weights of several checkpoints of one network, averaged uniformly.

    python experiments/average_checkpoints.py soup.ckpt sepgan/pretrained/sepgan-16k.ckpt run1/last.ckpt run2/last.ckpt

Fine-tunes of one model tend to stay in one basin, where the average of their weights can beat each
of them (Wortsman et al., 2022, "Model soups"). The U-Net's weights and batch-norm statistics are
averaged; everything else (the noise classifier, the configuration) is the first checkpoint's. Score
the result as any checkpoint (`sepgan evaluate --checkpoint soup.ckpt ...`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from sepgan.models import load_separator, save_separator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="the averaged checkpoint to write (must not exist)")
    parser.add_argument("checkpoints", nargs="+", help="checkpoints of the same network, the first one's head kept")
    args = parser.parse_args()
    if Path(args.out).exists():
        parser.error(f"'{args.out}' exists: not overwritten")

    models = [load_separator(path) for path in args.checkpoints]
    states = [model.net.state_dict() for model in models]
    if any(state.keys() != states[0].keys() or any(state[k].shape != states[0][k].shape for k in state)
           for state in states):
        parser.error("the checkpoints are not all the same network")
    averaged = {key: torch.stack([state[key].double() for state in states]).mean(0).to(value.dtype)
                if value.is_floating_point() else value for key, value in states[0].items()}
    models[0].net.load_state_dict(averaged)
    save_separator(models[0], args.out)
    print(f"written: {args.out} (the mean of {len(models)} checkpoints)")


if __name__ == "__main__":
    main()
