"""The web page and HTTP API of `sepgan serve` (FastAPI; OpenAPI docs at /docs).

Every upload is copied into a temporary folder of its own, checked (size, header, duration) and
handed to a bounded pool of worker threads: with more requests than workers they wait in line,
and past `max_queue` waiting ones the server answers 503 instead of piling up work. The folder is
removed once the response has been sent, whatever happened.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import matplotlib.pyplot as plt
import numpy as np
import soundfile as sf
import torch
from fastapi import File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline

from sepgan.audio import AudioError, FrontEnd, audio_info, load_audio
from sepgan.backends import load_backend
from sepgan.plots import spectrogram_figure
from sepgan.separate import FORMATS, ChunkedSeparator, OutputFormat, separate_file
from sepgan.serve.noises import NoiseCatalogue

PAGE = Path(__file__).with_name("static") / "index.html"
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg", "aiff": "audio/aiff"}
ACCEPTED = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/wave": "wav", "audio/vnd.wave": "wav",
            "audio/flac": "flac", "audio/x-flac": "flac", "audio/ogg": "ogg", "audio/aiff": "aiff",
            "audio/x-aiff": "aiff"}
LIBSNDFILE_TO_NAME = {v: k for k, v in FORMATS.items()}
COPY_BLOCK = 1 << 20
FORM_OVERHEAD = 64 * 1024  # multipart headers around the file(s), allowed on top of the limit
_plot_lock = threading.Lock()  # matplotlib's pyplot is not thread-safe


@dataclass
class Settings:
    checkpoint: Path
    backend: str | None = None
    noise_dir: Path | None = None
    max_upload_mb: float = 100.0
    max_seconds: float = 600.0
    workers: int = 1
    max_queue: int = 32
    chunk_seconds: float = 4.0
    batch_size: int = 1
    threads: int | None = None


class Limits:
    """Size and duration checks, with messages that say what the limit is."""

    def __init__(self, settings: Settings):
        self.max_bytes = int(settings.max_upload_mb * 1e6)
        self.max_seconds = settings.max_seconds

    def check_size(self, size: int, name: str) -> None:
        if size > self.max_bytes:
            raise HTTPException(413, f"'{name}' is larger than this server's upload limit of "
                                     f"{self.max_bytes / 1e6:g} MB")

    def check_audio(self, path: Path, name: str):
        """The file's header, or a 4xx naming the problem (empty, not audio, too long)."""
        if path.stat().st_size == 0:
            raise HTTPException(400, f"'{name}' is empty (0 bytes)")
        try:
            info = audio_info(path)
        except AudioError as err:
            raise HTTPException(415, f"'{name}' is not audio this server can read (wav, flac, ogg, aiff): "
                                     f"{str(err).replace(str(path), name)}") from None
        seconds = info.frames / info.samplerate
        if seconds > self.max_seconds:
            raise HTTPException(413, f"'{name}' is {seconds:.1f} s long; this server accepts at most "
                                     f"{self.max_seconds:g} s")
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


def _format_from_accept(accept: str | None) -> str | None:
    """The preferred audio format in an Accept header; None for any (*/*, audio/*, absent)."""
    if not accept:
        return None
    ranked = []
    for i, part in enumerate(accept.split(",")):
        media, *params = [p.strip() for p in part.split(";")]
        q = next((float(p[2:]) for p in params if p.startswith("q=") and p[2:].replace(".", "", 1).isdigit()), 1.0)
        ranked.append((-q, i, media.lower()))
    for _, _, media in sorted(ranked):
        if media in ACCEPTED:
            return ACCEPTED[media]
        if media in ("*/*", "audio/*"):
            return None
    raise HTTPException(406, f"cannot answer with any of '{accept}'; this endpoint returns "
                             f"{', '.join(sorted(set(ACCEPTED)))} (or use ?format=)")


def _readable_validation_error(exc: RequestValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"] if p not in ("body", "query"))
        if error["type"] == "missing":
            problems.append(f"missing field '{where}'" + (" (send the audio as multipart/form-data)"
                                                           if where in ("file", "input") else ""))
        else:
            problems.append(f"'{where}': {error['msg']}")
    return "; ".join(problems)


def create_app(settings: Settings):
    """The application; loads the model now, so a wrong checkpoint fails at start-up."""
    if settings.threads:
        torch.set_num_threads(settings.threads)
    backend = load_backend(settings.checkpoint, settings.backend, threads=settings.threads)
    engine = ChunkedSeparator(backend, settings.chunk_seconds, settings.batch_size)
    noises = NoiseCatalogue(settings.noise_dir)
    limits = Limits(settings)
    pool = WorkerPool(settings.workers, settings.max_queue)
    scratch = Path(tempfile.mkdtemp(prefix="sepgan-serve-"))

    @asynccontextmanager
    async def lifespan(_app):
        yield
        pool.executor.shutdown(wait=True)
        shutil.rmtree(scratch, ignore_errors=True)

    # FastAPIOffline serves the /docs page's script and style itself: FastAPI's own fetches them from a CDN.
    app = FastAPIOffline(title="sepgan", lifespan=lifespan,
                         description="Remove noise from speech with a U-Net on STFT spectrograms. Audio of any length "
                                     f"up to {settings.max_seconds:g} s and {settings.max_upload_mb:g} MB.")
    app.state.scratch = scratch
    app.state.pool = pool

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, exc: RequestValidationError):
        return JSONResponse({"detail": _readable_validation_error(exc)}, status_code=422)

    @app.middleware("http")
    async def refuse_oversized_bodies(request: Request, call_next):
        """Answer 413 from the Content-Length alone, before a byte of an oversized upload is read."""
        length = request.headers.get("content-length", "")
        files = 2 if request.url.path == "/api/spectrogram" else 1
        if request.method == "POST" and length.isdigit() and int(length) > files * limits.max_bytes + FORM_OVERHEAD:
            return JSONResponse({"detail": f"request of {int(length) / 1e6:.1f} MB is larger than this server's "
                                           f"upload limit of {limits.max_bytes / 1e6:g} MB"}, status_code=413)
        return await call_next(request)

    async def receive(upload: UploadFile, folder: Path, stem: str):
        """Copy an upload into `folder` (counting its size) and check it is audio within the limits."""
        name = Path(upload.filename or "upload").name
        path = folder / f"{stem}{Path(name).suffix.lower()}"
        size = 0
        with path.open("wb") as out:
            while chunk := await upload.read(COPY_BLOCK):
                size += len(chunk)
                limits.check_size(size, name)
                out.write(chunk)
        return path, name, limits.check_audio(path, name)

    def request_folder() -> Path:
        return Path(tempfile.mkdtemp(dir=scratch))

    def audio_response(path: Path, folder: Path, download_name: str, fmt: str, **headers) -> FileResponse:
        return _TemporaryFileResponse(path, media_type=MEDIA_TYPES.get(fmt, "application/octet-stream"),
                                      filename=download_name, headers=headers, folder=folder)

    async def guarded(folder: Path, work):
        """Run `work()`; on any failure remove the request's folder and turn audio errors into a 400."""
        try:
            return await work()
        except AudioError as err:
            shutil.rmtree(folder, ignore_errors=True)
            raise HTTPException(400, str(err).replace(str(folder) + "/", "")) from None
        except (KeyError, ValueError) as err:
            shutil.rmtree(folder, ignore_errors=True)
            raise HTTPException(400, str(err).strip("'\"")) from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get("/api/health", summary="Whether the server is up, how busy it is, and its limits")
    async def health():
        return dict(status="ok", **pool.status(),
                    limits=dict(max_upload_mb=settings.max_upload_mb, max_seconds=settings.max_seconds))

    @app.get("/api/models", summary="The model this server runs")
    async def models():
        return [dict(name=Path(settings.checkpoint).stem, file=Path(settings.checkpoint).name, default=True,
                     sample_rate=engine.sample_rate, **backend.describe())]

    @app.get("/api/noises", summary="Noises that /api/mix can add (synthetic kinds and the server's noise folder)")
    async def noise_options():
        return noises.options()

    @app.post("/api/separate", summary="Clean speech (or the removed noise) of an uploaded audio file",
              response_class=FileResponse,
              responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()},
                               "description": "the cleaned audio, same length and rate as the upload"}})
    async def separate(request: Request, file: UploadFile = File(..., description="audio: wav, flac, ogg or aiff"),
                       format: Literal["wav", "flac", "ogg", "aiff"] | None = Query(
                           None, description="output format (default: from Accept, else the upload's)"),
                       stem: Literal["speech", "noise"] = Query("speech", description="what to return"),
                       sample_rate: int | None = Query(None, gt=0, le=384000, description="output rate (default: the upload's)"),
                       mono: bool = Query(False, description="mix channels down first")):
        fmt = format or _format_from_accept(request.headers.get("accept"))
        folder = request_folder()

        async def work():
            source, name, info = await receive(file, folder, "input")
            name_out = fmt or LIBSNDFILE_TO_NAME.get(info.format, "wav")  # other formats come back as wav
            out = OutputFormat.for_input(info, name_out, None, sample_rate)
            speech, noise = folder / f"speech.{name_out}", folder / f"noise.{name_out}"
            await pool.run(separate_file, engine, source, speech, noise if stem == "noise" else None,
                           mono=mono, out=out)
            result = noise if stem == "noise" else speech
            return audio_response(result, folder, f"{Path(name).stem}_{'clean' if stem == 'speech' else 'noise'}.{name_out}",
                                  name_out, **{"X-Sample-Rate": str(out.sample_rate)})

        return await guarded(folder, work)

    @app.post("/api/mix", summary="Add a noise to an upload at a chosen SNR (to try the model)",
              response_class=FileResponse)
    async def mix(file: UploadFile = File(..., description="clean or noisy speech"),
                  noise: str = Query(..., description="a noise id from /api/noises, e.g. synthetic/siren"),
                  snr_db: float = Query(5.0, ge=-30, le=50, description="signal-to-noise ratio in dB"),
                  seed: int = Query(0, description="picks the noise recording and excerpt")):
        folder = request_folder()

        async def work():
            source, name, info = await receive(file, folder, "input")
            name_out = LIBSNDFILE_TO_NAME.get(info.format, "wav")
            out = OutputFormat.for_input(info, name_out)
            target = folder / f"mixture.{name_out}"

            def add_noise():
                wav, sr = load_audio(source, mono=False)
                mixture = noises.add(wav, sr, noise, snr_db, seed)
                sf.write(target, mixture.T, sr, subtype=out.subtype, format=out.format)

            await pool.run(add_noise)
            label = noise.partition("/")[2]
            return audio_response(target, folder, f"{Path(name).stem}_{label}_{snr_db:g}dB.{name_out}", name_out)

        return await guarded(folder, work)

    @app.post("/api/spectrogram", summary="Spectrograms of one or two uploads, side by side, as a PNG",
              response_class=Response, responses={200: {"content": {"image/png": {}}}})
    async def spectrogram(first: UploadFile = File(..., alias="input", description="first panel"),
                          second: UploadFile | None = File(None, alias="output",
                                                           description="second panel, same colour scale")):
        folder = request_folder()

        async def work():
            uploads = [("input", first)] + ([("output", second)] if second is not None else [])
            paths = [(title, (await receive(upload, folder, title))[0]) for title, upload in uploads]

            def draw() -> bytes:
                fe = FrontEnd(engine.sample_rate, 512, 256)  # display only: a coarser hop for long files
                signals = {title: torch.from_numpy(_mono_at(path, fe.sample_rate, fe.n_fft)) for title, path in paths}
                with _plot_lock:
                    fig = spectrogram_figure(signals, fe)
                    png = io.BytesIO()
                    fig.savefig(png, format="png", dpi=80, bbox_inches="tight")
                    plt.close(fig)
                return png.getvalue()

            png = await pool.run(draw)
            shutil.rmtree(folder, ignore_errors=True)
            return Response(png, media_type="image/png")

        return await guarded(folder, work)

    return app


def _mono_at(path: Path, sample_rate: int, minimum: int) -> np.ndarray:
    """A file mixed down and resampled for display, padded to at least one STFT window."""
    wav = load_audio(path, sample_rate, mono=True)[0][0]
    return np.pad(wav, (0, max(0, minimum - len(wav))))
