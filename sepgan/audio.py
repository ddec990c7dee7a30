"""Audio I/O, resampling and the STFT front-end.

Everything that turns samples into model features and back lives here, so that training,
evaluation, inference and the web server share one definition of sample rate, n_fft, hop, window
and representation. No Lightning or Hydra imports: usable from a notebook in three lines.

soundfile reads and writes (wav/flac/ogg of any bit depth), soxr resamples; torchaudio is not
used because its wheels do not work with the CPU build of torch this project installs.
"""

from __future__ import annotations

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


def audio_info(path: str | Path) -> sf._SoundFileInfo:
    """Header of an audio file, with a clear error for missing, empty or corrupt files."""
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
        raise AudioError(
            f"cannot read '{path}' as audio ({err}); supported formats: wav, flac, ogg, aiff"
        ) from None
    if info.frames == 0:
        raise AudioError(f"audio file has no samples: '{path}'")
    return info


def load_audio(
    path: str | Path,
    sample_rate: int | None = None,
    mono: bool = True,
    start: int = 0,
    frames: int = -1,
) -> tuple[np.ndarray, int]:
    """Read a file as float32 of shape (channels, samples), optionally mixed down and resampled.

    `start`/`frames` are in the file's own sample rate, so long files can be read in blocks.
    Returns the samples and the sample rate they are at.
    """
    info = audio_info(path)
    try:
        data, sr = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    except Exception as err:
        raise AudioError(f"cannot decode '{path}' ({err}); the file may be truncated or corrupt") from None
    if data.shape[0] == 0 and frames != 0:
        raise AudioError(f"no samples read from '{path}' at offset {start} (file has {info.frames})")
    wav = np.ascontiguousarray(data.T)
    if mono:
        wav = wav.mean(axis=0, keepdims=True)
    if sample_rate is not None and sample_rate != sr:
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    return wav, sr


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample (..., samples) float audio with soxr's high-quality filter."""
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


@dataclass(frozen=True)
class FrontEnd:
    """The STFT front-end: owns sample rate, n_fft, hop, window and the representation.

    `complex` features are 2 channels (real, imaginary); `magnitude` features are 1 channel and
    the way back reuses the mixture's phase. `compress` < 1 applies power-law compression to the
    magnitude (phase untouched), which evens out loud low bins and quiet high ones; 1 keeps the
    linear spectrogram of the original study. With a periodic Hann window and hop <= n_fft/2 the
    inverse is exact up to float precision. The STFT is normalised by 1/sqrt(n_fft) so feature
    values are on the scale of the samples whatever the window length.
    """

    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 128
    representation: str = "complex"
    compress: float = 1.0

    def __post_init__(self):
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
        return torch.hann_window(self.n_fft, device=like.device, dtype=like.dtype)

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
