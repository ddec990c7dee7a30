"""The Python API: `sepgan.load()` gives a model that cleans arrays, tensors and files.

    import sepgan
    model = sepgan.load()                      # the shipped model; or a .ckpt / .onnx path
    speech, noise = model.separate(audio, 44100)
    model.separate(audio, 44100, name_noise=True).removed   # and what noise was removed, and when
    voices = sepgan.load("two_speakers.ckpt").separate(audio, 44100)   # a speaker model: one array per voice

Everything runs through the same `ChunkedSeparator` as `sepgan separate`, so arrays of any length,
rate and channel count give what the command writes for the same audio, with memory bounded by the
chunk length, not by the input.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sepgan.audio import audio_info
from sepgan.inference.backends import Backend, TorchBackend, load_backend
from sepgan.inference.chunked import CHUNK_SECONDS, ChunkedSeparator, centred, check_dry, level, resampled, with_dry
from sepgan.inference.files import OutputFormat, separate_file
from sepgan.inference.noise_report import NoiseNamer
from sepgan.inference.permutation import SpeakerChunkedSeparator, SpeakersBackend
from sepgan.inference.speakers import separate_speakers_file, speaker_paths
from sepgan.models import SpeakerSeparator, load_separator
from sepgan.pretrained import DEFAULT_CHECKPOINT, default_checkpoint

Audio = np.ndarray | torch.Tensor


@dataclass(eq=False)
class Separated:
    """Speech and noise of one input, in its type, shape and rate; `speech + noise` is the input.

    Unpacks as `speech, noise = ...`. `removed` lists what noise the model heard in the removed
    part, and when (`sepgan.inference.noise_report`), if it was asked for (`name_noise=True`).
    """

    speech: Audio
    noise: Audio
    removed: list[dict] | None = None

    def __iter__(self) -> Iterator[Audio]:
        return iter((self.speech, self.noise))

    def __getitem__(self, index: int) -> Audio:
        return (self.speech, self.noise)[index]

    def __len__(self) -> int:
        return 2


def _mixture(audio: Audio, sample_rate: int) -> tuple[np.ndarray, torch.Tensor | None]:
    """`audio` as a float32 array, and the tensor it came as (None for an array); checks the rate and the layout."""
    if not isinstance(sample_rate, (int, np.integer)) or isinstance(sample_rate, bool) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive whole number of Hz, got {sample_rate!r}")
    tensor = audio if isinstance(audio, torch.Tensor) else None
    mixture = np.asarray(audio.detach().cpu().numpy() if tensor is not None else audio, np.float32)
    if mixture.ndim == 2 and mixture.shape[0] > mixture.shape[1]:
        raise ValueError(f"audio of shape {mixture.shape} has more channels than samples; pass "
                         f"(channels, samples), e.g. the transpose of what soundfile.read returns")
    return mixture, tensor


def _like(x: np.ndarray, tensor: torch.Tensor | None) -> Audio:
    """`x` in the input's type: a float32 tensor on the input tensor's device, or the array."""
    return x if tensor is None else torch.from_numpy(np.ascontiguousarray(x)).to(tensor.device)


def _shipped() -> dict[str, Path]:
    """Models that ship with sepgan, by name (file name without extension)."""
    return {p.stem: p for p in sorted(DEFAULT_CHECKPOINT.parent.glob("*.ckpt"))}


def _resolve(name_or_path: str | Path | None) -> Path:
    if name_or_path is None:
        return default_checkpoint()
    if str(name_or_path) in _shipped():
        return _shipped()[str(name_or_path)]
    path = Path(name_or_path)
    if path.suffix.lower() not in (".ckpt", ".onnx"):
        raise ValueError(f"'{name_or_path}' is neither a shipped model ({', '.join(_shipped()) or 'none'}) "
                         f"nor a .ckpt or .onnx file")
    return path


class Model:
    """A loaded model: `.separate` cleans arrays or tensors, `.separate_file` cleans a file.

    Made by `sepgan.load`; `engine` (the `ChunkedSeparator`) and `backend` are there for more control.
    """

    def __init__(self, backend: Backend, path: Path, chunk_seconds: float = CHUNK_SECONDS, batch_size: int = 1,
                 shifts: int = 1):
        self.backend = backend
        self.engine = ChunkedSeparator(backend, chunk_seconds, batch_size, shifts=shifts)
        self.path = path

    @property
    def sample_rate(self) -> int:
        """The rate the model works at; inputs at any other rate are resampled to it and back."""
        return self.engine.sample_rate

    def __repr__(self) -> str:
        return f"<sepgan model '{self.path.name}', {self.backend.name} backend, {self.sample_rate} Hz>"

    @property
    def names_noise(self) -> bool:
        """Whether the model has a noise classifier (PyTorch checkpoints only; ONNX files carry none)."""
        return getattr(getattr(self.backend, "model", None), "noise_classifier", None) is not None

    def separate(self, audio: Audio, sample_rate: int, dry: float = 0.0, name_noise: bool = False) -> Separated:
        """Speech and noise of `audio`: (samples,) or (channels, samples), numpy or torch, at `sample_rate`.

        Each channel is cleaned on its own; the results have the input's shape and rate, and its
        type (a tensor comes back as a float32 tensor on the input's device). `dry` (0 to 1) mixes
        that share of the input back into the speech; the noise is always the input minus the speech.
        `name_noise=True` (a model with a noise classifier) also says what was removed and when
        (`.removed`), for about 10 % more time.
        """
        if name_noise and not self.names_noise:
            raise ValueError(f"{self!r} cannot name noise: it has no noise classifier (ONNX files carry none)")
        dry = check_dry(dry)
        mixture, tensor = _mixture(audio, sample_rate)
        speech = self.engine.separate(mixture, int(sample_rate))
        removed = self._removed(mixture, speech, int(sample_rate)) if name_noise else None
        speech = with_dry(speech, mixture, dry)
        noise = mixture - speech
        return Separated(_like(speech, tensor), _like(noise, tensor), removed)

    def _removed(self, mixture: np.ndarray, speech: np.ndarray, rate: int) -> list[dict]:
        """The noise report of one in-memory input, from the mixture and its speech (before any dry mix)."""
        channels = 1 if mixture.ndim == 1 else mixture.shape[0]

        def to_model(x: np.ndarray) -> np.ndarray:
            return np.concatenate(list(resampled([x.reshape(channels, -1)], rate, self.sample_rate, channels)), -1)

        mixture = to_model(mixture)
        offset, scale, _ = level([mixture])
        namer = NoiseNamer(self.backend.model, scale, device=getattr(self.backend, "device", "cpu"))
        namer.add(next(centred([mixture], offset)), to_model(speech))
        return namer.finish()

    def separate_file(self, source: str | Path, speech_path: str | Path, noise_path: str | Path | None = None,
                      *, dry: float = 0.0, mono: bool = False, format: str | None = None,
                      subtype: str | None = None, sample_rate: int | None = None, overwrite: bool = False,
                      name_noise: bool = False) -> dict:
        """Clean the file `source` into `speech_path` (and the removed part into `noise_path`).

        As `sepgan separate` does: streamed in blocks (any length), the input's format, subtype and
        rate unless asked otherwise, written atomically, never over the input nor over an existing
        file unless `overwrite`. Returns a summary (seconds, clipped samples, and with `name_noise`
        `removed`, the noise report).
        """
        if name_noise and not self.names_noise:
            raise ValueError(f"{self!r} cannot name noise: it has no noise classifier (ONNX files carry none)")
        out = OutputFormat.for_input(audio_info(source), format, subtype, sample_rate)
        return separate_file(self.engine, source, speech_path, noise_path, mono=mono, out=out,
                             overwrite=overwrite, dry=dry, name_noise=name_noise)


class Voices:
    """A loaded speaker separator (`+experiment=two_speakers`): `.separate` gives each voice of arrays or
    tensors, `.separate_file` writes each voice of a file, as `sepgan separate --speakers N` does.

    Made by `sepgan.load` for a speaker checkpoint. Long inputs run in chunks whose voices are put in
    one order across chunk borders (`SpeakerChunkedSeparator`), so a speaker keeps one output.
    """

    def __init__(self, engine: SpeakerChunkedSeparator, path: Path):
        self.engine = engine
        self.path = path

    @property
    def sources(self) -> int:
        """How many voices each input is separated into."""
        return self.engine.sources

    @property
    def sample_rate(self) -> int:
        """The rate the model works at; inputs at any other rate are resampled to it and back."""
        return self.engine.sample_rate

    def __repr__(self) -> str:
        return f"<sepgan {self.sources}-speaker model '{self.path.name}', {self.sample_rate} Hz>"

    def separate(self, audio: Audio, sample_rate: int) -> list[Audio]:
        """One array per voice, each of the input's shape, rate and type: (samples,) or (channels, samples).

        The voices come in no particular order (the model was trained permutation-invariantly), but in
        the same order for the whole input; each channel is separated on its own.
        """
        mixture, tensor = _mixture(audio, sample_rate)
        return [_like(voice, tensor) for voice in self.engine.separate(mixture, int(sample_rate))]

    def separate_file(self, source: str | Path, target: str | Path | list[str | Path], *, mono: bool = False,
                      format: str | None = None, subtype: str | None = None, sample_rate: int | None = None,
                      overwrite: bool = False) -> dict:
        """Write each voice of the file `source`: `target` NAME.EXT gives NAME_speaker1.EXT ... (as
        `sepgan separate --speakers N`), or give a list of one path per voice. Streamed, atomic, the
        input's format unless asked otherwise, nothing written over the input or an existing file
        unless `overwrite`. Returns a summary with the paths written."""
        targets = ([Path(t) for t in target] if isinstance(target, (list, tuple))
                   else speaker_paths(Path(target), self.sources))
        if len(targets) != self.sources:
            raise ValueError(f"{self!r} writes {self.sources} voices; got {len(targets)} paths")
        out = OutputFormat.for_input(audio_info(source), format, subtype, sample_rate)
        return separate_speakers_file(self.engine, source, targets, mono=mono, out=out, overwrite=overwrite)


def load(name_or_path: str | Path | None = None, device: str = "cpu", *, chunk_seconds: float = CHUNK_SECONDS,
         batch_size: int = 1, threads: int | None = None, shifts: int = 1, precision: str = "auto") -> Model | Voices:
    """A sepgan model ready to clean audio, or to separate voices.

    `name_or_path`: None for the shipped model, the name of a shipped model (e.g. "sepgan-16k"), a
    checkpoint from training (`.ckpt`, run by PyTorch on `device`) or a model from `sepgan
    export-onnx` (`.onnx`, run by onnxruntime on the CPU). A checkpoint of a speaker separator gives
    `Voices`, anything else a `Model`. `chunk_seconds` and `batch_size` set how much audio goes
    through the model at once (memory against speed; the result is the same). `threads` limits
    onnxruntime's threads for an .onnx model (PyTorch's are set with `torch.set_num_threads`).
    `shifts` > 1 averages that many STFT frame grids for a little more quality at that many times
    the work (`ChunkedSeparator`; one voice only). `precision` is the U-Net's arithmetic in a
    checkpoint of one voice: "auto" (bf16 on a CPU that computes it natively, about 1.7 times as fast
    there), "fp32" or "bf16".
    """
    path = _resolve(name_or_path)
    if path.suffix.lower() == ".onnx":
        return Model(load_backend(path, device=device, threads=threads, precision=precision), path, chunk_seconds,
                     batch_size, shifts)
    separator = load_separator(path)
    if isinstance(separator, SpeakerSeparator):
        if shifts != 1:
            raise ValueError(f"shifts: a speaker separator runs one frame grid (got shifts={shifts})")
        if precision == "bf16":
            raise ValueError("precision: a speaker separator runs in fp32 (got precision='bf16')")
        return Voices(SpeakerChunkedSeparator(SpeakersBackend(separator, device), chunk_seconds, batch_size), path)
    return Model(TorchBackend(separator, device, precision), path, chunk_seconds, batch_size, shifts)
