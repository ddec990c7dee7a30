"""`sepgan serve` through FastAPI's test client: good uploads, bad uploads, limits, many at once."""

import asyncio
import email.policy
import io
import re
from email.parser import BytesParser

import httpx2 as httpx
import numpy as np
import pytest
import soundfile as sf
import torch
from fastapi.testclient import TestClient

from sepgan.commands import main
from sepgan.inference.precision import resolve_precision
from sepgan.serve.app import Settings, create_app
from sepgan.serve.service import _TemporaryFileResponse
from sepgan.serve.noises import NoiseCatalogue
from tests.conftest import noisy_speech, write_noise

LIMIT_MB = 0.5
LIMIT_SECONDS = 8.0


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("noise")
    for seed, label in enumerate(("hum", "hum", "street")):
        write_noise(root / label / f"{seed}.wav", seconds=1.0, seed=seed)
    return root


@pytest.fixture(scope="module")
def app(tiny_checkpoint, noise_dir):
    return create_app(Settings(checkpoint=tiny_checkpoint, noise_dir=noise_dir, max_upload_mb=LIMIT_MB,
                               max_seconds=LIMIT_SECONDS, workers=2, max_queue=32))


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


def audio_bytes(seconds=2.0, sr=22050, channels=1, fmt="WAV", subtype="PCM_16") -> bytes:
    wav = np.stack([noisy_speech(seconds, sr, seed=c) for c in range(channels)], 1)
    buf = io.BytesIO()
    sf.write(buf, wav, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def read(response) -> tuple[np.ndarray, int]:
    return sf.read(io.BytesIO(response.content), dtype="float32", always_2d=True)


def assert_scratch_empty(app):
    assert list(app.state.scratch.iterdir()) == []


def test_good_upload_returns_audio_of_the_same_length_and_rate(client, app):
    r = client.post("/api/separate", files={"file": ("talk.wav", audio_bytes(2.0, 22050, 2), "audio/wav")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav" and "talk_clean.wav" in r.headers["content-disposition"]
    wav, sr = read(r)
    assert sr == 22050 and wav.shape == (44100, 2) and np.abs(wav).max() > 0.01
    assert_scratch_empty(app)


def test_format_by_parameter_or_accept_header(client):
    upload = {"file": ("talk.wav", audio_bytes(1.0), "audio/wav")}
    r = client.post("/api/separate?format=flac", files=upload)
    assert r.headers["content-type"] == "audio/flac" and sf.info(io.BytesIO(r.content)).format == "FLAC"
    r = client.post("/api/separate", files=upload, headers={"Accept": "audio/ogg"})
    assert r.headers["content-type"] == "audio/ogg" and sf.info(io.BytesIO(r.content)).format == "OGG"
    r = client.post("/api/separate", files=upload, headers={"Accept": "application/json"})
    assert r.status_code == 406 and "format=" in r.json()["detail"]
    r = client.post("/api/separate?sample_rate=8000&mono=true", files=upload)
    wav, sr = read(r)
    assert sr == 8000 and wav.shape == (8000, 1)
    r = client.post("/api/separate", files={"file": ("sun.au", audio_bytes(1.0, fmt="AU"), "audio/basic")})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"  # formats outside the list come back as wav
    assert sf.info(io.BytesIO(r.content)).format == "WAV"


def test_speech_and_noise_add_up_to_the_upload(client):
    upload = {"file": ("talk.wav", audio_bytes(1.5, 16000, subtype="FLOAT"), "audio/wav")}
    speech, _ = read(client.post("/api/separate", files=upload))
    noise, _ = read(client.post("/api/separate?stem=noise", files=upload))
    original, _ = sf.read(io.BytesIO(upload["file"][1]), dtype="float32", always_2d=True)
    np.testing.assert_allclose(speech + noise, original, atol=1e-6)


def test_dry_mixes_the_upload_back_into_the_speech(client):
    upload = {"file": ("talk.wav", audio_bytes(1.0, 16000, subtype="FLOAT"), "audio/wav")}
    original, _ = sf.read(io.BytesIO(upload["file"][1]), dtype="float32", always_2d=True)
    wet, _ = read(client.post("/api/separate", files=upload))
    blended, _ = read(client.post("/api/separate?dry=0.3", files=upload))
    np.testing.assert_allclose(blended, 0.7 * wet + 0.3 * original, atol=1e-6)
    r = client.post("/api/separate?dry=1.5", files=upload)
    assert r.status_code == 422 and "'dry'" in r.json()["detail"]


def parts_of(response) -> dict[str, tuple[str, str, bytes]]:
    """name: (file name, media type, bytes) of each part of a multipart/form-data answer (read by the email parser)."""
    head = f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=email.policy.HTTP).parsebytes(head + response.content)
    return {part.get_param("name", header="content-disposition"):
            (part.get_filename(), part.get_content_type(), part.get_payload(decode=True)) for part in message.iter_parts()}


def test_one_upload_brings_speech_noise_and_spectrogram_back_as_parts(client, app):
    upload = {"file": ("talk.flac", audio_bytes(1.5, 16000, fmt="FLAC"), "audio/flac")}
    r = client.post("/api/separate?format=wav", files=upload, headers={"Accept": "multipart/form-data"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("multipart/form-data; boundary=") and r.headers["x-sample-rate"] == "16000"
    parts = parts_of(r)
    assert list(parts) == ["speech", "noise", "spectrogram"]
    assert parts["speech"][:2] == ("talk_clean.wav", "audio/wav") and parts["noise"][:2] == ("talk_noise.wav", "audio/wav")
    assert parts["spectrogram"][1] == "image/png" and parts["spectrogram"][2].startswith(b"\x89PNG")
    speech, noise = (sf.read(io.BytesIO(parts[name][2]), dtype="float32")[0] for name in ("speech", "noise"))
    alone, _ = sf.read(io.BytesIO(client.post("/api/separate?format=wav", files=upload).content), dtype="float32")
    original, _ = sf.read(io.BytesIO(upload["file"][1]), dtype="float32")
    np.testing.assert_array_equal(speech, alone)  # the same speech as the audio-only answer
    np.testing.assert_allclose(speech + noise, original, atol=1e-4)  # 16-bit files: one step of rounding each
    assert_scratch_empty(app)


def test_bad_uploads_get_4xx_naming_the_problem_and_the_server_goes_on(client, app):
    flac = audio_bytes(3.0, 16000, fmt="FLAC")
    long = audio_bytes(LIMIT_SECONDS + 1, 8000, subtype="PCM_U8")  # small in bytes, too long in seconds
    big = b"RIFF" + bytes(int(LIMIT_MB * 1e6) + 100)
    cases = [
        ({"file": ("empty.wav", b"", "audio/wav")}, 400, "'empty.wav' is empty"),
        ({"file": ("notes.wav", b"just some text\n" * 50, "audio/wav")}, 415, "'notes.wav' is not audio"),
        ({"file": ("cut.flac", flac[:len(flac) // 2], "audio/flac")}, 400, "truncated or corrupt"),
        ({"file": ("huge.wav", big, "audio/wav")}, 413, f"upload limit of {LIMIT_MB:g} MB"),
        ({"file": ("long.wav", long, "audio/wav")}, 413, f"at most {LIMIT_SECONDS:g} s"),
        ({"upload": ("talk.wav", flac, "audio/flac")}, 422, "missing field 'file'"),
    ]
    for files, status, message in cases:
        r = client.post("/api/separate", files=files)
        assert r.status_code == status, (files, r.text)
        assert message in r.json()["detail"], r.json()
        assert client.get("/api/health").json()["status"] == "ok"
    r = client.post("/api/separate", files={"file": ("ok.flac", flac, "audio/flac")})
    assert r.status_code == 200 and read(r)[0].shape == (48000, 1)
    assert_scratch_empty(app)


def test_oversized_request_is_refused_from_its_header(client):
    r = client.post("/api/separate", content=b"x" * 10, headers={"content-length": str(10**9),
                                                                 "content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413 and "upload limit" in r.json()["detail"]


def test_twenty_requests_at_once_all_complete(app):
    async def many():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=120) as c:
            upload = audio_bytes(1.0, 16000)
            return await asyncio.gather(*[
                c.post("/api/separate", files={"file": (f"{i}.wav", upload, "audio/wav")}) for i in range(20)])

    responses = asyncio.run(many())
    assert [r.status_code for r in responses] == [200] * 20
    assert all(read(r)[0].shape == (16000, 1) for r in responses)
    assert_scratch_empty(app)


def test_a_full_queue_answers_503_instead_of_piling_up(tiny_checkpoint):
    app = create_app(Settings(checkpoint=tiny_checkpoint, workers=1, max_queue=1))

    async def many():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=120) as c:
            upload = audio_bytes(4.0, 16000)
            return await asyncio.gather(*[
                c.post("/api/separate", files={"file": ("x.wav", upload, "audio/wav")}) for _ in range(6)])

    codes = sorted(r.status_code for r in asyncio.run(many()))
    assert 200 in codes and 503 in codes and set(codes) == {200, 503}, codes
    assert app.state.pool.pending == 0


def test_noise_is_added_at_exactly_the_asked_snr_and_the_upload_level(noise_dir):
    catalogue = NoiseCatalogue(noise_dir)
    wav = np.stack([noisy_speech(2.0, 16000, seed=1), noisy_speech(2.0, 16000, seed=2)])
    for option in ("synthetic/siren", "folder/hum"):
        mixture = catalogue.add(wav, 16000, option, snr_db=3.0, seed=7)
        noise = np.broadcast_to(catalogue.noise(option, 16000, wav.shape[-1], seed=7), wav.shape)
        # mixture = g * (wav + k * noise): recover g and g*k by least squares, then the SNR
        (g, gk), *_ = np.linalg.lstsq(np.stack([wav.ravel(), noise.ravel()], 1), mixture.ravel(), rcond=None)
        snr = 10 * np.log10(np.mean(wav**2) / np.mean((gk / g * noise) ** 2))
        assert abs(snr - 3.0) < 0.01, (option, snr)
        assert abs(np.sqrt(np.mean(mixture**2) / np.mean(wav**2)) - 1) < 0.01  # the upload's level
    with pytest.raises(KeyError, match="unknown noise 'synthetic/rain'"):
        catalogue.noise("synthetic/rain", 16000, 100)


def test_mix_endpoint(client, app):
    upload = {"file": ("talk.wav", audio_bytes(2.0, 16000, subtype="FLOAT"), "audio/wav")}
    original, _ = sf.read(io.BytesIO(upload["file"][1]), dtype="float32", always_2d=True)
    for noise in ("synthetic/siren", "folder/hum"):
        r = client.post(f"/api/mix?noise={noise}&snr_db=3", files=upload)
        assert r.status_code == 200, r.text
        mixture, sr = read(r)
        assert sr == 16000 and mixture.shape == original.shape and not np.allclose(mixture, original, atol=1e-3)
    r = client.post("/api/mix?noise=folder/rain&snr_db=3", files=upload)
    assert r.status_code == 400 and "unknown noise 'folder/rain'" in r.json()["detail"] and "folder/hum" in r.json()["detail"]
    silent = io.BytesIO()
    sf.write(silent, np.zeros(16000), 16000, format="WAV")
    r = client.post("/api/mix?noise=synthetic/tone", files={"file": ("quiet.wav", silent.getvalue(), "audio/wav")})
    assert r.status_code == 400 and "silent" in r.json()["detail"]
    assert_scratch_empty(app)


def test_spectrogram_and_listings(client, app):
    a, b = audio_bytes(1.0), audio_bytes(1.0, 16000)
    r = client.post("/api/spectrogram", files={"input": ("a.wav", a, "audio/wav"), "output": ("b.wav", b, "audio/wav")})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content[:4] == b"\x89PNG"
    models = client.get("/api/models").json()
    assert models[0]["name"] == "tiny" and models[0]["sample_rate"] == 16000 and models[0]["backend"] == "torch"
    assert models[0]["precision"] == resolve_precision("auto", torch.device("cpu"))  # the default, resolved here
    ids = [n["id"] for n in client.get("/api/noises").json()]
    assert "synthetic/siren" in ids and "folder/hum" in ids and "folder/street" in ids
    health = client.get("/api/health").json()
    assert health["limits"] == {"max_upload_mb": LIMIT_MB, "max_seconds": LIMIT_SECONDS,
                                "max_samples": LIMIT_SECONDS * 96_000} and health["workers"] == 2
    assert_scratch_empty(app)


def test_page_and_docs_load_nothing_from_elsewhere(client):
    for path in ("/", "/docs"):
        r = client.get(path)
        assert r.status_code == 200
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", r.text), path
        for asset in re.findall(r"""(?:src|href)\s*=\s*["']([^"'#]+)["']""", r.text):
            assert client.get(asset).status_code == 200, asset
    assert "/api/separate" in client.get("/openapi.json").json()["paths"]


def test_a_client_hanging_up_still_removes_the_request_folder(tmp_path):
    folder = tmp_path / "request"
    folder.mkdir()
    (folder / "speech.wav").write_bytes(audio_bytes(0.5))
    response = _TemporaryFileResponse(folder / "speech.wav", media_type="audio/wav", folder=folder)

    async def receive():  # the client sends nothing more (and never says goodbye)
        await asyncio.sleep(60)
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.body":
            raise OSError("connection reset by peer")

    scope = {"type": "http", "method": "GET", "headers": [], "path": "/", "http_version": "1.1"}
    with pytest.raises(OSError):
        asyncio.run(response(scope, receive, send))
    assert not folder.exists()


@pytest.mark.parametrize("args,message", [
    (["--checkpoint", "missing.ckpt"], "checkpoint not found: 'missing.ckpt'"),
    (["--noise-dir", "no/such/folder"], "noise folder 'no/such/folder' does not exist"),
])
def test_serve_command_names_bad_options(args, message, tiny_checkpoint, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    if "--checkpoint" not in args:
        args = [*args, "--checkpoint", str(tiny_checkpoint)]
    assert main(["serve", *args]) == 2
    assert message in capsys.readouterr().err


def test_serve_command_rejects_a_non_positive_limit(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--max-seconds", "0"])
    assert exit_.value.code == 2 and "argument --max-seconds: must be a positive number" in capsys.readouterr().err


def test_serve_command_passes_shifts_to_every_request(tiny_checkpoint, monkeypatch):
    import uvicorn

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **_: served.append(app))
    assert main(["serve", "--checkpoint", str(tiny_checkpoint), "--shifts", "2"]) == 0
    engine = served[0].state.service.engine
    assert engine.offsets == [0, engine.frontend.hop_length // 2]

    async def listing():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=served[0]), base_url="http://test") as c:
            return (await c.get("/api/models")).json()

    assert asyncio.run(listing())[0]["shifts"] == 2
