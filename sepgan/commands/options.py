"""Argument types shared by the `sepgan` commands: a bad value is a usage error (exit code 2) naming the option.

argparse turns the `ValueError` these raise into `sepgan <command>: error: argument --NAME: ...`.
"""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def port(text: str) -> int:
    value = positive_int(text) if text != "0" else 0  # 0: any free port
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {value}")
    return value


def torch_device(text: str) -> str:
    """A torch device this machine has (`cpu`, `cuda`, `cuda:1`, `mps`, ...), tried with an empty tensor."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError) as err:
        raise argparse.ArgumentTypeError(f"'{text}' is not a torch device ({err})") from None
    if device.type == "meta":
        raise argparse.ArgumentTypeError("the meta device holds no data; use cpu or a GPU")
    try:
        torch.empty(0, device=device)
    except Exception as err:  # AssertionError for CUDA in a CPU build, RuntimeError for a missing index
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0].split(". ")[0][:160]
        raise argparse.ArgumentTypeError(f"device '{text}' is not available on this machine ({reason}); "
                                         f"use --device cpu") from None
    return text
