"""The PyTorch backend's arithmetic (`--precision`): float32, or bf16 where a CPU computes it natively.

Kept free of torch at import time, so that commands can offer the choices before loading a model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# "auto" is bf16 where `native_bf16` holds, float32 elsewhere.
PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether `device` is a CPU whose instructions compute bf16 (AVX512-BF16 or AMX).

    There the shipped model separates in 55-60 % of its float32 time (README, "The
    shipped model"). Elsewhere it emulates bf16, which was not measured, so "auto" keeps float32;
    GPUs are left out of "auto" too: bf16 inference was measured on a CPU only.
    """
    import torch

    if device.type != "cpu":
        return False
    checks = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(check is not None and check() for check in checks)


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a `--precision` value runs at on `device` (fp32 or bf16); one it cannot run is refused."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}'; choose {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "bf16" and device.type not in ("cpu", "cuda"):
        raise ValueError(f"bf16 runs on a CPU or a CUDA GPU, not on '{device}'; use --precision fp32")
    return precision
