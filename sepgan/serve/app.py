"""The web page and HTTP API of `sepgan serve` (FastAPI; OpenAPI docs at /docs).

Routes are plain module-level functions; what they share (model, limits, worker pool, scratch
folder) is the app's `Service` (`sepgan.serve.service`), reached through `request.app.state.service`.
"""

from __future__ import annotations

import io
import json
import shutil
import threading
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

import matplotlib.pyplot as plt
import soundfile as sf
import torch
from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.datastructures import Headers

from sepgan.audio import FrontEnd, load_audio
from sepgan.inference.files import OutputFormat, separate_file
from sepgan.plots import spectrogram_figure
from sepgan.serve.service import LIBSNDFILE_TO_NAME, MEDIA_TYPES, Limits, Service, Settings, mono_at

PAGE = Path(__file__).with_name("static") / "index.html"
ACCEPTED = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/wave": "wav", "audio/vnd.wave": "wav",
            "audio/flac": "flac", "audio/x-flac": "flac", "audio/ogg": "ogg", "audio/aiff": "aiff",
            "audio/x-aiff": "aiff"}
FORM_OVERHEAD = 64 * 1024  # multipart headers around the file(s), allowed on top of the limit
PARTS = "multipart/form-data"  # Accept of /api/separate for speech, noise and spectrogram in one answer
_plot_lock = threading.Lock()  # matplotlib's pyplot is not thread-safe

router = APIRouter()


def service(request: Request) -> Service:
    return request.app.state.service


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


def _accepts_parts(accept: str | None) -> bool:
    """Whether an Accept header names multipart/form-data."""
    return any(part.split(";")[0].strip().lower() == PARTS for part in (accept or "").split(","))


def _multipart(parts: list[tuple[str, str, str, bytes]], **headers) -> Response:
    """A multipart/form-data response of (name, file name, media type, bytes) parts, which a browser's
    `Response.formData()` turns into files."""
    boundary = uuid.uuid4().hex
    body = []
    for name, filename, media_type, data in parts:
        filename = filename.replace('"', "%22").replace("\r", "").replace("\n", "")
        body += [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                 f"Content-Type: {media_type}\r\n\r\n".encode(), data, b"\r\n"]
    body.append(f"--{boundary}--\r\n".encode())
    return Response(b"".join(body), media_type=f"{PARTS}; boundary={boundary}", headers=headers)


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


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page():
    return HTMLResponse(PAGE.read_text(encoding="utf-8"))


@router.get("/api/health", summary="Whether the server is up, how busy it is, and its limits")
async def health(svc: Service = Depends(service)):
    return dict(status="ok", **svc.pool.status(),
                limits=dict(max_upload_mb=svc.settings.max_upload_mb, max_seconds=svc.settings.max_seconds,
                            max_samples=svc.limits.max_samples))


@router.get("/api/models", summary="The model this server runs")
async def models(svc: Service = Depends(service)):
    checkpoint = Path(svc.settings.checkpoint)
    return [dict(name=checkpoint.stem, file=checkpoint.name, default=True, sample_rate=svc.engine.sample_rate,
                 noise_classes=svc.noise_classes, shifts=len(svc.engine.offsets), **svc.backend.describe())]


@router.get("/api/noises", summary="Noises that /api/mix can add (synthetic kinds and the server's noise folder)")
async def noise_options(svc: Service = Depends(service)):
    return svc.noises.options()


@router.post("/api/separate", summary="Clean speech (or the removed noise) of an uploaded audio file",
             response_class=FileResponse,
             responses={200: {"content": {**{t: {} for t in MEDIA_TYPES.values()}, PARTS: {}},
                              "description": "the cleaned audio, same length and rate as the upload; with "
                                             f"`Accept: {PARTS}` the parts of one answer: `speech`, `noise` "
                                             "(the two add up to the upload), `spectrogram` (a PNG of the "
                                             "upload, the speech and the noise) and, from a model that names "
                                             "noise, `removed` (JSON: what noise was removed, and when). An "
                                             "audio answer carries the ten most confident of those in the "
                                             "header X-Removed-Noise when asked (name_noise=true)"}})
async def separate(request: Request, file: UploadFile = File(..., description="audio: wav, flac, ogg or aiff"),
                   format: Literal["wav", "flac", "ogg", "aiff"] | None = Query(
                       None, description="output format (default: from Accept, else the upload's)"),
                   stem: Literal["speech", "noise"] = Query("speech", description="what to return"),
                   sample_rate: int | None = Query(None, gt=0, le=384000, description="output rate (default: the upload's)"),
                   mono: bool = Query(False, description="mix channels down first"),
                   dry: float = Query(0.0, ge=0, le=1, description="share of the input mixed back into the speech "
                                                                   "(0: fully cleaned, 1: the input unchanged)"),
                   name_noise: bool = Query(False, description="an audio answer also names the removed noise in "
                                                               "the X-Removed-Noise header (the multipart answer "
                                                               "always does, from a model that names noise)"),
                   svc: Service = Depends(service)):
    parts = _accepts_parts(request.headers.get("accept"))
    fmt = format or (None if parts else _format_from_accept(request.headers.get("accept")))
    folder = svc.request_folder()

    async def work():
        source, name, info = await svc.receive(file, folder, "input", output_rate=sample_rate)
        name_out = fmt or LIBSNDFILE_TO_NAME.get(info.format, "wav")  # other formats come back as wav
        out = OutputFormat.for_input(info, name_out, None, sample_rate, 1 if mono else None)
        speech, noise = folder / f"speech.{name_out}", folder / f"noise.{name_out}"
        summary = await svc.pool.run(separate_file, svc.engine, source, speech,
                                     noise if stem == "noise" or parts else None, mono=mono, out=out, dry=dry,
                                     name_noise=svc.names_noise and (parts or name_noise))
        removed = summary.get("removed")
        if parts:
            return await _every_part(svc, folder, source, Path(name).stem, speech, noise, name_out, out.sample_rate,
                                     removed)
        result = noise if stem == "noise" else speech
        suffix = "clean" if stem == "speech" else "noise"
        headers = {"X-Sample-Rate": str(out.sample_rate)}
        if removed is not None:
            headers["X-Removed-Noise"] = json.dumps(removed[:10], separators=(",", ":"))
        return svc.audio_response(result, folder, f"{Path(name).stem}_{suffix}.{name_out}", name_out, **headers)

    return await svc.guarded(folder, work)


@router.post("/api/mix", summary="Add a noise to an upload at a chosen SNR (to try the model)",
             response_class=FileResponse)
async def mix(file: UploadFile = File(..., description="clean or noisy speech"),
              noise: str = Query(..., description="a noise id from /api/noises, e.g. synthetic/siren"),
              snr_db: float = Query(5.0, ge=-30, le=50, description="signal-to-noise ratio in dB"),
              seed: int = Query(0, description="picks the noise recording and excerpt"),
              svc: Service = Depends(service)):
    folder = svc.request_folder()

    async def work():
        source, name, info = await svc.receive(file, folder, "input")
        name_out = LIBSNDFILE_TO_NAME.get(info.format, "wav")
        out = OutputFormat.for_input(info, name_out)
        target = folder / f"mixture.{name_out}"

        def add_noise():
            wav, sr = load_audio(source, mono=False)
            mixture = svc.noises.add(wav, sr, noise, snr_db, seed)
            sf.write(target, mixture.T, sr, subtype=out.subtype, format=out.format)

        await svc.pool.run(add_noise)
        label = noise.partition("/")[2]
        return svc.audio_response(target, folder, f"{Path(name).stem}_{label}_{snr_db:g}dB.{name_out}", name_out)

    return await svc.guarded(folder, work)


def _spectrogram_png(paths: list[tuple[str, Path]], sample_rate: int) -> bytes:
    fe = FrontEnd(sample_rate, 512, 256)  # display only: a coarser hop for long files
    signals = {title: torch.from_numpy(mono_at(path, fe.sample_rate, fe.n_fft)) for title, path in paths}
    with _plot_lock:
        fig = spectrogram_figure(signals, fe)
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=80, bbox_inches="tight")
        plt.close(fig)
    return png.getvalue()


async def _every_part(svc: Service, folder: Path, source: Path, stem: str, speech: Path, noise: Path, fmt: str,
                      sample_rate: int, removed: list[dict] | None = None) -> Response:
    """Speech, noise, their spectrogram picture (and the noise report) as one multipart answer; the
    request's folder is removed."""
    try:
        panels = [("input", source), ("cleaned speech", speech), ("removed noise", noise)]
        png = await svc.pool.run(_spectrogram_png, panels, svc.engine.sample_rate)
        media = MEDIA_TYPES.get(fmt, "application/octet-stream")
        return _multipart([("speech", f"{stem}_clean.{fmt}", media, speech.read_bytes()),
                           ("noise", f"{stem}_noise.{fmt}", media, noise.read_bytes()),
                           ("spectrogram", f"{stem}_spectrogram.png", "image/png", png)]
                          + ([("removed", f"{stem}_removed.json", "application/json", json.dumps(removed).encode())]
                             if removed is not None else []),
                          **{"X-Sample-Rate": str(sample_rate)})
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@router.post("/api/spectrogram", summary="Spectrograms of one or two uploads, side by side, as a PNG",
             response_class=Response, responses={200: {"content": {"image/png": {}}}})
async def spectrogram(first: UploadFile = File(..., alias="input", description="first panel"),
                      second: UploadFile | None = File(None, alias="output",
                                                       description="second panel, same colour scale"),
                      svc: Service = Depends(service)):
    folder = svc.request_folder()

    async def work():
        uploads = [("input", first)] + ([("output", second)] if second is not None else [])
        paths = [(title, (await svc.receive(upload, folder, title))[0]) for title, upload in uploads]
        png = await svc.pool.run(_spectrogram_png, paths, svc.engine.sample_rate)
        shutil.rmtree(folder, ignore_errors=True)
        return Response(png, media_type="image/png")

    return await svc.guarded(folder, work)


def create_app(settings: Settings):
    """The application; loads the model now, so a wrong checkpoint fails at start-up."""
    svc = Service(settings)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        svc.close()

    # FastAPIOffline serves the /docs page's script and style itself: FastAPI's own fetches them from a CDN.
    app = FastAPIOffline(title="sepgan", lifespan=lifespan,
                         description="Remove noise from speech with a U-Net on STFT spectrograms. Audio of any length "
                                     f"up to {settings.max_seconds:g} s and {settings.max_upload_mb:g} MB.")
    app.state.service = svc
    app.state.scratch = svc.scratch
    app.state.pool = svc.pool
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(_BodyLimit, limits=svc.limits)
    app.include_router(router)
    return app


async def _validation_error(_request, exc: RequestValidationError):
    return JSONResponse({"detail": _readable_validation_error(exc)}, status_code=422)


class _BodyTooLarge(HTTPException):
    pass


class _BodyLimit:
    """A 413 for a request body over the upload limit, before more than the limit has been read.

    From the Content-Length when there is one (nothing is read), and by counting the bytes as they
    arrive whatever the headers say (a chunked upload has no length): Starlette parses the multipart
    form, and spools its files to disk, before a route runs, so the count has to sit below it, on
    the ASGI `receive`. Each file is then checked against the limit on its own (`Service.receive`).
    """

    def __init__(self, app, limits: Limits):
        self.app, self.limits = app, limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        files = 2 if scope["path"] == "/api/spectrogram" else 1
        limit = files * self.limits.max_bytes + FORM_OVERHEAD
        too_large = f"larger than this server's upload limit of {self.limits.max_bytes / 1e6:g} MB"
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > limit:
            response = JSONResponse({"detail": f"request of {int(length) / 1e6:.1f} MB is {too_large}"}, 413)
            return await response(scope, receive, send)
        received, started = 0, False

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # FastAPI re-raises an HTTPException from reading the body: a 413
                    raise _BodyTooLarge(413, f"request body {too_large} (stopped after {received / 1e6:.1f} MB)")
            return message

        async def watched(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _BodyTooLarge as err:  # where no exception handler below turned it into the response
            if started:
                raise
            await JSONResponse({"detail": err.detail}, 413)(scope, receive, send)
