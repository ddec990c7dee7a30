"""`sepgan separate --speakers N`: each voice of a file into NAME_speaker1.EXT ... NAME_speakerN.EXT.

Files are streamed as in `separate_file` (a pass for the level, one to separate; memory flat in
the file's length) through a `SpeakerChunkedSeparator`, so a speaker stays on one output file for
the whole recording. Outputs are written atomically, one per voice, at the input's length and rate.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from sepgan.audio import AudioError, NonFiniteAudioError, audio_info
from sepgan.inference.chunked import CHUNK_SECONDS, centred, fit_length, level, resampled
from sepgan.inference.files import OutputFormat, _AudioWriter, commit_all, discard_all, read_blocks, reported
from sepgan.inference.permutation import SpeakerChunkedSeparator, SpeakersBackend
from sepgan.models import load_separator

SPEAKERS_CHECKPOINT = Path(__file__).resolve().parents[1] / "pretrained" / "sepgan-2speakers-8k.ckpt"


def speaker_paths(path: Path, speakers: int) -> list[Path]:
    """NAME_speaker1.EXT ... NAME_speakerN.EXT next to where NAME.EXT would go."""
    return [path.with_name(f"{path.stem}_speaker{k}{path.suffix}") for k in range(1, speakers + 1)]


def load_speakers_engine(checkpoint: str | None, speakers: int, device: str = "cpu", chunk_seconds: float = CHUNK_SECONDS,
                         batch_size: int = 1, context_seconds: float | None = None) -> SpeakerChunkedSeparator:
    """The chunked voice separator of a checkpoint (default: the shipped two-speaker model, if any)."""
    if checkpoint is None:
        if speakers != 2 or not SPEAKERS_CHECKPOINT.is_file():
            raise FileNotFoundError(f"no shipped {speakers}-speaker model; pass --checkpoint with a checkpoint "
                                    f"of `python -m sepgan.train +experiment=two_speakers`")
        checkpoint = SPEAKERS_CHECKPOINT
    if Path(checkpoint).suffix.lower() == ".onnx":
        raise ValueError("--speakers needs a PyTorch checkpoint (.ckpt); ONNX export covers speech models only")
    backend = SpeakersBackend(load_separator(checkpoint), device)
    if backend.sources != speakers:
        raise ValueError(f"'{checkpoint}' separates {backend.sources} speakers, not {speakers}; "
                         f"use --speakers {backend.sources}")
    return SpeakerChunkedSeparator(backend, chunk_seconds, batch_size, context_seconds)


def separate_speakers_file(engine: SpeakerChunkedSeparator, source: str | Path, targets: list[Path], *,
                           mono: bool = False, out: OutputFormat | None = None, overwrite: bool = False,
                           block_seconds: float = 1.0, progress: Callable[[float], None] | None = None,
                           fix_nonfinite: bool = False) -> dict:
    """Write each voice of `source` to its target (one per source of the engine), streaming.

    NaN or infinite samples are an error before anything is written (`fix_nonfinite`: zeros)."""
    source = Path(source)
    info = audio_info(source)
    out = out or OutputFormat.for_input(info)
    for target in targets:
        if target.exists() and target.resolve() == source.resolve():
            raise FileExistsError(f"refusing to write over the input '{source}'")
        if target.exists() and not overwrite:
            raise FileExistsError(f"'{target}' exists; not overwritten (--overwrite to replace)")
    channels, voices = (1 if mono else info.channels), engine.sources
    rate, model_rate = info.samplerate, engine.sample_rate
    block = max(1, round(block_seconds * rate))

    offset, scale, total = level(resampled(read_blocks(source, block, mono, fix_nonfinite), rate, model_rate, channels))
    model_blocks = centred(resampled(reported(read_blocks(source, block, mono, fix_nonfinite), rate, progress),
                                     rate, model_rate, channels), offset)
    flat = (b.reshape(channels * voices, -1) for b in engine.stream(model_blocks, total, scale))
    n_out = round(info.frames * out.sample_rate / rate)
    blocks = fit_length(resampled(flat, model_rate, out.sample_rate, channels * voices), n_out)
    writers = [_AudioWriter(p, channels, out, overwrite) for p in targets]
    clipped = 0
    try:
        for b in blocks:
            b = b.reshape(channels, voices, -1)
            if out.subtype not in ("FLOAT", "DOUBLE"):
                clipped += int(np.count_nonzero(np.abs(b) > 1.0))
            for k, writer in enumerate(writers):
                writer.write(b[:, k])
        commit_all(writers)
    except BaseException:
        discard_all(writers)
        raise
    return dict(source=str(source), speakers=[str(p) for p in targets], seconds=info.frames / rate, clipped=clipped)


def main_speakers(args) -> int:
    """`sepgan separate --speakers N` with the parsed arguments of `sepgan separate`."""
    from sepgan.commands.separate import plan_jobs, progress_bar

    try:
        if args.save_noise:
            raise ValueError("--save-noise does not apply to --speakers (every output is a voice)")
        if args.dry:
            raise ValueError("--dry mixes the input back into cleaned speech; it does not apply to --speakers")
        if args.speakers < 2:
            raise ValueError(f"--speakers must be at least 2, got {args.speakers}")
        skipped: dict[Path, str] = {}
        jobs = plan_jobs(args.inputs, args.outdir, False, args.format, skipped)
        if args.threads:
            torch.set_num_threads(args.threads)
        started = time.perf_counter()
        engine = load_speakers_engine(args.checkpoint, args.speakers, args.device, args.chunk_seconds,
                                      args.batch_size, args.context_seconds)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    loaded = time.perf_counter()
    failed, done = [], 0.0
    with progress_bar(jobs, args.quiet) as bar:
        for job in jobs:
            try:
                out = OutputFormat.for_input(audio_info(job.source), args.format, args.subtype, args.sample_rate)
                result = separate_speakers_file(engine, job.source, speaker_paths(job.speech, args.speakers),
                                                mono=args.mono, out=out, overwrite=args.overwrite, progress=bar.update,
                                                fix_nonfinite=args.fix_nonfinite)
            except (AudioError, FileExistsError, ValueError, OSError) as err:
                failed.append(job.source)
                hint = " (--fix-nonfinite replaces them by zeros)" if isinstance(err, NonFiniteAudioError) else ""
                bar.write(f"error: {job.source}: {err}{hint}", file=sys.stderr)
                continue
            done += result["seconds"]
            if result["clipped"]:
                bar.write(f"warning: {job.source}: {result['clipped']} samples clipped to [-1, 1] "
                          f"(use --subtype FLOAT to keep them)", file=sys.stderr)
    for path, why in skipped.items():
        print(f"skipped {path}: {why}", file=sys.stderr)
    print(f"separated {args.speakers} speakers in {len(jobs) - len(failed)} of {len(jobs)} files ({done:.1f} s of "
          f"audio) in {time.perf_counter() - loaded:.1f} s (model loaded in {loaded - started:.1f} s) into "
          f"'{args.outdir}'", file=sys.stderr)
    return 1 if failed else 0
