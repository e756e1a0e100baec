"""The pure metadata / tone / escalation helpers in actions/emotion.py."""

from __future__ import annotations

import math

import pytest
from tracker_fixtures import emotion_metadata

from actions.emotion import (
    EmotionMetadataError,
    EmotionReading,
    EscalationRule,
    default_tone,
    history_entries,
    intensity_for,
    is_negative,
    negative_streak,
    read_emotion,
    read_escalation,
    read_tone,
    user_turns_since_reset,
)


def reading(label: str, confidence: float = 0.9) -> EmotionReading:
    return EmotionReading(label=label, confidence=confidence, intensity=intensity_for(confidence))


def test_read_emotion_full_event() -> None:
    metadata = {
        "emotion": {
            "label": "Angry",
            "probabilities": {"angry": 0.8, "neutral": 0.2},
            "arousal": 0.9,
            "valence": -0.6,
            "confidence": 0.8,
            "intensity": "high",
            "start_s": 1.0,
            "end_s": 3.0,
        }
    }
    got = read_emotion(metadata)
    assert got == EmotionReading("angry", 0.8, "high", 0.9, -0.6, {"angry": 0.8, "neutral": 0.2})


def test_read_emotion_derives_confidence_and_intensity() -> None:
    got = read_emotion({"emotion": {"label": "sad", "probabilities": {"sad": 0.5, "neutral": 0.5}}})
    assert got is not None
    assert (got.confidence, got.intensity) == (0.5, "medium")


@pytest.mark.parametrize("metadata", [None, {}, {"emotion": None}, {"tone": "calm"}])
def test_read_emotion_absent_is_none(metadata: dict | None) -> None:
    assert read_emotion(metadata) is None


@pytest.mark.parametrize(
    ("emotion", "message"),
    [
        ("angry", "metadata.emotion must be an object"),
        ({"confidence": 0.9}, "label must be a non-empty string"),
        ({"label": "  ", "confidence": 0.9}, "label must be a non-empty string"),
        ({"label": "angry", "confidence": 1.5}, "confidence must be in [0.0, 1.0]"),
        ({"label": "angry", "confidence": math.nan}, "confidence must be a finite number"),
        ({"label": "angry", "confidence": True}, "confidence must be a finite number"),
        ({"label": "angry", "confidence": "high"}, "confidence must be a finite number"),
        ({"label": "angry"}, "needs a confidence"),
        ({"label": "angry", "confidence": 0.9, "intensity": "extreme"}, "intensity must be one of"),
        ({"label": "angry", "confidence": 0.9, "arousal": 2}, "arousal must be in [0.0, 1.0]"),
        ({"label": "angry", "confidence": 0.9, "valence": -3}, "valence must be in [-1.0, 1.0]"),
        ({"label": "angry", "confidence": 0.9, "probabilities": [0.9]}, "probabilities must be an object"),
    ],
)
def test_read_emotion_rejects_malformed(emotion: object, message: str) -> None:
    with pytest.raises(EmotionMetadataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_emotion({"emotion": emotion})


def test_read_escalation_defaults_and_values() -> None:
    assert read_escalation(None) == EscalationRule()
    rule = read_escalation(emotion_metadata(streak_turns=2, negative_emotions=["Angry", "sad"]))
    assert rule == EscalationRule(negative_emotions=("angry", "sad"), streak_turns=2, min_confidence=0.5)


@pytest.mark.parametrize(
    ("escalation", "message"),
    [
        ([], "metadata.escalation must be an object"),
        ({"streak_turns": 0}, "streak_turns must be an integer >= 1"),
        ({"streak_turns": 2.5}, "streak_turns must be an integer >= 1"),
        ({"streak_turns": True}, "streak_turns must be an integer >= 1"),
        ({"negative_emotions": "angry"}, "negative_emotions must be a list"),
        ({"min_confidence": 3}, "min_confidence must be in"),
        ({"on_request": "yes"}, "on_request must be true/false"),
    ],
)
def test_read_escalation_rejects_malformed(escalation: object, message: str) -> None:
    with pytest.raises(EmotionMetadataError, match=message):
        read_escalation({"escalation": escalation})


def test_read_tone() -> None:
    assert read_tone({"tone": " Calm "}) == "calm"
    assert read_tone({}) is None
    with pytest.raises(EmotionMetadataError, match="'formal' has no response variations"):
        read_tone({"tone": "formal"})
    with pytest.raises(EmotionMetadataError, match="must be a string"):
        read_tone({"tone": 3})
    # The domain decides which tones exist.
    assert read_tone({"tone": "formal"}, known_tones=("standard", "formal")) == "formal"


@pytest.mark.parametrize(
    ("label", "confidence", "tone"),
    [
        ("angry", 0.3, "calm"),
        ("sad", 0.9, "warm"),
        ("happy", 0.3, "standard"),  # mild happiness keeps the standard tone
        ("happy", 0.6, "upbeat"),
        ("neutral", 0.99, "standard"),
        ("surprised", 0.9, "standard"),
    ],
)
def test_default_tone(label: str, confidence: float, tone: str) -> None:
    assert default_tone(reading(label, confidence)) == tone


def test_default_tone_without_emotion() -> None:
    assert default_tone(None) == "standard"


def test_negative_streak_counts_consecutive_confident_negative_turns() -> None:
    rule = EscalationRule(negative_emotions=("angry",), streak_turns=3, min_confidence=0.5)
    angry, weak_angry, calm = reading("angry", 0.9), reading("angry", 0.4), reading("neutral")
    assert negative_streak([], rule) == 0
    assert negative_streak([angry, angry], rule) == 2
    assert negative_streak([angry, calm, angry], rule) == 1
    assert negative_streak([angry, angry, weak_angry], rule) == 0
    assert negative_streak([angry, None, angry], rule) == 1
    assert not is_negative(reading("sad"), rule)
    assert is_negative(reading("sad"), EscalationRule(negative_emotions=("sad",)))


def _user(metadata: dict | None) -> dict:
    return {"event": "user", "text": "x", "metadata": metadata or {}}


def test_turns_since_reset_restart_after_handoff() -> None:
    angry = emotion_metadata("angry")
    events = [_user(angry), _user(angry), {"event": "action", "name": "action_handoff"}, _user(angry)]
    turns = user_turns_since_reset(events)
    assert [t.label if t else None for t in turns] == ["angry"]
    # Malformed earlier metadata does not count but does not break the streak computation either.
    events = [_user({"emotion": {"label": "angry", "confidence": 7}}), _user(angry)]
    assert [t.label if t else None for t in user_turns_since_reset(events)] == [None, "angry"]


def test_new_session_starts_afresh() -> None:
    angry = emotion_metadata("angry")
    events = [_user(angry), _user(angry), {"event": "session_started"}, _user(angry)]
    assert len(user_turns_since_reset(events)) == 1
    assert [h["turn"] for h in history_entries(events)] == [1]


def test_history_entries_keep_the_latest_and_number_turns() -> None:
    events = [_user(emotion_metadata("sad", 0.8)), _user(None)] + [_user(emotion_metadata("angry"))] * 12
    history = history_entries(events, limit=10)
    assert len(history) == 10
    assert history[-1] == {
        "turn": 14,
        "label": "angry",
        "confidence": 0.9,
        "intensity": "high",
        "arousal": 0.5,
        "valence": 0.0,
    }
    assert all(entry["label"] == "angry" for entry in history)
    assert history_entries(events[:2]) == [
        {"turn": 1, "label": "sad", "confidence": 0.8, "intensity": "high", "arousal": 0.5, "valence": 0.0}
    ]


def test_the_streak_rule_is_shared_not_copied() -> None:
    """actions/ imports only emotune.escalation from the toolkit, and that module is stdlib only."""
    import ast
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    ours = {"emotune", "emotion_runtime", "connectors", "emotion_models", "export_onnx"}
    seen = set()
    for path in sorted((root / "actions").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ours:
                seen.add(node.module)
            if isinstance(node, ast.Import):
                assert not {a.name.split(".")[0] for a in node.names} & ours, path
    assert seen == {"emotune.escalation"}
    shared = ast.parse((root / "emotune" / "escalation.py").read_text())
    for node in ast.walk(shared):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        for name in names:
            assert name == "__future__" or name.split(".")[0] in sys.stdlib_module_names, name
