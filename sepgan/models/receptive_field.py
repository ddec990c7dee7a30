"""How far an output frame of a separator reaches into its input: measured, not derived.

Chunked separation pads every chunk with this many frames of context, which makes chunks equal
the whole file. A checkpoint written by `save_separator` stores the figure, so loading it needs
no probe (the probe of a model with seconds of context holds hundreds of MB for a moment).
"""

from __future__ import annotations

import torch
from torch import nn


def receptive_field(model: nn.Module, frames: int = 128, max_frames: int = 8192) -> int:
    """Input frames on each side that an output frame depends on, found by back-propagation.

    Measured rather than derived from the architecture, so it holds for every block type, depth and
    future change. The gradient of a `time_factor`-wide group of output frames (all positions on the
    down-sampling grid) reaches exactly the inputs they depend on; the window doubles until the
    reach stays inside it. A model whose reach still hits an edge of `max_frames` frames (a window of about a minute
    at 16 kHz) has no usable bound, as with a recurrent layer over all frames, and is refused.
    """
    factor = model.net.time_factor
    fe = model.frontend
    device = next(model.parameters()).device  # the probe runs where the model is (e.g. --device cuda)
    generator = torch.Generator().manual_seed(0)  # on the CPU: the same probe on every device
    was_training = model.training
    model.eval()
    try:
        while True:
            centre = frames // 2 // factor * factor
            x = torch.randn(1, fe.channels, fe.n_freq, frames, generator=generator).to(device).requires_grad_()
            with torch.enable_grad():
                speech = model.separate_features(x)[0]  # speech, or the first of several voices
                (grad,) = torch.autograd.grad(speech[..., centre:centre + factor].abs().sum(), x)
            reached = torch.nonzero(grad.abs().sum(dim=(0, 1, 2)).cpu()).flatten()
            first, last = int(reached.min()), int(reached.max())
            if first > 0 and last < frames - 1:
                return max(centre - first, last - (centre + factor - 1))
            if frames >= max_frames:
                raise ValueError(f"the model's output depends on input frames more than {frames // 2} frames away "
                                 "(an unbounded receptive field, e.g. a recurrent layer over all frames), so "
                                 "chunked separation cannot match the whole file")
            frames *= 2
    finally:
        model.train(was_training)
