"""Naming the removed noise: the classifier's loss and pooling, its training, and the report everywhere."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sepgan.inference.noise_report import NoiseNamer, describe, segments
from sepgan.models import load_separator
from sepgan.models.noise_classifier import OTHER, multi_hot, noise_class_loss, pooled_probabilities
from tests.conftest import noisy_speech, save_checkpoint, tiny_separator

CLASSES = ["air_conditioner", "dog_bark", "siren", "tone"]


def naming_separator(seed: int = 0):
    """A tiny separator with a noise classifier whose batch-norm statistics are random (so scores vary)."""
    model = tiny_separator(seed=seed)
    model.attach_noise_classifier(CLASSES, channels=4)
    for module in model.noise_classifier.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.3)
            module.running_var.uniform_(0.3, 3.0)
    return model.eval()


@pytest.fixture(scope="module")
def naming_checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(naming_separator(), tmp_path_factory.mktemp("naming") / "naming.ckpt")


def test_targets_hold_both_noise_sources():
    targets = multi_hot(torch.tensor([0, 2, 3]), torch.tensor([1, -1, 3]), 4)
    assert targets.tolist() == [[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]


def test_pooling_lets_sure_frames_speak_and_the_loss_rewards_the_right_class():
    unsure = torch.full((1, 1, 20), -3.0)  # p = 0.05 everywhere
    barking = unsure.clone()
    barking[..., 8:11] = 4.0  # three sure frames: a short bark in a long clip
    assert pooled_probabilities(unsure).item() == pytest.approx(0.0474, abs=1e-3)
    assert pooled_probabilities(barking).item() > 0.5 > (torch.sigmoid(barking).mean()).item()
    logits = torch.tensor([[[4.0] * 5, [-4.0] * 5]])  # class 0 present, class 1 absent
    right, wrong = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert noise_class_loss(logits, right) < 0.05 < 3.0 < noise_class_loss(logits, wrong)


def test_segments_from_scores():
    scores = np.full((2, 40), 0.1)
    scores[0, 5:15] = 0.9  # 0.5 s to 1.5 s at 0.1 s per score
    scores[0, 16:18] = 0.8  # after a gap of one score: the same segment
    scores[1, 30:31] = 0.95  # one score: shorter than min_seconds
    levels = np.full(40, -40.0)
    levels[20:28] = -5.0  # loud removed noise that no class explains
    found = segments(scores, levels, ["dog_bark", "siren"], 0.1, min_seconds=0.25, gap_seconds=0.15)
    assert [(s["label"], s["start"], s["end"]) for s in found] == [(OTHER, 2.0, 2.8), ("dog_bark", 0.5, 1.8)]
    assert found[0]["confidence"] == 0.9 and found[1]["confidence"] == 0.82  # the gap counts: (10 x 0.9 + 0.1 + 2 x 0.8) / 13
    assert describe(found[1:]) == "dog bark 0:00–0:01 (0.82)" and describe([]) == "nothing known"


def test_scores_do_not_depend_on_how_the_noise_is_streamed():
    model = naming_separator()
    mixture = np.stack([noisy_speech(7.3, seed=3), noisy_speech(7.3, seed=4)])
    speech = 0.6 * mixture[::-1]  # any stand-in for the separated speech
    scale = np.array([0.05, 0.08], np.float32)
    whole = NoiseNamer(model, scale, chunk_seconds=100)
    whole.add(mixture, speech)
    found = whole.finish()
    pieces = NoiseNamer(model, scale, chunk_seconds=1.0, context_seconds=1.0)
    for start in range(0, mixture.shape[1], 4999):
        pieces.add(mixture[:, start:start + 4999], speech[:, start:start + 4999])
    assert pieces.finish() == found
    a, b = np.concatenate(whole.scores, 1), np.concatenate(pieces.scores, 1)
    assert a.shape == b.shape == (4, -(-mixture.shape[1] // (model.frontend.hop_length * 4)))
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(np.concatenate(whole.levels), np.concatenate(pieces.levels), atol=1e-4)
    assert all(s["end"] <= 7.3 for s in found)


def test_the_classifier_hears_what_training_showed_it_and_any_channel_counts():
    """The report's input is the mixture's features minus the speech's (the training input), and a class
    heard in one channel of two is not averaged away."""
    model = naming_separator()
    mixture = noisy_speech(3.0, seed=5)[None]
    with torch.inference_mode():
        sep = model(torch.from_numpy(mixture))
        training = torch.sigmoid(sep.noise_logits)[0].numpy()
    namer = NoiseNamer(model, np.sqrt(np.mean(mixture**2, 1)))
    namer.add(mixture, sep.speech.numpy())
    namer.finish()
    np.testing.assert_allclose(np.concatenate(namer.scores, 1), training, atol=1e-4)
    quiet = np.zeros_like(mixture)
    stereo = NoiseNamer(model, np.array([np.sqrt(np.mean(mixture**2)), 1.0], np.float32))
    stereo.add(np.concatenate([mixture, quiet]), np.concatenate([sep.speech.numpy(), quiet]))
    stereo.finish()
    assert (np.concatenate(stereo.scores, 1) >= training - 1e-4).all()


def test_every_split_numbers_the_classes_as_training_does(tmp_path):
    """A class only the training split has (a single recording, like the cafe) must not shift the
    numbers of the others in validation."""
    from sepgan.data import SeparationDataModule
    from tests.conftest import write_noise

    for seed, (label, count) in enumerate([("aaa_single", 1), ("hum", 3), ("street", 3)]):
        for i in range(count):
            write_noise(tmp_path / "noise" / label / f"{seed}_{i}.wav", seconds=1.0, seed=10 * seed + i)
    dm = SeparationDataModule(16000, noise_dir=str(tmp_path / "noise"), segment_seconds=0.5, num_workers=0,
                              train_examples=2, val_examples=8, test_examples=2, synthetic_speakers=6,
                              synthetic_utterances=1, synthetic_seconds=1.0, augment={"enabled": False})
    dm.setup()
    train, val = dm.datasets["train"], dm.datasets["val"]
    assert train.noise_labels == val.noise_labels == ["aaa_single", "hum", "street"]
    assert {val.noise_labels[int(val[i]["noise_class"])] for i in range(8)} <= {"hum", "street"}


def test_frozen_separator_training_teaches_only_the_classifier(make_cfg, tmp_path):
    from sepgan.training.config import build_separator
    from sepgan.training.stages import run_generator

    cfg = make_cfg("experiment=demo")
    start = build_separator(cfg)
    start.attach_noise_classifier(CLASSES, **cfg.model.noise_classifier)  # the demo data's classes
    save_checkpoint(start, tmp_path / "start.ckpt")
    result = run_generator(make_cfg("experiment=demo", f"init_weights={tmp_path / 'start.ckpt'}",
                                    "loss.weights.noise_class=1.0", "freeze_separator=true", "trainer.max_steps=3"))
    trained = load_separator(result.checkpoint)
    assert trained.noise_classifier.classes == CLASSES
    before, after = start.state_dict(), trained.state_dict()
    for name, value in before.items():
        if not name.startswith("noise_classifier."):  # the separator's weights and batch-norm statistics
            assert torch.equal(value, after[name]), name
    learned = [name for name, value in before.items()
               if name.startswith("noise_classifier.") and name.endswith("weight") and not torch.equal(value, after[name])]
    assert len(learned) == sum(1 for n in before if n.startswith("noise_classifier.") and n.endswith("weight"))
    assert 0.0 <= result.metrics["val/noise_accuracy"] <= 1.0


def test_separate_writes_the_report_and_refuses_to_overwrite_it(naming_checkpoint, tiny_checkpoint, tmp_path,
                                                                capsys):
    from sepgan.commands import main

    sf.write(tmp_path / "a.wav", noisy_speech(3.0), 16000)
    sf.write(tmp_path / "b.flac", noisy_speech(2.0, seed=1), 16000)
    report = tmp_path / "report.json"

    (tmp_path / "c.wav").write_bytes(b"RIFF....WAVEfmt broken")

    def separate(out: str, checkpoint: Path, report_path: Path, *extra: str) -> int:
        return main(["separate", str(tmp_path / "a.wav"), str(tmp_path / "b.flac"), str(tmp_path / "c.wav"),
                     "-o", str(tmp_path / out), "--checkpoint", str(checkpoint), "--report", str(report_path),
                     "--quiet", *extra])

    assert separate("out", naming_checkpoint, report) == 1  # c.wav failed; the others are reported
    found = json.loads(report.read_text())
    assert [entry["input"] for entry in found] == [str(tmp_path / name) for name in ("a.wav", "b.flac", "c.wav")]
    assert "error" in found[2] and "noise" not in found[2]
    found = found[:2]
    for entry in found:
        confidences = [s["confidence"] for s in entry["noise"]]
        assert confidences == sorted(confidences, reverse=True)
        assert all(s["label"] in CLASSES + [OTHER] and 0 <= s["start"] < s["end"] <= 3.01 for s in entry["noise"])
    assert f"{tmp_path / 'a.wav'}: removed " in capsys.readouterr().err
    assert separate("out2", naming_checkpoint, report) == 2
    assert "exists; not overwritten" in capsys.readouterr().err
    assert json.loads(report.read_text())[:2] == found  # untouched
    assert separate("out4", naming_checkpoint, tmp_path / "r3.json", "--speakers", "2") == 2
    assert "does not go with --speakers" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".r", "r"))) == ["report.json"]
    assert separate("out3", tiny_checkpoint, tmp_path / "r2.json") == 2
    assert "cannot name noise" in capsys.readouterr().err and not (tmp_path / "r2.json").exists()


def test_the_api_returns_the_report_and_still_unpacks(naming_checkpoint, tiny_checkpoint):
    import sepgan

    audio = np.stack([noisy_speech(2.5, 22050), noisy_speech(2.5, 22050, seed=1)])
    result = sepgan.load(naming_checkpoint).separate(audio, 22050, name_noise=True)
    speech, noise = result
    np.testing.assert_allclose(speech + noise, audio, atol=1e-5)
    assert isinstance(result.removed, list)
    assert all(set(s) == {"label", "confidence", "start", "end"} for s in result.removed)
    assert sepgan.load(naming_checkpoint).separate(audio, 22050).removed is None  # only when asked
    with pytest.raises(ValueError, match="cannot name noise"):
        sepgan.load(tiny_checkpoint).separate(audio, 22050, name_noise=True)


def test_the_server_answers_with_the_report(naming_checkpoint, tmp_path):
    from fastapi.testclient import TestClient

    from sepgan.serve.app import Settings, create_app
    from tests.test_serve import parts_of

    buf = io.BytesIO()
    sf.write(buf, noisy_speech(2.0), 16000, format="WAV")
    upload = {"file": ("talk.wav", buf.getvalue(), "audio/wav")}
    with TestClient(create_app(Settings(checkpoint=naming_checkpoint))) as client:
        parts = parts_of(client.post("/api/separate", files=upload, headers={"Accept": "multipart/form-data"}))
        assert list(parts) == ["speech", "noise", "spectrogram", "removed"]
        assert parts["removed"][1] == "application/json" and isinstance(json.loads(parts["removed"][2]), list)
        assert "x-removed-noise" not in client.post("/api/separate", files=upload).headers  # only when asked
        plain = client.post("/api/separate?name_noise=true", files=upload)
        assert json.loads(plain.headers["x-removed-noise"]) == json.loads(parts["removed"][2])[:10]
        assert client.get("/api/models").json()[0]["noise_classes"] == CLASSES
