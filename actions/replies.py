"""Helpers shared by the actions: the current tone and replies that carry it to the channel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.emotion import DEFAULT_TONE

__all__ = ["current_tone", "utter_with_payload", "entity_value", "previous_bot_custom"]


def current_tone(tracker: Tracker) -> str:
    tone = tracker.get_slot("tone")
    return tone if isinstance(tone, str) and tone else DEFAULT_TONE


def utter_with_payload(
    dispatcher: CollectingDispatcher,
    response: str,
    tracker: Tracker,
    payload: dict[str, Any] | None = None,
    **template_values: Any,
) -> None:
    """Utter a (tone-conditional) domain response whose custom payload also carries ``payload``.

    Rasa replaces a response's own ``custom`` with the action's ``json_message``, so the tone is
    put back here: every reply keeps ``custom.tone`` for the TTS.
    """
    custom = {"tone": current_tone(tracker), **(payload or {})}
    dispatcher.utter_message(response=response, json_message=custom, **template_values)


def entity_value(tracker: Tracker, entity: str) -> str | None:
    """The latest message's value for ``entity`` (stripped), if NLU found one."""
    value = next(tracker.get_latest_entity_values(entity), None)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def previous_bot_custom(tracker: Tracker) -> dict[str, Any]:
    """The custom payload of the bot's last reply before the caller's latest message ({} if none)."""
    seen_latest_user = False
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            if seen_latest_user:
                return {}
            seen_latest_user = True
        elif event.get("event") == "bot" and seen_latest_user:
            custom = (event.get("data") or {}).get("custom")
            if isinstance(custom, Mapping):
                return dict(custom)
    return {}
