"""Audio I/O, resampling and the STFT front-end.

Everything that turns samples into model features and back lives here, so that training,
evaluation, inference and the web server share one definition of sample rate, n_fft, hop, window
and representation. No Lightning or Hydra imports: usable from a notebook in three lines.

soundfile reads and writes (wav/flac/ogg of any bit depth), soxr resamples; torchaudio is not
used because its wheels do not work with the CPU build of torch this project installs.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from sepgan.numerics import compression_gain, expand, expansion_gain, full_precision, upcast

# File name extensions of the formats libsndfile reads (MP3 since libsndfile 1.1), for folder scans.
_EXTENSIONS_BY_FORMAT = {
    "WAV": (".wav", ".wave"), "RF64": (".rf64",), "W64": (".w64",), "FLAC": (".flac",),
    "OGG": (".ogg", ".oga", ".opus"), "MP3": (".mp3",), "AIFF": (".aiff", ".aif", ".aifc"), "AU": (".au", ".snd"),
    "CAF": (".caf",), "NIST": (".nist", ".sph"), "VOC": (".voc",), "IRCAM": (".sf",),
}
AUDIO_EXTENSIONS = tuple(ext for fmt, exts in _EXTENSIONS_BY_FORMAT.items() if fmt in sf.available_formats()
                         for ext in exts)


def find_audio_files(folder: str | Path, exclude: str | Path | None = None) -> tuple[list[Path], dict[Path, str]]:
    """Audio files under `folder` (recursively, sorted), and every other file with why it was skipped.

    Hidden files and anything inside `exclude` (e.g. an output folder inside the input) are left
    out without a word; other files whose extension names no format libsndfile reads are skipped
    with a reason, so a command can say what it did not touch.
    """
    folder = Path(folder)
    excluded = Path(exclude).resolve() if exclude is not None else None
    found, skipped = [], {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if excluded is not None and path.resolve().is_relative_to(excluded):
            continue
        if path.suffix.lower() in AUDIO_EXTENSIONS:
            found.append(path)
        else:
            skipped[path] = f"not an audio format this build reads ({path.suffix or 'no extension'})"
    return found, skipped


class AudioError(ValueError):
    """A file that cannot be used as audio; the message names the file and the problem."""


class NotAudioError(AudioError):
    """A file libsndfile cannot open at all: not audio, or a format this build does not read."""


class NonFiniteAudioError(AudioError):
    """Samples that are NaN or infinite (only floating-point files can hold them)."""


class NonFiniteWarning(UserWarning):
    """NaN or infinite samples were replaced by zeros, as asked."""


# libsndfile reads a file whose sample data were cut short (a truncated download or copy) as a
# shorter file and says so only in its log, as `data : 64000 (should be 31978)`: the data chunk of
# WAV and WAVEX, AIFF's SSND, AU's data size, the whole file for W64 and RF64. Sizes from this
# value up are placeholders of writers that did not know the length (a stream), not promises.
_DATA_SIZE_IN_LOG = re.compile(r"^\s*(data|SSND|Data Size|riff|Riff size)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M)
_UNKNOWN_SIZE = 0x7FFFF000


def _truncation(info: sf._SoundFileInfo) -> str | None:
    """What a truncated file's header promises and what is there, from libsndfile's log; None if complete."""
    for chunk, promised, present in _DATA_SIZE_IN_LOG.findall(info.extra_info):
        promised, present = int(promised), int(present)
        if present < promised < _UNKNOWN_SIZE:
            return (f"its header promises {promised} bytes of '{chunk}', the file holds {present}; "
                    f"only the first {info.frames / info.samplerate:.2f} s are there")
    return None


def audio_info(path: str | Path) -> sf._SoundFileInfo:
    """Header of an audio file, with a clear error for missing, empty, corrupt or truncated files."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"audio file not found: '{path}'")
    if path.is_dir():
        raise AudioError(f"'{path}' is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"audio file is empty (0 bytes): '{path}'")
    try:
        info = sf.info(str(path))
    except Exception as err:  # soundfile raises LibsndfileError/RuntimeError with terse text
        raise NotAudioError(
            f"cannot read '{path}' as audio ({err}); supported formats: wav, flac, ogg, aiff, mp3 and the "
            f"others libsndfile reads"
        ) from None
    if info.frames == 0:
        raise AudioError(f"audio file has no samples: '{path}'")
    if (cut := _truncation(info)) is not None:
        raise AudioError(f"'{path}' is truncated: {cut}")
    return info


class FiniteCheck:
    """Finds NaN and infinite samples in a signal given whole or piece by piece (`check` each in order).

    By default the first one is an error naming the source and its time; with `fix` they become
    zeros and `done()` warns once (`NonFiniteWarning`) with their number and the first one's time.
    Every reader goes through this one check: `read_blocks`, `load_audio` and the in-memory
    `ChunkedSeparator.separate`.
    """

    def __init__(self, source: str | Path, sample_rate: int, fix: bool = False, offset: int = 0):
        # a file is named in quotes; anything else (an array) is described as given
        self.source = f"'{source}'" if isinstance(source, Path) else source
        self.sample_rate, self.fix = sample_rate, fix
        self.position = offset  # samples (per channel) before the next piece
        self.replaced, self.first = 0, None

    def _where(self, sample: int, channel: int) -> str:
        return f"{sample / self.sample_rate:.3f} s (sample {sample}, channel {channel + 1})"

    def check(self, samples: np.ndarray) -> np.ndarray:
        """The next piece (channels, n) of the signal, fixed in place if asked; raises `NonFiniteAudioError`."""
        n = samples.shape[-1]
        # One reduction, no temporary: a float64 sum of float32 samples cannot overflow, and any NaN
        # or infinity makes it non-finite.
        with np.errstate(invalid="ignore"):  # inf - inf
            total = np.sum(samples, dtype=np.float64)
        if not np.isfinite(total):
            bad = ~np.isfinite(samples.reshape(-1, n))
            index = int(np.argmax(bad.any(axis=0)))
            channel = int(np.argmax(bad[:, index]))
            if not self.fix:
                raise NonFiniteAudioError(
                    f"{self.source} holds NaN or infinite samples, the first at "
                    f"{self._where(self.position + index, channel)}")
            if self.first is None:
                self.first = (self.position + index, channel)
            self.replaced += int(bad.sum())
            samples.reshape(-1, n)[bad] = 0.0
        self.position += n
        return samples

    def done(self) -> int:
        """Warn about the samples replaced (if any); returns how many."""
        if self.replaced:
            warnings.warn(f"{self.source}: {self.replaced} NaN or infinite samples replaced by zeros, the first "
                          f"at {self._where(*self.first)}", NonFiniteWarning, stacklevel=2)
        return self.replaced


def read_blocks(path: str | Path, block_frames: int, mono: bool = False,
                fix_nonfinite: bool = False) -> Iterator[np.ndarray]:
    """A file as float32 blocks (channels, n), optionally mixed down, in constant memory.

    Corrupt or truncated data and NaN or infinite samples are errors naming the file and where
    (`fix_nonfinite`: zeros and one `NonFiniteWarning` instead).
    """
    path = Path(path)
    info = audio_info(path)
    finite = FiniteCheck(path, info.samplerate, fix_nonfinite)
    done = 0
    try:
        with sf.SoundFile(str(path)) as f:
            for data in f.blocks(block_frames, dtype="float32", always_2d=True):
                done += len(data)
                block = finite.check(np.ascontiguousarray(data.T))
                yield block.mean(axis=0, keepdims=True) if mono else block
    except RuntimeError as err:  # libsndfile's decoding errors
        raise AudioError(f"cannot decode '{path}' after {done / info.samplerate:.1f} s ({err}); "
                         f"the file may be truncated or corrupt") from None
    if done < info.frames:
        raise AudioError(f"'{path}' is truncated: its header promises {info.frames} samples, only {done} could be read")
    finite.done()


def load_audio(
    path: str | Path,
    sample_rate: int | None = None,
    mono: bool = True,
    start: int = 0,
    frames: int = -1,
    fix_nonfinite: bool = False,
) -> tuple[np.ndarray, int]:
    """Read a file as float32 of shape (channels, samples), optionally mixed down and resampled.

    `start`/`frames` are in the file's own sample rate, so long files can be read in blocks.
    NaN or infinite samples are an error naming the file and the first one's time
    (`fix_nonfinite`: zeros and a `NonFiniteWarning`). Returns the samples and their sample rate.
    """
    path = Path(path)
    info = audio_info(path)
    try:
        data, sr = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    except Exception as err:
        raise AudioError(f"cannot decode '{path}' ({err}); the file may be truncated or corrupt") from None
    if data.shape[0] == 0 and frames != 0:
        raise AudioError(f"no samples read from '{path}' at offset {start} (file has {info.frames})")
    finite = FiniteCheck(path, sr, fix_nonfinite, offset=start)
    wav = finite.check(np.ascontiguousarray(data.T))
    finite.done()
    if mono:
        wav = wav.mean(axis=0, keepdims=True)
    if sample_rate is not None and sample_rate != sr:
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    return wav, sr


def resample(wav: np.ndarray, sr_in: float, sr_out: float) -> np.ndarray:
    """Resample (..., samples) float audio with soxr's high-quality filter (any ratio of rates)."""
    if sr_in == sr_out:
        return wav
    flat = wav.reshape(-1, wav.shape[-1])
    out = soxr.resample(flat.T, sr_in, sr_out, quality="HQ").T
    return np.ascontiguousarray(out.reshape(*wav.shape[:-1], -1), dtype=np.float32)


def save_audio(path: str | Path, wav: np.ndarray | torch.Tensor, sample_rate: int, subtype: str | None = None) -> None:
    """Write (channels, samples) or (samples,) audio; the format follows the file extension."""
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().numpy()
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 1:
        wav = wav[None]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wav.T, sample_rate, subtype=subtype)


def rms(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Root mean square over the last axis, kept as a broadcastable axis."""
    return x.pow(2).mean(dim=-1, keepdim=True).add(eps).sqrt()


WINDOWS = ("hann", "sine")


@dataclass(frozen=True)
class FrontEnd:
    """The STFT front-end: owns sample rate, n_fft, hop, window and the representation.

    `complex` features are 2 channels (real, imaginary); `magnitude` features are 1 channel and
    the way back reuses the mixture's phase. `compress` < 1 applies power-law compression to the
    magnitude (phase untouched), which evens out loud low bins and quiet high ones; 1 keeps the
    linear spectrogram of the original study. With hop <= n_fft/2 the inverse is exact up to float
    precision.

    `window` is the analysis and synthesis window: `hann` (the study's) or `sine` (the square root
    of Hann). At 50 % overlap the sine window's squares sum to one, so the inverse returns errors in
    the bins (a model's mistakes) with the same power at every sample; Hann's inverse divides by a
    sum of squares that dips to 0.5 half-way between frames, doubling their power there
    (experiments/ABLATION.md, "A follow-up: the sine window").
    """

    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 128
    representation: str = "complex"
    compress: float = 1.0
    window: str = "hann"

    def __post_init__(self):
        if self.window not in WINDOWS:
            raise ValueError(f"frontend.window must be one of {', '.join(WINDOWS)}, got '{self.window}'")
        if self.representation not in ("complex", "magnitude"):
            raise ValueError(
                f"frontend.representation must be 'complex' or 'magnitude', got '{self.representation}'"
            )
        if self.n_fft < 16 or self.hop_length < 1 or self.hop_length > self.n_fft // 2:
            raise ValueError(
                f"frontend: need n_fft >= 16 and 1 <= hop_length <= n_fft/2 for an exact inverse, "
                f"got n_fft={self.n_fft}, hop_length={self.hop_length}"
            )
        if not 0 < self.compress <= 1:
            raise ValueError(f"frontend.compress must be in (0, 1], got {self.compress}")

    @property
    def channels(self) -> int:
        return 2 if self.representation == "complex" else 1

    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1

    def n_frames(self, n_samples: int) -> int:
        return n_samples // self.hop_length + 1

    def _window(self, like: torch.Tensor) -> torch.Tensor:
        hann = torch.hann_window(self.n_fft, device=like.device, dtype=like.dtype)
        return hann.sqrt() if self.window == "sine" else hann

    def stft(self, wav: torch.Tensor) -> torch.Tensor:
        """Complex spectrogram (..., freq, frames) of waveforms (..., samples), in full precision."""
        if wav.shape[-1] < self.n_fft:
            raise ValueError(
                f"signal of {wav.shape[-1]} samples is shorter than frontend.n_fft={self.n_fft}"
            )
        lead = wav.shape[:-1]
        wav = upcast(wav)
        with full_precision(wav):
            spec = torch.stft(
                wav.reshape(-1, wav.shape[-1]),
                self.n_fft,
                self.hop_length,
                window=self._window(wav),
                center=True,
                normalized=True,
                return_complex=True,
            )
        return spec.reshape(*lead, *spec.shape[-2:])

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """Waveforms (..., length) from complex spectrograms (..., freq, frames), in full precision."""
        lead = spec.shape[:-2]
        with full_precision(spec):
            wav = torch.istft(
                spec.reshape(-1, *spec.shape[-2:]),
                self.n_fft,
                self.hop_length,
                window=self._window(spec.real),
                center=True,
                normalized=True,
                length=length,
            )
        return wav.reshape(*lead, length)

    def to_features(self, spec: torch.Tensor) -> torch.Tensor:
        """Model features (batch, channels, freq, frames) from a complex spectrogram (batch, freq, frames).

        Compression (`compress` < 1) goes through `sepgan.numerics.compression_gain`: |X|^p above
        1e-8 and linear below, so its gradient is finite at silent bins.
        """
        with full_precision(spec):
            if self.representation == "magnitude":
                mag = spec.abs()
                if self.compress != 1.0:
                    mag = mag * compression_gain(mag, self.compress)
                return mag.unsqueeze(1)
            if self.compress != 1.0:
                spec = spec * compression_gain(spec.abs(), self.compress)
            return torch.stack((spec.real, spec.imag), dim=1)

    def from_features(self, features: torch.Tensor, mixture_spec: torch.Tensor | None = None) -> torch.Tensor:
        """Complex spectrogram (batch, freq, frames) from features; magnitude needs the mixture's phase."""
        features = upcast(features)
        with full_precision(features):
            if self.representation == "magnitude":
                if mixture_spec is None:
                    raise ValueError("magnitude features need the mixture's spectrogram to borrow its phase")
                mag = expand(features[:, 0].clamp_min(0.0), self.compress)
                phase = mixture_spec / mixture_spec.abs().clamp_min(1e-8)
                # Bins where the mixture is exactly zero have no phase: take a zero-phase unit vector.
                phase = torch.where(mixture_spec.abs() > 0, phase, torch.ones_like(phase))
                return mag * phase
            spec = torch.complex(features[:, 0], features[:, 1])
            if self.compress != 1.0:
                spec = spec * expansion_gain(spec.abs(), self.compress)
            return spec

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """Features (batch, channels, freq, frames) of waveforms (batch, samples)."""
        return self.to_features(self.stft(wav))

    def decode(self, features: torch.Tensor, length: int, mixture_spec: torch.Tensor | None = None) -> torch.Tensor:
        """Waveforms (batch, length) from features."""
        return self.istft(self.from_features(features, mixture_spec), length)
