"""``action_handoff`` (contact center): pass the caller to a human with a summary for the agent."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.emotion import EmotionMetadataError, EscalationRule, history_entries, read_escalation
from actions.replies import utter_with_payload

__all__ = ["ActionHandoff", "TOPIC_FOR_INTENT", "summarise"]

REQUEST_INTENT = "request_human"
# How the agent's summary names what the caller was calling about.
TOPIC_FOR_INTENT = {
    "ask_billing": "billing question",
    "request_refund": "refund",
    "check_delivery": "delivery status",
    "complain": "complaint",
    "cancel_subscription": "cancellation",
    "out_of_scope": "something we do not handle",
}


def summarise(tracker: Tracker, reason: str, history: list[dict[str, Any]]) -> str:
    """One paragraph the human agent reads before picking up."""
    intents = [
        e.get("parse_data", {}).get("intent", {}).get("name")
        for e in tracker.events
        if e.get("event") == "user"
    ]
    topics = [TOPIC_FOR_INTENT[i] for i in intents if i in TOPIC_FOR_INTENT]
    last_text = (tracker.latest_message or {}).get("text") or ""
    streak = int(tracker.get_slot("negative_streak") or 0)
    turns = f"{streak} turns" if streak > 1 else "several turns"
    why = (
        "Caller asked for a human."
        if reason == "requested"
        else f"Caller sounded {history[-1]['label'] if history else 'upset'} for {turns} in a row."
    )
    topic = f" Topic: {topics[-1]}." if topics else ""
    moods = ", ".join(h["label"] for h in history[-5:])
    mood = f" Recent emotion: {moods}." if moods else ""
    return f'{why}{topic} Last message: "{last_text}".{mood}'


class ActionHandoff(Action):
    """Hands off when the caller asks for a human or the negative streak reached the limit."""

    def name(self) -> str:
        return "action_handoff"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        intent = (tracker.latest_message or {}).get("intent", {}).get("name")
        reason = "requested" if intent == REQUEST_INTENT else "sustained_anger"
        try:
            rule = read_escalation((tracker.latest_message or {}).get("metadata"))
        except EmotionMetadataError:
            rule = EscalationRule()
        if reason == "requested" and not rule.on_request:
            # The operator disabled hand-off on request: stay with the caller.
            utter_with_payload(dispatcher, "utter_handoff_unavailable", tracker)
            return []
        history = history_entries(tracker.events)
        handoff = {
            "reason": reason,
            "summary": summarise(tracker, reason, history),
            "emotion_history": history,
        }
        utter_with_payload(dispatcher, "utter_handoff", tracker, {"handoff": handoff})
        # A fresh streak afterwards: the reset is also visible to the slot extraction via this action's event.
        # escalation_due stays set until the next user turn recomputes it (false: the streak restarts
        # after this action); clearing it here would break the rule that predicted this action.
        return [SlotSet("negative_streak", 0.0)]
