"""The contact-center tasks end to end: real Rasa server + action server over REST, on a real database.

One stack on the embedded SQLite backend (a fresh seeded file) runs every task and the bad inputs;
one on PostgreSQL (Debian's server, as in the scale-out tests) completes a refund, then loses its
database mid-call and must say so and offer a colleague. Each turn is answered with text and exactly
one custom payload; what the bot says is checked against the rows in the database.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from servers import postgres_available, postgres_server
from test_rasa_live import RASA_BIN, metadata, parse_reply

from connectors.devtools.rasa_stack import REPO_ROOT, RasaStack

pytestmark = [pytest.mark.rasa, pytest.mark.skipif(not RASA_BIN.is_file(), reason="Rasa venv missing")]

BACKEND_ENV = "EMOTUNE_BACKEND_URL"


class Call:
    """One conversation: send a turn, get (text, custom), keep the transcript for failure messages."""

    def __init__(self, stack: RasaStack, sender: str, emotion: str = "neutral", **meta: Any) -> None:
        self.stack, self.sender, self.emotion, self.meta = stack, sender, emotion, meta
        self.transcript: list[str] = []

    def say(self, text: str, emotion: str | None = None, capabilities: dict[str, Any] | None = None,
            **meta: Any) -> tuple[str, dict[str, Any]]:  # fmt: skip
        sent = metadata(emotion or self.emotion, **{**self.meta, **meta})
        if capabilities is not None:  # what the gateway declares it can do (docs/handoff.md)
            sent["capabilities"] = capabilities
        replies = self.stack.send(self.sender, text, sent)
        reply, custom = parse_reply(replies)
        self.transcript.append(f"caller: {text}\nbot: {reply}  {custom}")
        assert reply, "\n".join(self.transcript)
        return reply, custom


@pytest.fixture(scope="module")
def sqlite_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RasaStack, Path]]:
    db = tmp_path_factory.mktemp("backend") / "shop.sqlite3"  # created and seeded by the action server
    os.environ[BACKEND_ENV] = f"sqlite:///{db}"
    try:
        with RasaStack("contact_center", ci=True) as stack:
            yield stack, db
    finally:
        os.environ.pop(BACKEND_ENV, None)


def rows(db: Path, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as connection:
        return connection.execute(query, params).fetchall()


def test_refund_by_spoken_digits_reads_back_the_written_reference(sqlite_stack: tuple[RasaStack, Path]) -> None:
    stack, db = sqlite_stack
    call = Call(stack, "task-refund")
    _, custom = call.say("I want a refund for my headphones")
    assert custom["task"] == {"name": "refund", "step": "ask_order_number"}
    text, custom = call.say("four eight two one oh seven")
    assert "£59.99" in text and text.endswith("?") and custom["task"]["step"] == "confirm"
    text, custom = call.say("yes please")
    [(reference, amount)] = rows(db, "SELECT reference, amount_pence FROM tickets WHERE conversation_id = ?",
                                 "task-refund")  # fmt: skip
    assert custom["ticket"]["reference"] == reference and amount == 5999
    assert " ".join(reference) in text  # read back digit by digit
    # Asked again in the same call: the same ticket, not a second one.
    text, custom = call.say("I want a refund")
    assert custom["task"]["outcome"] == "already_open" and " ".join(reference) in text
    assert len(rows(db, "SELECT 1 FROM tickets WHERE conversation_id = ?", "task-refund")) == 1


def test_order_status_by_keypad_and_bad_numbers(sqlite_stack: tuple[RasaStack, Path]) -> None:
    stack, _ = sqlite_stack
    call = Call(stack, "task-status")
    call.say("where is my parcel")
    text, custom = call.say("1 2 3 4 5 6")  # unknown
    assert custom["task"]["problem"] == "unknown" and "1 2 3 4 5 6" in text
    text, custom = call.say("4 8")  # wrong format
    assert custom["task"]["problem"] == "wrong_length" and "6 digits" in text
    text, custom = call.say("517944#")  # keypad digits as text
    assert custom["task"]["outcome"] == "lost" and custom["order"]["status"] == "lost"
    assert "QuickShip" in text and "refund" in text


def test_cancel_needs_confirmation_and_cancels_at_period_end(sqlite_stack: tuple[RasaStack, Path]) -> None:
    stack, db = sqlite_stack
    call = Call(stack, "task-cancel", "angry", tone="calm", streak_turns=5)  # angry, but below the streak
    text, _ = call.say("cancel my subscription")
    assert "8-digit account number" in text
    text, custom = call.say("five five one two oh nine three four")
    assert "£3.99" in text and custom["task"]["step"] == "confirm"
    assert rows(db, "SELECT status FROM subscriptions WHERE subscription_id = 'S-1002'") == [("active",)]
    text, custom = call.say("yes")
    assert custom["tone"] == "calm" and custom["task"]["outcome"] == "cancelled"
    [(status, ends_on)] = rows(db, "SELECT status, ends_on FROM subscriptions WHERE subscription_id = 'S-1002'")
    assert status == "cancelling" and custom["subscription"]["ends_on"] == ends_on


def test_complaint_with_category_writes_a_ticket(sqlite_stack: tuple[RasaStack, Path]) -> None:
    stack, db = sqlite_stack
    call = Call(stack, "task-complaint", "sad", tone="warm")
    call.say("I want to make a complaint")
    text, custom = call.say("my order is 603311")
    assert custom["task"] == {"name": "complaint", "step": "category"}
    text, custom = call.say("the coffee grinder is broken")
    [(reference, category, order)] = rows(
        db, "SELECT reference, category, order_number FROM tickets WHERE conversation_id = ?", "task-complaint"
    )
    assert (category, order) == ("product", "603311") and " ".join(reference) in text


def test_caller_who_refuses_is_offered_a_colleague_with_the_context(sqlite_stack: tuple[RasaStack, Path]) -> None:
    stack, _ = sqlite_stack
    call = Call(stack, "task-refuse")
    call.say("I want a refund")
    text, custom = call.say("I don't know my number")
    assert custom["task"]["problem"] == "where" and "confirmation email" in text
    _, custom = call.say("I'm not giving you that")
    assert custom["task"]["problem"] == "refused"
    text, custom = call.say("no")
    assert custom["offer"] == "handoff" and custom["task"]["outcome"] == "unidentified" and text.endswith("?")
    text, custom = call.say("yes")
    handoff = custom["handoff"]
    assert handoff["reason"] == "unidentified" and handoff["intent"] == "request_refund"
    assert handoff["last_caller_words"][-1] == "yes" and handoff["caller_told"] == "connecting"
    assert "summary" not in text.lower()  # the gateway did not say it delivers the context: no claim


def test_anger_mid_form_hands_off_with_collected_slots(sqlite_stack: tuple[RasaStack, Path]) -> None:
    stack, _ = sqlite_stack
    call = Call(stack, "task-angry", "angry", tone="calm", streak_turns=2)
    call.say("I want to cancel my subscription")
    _, custom = call.say("this is ridiculous, 48213706", capabilities={"handoff_context": True})
    handoff = custom["handoff"]
    assert handoff["reason"] == "sustained_anger" and handoff["task"] == "cancel"
    assert handoff["caller_told"] == "briefed"
    # The form stopped: the next turn is a fresh start, not the cancellation question.
    _, custom = call.say("hello", "neutral")
    assert "handoff" not in custom and "task" not in custom


# ----------------------------------------------------------------------------- PostgreSQL, and losing it
@pytest.mark.skipif(not postgres_available(), reason="PostgreSQL is not installed (Debian package postgresql)")
def test_postgresql_backend_and_database_down_mid_call() -> None:
    with ExitStack() as database, ExitStack() as rasa:
        pg = database.enter_context(postgres_server(db="shop"))
        url = f"postgresql://{pg.user}@{pg.host}:{pg.port}/{pg.db}"
        env = {**os.environ, "PGPASSWORD": pg.password}
        subprocess.run([str(REPO_ROOT / ".venv-rasa" / "bin" / "python"), "-m", "actions.backend.seed", "--url", url,
                        "--reset"], cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=120)  # fmt: skip
        os.environ.update({BACKEND_ENV: url, "PGPASSWORD": pg.password})
        try:
            stack = rasa.enter_context(RasaStack("contact_center", ci=True))
        finally:
            os.environ.pop(BACKEND_ENV, None)
            os.environ.pop("PGPASSWORD", None)
        call = Call(stack, "pg-call")
        call.say("I want a refund")
        call.say("517944")
        text, custom = call.say("yes")
        reference = custom["ticket"]["reference"]
        count = subprocess.run(
            ["psql", "-h", pg.host, "-p", str(pg.port), "-U", pg.user, "-d", pg.db, "-tAc",
             f"select count(*) from tickets where reference = '{reference}' and conversation_id = 'pg-call'"],
            capture_output=True, text=True, env=env, check=True,
        )  # fmt: skip
        assert int(count.stdout.strip()) == 1 and " ".join(reference) in text

        database.close()  # the database goes away mid-call
        # The caller stays identified (order 517944): the status lookup finds no database.
        text, custom = call.say("where is my parcel")
        assert custom["task"]["outcome"] == "backend_down" and custom["offer"] == "handoff"
        assert "isn't answering" in text and "Nothing was changed" in text
        _, custom = call.say("yes")
        assert custom["handoff"]["reason"] == "backend_unavailable"
        assert custom["handoff"]["tickets"][0]["reference"] == reference
