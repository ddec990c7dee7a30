"""Cleaning audio files: streamed block by block through a `ChunkedSeparator`, written atomically.

A file is read three times in blocks (its level, the separation, and the mixture again when the
removed noise is written), so memory stays flat in the file's length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from sepgan.atomic import AtomicFile
from sepgan.audio import AudioError, audio_info
from sepgan.inference.chunked import ChunkedSeparator, check_dry, fit_length, level, resampled, with_dry

# Output formats by name (`--format`); libsndfile's name for each.
FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "aiff": "AIFF"}


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


class _AudioWriter:
    """An audio file written block by block into an `AtomicFile`: complete or absent, never half."""

    def __init__(self, path: Path, channels: int, out: OutputFormat, overwrite: bool):
        self.target = AtomicFile(path, overwrite)
        try:
            self.file = sf.SoundFile(str(self.target.tmp), "w", out.sample_rate, channels, out.subtype,
                                     format=out.format)
        except Exception:
            self.target.discard()
            raise

    def write(self, block: np.ndarray) -> None:
        self.file.write(block.T)

    def commit(self) -> None:
        self.file.close()
        self.target.commit()

    def discard(self) -> None:
        self.file.close()
        self.target.discard()


def separate_file(engine: ChunkedSeparator, source: str | Path, speech_path: str | Path,
                  noise_path: str | Path | None = None, *, mono: bool = False, out: OutputFormat | None = None,
                  overwrite: bool = False, dry: float = 0.0, block_seconds: float = 1.0,
                  progress: Callable[[float], None] | None = None) -> dict:
    """Clean one file into `speech_path` (and the removed part into `noise_path`), streaming.

    The file is read in blocks: once for its level, once to separate, and once more to subtract
    when the noise is written or the input mixed back in (each pass streams, so memory stays flat).
    The noise is the input minus the speech at the output rate, so the two add up to the input
    (what the model removed, including anything above the model's band). `dry` (0 to 1) mixes that share of the input back
    into the speech (and takes it out of the noise). Returns a summary (seconds, clipped samples).
    """
    dry = check_dry(dry)
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
    writers = [_AudioWriter(p, channels, out, overwrite) for p in targets]
    clipped = 0
    try:
        for s in speech:
            m = mixture.take(s.shape[1]) if dry or noise_path is not None else None
            s = with_dry(s, m, dry)
            clipped += int(np.count_nonzero(np.abs(s) > 1.0)) if out.subtype not in ("FLOAT", "DOUBLE") else 0
            writers[0].write(s)
            if noise_path is not None:
                writers[1].write(m - s)
        for w in writers:
            w.commit()
    except BaseException:
        for w in writers:
            w.discard()
        raise
    return dict(source=str(source), speech=str(speech_path), noise=str(noise_path) if noise_path else None,
                seconds=info.frames / rate, clipped=clipped)
