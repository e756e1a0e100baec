"""Per-call adaptation: remove what belongs to the speaker and the line, keep what the caller feels.

Every scored window contributes its mean encoder state per layer (``[L+1, D]``) to running sums
of the call. The head sees each window's states minus an *offset*::

    call_mean = (prior_windows * global_mean + sum of the call's window means) / (prior_windows + n)
    offset    = global_mean + weights * (call_mean - global_mean)

``weights`` (one per layer and dimension, 0..1) say how much of a dimension's call mean is taken
away. 0 everywhere is plain global normalisation (``mode: none``); 1 everywhere subtracts the whole
call mean (``call_mean``: removes the voice and the line, and also an emotion the caller keeps for
the whole call); ``speaker_share`` sets each dimension's weight to the share of its variance that
lies *between speakers* rather than *between one speaker's emotions* (fitted on the training
corpora), so dimensions that carry the voice are adapted and dimensions that carry the emotion are
left alone. ``prior_windows`` shrinks the first windows of a call towards the global mean, so a
call's first second is not normalised by itself.

Training and the runtime share this code: :func:`causal_offsets` (batch, training and evaluation)
gives exactly the offsets :class:`CallAdaptation` (streaming, one per call) gives window by window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["ADAPTATION_MODES", "AdaptationSpec", "CallAdaptation", "causal_offsets"]

AdaptationMode = Literal["none", "call_mean", "speaker_share"]
ADAPTATION_MODES: tuple[str, ...] = ("none", "call_mean", "speaker_share")


@dataclass(frozen=True)
class AdaptationSpec:
    """What the head was trained with; stored in the model's sidecar (``adaptation``)."""

    mode: str
    prior_windows: float
    global_mean: np.ndarray  # [L+1, D]
    weights: np.ndarray  # [L+1, D] in 0..1

    def to_json(self) -> dict[str, Any]:
        # The arrays live in the head's .npz file; the sidecar only names the mode and the prior.
        return {"mode": self.mode, "prior_windows": self.prior_windows}

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.global_mean.shape[0]), int(self.global_mean.shape[1]))


class CallAdaptation:
    """The running statistics of one call. Not thread-safe: one per stream, fed in order."""

    def __init__(self, spec: AdaptationSpec) -> None:
        self.spec = spec
        self.reset()

    def reset(self) -> None:
        self._sum = np.zeros(self.spec.shape, dtype=np.float64)
        self._count = 0

    @property
    def windows(self) -> int:
        return self._count

    def update(self, window_mean: np.ndarray) -> np.ndarray:
        """Add one scored window's mean state ``[L+1, D]``; returns the offset for that window."""
        if window_mean.shape != self.spec.shape:
            raise ValueError(f"window statistics {window_mean.shape} do not match the model's {self.spec.shape}")
        self._sum += window_mean
        self._count += 1
        return self.offset()

    def offset(self) -> np.ndarray:
        spec = self.spec
        k = spec.prior_windows
        call_mean = (k * spec.global_mean + self._sum) / (k + self._count)
        return (spec.global_mean + spec.weights * (call_mean - spec.global_mean)).astype(np.float32)


def causal_offsets(spec: AdaptationSpec, window_means: np.ndarray) -> np.ndarray:
    """Offsets for a call's windows in order ``[N, L+1, D]``, each from the windows up to and incl. itself."""
    sums = np.cumsum(window_means.astype(np.float64), axis=0)
    counts = np.arange(1, window_means.shape[0] + 1, dtype=np.float64)[:, None, None]
    k = spec.prior_windows
    call_mean = (k * spec.global_mean[None] + sums) / (k + counts)
    return (spec.global_mean[None] + spec.weights[None] * (call_mean - spec.global_mean[None])).astype(np.float32)


def speaker_share_weights(
    window_means: np.ndarray, speakers: np.ndarray, labels: np.ndarray, floor: float = 0.0
) -> np.ndarray:
    """Per dimension: between-speaker variance / (between-speaker + within-speaker-between-emotion).

    ``window_means`` [N, L+1, D] of labelled windows. A speaker's mean is taken over their emotion
    means (each emotion counts once, whatever its number of windows), so a speaker with more angry
    clips does not look like an angrier voice.
    """
    speaker_means, emotion_dev = [], []
    for speaker in np.unique(speakers):
        mine = speakers == speaker
        per_emotion = [window_means[mine & (labels == c)].mean(axis=0) for c in np.unique(labels[mine])]
        if len(per_emotion) < 2:
            continue  # a one-emotion speaker cannot tell voice from emotion
        stacked = np.stack(per_emotion)
        centre = stacked.mean(axis=0)
        speaker_means.append(centre)
        emotion_dev.append(((stacked - centre) ** 2).mean(axis=0))
    if len(speaker_means) < 2:
        raise ValueError("speaker_share weights need at least two speakers with two or more emotions")
    between = np.var(np.stack(speaker_means), axis=0)
    within = np.mean(np.stack(emotion_dev), axis=0)
    share = between / np.maximum(between + within, 1e-12)
    return np.clip(share, floor, 1.0).astype(np.float32)
