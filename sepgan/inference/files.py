"""Cleaning audio files: streamed block by block through a `ChunkedSeparator`, written atomically.

A file is read three times in blocks (its level, the separation, and the mixture again when the
removed noise is written), so memory stays flat in the file's length.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from sepgan.atomic import AtomicFile
from sepgan.audio import AudioError, audio_info, read_blocks
from sepgan.inference.chunked import ChunkedSeparator, centred, check_dry, fit_length, level, resampled, with_dry
from sepgan.inference.noise_report import NoiseNamer

# Output formats by name (`--format`); libsndfile's name for each.
FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "aiff": "AIFF"}
# Encoder limits (highest rate, most channels), by subtype or format, checked before any attempt:
# libsndfile 1.2 with libvorbis crashes the process (a segfault) instead of refusing Vorbis above
# them, and refuses FLAC above them with a bare "Format not recognised".
_ENCODER_LIMITS = {"VORBIS": (200_000, 255), "FLAC": (655_350, 8)}


@lru_cache(maxsize=256)
def cannot_write(format: str, subtype: str, channels: int, sample_rate: int) -> str | None:
    """Why libsndfile cannot write this format, subtype, channel count and rate; None if it can.

    `soundfile.check_format` is not enough: it accepts pairs no encoder writes (WAV holding MP3)
    and knows nothing of channel or rate limits (FLAC: 8 channels, 655350 Hz), so an empty file is
    opened in memory to find out.
    """
    for encoder in (subtype, format):
        rate_max, channels_max = _ENCODER_LIMITS.get(encoder, (sample_rate, channels))
        if sample_rate > rate_max or channels > channels_max:
            return f"the {encoder} encoder takes at most {rate_max} Hz and {channels_max} channels"
    try:
        with sf.SoundFile(io.BytesIO(), "w", sample_rate, channels, subtype, format=format):
            pass
    except Exception as err:  # LibsndfileError for what the encoder refuses, ValueError for bad names
        return getattr(err, "error_string", None) or str(err)
    return None


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
                  sample_rate: int | None = None, channels: int | None = None) -> OutputFormat:
        """The input's format, subtype and rate, except where asked otherwise (and where the format allows).

        Any format libsndfile reads converts to any format it writes: a subtype the output cannot
        hold (an MP3 input written as WAV) becomes the output's default one. A combination no encoder
        takes (FLAC with 9 channels, Vorbis at 384 kHz) is a `ValueError` saying why.
        `channels` is what will be written (default: the input's).
        """
        fmt = FORMATS[format] if format else info.format
        if sample_rate is not None and sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {sample_rate}")
        rate, channels = sample_rate or info.samplerate, channels or info.channels
        if subtype is None:
            subtype = info.subtype if not cannot_write(fmt, info.subtype, channels, rate) else sf.default_subtype(fmt)
        if not sf.check_format(fmt, subtype or ""):
            raise ValueError(f"format {fmt} cannot hold {subtype} samples; "
                             f"choose one of {sorted(sf.available_subtypes(fmt))}")
        if why := cannot_write(fmt, subtype, channels, rate):
            raise ValueError(f"cannot write {fmt} ({subtype}) with {channels} channel(s) at {rate} Hz: {why}; "
                             f"choose another format or sample rate")
        return cls(fmt, subtype, rate)


class _AudioWriter:
    """An audio file written block by block into an `AtomicFile`: complete or absent, never half."""

    def __init__(self, path: Path, channels: int, out: OutputFormat, overwrite: bool):
        self.target = AtomicFile(path, overwrite)
        try:
            self.file = sf.SoundFile(str(self.target.tmp), "w", out.sample_rate, channels, out.subtype,
                                     format=out.format)
        except BaseException:  # an error, or Ctrl-C/SIGTERM while opening: no orphaned temporary file
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


def commit_all(writers: list[_AudioWriter]) -> None:
    for w in writers:
        w.commit()


def discard_all(writers: list[_AudioWriter]) -> None:
    """Remove every partial output (on any error or interruption): a result is complete or absent."""
    for w in writers:
        w.discard()


def reported(blocks: Iterable[np.ndarray], rate: int, report: Callable[[float], None] | None = None):
    """The blocks as they are, telling `report` the seconds each one covers at `rate`: progress counted
    in the input's own samples ends at its length exactly (a resampler's output may overshoot it)."""
    for b in blocks:
        if report:
            report(b.shape[1] / rate)
        yield b


def separate_file(engine: ChunkedSeparator, source: str | Path, speech_path: str | Path,
                  noise_path: str | Path | None = None, *, mono: bool = False, out: OutputFormat | None = None,
                  overwrite: bool = False, dry: float = 0.0, block_seconds: float = 1.0,
                  progress: Callable[[float], None] | None = None, fix_nonfinite: bool = False,
                  name_noise: bool = False) -> dict:
    """Clean one file into `speech_path` (and the removed part into `noise_path`), streaming.

    The file is read in blocks: once for its level, once to separate, and once more to subtract
    when the noise is written or the input mixed back in (each pass streams, so memory stays flat).
    The noise is the input minus the speech at the output rate, so the two add up to the input
    (what the model removed, including anything above the model's band). `dry` (0 to 1) mixes that
    share of the input back into the speech (and takes it out of the noise). A NaN or infinite
    sample is an error found by the first pass, before anything is written (`fix_nonfinite`: zeros,
    and a `NonFiniteWarning` from each pass). Returns a summary (seconds, clipped samples); with
    `name_noise`, also `removed`: what the model's noise classifier heard in the removed noise
    (`sepgan.inference.noise_report`), computed on the way at the model's rate.
    """
    dry = check_dry(dry)
    source = Path(source)
    info = audio_info(source)
    channels = 1 if mono else info.channels
    out = out or OutputFormat.for_input(info, channels=channels)
    targets = [Path(p) for p in (speech_path, noise_path) if p is not None]
    for target in targets:
        if target.exists() and target.resolve() == source.resolve():
            raise FileExistsError(f"refusing to write over the input '{source}'")
        if target.exists() and not overwrite:
            raise FileExistsError(f"'{target}' exists; not overwritten (--overwrite to replace)")
    rate, model_rate = info.samplerate, engine.sample_rate
    block = max(1, round(block_seconds * rate))
    n_out = round(info.frames * out.sample_rate / rate)

    offset, scale, total = level(resampled(read_blocks(source, block, mono, fix_nonfinite), rate, model_rate, channels))
    namer = NoiseNamer(getattr(engine.backend, "model", None), scale, device=getattr(engine.backend, "device", "cpu")) \
        if name_noise else None
    mixture_model_rate = _Kept(centred(resampled(reported(read_blocks(source, block, mono, fix_nonfinite), rate,
                                                          progress), rate, model_rate, channels), offset),
                               channels, keep=name_noise)
    speech_model_rate = engine.stream(mixture_model_rate, total, scale)
    if namer is not None:
        speech_model_rate = _naming(speech_model_rate, mixture_model_rate, namer)
    speech = fit_length(resampled(speech_model_rate, model_rate, out.sample_rate, channels), n_out)
    mixture = _Takes(resampled(read_blocks(source, block, mono, fix_nonfinite), rate, out.sample_rate, channels),
                     channels)
    writers: list[_AudioWriter] = []
    clipped = 0
    try:
        for target in targets:  # one at a time, so an error opening the second discards the first
            writers.append(_AudioWriter(target, channels, out, overwrite))
        for s in speech:
            m = mixture.take(s.shape[1]) if dry or noise_path is not None else None
            s = with_dry(s, m, dry)
            clipped += int(np.count_nonzero(np.abs(s) > 1.0)) if out.subtype not in ("FLOAT", "DOUBLE") else 0
            writers[0].write(s)
            if noise_path is not None:
                writers[1].write(m - s)
        removed = namer.finish() if namer is not None else None  # before committing: an error fails the file
        commit_all(writers)
    except BaseException:
        discard_all(writers)
        raise
    summary = dict(source=str(source), speech=str(speech_path), noise=str(noise_path) if noise_path else None,
                   seconds=info.frames / rate, clipped=clipped)
    if namer is not None:
        summary["removed"] = removed
    return summary


class _Kept(_Takes):
    """Blocks passed through unchanged and, with `keep`, also kept until `take` claims them."""

    def __init__(self, blocks: Iterable[np.ndarray], channels: int, keep: bool):
        super().__init__([], channels)
        self.source, self.keep = blocks, keep

    def __iter__(self):
        for block in self.source:
            if self.keep:
                self.buffer = np.concatenate((self.buffer, block), axis=1)
            yield block


def _naming(speech: Iterable[np.ndarray], mixture: _Kept, namer: NoiseNamer):
    """The speech blocks unchanged; each goes to `namer` with the mixture it came from."""
    for block in speech:
        namer.add(mixture.take(block.shape[1]), block)
        yield block
