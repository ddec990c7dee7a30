"""Spectrogram pictures, shared by training logs, experiment reports and the web page."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no screen on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from sepgan.audio import FrontEnd  # noqa: E402


def spectrogram_figure(signals: dict[str, torch.Tensor], frontend: FrontEnd, range_db: float = 80.0):
    """One panel per named waveform (samples,), in dB on a shared colour scale."""
    specs = {name: 20 * torch.log10(frontend.stft(wav.detach().float().cpu()[None]).abs()[0] + 1e-8).numpy()
             for name, wav in signals.items()}
    top = max(float(s.max()) for s in specs.values())
    fig, axes = plt.subplots(1, len(specs), figsize=(4 * len(specs), 3), sharey=True, squeeze=False)
    seconds = next(iter(signals.values())).shape[-1] / frontend.sample_rate
    for ax, (name, spec) in zip(axes[0], specs.items()):
        im = ax.imshow(spec, origin="lower", aspect="auto", vmin=top - range_db, vmax=top, cmap="magma",
                       extent=(0, seconds, 0, frontend.sample_rate / 2000))
        ax.set_title(name)
        ax.set_xlabel("time (s)")
    axes[0][0].set_ylabel("frequency (kHz)")
    fig.colorbar(im, ax=axes[0].tolist(), label="dB")
    return fig


def figure_to_array(fig) -> np.ndarray:
    """RGB pixels (height, width, 3) of a figure."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
