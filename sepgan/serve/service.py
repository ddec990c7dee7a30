"""What the server holds and does, apart from HTTP routing: limits, the worker pool, uploads, the model.

Every upload is copied into a temporary folder of its own, checked (size, header, duration, decoded
size) and handed to a bounded pool of worker threads: with more requests than workers they wait in
line, and past `max_queue` waiting ones the server answers 503 instead of piling up work. The folder
is removed once the response has been sent, whatever happened.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from fastapi import HTTPException, UploadFile
from fastapi.responses import FileResponse

from sepgan.audio import AudioError, NotAudioError, audio_info, read_blocks
from sepgan.inference.backends import load_backend
from sepgan.inference.chunked import CHUNK_SECONDS, ChunkedSeparator, resampled
from sepgan.inference.files import FORMATS
from sepgan.serve.noises import NoiseCatalogue

MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg", "aiff": "audio/aiff"}
LIBSNDFILE_TO_NAME = {v: k for k, v in FORMATS.items()}
COPY_BLOCK = 1 << 20
SAMPLES_PER_SECOND = 96_000  # default max_samples per second of max_seconds: 48 kHz stereo


@dataclass
class Settings:
    checkpoint: Path
    backend: str | None = None
    noise_dir: Path | None = None
    max_upload_mb: float = 100.0
    max_seconds: float = 600.0
    max_samples: int | None = None  # channels x seconds x rate; None: max_seconds x SAMPLES_PER_SECOND
    workers: int = 1
    max_queue: int = 32
    chunk_seconds: float = CHUNK_SECONDS
    batch_size: int = 1
    threads: int | None = None
    device: str = "cpu"  # torch device of the model (torch backend), e.g. cuda
    precision: str = "auto"  # the U-Net's arithmetic (torch backend): auto, fp32 or bf16
    shifts: int = 1  # STFT frame grids averaged (`ChunkedSeparator`)


class Limits:
    """Size, duration and decoded-size checks, with messages that say what the limit is.

    The decoded size bounds what a request can cost in memory and time whatever the file's bytes
    (a few hundred kB of FLAC can hold 10 minutes of 8 channels at 96 kHz): channels x seconds x
    the highest rate the audio is handled at (the file's, the model's, the output's), read from the
    header before a sample is decoded.
    """

    def __init__(self, settings: Settings, model_rate: int):
        self.max_bytes = int(settings.max_upload_mb * 1e6)
        self.max_seconds = settings.max_seconds
        self.max_samples = settings.max_samples or int(settings.max_seconds * SAMPLES_PER_SECOND)
        self.model_rate = model_rate

    def check_size(self, size: int, name: str) -> None:
        if size > self.max_bytes:
            raise HTTPException(413, f"'{name}' is larger than this server's upload limit of "
                                     f"{self.max_bytes / 1e6:g} MB")

    def check_audio(self, path: Path, name: str, output_rate: int | None = None):
        """The file's header, or a 4xx naming the problem (empty, not audio, truncated, too long, too big)."""
        if path.stat().st_size == 0:
            raise HTTPException(400, f"'{name}' is empty (0 bytes)")
        try:
            info = audio_info(path)
        except NotAudioError as err:
            raise HTTPException(415, f"'{name}' is not audio this server can read (wav, flac, ogg, aiff, mp3, ...): "
                                     f"{str(err).replace(str(path), name)}") from None
        except AudioError as err:  # readable but unusable: truncated, no samples
            raise HTTPException(400, str(err).replace(str(path), name)) from None
        seconds = info.frames / info.samplerate
        if seconds > self.max_seconds:
            raise HTTPException(413, f"'{name}' is {seconds:.1f} s long; this server accepts at most "
                                     f"{self.max_seconds:g} s")
        rate = max(info.samplerate, self.model_rate, output_rate or 0)
        samples = info.channels * seconds * rate
        if samples > self.max_samples:
            raise HTTPException(413, f"'{name}' is {info.channels} channel(s) x {seconds:.1f} s at {rate} Hz, "
                                     f"{samples / 1e6:.1f} million samples; this server handles at most "
                                     f"{self.max_samples / 1e6:g} million per upload (channels x seconds x rate)")
        return info


class WorkerPool:
    """A fixed number of threads for the heavy work, with a bounded line of waiting requests."""

    def __init__(self, workers: int, max_queue: int):
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sepgan-worker")
        self.workers, self.max_queue = workers, max_queue
        self.pending = 0  # running + waiting; only touched from the event loop

    async def run(self, fn, *args, **kwargs):
        if self.pending >= self.workers + self.max_queue:
            raise HTTPException(503, f"server busy: {self.pending} requests in progress or waiting; try again later")
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, lambda: fn(*args, **kwargs))
        finally:
            self.pending -= 1

    def status(self) -> dict:
        return dict(workers=self.workers, busy=min(self.pending, self.workers),
                    waiting=max(0, self.pending - self.workers), max_queue=self.max_queue)


class _TemporaryFileResponse(FileResponse):
    """A file response that removes its request's folder however sending ends (a client may hang up)."""

    def __init__(self, *args, folder: Path, **kwargs):
        super().__init__(*args, **kwargs)
        self.folder = folder

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


class Service:
    """The loaded model, the noise catalogue, the limits, the worker pool and the scratch folder.

    Loads the model at once, so a wrong checkpoint fails at start-up rather than at the first request.
    """

    def __init__(self, settings: Settings):
        if settings.threads:
            torch.set_num_threads(settings.threads)
        self.settings = settings
        self.backend = load_backend(settings.checkpoint, settings.backend, settings.device, settings.threads,
                                    settings.precision)
        self.engine = ChunkedSeparator(self.backend, settings.chunk_seconds, settings.batch_size,
                                       shifts=settings.shifts)
        self.noises = NoiseCatalogue(settings.noise_dir)
        self.limits = Limits(settings, self.engine.sample_rate)
        self.upload_names: dict[Path, str] = {}  # stored path -> the client's file name, for messages
        self.pool = WorkerPool(settings.workers, settings.max_queue)
        self.scratch = Path(tempfile.mkdtemp(prefix="sepgan-serve-"))

    @property
    def noise_classes(self) -> list[str] | None:
        """The classes the model names in what it removes; None for a model that names none."""
        classifier = getattr(getattr(self.backend, "model", None), "noise_classifier", None)
        return classifier.classes if classifier is not None else None

    @property
    def names_noise(self) -> bool:
        return self.noise_classes is not None

    def close(self) -> None:
        self.pool.executor.shutdown(wait=True)
        shutil.rmtree(self.scratch, ignore_errors=True)

    def request_folder(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.scratch))

    async def receive(self, upload: UploadFile, folder: Path, stem: str, output_rate: int | None = None):
        """Copy an upload into `folder` (counting its size) and check it is audio within the limits."""
        name = Path(upload.filename or "upload").name
        path = folder / f"{stem}{Path(name).suffix.lower()}"
        self.upload_names[path] = name
        size = 0
        with path.open("wb") as out:
            while chunk := await upload.read(COPY_BLOCK):
                size += len(chunk)
                self.limits.check_size(size, name)
                out.write(chunk)
        return path, name, self.limits.check_audio(path, name, output_rate)

    @staticmethod
    def audio_response(path: Path, folder: Path, download_name: str, fmt: str, **headers) -> FileResponse:
        return _TemporaryFileResponse(path, media_type=MEDIA_TYPES.get(fmt, "application/octet-stream"),
                                      filename=download_name, headers=headers, folder=folder)

    async def guarded(self, folder: Path, work):
        """Run `work()`; on any failure remove the request's folder and turn audio errors into a 400.

        Messages name the uploads as the client called them, not by their paths here.
        """
        try:
            return await work()
        except (AudioError, KeyError, ValueError) as err:
            shutil.rmtree(folder, ignore_errors=True)
            message = str(err).strip("'\"") if isinstance(err, KeyError) else str(err)
            for path, name in self.upload_names.items():
                if path.parent == folder:
                    message = message.replace(str(path), name)
            raise HTTPException(400, message.replace(str(folder) + "/", "")) from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            for path in [p for p in self.upload_names if p.parent == folder]:
                del self.upload_names[path]


def mono_at(path: Path, sample_rate: int, minimum: int) -> np.ndarray:
    """A file mixed down and resampled for display, padded to at least one STFT window.

    Streamed in blocks: only the mono result at `sample_rate` is ever held whole.
    """
    info = audio_info(path)
    blocks = resampled(read_blocks(path, 1 << 16, mono=True), info.samplerate, sample_rate, 1)
    wav = np.concatenate([np.zeros(0, np.float32), *(b[0] for b in blocks)])
    return np.pad(wav, (0, max(0, minimum - len(wav))))
