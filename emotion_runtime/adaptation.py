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

``neutral_baseline`` takes its statistics only from the caller's *neutral* speech: a window joins
them once the model has scored it and found it neutral (probability >= ``gate``), and the offset
moves the caller's neutral voice onto the training corpora's neutral voice::

    neutral_call = (prior_windows * neutral_mean + sum of the call's neutral windows) / (prior_windows + n)
    offset       = global_mean + weights * (neutral_call - neutral_mean)

So a caller who is angry from the first second contributes nothing and is judged as with ``none``,
while a caller who also speaks calmly is judged against their own calm voice. A window's offset
comes from the windows scored before it (it cannot gate itself). Training gates by the labels
(:func:`gated_offsets` with ``label == neutral``); evaluation and the runtime by the model's own
scores, window by window (:meth:`CallAdaptation.heard`).

Training and the runtime share this code: :func:`causal_offsets` / :func:`gated_offsets` (batch,
training and evaluation) give exactly the offsets :class:`CallAdaptation` (streaming, one per call)
gives window by window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["ADAPTATION_MODES", "NEUTRAL_GATE", "AdaptationSpec", "CallAdaptation", "causal_offsets", "gated_offsets"]

AdaptationMode = Literal["none", "call_mean", "speaker_share", "neutral_baseline"]
ADAPTATION_MODES: tuple[str, ...] = ("none", "call_mean", "speaker_share", "neutral_baseline")
NEUTRAL_GATE = 0.5  # p(neutral) from which a scored window counts as the caller's neutral voice


@dataclass(frozen=True)
class AdaptationSpec:
    """What the head was trained with; stored in the model's sidecar (``adaptation``)."""

    mode: str
    prior_windows: float
    global_mean: np.ndarray  # [L+1, D]
    weights: np.ndarray  # [L+1, D] in 0..1
    neutral_mean: np.ndarray | None = None  # [L+1, D], neutral_baseline only: the corpora's neutral voice
    gate: float = NEUTRAL_GATE
    neutral_index: int = 0  # the neutral class among the model's labels

    def __post_init__(self) -> None:
        if self.mode not in ADAPTATION_MODES:
            raise ValueError(f"adaptation mode {self.mode!r} is not one of {', '.join(ADAPTATION_MODES)}")
        if self.gated and (self.neutral_mean is None or self.neutral_mean.shape != self.global_mean.shape):
            raise ValueError("neutral_baseline adaptation needs neutral_mean statistics of the encoder's shape")

    @property
    def gated(self) -> bool:
        """Statistics only from windows the model found neutral (``neutral_baseline``)."""
        return self.mode == "neutral_baseline"

    def to_json(self) -> dict[str, Any]:
        # The arrays live in the head's .npz file; the sidecar names the mode, the prior and the gate.
        out: dict[str, Any] = {"mode": self.mode, "prior_windows": self.prior_windows}
        if self.gated:
            out.update(gate=self.gate, neutral_index=self.neutral_index)
        return out

    def offset_from_sums(self, sums: np.ndarray, counts: np.ndarray | float) -> np.ndarray:
        """Offsets from running sums over ``counts`` windows (broadcasting over leading axes)."""
        k = self.prior_windows
        centre = self.neutral_mean if self.gated else self.global_mean
        assert centre is not None  # checked in __post_init__
        call_mean = (k * centre + sums) / (k + counts)
        return (self.global_mean + self.weights * (call_mean - centre)).astype(np.float32)

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
        self._pending: np.ndarray | None = None

    @property
    def windows(self) -> int:
        return self._count

    def update(self, window_mean: np.ndarray) -> np.ndarray:
        """Add one window's mean state ``[L+1, D]``; returns the offset to score that window with.

        A gated spec keeps the window aside until :meth:`heard` says how the model scored it."""
        if window_mean.shape != self.spec.shape:
            raise ValueError(f"window statistics {window_mean.shape} do not match the model's {self.spec.shape}")
        if self.spec.gated:
            self._pending = window_mean
        else:
            self._sum += window_mean
            self._count += 1
        return self.offset()

    def heard(self, probabilities: np.ndarray) -> None:
        """The model's class probabilities for the window last given to :meth:`update`."""
        if self._pending is not None and float(probabilities[self.spec.neutral_index]) >= self.spec.gate:
            self._sum += self._pending
            self._count += 1
        self._pending = None

    def offset(self) -> np.ndarray:
        return self.spec.offset_from_sums(self._sum, self._count)


def causal_offsets(spec: AdaptationSpec, window_means: np.ndarray) -> np.ndarray:
    """Offsets for a call's windows in order ``[N, L+1, D]``, each from the windows up to and incl. itself."""
    if spec.gated:
        raise ValueError("neutral_baseline offsets depend on the gate: use gated_offsets")
    sums = np.cumsum(window_means.astype(np.float64), axis=0)
    counts = np.arange(1, window_means.shape[0] + 1, dtype=np.float64)[:, None, None]
    return spec.offset_from_sums(sums, counts)


def gated_offsets(spec: AdaptationSpec, window_means: np.ndarray, gates: np.ndarray) -> np.ndarray:
    """``neutral_baseline`` offsets for a call's windows in order, each from the *earlier* windows
    whose gate is set (``gates`` [N] bool: the label in training, the model's score at run time)."""
    if not spec.gated:
        raise ValueError(f"gated_offsets is for neutral_baseline, not {spec.mode!r}")
    kept = window_means.astype(np.float64) * gates.astype(np.float64)[:, None, None]
    sums = np.cumsum(kept, axis=0) - kept
    counts = (np.cumsum(gates.astype(np.float64)) - gates.astype(np.float64))[:, None, None]
    return spec.offset_from_sums(sums, counts)


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
