"""The async Rasa REST client: against a real Rasa (RasaStack) and against a dead port."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from connectors.devtools.rasa_stack import RasaStack, free_port
from connectors.dialogue.rasa_client import RasaClient, parse_rasa_messages
from emotune.config import RasaConfig
from emotune.errors import DialogueError

ANGRY = {
    "emotion": {
        "label": "angry", "probabilities": {"angry": 0.9, "neutral": 0.1}, "arousal": 0.8, "valence": -0.6,
        "confidence": 0.9, "start_s": 0.0, "end_s": 2.0, "intensity": "high",
    },
    "tone": "calm",
    "escalation": {"negative_emotions": ["angry"], "streak_turns": 3, "min_confidence": 0.5, "on_request": True},
}  # fmt: skip


async def test_dead_port_gives_the_fallback_reply_within_the_timeout() -> None:
    config = RasaConfig(url=f"http://127.0.0.1:{free_port()}", timeout_s=1.0)
    async with RasaClient(config) as client:
        started = time.perf_counter()
        reply = await client.send("call-1", "hello", {"tone": "calm"})
        elapsed = time.perf_counter() - started
    assert reply.fallback is True
    assert reply.text == config.fallback_reply
    assert "cannot reach Rasa" in (reply.fallback_reason or "")
    assert elapsed < config.timeout_s + 0.5
    assert client.failures == 1


def test_parse_rejects_malformed_answers() -> None:
    with pytest.raises(DialogueError, match="expected a list"):
        parse_rasa_messages({"text": "hi"})
    with pytest.raises(DialogueError, match="expected an object"):
        parse_rasa_messages(["hi"])
    reply = parse_rasa_messages(
        [{"recipient_id": "c", "text": "Hello."}, {"recipient_id": "c", "custom": {"tone": "warm"}}]
    )
    assert (reply.text, reply.tone, reply.handoff) == ("Hello.", "warm", None)


async def test_empty_sender_is_refused() -> None:
    async with RasaClient(RasaConfig()) as client:
        with pytest.raises(DialogueError, match="sender"):
            await client.send("", "hello")


@pytest.fixture(scope="module")
def rasa() -> Iterator[RasaStack]:
    with RasaStack("contact_center", ci=True) as stack:
        yield stack


@pytest.mark.rasa
async def test_real_rasa_reply_carries_tone_and_recovers_after_an_outage(rasa: RasaStack) -> None:
    config = RasaConfig(url=rasa.url, timeout_s=5.0)
    async with RasaClient(config) as client:
        calm = await client.send("client-test-1", "where is my parcel", ANGRY)
        assert not calm.fallback, calm.fallback_reason
        assert calm.tone == "calm" and calm.text
        standard = await client.send("client-test-2", "where is my parcel", {**ANGRY, "tone": "standard"})
        assert standard.tone == "standard" and standard.text != calm.text

        rasa.kill_rasa()
        down = await client.send("client-test-1", "where is my parcel", ANGRY)
        assert down.fallback and down.text == config.fallback_reply
        rasa.restart()
        back = await client.send("client-test-1", "where is my parcel", ANGRY)
        assert not back.fallback, back.fallback_reason
        assert back.tone == "calm"
        assert client.failures == 0


@pytest.mark.rasa
async def test_real_rasa_handoff_after_an_anger_streak(rasa: RasaStack) -> None:
    async with RasaClient(RasaConfig(url=rasa.url)) as client:
        replies = [await client.send("client-test-3", "this is ridiculous", ANGRY) for _ in range(3)]
    assert [r.handoff is not None for r in replies] == [False, False, True]
    handoff = replies[-1].handoff
    assert handoff is not None and handoff["reason"] == "sustained_anger" and handoff["summary"]
