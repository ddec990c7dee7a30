"""Spectrogram pictures, shared by training logs, experiment reports and the web page.

The axes (time in seconds, frequency in Hz) are drawn by `librosa.display.specshow`, which places
every STFT frame and bin where it belongs for the front-end's sample rate, hop and window. librosa
is imported only when a picture is drawn: its first use loads numba and takes a second or two, which
neither `import sepgan` nor the server's start-up should pay.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no screen on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from sepgan.audio import FrontEnd  # noqa: E402


def spectrogram_figure(signals: dict[str, torch.Tensor], frontend: FrontEnd, range_db: float = 80.0):
    """One panel per named waveform (samples,), in dB on a shared colour scale, with time and frequency axes."""
    import librosa.display

    specs = {name: 20 * torch.log10(frontend.stft(wav.detach().float().cpu()[None]).abs()[0] + 1e-8).numpy()
             for name, wav in signals.items()}
    top = max(float(s.max()) for s in specs.values())
    fig, axes = plt.subplots(1, len(specs), figsize=(4 * len(specs), 3), sharey=True, squeeze=False)
    for ax, (name, spec) in zip(axes[0], specs.items()):
        mesh = librosa.display.specshow(spec, sr=frontend.sample_rate, hop_length=frontend.hop_length,
                                        n_fft=frontend.n_fft, x_axis="s", y_axis="linear", ax=ax, cmap="magma",
                                        vmin=top - range_db, vmax=top)
        ax.set_title(name)
        ax.set_xlabel("time (s)")
        ax.label_outer()
    axes[0][0].set_ylabel("frequency (Hz)")
    fig.colorbar(mesh, ax=axes[0].tolist(), format="%+.0f dB")
    return fig


def figure_to_array(fig) -> np.ndarray:
    """RGB pixels (height, width, 3) of a figure."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
