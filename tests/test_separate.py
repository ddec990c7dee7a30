"""Chunked, streaming separation: same result as the whole file, no seams, flat memory, any file."""

import copy
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import torch

from sepgan.audio import AudioError, rms
from sepgan.inference.backends import TorchBackend, load_backend, receptive_field
from sepgan.metrics import si_sdr
from sepgan.models.blocks import DilatedTemporal
from sepgan.inference.chunked import ChunkedSeparator
from sepgan.inference.files import OutputFormat, separate_file
from tests.conftest import TINY_DILATED, noisy_speech, tiny_separator


@pytest.fixture(scope="module")
def model():
    return tiny_separator()


@pytest.fixture(scope="module")
def whole_30s(model):
    mixture = noisy_speech(30.0)
    return mixture, model.separate(torch.from_numpy(mixture)).numpy()


def boundary_mask(engine: ChunkedSeparator, length: int, radius: int) -> np.ndarray:
    """Samples within `radius` of the places where one chunk's kept part meets the next one's."""
    mask = np.zeros(length, bool)
    for edge in range(engine.context + engine.core, length, engine.core):
        mask[max(0, edge - radius):edge + radius] = True
    return mask


def test_receptive_field_is_what_changes_the_output(model):
    reach, factor = receptive_field(model), model.net.factor
    fe = model.frontend
    x = torch.randn(1, fe.channels, fe.n_freq, 256)
    group = slice(128, 128 + factor)  # one output frame at each position of the down-sampling grid

    def changed(frames) -> bool:
        y = x.clone()
        y[..., frames] += 1.0
        with torch.inference_mode():
            return not torch.equal(model.separate_features(y)[0][..., group], model.separate_features(x)[0][..., group])

    beyond = list(range(0, 128 - reach)) + list(range(128 + factor + reach, 256))
    assert not changed(beyond)
    assert changed([128 - reach]) or changed([128 + factor - 1 + reach])  # the farthest frame said to matter


@pytest.mark.parametrize("chunk_seconds,batch_size", [(2.0, 3), (0.7, 1), (3.3, 2)])
def test_chunked_output_equals_whole_file(model, whole_30s, chunk_seconds, batch_size):
    mixture, whole = whole_30s
    engine = ChunkedSeparator(TorchBackend(model), chunk_seconds, batch_size)
    chunked = engine.separate(mixture)
    assert chunked.shape == whole.shape
    assert engine.window < len(mixture) / 5  # really in many chunks
    quality = si_sdr(torch.from_numpy(chunked)[None], torch.from_numpy(whole)[None]).item()
    assert quality >= 40.0, quality


def test_a_dc_offset_leaves_the_chunked_speech_unchanged_and_goes_to_the_noise(model, whole_30s, tmp_path):
    mixture, whole = whole_30s
    offset = np.float32(3 * np.sqrt(np.mean(mixture**2)))  # as the offset of the test split's siren recordings, and more
    engine = ChunkedSeparator(TorchBackend(model), 2.0)
    np.testing.assert_allclose(engine.separate(mixture + offset), whole, atol=1e-4)
    sf.write(tmp_path / "offset.wav", mixture + offset, model.frontend.sample_rate, subtype="FLOAT")
    separate_file(engine, tmp_path / "offset.wav", tmp_path / "speech.wav", noise_path=tmp_path / "noise.wav")
    np.testing.assert_allclose(sf.read(tmp_path / "speech.wav")[0], whole, atol=1e-4)
    assert abs(np.mean(sf.read(tmp_path / "noise.wav")[0]) - offset) < 1e-3


def test_no_seam_at_chunk_boundaries(model, whole_30s):
    mixture, whole = whole_30s
    floor = 1e-6 * np.sqrt(np.mean(whole**2))

    def errors(engine):
        error = (engine.separate(mixture) - whole) ** 2
        near = boundary_mask(engine, len(whole), model.frontend.hop_length * 2)
        return np.sqrt(error[near].mean()), np.sqrt(error[~near].mean())

    near, elsewhere = errors(ChunkedSeparator(TorchBackend(model), 2.0, 2))
    assert near <= 2 * elsewhere + floor, (near, elsewhere)
    # The check has teeth: chunks without context (the original web app's way) show their seams.
    near, elsewhere = errors(ChunkedSeparator(TorchBackend(model), 2.0, 2, context_seconds=0.0))
    assert near > 10 * elsewhere + floor, (near, elsewhere)


def test_shifts_average_offset_frame_grids_and_chunk_exactly(model, whole_30s):
    """Two shifts are the mean of the whole file's speech on the frame grid and on one half a hop earlier."""
    mixture = whole_30s[0]
    masking = copy.deepcopy(model)
    masking.net.last.bias.data.zero_()  # far from the pass-through it starts at, so the grid matters
    x, offsets = torch.from_numpy(mixture), (0, model.frontend.hop_length // 2)
    mean = x.mean()
    level = rms(x - mean)  # the whole signal's offset and level, as the chunks are shifted and scaled

    def grid(offset):
        return masking.separate(torch.nn.functional.pad(x, (offset, 0), value=float(mean)), scale=level,
                                offset=mean)[offset:].numpy()

    one_grid, expected = grid(0), np.mean([grid(o) for o in offsets], axis=0)
    engine = ChunkedSeparator(TorchBackend(masking), 2.0, 2, shifts=2)
    fe = model.frontend  # the context covers the receptive field, one window and the shifted grid's extra hop
    assert engine.context >= engine.backend.receptive_field * fe.hop_length + fe.n_fft + fe.hop_length
    shifted = engine.separate(mixture)
    assert engine.window < len(mixture) / 5  # really in many chunks

    def relative_error(a, b, where=slice(None)):
        return np.sqrt(np.mean((a[where] - b[where]) ** 2) / np.mean(b**2))

    assert relative_error(shifted, expected) < 1e-5
    assert relative_error(shifted, expected, boundary_mask(engine, len(x), model.frontend.hop_length * 2)) < 1e-5
    assert relative_error(one_grid, expected) > 0.03  # the second grid changed the result


@pytest.mark.parametrize("shifts", [1, 2])
def test_short_and_odd_signals(model, shifts):
    engine = ChunkedSeparator(TorchBackend(model), 1.0, 2, shifts=shifts)
    for n in (100, 511, 513, 16000 + 7):
        x = noisy_speech(1.0)[:n]
        out = engine.separate(x)
        assert out.shape == x.shape and np.isfinite(out).all()
    np.testing.assert_array_equal(engine.separate(np.zeros(5000, np.float32)), 0.0)
    with pytest.raises(ValueError, match="shape"):
        engine.separate(np.zeros((1, 1, 10), np.float32))


def test_bad_engine_settings_are_named(model):
    backend = TorchBackend(model)
    for kwargs, message in (({"chunk_seconds": 0}, "chunk length"), ({"batch_size": 0}, "batch size"),
                            ({"context_seconds": -1}, "context"), ({"shifts": 0}, "shifts must be from 1"),
                            ({"shifts": model.frontend.hop_length + 1}, "shifts must be from 1")):
        with pytest.raises(ValueError, match=message):
            ChunkedSeparator(backend, **kwargs)


def test_any_rate_and_channels_keep_shape_and_match_per_channel(model, tmp_path):
    sr = 44100
    left, right = noisy_speech(3.0, sr, seed=1), noisy_speech(3.0, sr, seed=2, kind="dog_bark")
    sf.write(tmp_path / "stereo.wav", np.stack([left, right], 1), sr, subtype="PCM_24")
    sf.write(tmp_path / "right.wav", right, sr, subtype="PCM_24")
    engine = ChunkedSeparator(TorchBackend(model), 1.0, 2)
    float_out = OutputFormat("WAV", "FLOAT", sr)
    separate_file(engine, tmp_path / "stereo.wav", tmp_path / "out.wav", out=float_out)
    separate_file(engine, tmp_path / "right.wav", tmp_path / "right_out.wav", out=float_out)
    out, rate = sf.read(tmp_path / "out.wav", dtype="float32", always_2d=True)
    assert rate == sr and out.shape == (len(left), 2)
    alone, _ = sf.read(tmp_path / "right_out.wav", dtype="float32")
    np.testing.assert_allclose(out[:, 1], alone, atol=1e-5)  # channels are cleaned independently
    assert sf.info(tmp_path / "out.wav").subtype == "FLOAT"
    separate_file(engine, tmp_path / "stereo.wav", tmp_path / "mono.wav", mono=True)
    info = sf.info(tmp_path / "mono.wav")
    assert (info.channels, info.samplerate, info.frames, info.subtype) == (1, sr, len(left), "PCM_24")


def test_streamed_file_equals_whole_file_and_noise_completes_it(model, tmp_path):
    mixture = noisy_speech(12.0)
    sf.write(tmp_path / "in.wav", mixture, 16000, subtype="FLOAT")
    engine = ChunkedSeparator(TorchBackend(model), 1.0, 2)
    separate_file(engine, tmp_path / "in.wav", tmp_path / "speech.wav", tmp_path / "noise.wav", block_seconds=0.3)
    speech, _ = sf.read(tmp_path / "speech.wav", dtype="float32")
    noise, _ = sf.read(tmp_path / "noise.wav", dtype="float32")
    whole = model.separate(torch.from_numpy(mixture)).numpy()
    assert si_sdr(torch.from_numpy(speech)[None], torch.from_numpy(whole)[None]).item() > 40
    np.testing.assert_allclose(speech + noise, mixture, atol=1e-6)


def test_memory_does_not_grow_with_length(model, tmp_path):
    """Peak numpy memory (read buffers, resampling, chunk windows) for 15 s vs 60 s at 44.1 kHz."""
    engine = ChunkedSeparator(TorchBackend(model), 1.0, 2)
    peaks = []
    for seconds in (15, 60):
        path = tmp_path / f"{seconds}.wav"
        with sf.SoundFile(path, "w", 44100, 1, "PCM_16") as f:
            for _ in range(seconds // 15):
                f.write(noisy_speech(15.0, 44100))
        tracemalloc.start()
        separate_file(engine, path, tmp_path / f"{seconds}_out.wav", tmp_path / f"{seconds}_noise.wav")
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    whole_file_bytes = 60 * 44100 * 4
    assert peaks[1] < 1.2 * peaks[0] and peaks[1] < whole_file_bytes / 2, peaks


def test_bad_files_are_named_and_leave_nothing_behind(model, tmp_path):
    engine = ChunkedSeparator(TorchBackend(model), 1.0, 2)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("not audio\n" * 100)
    sf.write(tmp_path / "full.flac", noisy_speech(5.0), 16000)
    data = (tmp_path / "full.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[:len(data) // 2])
    for name, message in (("empty.wav", "empty"), ("text.wav", "cannot read"), ("cut.flac", "truncated or corrupt"),
                          ("missing.wav", "not found")):
        with pytest.raises(AudioError, match=message):
            separate_file(engine, tmp_path / name, tmp_path / "out" / name)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_never_writes_over_inputs_or_existing_outputs(model, tmp_path):
    engine = ChunkedSeparator(TorchBackend(model), 1.0, 2)
    sf.write(tmp_path / "in.wav", noisy_speech(2.0), 16000)
    before = (tmp_path / "in.wav").read_bytes()
    with pytest.raises(FileExistsError, match="input"):
        separate_file(engine, tmp_path / "in.wav", tmp_path / "in.wav", overwrite=True)
    (tmp_path / "out.wav").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="--overwrite"):
        separate_file(engine, tmp_path / "in.wav", tmp_path / "out.wav")
    assert (tmp_path / "out.wav").read_bytes() == b"precious"
    assert (tmp_path / "in.wav").read_bytes() == before
    separate_file(engine, tmp_path / "in.wav", tmp_path / "out.wav", overwrite=True)
    assert sf.info(tmp_path / "out.wav").frames == 32000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "out.wav"]  # no temporary files left


def test_load_backend_names_wrong_files(tmp_path, tiny_checkpoint):
    with pytest.raises(ValueError, match="export-onnx"):
        load_backend(tiny_checkpoint, "onnx")
    with pytest.raises(FileNotFoundError, match="nothing.ckpt"):
        load_backend(tmp_path / "nothing.ckpt")
    with pytest.raises(ValueError, match="unknown backend"):
        load_backend(tiny_checkpoint, "tensorflow")


def test_chunked_output_of_the_dilated_preset_equals_whole_file():
    model = tiny_separator(*TINY_DILATED, seed=1)
    assert isinstance(model.net.temporal, DilatedTemporal)
    assert receptive_field(model) > 15 * model.net.factor  # dilations 1, 2, 4, 8 at the bottleneck
    mixture = noisy_speech(12.0)
    whole = model.separate(torch.from_numpy(mixture)).numpy()
    engine = ChunkedSeparator(TorchBackend(model), 1.0, 2)
    assert engine.window < len(mixture) / 2  # several chunks, even with the long context
    chunked = engine.separate(mixture)
    assert si_sdr(torch.from_numpy(chunked)[None], torch.from_numpy(whole)[None]).item() >= 40.0


def test_unbounded_receptive_field_is_refused():
    model = tiny_separator()

    class OverAllFrames(torch.nn.Module):
        """A bidirectional GRU over the bottleneck's frames: every output frame sees the whole input."""

        def __init__(self, channels, n_freq):
            super().__init__()
            self.gru = torch.nn.GRU(channels * n_freq, 4, batch_first=True, bidirectional=True)
            self.out = torch.nn.Linear(8, channels * n_freq)

        def forward(self, x):
            b, c, f, t = x.shape
            h, _ = self.gru(x.permute(0, 3, 1, 2).reshape(b, t, c * f))
            return x + self.out(h).reshape(b, t, c, f).permute(0, 2, 3, 1)

    net = model.net
    net.temporal = OverAllFrames(net.ups[-1][0].in_channels, net.bottleneck.tdf.fc1.in_features)
    with pytest.raises(ValueError, match="unbounded receptive field"):
        receptive_field(model, max_frames=1024)
