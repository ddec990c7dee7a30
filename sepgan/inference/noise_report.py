"""What was removed, and when: the noise classifier run over a file's removed noise, as segments.

`NoiseNamer` takes the mixture and the separated speech at the model's rate in blocks of any size
(memory stays flat in the file's length) and gives the classifier what it learned from: the
mixture's features minus the speech's (the noise estimate in the compressed feature domain, which
is not the features of the noise waveform). It scores windows of `chunk_seconds` with
`context_seconds` each side thrown away, so the scores do not depend on where the windows fall;
a class heard in any channel counts (the highest score over channels). `segments` turns the scores
into the report: per class, the stretches where its score is at least `threshold` (short gaps
closed, short blips dropped), each with its mean score as confidence; and "other" where the
removed noise is loud but no known class explains it. Most confident first.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sepgan.models.noise_classifier import OTHER


class NoiseNamer:
    def __init__(self, model, scale: np.ndarray, chunk_seconds: float = 20.0, context_seconds: float = 1.0,
                 device: str | torch.device = "cpu"):
        classifier = getattr(model, "noise_classifier", None)
        if classifier is None:
            raise ValueError("this model cannot name noise: it has no noise classifier (train one with "
                             "loss.weights.noise_class > 0; the shipped model has one)")
        self.model, self.classes, self.device = model, classifier.classes, torch.device(device)
        fe = model.frontend
        self.sample_rate = fe.sample_rate
        self.group = fe.hop_length * classifier.pool  # samples per score
        self.context = max(1, round(context_seconds * fe.sample_rate / self.group)) * self.group
        self.core = max(1, round(chunk_seconds * fe.sample_rate / self.group)) * self.group
        self.scale = np.asarray(scale, np.float32).reshape(-1, 1)
        self.buffer = np.zeros((2, len(self.scale), 0), np.float32)  # mixture and speech
        self.start = 0  # signal position of buffer[:, 0]
        self.done = 0  # samples whose scores are final
        self.scores: list[np.ndarray] = []  # (classes, groups) per window
        self.levels: list[np.ndarray] = []  # noise level (dB re the mixture) per group

    def add(self, mixture: np.ndarray, speech: np.ndarray) -> None:
        """Append the mixture and its separated speech, (channels, samples) each, at the model's rate."""
        pair = np.stack([np.asarray(x, np.float32).reshape(len(self.scale), -1) for x in (mixture, speech)])
        self.buffer = np.concatenate((self.buffer, pair), -1)
        while self.start + self.buffer.shape[-1] >= self.done + self.core + self.context:
            self._score(self.done + self.core)

    def finish(self, threshold: float = 0.5) -> list[dict]:
        """Score what is left and return the report's segments."""
        end = self.start + self.buffer.shape[-1]
        if end > self.done:
            self._score(end)
        if not self.scores:
            return []
        return segments(np.concatenate(self.scores, 1), np.concatenate(self.levels), self.classes,
                        self.group / self.sample_rate, threshold, duration=end / self.sample_rate)

    def _score(self, until: int) -> None:
        """Final scores of the groups from `self.done` to `until` (a window with context both sides)."""
        left = max(0, self.done - self.context)
        # at the mixture's normalised level, as in training
        mixture, speech = self.buffer[..., left - self.start:until + self.context - self.start] / self.scale
        fe = self.model.frontend
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(np.concatenate([mixture, speech]))).to(self.device)
            padded = max(x.shape[-1], fe.n_fft)
            features = fe.encode(F.pad(x, (0, padded - x.shape[-1])))
            channels = len(mixture)
            noise_features = features[:channels] - features[channels:]
            probabilities = torch.sigmoid(self.model.classify_noise(noise_features)).amax(0).cpu().numpy()
        first = (self.done - left) // self.group
        count = -(-(until - self.done) // self.group)
        self.scores.append(probabilities[:, first:first + count])
        noise = (mixture - speech)[:, self.done - left:until - left]
        power = np.pad(np.mean(noise**2, 0), (0, count * self.group - noise.shape[-1]))
        self.levels.append(10 * np.log10(power.reshape(count, self.group).mean(1) + 1e-12))
        self.done = until
        drop = max(0, self.done - self.context - self.start)
        self.buffer, self.start = self.buffer[..., drop:], self.start + drop


def segments(scores: np.ndarray, levels_db: np.ndarray, classes: list[str], seconds_per_group: float,
             threshold: float = 0.5, min_seconds: float = 0.25, gap_seconds: float = 0.5,
             other_level_db: float = -20.0, duration: float | None = None) -> list[dict]:
    """Report segments from scores (classes, groups) and the removed noise's level per group (dB re the mixture).

    "other": groups where the removed noise is within `other_level_db` of the mixture's level and
    no class reaches `threshold`; its confidence is the mean of one minus the best class's score.
    """
    found = []
    best = scores.max(0) if len(scores) else np.zeros_like(levels_db)
    rows = [(label, scores[k], scores[k] >= threshold) for k, label in enumerate(classes)]
    rows.append((OTHER, 1.0 - best, (best < threshold) & (levels_db[:len(best)] >= other_level_db)))
    for label, score, active in rows:
        for first, last in _runs(active, round(gap_seconds / seconds_per_group), round(min_seconds / seconds_per_group)):
            end = last * seconds_per_group if duration is None else min(last * seconds_per_group, duration)
            found.append({"label": label, "confidence": round(float(np.mean(score[first:last])), 2),
                          "start": round(first * seconds_per_group, 2), "end": round(end, 2)})
    return sorted(found, key=lambda s: (-s["confidence"], s["start"]))


def _runs(active: np.ndarray, gap: int, shortest: int) -> list[tuple[int, int]]:
    """[first, last) of the runs of True, gaps of at most `gap` closed, runs shorter than `shortest` dropped."""
    runs: list[list[int]] = []
    for i in np.flatnonzero(active):
        if runs and i - runs[-1][1] <= gap:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    return [(a, b) for a, b in runs if b - a >= max(1, shortest)]


def describe(found: list[dict]) -> str:
    """One line for people: "dog bark 0:03–0:07 (0.92), siren 0:10–0:12 (0.81)"; "nothing known" if empty."""
    if not found:
        return "nothing known"
    return ", ".join(f"{s['label'].replace('_', ' ')} {_clock(s['start'])}–{_clock(s['end'])} ({s['confidence']:.2f})"
                     for s in found)


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}:{rest:02d}"
