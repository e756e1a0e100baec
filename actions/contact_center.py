"""Contact-center tasks as Rasa forms over the backend: order status, refund, cancellation, complaint.

Each task is a form (``bot/contact_center/domain.yml``) with three kinds of actions here:

* ``validate_<form>`` checks what the caller said against the backend: an order or account number
  (spoken digits or keypad digits arriving as text, :mod:`actions.numbers`), a yes/no, a complaint
  category. A rejected answer sets ``form_problem`` and the form asks again; after
  :data:`MAX_ID_FAILURES` failed identifications, a database failure, a goodbye or a decision that
  ends the task (a refund outside the window, no subscription) the form stops early and says why
  through ``task_outcome``. Sustained anger mid-form rejects the form so the hand-off rule fires.
* ``action_ask_<slot>`` says the question, or (after a rejected answer) why it was rejected and the
  question again: one reply per turn.
* ``action_submit_<task>`` states what the backend says (reading again, writing idempotently per
  conversation) and clears the task's slots; the caller stays identified for the next task.

Every reply carries ``custom.tone`` plus a machine-readable ``task`` (and ``ticket`` / ``order`` /
``subscription``, ``offer: "handoff"`` when a colleague is offered); docs/contact-center.md lists them.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from datetime import date
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActionExecutionRejected, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction
from rasa_sdk.types import DomainDict

from actions.backend import BackendUnavailable, Order, Repository, Subscription, open_repository
from actions.backend.policy import refund_decision
from actions.language import ENGLISH, Phrases, phrases_for
from actions.numbers import ACCOUNT_DIGITS, ORDER_DIGITS, digits_in, number_kind, spoken_digits
from actions.replies import current_tone, utter_with_payload

__all__ = [
    "MAX_ID_FAILURES",
    "COMPLAINT_CATEGORIES",
    "complaint_category_of",
    "money",
    "day_words",
    "order_facts",
    "subscription_facts",
]

logger = logging.getLogger(__name__)

# Failed identification attempts (unknown number, wrong format, refusal, "I don't know it") before
# the task stops and a colleague is offered.
MAX_ID_FAILURES = 3
_WANTED_DIGITS = {"order": ORDER_DIGITS, "account": ACCOUNT_DIGITS}
# category -> words that suggest it, English and Korean (a caller may mix them); how the bot says the
# category is in actions/language.py. The first category with a match wins.
COMPLAINT_CATEGORIES: dict[str, tuple[str, ...]] = {
    "delivery": ("deliver", "parcel", "package", "courier", "arriv", "late", "ship", "driver", "never came",
                 "never got", "lost",
                 "배송", "택배", "배달", "도착", "늦", "기사", "분실", "안 왔", "안 와", "못 받"),  # fmt: skip
    "product": ("product", "broken", "damaged", "faulty", "defect", "doesn't work", "does not work", "quality",
                "wrong item", "wrong size", "item",
                "상품", "제품", "물건", "고장", "파손", "망가", "불량", "품질", "작동", "사이즈"),  # fmt: skip
    "billing": ("bill", "charg", "invoice", "payment", "price", "overcharg", "fee", "money",
                "요금", "청구", "결제", "가격", "돈", "영수증"),  # fmt: skip
    "service": ("service", "rude", "staff", "agent", "support", "waiting", "on hold", "nobody", "help",
                "서비스", "불친절", "무례", "직원", "상담", "응대", "기다"),  # fmt: skip
    "other": (),
}
# Yes / no said while a confirmation is asked, when NLU gave another intent (English and Korean).
_YES = re.compile(r"^\s*(?:(yes|yeah|yep|yup|sure|ok|okay|please|correct|go ahead|do it)\b"
                  r"|(?:네|예|응)(?![가-힣])|그래|좋아|맞아)", re.I)
_NO = re.compile(r"^\s*(?:(no|nope|nah|don't|do not|not now|cancel that)\b|아니|아뇨|싫어|하지 마|됐어)", re.I)


# Responses chosen by what the backend or the caller said (literal names: tests check each exists).
_ORDER_STATUS_RESPONSES = {
    "processing": "utter_order_processing",
    "shipped": "utter_order_shipped",
    "delivered": "utter_order_delivered",
    "lost": "utter_order_lost",
    "refunded": "utter_order_refunded",
}
_NUMBER_PROBLEM_RESPONSES = {
    "where": "utter_number_where",
    "refused": "utter_number_refused",
    "missing": "utter_number_missing",
    "wrong_length": "utter_number_wrong_length",
    "unknown": "utter_number_unknown",
}
_REFUND_REFUSAL_RESPONSES = {
    "already_open": "utter_refund_already_open",
    "already_refunded": "utter_refund_already_refunded",
    "outside_window": "utter_refund_outside_window",
    "not_delivered": "utter_refund_not_delivered",
}


# ----------------------------------------------------------------------------- what the bot says
def money(pence: int, phrases: Phrases = ENGLISH) -> str:
    return phrases.money(pence)


def day_words(day: date | None, phrases: Phrases = ENGLISH) -> str:
    """'Saturday 13 December' (English): how a person says a date."""
    return phrases.day_words(day)


def order_facts(order: Order, phrases: Phrases = ENGLISH) -> dict[str, str]:
    """Template values of the order replies (the same for every tone), in the bot's language."""
    return {
        "order": spoken_digits(order.order_number),
        "item": order.item,
        "amount": phrases.money(order.total_pence),
        "expected_on": phrases.day_words(order.expected_on),
        "delivered_on": phrases.day_words(order.delivered_on),
        "carrier": order.carrier or phrases.courier,
    }


def subscription_facts(sub: Subscription, phrases: Phrases = ENGLISH) -> dict[str, str]:
    return {"plan": sub.plan, "price": phrases.money(sub.monthly_pence),
            "ends_on": phrases.day_words(sub.ends_on or sub.renews_on)}  # fmt: skip


def _order_payload(order: Order) -> dict[str, Any]:
    return {
        "order_number": order.order_number,
        "status": order.status,
        "item": order.item,
        "total_pence": order.total_pence,
        "expected_on": order.expected_on.isoformat() if order.expected_on else None,
        "delivered_on": order.delivered_on.isoformat() if order.delivered_on else None,
        "carrier": order.carrier,
    }


def complaint_category_of(text: str | None) -> str | None:
    lowered = (text or "").lower()
    for category, words in COMPLAINT_CATEGORIES.items():
        if any(word in lowered for word in words):
            return category
    return None


def repository() -> Repository:
    # Read the URL on every call: cheap, and an operator (or a test) can repoint the action server.
    return open_repository()


def _intent(tracker: Tracker) -> str | None:
    return ((tracker.latest_message or {}).get("intent") or {}).get("name")


def _text(tracker: Tracker) -> str:
    return str((tracker.latest_message or {}).get("text") or "")


# ----------------------------------------------------------------------------- form validation
class _TaskFormValidation(FormValidationAction):
    """Shared by the four task forms: identification, yes/no, early ends, escalation mid-form."""

    @abstractmethod
    def name(self) -> str:  # abstract: rasa_sdk registers only concrete actions
        raise NotImplementedError

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        if tracker.active_loop_name == self.form_name() and tracker.get_slot("escalation_due"):
            # Sustained anger mid-form: hand the form back so the hand-off rule runs (the raw text the
            # form just took as the requested slot's value is dropped).
            requested = tracker.get_slot("requested_slot")
            dropped = [SlotSet(requested, None)] if requested else []
            return [*dropped, ActionExecutionRejected(self.form_name())]
        return await super().run(dispatcher, tracker, domain)

    @staticmethod
    def _end(outcome: str, **slots: Any) -> dict[str, Any]:
        """Stop the form now; the submit action says why (``task_outcome``)."""
        return {**slots, "task_outcome": outcome, "form_problem": None, "id_failures": 0.0, "requested_slot": None}

    def _identify(self, value: Any, tracker: Tracker, want: str) -> dict[str, Any]:
        """Validate an order ('order') or account ('account') number; the other kind is accepted too."""
        slot = f"{want}_number"
        intent = _intent(tracker)
        if intent == "repeat":
            return {slot: None, "form_problem": None}
        if intent == "goodbye":
            return self._end("stopped", **{slot: None})
        problem: dict[str, Any]
        if intent == "dont_know_number":
            problem = {"code": "where", "kind": want}
        elif intent == "deny":
            problem = {"code": "refused", "kind": want}
        else:
            digits = digits_in(str(value or ""))
            kind = number_kind(digits)
            if not digits:
                problem = {"code": "missing", "kind": want}
            elif kind is None:
                problem = {"code": "wrong_length", "kind": want, "heard": digits}
            else:
                try:
                    found = self._lookup(kind, digits, want)
                except BackendUnavailable as exc:
                    logger.warning("backend unavailable for %s: %s", tracker.sender_id, exc)
                    return self._end("backend_down", **{slot: None})
                if found is not None:
                    return {**found, "form_problem": None, "id_failures": 0.0}
                problem = {"code": "unknown", "kind": kind, "heard": digits}
        failures = int(tracker.get_slot("id_failures") or 0) + 1
        if failures >= MAX_ID_FAILURES:
            return self._end("unidentified", **{slot: None})
        return {slot: None, "form_problem": problem, "id_failures": float(failures)}

    @staticmethod
    def _lookup(kind: str, digits: str, want: str) -> dict[str, Any] | None:
        repo = repository()
        if kind == "order":
            order = repo.order(digits)
            return None if order is None else {"order_number": digits, "account_number": order.account_number}
        if repo.customer(digits) is None:
            return None
        if want == "account":
            return {"account_number": digits}
        latest = repo.latest_order(digits)  # an account number where an order was asked: its latest order
        return None if latest is None else {"order_number": latest.order_number, "account_number": digits}

    @staticmethod
    def _confirmation(value: Any, tracker: Tracker, slot: str) -> dict[str, Any]:
        intent = _intent(tracker)
        text = _text(tracker)
        if intent == "goodbye":
            return _TaskFormValidation._end("stopped", **{slot: None})
        if intent == "affirm" or (intent not in ("deny", "repeat") and _YES.match(text)):
            return {slot: True, "form_problem": None}
        if intent == "deny" or (intent != "repeat" and _NO.match(text)):
            return {slot: False, "form_problem": None}
        return {slot: None, "form_problem": None}  # anything else: ask again (the question states the facts)


class ValidateOrderStatusForm(_TaskFormValidation):
    def name(self) -> str:
        return "validate_order_status_form"

    def validate_order_number(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return self._identify(value, tracker, "order")


class ValidateRefundForm(_TaskFormValidation):
    def name(self) -> str:
        return "validate_refund_form"

    def validate_order_number(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        result = self._identify(value, tracker, "order")
        number = result.get("order_number")
        if not number:
            return result
        try:
            repo = repository()
            order = repo.order(number)
            if order is None:  # pragma: no cover - just found
                return self._end("unidentified", order_number=None)
            decision = refund_decision(order, date.today(), repo.open_refund_for(number))
        except BackendUnavailable:
            return self._end("backend_down", order_number=None)
        facts = order_facts(order, phrases_for(tracker))
        if decision.existing is not None:
            facts["reference"] = spoken_digits(decision.existing.reference)
        result["task_facts"] = {**facts, "refund": decision.code}
        if not decision.eligible:
            result.update(self._end(decision.code))
        return result

    def validate_refund_confirmed(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return self._confirmation(value, tracker, "refund_confirmed")


class ValidateCancelForm(_TaskFormValidation):
    def name(self) -> str:
        return "validate_cancel_form"

    def validate_account_number(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        result = self._identify(value, tracker, "account")
        account = result.get("account_number")
        if not account:
            return result
        try:
            sub = repository().subscription(account)
        except BackendUnavailable:
            return self._end("backend_down", account_number=None)
        if sub is None:
            result.update(self._end("no_subscription"))
            return result
        result["task_facts"] = {**subscription_facts(sub, phrases_for(tracker)), "subscription_id": sub.subscription_id}
        if sub.status != "active":
            result.update(self._end("already_cancelled"))
        return result

    def validate_cancel_confirmed(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return self._confirmation(value, tracker, "cancel_confirmed")


class ValidateComplaintForm(_TaskFormValidation):
    def name(self) -> str:
        return "validate_complaint_form"

    async def extract_complaint_category(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if tracker.get_slot("complaint_category"):
            return {}
        intent = _intent(tracker)
        if tracker.get_slot("requested_slot") == "complaint_category" and tracker.active_loop_name == self.form_name():
            if intent == "request_human":
                return {}  # nothing extracted: the form is rejected and the hand-off rule runs
            if intent == "repeat":
                return {"complaint_category": None}
            return {"complaint_category": complaint_category_of(_text(tracker)) or "other"}
        if intent == "complain":  # the complaint itself often says what it is about
            category = complaint_category_of(_text(tracker))
            return {"complaint_category": category} if category else {}
        return {}

    def validate_complaint_category(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if _intent(tracker) == "goodbye" and tracker.get_slot("requested_slot") == "complaint_category":
            return self._end("stopped", complaint_category=None)
        return {"complaint_category": value if value in COMPLAINT_CATEGORIES else None}

    def validate_account_number(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return self._identify(value, tracker, "account")


# ----------------------------------------------------------------------------- questions
class _AskNumber(Action, ABC):
    """Asks for a number, or says why the last answer was not accepted and asks again."""

    want = "order"
    question = "utter_ask_order_number"

    @abstractmethod
    def name(self) -> str:
        raise NotImplementedError

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        problem = tracker.get_slot("form_problem")
        task = {"task": {"name": _task_of(tracker), "step": f"ask_{self.want}_number"}}
        if not isinstance(problem, dict) or "code" not in problem:
            utter_with_payload(dispatcher, self.question, tracker, task)
            return []
        kind = str(problem.get("kind") or self.want)
        kind = kind if kind in _WANTED_DIGITS else "order"
        phrases = phrases_for(tracker)
        values = {
            "kind": phrases.number_kinds[kind],
            "digits": str(_WANTED_DIGITS[kind]),
            "heard": spoken_digits(str(problem.get("heard") or "")),
            "where": phrases.number_where[kind],
        }
        task["task"]["problem"] = problem["code"]
        response = _NUMBER_PROBLEM_RESPONSES.get(str(problem["code"]), self.question)
        utter_with_payload(dispatcher, response, tracker, task, **values)
        return [SlotSet("form_problem", None)]


class ActionAskOrderNumber(_AskNumber):
    want = "order"

    def name(self) -> str:
        return "action_ask_order_number"


class ActionAskAccountNumber(_AskNumber):
    want = "account"
    question = "utter_ask_account_number"

    def name(self) -> str:
        return "action_ask_account_number"


class _AskConfirmation(Action, ABC):
    response = ""

    @abstractmethod
    def name(self) -> str:
        raise NotImplementedError

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        facts = tracker.get_slot("task_facts") or {}
        utter_with_payload(
            dispatcher, self.response, tracker, {"task": {"name": _task_of(tracker), "step": "confirm"}}, **facts
        )
        return []


class ActionAskRefundConfirmed(_AskConfirmation):
    response = "utter_ask_refund_confirmed"

    def name(self) -> str:
        return "action_ask_refund_confirmed"


class ActionAskCancelConfirmed(_AskConfirmation):
    response = "utter_ask_cancel_confirmed"

    def name(self) -> str:
        return "action_ask_cancel_confirmed"


class ActionAskComplaintCategory(Action):
    def name(self) -> str:
        return "action_ask_complaint_category"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        utter_with_payload(
            dispatcher, "utter_ask_complaint_category", tracker, {"task": {"name": "complaint", "step": "category"}}
        )
        return []


_TASK_FOR_FORM = {"order_status_form": "order_status", "refund_form": "refund", "cancel_form": "cancel",
                  "complaint_form": "complaint"}  # fmt: skip


def _task_of(tracker: Tracker) -> str | None:
    return _TASK_FOR_FORM.get(tracker.active_loop_name or "")


# ----------------------------------------------------------------------------- submitting
# Outcomes that end any task early: the reply and whether it offers a colleague.
_EARLY_ENDS = {
    "stopped": ("utter_task_stopped", False),
    "unidentified": ("utter_task_unidentified", True),
    "backend_down": ("utter_backend_down", True),
}


class _SubmitTask(Action, ABC):
    task = ""
    task_slots: tuple[str, ...] = ()

    @abstractmethod
    def name(self) -> str:
        raise NotImplementedError

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        outcome = tracker.get_slot("task_outcome")
        events: list[EventType] = []
        if outcome in _EARLY_ENDS:
            self._early_end(dispatcher, tracker, str(outcome))
        else:
            try:
                events = self.submit(dispatcher, tracker, outcome)
            except BackendUnavailable as exc:
                logger.warning("backend unavailable for %s: %s", tracker.sender_id, exc)
                self._early_end(dispatcher, tracker, "backend_down")
        reset = ["task_outcome", "form_problem", "task_facts", *self.task_slots]
        return [*events, *(SlotSet(slot, None) for slot in reset), SlotSet("id_failures", 0.0)]

    def _early_end(self, dispatcher: CollectingDispatcher, tracker: Tracker, outcome: str) -> None:
        response, offer = _EARLY_ENDS[outcome]
        payload: dict[str, Any] = {"task": {"name": self.task, "outcome": outcome}}
        if offer:
            payload["offer"] = "handoff"
        utter_with_payload(dispatcher, response, tracker, payload)

    def say(self, dispatcher: CollectingDispatcher, tracker: Tracker, response: str, outcome: str,
            extra: dict[str, Any] | None = None, **values: Any) -> None:  # fmt: skip
        payload = {"task": {"name": self.task, "outcome": outcome}, **(extra or {})}
        utter_with_payload(dispatcher, response, tracker, payload, **values)

    @abstractmethod
    def submit(self, dispatcher: CollectingDispatcher, tracker: Tracker, outcome: Any) -> list[EventType]:
        raise NotImplementedError


def _with_ticket(tracker: Tracker, ticket_payload: dict[str, Any]) -> list[EventType]:
    tickets = [t for t in (tracker.get_slot("tickets") or []) if t.get("reference") != ticket_payload["reference"]]
    return [SlotSet("tickets", [*tickets, ticket_payload])]


class ActionSubmitOrderStatus(_SubmitTask):
    task = "order_status"

    def name(self) -> str:
        return "action_submit_order_status"

    def submit(self, dispatcher: CollectingDispatcher, tracker: Tracker, outcome: Any) -> list[EventType]:
        order = repository().order(str(tracker.get_slot("order_number")))
        if order is None:
            self._early_end(dispatcher, tracker, "unidentified")
            return []
        self.say(dispatcher, tracker, _ORDER_STATUS_RESPONSES[order.status], order.status,
                 {"order": _order_payload(order)}, **order_facts(order, phrases_for(tracker)))  # fmt: skip
        return []


class ActionSubmitRefund(_SubmitTask):
    task = "refund"
    task_slots = ("refund_confirmed",)

    def name(self) -> str:
        return "action_submit_refund"

    def submit(self, dispatcher: CollectingDispatcher, tracker: Tracker, outcome: Any) -> list[EventType]:
        number = str(tracker.get_slot("order_number"))
        repo = repository()
        order = repo.order(number)
        if order is None:
            self._early_end(dispatcher, tracker, "unidentified")
            return []
        phrases = phrases_for(tracker)
        facts = order_facts(order, phrases)
        decision = refund_decision(order, date.today(), repo.open_refund_for(number))
        if not decision.eligible:
            # Includes a refund already open for this order (asked twice in this conversation, or before).
            extra = {"order": _order_payload(order)}
            if decision.existing is not None:
                facts["reference"] = spoken_digits(decision.existing.reference)
                extra["ticket"] = decision.existing.as_payload()
            self.say(dispatcher, tracker, _REFUND_REFUSAL_RESPONSES[decision.code], decision.code, extra, **facts)
            return _with_ticket(tracker, decision.existing.as_payload()) if decision.existing else []
        if tracker.get_slot("refund_confirmed") is not True:
            self.say(dispatcher, tracker, "utter_refund_declined", "declined", {"order": _order_payload(order)})
            return []
        ticket = repo.open_ticket(
            kind="refund", conversation_id=tracker.sender_id, account_number=order.account_number,
            subject=number, order_number=number, amount_pence=order.total_pence,
            details=f"refund of {money(order.total_pence)} for order {number} ({order.item}, {order.status})",
        )  # fmt: skip
        self.say(dispatcher, tracker, "utter_refund_opened", "opened",
                 {"order": _order_payload(order), "ticket": ticket.as_payload()},
                 amount=phrases.money(order.total_pence), reference=spoken_digits(ticket.reference))  # fmt: skip
        return _with_ticket(tracker, ticket.as_payload())


class ActionSubmitCancel(_SubmitTask):
    task = "cancel"
    task_slots = ("cancel_confirmed",)

    def name(self) -> str:
        return "action_submit_cancel"

    def submit(self, dispatcher: CollectingDispatcher, tracker: Tracker, outcome: Any) -> list[EventType]:
        repo = repository()
        sub = repo.subscription(str(tracker.get_slot("account_number")))
        if sub is None or outcome == "no_subscription":
            self.say(dispatcher, tracker, "utter_cancel_no_subscription", "no_subscription")
            return []
        phrases = phrases_for(tracker)
        facts = subscription_facts(sub, phrases)
        sub_payload = {"subscription_id": sub.subscription_id, "plan": sub.plan, "status": sub.status,
                       "ends_on": (sub.ends_on or sub.renews_on).isoformat()}  # fmt: skip
        if sub.status != "active":
            self.say(dispatcher, tracker, "utter_cancel_already", "already_cancelled", {"subscription": sub_payload},
                     **facts)  # fmt: skip
            return []
        if tracker.get_slot("cancel_confirmed") is not True:
            self.say(dispatcher, tracker, "utter_cancel_declined", "declined", {"subscription": sub_payload}, **facts)
            return []
        current, ticket = repo.request_cancellation(sub, tracker.sender_id)
        facts = subscription_facts(current, phrases)
        sub_payload.update(status=current.status, ends_on=(current.ends_on or current.renews_on).isoformat())
        self.say(dispatcher, tracker, "utter_cancel_done", "cancelled",
                 {"subscription": sub_payload, "ticket": ticket.as_payload()},
                 reference=spoken_digits(ticket.reference), **facts)  # fmt: skip
        return _with_ticket(tracker, ticket.as_payload())


class ActionSubmitComplaint(_SubmitTask):
    task = "complaint"
    task_slots = ("complaint_category",)

    def name(self) -> str:
        return "action_submit_complaint"

    def submit(self, dispatcher: CollectingDispatcher, tracker: Tracker, outcome: Any) -> list[EventType]:
        category = str(tracker.get_slot("complaint_category") or "other")
        account = str(tracker.get_slot("account_number"))
        order = tracker.get_slot("order_number")
        ticket = repository().open_ticket(
            kind="complaint", conversation_id=tracker.sender_id, account_number=account,
            subject=f"{category}/{order or account}", order_number=order, category=category,
            details=_complaint_text(tracker),
        )  # fmt: skip
        spoken_categories = phrases_for(tracker).complaint_categories
        spoken = spoken_categories.get(category, spoken_categories["other"])
        self.say(dispatcher, tracker, "utter_complaint_logged", "logged", {"ticket": ticket.as_payload()},
                 category=spoken, reference=spoken_digits(ticket.reference))  # fmt: skip
        return _with_ticket(tracker, ticket.as_payload())


def _complaint_text(tracker: Tracker) -> str:
    """What the caller said when they complained (the ticket's details)."""
    said = [e.get("text") or "" for e in tracker.events if e.get("event") == "user"
            and ((e.get("parse_data") or {}).get("intent") or {}).get("name") == "complain"]  # fmt: skip
    return said[-1] if said else _text(tracker)


# ----------------------------------------------------------------------------- "say that again"
class ActionRepeat(Action):
    """Says the bot's last reply again (same words and payload), in the current tone's prosody."""

    def name(self) -> str:
        return "action_repeat"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        for event in reversed(tracker.events):
            if event.get("event") == "bot" and event.get("text"):
                custom = dict((event.get("data") or {}).get("custom") or {})
                custom.update(tone=current_tone(tracker), repeated=True)
                dispatcher.utter_message(text=event["text"], json_message=custom)
                return []
        utter_with_payload(dispatcher, "utter_greet", tracker)
        return []
