"""A U-Net over spectrogram features whose intermediate block is chosen by name.

`n_blocks` counts every intermediate block: `(n_blocks - 1) / 2` encoder levels, one bottleneck
and as many decoder levels, so 7 blocks = 3 down-samplings; it is odd, from 3 to 17. Down-sampling is a 2x2 stride-2
convolution and up-sampling a 2x2 stride-2 transposed convolution, as in the study; skips are
concatenated. Inputs of any size are zero-padded to a multiple of 2**levels bins and `time_factor`
frames (2**levels x `frame_stack`) and cropped back.

`bottleneck` adds temporal modelling after the bottleneck block: `none` (the study's U-Net) or
`dilated` (`DilatedTemporal`: residual dilated convolutions over time, `dilations` per layer).

`frame_stack` = k > 1 reads k consecutive STFT frames as one step (their channels side by side) and
writes k frames' outputs from each step, so the U-Net's work per second of audio is that of a k times
longer hop while the spectrogram, the mask and the overlap-add keep the short one. Why: version 8
fine-tuned at half its hop gained 0.2-0.3 dB over its control but cost about twice the time
(experiments/ABLATION.md, "Half the hop"). Stacked, it kept part of that SI-SDR gain and none of
its PESQ or VCTK gain (ABLATION, "the finer hop at the coarse hop's cost"), so no preset uses it.
`stack_level=1` stacks after the first level instead: its blocks run at every STFT frame and the
first down-sampling takes 2k frames at once (a stride of 2k in time), so only the levels below it
work at the coarse rate.

`top_block` lightens the full-resolution level, which takes about half of a forward pass on a CPU
(narrow convolutions over every bin and frame; experiments/level_cost.py): `same` (its blocks are
the other levels'), `conv` (one 3x3 Conv-norm-activation on each side) or `none` (no encoder block; a
1x1 Conv-norm-activation merges the skip and the up-sampled path). Why: half the STFT hop gains in
SI-SDR, PESQ and on VCTK only when every level below works at the finer rate, and costs twice the
time (experiments/ABLATION.md); a lighter top level was to pay for that. Measured, it takes a quarter
to two fifths off the half hop's time, keeps most of its gain, but starts 1.3-1.9 dB below the full
model and was still 0.8-0.9 dB below after 2000 CPU steps (ABLATION, "a lighter full-resolution
level"), so no preset uses it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sepgan.models.blocks import BLOCKS, ConvBlock, DilatedTemporal, make_activation, make_norm

TOP_BLOCKS = ("same", "conv", "none")
N_BLOCKS = range(3, 18, 2)  # 1 to 8 down-samplings; 8 already pads the input to a multiple of 256 bins and frames


class UNet(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_freq: int,
        block: str = "dense",
        n_blocks: int = 7,
        channels: int = 24,
        channel_mult: int = 1,
        layers: int = 3,
        norm: str = "batch",
        activation: str = "relu",
        dropout: float = 0.0,
        bn_factor: int = 16,
        bottleneck: str = "none",
        dilations: tuple[int, ...] = (1, 2, 4, 8),
        temporal_kernel: int = 3,
        frame_stack: int = 1,
        stack_level: int = 0,
        top_block: str = "same",
    ):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"model.unet.block must be one of {sorted(BLOCKS)}, got '{block}'")
        if n_blocks not in N_BLOCKS:
            raise ValueError(f"model.unet.n_blocks={n_blocks!r}: expected an odd number from {N_BLOCKS[0]} to "
                             f"{N_BLOCKS[-1]} (the study used 7 to 17; 3 and 5 make small, fast models)")
        if bottleneck not in ("none", "dilated"):
            raise ValueError(f"model.unet.bottleneck must be 'none' or 'dilated', got '{bottleneck}'")
        if isinstance(frame_stack, bool) or not isinstance(frame_stack, int) or frame_stack < 1:
            raise ValueError(f"model.unet.frame_stack must be a positive integer (STFT frames per U-Net step), "
                             f"got {frame_stack!r}")
        self.levels = (n_blocks - 1) // 2
        self.factor = 2 ** self.levels
        if stack_level not in (0, 1):
            raise ValueError(f"model.unet.stack_level must be 0 (stack at the input) or 1 (after the first level), "
                             f"got {stack_level!r}")
        if top_block not in TOP_BLOCKS:
            raise ValueError(f"model.unet.top_block must be one of {list(TOP_BLOCKS)} (the full-resolution "
                             f"level's blocks), got {top_block!r}")
        self.frame_stack = frame_stack
        self.stack_level = stack_level
        at_input = frame_stack if stack_level == 0 else 1  # frames per step of the full-resolution level
        self.time_factor = self.factor * frame_stack  # input frames per bottleneck step: chunks align to it
        self.n_freq = n_freq
        padded_freq = -(-n_freq // self.factor) * self.factor
        ch = [channels * channel_mult**level for level in range(self.levels + 1)]
        make_block = BLOCKS[block]
        opts = dict(layers=layers, norm=norm, activation=activation, bn_factor=bn_factor)

        def step(level):  # (frequency, time) kernel and stride of the down-sampling below `level`
            return (2, 2 * frame_stack) if stack_level == 1 and level == 0 else (2, 2)

        def down(level, c_in, c_out):
            return nn.Sequential(nn.Conv2d(c_in, c_out, step(level), stride=step(level)), make_norm(norm, c_out),
                                 make_activation(activation))

        def up(level, c_in, c_out):
            return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, step(level), stride=step(level)),
                                 make_norm(norm, c_out), make_activation(activation))

        def block(level, c_in, c_out):
            if level > 0 or top_block == "same":
                return make_block(c_in, c_out, padded_freq // 2**level, **opts)
            if top_block == "conv":
                return ConvBlock(c_in, c_out, padded_freq, layers=1, norm=norm, activation=activation)
            if c_in == c_out:  # top_block=none: the encoder passes its input on
                return nn.Identity()
            return nn.Sequential(nn.Conv2d(c_in, c_out, 1), make_norm(norm, c_out), make_activation(activation))

        self.first = nn.Conv2d(in_channels * at_input, ch[0], 1)
        self.encoders = nn.ModuleList(block(i, ch[i], ch[i]) for i in range(self.levels))
        self.downs = nn.ModuleList(down(i, ch[i], ch[i + 1]) for i in range(self.levels))
        self.bottleneck = make_block(ch[-1], ch[-1], padded_freq // self.factor, **opts)
        self.temporal = (DilatedTemporal(ch[-1], tuple(dilations), temporal_kernel, norm, activation)
                         if bottleneck == "dilated" else nn.Identity())
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.ups = nn.ModuleList(up(i, ch[i + 1], ch[i]) for i in range(self.levels))
        self.decoders = nn.ModuleList(block(i, 2 * ch[i], ch[i]) for i in range(self.levels))
        self.last = nn.Conv2d(ch[0], out_channels * at_input, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, in_channels, freq, frames) -> (batch, out_channels, freq, frames)."""
        n_freq, n_frames = x.shape[-2:]
        if n_freq != self.n_freq:
            raise ValueError(f"U-Net built for {self.n_freq} frequency bins got {n_freq}")
        pad_f = -n_freq % self.factor
        pad_t = -n_frames % self.time_factor
        h = self.first(self._stack(F.pad(x, (0, pad_t, 0, pad_f))))
        skips = []
        for encode, down in zip(self.encoders, self.downs):
            h = encode(h)
            skips.append(h)
            h = down(h)
        h = self.dropout(self.temporal(self.bottleneck(h)))
        for level in reversed(range(self.levels)):
            h = self.ups[level](h)
            h = self.decoders[level](torch.cat((h, skips[level]), dim=1))
        return self._unstack(self.last(h))[..., :n_freq, :n_frames]

    def _stack(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, c, freq, k * steps) -> (batch, k * c, freq, steps); channel j * c + i is channel i of frame j of a step."""
        k = self.frame_stack
        if k == 1 or self.stack_level != 0:
            return x
        b, c, f, t = x.shape
        return x.reshape(b, c, f, t // k, k).permute(0, 4, 1, 2, 3).reshape(b, k * c, f, t // k)

    def _unstack(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of `_stack`."""
        k = self.frame_stack
        if k == 1 or self.stack_level != 0:
            return x
        b, kc, f, steps = x.shape
        return x.reshape(b, k, kc // k, f, steps).permute(0, 2, 3, 4, 1).reshape(b, kc // k, f, steps * k)
