"""``action_validate_slot_mappings``: turns each message's emotion metadata into slots.

Rasa runs this after every user message (before predicting the next action). Every slot is
recomputed from the tracker's events, so running it twice in one turn changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import ValidationAction
from rasa_sdk.types import DomainDict

from actions.emotion import (
    HIGH_AROUSAL,
    KNOWN_TONES,
    EmotionMetadataError,
    EmotionReading,
    EscalationRule,
    default_tone,
    escalation_due,
    history_entries,
    negative_streak,
    read_emotion,
    read_escalation,
    read_tone,
    user_turns_since_reset,
)
from actions.replies import previous_bot_custom

__all__ = ["ValidateSlotMappings"]

logger = logging.getLogger(__name__)


def _metadata(tracker: Tracker) -> Mapping[str, Any]:
    metadata = (tracker.latest_message or {}).get("metadata") or {}
    return metadata if isinstance(metadata, Mapping) else {}


def _current_emotion(tracker: Tracker) -> EmotionReading | None:
    try:
        return read_emotion(_metadata(tracker))
    except EmotionMetadataError as exc:
        # A broken gateway must not break the dialogue: answer in the standard tone, say why in the log.
        logger.warning("ignoring emotion metadata of %s: %s", tracker.sender_id, exc)
        return None


def _escalation_rule(tracker: Tracker) -> EscalationRule:
    try:
        return read_escalation(_metadata(tracker))
    except EmotionMetadataError as exc:
        logger.warning("using the default escalation rule for %s: %s", tracker.sender_id, exc)
        return EscalationRule()


def _known_tones(domain: DomainDict) -> tuple[str, ...]:
    # The domain's categorical `tone` slot lists the tones the responses have variations for.
    values = domain.get("slots", {}).get("tone", {}).get("values")
    return tuple(str(v).lower() for v in values) if values else KNOWN_TONES


class ValidateSlotMappings(ValidationAction):
    """Fills emotion, emotion_intensity, tone, negative_streak, emotion_history, escalation_due
    (both bots), handoff_offered (contact center) and brief_mode (in-car); each extract_<slot> is
    only called for slots the domain declares."""

    def name(self) -> str:
        return "action_validate_slot_mappings"

    def extract_emotion(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        reading = _current_emotion(tracker)
        return {"emotion": reading.label if reading else None}

    def extract_emotion_intensity(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        reading = _current_emotion(tracker)
        return {"emotion_intensity": reading.intensity if reading else None}

    def extract_tone(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        # The gateway's tone (the operator's policy) wins; the built-in mapping is the fallback.
        try:
            tone = read_tone(_metadata(tracker), _known_tones(domain))
        except EmotionMetadataError as exc:
            logger.warning("falling back to the built-in tone mapping for %s: %s", tracker.sender_id, exc)
            tone = None
        return {"tone": tone or default_tone(_current_emotion(tracker))}

    def extract_negative_streak(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        streak = negative_streak(user_turns_since_reset(tracker.events), _escalation_rule(tracker))
        return {"negative_streak": float(streak)}

    def extract_escalation_due(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        rule = _escalation_rule(tracker)
        return {"escalation_due": escalation_due(user_turns_since_reset(tracker.events), rule)}

    def extract_emotion_history(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return {"emotion_history": history_entries(tracker.events)}

    def extract_handoff_offered(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        # Contact center: the previous reply offered a colleague, so "yes" means "hand me over".
        return {"handoff_offered": previous_bot_custom(tracker).get("offer") == "handoff"}

    def extract_brief_mode(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        # A highly aroused driver gets short statements and no questions, whatever the tone policy.
        reading = _current_emotion(tracker)
        aroused = reading is not None and (
            (reading.arousal is not None and reading.arousal >= HIGH_AROUSAL)
            or (reading.arousal is None and reading.label == "angry" and reading.intensity == "high")
        )
        return {"brief_mode": aroused}
