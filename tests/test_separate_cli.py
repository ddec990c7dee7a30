"""`sepgan separate`: folders, names, formats, refusing to overwrite, and clear errors."""

import os
import stat

import numpy as np
import pytest
import soundfile as sf

from sepgan.commands import main
from tests.conftest import noisy_speech


@pytest.fixture
def inputs(tmp_path):
    """A folder with nested files of several formats, rates, channel counts and bit depths."""
    root = tmp_path / "in"
    (root / "day1").mkdir(parents=True)
    sf.write(root / "a.wav", noisy_speech(2.0), 16000, subtype="PCM_16")
    sf.write(root / "day1" / "b.flac", np.stack([noisy_speech(1.5, 48000), noisy_speech(1.5, 48000, 1)], 1),
             48000, subtype="PCM_24")
    sf.write(root / "day1" / "c.wav", noisy_speech(1.0, 8000), 8000, subtype="PCM_U8")
    (root / "notes.txt").write_text("not audio, not picked up")
    return root


def run(*args, checkpoint=None):
    extra = ["--checkpoint", str(checkpoint)] if checkpoint else []
    return main(["separate", *map(str, args), *extra, "--quiet"])


def test_folder_keeps_names_paths_formats_and_rates(inputs, tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "out"
    assert run(inputs, "-o", out, "--save-noise", checkpoint=tiny_checkpoint) == 0
    found = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert found == ["a.wav", "a_noise.wav", "day1", "day1/b.flac", "day1/b_noise.flac", "day1/c.wav",
                     "day1/c_noise.wav"]
    for name, source in (("a.wav", "a.wav"), ("day1/b.flac", "day1/b.flac"), ("day1/c_noise.wav", "day1/c.wav")):
        got, want = sf.info(out / name), sf.info(inputs / source)
        assert (got.format, got.subtype, got.samplerate, got.channels, got.frames) == \
               (want.format, want.subtype, want.samplerate, want.channels, want.frames)
    assert "cleaned 3 of 3 files" in capsys.readouterr().err
    mixture, speech, noise = (sf.read(p, dtype="float32")[0] for p in (inputs / "a.wav", out / "a.wav", out / "a_noise.wav"))
    assert np.abs(speech + noise - mixture).max() < 3 / 2**15  # the two parts add up to the input (PCM_16 steps)
    assert np.abs(speech - mixture).max() > 20 / 2**15  # and the speech is the model's output, not a copy


def test_options_change_format_rate_and_channels(inputs, tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    assert run(inputs / "day1" / "b.flac", "-o", out, "--format", "wav", "--subtype", "FLOAT",
               "--sample-rate", "22050", "--mono", checkpoint=tiny_checkpoint) == 0
    info = sf.info(out / "b.wav")
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "FLOAT", 22050, 1)
    assert info.frames == round(1.5 * 22050)


def test_shifts_write_the_average_of_the_frame_grids(tmp_path, tiny_checkpoint):
    from sepgan.inference.backends import load_backend
    from sepgan.inference.chunked import ChunkedSeparator

    mixture = noisy_speech(2.0)
    sf.write(tmp_path / "talk.wav", mixture, 16000, subtype="FLOAT")
    assert run(tmp_path / "talk.wav", "-o", tmp_path / "out", "--shifts", "2", checkpoint=tiny_checkpoint) == 0
    written = sf.read(tmp_path / "out" / "talk.wav", dtype="float32")[0]
    backend = load_backend(tiny_checkpoint, precision="auto")  # as the command loads it
    np.testing.assert_allclose(written, ChunkedSeparator(backend, shifts=2).separate(mixture), atol=1e-6)
    assert np.abs(written - ChunkedSeparator(backend).separate(mixture)).max() > 1e-4  # not one grid's


def test_precision_picks_the_arithmetic_and_the_summary_names_it(tmp_path, tiny_checkpoint, capsys):
    from sepgan.inference.backends import load_backend
    from sepgan.inference.chunked import ChunkedSeparator

    mixture = noisy_speech(2.0)
    sf.write(tmp_path / "talk.wav", mixture, 16000, subtype="FLOAT")
    results = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        assert run(tmp_path / "talk.wav", "-o", out, "--precision", precision, checkpoint=tiny_checkpoint) == 0
        results[precision] = sf.read(out / "talk.wav", dtype="float32")[0]
        expected = ChunkedSeparator(load_backend(tiny_checkpoint, precision=precision)).separate(mixture)
        np.testing.assert_allclose(results[precision], expected, atol=1e-6)
        assert ("torch backend in bf16)" in capsys.readouterr().err) == (precision == "bf16")
    assert 0 < np.abs(results["bf16"] - results["fp32"]).max() < 0.05 * np.abs(results["fp32"]).max()


def test_existing_outputs_and_inputs_are_never_overwritten(inputs, tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.wav").write_bytes(b"keep me")
    assert run(inputs / "a.wav", "-o", out, checkpoint=tiny_checkpoint) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "a.wav").read_bytes() == b"keep me"
    assert run(inputs / "a.wav", "-o", out, "--overwrite", checkpoint=tiny_checkpoint) == 0
    assert sf.info(out / "a.wav").frames == 32000
    before = (inputs / "a.wav").read_bytes()
    assert run(inputs / "a.wav", "-o", inputs, "--overwrite", checkpoint=tiny_checkpoint) == 1
    assert "refusing to write over the input" in capsys.readouterr().err
    assert (inputs / "a.wav").read_bytes() == before


def test_output_folder_inside_the_input_folder_is_not_read_back(inputs, tiny_checkpoint):
    assert run(inputs, "-o", inputs / "clean", checkpoint=tiny_checkpoint) == 0
    assert run(inputs, "-o", inputs / "clean", "--overwrite", checkpoint=tiny_checkpoint) == 0
    assert not (inputs / "clean" / "clean").exists()


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="this libsndfile cannot write MP3")
def test_mixed_formats_are_cleaned_into_0644_files_and_other_files_reported(tmp_path, tiny_checkpoint, capsys):
    root = tmp_path / "in"
    root.mkdir()
    for name, sr in (("a.mp3", 44100), ("b.flac", 22050), ("c.wav", 16000)):
        sf.write(root / name, noisy_speech(1.0, sr), sr)
    (root / "readme.txt").write_text("not audio")
    old = os.umask(0o022)
    try:
        assert run(root, "-o", tmp_path / "out", checkpoint=tiny_checkpoint) == 0
    finally:
        os.umask(old)
    err = capsys.readouterr().err
    assert f"skipped {root / 'readme.txt'}: " in err and "cleaned 3 of 3 files" in err
    written = {p.name: p for p in (tmp_path / "out").iterdir()}
    assert sorted(written) == ["a.mp3", "b.flac", "c.wav"]
    for name, path in written.items():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, name
        assert (sf.info(path).format, sf.info(path).samplerate) == (sf.info(root / name).format,
                                                                     sf.info(root / name).samplerate)


def test_bad_file_is_reported_and_the_rest_cleaned(inputs, tmp_path, tiny_checkpoint, capsys):
    (inputs / "broken.wav").write_text("a text file renamed to .wav\n" * 20)
    (inputs / "empty.flac").write_bytes(b"")
    out = tmp_path / "out"
    assert run(inputs, "-o", out, checkpoint=tiny_checkpoint) == 1
    err = capsys.readouterr().err
    assert "broken.wav: cannot read" in err and "empty.flac" in err and "empty" in err
    assert "cleaned 3 of 5 files" in err
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["a.wav", "b.flac", "c.wav"]


@pytest.mark.parametrize("args,message", [
    (["nowhere.wav", "-o", "out"], "input not found: 'nowhere.wav'"),
    (["IN", "-o", "out", "--checkpoint", "missing.ckpt"], "checkpoint not found"),
    (["IN", "-o", "out", "--chunk-seconds", "0"], "chunk length must be positive"),
    (["IN", "-o", "out", "--dry", "1.5"], "dry must be between 0 (fully cleaned) and 1"),
    (["IN", "-o", "out", "--speakers", "2", "--shifts", "2"], "--shifts averages one voice's estimates"),
    (["IN", "-o", "out", "--speakers", "2", "--precision", "bf16"], "--speakers runs in fp32"),
    (["IN", "-o", "out", "--checkpoint", "model.onnx", "--precision", "bf16"], "needs the torch backend"),
])
def test_bad_arguments_are_named(inputs, tiny_checkpoint, args, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    args = [str(inputs) if a == "IN" else a for a in args]
    if "--checkpoint" not in args:
        args += ["--checkpoint", str(tiny_checkpoint)]
    assert main(["separate", *args]) == 2
    assert message in capsys.readouterr().err


def test_same_output_from_two_inputs_is_refused(inputs, tmp_path, tiny_checkpoint, capsys):
    other = tmp_path / "other"
    other.mkdir()
    sf.write(other / "a.wav", noisy_speech(1.0), 16000)
    assert run(inputs / "a.wav", other / "a.wav", "-o", tmp_path / "out", checkpoint=tiny_checkpoint) == 2
    assert "would both be written to" in capsys.readouterr().err


def test_without_a_shipped_model_the_checkpoint_option_is_named(inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sepgan.pretrained.DEFAULT_CHECKPOINT", tmp_path / "none.ckpt")
    assert main(["separate", str(inputs), "-o", str(tmp_path / "out")]) == 2
    assert "--checkpoint" in capsys.readouterr().err


def test_bad_option_is_rejected_by_argparse(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["separate", "x.wav", "-o", "out", "--format", "mp4"])
    assert exit_.value.code == 2 and "invalid choice: 'mp4'" in capsys.readouterr().err
