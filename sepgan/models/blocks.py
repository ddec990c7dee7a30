"""Intermediate blocks of the U-Net. Each maps (batch, in_ch, freq, frames) to (batch, out_ch, freq, frames).

- `DenseBlock`: the study's block, `layers` x [BN-ReLU-Conv3x3] with dense connections
  (each layer sees the block input and every earlier layer's output).
- `TFC`: Choi et al.'s time-frequency convolutions, the same dense pattern in Conv-BN-ReLU order.
- `TFCTDF`: TFC followed by a residual time-distributed fully-connected layer over frequency
  (per frame, Linear F -> F/bn_factor -> F with BN-ReLU), which lets every bin see every other bin.
- `ConvBlock`: plain `layers` x [Conv3x3-activation], the Keras U-Net of the study's Model B.
- `DilatedTemporal`: not a U-Net block but an optional stage after the bottleneck block
  (`model.unet.bottleneck=dilated`), residual dilated convolutions over time; see its docstring.

A block's output is its last layer's `out_ch` channels, so channel counts stay under the U-Net's control.
"""

from __future__ import annotations

import torch
from torch import nn


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"model.norm must be 'batch' or 'none', got '{kind}'")


def make_activation(kind: str) -> nn.Module:
    if kind == "relu":
        return nn.ReLU()
    if kind == "leaky_relu":
        return nn.LeakyReLU(0.2)
    if kind == "gelu":
        return nn.GELU()
    raise ValueError(f"model.activation must be 'relu', 'leaky_relu' or 'gelu', got '{kind}'")


class _DenseLayers(nn.Module):
    """`layers` convolutions, each fed the concatenation of the block input and all earlier outputs."""

    def __init__(self, in_ch: int, out_ch: int, layers: int, norm: str, activation: str, pre_activation: bool):
        super().__init__()
        self.convs = nn.ModuleList()
        for i in range(layers):
            ch = in_ch + i * out_ch
            conv = nn.Conv2d(ch, out_ch, 3, padding=1)
            if pre_activation:  # BN-ReLU-Conv: the norm sees the concatenated input
                self.convs.append(nn.Sequential(make_norm(norm, ch), make_activation(activation), conv))
            else:  # Conv-BN-ReLU
                self.convs.append(nn.Sequential(conv, make_norm(norm, out_ch), make_activation(activation)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in self.convs:
            out = conv(torch.cat(features, dim=1) if len(features) > 1 else features[0])
            features.append(out)
        return features[-1]


class DenseBlock(_DenseLayers):
    def __init__(self, in_ch: int, out_ch: int, n_freq: int, layers: int = 3, norm: str = "batch",
                 activation: str = "relu", **_):
        super().__init__(in_ch, out_ch, layers, norm, activation, pre_activation=True)


class TFC(_DenseLayers):
    def __init__(self, in_ch: int, out_ch: int, n_freq: int, layers: int = 3, norm: str = "batch",
                 activation: str = "relu", **_):
        super().__init__(in_ch, out_ch, layers, norm, activation, pre_activation=False)


class TDF(nn.Module):
    """Per-frame fully connected layers over frequency: F -> F/bn_factor -> F, each with norm and activation."""

    def __init__(self, channels: int, n_freq: int, bn_factor: int = 16, norm: str = "batch", activation: str = "relu"):
        super().__init__()
        hidden = max(n_freq // bn_factor, 2)
        self.fc1 = nn.Linear(n_freq, hidden, bias=False)
        self.norm1 = make_norm(norm, channels)
        self.fc2 = nn.Linear(hidden, n_freq, bias=False)
        self.norm2 = make_norm(norm, channels)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Linear acts on the last axis, so move frequency there and back.
        h = x.transpose(-1, -2)
        h = self.act(self.norm1(self.fc1(h)))
        h = self.act(self.norm2(self.fc2(h)))
        return h.transpose(-1, -2)


class TFCTDF(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, n_freq: int, layers: int = 3, norm: str = "batch",
                 activation: str = "relu", bn_factor: int = 16, **_):
        super().__init__()
        self.tfc = TFC(in_ch, out_ch, n_freq, layers, norm, activation)
        self.tdf = TDF(out_ch, n_freq, bn_factor, norm, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.tfc(x)
        return t + self.tdf(t)


class ConvBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, n_freq: int, layers: int = 2, norm: str = "none",
                 activation: str = "leaky_relu", **_):
        super().__init__()
        mods = []
        for i in range(layers):
            mods += [nn.Conv2d(in_ch if i == 0 else out_ch, out_ch, 3, padding=1), make_norm(norm, out_ch),
                     make_activation(activation)]
        self.body = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class DilatedTemporal(nn.Module):
    """Long temporal context at the bottleneck: residual [norm-activation-Conv(1 x kernel, dilation d)] layers.

    The U-Net's 3x3 convolutions see about 0.75 s on each side (the shipped 9-block model's measured
    receptive field is 94 frames of 8 ms); speech and noise are easier to tell apart over seconds.
    At the bottleneck one frame stands for 2**levels STFT frames (128 ms at 16 kHz with 4 levels), so
    dilations 1, 2, 4, 8 with kernel 3 add 15 bottleneck frames (1.9 s) each side for little compute.

    Why dilated convolutions and not a recurrent or attention layer over all frames: a chunked, exact
    separation (`sepgan.inference.chunked`) needs a bounded receptive field, which it measures by
    back-propagation and then pads every chunk with. A bidirectional GRU reaches every frame of the
    input, so no finite context makes chunks equal the whole file (`receptive_field` refuses such a
    model); a unidirectional one still reaches back to the first frame. The reach here is known,
    two-sided and fixed, it exports to ONNX as plain convolutions, and costs a fraction of the
    full-resolution levels on a CPU. Kernels are 1 wide in frequency: the TFC-TDF blocks already mix
    frequencies. The context only helps if training mixtures are longer than it: in 1 s mixtures the
    outer taps of the dilation-8 layer see nothing but padding and stay at their zero start.
    """

    def __init__(self, channels: int, dilations: tuple[int, ...] = (1, 2, 4, 8), kernel: int = 3,
                 norm: str = "batch", activation: str = "relu"):
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"model.unet.temporal_kernel must be odd and positive, got {kernel}")
        if not dilations or any(int(d) < 1 for d in dilations):
            raise ValueError(f"model.unet.dilations must be positive integers, got {list(dilations)}")
        # BN-ReLU-Conv as in the study's dense blocks; each convolution starts at zero, so the stack starts
        # as the identity: a plain U-Net's weights load into this one unchanged and fine-tune from there.
        self.layers = nn.ModuleList(
            nn.Sequential(make_norm(norm, channels), make_activation(activation),
                          nn.Conv2d(channels, channels, (1, kernel), dilation=(1, int(d)),
                                    padding=(0, int(d) * (kernel - 1) // 2)))
            for d in dilations)
        for layer in self.layers:
            nn.init.zeros_(layer[-1].weight)
            nn.init.zeros_(layer[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = x + layer(x)
        return x


BLOCKS = {"dense": DenseBlock, "tfc": TFC, "tfc_tdf": TFCTDF, "conv": ConvBlock}
