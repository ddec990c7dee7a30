"""Bad input never passes as clean: a corpus of broken files through every reader, limits on what an
upload may cost before it is decoded, clean exits on SIGTERM, usage errors for impossible options."""

import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest
import soundfile as sf
import torch
from fastapi.testclient import TestClient

import sepgan
from sepgan.atomic import AtomicFile, remove_stale_parts
from sepgan.audio import AudioError, NonFiniteAudioError, NonFiniteWarning, audio_info
from sepgan.commands import main
from sepgan.evaluation import EvaluationError, FolderPairs
from sepgan.inference.backends import TorchBackend
from sepgan.inference.chunked import ChunkedSeparator
from sepgan.inference.files import FORMATS, OutputFormat
from sepgan.serve.app import Settings, create_app
from tests.bad_audio import mp3_writable
from tests.conftest import noisy_speech, tiny_separator

REPO = Path(__file__).resolve().parents[1]
SEPGAN = [sys.executable, "-c", "import sys; from sepgan.commands import main; sys.exit(main())"]


def sepgan_process(*args, tmp: Path) -> subprocess.Popen:
    """`sepgan ARGS` from this checkout in a process of its own, its temporary files under `tmp`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp)}
    return subprocess.Popen([*SEPGAN, *map(str, args)], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)


# --- `sepgan separate` ------------------------------------------------------------------------------


def test_separate_reports_every_bad_file_and_cleans_the_good_ones(bad_audio, tmp_path, tiny_checkpoint, capsys):
    batch = [f for f in bad_audio if not f.huge]
    out = tmp_path / "out"
    code = main(["separate", *[str(f.path) for f in batch], "-o", str(out), "--format", "wav",
                 "--checkpoint", str(tiny_checkpoint), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1, err
    bad = [f for f in batch if not f.good]
    for f in batch:
        written = out / f"{f.path.stem}.wav"
        if f.good:
            assert written.is_file(), (f.name, err)
            wav, sr = sf.read(written, dtype="float32", always_2d=True)
            info = sf.info(str(f.path))
            assert (sr, wav.shape) == (info.samplerate, (info.frames, info.channels)), f.name
            assert np.isfinite(wav).all(), f.name
        else:
            assert not written.exists(), f.name
            reported = [line for line in err.splitlines() if line.startswith(f"error: {f.path}: ")]
            assert len(reported) == 1 and f.problem in reported[0], (f.name, err)
    assert f"{len(bad)} of {len(batch)} files failed" in err
    assert f"cleaned {len(batch) - len(bad)} of {len(batch)} files" in err
    assert "--fix-nonfinite" in next(line for line in err.splitlines() if "nan.wav: " in line)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{f.path.stem}.wav" for f in batch if f.good)
    if mp3_writable():  # an MP3 written as WAV gets WAV's default sample format
        assert sf.info(str(out / "talk.wav")).subtype == "PCM_16"


def test_the_python_api_refuses_every_bad_file_by_name_and_cleans_the_good_ones(bad_audio, tmp_path, tiny_checkpoint):
    model = sepgan.load(tiny_checkpoint)
    for f in (f for f in bad_audio if not f.huge):
        target = tmp_path / f"{f.path.stem}.wav"
        if f.good:
            model.separate_file(f.path, target, format="wav")
            wav, _ = sf.read(target, dtype="float32", always_2d=True)
            assert wav.shape[0] == sf.info(str(f.path)).frames and np.isfinite(wav).all(), f.name
        else:
            with pytest.raises((AudioError, ValueError, FileNotFoundError)) as caught:
                model.separate_file(f.path, target, format="wav")
            assert f.problem in str(caught.value), (f.name, str(caught.value))
            assert not target.exists() and not list(tmp_path.glob(f".{target.name}.*.part")), f.name


def test_nonfinite_samples_become_zeros_only_when_asked(bad_audio, tmp_path, tiny_checkpoint, capsys):
    files = {f.name: f.path for f in bad_audio}
    out = tmp_path / "out"
    assert main(["separate", str(files["nan.wav"]), str(files["inf.wav"]), "-o", str(out), "--fix-nonfinite",
                 "--save-noise", "--checkpoint", str(tiny_checkpoint), "--quiet"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2  # one per file, though each file is read three times
    assert "1 NaN or infinite samples replaced by zeros, the first at 0.312 s" in warnings[0]
    assert "2 NaN or infinite samples replaced by zeros, the first at 1.500 s (sample 24000, channel 2)" in warnings[1]
    for name in ("nan.wav", "nan_noise.wav", "inf.wav", "inf_noise.wav"):
        assert np.isfinite(sf.read(out / name)[0]).all()


def test_in_memory_separation_refuses_nonfinite_samples_or_zeroes_a_copy():
    engine = ChunkedSeparator(TorchBackend(tiny_separator()))
    wav = noisy_speech(1.0)
    wav[8000] = np.inf
    with pytest.raises(NonFiniteAudioError, match=r"the first at 0\.500 s \(sample 8000, channel 1\)"):
        engine.separate(wav)
    with pytest.warns(NonFiniteWarning, match="1 NaN or infinite samples replaced by zeros"):
        speech = engine.separate(torch.from_numpy(wav), fix_nonfinite=True)
    assert np.isfinite(speech).all() and np.isinf(wav[8000])  # the caller's array is left as it was


def test_evaluate_lists_nonfinite_and_truncated_files_before_any_work(bad_audio, tmp_path):
    files = {f.name: f.path for f in bad_audio}
    noisy, clean = tmp_path / "noisy", tmp_path / "clean"
    for folder in (noisy, clean):
        folder.mkdir()
        for name in ("a.wav", "b.wav"):
            (folder / name).write_bytes(files["inf.wav"].read_bytes() if folder == clean else b"")
    (noisy / "a.wav").write_bytes(files["nan.wav"].read_bytes())
    (noisy / "b.wav").write_bytes(files["truncated.wav"].read_bytes())
    with pytest.raises(EvaluationError) as error:
        FolderPairs(noisy, clean, 16000)
    message = str(error.value)
    assert "a.wav' holds NaN or infinite samples, the first at 0.312 s" in message
    assert "b.wav' is truncated" in message and "the first at 1.500 s" in message


@pytest.mark.parametrize("fmt", ["WAV", "WAVEX", "AIFF", "AU", "W64", "RF64"])
def test_truncated_files_are_named_in_every_format_with_a_length_in_its_header(tmp_path, fmt):
    buffer = io.BytesIO()
    sf.write(buffer, noisy_speech(2.0), 16000, format=fmt, subtype="PCM_16")
    whole = buffer.getvalue()
    path = tmp_path / "cut.bin"
    path.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(AudioError, match=r"is truncated: its header promises \d+ bytes"):
        audio_info(path)
    path.write_bytes(whole + bytes(100))  # trailing bytes are not a problem
    assert audio_info(path).frames >= 32000  # (W64 reads them as samples)


def test_any_format_converts_to_any_output_format_or_says_why(bad_audio):
    for f in bad_audio:
        if not f.good or f.huge:
            continue
        info = sf.info(str(f.path))
        for name in FORMATS:
            if name == "flac" and info.channels > 8:
                with pytest.raises(ValueError, match=r"cannot write FLAC .* 12 channel\(s\) .* at most .* 8 channels"):
                    OutputFormat.for_input(info, name)
            else:
                out = OutputFormat.for_input(info, name)
                assert sf.check_format(out.format, out.subtype), (f.name, name, out)
    stereo = sf.info(str(next(f.path for f in bad_audio if f.name == "stereo-48k.flac")))
    # Vorbis above 200 kHz crashes libsndfile (a segfault): refused before any attempt
    with pytest.raises(ValueError, match="VORBIS encoder takes at most 200000 Hz"):
        OutputFormat.for_input(stereo, "ogg", sample_rate=384000)


# --- the server -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(tiny_checkpoint):
    app = create_app(Settings(checkpoint=tiny_checkpoint, max_upload_mb=2))  # default duration and decoded size
    with TestClient(app) as c:
        yield c


ENDPOINTS = {  # what each endpoint returns for a good upload, and where it refuses good audio
    "/api/separate": "audio",
    "/api/separate?format=flac&stem=noise": "audio",  # FLAC holds at most 8 channels
    "/api/mix?noise=synthetic/siren&snr_db=5": "audio",  # a silent upload has no SNR
    "/api/spectrogram": "png",
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_endpoint_answers_every_upload_with_4xx_and_a_reason_or_finite_audio(client, bad_audio, endpoint):
    field = "input" if endpoint == "/api/spectrogram" else "file"
    for f in bad_audio:
        r = client.post(endpoint, files={field: (f.name, f.path.read_bytes(), "application/octet-stream")})
        assert r.status_code != 500, (f.name, r.text)
        detail = r.json()["detail"] if r.status_code != 200 else ""
        assert "sepgan-serve" not in detail, detail  # no paths of the server's
        if not f.good or f.huge:
            assert f.name in detail, (f.name, detail)  # the upload named as the client named it
        if f.huge:
            assert r.status_code == 413 and "million samples" in detail, (f.name, r.text)
        elif not f.good:
            assert (r.status_code, f.problem in detail) == (f.status, True), (f.name, detail)
        elif "mix" in endpoint and f.name == "silent.wav":
            assert r.status_code == 400 and "silent" in detail
        elif "flac" in endpoint and f.name == "twelve-channels.wav":
            assert r.status_code == 400 and "FLAC encoder takes at most 655350 Hz and 8 channels" in detail
        elif ENDPOINTS[endpoint] == "png":
            assert r.status_code == 200 and r.content[:4] == b"\x89PNG", (f.name, r.text)
        else:
            assert r.status_code == 200, (f.name, r.text)
            wav, sr = sf.read(io.BytesIO(r.content), dtype="float32", always_2d=True)
            info = sf.info(str(f.path))
            assert (sr, wav.shape) == (info.samplerate, (info.frames, info.channels)), f.name
            assert np.isfinite(wav).all(), f.name
    assert client.get("/api/health").json()["status"] == "ok"
    assert list(client.app.state.scratch.iterdir()) == []


def test_decoded_size_limit_counts_channels_rate_and_seconds(tiny_checkpoint):
    app = create_app(Settings(checkpoint=tiny_checkpoint, max_samples=100_000))
    with TestClient(app) as c:
        for channels, rate, seconds, status in ((1, 16000, 6.0, 200), (2, 48000, 1.0, 200), (2, 48000, 1.1, 413),
                                                (12, 8000, 0.6, 413)):  # 8 kHz counts at the model's 16 kHz
            buffer = io.BytesIO()
            sf.write(buffer, np.zeros((int(rate * seconds), channels)), rate, format="WAV")
            r = c.post("/api/spectrogram", files={"input": ("x.wav", buffer.getvalue(), "audio/wav")})
            assert r.status_code == status, (channels, rate, seconds, r.text)
        assert c.get("/api/health").json()["limits"]["max_samples"] == 100_000


def multipart(boundary: str, body_bytes: int, sent: list[int]):
    """A multipart upload streamed in 64 kB pieces, counting what the server pulled."""

    async def stream():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n"
               f"Content-Type: audio/wav\r\n\r\n").encode()
        piece = bytes(1 << 16)
        for _ in range(body_bytes // len(piece)):
            sent[0] += len(piece)
            yield piece
        yield f"\r\n--{boundary}--\r\n".encode()

    return stream()


@pytest.mark.parametrize("headers", [{}, {"content-length": "1000"}], ids=["chunked", "lying-length"])
def test_an_upload_without_an_honest_length_is_stopped_at_the_limit(tiny_checkpoint, headers):
    app = create_app(Settings(checkpoint=tiny_checkpoint, max_upload_mb=0.5))
    sent = [0]

    async def post():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            return await c.post("/api/separate", content=multipart("xyz", 50_000_000, sent),
                                headers={"content-type": "multipart/form-data; boundary=xyz", **headers})

    r = asyncio.run(post())
    assert r.status_code == 413 and "upload limit of 0.5 MB" in r.json()["detail"], r.text
    assert sent[0] < 0.5e6 + 4 * (1 << 16), sent  # read no further than the limit, of 50 MB on offer
    assert list(app.state.scratch.iterdir()) == []


# --- interruptions --------------------------------------------------------------------------------


def test_sigterm_during_separate_leaves_no_partial_file(tmp_path, tiny_checkpoint):
    source = tmp_path / "long.wav"
    sf.write(source, np.tile(noisy_speech(10.0), 30), 16000)  # 5 minutes
    out = tmp_path / "out"
    proc = sepgan_process("separate", source, "-o", out, "--checkpoint", tiny_checkpoint, "--quiet", tmp=tmp_path)
    deadline = time.monotonic() + 120
    while not list(out.glob(".long.wav.*.part")):  # the output is being written
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no partial file appeared"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "its unfinished output was removed" in err
    assert list(out.iterdir()) == []


def test_stale_partial_files_are_removed_at_the_next_start_and_nothing_else(tmp_path, tiny_checkpoint, capsys):
    source = tmp_path / "in" / "a.wav"
    source.parent.mkdir()
    sf.write(source, noisy_speech(1.0), 16000)
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".a.wav.k2x9_q0z.part"  # as sepgan.atomic names them
    stale.write_bytes(b"half a file")
    users = [out / "take.wav.part", out / ".notes.part", out / ".draft.wav.part", out / "sub" / ".b.wav.abcdefgh.part",
             source.parent / ".a.wav.abcdefgh.part"]  # not sepgan's, or not where this command writes
    for path in users:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"mine")
    assert main(["separate", str(source), "-o", str(out), "--checkpoint", str(tiny_checkpoint), "--quiet"]) == 0
    assert not stale.exists() and all(p.read_bytes() == b"mine" for p in users)
    assert f"removed 1 partial file(s) an interrupted run left in '{out}': {stale.name}" in capsys.readouterr().err
    assert (out / "a.wav").is_file()


def test_a_partial_file_still_being_written_is_not_stale(tmp_path):
    being_written = AtomicFile(tmp_path / "x.wav")
    assert remove_stale_parts(tmp_path) == [] and being_written.tmp.exists()  # its writer holds the lock
    being_written.discard()
    assert list(tmp_path.iterdir()) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_stops_the_server_cleanly(tmp_path, tiny_checkpoint):
    port = _free_port()
    proc = sepgan_process("serve", "--checkpoint", tiny_checkpoint, "--port", port, tmp=tmp_path)
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the server did not come up"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.1)
    assert len(list(tmp_path.glob("sepgan-serve-*"))) == 1  # its scratch folder
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Application shutdown complete" in err and "Traceback" not in err, err
    assert list(tmp_path.glob("sepgan-serve-*")) == []  # uploads and results of unfinished requests too


# --- usage errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("args,message", [
    (["separate", "x.wav", "-o", "out", "--threads", "-1"], "argument --threads: must be at least 1, got -1"),
    (["separate", "x.wav", "-o", "out", "--threads", "two"], "argument --threads: expected a whole number"),
    (["separate", "x.wav", "-o", "out", "--sample-rate", "0"], "argument --sample-rate: must be at least 1"),
    (["separate", "x.wav", "-o", "out", "--device", "gpu7"], "argument --device: 'gpu7' is not a torch device"),
    (["serve", "--threads", "-1"], "argument --threads: must be at least 1"),
    (["serve", "--workers", "0"], "argument --workers: must be at least 1"),
    (["serve", "--max-samples", "0"], "argument --max-samples: must be at least 1"),
    (["serve", "--port", "70000"], "argument --port: a port is at most 65535"),
])
def test_impossible_options_are_usage_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_where_there_is_none_is_a_usage_error(tmp_path):
    proc = sepgan_process("separate", "x.wav", "-o", tmp_path, "--device", "cuda", tmp=tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "argument --device: device 'cuda' is not available on this machine" in err
    assert "Traceback" not in err
