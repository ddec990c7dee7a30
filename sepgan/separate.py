"""Clean audio of any length, in chunks that give the same result as the whole file at once.

Why the chunks do not show:
- the mixture is normalised by the whole signal's RMS (found in a first streaming pass), not by
  each chunk's, so every chunk is scaled as the whole file would be;
- every chunk starts on the U-Net's grid (a multiple of hop x 2**levels samples), so each STFT
  frame and each strided convolution sees exactly what it sees in the whole file;
- every chunk carries `context` samples on each side, at least the model's measured receptive
  field plus one STFT window, and the context is thrown away after the model.
Neighbouring windows therefore overlap by twice the context and their kept parts abut: the two
estimates of a boundary sample are equal already, so a cross-fade would have nothing to blend.
(The original web app cut files into plain 2 s pieces, with audible seams.)

Memory does not grow with the file: it is read, resampled (soxr streams) and written in blocks,
and at most `batch_size` windows go through the model at once.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
import torch.nn.functional as F

from sepgan.audio import AudioError, audio_info

# Output formats by name (`--format`); libsndfile's name for each.
FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "aiff": "AIFF"}
EPS = 1e-8  # as in sepgan.audio.rms, so chunked and whole-file scaling agree


def _round_up(n: int, unit: int) -> int:
    return -(-n // unit) * unit


class ChunkedSeparator:
    """Runs a backend over signals of any length in batched, context-padded windows.

    `chunk_seconds` is the kept part of each window (rounded to the U-Net's grid); longer chunks
    waste less time on context but need more memory. On a loaded 2-core CPU, 4 s chunks one at a
    time were as fast as longer or batched ones for Model A and used the least memory; batches
    pay off on a GPU. `context_seconds` defaults to what the model's receptive field requires; a
    shorter one trades exactness for speed.
    """

    def __init__(self, backend, chunk_seconds: float = 4.0, batch_size: int = 1,
                 context_seconds: float | None = None):
        if chunk_seconds <= 0:
            raise ValueError(f"chunk length must be positive, got {chunk_seconds} s")
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        if context_seconds is not None and context_seconds < 0:
            raise ValueError(f"context must not be negative, got {context_seconds} s")
        self.backend = backend
        self.frontend = fe = backend.frontend
        self.sample_rate = fe.sample_rate
        unit = fe.hop_length * backend.time_factor
        # An output sample depends on the frames within half a window of it, each of those on the
        # frames within the receptive field, and those on samples within half a window again.
        needed = backend.receptive_field * fe.hop_length + fe.n_fft
        context = needed if context_seconds is None else round(context_seconds * fe.sample_rate)
        self.context = _round_up(context, unit)
        self.core = max(unit, round(chunk_seconds * fe.sample_rate / unit) * unit)
        self.window = self.core + 2 * self.context
        self.batch_size = batch_size

    def _speech(self, windows: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Speech of windows (n, channels, length), each channel normalised by its whole-signal level."""
        n, channels, length = windows.shape
        fe = self.frontend
        device = getattr(self.backend, "device", torch.device("cpu"))
        x = torch.from_numpy(np.ascontiguousarray(windows.reshape(n * channels, length))).to(device)
        level = torch.from_numpy(np.tile(scale, n).astype(np.float32)).reshape(-1, 1).to(device)
        padded = max(length, fe.n_fft)  # only a signal shorter than one STFT window needs this
        with torch.inference_mode():
            spec = fe.stft(F.pad(x / level, (0, padded - length)))
            speech_features = self.backend.speech_features(fe.to_features(spec)).to(device)
            speech = fe.istft(fe.from_features(speech_features, spec), padded)[:, :length] * level
        return speech.cpu().numpy().reshape(n, channels, length)

    def stream(self, blocks: Iterable[np.ndarray], total: int, scale: np.ndarray) -> Iterator[np.ndarray]:
        """Speech of a signal of `total` samples at the model's rate, given and returned in blocks.

        `blocks` are (channels, n) float32; `scale` (channels,) is each channel's RMS over the
        whole signal (see `level`). Holds at most `batch_size` windows plus one block.
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
                    yield speech[:, 0 if j == 0 else context:context + core]
                nxt = ready[-1] + 1
                buffer, start = buffer[:, nxt * core - start:], nxt * core
        if start + buffer.shape[1] != total:
            raise AudioError(f"expected {total} samples, got {start + buffer.shape[1]}; did the file change?")
        tail = buffer[:, last * core - start:]
        yield self._speech(tail[None], scale)[0][:, 0 if last == 0 else context:]

    def separate(self, wav: np.ndarray | torch.Tensor, sample_rate: int | None = None) -> np.ndarray:
        """Speech of in-memory audio (channels, samples) or (samples,) at `sample_rate` (default: the model's).

        The result has the input's shape and rate; each channel is cleaned on its own.
        """
        if isinstance(wav, torch.Tensor):
            wav = wav.detach().cpu().numpy()
        wav = np.asarray(wav, np.float32)
        if wav.ndim not in (1, 2) or wav.shape[-1] == 0:
            raise ValueError(f"expected audio of shape (samples,) or (channels, samples), got {wav.shape}")
        signal = wav.reshape(-1, wav.shape[-1])
        rate = sample_rate or self.sample_rate
        model_rate = list(resampled([signal], rate, self.sample_rate, len(signal)))
        scale, total = level(model_rate)
        speech = resampled(self.stream(model_rate, total, scale), self.sample_rate, rate, len(signal))
        return np.concatenate(list(fit_length(speech, signal.shape[-1])), axis=1).reshape(wav.shape)


def level(blocks: Iterable[np.ndarray]) -> tuple[np.ndarray, int]:
    """Each channel's RMS over all blocks (as `sepgan.audio.rms` computes it) and the sample count."""
    energy, total = 0.0, 0
    for block in blocks:
        energy = energy + np.square(block, dtype=np.float64).sum(axis=1)
        total += block.shape[1]
    if total == 0:
        raise AudioError("no samples to separate")
    return np.sqrt(energy / total + EPS).astype(np.float32), total


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


def read_blocks(path: Path, block_frames: int, mono: bool) -> Iterator[np.ndarray]:
    """A file as float32 blocks (channels, n), optionally mixed down; corrupt or truncated data is named."""
    info = audio_info(path)
    done = 0
    try:
        with sf.SoundFile(str(path)) as f:
            for data in f.blocks(block_frames, dtype="float32", always_2d=True):
                done += len(data)
                block = np.ascontiguousarray(data.T)
                yield block.mean(axis=0, keepdims=True) if mono else block
    except RuntimeError as err:  # libsndfile's decoding errors
        raise AudioError(f"cannot decode '{path}' after {done / info.samplerate:.1f} s ({err}); "
                         f"the file may be truncated or corrupt") from None
    if done < info.frames:
        raise AudioError(f"'{path}' is truncated: its header promises {info.frames} samples, only {done} could be read")


class _Takes:
    """Exactly n samples at a time from a stream of blocks (to pair the mixture with the speech)."""

    def __init__(self, blocks: Iterable[np.ndarray], channels: int):
        self.blocks = iter(blocks)
        self.buffer = np.zeros((channels, 0), np.float32)

    def take(self, n: int) -> np.ndarray:
        while self.buffer.shape[1] < n:
            block = next(self.blocks, None)
            if block is None:
                raise AudioError("the input ended before the speech estimate; did the file change?")
            self.buffer = np.concatenate((self.buffer, block), axis=1)
        out, self.buffer = self.buffer[:, :n], self.buffer[:, n:]
        return out


@dataclass(frozen=True)
class OutputFormat:
    """How a result is written: libsndfile format and subtype, and the sample rate."""

    format: str
    subtype: str
    sample_rate: int

    @classmethod
    def for_input(cls, info, format: str | None = None, subtype: str | None = None,
                  sample_rate: int | None = None) -> OutputFormat:
        """The input's format, subtype and rate, except where asked otherwise (and where the format allows)."""
        fmt = FORMATS[format] if format else info.format
        if subtype is None:
            subtype = info.subtype if sf.check_format(fmt, info.subtype) else sf.default_subtype(fmt)
        if not sf.check_format(fmt, subtype):
            raise ValueError(f"format {fmt} cannot hold {subtype} samples; "
                             f"choose one of {sorted(sf.available_subtypes(fmt))}")
        if sample_rate is not None and sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {sample_rate}")
        return cls(fmt, subtype, sample_rate or info.samplerate)


class _AtomicWriter:
    """An audio file written under a temporary name in its folder and renamed when complete.

    A reader never sees half a file, and a failed run leaves no file behind. An existing file is
    replaced only with `overwrite` (checked again just before the rename).
    """

    def __init__(self, path: Path, channels: int, out: OutputFormat, overwrite: bool):
        self.path, self.overwrite = Path(path), overwrite
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".part")
        os.close(fd)
        self.tmp = Path(tmp)
        try:
            self.file = sf.SoundFile(tmp, "w", out.sample_rate, channels, out.subtype, format=out.format)
        except Exception:
            self.tmp.unlink(missing_ok=True)
            raise

    def write(self, block: np.ndarray) -> None:
        self.file.write(block.T)

    def commit(self) -> None:
        self.file.close()
        if self.path.exists() and not self.overwrite:
            raise FileExistsError(f"'{self.path}' appeared while separating; not overwritten (--overwrite to replace)")
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


def separate_file(engine: ChunkedSeparator, source: str | Path, speech_path: str | Path,
                  noise_path: str | Path | None = None, *, mono: bool = False, out: OutputFormat | None = None,
                  overwrite: bool = False, block_seconds: float = 1.0,
                  progress: Callable[[float], None] | None = None) -> dict:
    """Clean one file into `speech_path` (and the removed part into `noise_path`), streaming.

    The file is read in blocks: once for its level, once to separate, and once more to subtract
    when the noise is written (each pass streams, so memory stays flat). The noise is the input
    minus the speech at the output rate, so the two add up to the input (what the model removed,
    including anything above the model's band). Returns a summary (seconds, clipped samples).
    """
    source = Path(source)
    info = audio_info(source)
    out = out or OutputFormat.for_input(info)
    targets = [Path(p) for p in (speech_path, noise_path) if p is not None]
    for target in targets:
        if target.exists() and target.resolve() == source.resolve():
            raise FileExistsError(f"refusing to write over the input '{source}'")
        if target.exists() and not overwrite:
            raise FileExistsError(f"'{target}' exists; not overwritten (--overwrite to replace)")
    channels = 1 if mono else info.channels
    rate, model_rate = info.samplerate, engine.sample_rate
    block = max(1, round(block_seconds * rate))
    n_out = round(info.frames * out.sample_rate / rate)

    def model_blocks(report=None):
        for b in read_blocks(source, block, mono):
            if report:
                report(b.shape[1] / rate)
            yield b

    scale, total = level(resampled(model_blocks(), rate, model_rate, channels))
    speech = fit_length(resampled(engine.stream(resampled(model_blocks(progress), rate, model_rate, channels),
                                                total, scale), model_rate, out.sample_rate, channels), n_out)
    mixture = _Takes(resampled(read_blocks(source, block, mono), rate, out.sample_rate, channels), channels)
    writers = [_AtomicWriter(p, channels, out, overwrite) for p in targets]
    clipped = 0
    try:
        for s in speech:
            clipped += int(np.count_nonzero(np.abs(s) > 1.0)) if out.subtype not in ("FLOAT", "DOUBLE") else 0
            writers[0].write(s)
            if noise_path is not None:
                writers[1].write(mixture.take(s.shape[1]) - s)
        for w in writers:
            w.commit()
    except BaseException:
        for w in writers:
            w.discard()
        raise
    return dict(source=str(source), speech=str(speech_path), noise=str(noise_path) if noise_path else None,
                seconds=info.frames / rate, clipped=clipped)
