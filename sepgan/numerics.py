"""Numerically safe pieces shared by the front-end, the models and the losses.

Two concerns, both about training that stays finite:

- **Gradients that are finite everywhere.** `sqrt(x)` and `x**p` with `p < 1` have an infinite
  derivative at 0; autograd then multiplies it by the zero gradient of `x = re² + im²` and gets
  NaN, which poisons every weight at the next step. Exact zeros are rare in float32 but common
  once a network computes in 16 bits (bf16 keeps 8 bits of mantissa), which is how mixed precision
  trained to NaN. Every magnitude, compression and norm on the path from the loss to the weights
  goes through the functions here, whose gradients are finite (and bounded) at 0.
- **Full precision around what needs it.** Under mixed precision (`torch.autocast`) only the
  convolutional body of a network should compute in 16 bits; spectra, masks, the inverse STFT,
  losses and metrics stay in float32. `full_precision` turns autocast off for a block of code.

No Lightning or Hydra imports: usable from a notebook.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

FLOOR = 1e-8  # magnitudes below it are treated linearly by the compression (about -160 dB re. RMS 1)
_SERIES_BELOW = 1e-3  # tanh_ratio switches to its Taylor series below this power


def _device_type(where: torch.Tensor | torch.device | str) -> str:
    if isinstance(where, torch.Tensor):
        return where.device.type
    return torch.device(where).type


@contextlib.contextmanager
def full_precision(where: torch.Tensor | torch.device | str) -> Iterator[None]:
    """Autocast off on the device of `where` (a tensor or a device) inside the block.

    Tensors made in 16 bits before the block keep their type: cast them with `upcast`.
    Does nothing when autocast is not on, so it costs nothing in plain float32 code and in tracing.
    """
    kind = _device_type(where)
    if torch.amp.is_autocast_available(kind) and torch.is_autocast_enabled(kind):
        with torch.autocast(kind, enabled=False):
            yield
    else:
        yield


def upcast(x: torch.Tensor) -> torch.Tensor:
    """`x` as float32 if it is a 16-bit float (float64 and integer tensors are left alone)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def magnitude(re: torch.Tensor, im: torch.Tensor, floor: float = 1e-12) -> torch.Tensor:
    """sqrt(re² + im² + floor): the magnitude of a complex number in real arithmetic.

    Its gradient re / magnitude is at most 1 in size everywhere, 0 at exact zeros; `floor` (a power)
    shifts the value by at most sqrt(floor).
    """
    return (re * re + im * im + floor).sqrt()


def tanh_ratio(power: torch.Tensor) -> torch.Tensor:
    """tanh(m) / m for m = sqrt(power) >= 0, with value 1 and a finite gradient (-1/3) at power 0.

    Multiplying a complex mask (re, im) by it squashes the mask's magnitude m to tanh(m) without
    changing its phase, and without ever taking the root of 0. Below `_SERIES_BELOW` the Taylor
    series 1 - p/3 + 2p²/15 is used (its error there is under 1e-10); above it the other branch
    is evaluated on a power kept away from 0, so neither branch makes an infinite gradient.
    """
    small = power < _SERIES_BELOW
    root = torch.where(small, torch.ones_like(power), power).sqrt()
    series = 1.0 - power / 3.0 + (2.0 / 15.0) * power * power
    return torch.where(small, series, torch.tanh(root) / root)


def compression_gain(mag: torch.Tensor, power: float, floor: float = FLOOR) -> torch.Tensor:
    """The factor that turns a magnitude |X| into its compressed |X|^power: max(|X|, floor)^(power - 1).

    `mag * compression_gain(mag, p)` is |X|^p above `floor` and linear below it (|X| floor^(p-1),
    continuous at `floor`), so its gradient is at most floor^(p-1) everywhere instead of infinite
    at 0. Applied to a complex spectrum it compresses the magnitude and keeps the phase.
    """
    return mag.clamp_min(floor).pow(power - 1.0)


def expansion_gain(compressed: torch.Tensor, power: float, floor: float = FLOOR) -> torch.Tensor:
    """The factor that undoes `compression_gain` exactly: max(|Y|, floor^power)^(1/power - 1)."""
    return compressed.clamp_min(floor ** power).pow(1.0 / power - 1.0)


def compress(mag: torch.Tensor, power: float, floor: float = FLOOR) -> torch.Tensor:
    """|X|^power with a finite gradient at 0 (see `compression_gain`); `power` 1 returns `mag`."""
    return mag if power == 1.0 else mag * compression_gain(mag, power, floor)


def expand(compressed: torch.Tensor, power: float, floor: float = FLOOR) -> torch.Tensor:
    """The inverse of `compress` for non-negative input."""
    return compressed if power == 1.0 else compressed * expansion_gain(compressed, power, floor)


def nonfinite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the tensors that hold a NaN or an infinity (one device sync for all of them)."""
    names = [name for name, t in tensors.items() if t is not None and t.numel()]
    if not names:
        return []
    flags = torch.stack([torch.isfinite(tensors[name].detach()).all() for name in names]).cpu()
    return [name for name, ok in zip(names, flags.tolist()) if not ok]
