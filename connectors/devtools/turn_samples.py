"""Finished and unfinished turn samples cut from real recorded speech, by a fixed rule (no hand-picking).

Used by the end-of-turn benchmark (``benchmarks/bench_end_of_turn.py``) and its test: a clip's
speech span runs from the first to the last 20-ms frame within 35 dB of its loudest frame; the
**finished** sample ends with that span, the **unfinished** one at the span's lowest-energy frame
(energy smoothed over 60 ms) between 35% and 65% of it (mid-utterance, at a word boundary or a stop).
"""

from __future__ import annotations

import numpy as np

from emotion_runtime.audio import energy_db

__all__ = ["speech_cuts"]


def speech_cuts(audio: np.ndarray, sample_rate: int) -> tuple[int, int]:
    """(end of speech, mid-utterance low-energy cut) of a clip, in samples."""
    frame = sample_rate // 50
    n = audio.shape[0] // frame
    db = energy_db(np.asarray(audio[: n * frame], dtype=np.float32).reshape(n, frame))
    voiced = np.flatnonzero(db >= db.max() - 35.0)
    first, last = int(voiced[0]), int(voiced[-1])
    smooth = np.convolve(db, np.ones(3) / 3, mode="same")
    lo, hi = first + int(0.35 * (last - first)), first + int(0.65 * (last - first))
    cut = lo + int(np.argmin(smooth[lo : hi + 1]))
    return (last + 1) * frame, (cut + 1) * frame
