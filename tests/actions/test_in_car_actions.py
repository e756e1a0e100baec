"""In-car actions: mood music, navigation, calls, climate, de-escalation."""

from __future__ import annotations

import pytest
from rasa_sdk.executor import CollectingDispatcher
from tracker_fixtures import build_tracker, emotion_metadata, run, slot_values

from actions.deescalate import ActionDeescalate
from actions.in_car import (
    ActionCallContact,
    ActionNavigate,
    ActionPlayMusic,
    ActionSetClimate,
    ValidateDestinationForm,
    parse_temperature,
)
from actions.music import PLAYLIST_SIZE, DriveContext, catalogue, mood_target, pick_tracks


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
    media = messages[0]["custom"]["media"]
    assert messages[0]["custom"]["tone"] == "calm"
    assert (media["action"], media["playlist"], media["chosen_for_mood"]) == ("play", playlist, True)
    assert len(media["tracks"]) == PLAYLIST_SIZE
    assert media["reason"]["chosen_for"] == "mood" and media["reason"]["emotion"] == (emotion or "neutral")
    # The tracks really are the catalogue's closest to the mood's target energy.
    target = media["reason"]["target"]["energy"]
    by_id = {t.id: t for t in catalogue()}
    chosen = [abs(by_id[t["id"]].energy - target) for t in media["tracks"]]
    others = [abs(t.energy - target) for t in catalogue() if t.id not in {x["id"] for x in media["tracks"]}]
    assert max(chosen) <= min(others) + 0.5  # energy dominates the distance (valence weighs half)


def test_angry_music_is_calmer_than_happy_music() -> None:
    calm = pick_tracks(mood_target("angry", 0.9, DriveContext()))
    lively = pick_tracks(mood_target("happy", 0.6, DriveContext()))
    assert max(t.energy for t in calm) < min(t.energy for t in lively)
    assert all(t.tempo_bpm < 100 for t in calm)


@pytest.mark.parametrize(
    ("metadata", "intents", "reason"),
    [({"context": {"drive_minutes": 200}}, [], "driving for 200 minutes"),
     ({"context": {"local_time": "23:40", "drive_minutes": 75}}, [], "night drive"),
     ({}, ["feeling_tired"], "driver said they are tired")],
)  # fmt: skip
def test_a_tired_driver_gets_energising_music_with_the_reason(
    car_domain: dict, metadata: dict, intents: list[str], reason: str
) -> None:
    turns = [("I'm so tired", i, None) for i in intents] + [("play some music", "play_music", {**emotion_metadata(
        "neutral", arousal=0.3), **metadata})]  # fmt: skip
    tracker = build_tracker(turns, slots={"emotion": "neutral"})
    media = run(ActionPlayMusic(), tracker, car_domain)[0][0]["custom"]["media"]
    assert media["playlist"] == "energising" and reason in media["reason"]["conditions"]
    # ...but an angry driver is calmed, never wound up.
    angry = build_tracker([("play some music", "play_music", {**emotion_metadata("angry"), **metadata})],
                          slots={"emotion": "angry"})  # fmt: skip
    assert run(ActionPlayMusic(), angry, car_domain)[0][0]["custom"]["media"]["playlist"] == "calm"


def test_requested_genre_wins_over_mood(car_domain: dict) -> None:
    tracker = build_tracker(
        [("play jazz", "play_music", None)],
        slots={"emotion": "angry"},
        entities=[{"entity": "genre", "value": "Jazz"}],
    )
    messages, _ = run(ActionPlayMusic(), tracker, car_domain)
    media = messages[0]["custom"]["media"]
    assert (media["playlist"], media["chosen_for_mood"], media["reason"]["chosen_for"]) == ("jazz", False,
                                                                                        "requested_genre")  # fmt: skip
    assert media["tracks"] and all("jazz" in t["genres"] for t in media["tracks"])


def test_the_catalogue_is_ours_and_complete() -> None:
    tracks = catalogue()
    assert len(tracks) >= 20 and len({t.id for t in tracks}) == len(tracks)
    assert all(0 <= t.energy <= 1 and -1 <= t.valence <= 1 and 40 <= t.tempo_bpm <= 200 and t.genres for t in tracks)
    playlists = {"calm", "comfort", "upbeat", "focus", "energising"}
    assert playlists <= {g for t in tracks for g in t.genres}


def test_navigation_routes_to_the_form_destination(car_domain: dict) -> None:
    tracker = build_tracker([("the central station", "out_of_scope", None)], slots={"destination": "the airport"})
    messages, events = run(ActionNavigate(), tracker, car_domain)
    assert messages[0]["response"] == "utter_navigation_started"
    assert messages[0]["custom"]["navigation"] == {"action": "route", "destination": "the airport"}
    assert slot_values(events) == {"destination": None}  # the next "navigate" asks again


@pytest.mark.parametrize(
    ("said", "place"), [("take me to the central station", "the central station"), ("home", "home"), ("a", None)]
)
def test_destination_form_takes_the_place_name(car_domain: dict, said: str, place: str | None) -> None:
    tracker = build_tracker([(said, "navigate", None)])
    validator = ValidateDestinationForm()
    assert validator.validate_destination(said, CollectingDispatcher(), tracker, car_domain) == {"destination": place}


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
        ("turn the heat up", None, {"action": "adjust", "delta_celsius": 2.0}),
        ("turn the heater off", None, {"action": "adjust", "delta_celsius": -2.0}),
        ("switch off the ac", None, {"action": "adjust", "delta_celsius": 2.0}),
        ("put the air con on", None, {"action": "adjust", "delta_celsius": -2.0}),
        ("히터 틀어 줘", None, {"action": "adjust", "delta_celsius": 2.0}),
        ("히터 꺼 줘", None, {"action": "adjust", "delta_celsius": -2.0}),
        ("에어컨 꺼 줘", None, {"action": "adjust", "delta_celsius": 2.0}),
        ("에어컨 좀 세게 틀어 줘", None, {"action": "adjust", "delta_celsius": -2.0}),
        ("it is cold in the back", None, {"action": "adjust", "delta_celsius": 2.0}),  # not the "ac" of "back"
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
