"""``action_handoff`` (contact center): pass the caller to a human, with the context the agent needs.

The context travels in the reply's ``custom.handoff`` (docs/handoff.md is the contract): why, what the
caller wanted, what was collected and written (numbers, tickets), their last words and how they
sounded. The bot tells the caller that the colleague has a summary only when the gateway declared
that it delivers the context to the agent (``metadata.capabilities.handoff_context: true``);
otherwise it just connects, and never claims to have passed on something it did not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.emotion import EmotionMetadataError, EscalationRule, history_entries, read_escalation
from actions.language import ENGLISH, phrases_for
from actions.replies import previous_bot_custom, utter_with_payload

__all__ = [
    "ActionHandoff",
    "CONTEXT_VERSION",
    "COLLECTED_SLOTS",
    "TOPIC_FOR_INTENT",
    "context_delivered",
    "handoff_context",
    "summarise",
]

CONTEXT_VERSION = 1
REQUEST_INTENT = "request_human"
# The task intents (what the caller was calling about); the summary names them in the agent's language.
TOPIC_FOR_INTENT = ENGLISH.summary.topics
# Slots the caller gave (or the backend confirmed) that an agent should not have to ask again.
COLLECTED_SLOTS = ("order_number", "account_number", "complaint_category", "refund_confirmed", "cancel_confirmed")
_TASK_FOR_FORM = {"order_status_form": "order_status", "refund_form": "refund", "cancel_form": "cancel",
                  "complaint_form": "complaint"}  # fmt: skip
# Why a colleague was offered (the offering reply's custom.task.outcome) -> the hand-off reason.
_OFFER_REASONS = {"unidentified": "unidentified", "backend_down": "backend_unavailable"}
_LAST_WORDS = 3


def _user_events(tracker: Tracker) -> list[Mapping[str, Any]]:
    return [e for e in tracker.events if e.get("event") == "user"]


def _intent_of(event: Mapping[str, Any]) -> str | None:
    return ((event.get("parse_data") or {}).get("intent") or {}).get("name")


def handoff_reason(tracker: Tracker) -> str:
    intent = (tracker.latest_message or {}).get("intent", {}).get("name")
    if intent == REQUEST_INTENT:
        return "requested"
    previous = previous_bot_custom(tracker)
    if previous.get("offer") == "handoff" and intent == "affirm":
        outcome = (previous.get("task") or {}).get("outcome")
        return _OFFER_REASONS.get(str(outcome), "requested")
    return "sustained_anger"


def summarise(tracker: Tracker, reason: str, history: list[dict[str, Any]]) -> str:
    """One paragraph the human agent reads before picking up, in the bot's language."""
    phrases = phrases_for(tracker)
    words = phrases.summary
    topics = [words.topics[i] for i in map(_intent_of, _user_events(tracker)) if i in words.topics]
    last_text = (tracker.latest_message or {}).get("text") or ""
    streak = int(tracker.get_slot("negative_streak") or 0)
    turns = words.turns.format(n=streak) if streak > 1 else words.several_turns
    why = words.reasons.get(reason) or words.sounded.format(
        emotion=words.emotion(history[-1]["label"] if history else "upset"), turns=turns
    )
    parts = [why]
    if topics:
        parts.append(words.topic.format(topic=topics[-1]))
    known = [f"{phrases.number_kinds[kind]} {tracker.get_slot(f'{kind}_number')}" for kind in ("order", "account")
             if tracker.get_slot(f"{kind}_number")]  # fmt: skip
    if known:
        parts.append(words.identified.format(numbers=words.joiner.join(known)))
    tickets = tracker.get_slot("tickets") or []
    if tickets:
        parts.append(words.tickets.format(tickets=", ".join(f"{t.get('kind')} {t.get('reference')}" for t in tickets)))
    parts.append(words.last_message.format(text=last_text))
    moods = ", ".join(words.emotion(h["label"]) for h in history[-5:])
    if moods:
        parts.append(words.recent_emotion.format(moods=moods))
    return " ".join(parts)


def context_delivered(metadata: Mapping[str, Any] | None) -> bool:
    """Whether the gateway said it hands ``custom.handoff`` to the agent (docs/handoff.md)."""
    capabilities = (metadata or {}).get("capabilities")
    return isinstance(capabilities, Mapping) and capabilities.get("handoff_context") is True


def handoff_context(tracker: Tracker, reason: str, briefed: bool) -> dict[str, Any]:
    """The machine-readable hand-off context (version :data:`CONTEXT_VERSION`, docs/handoff.md)."""
    history = history_entries(tracker.events)
    users = _user_events(tracker)
    intents = [i for i in map(_intent_of, users) if i]
    task_intents = [i for i in intents if i in TOPIC_FOR_INTENT]
    slots = {name: tracker.get_slot(name) for name in COLLECTED_SLOTS if tracker.get_slot(name) is not None}
    return {
        "version": CONTEXT_VERSION,
        "conversation_id": tracker.sender_id,
        "reason": reason,
        "summary": summarise(tracker, reason, history),
        "intent": task_intents[-1] if task_intents else (intents[-1] if intents else None),
        "task": _TASK_FOR_FORM.get(tracker.active_loop_name or ""),
        "slots": slots,
        "tickets": list(tracker.get_slot("tickets") or []),
        "last_caller_words": [str(e.get("text") or "") for e in users[-_LAST_WORDS:]],
        "emotion_history": history,
        "caller_told": "briefed" if briefed else "connecting",
    }


class ActionHandoff(Action):
    """Hands off when the caller asks for a human, accepts an offered colleague, or the negative
    streak reached the limit; stops any task form that was running."""

    def name(self) -> str:
        return "action_handoff"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        reason = handoff_reason(tracker)
        metadata = (tracker.latest_message or {}).get("metadata")
        try:
            rule = read_escalation(metadata)
        except EmotionMetadataError:
            rule = EscalationRule()
        if reason == "requested" and not rule.on_request:
            # The operator disabled hand-off on request: stay with the caller.
            utter_with_payload(dispatcher, "utter_handoff_unavailable", tracker)
            return []
        briefed = context_delivered(metadata)
        handoff = handoff_context(tracker, reason, briefed)
        utter_with_payload(dispatcher, "utter_handoff_briefed" if briefed else "utter_handoff", tracker,
                           {"handoff": handoff})  # fmt: skip
        # A fresh streak afterwards: the reset is also visible to the slot extraction via this action's event.
        # escalation_due stays set until the next user turn recomputes it (false: the streak restarts
        # after this action); clearing it here would break the rule that predicted this action.
        events: list[EventType] = [SlotSet("negative_streak", 0.0)]
        if tracker.active_loop_name:
            events += [ActiveLoop(None), SlotSet("requested_slot", None)]
        return events
