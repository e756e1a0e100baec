"""In-car actions: music for the driver's mood, navigation, calls and climate.

Each reply is a short domain response (tone- and brief-mode-conditional) plus a custom payload
the head unit acts on (``media``, ``navigation``, ``call``, ``climate``).
"""

from __future__ import annotations

import re

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.replies import entity_value, utter_with_payload

__all__ = [
    "PLAYLIST_FOR_EMOTION",
    "ActionPlayMusic",
    "ActionNavigate",
    "ActionCallContact",
    "ActionSetClimate",
    "parse_temperature",
]

# Music that counters (angry -> calm) or accompanies (happy -> upbeat) the driver's mood.
PLAYLIST_FOR_EMOTION = {"angry": "calm", "sad": "comfort", "happy": "upbeat", "neutral": "focus"}
# Cabin temperatures a climate unit accepts (degrees Celsius).
MIN_TEMPERATURE_C, MAX_TEMPERATURE_C = 16.0, 28.0
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)?")


def parse_temperature(text: str | None) -> float | None:
    """A temperature in degrees Celsius from an entity value such as "21", "21.5" or "22 degrees"."""
    if not text:
        return None
    match = _NUMBER.search(text)
    return float(match.group().replace(",", ".")) if match else None


class ActionPlayMusic(Action):
    """Plays a requested genre, or a playlist suited to the driver's mood."""

    def name(self) -> str:
        return "action_play_music"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        genre = entity_value(tracker, "genre")
        emotion = tracker.get_slot("emotion") or "neutral"
        playlist = genre.lower() if genre else PLAYLIST_FOR_EMOTION.get(emotion, "focus")
        payload = {"media": {"action": "play", "playlist": playlist, "chosen_for_mood": genre is None}}
        utter_with_payload(dispatcher, "utter_play_music", tracker, payload, playlist=playlist)
        return []


class ActionNavigate(Action):
    """Starts route guidance, or (when no destination was heard) asks for one unless the driver is stressed."""

    def name(self) -> str:
        return "action_navigate"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        destination = entity_value(tracker, "destination")
        if destination is None:
            utter_with_payload(dispatcher, "utter_ask_destination", tracker)
            return []
        payload = {"navigation": {"action": "route", "destination": destination}}
        utter_with_payload(dispatcher, "utter_navigation_started", tracker, payload, destination=destination)
        return [SlotSet("destination", destination)]


class ActionCallContact(Action):
    """Places a hands-free call to the named contact."""

    def name(self) -> str:
        return "action_call_contact"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        contact = entity_value(tracker, "contact")
        if contact is None:
            utter_with_payload(dispatcher, "utter_ask_contact", tracker)
            return []
        payload = {"call": {"action": "dial", "contact": contact}}
        utter_with_payload(dispatcher, "utter_calling", tracker, payload, contact=contact)
        return [SlotSet("contact", contact)]


class ActionSetClimate(Action):
    """Sets the cabin temperature (clamped to what the unit accepts) or nudges it warmer/cooler."""

    def name(self) -> str:
        return "action_set_climate"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        requested = parse_temperature(entity_value(tracker, "temperature"))
        text = ((tracker.latest_message or {}).get("text") or "").lower()
        if requested is not None:
            target = min(max(requested, MIN_TEMPERATURE_C), MAX_TEMPERATURE_C)
            climate: dict[str, object] = {"action": "set", "celsius": target}
            shown = f"{target:g} degrees"
        elif any(word in text for word in ("cold", "freezing", "warmer", "heat")):
            climate, shown = {"action": "adjust", "delta_celsius": 2.0}, "two degrees warmer"
        else:
            # "too hot", "cooler", "AC on" and anything unclear cool the cabin a little.
            climate, shown = {"action": "adjust", "delta_celsius": -2.0}, "two degrees cooler"
        utter_with_payload(dispatcher, "utter_climate_set", tracker, {"climate": climate}, setting=shown)
        return []
