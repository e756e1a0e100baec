"""action_validate_slot_mappings against the real domains: metadata in, slots out."""

from __future__ import annotations

from typing import Any

import pytest
from tracker_fixtures import build_tracker, emotion_metadata, run, slot_values

from actions.validate_slot_mappings import ValidateSlotMappings


def extract(domain: dict[str, Any], turns: list, **kwargs: Any) -> dict[str, Any]:
    _, events = run(ValidateSlotMappings(), build_tracker(turns, **kwargs), domain)
    return slot_values(events)


@pytest.mark.parametrize(
    ("label", "tone"), [("neutral", "standard"), ("angry", "calm"), ("sad", "warm"), ("happy", "upbeat")]
)
def test_gateway_tone_fills_tone_slot(any_domain: dict, label: str, tone: str) -> None:
    slots = extract(
        any_domain, [("where is my parcel", "check_delivery", emotion_metadata(label, tone=tone))]
    )
    assert slots["tone"] == tone
    assert slots["emotion"] == label
    assert slots["emotion_intensity"] == "high"


def test_gateway_tone_beats_builtin_mapping(cc_domain: dict) -> None:
    # The operator's policy may answer anger warmly: no retraining, the gateway just sends "warm".
    slots = extract(cc_domain, [("hi", "greet", emotion_metadata("angry", tone="warm"))])
    assert slots["tone"] == "warm"


@pytest.mark.parametrize(("label", "tone"), [("angry", "calm"), ("sad", "warm"), ("neutral", "standard")])
def test_builtin_mapping_without_gateway_tone(cc_domain: dict, label: str, tone: str) -> None:
    assert extract(cc_domain, [("hi", "greet", emotion_metadata(label))])["tone"] == tone


def test_unknown_tone_falls_back_to_builtin_mapping(cc_domain: dict) -> None:
    slots = extract(cc_domain, [("hi", "greet", emotion_metadata("sad", tone="sarcastic"))])
    assert slots["tone"] == "warm"


def test_no_metadata_gives_standard_tone_and_no_emotion(any_domain: dict) -> None:
    slots = extract(any_domain, [("hi", "greet", None)])
    assert slots["tone"] == "standard"
    assert slots["emotion"] is None
    assert slots["negative_streak"] == 0.0
    assert slots["escalation_due"] is False
    assert slots["emotion_history"] == []


def test_malformed_emotion_does_not_break_the_turn(cc_domain: dict) -> None:
    metadata = {"emotion": {"label": "angry", "confidence": 42}, "tone": "calm"}
    slots = extract(cc_domain, [("hi", "greet", metadata)])
    assert slots["emotion"] is None
    assert slots["tone"] == "calm"  # the tone itself was valid
    assert slots["escalation_due"] is False


@pytest.mark.parametrize("streak_turns", [1, 2, 3, 4])
def test_escalation_due_exactly_at_configured_streak(any_domain: dict, streak_turns: int) -> None:
    angry = emotion_metadata("angry", streak_turns=streak_turns)
    for turn in range(1, streak_turns + 2):
        slots = extract(any_domain, [("my bill is wrong", "ask_billing", angry)] * turn)
        assert slots["negative_streak"] == float(turn)
        assert slots["escalation_due"] is (turn >= streak_turns), f"turn {turn}"


def test_streak_broken_by_calm_or_unconfident_turn(cc_domain: dict) -> None:
    angry = emotion_metadata("angry", streak_turns=2)
    calm = emotion_metadata("neutral", streak_turns=2)
    unsure = emotion_metadata("angry", confidence=0.3, streak_turns=2)
    assert (
        extract(cc_domain, [("a", "complain", angry), ("b", "complain", calm), ("c", "complain", angry)])[
            "escalation_due"
        ]
        is False
    )
    assert extract(cc_domain, [("a", "complain", angry), ("b", "complain", unsure)])["negative_streak"] == 0.0


def test_configured_negative_emotions(cc_domain: dict) -> None:
    sad = emotion_metadata("sad", streak_turns=2, negative_emotions=["angry", "sad"])
    assert extract(cc_domain, [("a", "complain", sad), ("b", "complain", sad)])["escalation_due"] is True


def test_streak_restarts_after_handoff(cc_domain: dict) -> None:
    angry = emotion_metadata("angry", streak_turns=2)
    slots = extract(
        cc_domain,
        [("a", "complain", angry), ("b", "complain", angry), ("c", "complain", angry)],
        extra_events_before_last=[{"event": "action", "name": "action_handoff"}],
    )
    assert slots["negative_streak"] == 1.0
    assert slots["escalation_due"] is False
    assert len(slots["emotion_history"]) == 3  # the history (for the agent) is not reset


def test_brief_mode_only_in_car(car_domain: dict, cc_domain: dict) -> None:
    excited = emotion_metadata("happy", arousal=0.85)
    relaxed = emotion_metadata("happy", arousal=0.3)
    assert extract(car_domain, [("play music", "play_music", excited)])["brief_mode"] is True
    assert extract(car_domain, [("play music", "play_music", relaxed)])["brief_mode"] is False
    # Without arousal, very confident anger counts as high arousal.
    no_arousal = emotion_metadata("angry", confidence=0.9, arousal=None)
    assert extract(car_domain, [("navigate", "navigate", no_arousal)])["brief_mode"] is True
    assert "brief_mode" not in extract(cc_domain, [("hi", "greet", excited)])
