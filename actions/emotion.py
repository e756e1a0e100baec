"""Pure helpers: read the gateway's emotion metadata and apply the tone and escalation rules.

The gateway sends, with every user message (docs/CONTRACTS.md)::

    "metadata": {"emotion": {"label", "probabilities", "arousal", "valence", "confidence",
                             "intensity", ...},
                 "tone": "calm",
                 "escalation": {"negative_emotions": ["angry"], "streak_turns": 3,
                                "min_confidence": 0.5, "on_request": true}}

Everything here is a pure function of that metadata (and of earlier turns' metadata), so slot
values can be recomputed from the tracker at any time: Rasa may run slot extraction more than
once per turn, and a running counter kept in a slot would then double-count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The streak rule itself lives in emotune/escalation.py (stdlib only, shared with the toolkit).
from emotune.escalation import StreakRule

__all__ = [
    "EmotionMetadataError",
    "EmotionReading",
    "EscalationRule",
    "KNOWN_TONES",
    "DEFAULT_TONE",
    "RESET_ACTIONS",
    "HISTORY_LENGTH",
    "HIGH_AROUSAL",
    "read_emotion",
    "read_escalation",
    "read_tone",
    "default_tone",
    "intensity_for",
    "is_negative",
    "negative_streak",
    "escalation_due",
    "user_turns_since_reset",
    "history_entries",
]

# Tones every bot has response variations for; the gateway's tone policy picks among these.
KNOWN_TONES = ("standard", "calm", "warm", "upbeat")
DEFAULT_TONE = "standard"
# Mirrors the toolkit's default TonePolicy, used only when the gateway sent no tone
# (e.g. a text-only client talking to Rasa directly).
_DEFAULT_TONE_RULES: tuple[tuple[str, str, str], ...] = (
    ("angry", "low", "calm"),
    ("sad", "low", "warm"),
    ("happy", "medium", "upbeat"),
)
_INTENSITY_ORDER = ("low", "medium", "high")
_INTENSITY_BANDS = (0.45, 0.7)
# Arousal (0..1) from which the in-car bot stops asking questions.
HIGH_AROUSAL = 0.7
# Actions after which the negative streak starts again from zero (a human took over / we de-escalated).
RESET_ACTIONS = frozenset({"action_handoff", "action_deescalate"})
# Events after which a conversation starts afresh (new session, /restart): nothing before them counts.
_FRESH_START_EVENTS = frozenset({"session_started", "restart"})
# How many past turns the emotion_history slot (and the hand-off summary) keep.
HISTORY_LENGTH = 10


class EmotionMetadataError(ValueError):
    """The message metadata does not follow the gateway contract."""


@dataclass(frozen=True)
class EmotionReading:
    """The caller's emotion for one user turn."""

    label: str
    confidence: float
    intensity: str
    arousal: float | None = None
    valence: float | None = None
    probabilities: dict[str, float] = field(default_factory=dict)

    def as_history_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "label": self.label,
            "confidence": round(self.confidence, 3),
            "intensity": self.intensity,
        }
        if self.arousal is not None:
            entry["arousal"] = round(self.arousal, 3)
        if self.valence is not None:
            entry["valence"] = round(self.valence, 3)
        return entry


@dataclass(frozen=True)
class EscalationRule(StreakRule):
    """When consecutive negative turns trigger a hand-off (or de-escalation in the car); also
    whether asking for a human is enough (``on_request``)."""

    on_request: bool = True


def _number(value: Any, name: str, low: float, high: float) -> float:
    # bool is an int subclass; True as a confidence is a contract violation, not 1.0.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise EmotionMetadataError(f"{name} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise EmotionMetadataError(f"{name} must be in [{low}, {high}], got {value!r}")
    return float(value)


def intensity_for(confidence: float) -> str:
    """low / medium / high, with the toolkit's default intensity bands."""
    low, high = _INTENSITY_BANDS
    if confidence >= high:
        return "high"
    if confidence >= low:
        return "medium"
    return "low"


def read_emotion(metadata: Mapping[str, Any] | None) -> EmotionReading | None:
    """The emotion of a message, ``None`` if the gateway sent none.

    Raises :class:`EmotionMetadataError` when an ``emotion`` entry is present but malformed.
    """
    if not metadata or metadata.get("emotion") is None:
        return None
    raw = metadata["emotion"]
    if not isinstance(raw, Mapping):
        raise EmotionMetadataError(f"metadata.emotion must be an object, got {type(raw).__name__}")
    label = raw.get("label")
    if not isinstance(label, str) or not label.strip():
        raise EmotionMetadataError(f"metadata.emotion.label must be a non-empty string, got {label!r}")
    probabilities_raw = raw.get("probabilities") or {}
    if not isinstance(probabilities_raw, Mapping):
        raise EmotionMetadataError("metadata.emotion.probabilities must be an object of label -> p")
    probabilities = {
        str(k): _number(v, f"metadata.emotion.probabilities.{k}", 0.0, 1.0)
        for k, v in probabilities_raw.items()
    }
    label = label.strip().lower()
    if "confidence" in raw:
        confidence = _number(raw["confidence"], "metadata.emotion.confidence", 0.0, 1.0)
    elif label in probabilities:
        confidence = probabilities[label]
    else:
        raise EmotionMetadataError("metadata.emotion needs a confidence (or a probability for its label)")
    intensity = raw.get("intensity")
    if intensity is None:
        intensity = intensity_for(confidence)
    elif intensity not in _INTENSITY_ORDER:
        raise EmotionMetadataError(
            f"metadata.emotion.intensity must be one of {', '.join(_INTENSITY_ORDER)}, got {intensity!r}"
        )
    arousal = raw.get("arousal")
    valence = raw.get("valence")
    return EmotionReading(
        label=label,
        confidence=confidence,
        intensity=intensity,
        arousal=None if arousal is None else _number(arousal, "metadata.emotion.arousal", 0.0, 1.0),
        valence=None if valence is None else _number(valence, "metadata.emotion.valence", -1.0, 1.0),
        probabilities=probabilities,
    )


def read_escalation(metadata: Mapping[str, Any] | None) -> EscalationRule:
    """The operator's escalation rule sent with the message; defaults for missing fields."""
    default = EscalationRule()
    raw = (metadata or {}).get("escalation")
    if raw is None:
        return default
    if not isinstance(raw, Mapping):
        raise EmotionMetadataError(f"metadata.escalation must be an object, got {type(raw).__name__}")
    negatives = raw.get("negative_emotions", list(default.negative_emotions))
    if not isinstance(negatives, list | tuple) or not all(isinstance(n, str) for n in negatives):
        raise EmotionMetadataError("metadata.escalation.negative_emotions must be a list of labels")
    streak = raw.get("streak_turns", default.streak_turns)
    if isinstance(streak, bool) or not isinstance(streak, int) or streak < 1:
        raise EmotionMetadataError(
            f"metadata.escalation.streak_turns must be an integer >= 1, got {streak!r}"
        )
    min_confidence = _number(
        raw.get("min_confidence", default.min_confidence), "metadata.escalation.min_confidence", 0.0, 1.0
    )
    floor = raw.get("floor_confidence", default.floor_confidence)
    floor_confidence = None if floor is None else _number(floor, "metadata.escalation.floor_confidence", 0.0, min_confidence)
    on_request = raw.get("on_request", default.on_request)
    if not isinstance(on_request, bool):
        raise EmotionMetadataError(f"metadata.escalation.on_request must be true/false, got {on_request!r}")
    return EscalationRule(
        negative_emotions=tuple(n.lower() for n in negatives),
        streak_turns=streak,
        min_confidence=min_confidence,
        floor_confidence=floor_confidence,
        on_request=on_request,
    )


def default_tone(reading: EmotionReading | None) -> str:
    """The built-in emotion -> tone mapping (first matching rule wins)."""
    if reading is None:
        return DEFAULT_TONE
    level = _INTENSITY_ORDER.index(reading.intensity)
    for emotion, min_intensity, tone in _DEFAULT_TONE_RULES:
        if reading.label == emotion and level >= _INTENSITY_ORDER.index(min_intensity):
            return tone
    return DEFAULT_TONE


def read_tone(metadata: Mapping[str, Any] | None, known_tones: Sequence[str] = KNOWN_TONES) -> str | None:
    """The gateway's tone if it sent one the bot has variations for, else ``None``."""
    tone = (metadata or {}).get("tone")
    if tone is None:
        return None
    if not isinstance(tone, str):
        raise EmotionMetadataError(f"metadata.tone must be a string, got {tone!r}")
    tone = tone.strip().lower()
    if tone not in known_tones:
        raise EmotionMetadataError(
            f"metadata.tone {tone!r} has no response variations; known tones: {', '.join(known_tones)}"
        )
    return tone


def is_negative(reading: EmotionReading | None, rule: EscalationRule) -> bool:
    """Whether a turn keeps the escalation run going."""
    return reading is not None and rule.is_negative(reading.label, reading.confidence, reading.probabilities)


def _readings(readings: Iterable[EmotionReading | None]) -> list[tuple[str, float, dict[str, float]] | None]:
    return [None if r is None else (r.label, r.confidence, r.probabilities) for r in readings]


def negative_streak(readings: Iterable[EmotionReading | None], rule: EscalationRule) -> int:
    """Turns in the negative run at the end of ``readings`` (oldest first)."""
    return rule.streak(_readings(readings))


def escalation_due(readings: Iterable[EmotionReading | None], rule: EscalationRule) -> bool:
    """Whether the run at the end of ``readings`` calls for a human (emotune.escalation)."""
    return rule.due(_readings(readings))


def _safe_reading(metadata: Mapping[str, Any] | None) -> EmotionReading | None:
    # A malformed earlier turn was already reported when it arrived; here it just does not count.
    try:
        return read_emotion(metadata)
    except EmotionMetadataError:
        return None


def user_turns_since_reset(events: Sequence[Mapping[str, Any]]) -> list[EmotionReading | None]:
    """The emotion of every user turn after the last hand-off / de-escalation, oldest first."""
    readings: list[EmotionReading | None] = []
    for event in events:
        kind = event.get("event")
        if kind in _FRESH_START_EVENTS or (kind == "action" and event.get("name") in RESET_ACTIONS):
            readings = []
        elif kind == "user":
            readings.append(_safe_reading(event.get("metadata")))
    return readings


def history_entries(events: Sequence[Mapping[str, Any]], limit: int = HISTORY_LENGTH) -> list[dict[str, Any]]:
    """The last ``limit`` labelled user turns of the current session, oldest first."""
    entries: list[dict[str, Any]] = []
    turn = 0
    for event in events:
        if event.get("event") in _FRESH_START_EVENTS:
            entries, turn = [], 0
        if event.get("event") != "user":
            continue
        turn += 1
        reading = _safe_reading(event.get("metadata"))
        if reading is not None:
            entries.append({"turn": turn, **reading.as_history_entry()})
    return entries[-limit:]
