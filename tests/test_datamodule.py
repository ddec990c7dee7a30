import numpy as np
import pytest
import torch

from sepgan.data import SeparationDataModule
from tests.conftest import SHARED_DATA

SMALL = dict(sample_rate=8000, segment_seconds=0.5, batch_size=2, num_workers=0, train_examples=4, val_examples=6,
             test_examples=4, synthetic_speakers=6, synthetic_utterances=1, synthetic_noise_recordings=4,
             synthetic_seconds=1.0)


def test_synthetic_batches_have_the_right_shape_and_sum():
    dm = SeparationDataModule(**SMALL)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["mixture"].shape == (2, 4000)
    torch.testing.assert_close(batch["mixture"], batch["speech"] + batch["noise"], atol=1e-5, rtol=0)


def test_validation_is_fixed_and_training_is_fresh():
    a, b = SeparationDataModule(**SMALL), SeparationDataModule(**SMALL)
    a.setup()
    b.setup()
    va, vb = a.datasets["val"], b.datasets["val"]
    assert all(torch.equal(va[i]["mixture"], vb[i]["mixture"]) for i in range(len(va)))
    train = a.datasets["train"]
    assert not torch.equal(train[0]["mixture"], train[0]["mixture"])


def test_splits_share_no_speaker_and_no_noise_recording():
    dm = SeparationDataModule(**SMALL)
    dm.setup()
    for kind in (0, 1):  # speech, noise
        groups = {name: {r.group for r in dm.corpora[name][kind].recordings} for name in ("train", "val", "test")}
        assert not groups["train"] & groups["val"] and not groups["train"] & groups["test"]
        assert not groups["val"] & groups["test"]
    # every noise class is in every split
    assert dm.corpora["val"][1].labels == dm.corpora["train"][1].labels


def test_unknown_noise_class_lists_the_known_ones():
    dm = SeparationDataModule(**SMALL, noise_classes=["whistle"])
    with pytest.raises(ValueError, match="whistle.*tone"):
        dm.setup()


def test_missing_root_is_explained(tmp_path):
    dm = SeparationDataModule(**SMALL, root=str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dm.setup()


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="../shared/data is not beside the repository")
def test_shared_data_dog_bark_with_synthetic_tones():
    dm = SeparationDataModule(**{**SMALL, "sample_rate": 16000}, root=str(SHARED_DATA),
                              noise_classes=["dog_bark", "tone"])
    dm.setup()
    train_noise = dm.corpora["train"][1]
    assert train_noise.labels == ["dog_bark", "tone"]
    real = [r for r in train_noise.recordings if r.path is not None]
    assert real and all(r.label == "dog_bark" and r.group.startswith("freesound-") for r in real)
    speech = dm.corpora["val"][0]
    assert all(r.group.startswith("librispeech-speaker-") for r in speech.recordings)
    example = dm.datasets["val"][0]
    assert example["mixture"].shape == (8000,) and np.isfinite(example["mixture"].numpy()).all()


def test_a_class_with_one_recording_is_only_trained_on(tmp_path):
    from tests.conftest import write_noise, write_tone

    for s in range(5):
        write_tone(tmp_path / "speech" / f"{s}-1-0000.flac", seconds=1.0, freq=200 + 50 * s)
    for i in range(4):
        write_noise(tmp_path / "noise" / "hum" / f"{100 + i}-0-0-0.wav", seconds=1.0, seed=i)
    write_noise(tmp_path / "noise" / "cafe" / "cafe_short.wav", seconds=1.0, seed=9)
    dm = SeparationDataModule(**{**SMALL, "sample_rate": 16000}, root=str(tmp_path), speech_subdir="speech")
    dm.setup()
    assert dm.corpora["train"][1].labels == ["cafe", "hum"]
    assert dm.corpora["val"][1].labels == ["hum"] and dm.corpora["test"][1].labels == ["hum"]
