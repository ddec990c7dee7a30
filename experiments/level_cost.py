"""Where a separator's U-Net spends its time: each block's share of one forward pass, on one CPU thread.

    python experiments/level_cost.py [--checkpoint CKPT] [--seconds 30] [--repeats 3]

Counting multiply-adds says every level of the shipped U-Net costs about the same (each halves the
bins and frames and doubles the channels), but narrow convolutions run far below the CPU's peak, so
the measured split is what decides where a cheaper or a wider network should change. Times come
from forward hooks on the U-Net's blocks, on features of `--seconds` of noise, after one warm-up pass,
in the channels-last layout `sepgan separate`'s PyTorch backend uses.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from torch import nn

from sepgan.models import load_separator
from sepgan.pretrained import default_checkpoint


def block_times(net: nn.Module, features: torch.Tensor, repeats: int) -> tuple[dict[str, float], float]:
    """Seconds per forward pass of each top-level block of `net` (list members one by one), and the whole."""
    spent: dict[str, float] = defaultdict(float)
    started: dict[str, float] = {}
    hooks = []
    for name, module in net.named_children():
        members = [(f"{name}.{i}", m) for i, m in enumerate(module)] if isinstance(module, nn.ModuleList) else [(name, module)]
        for label, member in members:
            hooks.append(member.register_forward_pre_hook(lambda *_, k=label: started.__setitem__(k, time.perf_counter())))
            hooks.append(member.register_forward_hook(
                lambda *_, k=label: spent.__setitem__(k, spent[k] + time.perf_counter() - started[k])))
    with torch.inference_mode():
        net(features)
        spent.clear()
        start = time.perf_counter()
        for _ in range(repeats):
            net(features)
        whole = (time.perf_counter() - start) / repeats
    for hook in hooks:
        hook.remove()
    return {k: v / repeats for k, v in spent.items()}, whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="default: the shipped model")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_separator(args.checkpoint or default_checkpoint()).eval().to(memory_format=torch.channels_last)
    fe = model.frontend
    torch.manual_seed(0)
    features = fe.encode(torch.randn(1, int(args.seconds * fe.sample_rate)) * 0.1)
    features = features.contiguous(memory_format=torch.channels_last)
    times, whole = block_times(model.net, features, args.repeats)
    print(f"U-Net forward on {args.seconds:g} s ({features.shape[-1]} frames), one thread: {whole:.3f} s "
          f"(real-time factor {whole / args.seconds:.4f})")
    print("| block | seconds | share |")
    print("|---|---|---|")
    for name, seconds in sorted(times.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {seconds:.3f} | {100 * seconds / whole:.0f} % |")


if __name__ == "__main__":
    main()
