"""The contact-center form actions against a real database (SQLite and PostgreSQL): identification by
speech or keypad, re-asks with the reason, early ends, the writes and what the replies say."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from backend_fixtures import form_tracker
from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from tracker_fixtures import emotion_metadata, load_domain

from actions.backend import Repository
from actions.contact_center import (
    MAX_ID_FAILURES,
    ActionAskCancelConfirmed,
    ActionAskOrderNumber,
    ActionAskRefundConfirmed,
    ActionRepeat,
    ActionSubmitCancel,
    ActionSubmitComplaint,
    ActionSubmitOrderStatus,
    ActionSubmitRefund,
    ValidateCancelForm,
    ValidateComplaintForm,
    ValidateOrderStatusForm,
    ValidateRefundForm,
)
from actions.handoff import ActionHandoff

DOMAIN = load_domain("contact_center")


def run(action: Action, tracker: Tracker) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    """(messages, slot values set, all events)."""
    dispatcher = CollectingDispatcher()
    events = list(asyncio.run(action.run(dispatcher, tracker, DOMAIN)))
    slots = {e["name"]: e["value"] for e in events if e.get("event") == "slot"}
    return dispatcher.messages, slots, events


def only_reply(messages: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(messages) == 1, messages  # one reply (and one custom payload) per turn
    return messages[0]


def ask_order(text: str, intent: str = "inform", form: str = "order_status_form", **slots: Any) -> dict[str, Any]:
    validator = ValidateOrderStatusForm() if form == "order_status_form" else ValidateRefundForm()
    tracker = form_tracker(text, intent, form=form, requested="order_number", slots=slots,
                           extracted={"order_number": text})  # fmt: skip
    return run(validator, tracker)[1]


# ----------------------------------------------------------------------------- identification
@pytest.mark.parametrize("said", ["four eight two one oh seven", "482107#", "it's 4 8 2 1 0 7"])
def test_order_number_by_speech_or_keypad(backend: Repository, said: str) -> None:
    slots = ask_order(said)
    assert slots["order_number"] == "482107" and slots["account_number"] == "48213706"
    assert slots["form_problem"] is None


def test_an_account_number_finds_the_latest_order(backend: Repository) -> None:
    assert ask_order("4 8 2 1 3 7 0 6")["order_number"] == "482233"


@pytest.mark.parametrize(
    ("said", "intent", "code", "response", "heard"),
    [
        ("123456", "inform", "unknown", "utter_number_unknown", "1 2 3 4 5 6"),
        ("4 8 2", "inform", "wrong_length", "utter_number_wrong_length", "4 8 2"),
        ("it is the blue box", "inform", "missing", "utter_number_missing", ""),
        ("I don't know my number", "dont_know_number", "where", "utter_number_where", ""),
        ("no I won't tell you", "deny", "refused", "utter_number_refused", ""),
    ],
)  # fmt: skip
def test_bad_answers_are_re_asked_with_the_reason(
    backend: Repository, said: str, intent: str, code: str, response: str, heard: str
) -> None:
    slots = ask_order(said, intent)
    assert slots["order_number"] is None and slots["form_problem"]["code"] == code
    assert slots["id_failures"] == 1.0 and "requested_slot" not in slots  # the form goes on
    tracker = form_tracker(said, intent, form="order_status_form", requested="order_number", slots=slots)
    messages, cleared, _ = run(ActionAskOrderNumber(), tracker)
    reply = only_reply(messages)
    assert reply["response"] == response and reply["custom"]["task"]["problem"] == code
    assert reply.get("heard", "") == heard
    assert cleared == {"form_problem": None}


def test_repeat_re_asks_without_counting_a_failure(backend: Repository) -> None:
    slots = ask_order("say that again", "repeat", id_failures=1.0)
    assert slots == {"order_number": None, "form_problem": None}


def test_three_failures_stop_the_task_and_offer_a_colleague(backend: Repository) -> None:
    slots = ask_order("000000", id_failures=float(MAX_ID_FAILURES - 1))
    assert slots["task_outcome"] == "unidentified" and slots["requested_slot"] is None
    tracker = form_tracker("000000", "inform", form=None, slots=slots)
    reply = only_reply(run(ActionSubmitOrderStatus(), tracker)[0])
    assert reply["response"] == "utter_task_unidentified" and reply["custom"]["offer"] == "handoff"


def test_database_down_mid_form(dead_backend: str) -> None:
    slots = ask_order("482107")
    assert slots["task_outcome"] == "backend_down" and slots["requested_slot"] is None
    reply = only_reply(run(ActionSubmitOrderStatus(), form_tracker("482107", "inform", form=None, slots=slots))[0])
    assert reply["response"] == "utter_backend_down" and reply["custom"]["offer"] == "handoff"


def test_database_down_at_submit(dead_backend: str) -> None:
    tracker = form_tracker("yes", "affirm", form=None, slots={"order_number": "482107", "refund_confirmed": True})
    messages, slots, _ = run(ActionSubmitRefund(), tracker)
    assert only_reply(messages)["response"] == "utter_backend_down"
    assert slots["refund_confirmed"] is None  # the task is over: asking again starts afresh


def test_anger_mid_form_rejects_the_form_for_the_hand_off(backend: Repository) -> None:
    tracker = form_tracker("this is ridiculous", "complain", form="refund_form", requested="order_number",
                           slots={"escalation_due": True}, extracted={"order_number": "this is ridiculous"})  # fmt: skip
    _, slots, events = run(ValidateRefundForm(), tracker)
    assert slots == {"order_number": None}
    assert events[-1]["event"] == "action_execution_rejected" and events[-1]["name"] == "refund_form"


# ----------------------------------------------------------------------------- order status
@pytest.mark.parametrize(
    ("order", "response", "fact"),
    [("482107", "utter_order_delivered", "delivered_on"), ("482233", "utter_order_shipped", "carrier"),
     ("517944", "utter_order_lost", "carrier"), ("603311", "utter_order_processing", "expected_on"),
     ("603512", "utter_order_refunded", "item")],
)  # fmt: skip
def test_order_status_says_what_the_backend_says(backend: Repository, order: str, response: str, fact: str) -> None:
    tracker = form_tracker(order, "inform", form=None, slots={"order_number": order})
    reply = only_reply(run(ActionSubmitOrderStatus(), tracker)[0])
    stored = backend.order(order)
    assert stored is not None
    assert reply["response"] == response and reply["order"] == " ".join(order)
    assert reply["custom"]["order"]["status"] == stored.status
    assert reply[fact]


# ----------------------------------------------------------------------------- refund
def test_refund_path_writes_one_ticket_and_reads_it_back(backend: Repository) -> None:
    slots = ask_order("482107", form="refund_form")
    assert slots["task_facts"]["refund"] == "eligible" and "requested_slot" not in slots
    ask = form_tracker("482107", "inform", form="refund_form", requested="refund_confirmed", slots=slots)
    question = only_reply(run(ActionAskRefundConfirmed(), ask)[0])
    assert (question["response"], question["amount"], question["item"]) == (
        "utter_ask_refund_confirmed", "£59.99", "wireless headphones")  # fmt: skip
    confirm = form_tracker("yes please", "affirm", form="refund_form", requested="refund_confirmed", slots=slots,
                           extracted={"refund_confirmed": "yes please"})  # fmt: skip
    assert run(ValidateRefundForm(), confirm)[1]["refund_confirmed"] is True

    done = form_tracker("yes please", "affirm", form=None, sender="call-refund",
                        slots={**slots, "refund_confirmed": True})  # fmt: skip
    messages, set_slots, _ = run(ActionSubmitRefund(), done)
    reply = only_reply(messages)
    [ticket] = backend.tickets_of("call-refund")
    assert reply["response"] == "utter_refund_opened"
    assert reply["reference"] == " ".join(ticket.reference) and reply["amount"] == "£59.99"
    assert reply["custom"]["ticket"]["reference"] == ticket.reference and ticket.amount_pence == 5999
    assert set_slots["tickets"] == [ticket.as_payload()] and set_slots["refund_confirmed"] is None
    # Asked again in the same conversation (or Rasa retries the action): no second ticket.
    again = only_reply(run(ActionSubmitRefund(), done)[0])
    assert again["response"] == "utter_refund_already_open" and again["reference"] == reply["reference"]
    assert len(backend.tickets_of("call-refund")) == 1


@pytest.mark.parametrize(
    ("order", "outcome", "response"),
    [("517820", "outside_window", "utter_refund_outside_window"),
     ("603311", "not_delivered", "utter_refund_not_delivered"),
     ("603512", "already_refunded", "utter_refund_already_refunded")],
)  # fmt: skip
def test_ineligible_refunds_end_the_form_with_the_reason(
    backend: Repository, order: str, outcome: str, response: str
) -> None:
    slots = ask_order(order, form="refund_form")
    assert slots["task_outcome"] == outcome and slots["requested_slot"] is None
    tracker = form_tracker(order, "inform", form=None, slots=slots, sender="call-inelig")
    assert only_reply(run(ActionSubmitRefund(), tracker)[0])["response"] == response
    assert backend.tickets_of("call-inelig") == []


def test_declined_refund_writes_nothing(backend: Repository) -> None:
    tracker = form_tracker("no", "deny", form=None, sender="call-no",
                           slots={"order_number": "482107", "refund_confirmed": False})  # fmt: skip
    assert only_reply(run(ActionSubmitRefund(), tracker)[0])["response"] == "utter_refund_declined"
    assert backend.tickets_of("call-no") == []


# ----------------------------------------------------------------------------- cancellation
def test_cancel_asks_with_the_facts_then_cancels_at_period_end(backend: Repository) -> None:
    tracker = form_tracker("48213706", "inform", form="cancel_form", requested="account_number",
                           extracted={"account_number": "48213706"})  # fmt: skip
    slots = run(ValidateCancelForm(), tracker)[1]
    assert slots["account_number"] == "48213706" and slots["task_facts"]["plan"] == "Plus"
    ask = form_tracker("48213706", "inform", form="cancel_form", requested="cancel_confirmed", slots=slots)
    question = only_reply(run(ActionAskCancelConfirmed(), ask)[0])
    assert question["response"] == "utter_ask_cancel_confirmed" and question["price"] == "£7.99"
    done = form_tracker("yes", "affirm", form=None, sender="call-cancel", slots={**slots, "cancel_confirmed": True})
    reply = only_reply(run(ActionSubmitCancel(), done)[0])
    sub = backend.subscription("48213706")
    assert sub is not None and sub.status == "cancelling" and sub.ends_on == sub.renews_on
    assert reply["response"] == "utter_cancel_done" and reply["ends_on"] == question["ends_on"]
    assert reply["custom"]["ticket"]["kind"] == "cancellation"


def test_cancel_without_a_subscription(backend: Repository) -> None:
    tracker = form_tracker("61734420", "inform", form="cancel_form", requested="account_number",
                           extracted={"account_number": "61734420"})  # fmt: skip
    slots = run(ValidateCancelForm(), tracker)[1]
    assert slots["task_outcome"] == "no_subscription" and slots["requested_slot"] is None
    reply = only_reply(run(ActionSubmitCancel(), form_tracker("x", "inform", form=None, slots=slots))[0])
    assert reply["response"] == "utter_cancel_no_subscription"


def test_declined_cancellation_changes_nothing(backend: Repository) -> None:
    tracker = form_tracker("no", "deny", form=None, slots={"account_number": "55120934", "cancel_confirmed": False})
    assert only_reply(run(ActionSubmitCancel(), tracker)[0])["response"] == "utter_cancel_declined"
    assert backend.subscription("55120934").status == "active"  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- complaint
def test_complaint_category_from_the_complaint_and_a_ticket(backend: Repository) -> None:
    said = "my parcel never arrived and nobody called me"
    start = form_tracker(said, "complain", form="complaint_form", requested=None)
    assert run(ValidateComplaintForm(), start)[1]["complaint_category"] == "delivery"
    done = form_tracker("55120934", "inform", form=None, sender="call-complaint",
                        slots={"account_number": "55120934", "complaint_category": "delivery"},
                        history=[{"event": "user", "text": said, "parse_data": {"intent": {"name": "complain"}}}])  # fmt: skip
    reply = only_reply(run(ActionSubmitComplaint(), done)[0])
    [ticket] = backend.tickets_of("call-complaint")
    assert (ticket.kind, ticket.category) == ("complaint", "delivery")
    assert reply["response"] == "utter_complaint_logged" and reply["category"] == "a delivery"
    assert reply["reference"] == " ".join(ticket.reference)


def test_complaint_category_asked_when_unclear(backend: Repository) -> None:
    answer = form_tracker("it's about the bill", "inform", form="complaint_form", requested="complaint_category",
                          slots={"account_number": "55120934"})  # fmt: skip
    assert run(ValidateComplaintForm(), answer)[1]["complaint_category"] == "billing"


# ----------------------------------------------------------------------------- repeat and hand-off context
def test_repeat_says_the_last_reply_again() -> None:
    said = {"event": "bot", "text": "Order 4 8 2 1 0 7 was delivered.", "data": {"custom": {"tone": "standard"}}}
    tracker = form_tracker("say that again", "repeat", form=None, history=[said], slots={"tone": "calm"})
    reply = only_reply(run(ActionRepeat(), tracker)[0])
    assert reply["text"] == said["text"] and reply["custom"] == {"tone": "calm", "repeated": True}


def test_handoff_mid_form_carries_the_context_and_stops_the_form() -> None:
    ticket = {"reference": "123456", "kind": "complaint"}
    tracker = form_tracker(
        "get me a person", "request_human", form="refund_form", requested="refund_confirmed",
        slots={"order_number": "482107", "account_number": "48213706", "tickets": [ticket], "tone": "calm"},
        metadata=emotion_metadata("angry"),
        history=[{"event": "user", "text": "I want a refund", "parse_data": {"intent": {"name": "request_refund"}},
                  "metadata": emotion_metadata("angry")}],
    )  # fmt: skip
    messages, slots, events = run(ActionHandoff(), tracker)
    reply = only_reply(messages)
    handoff = reply["custom"]["handoff"]
    assert reply["response"] == "utter_handoff"  # no claim that anything was passed on
    assert handoff["version"] == 1 and handoff["reason"] == "requested" and handoff["caller_told"] == "connecting"
    assert handoff["intent"] == "request_refund" and handoff["task"] == "refund"
    assert handoff["slots"] == {"order_number": "482107", "account_number": "48213706"}
    assert handoff["tickets"] == [ticket]
    assert handoff["last_caller_words"] == ["I want a refund", "get me a person"]
    assert [h["label"] for h in handoff["emotion_history"]] == ["angry", "angry"]
    assert "482107" in handoff["summary"] and "123456" in handoff["summary"]
    assert {"event": "active_loop", "name": None, "timestamp": None} in events and slots["requested_slot"] is None


def test_handoff_claims_a_summary_only_when_the_gateway_delivers_it() -> None:
    metadata = {**emotion_metadata("neutral"), "capabilities": {"handoff_context": True}}
    tracker = form_tracker("a human please", "request_human", form=None, metadata=metadata)
    reply = only_reply(run(ActionHandoff(), tracker)[0])
    assert reply["response"] == "utter_handoff_briefed" and reply["custom"]["handoff"]["caller_told"] == "briefed"


def test_accepting_an_offered_colleague_hands_off_with_the_reason() -> None:
    offer = {"event": "bot", "text": "...", "data": {"custom": {"tone": "standard", "offer": "handoff",
             "task": {"name": "refund", "outcome": "backend_down"}}}}  # fmt: skip
    tracker = form_tracker("yes please", "affirm", form=None, history=[offer])
    reply = only_reply(run(ActionHandoff(), tracker)[0])
    assert reply["custom"]["handoff"]["reason"] == "backend_unavailable"
