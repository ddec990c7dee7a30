import numpy as np
import pytest
import soundfile as sf
import torch

from sepgan.audio import AudioError, FrontEnd, load_audio, resample, save_audio
from tests.conftest import write_tone


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "FLOAT"])
def test_reads_any_bit_depth_as_float(tmp_path, subtype):
    written = write_tone(tmp_path / "a.wav", subtype=subtype)
    wav, sr = load_audio(tmp_path / "a.wav")
    assert wav.dtype == np.float32 and wav.shape == (1, 16000) and sr == 16000
    tolerance = 1e-2 if subtype == "PCM_U8" else 1e-4
    assert np.max(np.abs(wav[0] - written[:, 0])) < tolerance


def test_stereo_is_mixed_down_or_kept(tmp_path):
    data = write_tone(tmp_path / "s.flac", channels=2)
    mono, _ = load_audio(tmp_path / "s.flac")
    both, _ = load_audio(tmp_path / "s.flac", mono=False)
    assert both.shape == (2, 16000)
    np.testing.assert_allclose(mono[0], data.mean(axis=1), atol=1e-4)


def test_resamples_48k_to_16k_keeping_the_tone(tmp_path):
    write_tone(tmp_path / "hi.wav", sr=48000, freq=1000.0)
    wav, sr = load_audio(tmp_path / "hi.wav", sample_rate=16000)
    assert sr == 16000 and wav.shape == (1, 16000)
    spectrum = np.abs(np.fft.rfft(wav[0]))
    assert abs(np.argmax(spectrum) * 16000 / 16000 - 1000) < 2  # 1 Hz bins


def test_ogg_round_trip(tmp_path):
    save_audio(tmp_path / "x.ogg", np.sin(np.linspace(0, 400, 8000))[None] * 0.3, 8000)
    wav, sr = load_audio(tmp_path / "x.ogg")
    assert sr == 8000 and wav.shape[0] == 1 and abs(wav.shape[1] - 8000) < 100


def test_partial_read_for_blocks(tmp_path):
    written = write_tone(tmp_path / "a.wav")
    block, _ = load_audio(tmp_path / "a.wav", start=1000, frames=500)
    np.testing.assert_allclose(block[0], written[1000:1500, 0], atol=1e-4)


def test_bad_files_name_the_problem(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "missing.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "text.wav").write_text("this is not audio at all, just some words")
    with pytest.raises(AudioError, match="text.wav"):
        load_audio(tmp_path / "text.wav")
    write_tone(tmp_path / "cut.flac", seconds=2.0)
    raw = (tmp_path / "cut.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(AudioError, match="cut.flac"):
        load_audio(tmp_path / "cut.flac")


def test_resample_identity_and_length():
    x = np.random.default_rng(0).standard_normal((2, 22050)).astype(np.float32)
    assert resample(x, 22050, 22050) is x
    assert resample(x, 22050, 16000).shape == (2, 16000)


@pytest.mark.parametrize("representation", ["complex", "magnitude"])
@pytest.mark.parametrize("compress", [1.0, 0.3])
@pytest.mark.parametrize("window", ["hann", "sine"])
def test_frontend_round_trip_is_exact(representation, compress, window):
    fe = FrontEnd(representation=representation, compress=compress, window=window)
    wav = torch.randn(3, 16000 + 37) * 0.1
    spec = fe.stft(wav)
    features = fe.to_features(spec)
    assert features.shape == (3, fe.channels, 257, fe.n_frames(wav.shape[-1]))
    back = fe.decode(features, wav.shape[-1], mixture_spec=spec)
    assert torch.max(torch.abs(back - wav)) < 1e-5


def test_magnitude_reuses_the_mixture_phase():
    fe = FrontEnd(representation="magnitude")
    speech, noise = torch.randn(1, 8000), torch.randn(1, 8000)
    mix_spec = fe.stft(speech + noise)
    rebuilt = fe.from_features(fe.encode(speech), mix_spec)
    np.testing.assert_allclose(torch.angle(rebuilt).numpy(), torch.angle(mix_spec).numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="phase"):
        fe.from_features(fe.encode(speech))


def test_sine_window_spreads_bin_errors_evenly_at_half_overlap():
    """Random errors in the bins come back from the inverse with the same power at every sample with the
    sine window (its squares sum to one at 50 % overlap), but with Hann up to twice as strong half-way
    between frames, where the inverse divides by a sum of squares that dips to 0.5."""
    generator = torch.Generator().manual_seed(0)
    power = {}
    for window in ("hann", "sine"):
        fe = FrontEnd(n_fft=512, hop_length=256, window=window)
        shape = fe.stft(torch.zeros(64, 16384)).shape
        error = torch.complex(torch.randn(shape, generator=generator), torch.randn(shape, generator=generator))
        out = fe.istft(error, 16384)[:, 512:-512]  # away from the padded ends
        power[window] = out.reshape(64, -1, 256).pow(2).mean(dim=(0, 1))  # per position within a hop
    assert power["sine"].max() / power["sine"].min() < 1.3
    assert power["hann"].max() / power["hann"].min() > 1.7
    assert power["hann"].mean() > 1.25 * power["sine"].mean()


def test_article_preset_matches_the_study():
    from sepgan.training.config import compose_config

    article = compose_config(["frontend=article"]).frontend
    assert (article.sample_rate, article.n_fft, article.hop_length) == (8000, 300, 75)
    assert FrontEnd(8000, 300, 75).n_freq == 151


@pytest.mark.parametrize("kwargs, message", [
    (dict(representation="polar"), "representation"),
    (dict(n_fft=512, hop_length=400), "hop_length"),
    (dict(compress=0.0), "compress"),
    (dict(window="hamming"), "frontend.window must be one of hann, sine"),
])
def test_frontend_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FrontEnd(**kwargs)


def test_signal_shorter_than_window_is_refused():
    with pytest.raises(ValueError, match="n_fft"):
        FrontEnd().stft(torch.zeros(1, 100))


def test_save_audio_accepts_tensors(tmp_path):
    save_audio(tmp_path / "o.flac", torch.zeros(1, 1600), 16000)
    assert sf.info(str(tmp_path / "o.flac")).frames == 1600
