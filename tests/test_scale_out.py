"""Scale-out on existing engines: two Rasa instances sharing a PostgreSQL tracker store and a Redis
lock store (real servers from Debian's packages, on loopback). A conversation continues across the
loss and restart of either instance with nothing lost, and the gateway's Rasa client fails over."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from servers import PostgresInfo, postgres_server, redis_server

from connectors.devtools.rasa_stack import RasaStack
from connectors.dialogue.rasa_client import RasaClient
from emotune.config import RasaConfig

pytestmark = [pytest.mark.rasa, pytest.mark.slow]

SENDER = "call-scale-out-1"
ANGRY = {
    "emotion": {"label": "angry", "confidence": 0.9, "intensity": "high",
                "probabilities": {"neutral": 0.03, "happy": 0.02, "sad": 0.05, "angry": 0.9}},
    "tone": "calm",
    "escalation": {"negative_emotions": ["angry"], "streak_turns": 3, "min_confidence": 0.5, "on_request": True},
}


def _endpoints(pg: PostgresInfo, redis_port: int) -> str:
    # The password comes from the environment (Rasa interpolates ${VAR}); nothing secret on disk.
    return (
        "tracker_store:\n  type: SQL\n  dialect: postgresql\n"
        f"  url: {pg.host}\n  port: {pg.port}\n  db: {pg.db}\n  username: {pg.user}\n"
        "  password: ${EMOTUNE_TEST_PG_PASSWORD}\n"
        f"lock_store:\n  type: redis\n  url: 127.0.0.1\n  port: {redis_port}\n  db: 1\n"
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[RasaStack, RasaStack, PostgresInfo]]:
    with postgres_server() as pg, redis_server() as redis_port:
        os.environ["EMOTUNE_TEST_PG_PASSWORD"] = pg.password
        extra = _endpoints(pg, redis_port)
        a = RasaStack("contact_center", ci=True, endpoints_extra=extra)
        b = RasaStack("contact_center", ci=True, endpoints_extra=extra)
        try:
            a.start()
            b.start()
            yield a, b, pg
        finally:
            a.stop()
            b.stop()
            os.environ.pop("EMOTUNE_TEST_PG_PASSWORD", None)


def _handoff(replies: list[dict[str, Any]]) -> dict[str, Any] | None:
    for reply in replies:
        custom = reply.get("custom")
        if isinstance(custom, dict) and "handoff" in custom:
            return custom["handoff"]
    return None


def test_conversation_survives_restart_of_either_instance(cluster: tuple[RasaStack, RasaStack, PostgresInfo]) -> None:
    a, b, pg = cluster
    assert _handoff(a.send(SENDER, "my bill is wrong again", ANGRY)) is None  # angry turn 1 on A
    a.kill_rasa()  # instance A dies mid-conversation
    assert _handoff(b.send(SENDER, "my bill is wrong again", ANGRY)) is None  # turn 2 on B
    a.restart()
    b.kill_rasa()  # now B dies; A (restarted) must know turns 1 and 2
    handoff = _handoff(a.send(SENDER, "my bill is wrong again", ANGRY))  # turn 3 on A
    assert handoff is not None and handoff["reason"] == "sustained_anger", "the streak spanned both instances"
    b.restart()
    tracker = b.tracker(SENDER)
    user_turns = [e for e in tracker["events"] if e.get("event") == "user"]
    assert len(user_turns) == 3
    # And the events really live in PostgreSQL.
    count = subprocess.run(
        ["psql", "-h", pg.host, "-p", str(pg.port), "-U", pg.user, "-d", pg.db, "-tAc",
         f"select count(*) from events where sender_id = '{SENDER}' and type_name = 'user'"],
        capture_output=True, text=True, env={**os.environ, "PGPASSWORD": pg.password}, check=True,
    )
    assert int(count.stdout.strip()) == 3


def test_gateway_client_fails_over_to_a_replica(cluster: tuple[RasaStack, RasaStack, PostgresInfo]) -> None:
    a, b, _ = cluster

    async def turns() -> list[Any]:
        config = RasaConfig(url=a.url, replicas=[b.url], timeout_s=20)
        async with RasaClient(config) as client:
            first = await client.send("call-failover", "where is my parcel", {"tone": "standard"})
            a.kill_rasa()
            second = await client.send("call-failover", "where is my parcel", {"tone": "standard"})
            return [first, second, client.webhook_url]

    try:
        first, second, used = asyncio.run(turns())
    finally:
        a.restart()
    assert not first.fallback and not second.fallback, (first, second)
    assert used.startswith(b.url)
    tracker = b.tracker("call-failover")
    assert len([e for e in tracker["events"] if e.get("event") == "user"]) == 2
