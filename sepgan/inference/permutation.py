"""Several voices from audio of any length, each kept on the same output across chunks.

A separator of voices returns them in no fixed order, and the order can change from one chunk to
the next: chunked separation alone would swap speakers at chunk borders. `SpeakerChunkedSeparator`
runs the same context-padded windows as `ChunkedSeparator` and aligns each window's outputs to the
previous window's before its kept part is used.

Where the alignment looks: neighbouring windows overlap by twice the context (window j's right
context and kept tail, [core, window), is the same stretch of signal as window j+1's left context
and kept head, [0, 2 x context)). Both windows estimate every voice there, so the permutation of
window j+1 whose outputs correlate best with window j's (already aligned) outputs over that stretch
is the one that keeps each speaker on its track. The kept parts still abut, so the result is exact
wherever the order did not change; the context only serves as the common ground to compare. A
context of zero would leave nothing to compare, so the context is at least `min_context_seconds`.

When does the order change at a border? With the default context (the model's receptive field)
every kept sample equals what whole-file processing gives, so a border adds no swap of its own and
the alignment finds the identity; it earns its keep when the context is shortened for speed
(`--context-seconds`), and for models whose outputs depend on the whole window (a recurrent or
attention bottleneck over time), where each window decides the voices' order by itself.

When a voice is silent in the overlap, the correlation says nothing about it; when the overlap is
silent altogether the previous window's permutation is kept, since a model tends to put a voice on
the same output as long as it sounds the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from sepgan.inference.backends import TorchBackend
from sepgan.inference.chunked import CHUNK_SECONDS, ChunkedSeparator, centred, fit_length, level, resampled
from sepgan.models import SpeakerSeparator

SILENCE = 1e-10  # mean power below which an overlap is treated as silent (about -100 dBFS)


def align_permutation(previous: np.ndarray, current: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """The order of `current` (sources, n) that best matches `previous` (sources, n), by correlation.

    Returns `perm` with `current[perm]` on the tracks of `previous`; `fallback` when either is silent.
    """
    if np.mean(np.square(previous)) < SILENCE or np.mean(np.square(current)) < SILENCE:
        return fallback
    p = previous / (np.linalg.norm(previous, axis=-1, keepdims=True) + 1e-12)
    c = current / (np.linalg.norm(current, axis=-1, keepdims=True) + 1e-12)
    _, perm = linear_sum_assignment(p @ c.T, maximize=True)  # rows are tracks, so perm[track] = source
    return perm


class SpeakersBackend(TorchBackend):
    """A `SpeakerSeparator` behind the Backend protocol, with `source_features` for every voice."""

    name = "torch"

    def __init__(self, model: SpeakerSeparator, device: str | torch.device = "cpu"):
        if not isinstance(model, SpeakerSeparator):
            raise ValueError("this checkpoint separates speech from noise, not voices; train a speaker model "
                             "(+experiment=two_speakers) or leave out --speakers")
        super().__init__(model, device)
        self.sources = model.sources

    def source_features(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, sources, channels, freq, frames) from normalised mixture features."""
        with torch.inference_mode():
            return torch.stack(self.model.separate_features(features.to(self.device)), dim=1)


class SpeakerChunkedSeparator(ChunkedSeparator):
    """`ChunkedSeparator` for a backend with `sources` and `source_features`: blocks come out (channels, sources, n)."""

    def __init__(self, backend, chunk_seconds: float = CHUNK_SECONDS, batch_size: int = 1,
                 context_seconds: float | None = None, min_context_seconds: float = 0.1):
        if context_seconds is not None:
            context_seconds = max(context_seconds, min_context_seconds)
        super().__init__(backend, chunk_seconds, batch_size, context_seconds)
        self.sources = backend.sources
        self._previous: np.ndarray | None = None  # the last window's aligned voices (channels, sources, length)
        self._perm: np.ndarray | None = None  # the last window's permutation per channel (channels, sources)

    def _voices(self, windows: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Voices (n, channels, sources, length) of windows (n, channels, length), in the model's order."""
        n, channels, length = windows.shape
        fe = self.frontend
        device = getattr(self.backend, "device", torch.device("cpu"))
        x = torch.from_numpy(np.ascontiguousarray(windows.reshape(n * channels, length))).to(device)
        level_ = torch.from_numpy(np.tile(scale, n).astype(np.float32)).reshape(-1, 1).to(device)
        padded = max(length, fe.n_fft)
        with torch.inference_mode():
            spec = fe.stft(F.pad(x / level_, (0, padded - length)))
            features = self.backend.source_features(fe.to_features(spec)).to(device)
            flat = fe.from_features(features.flatten(0, 1), spec.repeat_interleave(self.sources, dim=0))
            voices = fe.istft(flat, padded)[:, :length].reshape(n * channels, self.sources, length) * level_[:, None]
        return voices.cpu().numpy().reshape(n, channels, self.sources, length)

    def _speech(self, windows: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Voices of consecutive windows, each put in the order of the window before it."""
        voices = self._voices(windows, scale)
        overlap = 2 * self.context
        for w in range(len(voices)):
            if self._previous is None:
                self._perm = np.tile(np.arange(self.sources), (voices.shape[1], 1))
            else:
                n = min(overlap, voices.shape[-1])
                for c in range(voices.shape[1]):
                    self._perm[c] = align_permutation(self._previous[c, :, self.core:self.core + n],
                                                      voices[w, c, :, :n], self._perm[c])
                    voices[w, c] = voices[w, c, self._perm[c]]
            self._previous = voices[w]
        return voices

    def stream(self, blocks: Iterable[np.ndarray], total: int, scale: np.ndarray) -> Iterator[np.ndarray]:
        """As `ChunkedSeparator.stream`, but blocks of voices (channels, sources, n), each voice on one track."""
        self._previous = self._perm = None
        yield from super().stream(blocks, total, scale)

    def separate(self, wav: np.ndarray | torch.Tensor, sample_rate: int | None = None,
                 fix_nonfinite: bool = False) -> np.ndarray:
        """Voices (sources, *wav.shape) of in-memory audio (samples,) or (channels, samples); checked as
        `ChunkedSeparator.separate` checks it."""
        wav, signal, rate, model_rate = self._prepare(wav, sample_rate, fix_nonfinite)
        channels = len(signal)
        offset, scale, total = level(model_rate)
        flat = (b.reshape(channels * self.sources, -1) for b in self.stream(centred(model_rate, offset), total, scale))
        out = np.concatenate(list(fit_length(resampled(flat, self.sample_rate, rate, channels * self.sources),
                                             signal.shape[-1])), axis=1)
        return out.reshape(channels, self.sources, -1).transpose(1, 0, 2).reshape(self.sources, *wav.shape)
