"""In-car actions: music for the driver's mood, navigation, calls and climate.

Each reply is a short domain response (tone- and brief-mode-conditional) plus a custom payload
the head unit acts on (``media``, ``navigation``, ``call``, ``climate``).
"""

from __future__ import annotations

import re

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActionExecutionRejected, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction
from rasa_sdk.types import DomainDict

from actions.emotion import EmotionMetadataError, EmotionReading, read_emotion
from actions.language import phrases_for
from actions.music import mood_target, pick_tracks, read_context
from actions.replies import entity_value, utter_with_payload

__all__ = [
    "ActionPlayMusic",
    "ActionNavigate",
    "ValidateDestinationForm",
    "ActionCallContact",
    "ActionSetClimate",
    "parse_temperature",
]

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
    """Plays tracks from the catalogue picked for the driver's mood; a requested genre always wins."""

    def name(self) -> str:
        return "action_play_music"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        genre = entity_value(tracker, "genre")
        latest = tracker.latest_message or {}
        intents = [((e.get("parse_data") or {}).get("intent") or {}).get("name") for e in tracker.events
                   if e.get("event") == "user"][-3:]  # fmt: skip
        context = read_context(latest.get("metadata"), said_tired="feeling_tired" in intents)
        reading = _reading(latest.get("metadata"))
        target = mood_target(tracker.get_slot("emotion"), reading.arousal if reading else None, context)
        tracks = pick_tracks(target, genre)
        playlist = genre.lower() if genre else target.playlist
        reason = {
            "chosen_for": "requested_genre" if genre else "mood",
            "genre_requested": genre.lower() if genre else None,
            "emotion": tracker.get_slot("emotion") or "neutral",
            "arousal": reading.arousal if reading else None,
            "target": {"energy": target.energy, "valence": target.valence},
            "conditions": list(target.reasons),
        }
        payload = {"media": {"action": "play", "playlist": playlist, "chosen_for_mood": genre is None,
                             "tracks": [t.as_payload() for t in tracks], "reason": reason}}  # fmt: skip
        utter_with_payload(dispatcher, "utter_play_music", tracker, payload,
                           playlist=phrases_for(tracker).playlist(playlist))  # fmt: skip
        return []


def _reading(metadata: object) -> EmotionReading | None:
    try:
        return read_emotion(metadata if isinstance(metadata, dict) else None)
    except EmotionMetadataError:
        return None


class ValidateDestinationForm(FormValidationAction):
    """The destination form: any place name is taken; stress mid-form hands over to de-escalation."""

    def name(self) -> str:
        return "validate_destination_form"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        if tracker.active_loop_name == self.form_name() and tracker.get_slot("escalation_due"):
            return [SlotSet("destination", None), ActionExecutionRejected(self.form_name())]
        return await super().run(dispatcher, tracker, domain)

    def validate_destination(
        self, value: object, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, object]:
        place = _DESTINATION_PREFIX.sub("", str(value or "")).strip(" .!?")
        place = _DESTINATION_SUFFIX.sub("", place).strip(" .!?")
        return {"destination": place if len(place) >= 2 else None}


_DESTINATION_PREFIX = re.compile(r"^\s*(?:please\s+)?(?:(?:take|drive|bring) me\s+)?(?:(?:go|get|head)\s+)?(?:to\s+)?", re.I)
# Korean puts the request after the place: "강남역으로 가 줘", "회사까지 안내해 주세요". A bare
# particle is dropped only where no place name ends in it (으로, 까지), "로"/"에" only before a verb.
_DESTINATION_SUFFIX = re.compile(
    r"\s*(?:(?:으로|로|까지|에)\s*(?:좀\s*)?(?:가\s*줘|가\s*주세요|가\s*주실래요|가자|갈래|가고\s*싶어|가야\s*돼|"
    r"안내해\s*줘|안내해\s*주세요|안내|데려다\s*줘|데려다\s*주세요)(?:요)?|으로|까지|(?:이요|요))$"
)


class ActionNavigate(Action):
    """Starts route guidance to the destination the form collected."""

    def name(self) -> str:
        return "action_navigate"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        destination = tracker.get_slot("destination") or entity_value(tracker, "destination")
        if not destination:
            utter_with_payload(dispatcher, "utter_ask_destination", tracker)
            return []
        payload = {"navigation": {"action": "route", "destination": destination}}
        utter_with_payload(dispatcher, "utter_navigation_started", tracker, payload, destination=destination)
        return [SlotSet("destination", None)]  # the next "navigate" asks again


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


# Words asking for a warmer cabin (English and Korean); anything else cools it a little. Switching a
# device off turns the direction round: "heater off" cools, "AC off" warms.
_WARMER_WORDS = ("cold", "freezing", "warmer", "추워", "춥", "따뜻", "쌀쌀")
_HEATING_WORDS = re.compile(r"\bheat(?:er|ing)?\b|히터|난방|열선")
_COOLING_WORDS = re.compile(r"\ba/?c\b|\bair ?con(?:ditioning|ditioner)?\b|\bfan\b|에어컨|냉방|선풍기")
_OFF_WORDS = re.compile(r"\boff\b|\bstop\b|꺼|끄|끌|멈춰|그만")


def warms_the_cabin(text: str) -> bool:
    """Whether a climate request without a temperature asks for a warmer cabin."""
    switched_off = _OFF_WORDS.search(text) is not None
    if _HEATING_WORDS.search(text):
        return not switched_off
    if _COOLING_WORDS.search(text):
        return switched_off
    return any(word in text for word in _WARMER_WORDS)


class ActionSetClimate(Action):
    """Sets the cabin temperature (clamped to what the unit accepts) or nudges it warmer/cooler."""

    def name(self) -> str:
        return "action_set_climate"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        requested = parse_temperature(entity_value(tracker, "temperature"))
        text = ((tracker.latest_message or {}).get("text") or "").lower()
        phrases = phrases_for(tracker)
        if requested is not None:
            target = min(max(requested, MIN_TEMPERATURE_C), MAX_TEMPERATURE_C)
            climate: dict[str, object] = {"action": "set", "celsius": target}
            shown = phrases.degrees.format(value=target)
        elif warms_the_cabin(text):
            climate, shown = {"action": "adjust", "delta_celsius": 2.0}, phrases.warmer
        else:
            # "too hot", "cooler", "AC on" and anything unclear cool the cabin a little.
            climate, shown = {"action": "adjust", "delta_celsius": -2.0}, phrases.cooler
        utter_with_payload(dispatcher, "utter_climate_set", tracker, {"climate": climate}, setting=shown)
        return []
