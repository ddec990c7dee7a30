"""A corpus of awkward and broken audio files, written into a folder, with what each must get.

Every reader of user files (`sepgan separate`, the server's endpoints, the Python API) should pass
it: a bad file is refused with a message containing `problem`, a good one is processed into finite
audio. The `bad_audio` fixture (tests/conftest.py) writes it once per session.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    problem: str | None = None  # None: good audio; else a fragment of every error message about it
    status: int | None = None  # the server's answer to it as an upload (4xx), for a bad one
    huge: bool = False  # good audio that decodes to far more samples than its bytes suggest: a server
    #                     with the default limits refuses it from its header (413); slow to clean on a CPU

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def good(self) -> bool:
        return self.problem is None


def _speechy(seconds: float, sr: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """(samples, channels) float32: a few harmonics with a wobbling pitch and some noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    pitch = 140 + 30 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    return np.stack([0.2 * voice + 0.05 * rng.standard_normal(len(t)) * (c + 1) for c in range(channels)],
                    axis=1).astype(np.float32)


def _wav_bytes(data: np.ndarray, sr: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, data, sr, format="WAV", subtype=subtype)
    return buffer.getvalue()


def mp3_writable() -> bool:
    return "MP3" in sf.available_formats() and "MPEG_LAYER_III" in sf.available_subtypes("MP3")


def write_bad_audio(folder: Path) -> list[CorpusFile]:
    """Write the corpus into `folder` (created) and return its files with their expectations."""
    folder.mkdir(parents=True, exist_ok=True)
    files: list[CorpusFile] = []

    def add(name: str, content: bytes | None = None, **expect) -> Path:
        path = folder / name
        if content is not None:
            path.write_bytes(content)
        files.append(CorpusFile(path, **expect))
        return path

    # not audio at all
    add("empty.wav", b"", problem="empty", status=400)
    add("notes.wav", b"just some text, renamed\n" * 40, problem="cannot read", status=415)
    add("garbage-after-riff.wav", b"RIFF\x24\x00\x00\x00WAVE" + bytes(range(256)) * 4, problem="cannot read",
        status=415)
    # readable headers, missing or broken samples
    whole = _wav_bytes(_speechy(2.0, SR), SR)
    add("truncated.wav", whole[:len(whole) // 2], problem="truncated", status=400)
    flac = io.BytesIO()
    sf.write(flac, _speechy(2.0, SR), SR, format="FLAC")
    add("cut.flac", flac.getvalue()[:len(flac.getvalue()) // 2], problem="truncated or corrupt", status=400)
    no_samples = bytearray(_wav_bytes(np.zeros((0, 1), np.float32), SR))
    add("no-samples.wav", bytes(no_samples), problem="no samples", status=400)
    nan = _speechy(1.0, SR)
    nan[5000, 0] = np.nan
    add("nan.wav", _wav_bytes(nan, SR, "FLOAT"), problem="NaN or infinite samples, the first at 0.312 s", status=400)
    inf = _speechy(2.0, SR, channels=2)
    inf[24000, 1] = np.inf  # in the second channel, after the first block of a second
    inf[30000, 0] = -np.inf
    add("inf.wav", _wav_bytes(inf, SR, "FLOAT"), problem="the first at 1.500 s (sample 24000, channel 2)", status=400)

    # good, if unusual
    add("silent.wav", _wav_bytes(np.zeros((SR, 1), np.float32), SR))
    add("tiny.wav", _wav_bytes(_speechy(0.005, SR), SR))  # 80 samples, shorter than one STFT window
    add("8bit.wav", _wav_bytes(_speechy(1.0, 8000), 8000, "PCM_U8"))
    stereo = io.BytesIO()
    sf.write(stereo, _speechy(1.0, 48000, channels=2), 48000, format="FLAC", subtype="PCM_24")
    add("stereo-48k.flac", stereo.getvalue())
    add("twelve-channels.wav", _wav_bytes(_speechy(0.5, SR, channels=12), SR))
    au = io.BytesIO()
    sf.write(au, _speechy(1.0, 22050), 22050, format="AU")
    add("sun.au", au.getvalue())
    ogg = io.BytesIO()
    sf.write(ogg, _speechy(1.0, 44100), 44100, format="OGG")
    add("vorbis.ogg", ogg.getvalue())
    # written as a stream by a tool that did not know the length: size fields 0xFFFFFFFF, not truncated
    streamed = bytearray(_wav_bytes(_speechy(1.0, SR), SR))
    data = streamed.find(b"data")
    streamed[4:8] = streamed[data + 4:data + 8] = struct.pack("<I", 0xFFFFFFFF)
    add("streamed.wav", bytes(streamed))
    if mp3_writable():
        mp3 = io.BytesIO()
        sf.write(mp3, _speechy(1.5, 44100, channels=2), 44100, format="MP3")
        add("talk.mp3", mp3.getvalue())

    # 80 kB that decode to 77 million samples (300 MB as float32): zeros, 8 channels, 96 kHz, 100 s
    huge = folder / "huge-header.flac"
    block = np.zeros((96000 * 10, 8), np.int16)
    with sf.SoundFile(str(huge), "w", 96000, 8, "PCM_16", format="FLAC") as f:
        for _ in range(10):
            f.write(block)
    files.append(CorpusFile(huge, huge=True))
    return files
