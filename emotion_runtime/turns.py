"""A turn's emotion from every window inside it, not from the last smoothed label.

The smoothed label of the turn's last window carries the previous turns (EMA) and one weak window
decides it. A turn's reading is instead the mean of the *window* probabilities (each already
calibrated by the model's temperature) of every window centred inside the turn; its label is the
top class of that mean and its confidence that class's mean probability. A turn too short for a
window has no reading of its own (``None``): the caller falls back to the latest event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["turn_reading"]


def turn_reading(events: Sequence[Mapping[str, Any]], start_s: float, end_s: float) -> dict[str, Any] | None:
    """Aggregate the emotion events (``EmotionEvent.to_dict()``) whose window centre lies in the turn."""
    inside = [
        e for e in events
        if e.get("window_probabilities") and start_s <= (float(e["start_s"]) + float(e["end_s"])) / 2 <= end_s
    ]  # fmt: skip
    if not inside:
        return None
    labels = list(inside[0]["window_probabilities"])
    mean = {label: sum(float(e["window_probabilities"].get(label, 0.0)) for e in inside) / len(inside) for label in labels}
    label = max(mean, key=lambda name: mean[name])
    reading: dict[str, Any] = {
        "label": label,
        "confidence": round(mean[label], 4),
        "probabilities": {name: round(p, 4) for name, p in mean.items()},
        "windows": len(inside),
        "start_s": round(float(inside[0]["start_s"]), 3),
        "end_s": round(float(inside[-1]["end_s"]), 3),
        "aggregate": "mean of the turn's window probabilities",
    }
    for key in ("arousal", "valence"):
        values = [float(e[key]) for e in inside if key in e]
        if values:
            reading[key] = round(sum(values) / len(values), 4)
    return reading
