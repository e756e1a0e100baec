"""The hand-off's context reaches the human, per-call profiles, and scripted calls that do each task.

Everything is real and on loopback: the contact-center Rasa server + action server over a fresh
SQLite backend, the gateway with the shipped emotion model, Whisper and espeak-ng. Caller speech in
the scripted calls is **made with espeak-ng at run time** (no recordings): each task is one call of
short utterances through our protocol, answered by Whisper -> Rasa -> the backend, and what the bot
says is checked against the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from pydantic import SecretStr
from test_gateway_e2e import records as call_log  # the call's log once the gateway has finished the call
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from connectors.devtools.emotune_ws_client import (
    BotReply,
    EmotuneWsClient,
    Handoff,
    MarkPlaced,
    Ready,
    ServerEnded,
    ServerError,
    TranscriptMessage,
)
from connectors.devtools.rasa_stack import RasaStack
from connectors.devtools.twilio_client import ClearRequested, MarkRequested, TwilioStreamClient
from connectors.gateway import Gateway
from connectors.gateway.handoffs import HandoffStore
from connectors.speech.tts import EspeakSynthesizer
from emotion_runtime.audio import encode as encode_audio
from emotune.config import PROJECT_ROOT, EmotuneConfig, Prosody, load_config

pytestmark = [pytest.mark.rasa, pytest.mark.slow]

CALLERS_TOKEN = "callers-test-token"
FEED_TOKEN = "supervisors-test-token"
BACKEND_ENV = "EMOTUNE_BACKEND_URL"
SIP_AGENT = "sip:agent@pbx.example.com"


# -- the stack -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    db = tmp_path_factory.mktemp("backend") / "shop.sqlite3"  # created and seeded by the action server
    os.environ[BACKEND_ENV] = f"sqlite:///{db}"
    try:
        yield db
    finally:
        os.environ.pop(BACKEND_ENV, None)


@pytest.fixture(scope="module")
def rasa(backend: Path) -> Iterator[RasaStack]:
    with RasaStack("contact_center", ci=True) as stack:
        yield stack


def make_config() -> EmotuneConfig:
    config = load_config(PROJECT_ROOT / "config.yml")
    config.gateway.auth_token = SecretStr(CALLERS_TOKEN)
    config.gateway.feed_token = SecretStr(FEED_TOKEN)  # the supervisors' (and agent desktops') token
    config.gateway.log_transcripts = True  # these tests read the turns' text back from the call log
    config.gateway.insecure_dev = True  # unsigned Twilio streams on loopback (signatures: test_gateway_security)
    config.gateway.twilio.transfer_to = SIP_AGENT
    return config


@pytest.fixture
async def gateway(rasa: RasaStack, tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = Gateway(make_config(), log_dir=tmp_path, rasa_url=rasa.url, config_path=PROJECT_ROOT / "config.yml")
    await gw.start(port=0)
    try:
        yield gw
    finally:
        await gw.stop()


async def lookup(gateway: Gateway, call_id: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient() as client:
        return await client.get(f"http://127.0.0.1:{gateway.port}/v1/handoff/{call_id}", headers=headers)


# -- Twilio: the <Dial> names the hand-off, the agent desktop fetches the context ----------------------
async def twilio_call_pressing_zero(gateway: Gateway, call_sid: str) -> None:
    """A Twilio stream whose caller presses 0 (turn_taking.dtmf: ask for a human); marks echoed
    at once, silence on the line until the gateway ends the stream for the transfer."""
    client = TwilioStreamClient(call_sid=call_sid)
    silence = encode_audio(np.zeros(160, dtype=np.float32), "mulaw")
    async with connect(f"ws://127.0.0.1:{gateway.port}/twilio") as ws:
        await ws.send(client.connected())
        await ws.send(client.start())
        for _ in range(10):
            await ws.send(client.media(silence))
        await ws.send(client.dtmf("0"))
        with contextlib.suppress(ConnectionClosed):  # the gateway closes the stream: Twilio runs the transfer TwiML
            await on_the_line(ws, client, [], until=lambda: False, echo_marks=True, timeout_s=60)


async def on_the_line(ws: ClientConnection, client: TwilioStreamClient, received: list[Any],
                      until: Callable[[], bool], echo_marks: bool, timeout_s: float = 90) -> None:  # fmt: skip
    """A Twilio line: 20 ms of silence at a time, what the gateway sends appended to ``received`` (marks
    echoed at once with ``echo_marks``), until ``until()``."""
    silence = encode_audio(np.zeros(160, dtype=np.float32), "mulaw")
    async with asyncio.timeout(timeout_s):
        while not until():
            await ws.send(client.media(silence))
            try:
                message = await asyncio.wait_for(ws.recv(), 0.02)
            except TimeoutError:
                continue
            for event in client.receive_text(str(message)):
                received.append(event)
                if echo_marks and isinstance(event, MarkRequested):
                    await ws.send(client.mark(event.name))


async def test_twilio_transfer_names_the_handoff_and_the_desktop_fetches_it(gateway: Gateway) -> None:
    await twilio_call_pressing_zero(gateway, "CAhandoff0001")
    log = await call_log(gateway, "CAhandoff0001")
    transfer = next(r for r in log if r["type"] == "transfer_requested")
    assert "<Sip>sip:agent@pbx.example.com?x-emotune-call-sid=CAhandoff0001&amp;x-emotune-reason=requested" in transfer["twiml"]
    handoff = next(r for r in log if r["type"] == "handoff")
    # Without gateway.twilio.agent_context the gateway does not claim delivery, so the bot did not either.
    assert handoff["delivered"] is False and handoff["context"]["caller_told"] == "connecting", handoff
    assert handoff["lookup"] == "/v1/handoff/CAhandoff0001"
    turn = next(r for r in log if r["type"] == "turn")
    assert "summary" not in turn["bot_text"], turn

    for token in (None, "wrong", CALLERS_TOKEN):  # the callers' token is not the agents'
        assert (await lookup(gateway, "CAhandoff0001", token)).status_code == 401
    found = await lookup(gateway, "CAhandoff0001", FEED_TOKEN)
    assert found.status_code == 200 and found.headers["content-type"] == "application/json"
    body = found.json()
    context = body["context"]
    assert body["call_id"] == "CAhandoff0001" and body["protocol"] == "twilio"
    assert context["version"] == 1 and context["reason"] == "requested" and context["summary"]
    assert context["conversation_id"].startswith("twilio-")  # the gateway's, never the platform's id
    assert context["last_caller_words"] == ["/request_human"]  # the keypad's dialogue message
    missing = await lookup(gateway, "CAnobody", FEED_TOKEN)
    assert missing.status_code == 404 and "CAnobody" in missing.json()["error"]

    # The operator declares its desktop fetches the context: from the next call on, the bot tells
    # the caller their colleague sees a summary, and the gateway says so on the feed.
    gateway.config.gateway.twilio.agent_context = True
    await twilio_call_pressing_zero(gateway, "CAhandoff0002")
    log = await call_log(gateway, "CAhandoff0002")
    handoff = next(r for r in log if r["type"] == "handoff")
    assert handoff["delivered"] is True and handoff["context"]["caller_told"] == "briefed", handoff
    assert "summary" in next(r for r in log if r["type"] == "turn")["bot_text"]
    assert (await lookup(gateway, "CAhandoff0002", FEED_TOKEN)).json()["context"]["caller_told"] == "briefed"


def test_handoff_store_is_bounded_and_expires() -> None:
    now = [1000.0]
    store = HandoffStore(max_entries=2, ttl_s=60.0, clock=lambda: now[0])
    for call in ("CA1", "CA2", "CA3"):
        store.put(call, "twilio", {"reason": "requested"})
    assert store.get("CA1") is None and store.get("CA3") is not None and len(store) == 2  # oldest dropped
    now[0] += 61.0
    assert store.get("CA3") is None and len(store) == 0  # expired
    with pytest.raises(ValueError):
        HandoffStore(max_entries=0)


# -- our protocol: the handoff message carries the context; profile and metadata per call -------------
@dataclass
class Session:
    ws: ClientConnection
    client: EmotuneWsClient = field(default_factory=EmotuneWsClient)
    events: list[Any] = field(default_factory=list)

    async def next_answer(self, until: type = MarkPlaced, timeout_s: float = 60.0) -> list[Any]:
        """Events up to ``until``: by default the mark after the bot's reply (its audio "played": the
        app echoes every mark at once); a hand-off comes after its reply's mark. The end or an error
        also ends the wait."""
        got: list[Any] = []
        async with asyncio.timeout(timeout_s):
            while True:
                message = await self.ws.recv()
                parsed = self.client.receive_bytes(message) if isinstance(message, bytes) else self.client.receive_text(message)
                got += parsed
                for event in parsed:
                    if isinstance(event, MarkPlaced):
                        await self.ws.send(self.client.mark(event.name))
                    if isinstance(event, until | ServerEnded | ServerError):
                        self.events += got
                        return got


async def open_session(gateway: Gateway, call_id: str, **start: Any) -> tuple[Session, list[Any]]:
    ws = await connect(f"ws://127.0.0.1:{gateway.port}/v1/stream",
                       additional_headers={"Authorization": f"Bearer {CALLERS_TOKEN}"})  # fmt: skip
    session = Session(ws)
    await ws.send(session.client.start(call_id=call_id, **start))
    first = session.client.receive_text(str(await asyncio.wait_for(ws.recv(), 30)))
    return session, first


async def test_our_handoff_message_carries_the_context_and_metadata_reaches_rasa(
    gateway: Gateway, rasa: RasaStack
) -> None:
    session, first = await open_session(gateway, "app-handoff-1", profile=None, metadata={"crm_id": "C-77"})
    assert isinstance(first[0], Ready)
    await session.ws.send(session.client.text("where is my parcel"))
    await session.next_answer()
    await session.ws.send(session.client.text("I want to talk to a human"))
    answer = await session.next_answer(until=Handoff)
    await session.ws.close()
    handoff = next(e for e in answer if isinstance(e, Handoff))
    context = handoff.context
    assert context is not None and handoff.reason == context["reason"] == "requested"
    assert context["caller_told"] == "briefed"  # our protocol delivers it, and the bot said so
    assert context["last_caller_words"] == ["where is my parcel", "I want to talk to a human"]
    assert context["intent"] == "check_delivery" and context["summary"].startswith("Caller asked for a human.")
    said = [e.text for e in session.events if isinstance(e, BotReply)]
    assert any("summary" in text for text in said), said
    # The start's metadata reached Rasa on every turn, beside what the gateway declares.
    tracker = rasa.tracker(context["conversation_id"])
    user_turns = [e for e in tracker["events"] if e.get("event") == "user"]
    assert len(user_turns) == 2
    for event in user_turns:
        metadata = event["metadata"]
        assert metadata["client"] == {"crm_id": "C-77"} and metadata["profile"] == "contact_center"
        assert metadata["capabilities"] == {"handoff_context": True} and metadata["channel"] == "emotune-ws"
    stored = (await lookup(gateway, "app-handoff-1", FEED_TOKEN)).json()
    assert stored["protocol"] == "emotune-ws" and stored["context"] == dict(context)


async def test_unknown_profile_is_refused_with_the_profiles_served(gateway: Gateway) -> None:
    session, first = await open_session(gateway, "app-kiosk", profile="kiosk")
    (error,) = first
    assert isinstance(error, ServerError) and error.code == "bad_start" and error.fatal
    assert "'kiosk' is not served here" in error.message and "contact_center, in_car" in error.message
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(session.ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1002


async def test_profile_selects_the_bot_and_tone_policy_per_call(rasa: RasaStack, tmp_path: Path) -> None:
    """One gateway, two calls: the in_car profile's call is answered by the real in-car bot with the
    in-car tone policy; the default call by the contact-center bot."""
    with RasaStack("in_car", ci=True) as in_car:
        data = yaml.safe_load((PROJECT_ROOT / "config.yml").read_text())
        data["profiles"]["in_car"]["rasa"]["url"] = in_car.url
        data["profiles"]["in_car"]["tone_policy"]["default_tone"] = "warm"  # visible on a neutral turn
        path = tmp_path / "config.yml"
        path.write_text(yaml.safe_dump(data))
        gw = Gateway(make_config(), log_dir=tmp_path, rasa_url=rasa.url, config_path=path)
        await gw.start(port=0)
        try:
            replies = {}
            for call_id, profile in (("car-1", "in_car"), ("desk-1", "contact_center")):
                session, _ = await open_session(gw, call_id, profile=profile)
                await session.ws.send(session.client.text("I'm so tired"))
                answer = await session.next_answer()
                await session.ws.close()
                replies[profile] = next(e for e in answer if isinstance(e, BotReply))
            car_log = await call_log(gw, "car-1")
        finally:
            await gw.stop()
        conversation = next(r for r in car_log if r["type"] == "call_started")["conversation_id"]
        tracker = in_car.tracker(conversation)
    car, desk = replies["in_car"], replies["contact_center"]
    assert car.tone == "warm" and desk.tone == "standard", (car, desk)
    assert car.text != desk.text
    user = next(e for e in tracker["events"] if e.get("event") == "user")
    assert user["text"] == "I'm so tired" and user["metadata"]["profile"] == "in_car"
    assert user["parse_data"]["intent"]["name"] == "feeling_tired"


# -- scripted calls, caller speech made with espeak-ng, one call per task ------------------------------
VOICE = EspeakSynthesizer("en-us")
CALLER_PROSODY = Prosody(rate=0.9)  # a little slower: digits come through Whisper more reliably


def spoken(text: str) -> bytes:
    """``text`` said by espeak-ng now, as the client's pcm16 16 kHz frames' bytes."""
    speech = VOICE.synthesize(text, CALLER_PROSODY).at_rate(16000)
    return encode_audio(speech.samples, "pcm16")


async def say(session: Session, text: str, until: type = MarkPlaced) -> list[Any]:
    """Stream one utterance and a second of silence (the end-pointer closes the turn), 4x real time."""
    frames = session.client.audio_frames(spoken(text) + encode_audio(np.zeros(16000, dtype=np.float32), "pcm16"))
    for frame in frames:
        await session.ws.send(frame)
        await asyncio.sleep(0.005)
    return await session.next_answer(until)


def bot_text(events: list[Any]) -> str:
    return " ".join(e.text for e in events if isinstance(e, BotReply))


def db_rows(db: Path, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as connection:
        return connection.execute(query, params).fetchall()


async def scripted(
    gateway: Gateway, call_id: str, utterances: list[str], last_until: type = MarkPlaced
) -> tuple[list[str], list[Any], str]:
    """One call: each utterance spoken, each answer awaited (the last one until ``last_until``).
    Returns (the bot's reply to each, every event, the Rasa conversation id)."""
    session, first = await open_session(gateway, call_id)
    assert isinstance(first[0], Ready)
    answers = [await say(session, text, MarkPlaced if i < len(utterances) - 1 else last_until)
               for i, text in enumerate(utterances)]  # fmt: skip
    await session.ws.close()
    log = await call_log(gateway, call_id)
    heard = [(r["caller_text"], r["bot_text"]) for r in log if r["type"] == "turn"]
    assert len(heard) == len(utterances), heard  # every utterance was one turn
    conversation = next(r for r in log if r["type"] == "call_started")["conversation_id"]
    return [bot_text(a) for a in answers], session.events, conversation


async def order_status(gateway: Gateway, backend: Path) -> None:
    said, events, _ = await scripted(gateway, "spoken-status", ["where is my parcel", "four eight two two three three"])
    assert "order number" in said[0].lower(), said
    assert "desk lamp" in said[1] and "Parcelway" in said[1], said  # the backend's row for 482233
    heard = [e.text for e in events if isinstance(e, TranscriptMessage)]
    assert len(heard) == 2 and all(heard), heard  # the app got each turn's words as Whisper heard them


async def refund(gateway: Gateway, backend: Path) -> None:
    said, _, conversation = await scripted(
        gateway, "spoken-refund", ["I want a refund", "four eight two one oh seven", "yes please"]
    )
    assert "£59.99" in said[1] and said[1].rstrip().endswith("?"), said  # confirmation first
    [(reference, amount)] = db_rows(backend, "SELECT reference, amount_pence FROM tickets WHERE conversation_id = ? "
                                    "AND kind = 'refund'", conversation)  # fmt: skip
    assert amount == 5999 and " ".join(reference) in said[2], (reference, said)  # read back digit by digit


async def cancellation(gateway: Gateway, backend: Path) -> None:
    said, _, conversation = await scripted(
        gateway, "spoken-cancel", ["cancel my subscription", "five one seven eight two zero", "yes"]
    )  # an order number identifies the account too (order 517820: account 55120934, Basic plan)
    assert "8-digit account number, or an order number" in said[0], said
    assert said[1].rstrip().endswith("?") and "£3.99" in said[1], said  # asks before it cancels
    [(status, ends_on)] = db_rows(backend, "SELECT status, ends_on FROM subscriptions WHERE subscription_id = 'S-1002'")
    assert status == "cancelling" and ends_on, (status, ends_on, said)  # at the period's end, not at once
    assert db_rows(backend, "SELECT kind FROM tickets WHERE conversation_id = ?", conversation) == [("cancellation",)]


async def complaint(gateway: Gateway, backend: Path) -> None:
    said, _, conversation = await scripted(
        gateway, "spoken-complaint",
        ["I want to make a complaint", "six oh three three one one", "the coffee grinder is broken"],
    )  # fmt: skip
    [(reference, category)] = db_rows(backend, "SELECT reference, category FROM tickets WHERE conversation_id = ?",
                                      conversation)  # fmt: skip
    assert category and " ".join(reference) in said[-1], (reference, category, said)


async def handoff_with_context(gateway: Gateway, backend: Path) -> None:
    said, events, _ = await scripted(
        gateway, "spoken-handoff",
        ["where is my parcel", "four eight two two three three", "I want to talk to a human"], last_until=Handoff,
    )  # fmt: skip
    handoff = next(e for e in events if isinstance(e, Handoff))
    assert handoff.context is not None and handoff.context["reason"] == "requested"
    assert handoff.context["slots"].get("order_number") == "482233", handoff.context
    assert handoff.context["caller_told"] == "briefed" and "summary" in said[-1]
    stored = (await lookup(gateway, "spoken-handoff", FEED_TOKEN)).json()["context"]
    assert stored == dict(handoff.context)  # what the agent desktop fetches is what the app got
    assert "order number 482233" in stored["summary"], stored["summary"]


async def test_scripted_calls_complete_each_task(gateway: Gateway, backend: Path) -> None:
    """One spoken call per task on one gateway (its start-up is the slow part); every task is tried
    and every failure reported."""
    # These calls test the tasks: espeak-ng's flat voice must not trip the anger hand-off mid-task.
    gateway.config.escalation.streak_turns = 20
    failures = []
    for task in (order_status, refund, cancellation, complaint, handoff_with_context):
        try:
            await task(gateway, backend)
        except (AssertionError, StopIteration, ValueError, TimeoutError) as exc:
            failures.append(f"{task.__name__}: {type(exc).__name__} {exc}")
    assert not failures, "\n".join(failures)


# -- the keypad: a caller identifies by typing the order number on Twilio ---------------------------
async def twilio_keypad_call(gateway: Gateway, call_sid: str, utterance: str, entries: list[str]) -> list[Any]:
    """A Twilio caller says ``utterance`` (espeak-ng, 8 kHz mu-law), then types each of ``entries`` on
    the keypad (a key every 0.3 s) as soon as the bot's answer to the previous turn arrives, i.e. over
    it (its mark is echoed only afterwards); returns what the gateway sent the caller."""
    client = TwilioStreamClient(call_sid=call_sid)
    silence = encode_audio(np.zeros(160, dtype=np.float32), "mulaw")
    speech = VOICE.synthesize(utterance, CALLER_PROSODY).at_rate(8000)
    received: list[Any] = []  # marks not echoed at once: the bot is still speaking when the keys come

    def marks() -> list[str]:
        return [e.name for e in received if isinstance(e, MarkRequested)]

    async def until_marks(ws: ClientConnection, count: int) -> None:
        await on_the_line(ws, client, received, until=lambda: len(marks()) >= count, echo_marks=False)

    async with connect(f"ws://127.0.0.1:{gateway.port}/twilio") as ws:
        await ws.send(client.connected())
        await ws.send(client.start())
        for frame in client.media_frames(encode_audio(speech.samples, "mulaw") + silence * 50):
            await ws.send(frame)
            await asyncio.sleep(0.005)
        for answered, keys in enumerate(entries, start=1):
            await until_marks(ws, answered)
            for key in keys:
                await ws.send(client.dtmf(key))
                await asyncio.sleep(0.3)
            for name in marks()[answered - 1 :]:
                await ws.send(client.mark(name))
        await until_marks(ws, len(entries) + 1)
    return received


async def test_caller_types_the_order_number_and_hears_the_status(gateway: Gateway, rasa: RasaStack) -> None:
    """Real Twilio frames, Whisper, Rasa, the action server and the SQLite backend. The caller asks by
    voice, types 4 8 2 over the question and pauses (a timeout mid-number: the bot says the length is
    wrong and asks again), then types 4 8 2 2 3 3 # over that: one turn, and the backend's status."""
    gateway.config.escalation.streak_turns = 20  # espeak-ng's flat voice must not trip the anger hand-off
    received = await twilio_keypad_call(gateway, "CAkeypad0001", "where is my parcel", ["482", "482233#"])
    log = await call_log(gateway, "CAkeypad0001")
    turns = [(r["caller_text"], r["bot_text"]) for r in log if r["type"] == "turn"]
    assert len(turns) == 3, turns
    assert "order number" in turns[0][1].lower(), turns
    assert turns[1][0] == "482" and "4 8 2" in turns[1][1] and "6 digits" in turns[1][1], turns
    assert turns[2][0] == "482233" and "desk lamp" in turns[2][1] and "Parcelway" in turns[2][1], turns
    numbers = [(r["digits"], r["reason"]) for r in log if r["type"] == "keypad_number"]
    assert numbers == [("482", "timeout"), ("482233", "terminator")], numbers
    kinds = [r["type"] for r in log if r["type"] in ("barge_in", "bot_audio", "dtmf", "turn")]
    # The keys came while the bot spoke: each entry's first digit stopped it (barge-in), as speech would.
    asked = ["turn", "bot_audio", "dtmf", "barge_in"]
    assert kinds == [*asked, "dtmf", "dtmf", *asked, *["dtmf"] * 6, "turn", "bot_audio"], kinds
    assert sum(isinstance(e, ClearRequested) for e in received) == 2
    conversation = next(r for r in log if r["type"] == "call_started")["conversation_id"]
    tracker = rasa.tracker(conversation)
    assert tracker["slots"]["order_number"] == "482233", tracker["slots"]
    assert [e["text"] for e in tracker["events"] if e.get("event") == "user"][1:] == ["482", "482233"]
