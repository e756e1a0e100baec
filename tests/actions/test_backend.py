"""The backend repository on real databases (SQLite and PostgreSQL): reads, idempotent writes, the
refund rule on every seeded order, a database that is down, and the number parser."""

from __future__ import annotations

import time
from datetime import date, timedelta

import pytest

from actions.backend import BackendUnavailable, Repository, open_repository
from actions.backend.policy import REFUND_WINDOW_DAYS, refund_decision
from actions.numbers import digits_in, number_kind, spoken_digits


def test_reads_the_seeded_rows(backend: Repository) -> None:
    order = backend.order("482107")
    assert order is not None and order.status == "delivered" and order.total_pence == 5999
    assert order.delivered_on == date.today() - timedelta(days=5)
    assert backend.order("999999") is None
    customer = backend.customer("48213706")
    assert customer is not None and customer.name
    assert backend.latest_order("48213706").order_number == "482233"  # type: ignore[union-attr]
    sub = backend.subscription("48213706")
    assert sub is not None and (sub.plan, sub.status, sub.monthly_pence) == ("Plus", "active", 799)
    assert backend.subscription("61734420") is None  # only a cancelled one


@pytest.mark.parametrize(
    ("order_number", "code"),
    [("482107", "eligible"), ("482233", "not_delivered"), ("517820", "outside_window"), ("517944", "eligible"),
     ("603311", "not_delivered"), ("603512", "already_refunded")],
)  # fmt: skip
def test_refund_rule_on_every_seeded_order(backend: Repository, order_number: str, code: str) -> None:
    order = backend.order(order_number)
    assert order is not None
    assert refund_decision(order, date.today(), backend.open_refund_for(order_number)).code == code


def test_refund_window_edge(backend: Repository) -> None:
    order = backend.order("482107")
    assert order is not None and order.delivered_on is not None
    last_day = order.delivered_on + timedelta(days=REFUND_WINDOW_DAYS)
    assert refund_decision(order, last_day, None).eligible
    assert not refund_decision(order, last_day + timedelta(days=1), None).eligible


def test_tickets_are_idempotent_per_conversation(backend: Repository) -> None:
    def refund(conversation: str):  # type: ignore[no-untyped-def]
        return backend.open_ticket(kind="refund", conversation_id=conversation, account_number="48213706",
                                   subject="482107", order_number="482107", amount_pence=5999)  # fmt: skip

    first = refund("call-a")
    again = refund("call-a")
    assert first.created and not again.created
    assert again.reference == first.reference and len(first.reference) == 6
    assert [t.reference for t in backend.tickets_of("call-a")] == [first.reference]
    # The open refund is visible to every later conversation: the rule then says "already open".
    assert backend.open_refund_for("482107") == again.__class__(**{**first.__dict__, "created": False})
    other = refund("call-b")
    assert other.created and other.reference != first.reference


def test_cancellation_at_period_end_is_idempotent(backend: Repository) -> None:
    sub = backend.subscription("55120934")
    assert sub is not None
    current, ticket = backend.request_cancellation(sub, "call-c")
    assert (current.status, current.ends_on) == ("cancelling", sub.renews_on)
    again_sub, again = backend.request_cancellation(sub, "call-c")
    assert again.reference == ticket.reference and not again.created
    assert again_sub.ends_on == sub.renews_on


def test_a_database_that_is_down_is_reported_fast(dead_backend: str) -> None:
    repository = open_repository(dead_backend)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="cannot reach"):
        repository.order("482107")
    assert time.monotonic() - started < 5


def test_sqlite_default_is_created_and_seeded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "new" / "shop.sqlite3"
    repository = open_repository(f"sqlite:///{path}")
    assert path.is_file() and repository.order("517944") is not None
    assert [p.name for p in path.parent.iterdir()] == ["shop.sqlite3"]  # no scratch file left


@pytest.mark.parametrize(
    ("said", "digits"),
    [
        ("four eight two one oh seven", "482107"),
        ("482107#", "482107"),  # keypad digits arriving as text
        ("4-8-2-1-0-7", "482107"),
        ("my order number is 4 8 2 1 0 7", "482107"),
        ("double five one two oh nine three four", "55120934"),
        ("forty eight twenty one oh seven", "482107"),
        ("six one seven three four four two zero", "61734420"),
        ("I don't know", ""),
        ("o k then", ""),
    ],
)
def test_numbers_from_speech_and_keypad(said: str, digits: str) -> None:
    assert digits_in(said) == digits


def test_number_kinds_and_read_back() -> None:
    assert (number_kind("482107"), number_kind("48213706"), number_kind("4821")) == ("order", "account", None)
    assert spoken_digits("482107") == "4 8 2 1 0 7"
