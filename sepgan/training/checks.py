"""The settings users get wrong, checked before a run makes a folder or loads data.

`check_config(cfg)` raises one `ConfigError` listing every problem found, each on a line that
starts with the key (`optim.optimizer.lr='abc': expected a number > 0`) and says what is allowed.
`python -m sepgan.train` prints that message alone (the traceback with `HYDRA_FULL_ERROR=1`), removes
the run folder Hydra made for it and exits with status 2.

What is checked: the stage and every choice-valued key, the numbers (type and range) of the data,
model, optimizers, trainer and GAN settings, the model and loss as they would be built, the data
folders and noise classes (by listing files, no decoding), and the checkpoints named by
`init_from`, `discriminator_from` and `ckpt_path` (for `ckpt_path=last`: that there is a run to
continue). Later errors (a corrupt audio file, say) still stop the run with their own message.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig

from sepgan.data import synthetic
from sepgan.data.corpora import scan_folder, scan_librispeech, scan_urbansound8k
from sepgan.losses import ADVERSARIAL_OBJECTIVES
from sepgan.training import resume
from sepgan.training.config import build_separator

STAGES = ("generator", "discriminator", "adversarial", "gan", "validate")
GUARD_ACTIONS = ("warn", "stop", "rollback")

# key: (int or float, lowest allowed, whether the lowest is allowed, highest allowed or None). Keys
# absent from a config (e.g. momentum without SGD) are not checked; a float key takes whole numbers too.
NUMBERS: dict[str, tuple[type, float, bool, float | None]] = {
    "seed": (int, -math.inf, True, None),
    "data.segment_seconds": (float, 0, False, None),
    "data.batch_size": (int, 1, True, None),
    "data.num_workers": (int, 0, True, None),
    "data.train_examples": (int, 1, True, None),
    "data.val_examples": (int, 1, True, None),
    "data.test_examples": (int, 1, True, None),
    "data.val_fraction": (float, 0, False, 1),
    "data.test_fraction": (float, 0, False, 1),
    "data.seed": (int, -math.inf, True, None),
    "data.synthetic_speakers": (int, 3, True, None),
    "data.synthetic_utterances": (int, 1, True, None),
    "data.synthetic_noise_recordings": (int, 1, True, None),
    "data.synthetic_seconds": (float, 0, False, None),
    "frontend.sample_rate": (int, 1, True, None),
    "frontend.n_fft": (int, 16, True, None),
    "frontend.hop_length": (int, 1, True, None),
    "frontend.compress": (float, 0, False, 1),
    "model.unet.n_blocks": (int, 3, True, None),
    "model.unet.channels": (int, 1, True, None),
    "model.unet.channel_mult": (int, 1, True, None),
    "model.unet.layers": (int, 1, True, None),
    "model.unet.dropout": (float, 0, True, 1),
    "model.unet.bn_factor": (int, 1, True, None),
    "optim.optimizer.lr": (float, 0, False, None),
    "optim.optimizer.momentum": (float, 0, True, 1),
    "optim.optimizer.weight_decay": (float, 0, True, None),
    "trainer.max_epochs": (int, -1, True, None),
    "trainer.max_steps": (int, -1, True, None),
    "trainer.log_every_n_steps": (int, 1, True, None),
    "trainer.num_sanity_val_steps": (int, -1, True, None),
    "trainer.gradient_clip_val": (float, 0, True, None),
    "loss.huber_delta": (float, 0, False, None),
    "gan.disc_steps": (int, 1, True, None),
    "gan.steps.discriminator": (int, 1, True, None),
    "gan.steps.adversarial": (int, 1, True, None),
    "gan.val_check_steps": (int, 1, True, None),
    "gan.generator_optimizer.lr": (float, 0, False, None),
    "gan.discriminator_optimizer.lr": (float, 0, False, None),
    "gan.guard.tolerance_db": (float, 0, True, None),
    "gan.guard.patience": (int, 1, True, None),
}

NULLABLE = {"trainer.gradient_clip_val"}  # null: no clipping


class ConfigError(ValueError):
    """Settings that cannot work; the message has one line per problem, each starting with its key."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def check_config(cfg: DictConfig) -> None:
    """Raise `ConfigError` naming every setting of a training config that cannot work."""
    problems = check_choices(cfg) + check_numbers(cfg)
    if not problems:  # these build things from values that must have the right types first
        problems += check_model_and_loss(cfg) + check_checkpoints(cfg) + check_data(cfg)
    if problems:
        raise ConfigError(problems)


_MISSING = object()


def _select(cfg: DictConfig, key: str):
    node = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _describe(kind: type, low: float, inclusive: bool, high: float | None) -> str:
    what = "a whole number" if kind is int else "a number"
    if low == -math.inf:
        return what
    bound = f">= {low:g}" if inclusive else f"> {low:g}"
    return f"{what} {bound}" + (f" and <= {high:g}" if high is not None else "")


def check_numbers(cfg: DictConfig) -> list[str]:
    problems = []
    numbers = dict(NUMBERS)
    for term in (cfg.get("loss") or {}).get("weights") or {}:
        numbers[f"loss.weights.{term}"] = (float, 0, True, None)
    for key, (kind, low, inclusive, high) in numbers.items():
        value = _select(cfg, key)
        if value is _MISSING or (value is None and key in NULLABLE):
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind is int:
            number = number and float(value).is_integer()
        in_range = number and (value >= low if inclusive else value > low) and (high is None or value <= high)
        if not in_range:
            problems.append(f"{key}={value!r}: expected {_describe(kind, low, inclusive, high)}")
    for key in ("data.snr_db", "data.gain_db"):
        value = _select(cfg, key)
        if value is _MISSING:
            continue
        pair = isinstance(value, ListConfig) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if not pair or value[0] > value[1]:
            problems.append(f"{key}={_plain(value)!r}: expected [low, high], two numbers with low <= high")
    return problems


def _plain(value):
    return list(value) if isinstance(value, ListConfig) else value


def _choice(key: str, value, allowed: Sequence[str]) -> list[str]:
    if value in allowed:
        return []
    return [f"{key}={_plain(value)!r}: expected one of {', '.join(allowed)}"]


def check_choices(cfg: DictConfig) -> list[str]:
    problems = _choice("stage", cfg.get("stage", "generator"), STAGES)
    gan = cfg.get("gan") or {}
    if "objective" in gan:
        problems += _choice("gan.objective", gan.objective, sorted(ADVERSARIAL_OBJECTIVES))
    if "action" in (gan.get("guard") or {}):
        problems += _choice("gan.guard.action", gan.guard.action, GUARD_ACTIONS)
    return problems


def _message(error: Exception) -> str:
    """The message of an error raised while building an object (Hydra wraps it in its own)."""
    while isinstance(error, InstantiationException) and error.__cause__ is not None:
        error = error.__cause__
    return str(error)


def check_model_and_loss(cfg: DictConfig) -> list[str]:
    """Build the model (unless a checkpoint supplies it) and the loss, as the run would; their own checks
    name the key (model.unet.n_blocks, frontend.hop_length, loss.weights, ...)."""
    problems = []
    if not cfg.get("init_from"):
        try:
            separator = build_separator(cfg)
        except Exception as error:  # noqa: BLE001 - any construction error is reported with its message
            problems.append(_message(error))
        else:
            segment = int(round(cfg.data.segment_seconds * separator.frontend.sample_rate))
            if separator.frontend.n_fft > segment:
                problems.append(f"frontend.n_fft={separator.frontend.n_fft}: longer than a training segment "
                                f"(data.segment_seconds={cfg.data.segment_seconds} s = {segment} samples); lower "
                                f"frontend.n_fft or raise data.segment_seconds")
    try:
        loss = instantiate(cfg.loss, _convert_="all")
    except Exception as error:  # noqa: BLE001
        problems.append(_message(error))
    else:
        if cfg.get("stage", "generator") in ("generator", "gan") and not loss.weights:
            problems.append(f"loss.weights: generator pretraining needs a reconstruction term (one of "
                            f"{', '.join(loss.TERMS)}) with a weight above 0")
        if cfg.get("freeze_separator") and "noise_class" not in loss.weights:
            problems.append("freeze_separator=true trains only the noise classifier: set loss.weights.noise_class "
                            "above 0 too")
    return problems


def check_checkpoints(cfg: DictConfig) -> list[str]:
    stage = cfg.get("stage", "generator")
    problems = []
    if cfg.get("init_from") and cfg.get("init_weights"):
        problems.append("init_weights: give init_from (the checkpoint's model as it is) or init_weights (its "
                        "weights copied into the configured model), not both")
    for key in ("init_from", "init_weights", "discriminator_from"):
        path = cfg.get(key)
        if path and not Path(path).is_file():
            problems.append(f"{key}={path!r}: no such checkpoint file")
    if stage in ("discriminator", "adversarial", "validate") and not cfg.get("init_from"):
        problems.append(f"init_from: stage={stage} needs a generator checkpoint (e.g. the best-*.ckpt of a "
                        f"generator run)")
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path in (None, ""):
        return problems
    if stage == "validate":
        problems.append(f"ckpt_path={ckpt_path!r}: resumes training; stage=validate takes init_from=CHECKPOINT")
    elif ckpt_path == "last":
        folder = resume.run_to_continue(cfg)
        if folder is None and resume.in_sweep():
            problems.append(f"ckpt_path=last: in a sweep it continues the jobs of an earlier sweep, whose folder "
                            f"hydra.sweep.dir names; '{cfg.paths.output_dir}' holds no run")
        elif folder is None:
            runs = Path(cfg.paths.log_dir, cfg.name, "runs")
            problems.append(f"ckpt_path=last: no stage={stage} run of '{cfg.name}' under '{runs}' to continue; "
                            f"train once first, or give ckpt_path=PATH")
        elif resume.run_stage(folder) != stage:
            problems.append(f"ckpt_path=last: the run in '{folder}' is a stage={resume.run_stage(folder)} run, "
                            f"not stage={stage}")
    elif stage == "gan":
        problems.append(f"ckpt_path={ckpt_path!r}: stage=gan continues whole runs: ckpt_path=last continues the "
                        f"newest one, hydra.run.dir=RUN_FOLDER ckpt_path=last another")
    elif not Path(ckpt_path).is_file():
        problems.append(f"ckpt_path={ckpt_path!r}: no such checkpoint file (or ckpt_path=last for the newest run)")
    return problems


def check_data(cfg: DictConfig) -> list[str]:
    """The data folders exist and hold audio, and every wanted noise class is there or can be synthesised."""
    data = cfg.data
    classes = data.get("noise_classes")
    if classes is not None and not isinstance(classes, ListConfig):
        return [f"data.noise_classes={classes!r}: expected a list of class names, e.g. [{classes}], or null for "
                f"every class"]
    wanted = [str(c) for c in classes or []]
    root, speech_dir, noise_dir = data.get("root"), data.get("speech_dir"), data.get("noise_dir")
    if root is not None and not Path(root).expanduser().is_dir():
        what = "is a file" if Path(root).expanduser().exists() else "does not exist"
        return [f"data.root={root!r}: the folder {what}; give a folder holding speech/ and noise/ (like "
                f"../shared/data), or data.root=null for the embedded synthetic set"]
    if root is not None and speech_dir is None and noise_dir is None and not Path(root, data.speech_subdir).exists() \
            and not Path(root, data.noise_subdir).exists():
        return [f"data.root={root!r}: holds neither {data.speech_subdir}/ (data.speech_subdir) nor {data.noise_subdir}/ "
                f"(data.noise_subdir); give a folder laid out like ../shared/data, or data.root=null for the embedded "
                f"synthetic set"]
    problems = []
    if speech_dir is not None or root is not None:
        key, path = ("data.speech_dir", Path(speech_dir)) if speech_dir else ("data.root", Path(root, data.speech_subdir))
        problems += _scan(key, path, lambda p: scan_librispeech(p))
    synthetic_kinds = list(synthetic.NOISE_KINDS)
    if noise_dir is None and root is None:
        available, where = [], "the embedded synthetic set"
    else:
        key, path = ("data.noise_dir", Path(noise_dir)) if noise_dir else ("data.root", Path(root, data.noise_subdir))
        found: list = []
        errors = _scan(key, path, lambda p: found.extend(
            scan_urbansound8k(p) if (p / "metadata" / "UrbanSound8K.csv").is_file() else scan_folder(p, what="noise folder")))
        if errors:
            return problems + errors
        available, where = sorted({r.label for r in found}), f"'{path}'"
    unknown = [c for c in wanted if c not in available and c not in synthetic_kinds]
    if unknown:
        allowed = ", ".join(available) + ("; synthesised: " if available else "") + ", ".join(synthetic_kinds)
        problems.append(f"data.noise_classes={wanted}: unknown class(es) {', '.join(unknown)}; classes in {where}: "
                        f"{allowed}")
    return problems


def _scan(key: str, path: Path, scan) -> list[str]:
    if not path.expanduser().is_dir():
        return [f"{key}: folder '{path}' does not exist" + (
            " (data.root holds speech/ and noise/ like ../shared/data; data.speech_subdir and data.noise_subdir "
            "name them)" if key == "data.root" else "")]
    try:
        scan(path.expanduser())
    except (OSError, ValueError) as error:
        return [f"{key}: {error}"]
    return []
