"""In-car actions: mood music, navigation, calls, climate, de-escalation."""

from __future__ import annotations

import pytest
from tracker_fixtures import build_tracker, emotion_metadata, run, slot_values

from actions.deescalate import ActionDeescalate
from actions.in_car import (
    ActionCallContact,
    ActionNavigate,
    ActionPlayMusic,
    ActionSetClimate,
    parse_temperature,
)


@pytest.mark.parametrize(
    ("emotion", "playlist"),
    [("angry", "calm"), ("sad", "comfort"), ("happy", "upbeat"), ("neutral", "focus"), (None, "focus")],
)
def test_music_suits_the_mood(car_domain: dict, emotion: str | None, playlist: str) -> None:
    tracker = build_tracker(
        [("play some music", "play_music", None)], slots={"emotion": emotion, "tone": "calm"}
    )
    messages, _ = run(ActionPlayMusic(), tracker, car_domain)
    assert messages[0]["response"] == "utter_play_music"
    assert messages[0]["playlist"] == playlist
    assert messages[0]["custom"] == {
        "tone": "calm",
        "media": {"action": "play", "playlist": playlist, "chosen_for_mood": True},
    }


def test_requested_genre_wins_over_mood(car_domain: dict) -> None:
    tracker = build_tracker(
        [("play jazz", "play_music", None)],
        slots={"emotion": "angry"},
        entities=[{"entity": "genre", "value": "Jazz"}],
    )
    messages, _ = run(ActionPlayMusic(), tracker, car_domain)
    assert messages[0]["custom"]["media"] == {"action": "play", "playlist": "jazz", "chosen_for_mood": False}


def test_navigation_with_and_without_destination(car_domain: dict) -> None:
    with_destination = build_tracker(
        [("take me to the airport", "navigate", None)],
        entities=[{"entity": "destination", "value": "the airport"}],
    )
    messages, events = run(ActionNavigate(), with_destination, car_domain)
    assert messages[0]["response"] == "utter_navigation_started"
    assert messages[0]["custom"]["navigation"] == {"action": "route", "destination": "the airport"}
    assert slot_values(events) == {"destination": "the airport"}
    messages, events = run(ActionNavigate(), build_tracker([("navigate", "navigate", None)]), car_domain)
    assert messages[0]["response"] == "utter_ask_destination"
    assert events == []


def test_call_with_and_without_contact(car_domain: dict) -> None:
    tracker = build_tracker(
        [("call mum", "call_contact", None)], entities=[{"entity": "contact", "value": "mum"}]
    )
    messages, _ = run(ActionCallContact(), tracker, car_domain)
    assert messages[0]["custom"]["call"] == {"action": "dial", "contact": "mum"}
    messages, _ = run(ActionCallContact(), build_tracker([("make a call", "call_contact", None)]), car_domain)
    assert messages[0]["response"] == "utter_ask_contact"


@pytest.mark.parametrize(
    ("text", "entity", "climate"),
    [
        ("set it to 21 degrees", "21", {"action": "set", "celsius": 21.0}),
        ("make it 35", "35", {"action": "set", "celsius": 28.0}),  # clamped to the unit's range
        ("make it 10", "10", {"action": "set", "celsius": 16.0}),
        ("i'm freezing", None, {"action": "adjust", "delta_celsius": 2.0}),
        ("it's too hot", None, {"action": "adjust", "delta_celsius": -2.0}),
    ],
)
def test_climate(car_domain: dict, text: str, entity: str | None, climate: dict) -> None:
    entities = [{"entity": "temperature", "value": entity}] if entity else []
    tracker = build_tracker([(text, "set_climate", None)], entities=entities)
    messages, _ = run(ActionSetClimate(), tracker, car_domain)
    assert messages[0]["custom"]["climate"] == climate


def test_parse_temperature() -> None:
    assert parse_temperature("21,5 degrees") == 21.5
    assert parse_temperature("twenty") is None
    assert parse_temperature(None) is None


def test_deescalate_plays_calm_music_and_resets(car_domain: dict) -> None:
    angry = emotion_metadata("angry", streak_turns=2)
    tracker = build_tracker(
        [("call john", "call_contact", angry)] * 2, slots={"tone": "calm", "negative_streak": 2.0}
    )
    messages, events = run(ActionDeescalate(), tracker, car_domain)
    assert messages[0]["response"] == "utter_deescalate"
    custom = messages[0]["custom"]
    assert custom["tone"] == "calm"
    assert custom["media"] == {"action": "play", "playlist": "calm"}
    assert custom["suggest_break"] is True
    assert slot_values(events) == {"negative_streak": 0.0}
