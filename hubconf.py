"""torch.hub entry points: `torch.hub.load("/path/to/sepgan", "sepgan", source="local")`.

torch.hub puts this folder first on `sys.path`, so the checkout's own `sepgan` package is the one
loaded; nothing is downloaded (the shipped model lies in sepgan/pretrained).
"""

dependencies = ["torch", "numpy", "soundfile", "soxr"]


def sepgan(name_or_path=None, device="cpu", **options):
    """A sepgan speech denoiser (or, for a two-speaker checkpoint, a voice separator), as `sepgan.load` returns it.

    name_or_path: None for the shipped 16 kHz model, a shipped model's name, a training checkpoint
    (.ckpt) or a model from `sepgan export-onnx` (.onnx). device: where PyTorch runs it ("cpu",
    "cuda"). options: chunk_seconds, batch_size, threads (see `sepgan.load`).

    The model's `separate(audio, sample_rate)` takes numpy or torch audio, (samples,) or
    (channels, samples), at any rate and length, and returns (speech, noise) in the same form, with
    `.removed` saying what noise was removed and when; `separate_file(source, speech_path)` cleans a file.
    A two-speaker model's `separate` returns one array per voice instead (`sepgan.inference.api.Voices`).
    """
    from sepgan.inference.api import load

    return load(name_or_path, device, **options)
