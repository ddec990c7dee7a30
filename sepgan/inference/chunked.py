"""Clean audio of any length, in chunks that give the same result as the whole file at once.

Why the chunks do not show:
- the mixture's DC offset is removed and the mixture normalised by the whole signal's mean and RMS
  (found in a first streaming pass, `level`), not by each chunk's, so every chunk is shifted and
  scaled as the whole file would be;
- every chunk starts on the U-Net's grid (a multiple of hop x 2**levels samples), so each STFT
  frame and each strided convolution sees exactly what it sees in the whole file;
- every chunk carries `context` samples on each side, at least the model's measured receptive
  field plus one STFT window (and one hop more with `shifts`, whose grids start up to a hop
  earlier), and the context is thrown away after the model.
Neighbouring windows therefore overlap by twice the context and their kept parts abut: the two
estimates of a boundary sample are equal already, so a cross-fade would have nothing to blend.
(The original web app cut files into plain 2 s pieces, with audible seams.)

Memory does not grow with the file: it is read, resampled (soxr streams) and written in blocks,
and at most `batch_size` windows go through the model at once.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Iterator
from itertools import chain

import numpy as np
import soxr
import torch
import torch.nn.functional as F

from sepgan.audio import AudioError, FiniteCheck

EPS = 1e-8  # as in sepgan.audio.rms, so chunked and whole-file scaling agree


# The default kept part of each window. Long chunks waste less work on context: the shipped model
# carries about 5 s of it on each side, so 4 s chunks spent 70 % of their time on context, 16 s chunks
# 40 % and 30 s chunks 27 %; on a 60 s file (1 thread) 30 s instead of 16 s took ONNX Runtime from a
# real-time factor of 0.024 to 0.020 (README "The shipped model", Speed).
CHUNK_SECONDS = 30.0


def _round_up(n: int, unit: int) -> int:
    return -(-n // unit) * unit


class ChunkedSeparator:
    """Runs a backend over signals of any length in batched, context-padded windows.

    `chunk_seconds` is the kept part of each window (rounded to the U-Net's grid); longer chunks
    waste less time on context but need more memory (see `CHUNK_SECONDS`); batches pay off on a GPU. `context_seconds` defaults to what the model's receptive field requires; a
    shorter one trades exactness for speed.

    `shifts` > 1 averages the speech of that many STFT frame grids, offset by hop / `shifts` from one
    another (the mixture delayed by 0, hop/shifts, ... samples, and the speech moved back): each grid
    places frame edges elsewhere, so their errors partly cancel. It costs `shifts` times the model's
    work; 2 shifts raised the shipped model's SI-SDRi by 0.14 dB on the test split (README, "The shipped model").
    """

    def __init__(self, backend, chunk_seconds: float = CHUNK_SECONDS, batch_size: int = 1,
                 context_seconds: float | None = None, shifts: int = 1):
        if chunk_seconds <= 0:
            raise ValueError(f"chunk length must be positive, got {chunk_seconds} s")
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        shifts = operator.index(shifts)
        if not 1 <= shifts <= backend.frontend.hop_length:
            raise ValueError(f"shifts must be from 1 to the hop length ({backend.frontend.hop_length}), got {shifts}")
        if context_seconds is not None and context_seconds < 0:
            raise ValueError(f"context must not be negative, got {context_seconds} s")
        self.backend = backend
        self.frontend = fe = backend.frontend
        self.sample_rate = fe.sample_rate
        unit = fe.hop_length * backend.time_factor
        # An output sample depends on the frames within half a window of it, each of those on the
        # frames within the receptive field, and those on samples within half a window again.
        # A shifted grid starts up to one hop earlier.
        needed = backend.receptive_field * fe.hop_length + fe.n_fft + (fe.hop_length if shifts > 1 else 0)
        context = needed if context_seconds is None else round(context_seconds * fe.sample_rate)
        self.context = _round_up(context, unit)
        self.core = max(unit, round(chunk_seconds * fe.sample_rate / unit) * unit)
        self.window = self.core + 2 * self.context
        self.batch_size = batch_size
        self.offsets = [k * fe.hop_length // shifts for k in range(shifts)]

    def _speech(self, windows: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Speech of windows (n, channels, length), each channel normalised by its whole-signal level.

        Every tensor is made on the backend's device (`TorchBackend(device=...)`; the CPU for ONNX),
        STFT window included (`FrontEnd` makes it beside its input); only the result comes back.
        """
        n, channels, length = windows.shape
        fe = self.frontend
        device = getattr(self.backend, "device", torch.device("cpu"))
        x = torch.from_numpy(np.ascontiguousarray(windows.reshape(n * channels, length))).to(device)
        level = torch.from_numpy(np.tile(scale, n).astype(np.float32)).reshape(-1, 1).to(device)
        with torch.inference_mode():
            grids = []
            for offset in self.offsets:  # the frame grid starts `offset` samples before the window
                padded = max(offset + length, fe.n_fft)  # only a signal shorter than one STFT window needs the end padded
                spec = fe.stft(F.pad(x / level, (offset, padded - offset - length)))
                speech_features = self.backend.speech_features(fe.to_features(spec)).to(device)
                grids.append(fe.istft(fe.from_features(speech_features, spec), padded)[:, offset:offset + length])
            speech = (grids[0] if len(grids) == 1 else torch.stack(grids).mean(0)) * level
        return speech.cpu().numpy().reshape(n, channels, length)

    def stream(self, blocks: Iterable[np.ndarray], total: int, scale: np.ndarray) -> Iterator[np.ndarray]:
        """Speech of a signal of `total` samples at the model's rate, given and returned in blocks.

        `blocks` are (channels, n) float32 with the whole signal's offset removed (`centred`); `scale`
        (channels,) is each channel's RMS over the whole signal (see `level`). Holds at most
        `batch_size` windows plus one block.
        """
        core, context, window = self.core, self.context, self.window
        last = max(0, math.ceil((total - window) / core))  # the first window that reaches the end
        buffer = np.zeros((len(scale), 0), np.float32)
        start = 0  # position of buffer[:, 0] in the signal
        nxt = 0  # next window to run
        for block in chain(blocks, [None]):
            if block is not None:
                buffer = np.concatenate((buffer, np.asarray(block, np.float32)), axis=1)
            end = start + buffer.shape[1]
            while True:
                ready = [j for j in range(nxt, min(last, nxt + self.batch_size)) if j * core + window <= end]
                if not ready or (len(ready) < self.batch_size and block is not None):
                    break
                windows = np.stack([buffer[:, j * core - start:j * core - start + window] for j in ready])
                for j, speech in zip(ready, self._speech(windows, scale)):
                    yield speech[..., 0 if j == 0 else context:context + core]
                nxt = ready[-1] + 1
                buffer, start = buffer[:, nxt * core - start:], nxt * core
        if start + buffer.shape[1] != total:
            raise AudioError(f"expected {total} samples, got {start + buffer.shape[1]}; did the file change?")
        tail = buffer[:, last * core - start:]
        yield self._speech(tail[None], scale)[0][..., 0 if last == 0 else context:]

    def separate(self, wav: np.ndarray | torch.Tensor, sample_rate: int | None = None,
                 fix_nonfinite: bool = False) -> np.ndarray:
        """Speech of in-memory audio (channels, samples) or (samples,) at `sample_rate` (default: the model's).

        The result has the input's shape and rate; each channel is cleaned on its own. NaN or
        infinite samples are a `NonFiniteAudioError` giving the first one's time
        (`fix_nonfinite`: zeros in a copy, and a `NonFiniteWarning`).
        """
        wav, signal, rate, model_rate = self._prepare(wav, sample_rate, fix_nonfinite)
        offset, scale, total = level(model_rate)
        speech = resampled(self.stream(centred(model_rate, offset), total, scale), self.sample_rate, rate, len(signal))
        return np.concatenate(list(fit_length(speech, signal.shape[-1])), axis=1).reshape(wav.shape)

    def _prepare(self, wav: np.ndarray | torch.Tensor, sample_rate: int | None, fix_nonfinite: bool):
        """In-memory audio checked (shape, finite samples) as float32, as (channels, samples), and at the model's rate."""
        if isinstance(wav, torch.Tensor):
            wav = wav.detach().cpu().numpy()
        wav = np.array(wav, np.float32, copy=True) if fix_nonfinite else np.asarray(wav, np.float32)
        if wav.ndim not in (1, 2) or wav.shape[-1] == 0:
            raise ValueError(f"expected audio of shape (samples,) or (channels, samples), got {wav.shape}")
        signal = wav.reshape(-1, wav.shape[-1])
        rate = sample_rate or self.sample_rate
        finite = FiniteCheck("the audio given to separate()", rate, fix_nonfinite)
        finite.check(signal)
        finite.done()
        return wav, signal, rate, list(resampled([signal], rate, self.sample_rate, len(signal)))


def check_dry(dry: float) -> float:
    """`dry` as a float, or a ValueError: it must lie in [0, 1]."""
    dry = float(dry)
    if not 0.0 <= dry <= 1.0:  # also refuses NaN
        raise ValueError(f"dry must be between 0 (fully cleaned) and 1 (the input unchanged), got {dry}")
    return dry


def with_dry(speech: np.ndarray, mixture: np.ndarray, dry: float) -> np.ndarray:
    """The speech estimate with a share `dry` of the input mixed back in (0: the estimate, 1: the input, exactly)."""
    return speech if dry == 0 else np.float32(1 - dry) * speech + np.float32(dry) * mixture


def level(blocks: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """Each channel's mean (its DC offset) and the RMS about it over all blocks, and the sample count.

    As `Separator.forward` normalises a whole signal (`sepgan.models.separator.centred_level`): the
    offset is removed before the model (speech has none; what a recording's offset adds to the
    mixture is noise), then the signal is scaled by its RMS.
    """
    total_sum, energy, total = 0.0, 0.0, 0
    for block in blocks:
        block = np.asarray(block, np.float64)
        total_sum = total_sum + block.sum(axis=1)
        energy = energy + np.square(block).sum(axis=1)
        total += block.shape[1]
    if total == 0:
        raise AudioError("no samples to separate")
    offset = total_sum / total
    return offset.astype(np.float32), np.sqrt(np.maximum(energy / total - offset**2, 0.0) + EPS).astype(np.float32), total


def centred(blocks: Iterable[np.ndarray], offset: np.ndarray) -> Iterator[np.ndarray]:
    """Blocks (channels, n) with each channel's offset (from `level`) taken away."""
    column = np.asarray(offset, np.float32).reshape(-1, 1)
    for block in blocks:
        yield block - column


def resampled(blocks: Iterable[np.ndarray], rate_in: int, rate_out: int, channels: int) -> Iterator[np.ndarray]:
    """Blocks (channels, n) resampled as one continuous stream (identical to resampling it whole)."""
    if rate_in == rate_out:
        yield from blocks
        return
    stream = soxr.ResampleStream(rate_in, rate_out, channels, dtype="float32", quality="HQ")
    for block in blocks:
        out = stream.resample_chunk(np.ascontiguousarray(block.T))
        if len(out):
            yield out.T
    out = stream.resample_chunk(np.zeros((0, channels), np.float32), last=True)
    if len(out):
        yield out.T


def fit_length(blocks: Iterable[np.ndarray], length: int) -> Iterator[np.ndarray]:
    """Blocks cut or zero-padded to exactly `length` samples in all (resampling rounds lengths)."""
    done = 0
    channels = 1
    for block in blocks:
        channels = block.shape[0]
        block = block[:, :length - done]
        done += block.shape[1]
        if block.shape[1]:
            yield block
    if done < length:
        yield np.zeros((channels, length - done), np.float32)
