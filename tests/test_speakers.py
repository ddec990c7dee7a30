"""Two speakers: PIT, the speaker mixtures, chunk-permutation alignment, training and `separate --speakers`."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from sepgan.audio import FrontEnd
from sepgan.commands.separate import main as separate_main
from sepgan.data.corpora import Corpus, synthetic_speech
from sepgan.data.mixing import Mixer
from sepgan.data.two_speakers import SpeakerMixtureDataset
from sepgan.inference.permutation import SpeakerChunkedSeparator, align_permutation
from sepgan.metrics import si_sdr
from sepgan.models import SpeakerSeparator, save_separator
from sepgan.pit import PITLoss, pairwise_si_sdr, pit_si_sdr, reorder
from sepgan.training.config import compose_config

SR = 8000


def voices(seconds: float, sr: int = SR) -> np.ndarray:
    """Two 'voices' in different bands, each fading in and out, so both sound in most stretches."""
    t = np.arange(int(seconds * sr)) / sr
    low = np.sin(2 * np.pi * 300 * t) * (1.2 + np.sin(2 * np.pi * 0.7 * t))
    high = 0.7 * np.sin(2 * np.pi * 1800 * t + 1.0) * (1.2 + np.cos(2 * np.pi * 0.45 * t))
    return np.stack([low, high]).astype(np.float32) * 0.1


# ---- PIT ------------------------------------------------------------------------------------------


def test_pit_picks_the_permutation_and_its_loss_is_the_best_permutations():
    rng = np.random.default_rng(0)
    refs = torch.from_numpy(rng.standard_normal((2, 2, 800))).float()
    noise = 0.1 * torch.from_numpy(rng.standard_normal((2, 2, 800))).float()
    est = refs.clone() + noise
    est[0] = est[0].flip(0)  # example 0 comes out swapped, example 1 in order
    score, perm = pit_si_sdr(est, refs)
    assert perm.tolist() == [[1, 0], [0, 1]]
    best = si_sdr(est, reorder(refs, perm)).mean(-1)
    torch.testing.assert_close(score, best)
    total, terms, loss_perm = PITLoss()(est, refs)
    torch.testing.assert_close(total, -best.mean())
    assert torch.equal(loss_perm, perm)
    identity = -si_sdr(est, refs).mean()
    assert total < identity - 10  # the swapped example scores far worse without PIT
    assert pairwise_si_sdr(est, refs).shape == (2, 2, 2)


def test_pit_gradient_flows_and_three_sources_work():
    refs = torch.randn(1, 3, 400)
    est = refs[:, [2, 0, 1]].clone().requires_grad_(True)
    score, perm = pit_si_sdr(est, refs)
    assert perm.tolist() == [[2, 0, 1]]
    (-score.sum()).backward()
    assert torch.isfinite(est.grad).all()


def test_pit_loss_refuses_terms_it_cannot_compute():
    with pytest.raises(ValueError, match="mse"):
        PITLoss({"si_sdr": 1.0, "mse": 1.0})


# ---- data -----------------------------------------------------------------------------------------


def test_speaker_mixtures_add_up_and_use_different_speakers():
    corpus = Corpus(synthetic_speech(3, 1), SR, synthetic_seconds=1.0)
    data = SpeakerMixtureDataset(corpus, Mixer(SR // 2, (0.0, 10.0), (-25.0, -10.0)), 4, seed=1)
    a = data[0]
    assert a["sources"].shape == (2, SR // 2) and a["mixture"].shape == (SR // 2,)
    torch.testing.assert_close(a["sources"].sum(0), a["mixture"])
    assert float(torch.corrcoef(a["sources"])[0, 1].abs()) < 0.5  # two different signals
    torch.testing.assert_close(data[0]["mixture"], a["mixture"])  # fixed by seed
    with pytest.raises(ValueError, match="at least 4 speakers"):
        SpeakerMixtureDataset(corpus, Mixer(SR // 2, (0.0, 10.0), (-25.0, -10.0)), 4, seed=1, sources=4)


def test_speaker_mixtures_with_noise_at_the_asked_snr():
    from sepgan.data.corpora import synthetic_noise

    corpus = Corpus(synthetic_speech(3, 1), SR, synthetic_seconds=1.0)
    noise = Corpus(synthetic_noise(["air_conditioner"], 2), SR, synthetic_seconds=1.0)
    data = SpeakerMixtureDataset(corpus, Mixer(SR // 2, (6.0, 6.0), (-25.0, -10.0)), 2, seed=1, noise=noise)
    a = data[1]
    torch.testing.assert_close(a["sources"].sum(0) + a["noise"], a["mixture"])
    snr = 10 * torch.log10(a["sources"].sum(0).pow(2).sum() / a["noise"].pow(2).sum())
    assert abs(float(snr) - 6.0) < 1e-3


# ---- chunk-permutation alignment ------------------------------------------------------------------


class SwappingBandSplitter:
    """A real two-voice backend for band-separated voices (below / above 1 kHz) that hands the voices
    back in swapped order on every other call, as a separator without a fixed output order may."""

    name = "band-splitter"
    sources = 2
    time_factor = 4
    receptive_field = 2

    def __init__(self):
        self.frontend = FrontEnd(SR, 256, 64, "complex", 1.0)
        self.calls = 0

    def source_features(self, features: torch.Tensor) -> torch.Tensor:
        freqs = torch.arange(features.shape[2]) * SR / self.frontend.n_fft
        low = (freqs < 1000).to(features.dtype)[None, None, :, None]
        voices = torch.stack((features * low, features * (1 - low)), dim=1)
        self.calls += 1
        return voices.flip(1) if self.calls % 2 == 0 else voices

    def describe(self) -> dict:
        return {"backend": self.name}


def test_alignment_keeps_each_speaker_on_its_track_across_chunk_borders():
    truth = voices(4.0)
    backend = SwappingBandSplitter()
    engine = SpeakerChunkedSeparator(backend, chunk_seconds=0.5)
    out = engine.separate(truth.sum(0))
    assert out.shape == truth.shape
    assert backend.calls >= 6  # several chunk borders, every other one swapped
    half = SR // 2
    for start in range(0, truth.shape[1] - half + 1, half):  # every chunk, each voice on its own track
        seg = slice(start, start + half)
        for k in range(2):
            assert np.corrcoef(out[k, seg], truth[k, seg])[0, 1] > 0.99, (start, k)


def test_alignment_matches_by_correlation_and_keeps_the_order_over_silence():
    a, b = voices(0.2)
    assert align_permutation(np.stack([a, b]), np.stack([b, a]), np.array([0, 1])).tolist() == [1, 0]
    assert align_permutation(np.stack([a, b]), np.stack([a, b]), np.array([1, 0])).tolist() == [0, 1]
    silent = np.zeros((2, len(a)), np.float32)
    assert align_permutation(silent, np.stack([a, b]), np.array([1, 0])).tolist() == [1, 0]


def test_a_multichannel_file_is_aligned_per_channel():
    truth = voices(2.0)
    stereo = np.stack([truth.sum(0), 0.5 * truth.sum(0)])
    out = SpeakerChunkedSeparator(SwappingBandSplitter(), chunk_seconds=0.25).separate(stereo)
    assert out.shape == (2, 2, truth.shape[1])
    for c, gain in enumerate((1.0, 0.5)):
        np.testing.assert_allclose(out[:, c, 100:-100], gain * truth[:, 100:-100], atol=0.01)  # ends: band leakage


# ---- model, training, command ---------------------------------------------------------------------

TINY_SPEAKERS = [
    "+experiment=two_speakers",
    "model.unet.n_blocks=3", "model.unet.channels=4",
    "data.segment_seconds=0.5", "data.batch_size=2", "data.num_workers=0",
    "data.train_examples=4", "data.val_examples=2", "data.test_examples=2",
    "data.synthetic_speakers=8", "data.val_fraction=0.25", "data.test_fraction=0.25",
    "data.synthetic_utterances=1", "data.synthetic_seconds=1.0",
    "trainer.max_steps=3", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
    "callbacks.validation_examples.count=1",
]


def tiny_speaker_model() -> SpeakerSeparator:
    torch.manual_seed(0)
    return SpeakerSeparator(FrontEnd(SR, 256, 64, "complex", 0.3), dict(block="tfc_tdf", n_blocks=3, channels=4),
                            sources=2)


def test_speaker_separator_gives_two_voices_of_the_mixtures_length():
    model = tiny_speaker_model()
    out = model.separate(torch.randn(3, 1000))
    assert out.shape == (3, 2, 1000)
    assert model.separate(torch.randn(1000)).shape == (2, 1000)


def test_tiny_two_speaker_training_run(tmp_path):
    from sepgan.models import load_separator
    from sepgan.training.stages import run_generator

    cfg = compose_config([*TINY_SPEAKERS, f"paths.output_dir={tmp_path / 'run'}", f"paths.log_dir={tmp_path}"])
    result = run_generator(cfg)
    assert result.steps == 3
    assert np.isfinite(result.metrics["val/si_sdri"])
    model = load_separator(result.checkpoint)
    assert isinstance(model, SpeakerSeparator) and model.sources == 2
    examples = sorted(p.name for p in (tmp_path / "run").glob("csv/**/examples/step_*/val_example_0_*"))
    assert "val_example_0_estimate2.wav" in examples and "val_example_0_speaker1.wav" in examples


def test_gan_stages_for_two_speakers_judge_each_voice(tmp_path):
    from sepgan.models import load_discriminator, load_separator
    from sepgan.training.stages import run_gan

    cfg = compose_config([*TINY_SPEAKERS, "stage=gan", "gan.steps.discriminator=2", "gan.steps.adversarial=2",
                          "gan.val_check_steps=2", "loss.weights.adversarial=0.01",
                          f"paths.output_dir={tmp_path / 'run'}", f"paths.log_dir={tmp_path}"])
    generator, discriminator, adversarial = run_gan(cfg)
    assert (discriminator.steps, adversarial.steps) == (2, 2)
    assert 0.0 <= discriminator.metrics["val/disc/accuracy"] <= 1.0
    assert np.isfinite(adversarial.metrics["val/si_sdri"])
    assert isinstance(load_separator(adversarial.checkpoint), SpeakerSeparator)
    assert load_discriminator(adversarial.checkpoint) is not None


def test_separate_speakers_writes_each_voice_at_the_inputs_length(tmp_path, capsys):
    checkpoint = tmp_path / "speakers.ckpt"
    save_separator(tiny_speaker_model(), checkpoint)
    source = tmp_path / "in" / "talk.wav"
    source.parent.mkdir()
    mix = voices(1.3, 16000).sum(0)  # 16 kHz through an 8 kHz model
    sf.write(str(source), mix, 16000, subtype="PCM_16")
    out = tmp_path / "out"
    assert separate_main([str(source), "-o", str(out), "--speakers", "2", "--checkpoint", str(checkpoint),
                          "--quiet"]) == 0
    for k in (1, 2):
        info = sf.info(str(out / f"talk_speaker{k}.wav"))
        assert (info.frames, info.samplerate, info.subtype) == (len(mix), 16000, "PCM_16")
    assert sorted(p.name for p in out.iterdir()) == ["talk_speaker1.wav", "talk_speaker2.wav"]
    # a speaker model is refused where speech is expected, and --speakers must match the model
    assert separate_main([str(source), "-o", str(tmp_path / "o2"), "--checkpoint", str(checkpoint)]) == 2
    assert "separates 2 speakers" in capsys.readouterr().err
    assert separate_main([str(source), "-o", str(tmp_path / "o3"), "--speakers", "3", "--checkpoint",
                          str(checkpoint)]) == 2
    assert "use --speakers 2" in capsys.readouterr().err


def test_separate_speakers_progress_counts_the_inputs_own_duration(tmp_path):
    """Progress in input seconds: it ends at the file's length, not at the resampler's (which overshot it)."""
    from sepgan.inference.permutation import SpeakersBackend
    from sepgan.inference.speakers import separate_speakers_file

    source = tmp_path / "talk.wav"
    mix = voices(2.3, 44100).sum(0)  # 44.1 kHz through an 8 kHz model
    sf.write(str(source), mix, 44100, subtype="PCM_16")
    reported = []
    engine = SpeakerChunkedSeparator(SpeakersBackend(tiny_speaker_model()), chunk_seconds=1.0)
    separate_speakers_file(engine, source, [tmp_path / "a.wav", tmp_path / "b.wav"], block_seconds=0.3,
                           progress=reported.append)
    assert len(reported) == 8 and sum(reported) == pytest.approx(len(mix) / 44100, abs=1e-9)


def test_separate_progress_bar_never_passes_its_total(tmp_path):
    """A 2.34 s file: the total was rounded to 2.3 s, so the full count passed it and tqdm warned."""
    import warnings

    from tqdm import TqdmWarning

    checkpoint = tmp_path / "speakers.ckpt"
    save_separator(tiny_speaker_model(), checkpoint)
    source = tmp_path / "talk.wav"
    sf.write(str(source), voices(2.34, 44100).sum(0), 44100, subtype="PCM_16")
    with warnings.catch_warnings():
        warnings.simplefilter("error", TqdmWarning)
        assert separate_main([str(source), "-o", str(tmp_path / "voices"), "--speakers", "2", "--checkpoint",
                              str(checkpoint)]) == 0
        assert separate_main([str(source), "-o", str(tmp_path / "speech")]) == 0


def test_chunked_voices_equal_whole_file_voices():
    """With the receptive field as context the kept parts are exact, and the alignment leaves them in place."""
    from sepgan.inference.permutation import SpeakersBackend

    model = tiny_speaker_model()
    for module in model.modules():  # random statistics, so the two outputs differ and errors would show
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.3)
            module.running_var.uniform_(0.3, 3.0)
    mix = voices(6.0).sum(0) + 0.01 * np.random.default_rng(0).standard_normal(6 * SR).astype(np.float32)
    whole = model.separate(torch.from_numpy(mix)).numpy()
    chunked = SpeakerChunkedSeparator(SpeakersBackend(model), chunk_seconds=1.0).separate(mix)
    assert chunked.shape == whole.shape == (2, len(mix))
    for k in range(2):
        assert si_sdr(torch.from_numpy(chunked[k]).double(), torch.from_numpy(whole[k]).double()) > 40


def test_python_api_gives_each_voice_of_arrays_tensors_and_files(tmp_path):
    import sepgan
    from sepgan.audio import NonFiniteAudioError
    from sepgan.inference.api import Voices

    checkpoint = tmp_path / "speakers.ckpt"
    save_separator(tiny_speaker_model(), checkpoint)
    model = sepgan.load(checkpoint, chunk_seconds=1.0)
    assert isinstance(model, Voices) and model.sources == 2 and model.sample_rate == SR
    assert "2-speaker" in repr(model)
    with pytest.raises(ValueError, match="a speaker separator runs one frame grid"):
        sepgan.load(checkpoint, shifts=2)
    with pytest.raises(ValueError, match="a speaker separator runs in fp32"):
        sepgan.load(checkpoint, precision="bf16")

    mix = voices(2.5, 16000).sum(0)  # 16 kHz through an 8 kHz model, several chunks
    first, second = model.separate(mix, 16000)
    assert first.shape == second.shape == mix.shape and first.dtype == np.float32
    assert not np.allclose(first, second)
    stereo = model.separate(np.stack([mix, 0.5 * mix]), 16000)
    assert [v.shape for v in stereo] == [(2, len(mix))] * 2
    np.testing.assert_allclose(stereo[0][0], first, atol=1e-5)  # each channel on its own
    tensors = model.separate(torch.from_numpy(mix), 16000)
    assert all(isinstance(v, torch.Tensor) for v in tensors)
    np.testing.assert_allclose(tensors[1].numpy(), second, atol=1e-6)

    source = tmp_path / "talk.wav"
    sf.write(str(source), mix, 16000, subtype="FLOAT")
    result = model.separate_file(source, tmp_path / "out" / "talk.wav")
    assert result["speakers"] == [str(tmp_path / "out" / f"talk_speaker{k}.wav") for k in (1, 2)]
    written = sf.read(str(tmp_path / "out" / "talk_speaker1.wav"), dtype="float32")[0]
    np.testing.assert_allclose(written, first, atol=1e-5)  # the file holds what the array call gives
    with pytest.raises(FileExistsError, match="exists"):
        model.separate_file(source, tmp_path / "out" / "talk.wav")
    with pytest.raises(ValueError, match="writes 2 voices"):
        model.separate_file(source, [tmp_path / "one.wav"])
    with pytest.raises(NonFiniteAudioError, match="1.000 s"):
        model.separate(np.where(np.arange(len(mix)) == 16000, np.nan, mix), 16000)
    with pytest.raises(ValueError, match="sample_rate"):
        model.separate(mix, 0)


def test_separate_speakers_refuses_dry_and_handles_nonfinite_samples(tmp_path, capsys):
    checkpoint = tmp_path / "speakers.ckpt"
    save_separator(tiny_speaker_model(), checkpoint)
    source = tmp_path / "talk.wav"
    mix = voices(1.0).sum(0)
    mix[4000] = np.nan
    sf.write(str(source), mix, SR, subtype="FLOAT")
    common = [str(source), "--speakers", "2", "--checkpoint", str(checkpoint), "--quiet"]
    assert separate_main([*common, "-o", str(tmp_path / "a"), "--dry", "0.2"]) == 2
    assert "--dry" in capsys.readouterr().err and not (tmp_path / "a").exists()
    assert separate_main([*common, "-o", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert "0.500 s" in err and "--fix-nonfinite" in err and not list((tmp_path / "b").glob("*.wav"))
    with pytest.warns(Warning, match="0.500 s"):
        assert separate_main([*common, "-o", str(tmp_path / "c"), "--fix-nonfinite"]) == 0
    for k in (1, 2):
        assert np.isfinite(sf.read(str(tmp_path / "c" / f"talk_speaker{k}.wav"))[0]).all()
