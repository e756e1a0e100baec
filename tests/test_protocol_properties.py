"""Property tests: no input makes a protocol core crash, hang or lie about what happened.

Scale the search with EMOTUNE_FUZZ_EXAMPLES (default 150 per property; tests/fuzz_protocols.py
runs them with many more).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.devtools.audiohook_client import AudioHookClient
from connectors.devtools.emotune_ws_client import EmotuneWsClient
from connectors.devtools.twilio_client import TwilioStreamClient
from connectors.protocols import (
    AudioHookServer,
    AudioReceived,
    CallProtocol,
    EmotuneWsServer,
    Event,
    NonceCache,
    ProtocolViolation,
    TwilioMediaStream,
    mulaw_to_pcm16,
    pcm16_to_mulaw,
    sign_request,
    verify_signature,
)
from connectors.protocols.audiohook import format_duration, parse_duration
from connectors.protocols.emotune_ws import ERROR_CODES
from emotune.errors import AuthenticationError, ProtocolError, SequenceError

EXAMPLES = int(os.environ.get("EMOTUNE_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


# ---- fresh and mid-session cores of every kind -------------------------------------------------
def fresh_twilio() -> CallProtocol:
    return TwilioMediaStream()


def live_twilio() -> CallProtocol:
    core = TwilioMediaStream()
    core.receive_text(TwilioStreamClient().start())
    return core


def fresh_audiohook() -> CallProtocol:
    return AudioHookServer()


def live_audiohook() -> CallProtocol:
    core = AudioHookServer()
    core.receive_text(AudioHookClient(session_id="30b0e395-84d3-4570-ac13-9a62d8f514c0").open())
    core.data_to_send()
    return core


def fresh_emotune() -> CallProtocol:
    return EmotuneWsServer()


def live_emotune() -> CallProtocol:
    core = EmotuneWsServer()
    core.receive_text(EmotuneWsClient().start())
    core.data_to_send()
    return core


FACTORIES: list[Callable[[], CallProtocol]] = [
    fresh_twilio,
    live_twilio,
    fresh_audiohook,
    live_audiohook,
    fresh_emotune,
    live_emotune,
]


def valid_messages() -> list[str]:
    """Well-formed messages of every protocol: the seeds that mutations start from."""
    twilio = TwilioStreamClient()
    hook = AudioHookClient(session_id="30b0e395-84d3-4570-ac13-9a62d8f514c0")
    ours = EmotuneWsClient()
    return [
        twilio.connected(),
        twilio.start(),
        twilio.media(b"\xff" * 160),
        twilio.dtmf("1"),
        twilio.mark("m"),
        twilio.stop(),
        hook.open(),
        hook.ping(0.1),
        hook.paused(),
        hook.resumed(),
        hook.update("en-US"),
        hook.error(500, "x"),
        hook.message("discarded", {"start": "PT1S", "discarded": "PT1S"}),
        hook.close(),
        ours.start(),
        ours.text("hi"),
        ours.ping(1),
        ours.mark("m"),
        ours.end(),
    ]


SEEDS = valid_messages()


@st.composite
def mutated_messages(draw: st.DrawFn) -> str:
    """A valid message with one field replaced, deleted or nested value swapped for junk."""
    message = json.loads(draw(st.sampled_from(SEEDS)))
    target = message
    # Walk into a nested object sometimes (media, start, parameters...).
    nested = [k for k, v in message.items() if isinstance(v, dict) and v]
    go_deeper: bool = draw(st.booleans())
    if nested and go_deeper:
        target = message[draw(st.sampled_from(nested))]
    key = draw(st.sampled_from(sorted(target)))
    if draw(st.booleans()):
        del target[key]
    else:
        target[key] = draw(json_values)
    return json.dumps(message)


def check_result(core: CallProtocol, events: list[Event]) -> None:
    """What every receive call must satisfy, whatever came in."""
    assert isinstance(events, list)
    for event in events:
        assert isinstance(event, Event)
        if isinstance(event, ProtocolViolation):
            assert isinstance(event.error, ProtocolError) and event.message and event.code
            assert 1000 <= event.close_code <= 1014
    for frame in core.data_to_send():
        assert isinstance(frame, str | bytes)
        if isinstance(frame, str):
            reply = json.loads(frame)
            assert isinstance(reply, dict)  # every reply is well-formed JSON
            if isinstance(core, EmotuneWsServer) and reply["type"] == "error":
                assert reply["code"] in ERROR_CODES and isinstance(reply["fatal"], bool)
            if isinstance(core, AudioHookServer):
                assert reply["version"] == "2" and 1 <= reply["seq"] <= core.seq
                assert reply["clientseq"] <= core.clientseq
                assert reply["type"] in ("opened", "pong", "closed", "disconnect")
                if reply["type"] == "disconnect":
                    assert reply["parameters"]["reason"] in ("error", "unauthorized")
    if core.close_request is not None:
        assert 1000 <= core.close_request.code <= 4999
        assert len(core.close_request.reason.encode("utf-8")) <= 123


@FUZZ
@given(factory=st.sampled_from(FACTORIES), text=st.text(max_size=300))
def test_random_text_never_crashes(factory: Callable[[], CallProtocol], text: str) -> None:
    core = factory()
    events = core.receive_text(text)
    check_result(core, events)
    try:
        is_object = isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        is_object = False
    if not is_object:
        assert any(isinstance(e, ProtocolViolation) for e in events)


@FUZZ
@given(factory=st.sampled_from(FACTORIES), value=json_values)
def test_random_json_never_crashes(factory: Callable[[], CallProtocol], value: Any) -> None:
    core = factory()
    check_result(core, core.receive_text(json.dumps(value)))


@FUZZ
@given(factory=st.sampled_from(FACTORIES), text=mutated_messages())
def test_mutated_valid_messages_never_crash(factory: Callable[[], CallProtocol], text: str) -> None:
    core = factory()
    check_result(core, core.receive_text(text))


@FUZZ
@given(factory=st.sampled_from(FACTORIES), frames=st.lists(st.binary(max_size=700), max_size=5))
def test_random_binary_frames_never_crash(factory: Callable[[], CallProtocol], frames: list[bytes]) -> None:
    core = factory()
    for frame in frames:
        check_result(core, core.receive_bytes(frame))


@FUZZ
@given(
    factory=st.sampled_from(FACTORIES),
    messages=st.lists(st.sampled_from(SEEDS) | mutated_messages(), max_size=8),
)
def test_message_sequences_never_crash(factory: Callable[[], CallProtocol], messages: list[str]) -> None:
    core = factory()
    for text in messages:
        check_result(core, core.receive_text(text))


# ---- client-side parsers (demo caller, SDK) get the same treatment ---------------------------------
def server_messages() -> list[tuple[str, str]]:
    """(protocol, message) pairs of everything our servers send."""
    out: list[tuple[str, str]] = []
    twilio = live_twilio()
    for frame in [*twilio.send_audio(b"\xff" * 160), *twilio.send_mark("m"), *twilio.send_clear()]:
        out.append(("twilio", str(frame)))
    hook, hook_client = AudioHookServer(), AudioHookClient(session_id="30b0e395-84d3-4570-ac13-9a62d8f514c0")
    hook.receive_text(hook_client.open(supportedLanguages=True))
    frames = [
        *hook.data_to_send(),
        *hook.send_emotion({"label": "angry", "confidence": 0.9}),
        *hook.send_pause(),
    ]
    hook.receive_text(hook_client.ping())
    frames += [*hook.data_to_send(), *hook.close()]
    assert [json.loads(f)["type"] for f in frames] == ["opened", "event", "pause", "pong", "disconnect"]
    out += [("audiohook", str(f)) for f in frames]
    ours = EmotuneWsServer()
    ours.receive_text(EmotuneWsClient().start())
    frames = [*ours.data_to_send(), *ours.send_emotion({"label": "sad"}), *ours.send_transcript("hi")]
    frames += [*ours.send_bot_reply("ok", "calm", audio_format=EmotuneWsClient().audio, custom={"a": 1})]
    frames += [
        *ours.send_handoff("r", "s", "t"),
        *ours.send_mark("m"),
        *ours.send_clear(),
        *ours.send_error("internal", "x"),
    ]
    out += [("emotune", str(f)) for f in frames]
    return out


SERVER_SEEDS = server_messages()
CLIENTS: dict[str, Callable[[], Any]] = {
    "twilio": TwilioStreamClient,
    "audiohook": lambda: AudioHookClient(session_id="30b0e395-84d3-4570-ac13-9a62d8f514c0"),
    "emotune": EmotuneWsClient,
}


@st.composite
def mutated_server_messages(draw: st.DrawFn) -> tuple[str, str]:
    protocol, text = draw(st.sampled_from(SERVER_SEEDS))
    message = json.loads(text)
    target = message
    nested = [k for k, v in message.items() if isinstance(v, dict) and v]
    go_deeper: bool = draw(st.booleans())
    if nested and go_deeper:
        target = message[draw(st.sampled_from(nested))]
    if target:
        key = draw(st.sampled_from(sorted(target)))
        if draw(st.booleans()):
            del target[key]
        else:
            target[key] = draw(json_values)
    return protocol, json.dumps(message)


@FUZZ
@given(protocol=st.sampled_from(sorted(CLIENTS)), text=st.text(max_size=200) | json_values.map(json.dumps))
def test_client_parsers_never_crash_on_random_input(protocol: str, text: str) -> None:
    for event in CLIENTS[protocol]().receive_text(text):
        assert isinstance(event, Event)


@FUZZ
@given(pair=mutated_server_messages())
def test_client_parsers_never_crash_on_mutated_messages(pair: tuple[str, str]) -> None:
    protocol, text = pair
    client = CLIENTS[protocol]()
    if protocol == "audiohook":
        client.seq = 10  # the server messages acknowledge a few client messages
        client.serverseq = (
            json.loads(text).get("seq", 1) - 1 if isinstance(json.loads(text).get("seq"), int) else 0
        )
    for event in client.receive_text(text):
        assert isinstance(event, Event)
        if isinstance(event, ProtocolViolation):
            assert isinstance(event.error, ProtocolError)


def test_unmutated_server_messages_parse_cleanly() -> None:
    """The seeds themselves must be valid, or the mutation tests above prove little."""
    for protocol, text in SERVER_SEEDS:
        client = CLIENTS[protocol]()
        if protocol == "audiohook":
            client.seq, client.serverseq = 10, json.loads(text)["seq"] - 1
        assert not any(isinstance(e, ProtocolViolation) for e in client.receive_text(text)), text


# ---- protocol-specific invariants --------------------------------------------------------------
@FUZZ
@given(skips=st.lists(st.integers(0, 3), min_size=1, max_size=20))
def test_twilio_reports_every_gap_and_keeps_all_audio(skips: list[int]) -> None:
    core, client = TwilioMediaStream(), TwilioStreamClient()
    core.receive_text(client.start())
    audio, gaps = 0, 0
    for skip in skips:
        client.sequence += skip
        events = core.receive_text(client.media(b"\x7f" * 160))
        gaps += sum(isinstance(e, ProtocolViolation) and isinstance(e.error, SequenceError) for e in events)
        audio += sum(len(e.payload) for e in events if isinstance(e, AudioReceived))
    assert gaps == sum(1 for s in skips if s) and audio == 160 * len(skips)


@FUZZ
@given(
    ops=st.lists(
        st.sampled_from(["ping", "paused", "resumed", "update", "audio", "skip_seq", "emotion", "pause"]),
        max_size=15,
    )
)
def test_audiohook_sequence_accounting(ops: list[str]) -> None:
    """Server seq counts up by one; any client gap ends the session with exactly one disconnect."""
    client = AudioHookClient()
    server = AudioHookServer()
    sent: list[dict[str, Any]] = []

    def collect(frames: list[Any]) -> None:
        sent.extend(json.loads(f) for f in frames if isinstance(f, str))

    server.receive_text(client.open())
    collect(server.data_to_send())
    gap_seen = False
    for op in ops:
        if op == "skip_seq":
            client.seq += 1
            gap_seen = gap_seen or server.state not in ("disconnecting", "closed")
            events = server.receive_text(client.ping())
        elif op == "audio":
            events = server.receive_bytes(client.audio(b"\x01" * 160, b"\x02" * 160))
        elif op == "emotion":
            events = []
            if server.state in ("active", "paused", "disconnecting"):
                collect(server.send_emotion({"label": "angry", "confidence": 0.9}))
        elif op == "pause":
            events = []
            collect(server.send_pause())
        else:
            events = server.receive_text(getattr(client, op)() if op != "update" else client.update("en-US"))
        check_result_keep = [e for e in events if isinstance(e, ProtocolViolation)]
        for violation in check_result_keep:
            assert violation.fatal
        collect(server.data_to_send())
    assert [m["seq"] for m in sent] == list(range(1, len(sent) + 1))
    disconnects = [m for m in sent if m["type"] == "disconnect"]
    assert len(disconnects) <= 1
    if gap_seen:
        assert server.state == "disconnecting" and len(disconnects) == 1


@FUZZ
@given(caller=st.binary(max_size=400), data=st.data())
def test_audiohook_stereo_split_is_exact(caller: bytes, data: st.DataObject) -> None:
    agent = data.draw(st.binary(min_size=len(caller), max_size=len(caller)))
    client = AudioHookClient()
    server = AudioHookServer()
    server.receive_text(client.open())
    events = server.receive_bytes(client.audio(caller, agent))
    if caller:
        by_party = {e.channel: e.payload for e in events if isinstance(e, AudioReceived)}
        assert by_party == {"caller": caller, "agent": agent}


header_text = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)


@FUZZ
@given(
    org=header_text,
    session=header_text,
    correlation=header_text,
    key=header_text,
    nonce=st.text(alphabet="abcdefABCDEF0123456789-_", min_size=1, max_size=30),
    secret=st.binary(min_size=1, max_size=64),
    flip=st.integers(0, 31),
)
def test_signatures_roundtrip_and_any_bit_flip_fails(
    org: str, session: str, correlation: str, key: str, nonce: str, secret: bytes, flip: int
) -> None:
    now = 1_700_000_000
    secret_b64 = base64.b64encode(secret).decode()
    headers = {
        "Audiohook-Organization-Id": org,
        "Audiohook-Session-Id": session,
        "Audiohook-Correlation-Id": correlation,
        "X-API-KEY": key,
    }
    signed = {
        **headers,
        **sign_request(headers, "/ws?x=1", "hook.example.com", secret_b64, created=now, nonce=nonce),
    }
    verify_signature(signed, "/ws?x=1", "hook.example.com", secret_b64, now=now, nonce_cache=NonceCache())
    raw = bytearray(base64.b64decode(signed["Signature"].split(":")[1]))
    raw[flip] ^= 0x01
    tampered = {**signed, "Signature": "sig1=:" + base64.b64encode(bytes(raw)).decode() + ":"}
    try:
        verify_signature(
            tampered, "/ws?x=1", "hook.example.com", secret_b64, now=now, nonce_cache=NonceCache()
        )
    except AuthenticationError as exc:
        assert "does not match" in str(exc)
    else:
        raise AssertionError("a tampered signature verified")


@FUZZ
@given(signature_input=st.text(max_size=200), signature=st.text(max_size=100))
def test_signature_header_parser_never_crashes(signature_input: str, signature: str) -> None:
    headers = {"X-API-KEY": "k", "Signature-Input": signature_input, "Signature": signature}
    with contextlib.suppress(AuthenticationError):  # the only acceptable failure
        verify_signature(headers, "/", "h", "c2VjcmV0", now=0, nonce_cache=NonceCache())


@FUZZ
@given(seconds=st.floats(0, 1e6, allow_nan=False))
def test_durations_roundtrip(seconds: float) -> None:
    assert abs(parse_duration(format_duration(seconds), "x") - seconds) <= 0.0005 + 1e-9 * seconds


@FUZZ
@given(codes=st.binary(max_size=200))
def test_mulaw_decode_encode_is_stable(codes: bytes) -> None:
    pcm = mulaw_to_pcm16(codes)
    assert mulaw_to_pcm16(pcm16_to_mulaw(pcm)) == pcm
