"""`sepgan separate IN... -o OUTDIR`: clean files or whole folders with a trained model.

The cleaned speech keeps the input's name (and its path inside a given folder), format and sample
rate unless asked otherwise. Nothing is ever written over an input, nor over an existing output
without `--overwrite`; results appear only when complete (written under a temporary name, then
renamed). One bad file is reported and skipped; the exit code says whether any failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from sepgan.atomic import AtomicFile, remove_stale_parts
from sepgan.audio import (AUDIO_EXTENSIONS, AudioError, NonFiniteAudioError, NonFiniteWarning, audio_info,
                          find_audio_files)
from sepgan.commands.options import positive_int, torch_device
from sepgan.inference.backends import load_backend
from sepgan.inference.precision import PRECISIONS
from sepgan.pretrained import default_checkpoint
from sepgan.inference.chunked import CHUNK_SECONDS, ChunkedSeparator, check_dry
from sepgan.inference.files import FORMATS, OutputFormat, separate_file
from sepgan.inference.noise_report import describe

NOISE_SUFFIX = "_noise"


@dataclass(frozen=True)
class Job:
    source: Path
    speech: Path
    noise: Path | None


def plan_jobs(inputs: list[str], outdir: str | Path, save_noise: bool = False, format: str | None = None,
              skipped: dict[Path, str] | None = None) -> list[Job]:
    """Where each input's results go; refuses missing inputs and two inputs landing on one output.

    Files in a given folder that are not audio are left out and recorded in `skipped` with the reason.
    """
    outdir = Path(outdir)
    found: list[tuple[Path, Path]] = []  # (file, its path relative to the output folder)
    for given in map(Path, inputs):
        if not given.exists():
            raise FileNotFoundError(f"input not found: '{given}'")
        if given.is_file():
            found.append((given, Path(given.name)))
            continue
        files, not_audio = find_audio_files(given, exclude=outdir)
        if skipped is not None:
            skipped.update(not_audio)
        if not files:
            raise FileNotFoundError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under '{given}'")
        found += [(p, p.relative_to(given)) for p in files]
    jobs, claimed = [], {}
    for source, rel in found:
        name = rel.with_suffix(f".{format}") if format else rel
        speech = outdir / name
        noise = outdir / name.with_name(f"{name.stem}{NOISE_SUFFIX}{name.suffix}") if save_noise else None
        for target in filter(None, (speech, noise)):
            if target in claimed:
                raise ValueError(f"'{source}' and '{claimed[target]}' would both be written to '{target}'; "
                                 f"separate them in two runs or into different output folders")
            claimed[target] = source
        jobs.append(Job(source, speech, noise))
    return jobs


def _seconds(path: Path) -> float:
    try:
        info = audio_info(path)
        return info.frames / info.samplerate
    except AudioError:
        return 0.0  # reported when its turn comes


def progress_bar(jobs: list[Job], quiet: bool) -> tqdm:
    """A bar over the inputs' audio seconds. The total is exact, not rounded, so that progress (which
    counts every input sample) never passes it; only the display is rounded."""
    return tqdm(total=sum(_seconds(j.source) for j in jobs), unit="s", disable=quiet, desc="separating",
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sepgan separate", description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="+", metavar="IN", help="audio files or folders (searched recursively)")
    p.add_argument("-o", "--outdir", required=True, help="folder for the results (created if missing)")
    p.add_argument("--checkpoint", help="a sepgan .ckpt, or an .onnx from `sepgan export-onnx` "
                                        "(default: the shipped model)")
    p.add_argument("--backend", choices=["torch", "onnx"], help="default: onnx for .onnx files, else torch")
    p.add_argument("--save-noise", action="store_true", help=f"also write the removed part as NAME{NOISE_SUFFIX}.EXT")
    p.add_argument("--dry", type=float, default=0.0, help="share of the input mixed back into the speech, "
                                                          "0 to 1 (default 0: fully cleaned; 1: the input unchanged)")
    p.add_argument("--mono", action="store_true", help="mix channels down first (default: each channel on its own)")
    p.add_argument("--format", choices=sorted(FORMATS), help="output format (default: the input's)")
    p.add_argument("--subtype", help="sample format, e.g. PCM_16, PCM_24, FLOAT (default: the input's)")
    p.add_argument("--sample-rate", type=positive_int, help="output sample rate in Hz (default: the input's)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (inputs never)")
    p.add_argument("--fix-nonfinite", action="store_true",
                   help="replace NaN and infinite samples by zeros, with a warning (default: such a file is an error)")
    p.add_argument("--chunk-seconds", type=float, default=CHUNK_SECONDS,
                   help=f"audio kept from each model call (default {CHUNK_SECONDS:g}; less: less memory)")
    p.add_argument("--context-seconds", type=float, help="context each side of a chunk (default: the model's "
                                                          "receptive field, which makes chunking exact)")
    p.add_argument("--batch-size", type=int, default=1, help="chunks per model call (default 1; more helps on a GPU)")
    p.add_argument("--shifts", type=positive_int, default=1,
                   help="average the speech of N STFT frame grids, offset by hop/N (N times the work; default 1; "
                        "2 gained the shipped model 0.14 dB)")
    p.add_argument("--threads", type=positive_int, help="CPU threads (default: PyTorch's choice)")
    p.add_argument("--device", type=torch_device, default="cpu", help="torch device, e.g. cuda (torch backend)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="the U-Net's arithmetic (torch backend; default auto: bf16 on a CPU that computes it natively, "
                        "about 1.7 times as fast, else fp32)")
    p.add_argument("--report", metavar="FILE", help="write what noise was removed from each file, and when, as "
                                                    "JSON (a model with a noise classifier; torch backend)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--speakers", type=int, default=1, help="separate N voices into NAME_speaker1.EXT ... "
                                                           "(2: the shipped two-speaker model, or --checkpoint "
                                                           "of experiment=two_speakers)")
    return p


def _separate_one(job: Job, engine: ChunkedSeparator, args: argparse.Namespace, bar: tqdm) -> dict:
    """One job, its warnings written above the progress bar (each once, though every pass of the file warns)."""
    info = audio_info(job.source)
    out = OutputFormat.for_input(info, args.format, args.subtype, args.sample_rate, 1 if args.mono else None)
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", NonFiniteWarning)
            return separate_file(engine, job.source, job.speech, job.noise, mono=args.mono, out=out,
                                 overwrite=args.overwrite, dry=args.dry, progress=bar.update,
                                 fix_nonfinite=args.fix_nonfinite, name_noise=bool(args.report))
    finally:  # after the recording has stopped
        for message in dict.fromkeys(str(w.message) for w in caught if w.category is NonFiniteWarning):
            bar.write(f"warning: {message}", file=sys.stderr)
        for w in caught:
            if w.category is not NonFiniteWarning:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _open_report(path: str, backend, overwrite: bool) -> AtomicFile:
    """Before any work: the report needs a model that names noise, a place it can be written (its
    temporary file is made now), and never replaces a file unasked."""
    if getattr(getattr(backend, "model", None), "noise_classifier", None) is None:
        raise ValueError(f"--report: the {backend.name} model given cannot name noise (it needs a PyTorch "
                         f"checkpoint with a noise classifier, such as the shipped one; ONNX files carry none)")
    if Path(path).is_dir():
        raise ValueError(f"--report {path}: is a folder; give a file name, e.g. report.json")
    if Path(path).exists() and not overwrite:
        raise FileExistsError(f"--report {path}: exists; not overwritten (--overwrite to replace)")
    try:
        return AtomicFile(path, overwrite=overwrite)
    except OSError as err:
        raise ValueError(f"--report {path}: cannot be written ({err.strerror or err})") from None


def _described(backend) -> str:
    """"torch backend", "torch backend in bf16", "onnx backend" or "onnx backend in int8", for the closing summary."""
    return f"{backend.name} backend" + (f" in {backend.precision}" if backend.precision != "fp32" else "")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.speakers != 1 and args.report:
        print("error: --report names the noise a denoiser removes; it does not go with --speakers", file=sys.stderr)
        return 2
    if args.speakers != 1 and args.shifts != 1:
        print("error: --shifts averages one voice's estimates; it does not go with --speakers", file=sys.stderr)
        return 2
    if args.speakers != 1 and args.precision == "bf16":
        print("error: --precision bf16 runs speech-versus-noise models; --speakers runs in fp32", file=sys.stderr)
        return 2
    if args.speakers != 1:
        from sepgan.inference.speakers import main_speakers

        return main_speakers(args)
    try:
        check_dry(args.dry)
        skipped: dict[Path, str] = {}
        jobs = plan_jobs(args.inputs, args.outdir, args.save_noise, args.format, skipped)
        if args.threads:
            torch.set_num_threads(args.threads)
        started = time.perf_counter()
        backend = load_backend(args.checkpoint or default_checkpoint(), args.backend, args.device, args.threads,
                               args.precision)
        engine = ChunkedSeparator(backend, args.chunk_seconds, args.batch_size, args.context_seconds, args.shifts)
        report = _open_report(args.report, backend, args.overwrite) if args.report else None
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        return _run(args, jobs, skipped, backend, engine, report, started)
    finally:
        if report is not None:
            report.discard()  # nothing left behind unless `_run` committed it


def _run(args: argparse.Namespace, jobs: list[Job], skipped: dict[Path, str], backend, engine: ChunkedSeparator,
         report: AtomicFile | None, started: float) -> int:
    for folder in sorted({target.parent for job in jobs for target in (job.speech, job.noise) if target}):
        remove_stale_parts(folder, report=lambda message: print(message, file=sys.stderr))
    loaded = time.perf_counter()
    failed, cleaned, done_seconds, interrupted, reports = [], 0, 0.0, None, []
    with progress_bar(jobs, args.quiet) as bar:
        for job in jobs:
            try:
                result = _separate_one(job, engine, args, bar)
            except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (see sepgan.commands): the file's output is discarded
                interrupted = stop
                break
            except Exception as err:  # one bad file never stops the batch
                failed.append(job.source)
                known = isinstance(err, (AudioError, FileExistsError, ValueError, OSError))
                hint = " (--fix-nonfinite replaces them by zeros)" if isinstance(err, NonFiniteAudioError) else ""
                message = err if known else f"{type(err).__name__}: {err}"
                bar.write(f"error: {job.source}: {message}{hint}", file=sys.stderr)
                reports.append({"input": str(job.source), "error": str(message)})
                continue
            cleaned += 1
            done_seconds += result["seconds"]
            if args.report:
                reports.append({"input": str(job.source), "noise": result["removed"]})
                bar.write(f"{job.source}: removed {describe(result['removed'])}", file=sys.stderr)
            if result["clipped"]:
                bar.write(f"warning: {job.speech}: {result['clipped']} samples clipped to [-1, 1] "
                          f"(use --subtype FLOAT to keep them)", file=sys.stderr)
    elapsed = time.perf_counter() - loaded
    for path, why in skipped.items():
        print(f"skipped {path}: {why}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(jobs)} files failed (see the errors above): "
              f"{', '.join(str(p) for p in failed)}", file=sys.stderr)
    report_failed = False
    if report is not None and interrupted is None:
        try:
            report.tmp.write_text(json.dumps(reports, indent=2) + "\n")
            report.commit()
            print(f"noise report of {len(reports)} files: {args.report}", file=sys.stderr)
        except OSError as err:  # FileExistsError too: a file of that name appeared meanwhile
            print(f"error: --report {args.report}: {err}", file=sys.stderr)
            report_failed = True
    rtf = f", real-time factor {elapsed / done_seconds:.3f}" if done_seconds else ""
    print(f"cleaned {cleaned} of {len(jobs)} files ({done_seconds:.1f} s of audio) in "
          f"{elapsed:.1f} s{rtf} (model loaded in {loaded - started:.1f} s, {_described(backend)}) "
          f"into '{args.outdir}'", file=sys.stderr)
    if interrupted is not None:
        print(f"interrupted while cleaning {job.source}; its unfinished output was removed", file=sys.stderr)
        raise interrupted
    return 1 if failed or report_failed else 0
