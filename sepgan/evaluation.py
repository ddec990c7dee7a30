"""Scoring a separator and the reference methods on pairs of noisy and clean speech: the API behind `sepgan evaluate`.

Two sources of examples:
- `FolderPairs`: a folder of noisy files and a folder of clean ones with the same names (the
  VoiceBank-DEMAND layout). The noise is taken as noisy − clean, which is exact for corpora made
  by adding noise to clean speech sample-aligned, as VoiceBank-DEMAND is.
- `ConfigMixtures`: validation or test mixtures of the project's data config, the same ones a
  training run with that config holds out (speaker- and noise-recording-disjoint from training),
  or fixed mixtures of its training recordings; their noise and SNR are known, so scores are also
  broken down by SNR.

`evaluate` runs every method on every example and scores it (`sepgan.metrics`); the `Report` it
returns summarises, renders a Markdown table and writes per-file CSV, summary JSON and the table.
"""

from __future__ import annotations

import csv
import json
import math
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from sepgan.audio import (AUDIO_EXTENSIONS, AudioError, FrontEnd, audio_info, find_audio_files, load_audio,
                          read_blocks)
from sepgan.baselines import oracle_mask, spectral_gating
from sepgan.deepfilternet3 import DeepFilterNet3, DeepFilterNet3Unavailable
from sepgan.inference.chunked import check_dry, with_dry
from sepgan.metrics import METRICS, MetricWarning, pesq_mode, si_sdr_db, speech_scores

LABELS = {
    "noisy": "noisy input",
    "spectral_gating": "spectral gating",
    "model": "model",
    "oracle_irm": "oracle IRM",
    "oracle_psm": "oracle PSM",
    "deepfilternet3": "DeepFilterNet3",
}
METHODS = tuple(LABELS)
# asked for by name only: it needs an optional package (`sepgan[baselines]`) and adds about 0.6 s a 4 s file
DEFAULT_METHODS = tuple(m for m in METHODS if m != "deepfilternet3")
METRIC_LABELS = {"si_sdr": "SI-SDR", "si_sdri": "SI-SDRi", "sdr": "SDR", "sir": "SIR", "sar": "SAR",
                 "pesq": "PESQ", "stoi": "STOI", "estoi": "ESTOI"}
OUTPUT_FILES = ("per_file.csv", "summary.json", "table.md")
MIN_SECONDS = 0.5  # PESQ, STOI and BSS-eval need about this much audio
LENGTH_TOLERANCE_SECONDS = 0.05  # noisy/clean pairs differing by more are not the same recording
SILENCE_PEAK = 1e-5  # about -100 dBFS
SNR_BIN_DB = 5.0


class EvaluationError(ValueError):
    """Input that cannot be evaluated; the message names the files or settings at fault."""


@dataclass
class Example:
    name: str
    mixture: np.ndarray  # 1-D float32 at sample_rate
    speech: np.ndarray
    noise: np.ndarray
    sample_rate: int
    snr_db: float | None = None
    noise_class: str | None = None
    notes: list[str] = field(default_factory=list)  # what was done to the files (resampled, mixed down, trimmed)


def listing(names: list[str], limit: int = 10) -> str:
    """The first `limit` names, and how many more there are: error messages stay readable."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _audio_files(folder: Path, what: str) -> dict[str, Path]:
    """Audio files under `folder` keyed by relative path without extension."""
    if not folder.is_dir():
        raise EvaluationError(f"{what} '{folder}' is not a folder" if folder.exists() else
                              f"{what} '{folder}' does not exist")
    files: dict[str, Path] = {}
    for path in find_audio_files(folder)[0]:
        key = path.relative_to(folder).with_suffix("").as_posix()
        if key in files:
            raise EvaluationError(f"{what}: '{files[key].name}' and '{path.name}' are the same recording "
                                  f"in two formats; keep one")
        files[key] = path
    if not files:
        raise EvaluationError(f"{what} '{folder}' holds no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    return files


class FolderPairs:
    """Noisy/clean pairs from two folders with matching file names, checked before any work starts.

    Names that appear on one side only, unreadable, truncated or corrupt files, files with NaN or
    infinite samples and pairs whose durations differ by more than 50 ms are all reported together
    in one `EvaluationError` (every file is read through once for this). Files are read at
    `sample_rate` (resampled, mixed down to mono) one pair at a time.
    """

    def __init__(self, noisy_dir: str | Path, clean_dir: str | Path, sample_rate: int):
        self.sample_rate = sample_rate
        noisy = _audio_files(Path(noisy_dir), "noisy folder")
        clean = _audio_files(Path(clean_dir), "clean folder")
        problems = []
        only_noisy, only_clean = sorted(set(noisy) - set(clean)), sorted(set(clean) - set(noisy))
        if only_noisy:
            problems.append(f"only in the noisy folder '{noisy_dir}': {listing(only_noisy)}")
        if only_clean:
            problems.append(f"only in the clean folder '{clean_dir}': {listing(only_clean)}")
        self.pairs = [(name, noisy[name], clean[name]) for name in sorted(set(noisy) & set(clean))]
        for name, noisy_path, clean_path in self.pairs:
            seconds = []
            for path in (noisy_path, clean_path):
                try:
                    info = audio_info(path)
                    for _ in read_blocks(path, 1 << 16):  # decodes, and every sample is finite
                        pass
                    seconds.append(info.frames / info.samplerate)
                except AudioError as err:
                    problems.append(str(err))
            if len(seconds) < 2:
                continue
            noisy_s, clean_s = seconds
            if abs(noisy_s - clean_s) > LENGTH_TOLERANCE_SECONDS:
                problems.append(f"'{name}': noisy is {noisy_s:.3f} s but clean is {clean_s:.3f} s "
                                f"(the pair must be the same recording, sample-aligned)")
        if problems:
            raise EvaluationError("cannot pair the folders:\n  " + "\n  ".join(problems))

    def __len__(self) -> int:
        return len(self.pairs)

    def _read(self, path: Path, notes: list[str], what: str) -> np.ndarray:
        info = audio_info(path)
        wav, _ = load_audio(path, self.sample_rate)
        if info.channels > 1:
            notes.append(f"{what}: {info.channels} channels mixed down to mono")
        if info.samplerate != self.sample_rate:
            notes.append(f"{what}: resampled from {info.samplerate} Hz to {self.sample_rate} Hz")
        return wav[0]

    def __iter__(self) -> Iterator[Example]:
        for name, noisy_path, clean_path in self.pairs:
            notes: list[str] = []
            mixture, speech = self._read(noisy_path, notes, "noisy"), self._read(clean_path, notes, "clean")
            length = min(len(mixture), len(speech))
            if abs(len(mixture) - len(speech)) > 1:  # resampling alone can leave one sample of difference
                notes.append(f"noisy and clean trimmed to the shorter ({abs(len(mixture) - len(speech))} samples cut)")
            mixture, speech = mixture[:length], speech[:length]
            yield Example(name, mixture, speech, mixture - speech, self.sample_rate, notes=notes)


CONFIG_SPLITS = ("test", "val", "train")  # what ConfigMixtures (and `sepgan evaluate --split`) can score


class ConfigMixtures:
    """`count` fixed mixtures of a split of the project's data config, with known noise and SNR: `val` or
    `test` (held out), or `train` (the training recordings, mixed as the held-out splits are; see
    `SeparationDataModule.fixed_training_mixtures`).

    `data_overrides` are Hydra overrides of the `data` group, with or without the `data.` prefix
    (`root=../shared/data`, `noise_classes=[dog_bark]`); the same overrides as a training run give
    that run's held-out mixtures, made at `sample_rate` (the model's). A composed data config
    (`data=cfg.data`, a training run's own) is used as it is instead.
    """

    def __init__(self, data_overrides: Iterable[str] = (), sample_rate: int = 16000, split: str = "test",
                 count: int = 64, data=None):
        from hydra.errors import HydraException
        from hydra.utils import instantiate

        from sepgan.training.config import compose_config

        if split not in CONFIG_SPLITS:
            raise EvaluationError(f"split must be one of {', '.join(CONFIG_SPLITS)}, got '{split}'")
        if count < 1:
            raise EvaluationError(f"the number of examples must be at least 1, got {count}")
        overrides = [o if o.startswith("data.") else f"data.{o}" for o in data_overrides]
        try:
            data = data if data is not None else compose_config(overrides).data
            self.datamodule = instantiate(data, sample_rate=sample_rate, num_workers=0, _convert_="all",
                                          **({} if split == "train" else {f"{split}_examples": count}))
        except (HydraException, ValueError) as err:  # a bad key, or a value the data module rejects
            raise EvaluationError(f"bad data-config override ({err}); --data takes overrides of the data "
                                  f"group such as root=../shared/data noise_classes=[dog_bark]") from None
        self.sample_rate, self.split, self.count = sample_rate, split, count
        self.datamodule.setup()
        if split == "train" and "train" not in getattr(self.datamodule, "corpora", {}):
            raise EvaluationError(f"this data config ({type(self.datamodule).__name__}) has no speech/noise "
                                  f"training corpora to mix; use split 'val' or 'test'")
        self.dataset = (self.datamodule.fixed_training_mixtures(count) if split == "train"
                        else self.datamodule.datasets[split])
        self.noise_labels = self.dataset.noise_labels

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Example]:
        for index in range(self.count):
            item = self.dataset[index]
            yield Example(f"{self.split}-{index:04d}", item["mixture"].numpy(), item["speech"].numpy(),
                          item["noise"].numpy(), self.sample_rate, snr_db=float(item["snr_db"]),
                          noise_class=self.noise_labels[int(item["noise_class"])])


def _unscorable(example: Example) -> str | None:
    """Why an example cannot be scored, or None."""
    seconds = len(example.speech) / example.sample_rate
    if seconds < MIN_SECONDS:
        return f"too short to score ({seconds:.2f} s; PESQ, STOI and BSS-eval need at least {MIN_SECONDS} s)"
    if np.max(np.abs(example.speech)) < SILENCE_PEAK:
        return "the clean reference is silent"
    if np.max(np.abs(example.mixture)) < SILENCE_PEAK:
        return "the noisy input is silent"
    return None


def model_speech(separator, mixture: np.ndarray) -> np.ndarray:
    """The speech estimate of a 1-D signal by a `Separator`, on the device its weights are on, or by a
    `ChunkedSeparator`, on its backend's device."""
    if isinstance(separator, torch.nn.Module):
        device = next(separator.parameters()).device
        return separator.separate(torch.from_numpy(np.ascontiguousarray(mixture)).to(device)).cpu().numpy()
    return np.asarray(separator.separate(mixture))


def _estimate(method: str, example: Example, separator, frontend: FrontEnd, dry: float = 0.0,
              deepfilter: DeepFilterNet3 | None = None) -> np.ndarray:
    if method == "noisy":
        return example.mixture
    if method == "spectral_gating":
        return spectral_gating(example.mixture, example.sample_rate)
    if method == "deepfilternet3":
        return deepfilter.separate(example.mixture, example.sample_rate)
    if method == "model":
        return with_dry(model_speech(separator, example.mixture), example.mixture, dry)
    return oracle_mask(example.mixture, example.speech, frontend, kind=method.removeprefix("oracle_"))


def evaluate(examples: Iterable[Example], separator=None, methods: Iterable[str] = DEFAULT_METHODS,
             metrics: Iterable[str] = METRICS, frontend: FrontEnd | None = None, progress: bool = True,
             info: dict | None = None, device: str | torch.device | None = None, dry: float = 0.0) -> "Report":
    """Run each method on each example and score it against the clean speech.

    `separator` (a `sepgan.models.Separator`, or a `sepgan.inference.chunked.ChunkedSeparator` for
    long files or ONNX models) is needed for the `model` method; the oracle masks
    use its front-end, or `frontend` when there is no model. Examples must be at the model's
    sample rate. Examples that cannot be scored (silent, shorter than 0.5 s) are skipped and
    listed in the report; measures undefined for one signal are NaN, with the reason in the notes.
    `device` (e.g. "cuda") moves the separator there first; by default it runs where its weights
    are. Only the model runs there: metrics, baselines and oracle masks work on the CPU.
    `dry` (0 to 1) mixes that share of the input into the model's speech, as `sepgan separate
    --dry` does, so the trade it makes can be measured.
    """
    methods, metrics, dry = tuple(methods), tuple(metrics), check_dry(dry)
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise EvaluationError(f"unknown method(s) {unknown}; known: {list(METHODS)}")
    if "model" in methods and separator is None:
        raise EvaluationError("the 'model' method needs a separator (a checkpoint)")
    if device is not None and isinstance(separator, torch.nn.Module):  # a ChunkedSeparator's backend has its own
        separator = separator.to(device)
    frontend = separator.frontend if separator is not None else frontend
    if frontend is None and any(m.startswith("oracle_") for m in methods):
        raise EvaluationError("oracle masks need a front-end: pass a separator or a FrontEnd")
    deepfilter = None
    if "deepfilternet3" in methods:
        try:
            deepfilter = DeepFilterNet3()
        except DeepFilterNet3Unavailable as error:
            raise EvaluationError(f"the 'deepfilternet3' method: {error}") from error
    report = Report(methods=methods, metrics=metrics,
                    info={**(info or {}), **({"dry": dry} if dry and "model" in methods else {})})
    total = len(examples) if hasattr(examples, "__len__") else None
    for example in tqdm(examples, total=total, desc="evaluating", unit="file", disable=not progress):
        if frontend is not None and example.sample_rate != frontend.sample_rate:
            raise EvaluationError(f"'{example.name}' is at {example.sample_rate} Hz but the model (front-end) "
                                  f"works at {frontend.sample_rate} Hz")
        report.sample_rate = example.sample_rate
        reason = _unscorable(example)
        if reason is not None:
            report.skipped[example.name] = reason
            continue
        report.notes[example.name] = list(example.notes)
        seconds = len(example.speech) / example.sample_rate
        report.audio_seconds += seconds
        input_si_sdr = si_sdr_db(example.mixture, example.speech)
        for method in methods:
            if method == "deepfilternet3":
                deepfilter.prepare()  # its fresh state for this file, loaded outside the timing as the model's is
            start = time.perf_counter()
            estimate = _estimate(method, example, separator, frontend, dry, deepfilter)
            report.processing_seconds[method] += time.perf_counter() - start
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", MetricWarning)
                scores = speech_scores(estimate, example.speech, example.sample_rate, example.noise,
                                       input_si_sdr, metrics)
            report.notes[example.name] += [f"{method}: {w.message}" for w in caught
                                           if issubclass(w.category, MetricWarning)]
            report.rows.append({"file": example.name, "method": method, "snr_db": example.snr_db,
                                "noise_class": example.noise_class, "seconds": round(seconds, 3), **scores})
    if not report.rows:
        skipped = "; ".join(f"{name}: {why}" for name, why in list(report.skipped.items())[:10])
        raise EvaluationError(f"no example could be scored ({skipped})" if skipped else "no examples to evaluate")
    report.notes = {name: notes for name, notes in report.notes.items() if notes}
    return report


def _stats(values: list[float]) -> dict[str, float | int]:
    """Mean, standard deviation and median over the values that are not NaN."""
    kept = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if kept.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "median": float("nan"), "n": 0}
    return {"mean": float(kept.mean()), "std": float(kept.std()), "median": float(np.median(kept)), "n": int(kept.size)}


def snr_bin(snr_db: float, width: float = SNR_BIN_DB) -> str:
    low = math.floor(snr_db / width) * width
    return f"[{low:g}, {low + width:g}) dB"


def _finite_or_none(value):
    """JSON has no NaN or infinity: write null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def _format(metric: str, value: float) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.3f}" if metric in ("stoi", "estoi") else f"{value:.2f}"


def check_output_dir(out_dir: str | Path, overwrite: bool = False) -> Path:
    """`out_dir`, unless it already holds result files and `overwrite` is off (then FileExistsError naming them)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"output path '{out_dir}' is a file, not a folder")
    existing = [name for name in OUTPUT_FILES if (out_dir / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"'{out_dir}' already holds {', '.join(existing)}; choose another --out "
                              f"folder or pass --overwrite")
    return out_dir


@dataclass
class Report:
    """Per-file scores of every method, and what was skipped or noted on the way."""

    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    info: dict = field(default_factory=dict)  # checkpoint, source of the examples, ...
    rows: list[dict] = field(default_factory=list)  # one per (file, method)
    sample_rate: int | None = None
    audio_seconds: float = 0.0
    processing_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    skipped: dict[str, str] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def files(self) -> list[str]:
        return list(dict.fromkeys(row["file"] for row in self.rows))

    def _means(self, rows: list[dict]) -> dict[str, dict[str, dict]]:
        return {method: {metric: _stats([r[metric] for r in rows if r["method"] == method]) for metric in self.metrics}
                for method in self.methods}

    def _grouped(self, key: str, name) -> dict[str, dict]:
        """Scores of the rows whose `key` is known, grouped by `name(row[key])`, in the order of the key."""
        groups: dict[str, list[dict]] = defaultdict(list)
        for row in sorted((r for r in self.rows if r.get(key) is not None), key=lambda r: r[key]):
            groups[name(row[key])].append(row)
        return {group: {"files": len({r["file"] for r in rows}), "methods": self._means(rows)}
                for group, rows in groups.items()}

    def by_snr(self) -> dict[str, dict]:
        """Scores per input-SNR bin (5 dB wide), when the SNRs are known."""
        return self._grouped("snr_db", snr_bin)

    def by_noise(self) -> dict[str, dict]:
        """Scores per noise class, when the classes are known (mixtures of a data config): the noises a
        model handles worst, which a mean over every class hides."""
        return self._grouped("noise_class", str)

    def summary(self) -> dict:
        return {
            **self.info,
            "sample_rate": self.sample_rate,
            "pesq_mode": pesq_mode(self.sample_rate) if "pesq" in self.metrics else None,
            "files": len(self.files),
            "audio_seconds": round(self.audio_seconds, 3),
            # processing time / audio duration of each method in this run (scoring not included)
            "real_time_factor": {m: self.processing_seconds[m] / self.audio_seconds for m in self.methods},
            "methods": self._means(self.rows),
            "by_snr": self.by_snr(),
            "by_noise": self.by_noise(),
            "skipped": self.skipped,
            "notes": self.notes,
        }

    def _label(self, method: str) -> str:
        dry, shifts, precision = self.info.get("dry", 0), self.info.get("shifts", 1), self.info.get("precision")
        how = ([f"dry {dry:g}"] if dry else []) + ([f"{shifts} shifts"] if shifts > 1 else []) + [precision] * bool(precision)
        return f"{LABELS[method]} ({', '.join(how)})" if method == "model" and how else LABELS[method]

    def _table(self, means: dict, lead: list[str] = ()) -> list[str]:
        return [f"| {' | '.join([*lead, self._label(method)])} | "
                + " | ".join(_format(metric, means[method][metric]["mean"]) for metric in self.metrics) + " |"
                for method in self.methods]

    def markdown(self) -> str:
        """Means over files of every measure for every method; per-SNR and per-noise tables when those are known."""
        columns = " | ".join(METRIC_LABELS[m] for m in self.metrics)
        decibels = [METRIC_LABELS[m] for m in self.metrics if m in ("si_sdr", "si_sdri", "sdr", "sir", "sar")]
        units = [f"{', '.join(decibels)} in dB"] if decibels else []
        if "pesq" in self.metrics:
            units.append(f"PESQ {'wide' if pesq_mode(self.sample_rate) == 'wb' else 'narrow'} band")
        lines = [f"Means over {len(self.files)} files ({self.audio_seconds:.1f} s at {self.sample_rate} Hz)"
                 + "".join(f"; {u}" for u in units) + ".", "",
                 f"| method | {columns} |", "|---" * (len(self.metrics) + 1) + "|",
                 *self._table(self._means(self.rows))]
        for title, head, groups in (("By input SNR", "SNR", self.by_snr()), ("By noise", "noise", self.by_noise())):
            if groups:
                lines += ["", f"{title}:", "", f"| {head} | files | method | {columns} |",
                          "|---" * (len(self.metrics) + 3) + "|"]
                for name, part in groups.items():
                    lines += self._table(part["methods"], lead=[name, str(part["files"])])
        if self.skipped:
            lines += ["", f"Skipped {len(self.skipped)} file(s): "
                      + "; ".join(f"{name}: {why}" for name, why in self.skipped.items())]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
        """Write per_file.csv, summary.json and table.md into `out_dir`; never replaces files unless `overwrite`."""
        out_dir = check_output_dir(out_dir, overwrite)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = [out_dir / name for name in OUTPUT_FILES]
        with open(paths[0], "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["file", "method", "snr_db", "noise_class", "seconds", *self.metrics])
            writer.writeheader()
            writer.writerows(self.rows)
        paths[1].write_text(json.dumps(_finite_or_none(self.summary()), indent=2) + "\n")
        paths[2].write_text(self.markdown())
        return paths
