"""Real backends for the action tests: a seeded SQLite file, and a PostgreSQL server from Debian's
packages (the same throwaway server the scale-out tests start, ``tests/servers.py``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rasa_sdk import Tracker

TESTS_DIR = Path(__file__).resolve().parents[1]
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from servers import free_port, postgres_available, postgres_server  # noqa: E402

from actions.backend import BACKEND_URL_ENV, Repository, open_repository  # noqa: E402
from actions.backend.seed import seed  # noqa: E402

__all__ = ["BACKENDS", "pg_server", "backend", "dead_backend", "form_tracker"]

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    if not postgres_available():
        pytest.skip("PostgreSQL is not installed (Debian package postgresql; `make debian`)")
    with postgres_server(db="shop") as info:
        yield info


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repository:
    """A freshly seeded repository; the actions under test use it too (EMOTUNE_BACKEND_URL)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shop.sqlite3'}"
    else:
        info = request.getfixturevalue("pg_server")
        url = f"postgresql://{info.user}@{info.host}:{info.port}/{info.db}"
        monkeypatch.setenv("PGPASSWORD", info.password)
    monkeypatch.setenv(BACKEND_URL_ENV, url)
    repository = open_repository(url, seed_if_new=False)
    seed(repository, reset=True)
    return repository


@pytest.fixture
def dead_backend(monkeypatch: pytest.MonkeyPatch) -> str:
    """A PostgreSQL URL nothing listens on: the database is down."""
    url = f"postgresql://emotune@127.0.0.1:{free_port()}/shop"
    monkeypatch.setenv(BACKEND_URL_ENV, url)
    monkeypatch.setenv("PGPASSWORD", "unused")
    return url


def form_tracker(
    text: str,
    intent: str,
    *,
    form: str | None,
    requested: str | None = None,
    slots: dict[str, Any] | None = None,
    extracted: dict[str, Any] | None = None,
    sender: str = "call-test",
    metadata: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
) -> Tracker:
    """The tracker an action sees mid-form: the caller said ``text`` while ``form`` asked ``requested``;
    ``extracted`` are the slot candidates Rasa took from it (appended last, as the form does)."""
    all_slots = {"requested_slot": requested, "tickets": [], "id_failures": 0.0, **(slots or {})}
    user = {"event": "user", "text": text, "parse_data": {"intent": {"name": intent, "confidence": 0.99},
            "entities": []}, "metadata": metadata or {}}  # fmt: skip
    events: list[dict[str, Any]] = [{"event": "action", "name": "action_session_start"}, *(history or []), user]
    if form:
        events.append({"event": "action", "name": form})
    for name, value in (extracted or {}).items():
        events.append({"event": "slot", "name": name, "value": value})
        all_slots[name] = value
    return Tracker(
        sender_id=sender,
        slots=all_slots,
        latest_message={"text": text, "intent": {"name": intent, "confidence": 0.99}, "entities": [],
                        "metadata": metadata or {}},  # fmt: skip
        events=events,
        paused=False,
        followup_action=None,
        active_loop={"name": form} if form else {},
        latest_action_name=form or "action_listen",
    )


os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
