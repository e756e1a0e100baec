"""``action_deescalate`` (in-car): calm music and a break suggestion instead of a hand-off."""

from __future__ import annotations

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.replies import utter_with_payload

__all__ = ["ActionDeescalate"]


class ActionDeescalate(Action):
    """A stressed driver gets calm music and a short, question-free break suggestion."""

    def name(self) -> str:
        return "action_deescalate"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        payload = {
            "media": {"action": "play", "playlist": "calm"},
            "suggest_break": True,
            "deescalation": {"reason": "sustained_stress", "streak": tracker.get_slot("negative_streak")},
        }
        utter_with_payload(dispatcher, "utter_deescalate", tracker, payload)
        # escalation_due stays set until the next user turn recomputes it (false: the streak restarts
        # after this action); clearing it here would break the rule that predicted this action.
        events: list[EventType] = [SlotSet("negative_streak", 0.0)]
        if tracker.active_loop_name:  # stressed mid-form (the destination question): drop the form
            events += [ActiveLoop(None), SlotSet("requested_slot", None)]
        return events
