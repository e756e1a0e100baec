"""Tracker and metadata builders for the custom-action tests (imported by conftest and the tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

__all__ = [
    "REPO_ROOT",
    "BOTS",
    "load_domain",
    "emotion_metadata",
    "build_tracker",
    "run",
    "slot_values",
    "Turn",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
BOTS = ("contact_center", "in_car", "ko_contact_center", "ko_in_car")


def load_domain(bot: str) -> dict[str, Any]:
    with (REPO_ROOT / "bot" / bot / "domain.yml").open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def emotion_metadata(
    label: str = "neutral",
    confidence: float = 0.9,
    tone: str | None = None,
    streak_turns: int = 3,
    arousal: float | None = 0.5,
    **escalation: Any,
) -> dict[str, Any]:
    """Metadata as the gateway sends it (docs/CONTRACTS.md)."""
    emotion: dict[str, Any] = {"label": label, "confidence": confidence, "valence": 0.0}
    if arousal is not None:
        emotion["arousal"] = arousal
    metadata: dict[str, Any] = {
        "emotion": emotion,
        "escalation": {
            "negative_emotions": ["angry"],
            "streak_turns": streak_turns,
            "min_confidence": 0.5,
            **escalation,
        },
    }
    if tone is not None:
        metadata["tone"] = tone
    return metadata


Turn = tuple[str, str, dict[str, Any] | None]


def build_tracker(
    turns: list[Turn],
    slots: dict[str, Any] | None = None,
    entities: list[dict[str, Any]] | None = None,
    extra_events_before_last: list[dict[str, Any]] | None = None,
) -> Tracker:
    """A tracker after ``turns`` (text, intent, metadata); the last turn is the latest message."""
    events: list[dict[str, Any]] = [{"event": "action", "name": "action_session_start"}]
    for index, (text, intent, metadata) in enumerate(turns):
        last = index == len(turns) - 1
        if last and extra_events_before_last:
            events.extend(extra_events_before_last)
        parse_data = {"intent": {"name": intent, "confidence": 0.99}, "entities": entities if last else []}
        events.append({"event": "user", "text": text, "parse_data": parse_data, "metadata": metadata or {}})
        if not last:
            events.append({"event": "action", "name": f"utter_{intent}"})
            events.append({"event": "action", "name": "action_listen"})
    text, intent, metadata = turns[-1]
    latest = {
        "text": text,
        "intent": {"name": intent, "confidence": 0.99},
        "entities": entities or [],
        "metadata": metadata or {},
    }
    return Tracker(
        sender_id="test-caller",
        slots=dict(slots or {}),
        latest_message=latest,
        events=events,
        paused=False,
        followup_action=None,
        active_loop={},
        latest_action_name="action_listen",
    )


def slot_values(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e["value"] for e in events if e.get("event") == "slot"}


def run(
    action: Action, tracker: Tracker, domain: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run an action like the action server does; returns (dispatched messages, events)."""
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, tracker, domain))
    return dispatcher.messages, list(events)
