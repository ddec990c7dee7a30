import csv
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from sepgan.audio import FrontEnd
from sepgan.commands import main as sepgan
from sepgan.training.config import build_separator, compose_config
from sepgan.data.synthetic import noise as synthetic_noise
from sepgan.data.synthetic import speech_like
from sepgan.commands.evaluate import main as evaluate_main
from sepgan.evaluation import (
    ConfigMixtures,
    EvaluationError,
    FolderPairs,
    evaluate,
)
from tests.conftest import SHARED_DATA

SR = 16000
FAST = ["--metrics", "si_sdr", "si_sdri", "stoi", "--no-progress"]  # BSS-eval and PESQ are scored in one test


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny untrained sepgan model (about a pass-through mask) saved like a training checkpoint."""
    model = build_separator(compose_config(["model=small", "model.unet.n_blocks=3", "model.unet.channels=4"]))
    path = tmp_path_factory.mktemp("model") / "tiny.ckpt"
    torch.save({"state_dict": {f"separator.{k}": v for k, v in model.state_dict().items()},
                "separator_config": model.config}, path)
    return str(path)


def write_pair(root, name, seconds=1.0, sr=SR, channels=1, seed=0, clean_seconds=None):
    """noisy/NAME.wav = clean/NAME.wav + hum at 0 dB, both at `sr` with `channels` channels."""
    speech = speech_like(seed, 0, sr, clean_seconds or seconds)
    hum = synthetic_noise("air_conditioner", seed, sr, seconds)
    hum *= np.sqrt(np.mean(speech**2) / np.mean(hum**2))
    noisy = speech[: len(hum)] + hum[: len(speech)] if clean_seconds else speech + hum
    for folder, wav in (("noisy", noisy), ("clean", speech)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        sf.write(str(root / folder / f"{name}.wav"), np.stack([wav] * channels, axis=1), sr)


@pytest.fixture
def folders(tmp_path):
    write_pair(tmp_path, "a", seed=1)
    write_pair(tmp_path, "b", seed=2, sr=48000, channels=2)  # VoiceBank-DEMAND's own rate, and stereo
    return tmp_path


def run(folder, checkpoint, *extra):
    return evaluate_main(["--checkpoint", checkpoint, "--noisy-dir", str(folder / "noisy"),
                          "--clean-dir", str(folder / "clean"), "--out", str(folder / "out"), *extra])


def test_evaluate_scores_every_method_with_every_metric_and_writes_results(folders, checkpoint, capsys):
    report = run(folders, checkpoint, "--no-progress")
    out = capsys.readouterr()
    rows = ["noisy input", "spectral gating", "model", "oracle IRM", "oracle PSM"]
    header = "| method | SI-SDR | SI-SDRi | SDR | SIR | SAR | PESQ | STOI | ESTOI |"
    assert header in out.out and all(f"| {row} |" in out.out for row in rows)
    assert "resampled from 48000 Hz to 16000 Hz: b" in out.err and "2 channels mixed down to mono: b" in out.err
    with open(folders / "out" / "per_file.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 * 5 and {r["file"] for r in table} == {"a", "b"}
    summary = json.loads((folders / "out" / "summary.json").read_text())
    assert summary["files"] == 2 and summary["pesq_mode"] == "wb" and summary["sample_rate"] == SR
    means = {m: {k: v["mean"] for k, v in summary["methods"][m].items()} for m in summary["methods"]}
    assert means["noisy"]["si_sdri"] == 0
    assert means["model"]["si_sdr"] != means["noisy"]["si_sdr"]  # the model's output, not the input
    assert set(summary["real_time_factor"]) == set(summary["methods"])
    assert all(rtf > 0 for rtf in summary["real_time_factor"].values())
    for oracle in ("oracle_irm", "oracle_psm"):  # upper bounds beat the input on every measure
        for metric in ("si_sdr", "sdr", "sir", "pesq", "stoi", "estoi"):
            assert means[oracle][metric] > means["noisy"][metric], (oracle, metric)
    # the noise is noisy - clean: the input's SIR is its SNR (0 dB by construction)
    assert means["noisy"]["sir"] == pytest.approx(0.0, abs=0.5)
    assert (folders / "out" / "table.md").read_text() == report.markdown()


def test_existing_results_are_not_overwritten_unless_asked(folders, checkpoint, capsys):
    (folders / "out").mkdir()
    (folders / "out" / "summary.json").write_text("precious")
    assert run(folders, checkpoint, *FAST) == 1
    assert "already holds summary.json" in capsys.readouterr().err
    assert (folders / "out" / "summary.json").read_text() == "precious"
    run(folders, checkpoint, *FAST, "--overwrite")
    assert json.loads((folders / "out" / "summary.json").read_text())["files"] == 2


def test_dry_scores_the_model_with_that_share_of_the_input_mixed_in(folders, checkpoint, capsys):
    full = run(folders, checkpoint, *FAST, "--methods", "noisy", "model", "--out", str(folders / "full"))
    all_input = run(folders, checkpoint, *FAST, "--methods", "noisy", "model", "--dry", "1", "--out", str(folders / "dry"))
    assert "| model (dry 1) |" in capsys.readouterr().out
    assert all_input.summary()["dry"] == 1.0 and "dry" not in full.summary()
    scores = {(r["file"], r["method"]): r["si_sdr"] for r in all_input.rows}
    for name in ("a", "b"):  # dry 1 is the input, exactly; dry 0 is the model's own output
        assert scores[name, "model"] == pytest.approx(scores[name, "noisy"], abs=1e-4)
    assert {r["file"]: r["si_sdr"] for r in full.rows if r["method"] == "model"} != \
        {r["file"]: r["si_sdr"] for r in all_input.rows if r["method"] == "model"}
    assert run(folders, checkpoint, *FAST, "--dry", "1.5") == 1
    assert "dry must be between 0 (fully cleaned) and 1" in capsys.readouterr().err
    assert not (folders / "out").exists()  # refused before anything was written


def test_shifts_score_the_averaged_frame_grids_and_are_labelled(folders, checkpoint, capsys):
    one = run(folders, checkpoint, *FAST, "--methods", "model", "--out", str(folders / "one"))
    two = run(folders, checkpoint, *FAST, "--methods", "model", "--shifts", "2", "--out", str(folders / "two"))
    assert "| model (2 shifts) |" in capsys.readouterr().out
    assert two.summary()["shifts"] == 2 and "shifts" not in one.summary()
    assert [r["si_sdr"] for r in two.rows] != [r["si_sdr"] for r in one.rows]
    with pytest.raises(SystemExit):  # argparse: a usage error naming the option
        run(folders, checkpoint, "--shifts", "0")
    assert "argument --shifts: must be at least 1" in capsys.readouterr().err


def test_bf16_scores_are_labelled_and_near_the_fp32_ones(folders, checkpoint, capsys):
    fp32 = run(folders, checkpoint, *FAST, "--methods", "model", "--out", str(folders / "fp32"))
    bf16 = run(folders, checkpoint, *FAST, "--methods", "model", "--precision", "bf16", "--out", str(folders / "bf16"))
    assert "| model (bf16) |" in capsys.readouterr().out
    assert bf16.summary()["precision"] == "bf16" and "precision" not in fp32.summary()
    for a, b in zip(fp32.rows, bf16.rows):
        assert a["si_sdr"] != b["si_sdr"] and b["si_sdr"] == pytest.approx(a["si_sdr"], abs=0.3)


def test_mismatched_folder_contents_are_named(folders, checkpoint, capsys):
    write_pair(folders / "extra", "c")
    (folders / "extra" / "noisy" / "c.wav").rename(folders / "noisy" / "c.wav")
    (folders / "clean" / "b.wav").rename(folders / "clean" / "b_clean.wav")
    assert run(folders, checkpoint, *FAST) == 1
    err = capsys.readouterr().err
    assert "only in the noisy folder" in err and "b, c" in err
    assert "only in the clean folder" in err and "b_clean" in err


def test_bad_files_are_reported_together_before_any_work(tmp_path):
    write_pair(tmp_path, "good", seed=1)
    write_pair(tmp_path, "longer", seed=2, seconds=1.0, clean_seconds=1.5)
    write_pair(tmp_path, "empty", seed=3)
    (tmp_path / "noisy" / "empty.wav").write_bytes(b"")
    write_pair(tmp_path, "corrupt", seed=4)
    (tmp_path / "clean" / "corrupt.wav").write_bytes(b"RIFF not really a wav file")
    with pytest.raises(EvaluationError) as err:
        FolderPairs(tmp_path / "noisy", tmp_path / "clean", SR)
    message = str(err.value)
    assert "empty (0 bytes)" in message and "empty.wav" in message
    assert "cannot read" in message and "corrupt.wav" in message
    assert "'longer': noisy is 1.000 s but clean is 1.500 s" in message
    assert "good" not in message


def test_missing_or_empty_folders_are_explained(tmp_path):
    (tmp_path / "clean").mkdir()
    with pytest.raises(EvaluationError, match="does not exist"):
        FolderPairs(tmp_path / "nowhere", tmp_path / "clean", SR)
    (tmp_path / "noisy").mkdir()
    with pytest.raises(EvaluationError, match="holds no audio files"):
        FolderPairs(tmp_path / "noisy", tmp_path / "clean", SR)


def test_silent_and_too_short_files_are_skipped_with_the_reason(folders, checkpoint, capsys):
    write_pair(folders, "quiet", seed=3)
    sf.write(str(folders / "clean" / "quiet.wav"), np.zeros(SR), SR)
    write_pair(folders, "blip", seed=4, seconds=0.2)
    report = run(folders, checkpoint, *FAST)
    assert report.files == ["a", "b"]
    assert report.skipped == {"blip": "too short to score (0.20 s; PESQ, STOI and BSS-eval need at least 0.5 s)",
                              "quiet": "the clean reference is silent"}
    assert "skipped quiet: the clean reference is silent" in capsys.readouterr().err


def test_a_few_extra_samples_are_trimmed_with_a_note(tmp_path):
    write_pair(tmp_path, "padded", seconds=1.0)
    clean, sr = sf.read(str(tmp_path / "clean" / "padded.wav"))
    sf.write(str(tmp_path / "clean" / "padded.wav"), np.concatenate([clean, np.zeros(320)]), sr)  # +20 ms
    example = next(iter(FolderPairs(tmp_path / "noisy", tmp_path / "clean", SR)))
    assert len(example.mixture) == len(example.speech) == SR
    assert example.notes == ["noisy and clean trimmed to the shorter (320 samples cut)"]


def test_nothing_scorable_is_an_error(tmp_path, checkpoint, capsys):
    write_pair(tmp_path, "quiet")
    sf.write(str(tmp_path / "noisy" / "quiet.wav"), np.zeros(SR), SR)
    assert run(tmp_path, checkpoint, *FAST) == 1
    assert "no example could be scored (quiet: the noisy input is silent)" in capsys.readouterr().err


def test_config_mixtures_give_per_snr_and_per_noise_breakdowns_without_a_model():
    data = ["synthetic_speakers=6", "synthetic_utterances=1", "synthetic_noise_recordings=3",
            "synthetic_seconds=1.5", "segment_seconds=1.0", "snr_db=[-5,10]"]
    examples = ConfigMixtures(data, SR, split="test", count=4)
    first = next(iter(examples))
    np.testing.assert_allclose(first.mixture, first.speech + first.noise, atol=1e-6)
    report = evaluate(examples, methods=("noisy", "oracle_irm"), metrics=("si_sdr", "si_sdri"),
                      frontend=FrontEnd(), progress=False)
    assert len(report.files) == 4 and all(-5 <= r["snr_db"] <= 10 for r in report.rows)
    by_snr = report.by_snr()
    assert sum(part["files"] for part in by_snr.values()) == 4
    assert "By input SNR:" in report.markdown()
    classes = [r["noise_class"] for r in report.rows if r["method"] == "noisy"]
    assert set(classes) <= {"air_conditioner", "dog_bark", "siren", "tone"}
    by_noise = report.by_noise()
    assert list(by_noise) == sorted(set(classes))
    for name, part in by_noise.items():  # each class's mean is the mean of its own files
        assert part["files"] == classes.count(name)
        mine = [r["si_sdr"] for r in report.rows if r["noise_class"] == name and r["method"] == "oracle_irm"]
        assert part["methods"]["oracle_irm"]["si_sdr"]["mean"] == pytest.approx(np.mean(mine))
    assert "By noise:" in report.markdown() and report.summary()["by_noise"].keys() == by_noise.keys()
    # the same config and seed give the same held-out mixtures
    again = next(iter(ConfigMixtures(data, SR, split="test", count=1)))
    np.testing.assert_array_equal(again.mixture, first.mixture)


def test_the_train_split_gives_fixed_mixtures_of_the_training_recordings():
    data = ["synthetic_speakers=6", "synthetic_utterances=1", "synthetic_noise_recordings=3",
            "synthetic_seconds=1.5", "segment_seconds=1.0", "snr_db=[-5,10]"]
    train = ConfigMixtures(data, SR, split="train", count=3)
    corpora = train.datamodule.corpora
    speakers = {name: {r.group for r in corpora[name][0].recordings} for name in ("train", "val", "test")}
    assert speakers["train"].isdisjoint(speakers["val"] | speakers["test"])
    assert train.dataset.speech is corpora["train"][0] and train.dataset.noise is corpora["train"][1]
    assert train.dataset.augmenter is None  # the synthetic default config augments its training mixtures
    first = list(train)
    assert len(first) == 3 and all(e.name.startswith("train-") for e in first)
    assert all(e.noise_class in corpora["train"][1].labels and -5 <= e.snr_db <= 10 for e in first)
    np.testing.assert_allclose(first[0].mixture, first[0].speech + first[0].noise, atol=1e-6)
    # fixed by seed (unlike the random mixtures training draws), and not the validation mixtures
    again = list(ConfigMixtures(data, SR, split="train", count=3))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.mixture, b.mixture)
    val = next(iter(ConfigMixtures(data, SR, split="val", count=1)))
    assert not np.array_equal(val.mixture, first[0].mixture)


def test_evaluate_scores_the_train_split_from_the_command_line(tmp_path, checkpoint):
    out = tmp_path / "train"
    assert sepgan(["evaluate", "--checkpoint", checkpoint, "--data", "synthetic_speakers=6", "synthetic_utterances=1",
                   "synthetic_noise_recordings=3", "synthetic_seconds=1.5", "segment_seconds=1.0",
                   "--split", "train", "--examples", "2", "--methods", "noisy", "model",
                   "--metrics", "si_sdri", "--no-progress", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["split"] == "train" and summary["files"] == 2
    assert [row["file"] for row in csv.DictReader(open(out / "per_file.csv"))][:1] == ["train-0000"]


def test_bad_data_overrides_and_arguments_are_explained(checkpoint, capsys):
    with pytest.raises(EvaluationError, match="--data takes overrides"):
        ConfigMixtures(["no_such_key=1"], SR)
    with pytest.raises(EvaluationError, match="low end above its high end"):
        ConfigMixtures(["snr_db=[10,-5]"], SR)
    with pytest.raises(EvaluationError, match="one of test, val, train, got 'training'"):
        ConfigMixtures([], SR, split="training")
    with pytest.raises(SystemExit):
        evaluate_main(["--checkpoint", checkpoint])  # neither folders nor --data
    assert "either --noisy-dir and --clean-dir, or --data" in capsys.readouterr().err
    with pytest.raises(EvaluationError, match="needs a separator"):
        evaluate([], methods=("model",))


def test_without_a_shipped_model_the_checkpoint_option_is_named(folders, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("sepgan.pretrained.DEFAULT_CHECKPOINT", tmp_path / "none.ckpt")
    assert evaluate_main(["--noisy-dir", str(folders / "noisy"), "--clean-dir", str(folders / "clean")]) == 1
    assert "pass --checkpoint PATH" in capsys.readouterr().err


def test_sepgan_command_dispatches_evaluate(capsys):
    assert sepgan(["--help"]) == 0
    assert "evaluate" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        sepgan(["evaluate", "--help"])
    assert exit_.value.code == 0
    assert "--noisy-dir" in capsys.readouterr().out


@pytest.mark.skipif(not (SHARED_DATA / "speech" / "vctk_p287_denoiser_debug").is_dir(), reason="needs ../shared/data")
def test_real_voicebank_pairs_input_sir_is_the_measured_snr(tmp_path, checkpoint):
    """On the VCTK pair (noisy = clean + noise), the noisy input's SIR is its SNR (README: 9 and -1 dB)."""
    vctk = SHARED_DATA / "speech" / "vctk_p287_denoiser_debug"
    for side in ("noisy", "clean"):
        (tmp_path / side).mkdir()
        for name in ("p287_002", "p287_004"):
            (tmp_path / side / f"{name}.wav").symlink_to(vctk / side / f"{name}.wav")
    report = evaluate(FolderPairs(tmp_path / "noisy", tmp_path / "clean", SR), methods=("noisy",),
                      metrics=("si_sdr", "sir"), frontend=FrontEnd(), progress=False)
    sir = {r["file"]: r["sir"] for r in report.rows}
    assert sir["p287_002"] == pytest.approx(9.0, abs=0.5) and sir["p287_004"] == pytest.approx(-0.7, abs=0.5)


def test_the_command_runs_the_model_in_chunks_with_the_whole_file_result(tmp_path, tiny_checkpoint, monkeypatch):
    """6 s files in 2 s chunks: the chunked estimate is the whole-file one, and so are the scores of
    `sepgan evaluate` (its default chunks); --device reaches the backend."""
    from sepgan.evaluation import _estimate
    from sepgan.inference import backends
    from sepgan.inference.chunked import ChunkedSeparator
    from sepgan.models import load_separator

    write_pair(tmp_path, "long", seconds=6.0, seed=3)
    write_pair(tmp_path, "stereo48k", seconds=6.0, seed=4, sr=48000, channels=2)
    examples = FolderPairs(tmp_path / "noisy", tmp_path / "clean", SR)
    separator = load_separator(tiny_checkpoint)
    chunked = ChunkedSeparator(backends.TorchBackend(separator), chunk_seconds=2.0)
    for example in examples:
        whole = _estimate("model", example, separator, separator.frontend)
        estimate = _estimate("model", example, chunked, chunked.frontend)
        assert np.abs(estimate - whole).max() < 1e-4 * np.abs(whole).max()
        assert np.abs(whole - example.mixture).max() > 1e-2 * np.abs(whole).max()  # the model changes the input

    devices = []
    monkeypatch.setattr(backends, "load_backend", lambda path, device, precision: devices.append((device, precision))
                        or backends.TorchBackend(load_separator(path), device, precision))
    report = run(tmp_path, str(tiny_checkpoint), *FAST, "--methods", "model", "--device", "cpu")
    assert devices == [("cpu", "fp32")]  # scores the same on every machine unless asked otherwise
    reference = evaluate(examples, separator, methods=("model",), metrics=("si_sdr", "stoi"), progress=False)
    assert [r["file"] for r in report.rows] == [r["file"] for r in reference.rows] == ["long", "stereo48k"]
    for a, b in zip(report.rows, reference.rows):
        assert (a["si_sdr"], a["stoi"]) == pytest.approx((b["si_sdr"], b["stoi"]), abs=1e-4), a["file"]
