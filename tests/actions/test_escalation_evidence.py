"""The actions apply the shared escalation rule with the operator's floor (accumulated evidence)."""

from __future__ import annotations

from actions.emotion import EmotionReading, escalation_due, negative_streak, read_escalation


def _reading(label: str, confidence: float, angry: float) -> EmotionReading:
    return EmotionReading(label=label, confidence=confidence, intensity="medium", probabilities={"angry": angry, label: confidence})


def test_one_weaker_turn_does_not_reset_the_run_when_the_operator_sets_a_floor() -> None:
    turns = [_reading("angry", 0.61, 0.61), _reading("neutral", 0.53, 0.47), _reading("angry", 0.63, 0.63)]
    evidence = read_escalation({"escalation": {"streak_turns": 3, "min_confidence": 0.5, "floor_confidence": 0.35}})
    strict = read_escalation({"escalation": {"streak_turns": 3, "min_confidence": 0.5, "floor_confidence": None}})
    assert escalation_due(turns, evidence) and negative_streak(turns, evidence) == 3
    assert not escalation_due(turns, strict) and negative_streak(turns, strict) == 1
