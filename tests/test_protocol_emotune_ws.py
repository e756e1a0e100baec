"""emotune-ws v1 core: scripted sessions, every error code, and the spec's examples."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from connectors.devtools.emotune_ws_client import (
    BotAudio,
    BotReply,
    ClearAudio,
    EmotionMessage,
    EmotuneWsClient,
    Handoff,
    MarkPlaced,
    Pong,
    Ready,
    ServerEnded,
    ServerError,
    TranscriptMessage,
)
from connectors.protocols import (
    AudioFormat,
    AudioReceived,
    CallEnded,
    CallStarted,
    CloseCode,
    EmotuneWsServer,
    Event,
    MarkAcknowledged,
    PingReceived,
    ProtocolViolation,
    TextTurn,
    verify_bearer_token,
)
from connectors.protocols.emotune_ws import ERROR_CODES
from emotune.errors import AuthenticationError, ProtocolError

SPEC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
PCM16_16K = AudioFormat("pcm16", 16000, 1)


def deliver(server: EmotuneWsServer, client: EmotuneWsClient) -> list[Event]:
    out: list[Event] = []
    for frame in server.data_to_send():
        out += client.receive_text(frame) if isinstance(frame, str) else client.receive_bytes(frame)
    return out


def started(**kwargs: object) -> tuple[EmotuneWsServer, EmotuneWsClient]:
    server, client = EmotuneWsServer(**kwargs), EmotuneWsClient()  # type: ignore[arg-type]
    (event,) = server.receive_text(client.start(call_id="call-1"))
    assert isinstance(event, CallStarted)
    (ready,) = deliver(server, client)
    assert isinstance(ready, Ready)
    return server, client


def test_scripted_in_car_session() -> None:
    server = EmotuneWsServer(auth_token="s3cret")
    client = EmotuneWsClient(AudioFormat("pcm16", 16000, 1))

    (event,) = server.receive_text(
        client.start(call_id="car-42", token="s3cret", profile="in_car", metadata={"vin": "X"})
    )
    assert isinstance(event, CallStarted) and event.call_id == "car-42" and event.parties == ("caller",)
    assert event.metadata["profile"] == "in_car" and event.metadata["client_metadata"] == {"vin": "X"}
    (ready,) = deliver(server, client)
    assert isinstance(ready, Ready) and ready.call_id == "car-42" and ready.audio == PCM16_16K

    audio = bytes(range(256)) * 5  # 1280 bytes = 40 ms of pcm16 @ 16 kHz
    events = [e for frame in client.audio_frames(audio) for e in server.receive_bytes(frame)]
    assert [len(e.payload) for e in events if isinstance(e, AudioReceived)] == [640, 640]
    assert [e.timestamp_ms for e in events if isinstance(e, AudioReceived)] == [0.0, 20.0]

    assert server.receive_text(client.text("hello there")) == [TextTurn("hello there", {})]
    assert server.receive_text(client.ping(7)) == [PingReceived()]
    assert deliver(server, client) == [Pong(7)]

    emotion = {"label": "angry", "confidence": 0.8, "start_s": 0.0, "end_s": 2.0}
    out = [
        *server.send_emotion(emotion),
        *server.send_transcript("hello there"),
        *server.send_bot_reply(
            "Let us take a breath.", "calm", audio_format=PCM16_16K, custom={"tone": "calm"}
        ),
        *server.send_audio(b"\x01\x00" * 480, encoding="pcm16", sample_rate=16000),  # 30 ms -> 2 frames
        *server.send_mark("reply-1"),
        *server.send_clear(),
        *server.send_handoff("sustained_negative_emotion", "angry for 3 turns", target="queue:care"),
    ]
    parsed = [
        e for m in out for e in (client.receive_text(m) if isinstance(m, str) else client.receive_bytes(m))
    ]
    assert parsed == [
        EmotionMessage("caller", emotion),
        TranscriptMessage("caller", "hello there", True),
        BotReply("Let us take a breath.", "calm", PCM16_16K, {"tone": "calm"}),
        BotAudio(b"\x01\x00" * 320),
        BotAudio(b"\x01\x00" * 160),
        MarkPlaced("reply-1"),
        ClearAudio(),
        Handoff("sustained_negative_emotion", "angry for 3 turns", "queue:care"),
    ]
    assert server.receive_text(client.mark("reply-1")) == [MarkAcknowledged("reply-1")]

    assert server.receive_text(client.end("arrived")) == [CallEnded("arrived")]
    assert deliver(server, client) == [ServerEnded("client_end")]
    assert server.close_request is not None and server.close_request.code == CloseCode.NORMAL
    assert server.send_emotion(emotion) == []  # nothing is sent after the end


def test_server_side_close_and_gateway_errors() -> None:
    server, client = started()
    (end,) = server.close("completed")
    assert client.receive_text(str(end)) == [ServerEnded("completed")]
    assert server.close() == []

    server, client = started()
    (error,) = server.send_error("too_many_calls", "gateway is full")
    assert client.receive_text(str(error)) == [ServerError("too_many_calls", "gateway is full", True)]
    assert server.close_request is not None and server.close_request.code == CloseCode.TRY_AGAIN_LATER
    with pytest.raises(ValueError):
        server.send_error("no_such_code", "x")


def test_mulaw_8k_input_and_output_format_request() -> None:
    server = EmotuneWsServer()
    client = EmotuneWsClient(AudioFormat("mulaw", 8000, 1))
    server.receive_text(client.start(output_audio=AudioFormat("mulaw", 8000, 1)))
    (ready,) = deliver(server, client)
    assert ready.output_audio == AudioFormat("mulaw", 8000, 1)  # type: ignore[attr-defined]
    (audio,) = server.receive_bytes(b"\xff" * 161)  # odd length is fine for mu-law
    assert isinstance(audio, AudioReceived) and audio.encoding == "mulaw" and audio.sample_rate == 8000
    with pytest.raises(ProtocolError, match="expects mulaw/8000"):
        server.send_audio(b"\x00\x00" * 10, encoding="pcm16", sample_rate=16000)
    assert len(server.send_audio(b"\xff" * 400, encoding="mulaw", sample_rate=8000)) == 3  # 160-byte frames


def start_with(**fields: object) -> str:
    body: dict[str, object] = {
        "type": "start",
        "version": 1,
        "audio": {"encoding": "pcm16", "sample_rate": 16000, "channels": 1},
    }
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not None})


# kind -> (text or bytes, needs a started session, expected error code)
CASES: dict[str, tuple[str | bytes, bool, str]] = {
    "bad json before start": ("{oops", False, "bad_json"),
    "json array": ("[1]", True, "bad_json"),
    "no type": ('{"text": "hi"}', True, "bad_message"),
    "unknown type": ('{"type": "dance"}', True, "unknown_type"),
    "second start": (start_with(), True, "already_started"),
    "text before start": ('{"type": "text", "text": "hi"}', False, "not_started"),
    "audio before start": (b"\x00\x00", False, "not_started"),
    "version 2": (start_with(version=2), False, "unsupported_version"),
    "version true": (start_with(version=True), False, "unsupported_version"),
    "no audio format": (start_with(audio=None), False, "unsupported_audio"),
    "opus": (start_with(audio={"encoding": "opus", "sample_rate": 16000}), False, "unsupported_audio"),
    "44.1 kHz": (start_with(audio={"encoding": "pcm16", "sample_rate": 44100}), False, "unsupported_audio"),
    "stereo": (
        start_with(audio={"encoding": "pcm16", "sample_rate": 16000, "channels": 2}),
        False,
        "unsupported_audio",
    ),
    "bad output format": (
        start_with(output_audio={"encoding": "pcm16", "sample_rate": 22050}),
        False,
        "unsupported_audio",
    ),
    "bad call id": (start_with(call_id="a b"), False, "bad_start"),
    "bad profile": (start_with(profile="boat"), False, "bad_start"),
    "metadata not object": (start_with(metadata=[1]), False, "bad_start"),
    "blank text": ('{"type": "text", "text": "   "}', True, "bad_message"),
    "text too long": (json.dumps({"type": "text", "text": "a" * 4001}), True, "bad_message"),
    "text not string": ('{"type": "text", "text": 5}', True, "bad_message"),
    "ping id object": ('{"type": "ping", "id": {}}', True, "bad_message"),
    "mark without name": ('{"type": "mark"}', True, "bad_message"),
    "odd pcm16 frame": (b"\x00\x00\x00", True, "bad_audio_frame"),
    "empty frame": (b"", True, "bad_audio_frame"),
    "huge frame": (b"\x00" * 64_002, True, "frame_too_large"),
    "huge message": ("x" * 70_000, True, "message_too_large"),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_every_error_code(kind: str) -> None:
    data, needs_start, code = CASES[kind]
    server = started()[0] if needs_start else EmotuneWsServer()
    events = server.receive_text(data) if isinstance(data, str) else server.receive_bytes(data)
    (violation,) = events
    assert isinstance(violation, ProtocolViolation) and isinstance(violation.error, ProtocolError)
    assert violation.code == code
    (frame,) = server.data_to_send()
    error = json.loads(frame)
    close_code, fatal = ERROR_CODES[code]
    expect_fatal = fatal or not needs_start and code in ("bad_json", "bad_message")
    assert error == {"type": "error", "code": code, "message": violation.message, "fatal": expect_fatal}
    assert violation.fatal == expect_fatal
    if expect_fatal:
        assert server.close_request is not None and server.close_request.code == close_code
    else:
        assert server.close_request is None and server.state == "started"


def test_tokens() -> None:
    server = EmotuneWsServer(auth_token="s3cret")
    (violation,) = server.receive_text(EmotuneWsClient().start(token="guess"))
    assert isinstance(violation, ProtocolViolation) and isinstance(violation.error, AuthenticationError)
    assert violation.code == "unauthorized" and server.close_request.code == CloseCode.POLICY_VIOLATION  # type: ignore[union-attr]
    # Already authenticated on the upgrade: no token needed in start.
    server = EmotuneWsServer(auth_token="s3cret", authenticated=True)
    assert isinstance(server.receive_text(EmotuneWsClient().start())[0], CallStarted)

    verify_bearer_token("Bearer s3cret", "s3cret")
    verify_bearer_token("bearer   s3cret ", "s3cret")
    for header, reason in [
        (None, "missing"),
        ("Basic s3cret", "Bearer"),
        ("Bearer nope", "not valid"),
        ("Bearer", "Bearer"),
    ]:
        with pytest.raises(AuthenticationError, match=reason):
            verify_bearer_token(header, "s3cret")
    with pytest.raises(AuthenticationError, match="configured"):
        verify_bearer_token("Bearer x", "")


def test_after_end_is_not_answered() -> None:
    server, client = started()
    server.receive_text(client.end())
    server.data_to_send()
    (violation,) = server.receive_text(client.text("still there?"))
    assert isinstance(violation, ProtocolViolation) and violation.code == "after_end" and not violation.fatal
    (violation,) = server.receive_bytes(b"\x00\x00")
    assert violation.code == "after_end"  # type: ignore[attr-defined]
    assert server.data_to_send() == []


def spec_examples() -> list[dict[str, object]]:
    blocks = re.findall(r"```json\n(.*?)```", SPEC.read_text(encoding="utf-8"), flags=re.S)
    return [json.loads(block) for block in blocks]


def test_every_spec_example_is_understood_by_the_code() -> None:
    examples = spec_examples()
    assert len(examples) >= 15
    client_types = {"start", "text", "mark", "ping", "end"}
    checked = 0
    for example in examples:
        text = json.dumps(example)
        # Client messages: the server must accept them without any violation.
        if example["type"] in client_types:
            server = EmotuneWsServer()
            if example["type"] != "start":
                server.receive_text(EmotuneWsClient().start())
            events = server.receive_text(text)
            assert events and not any(isinstance(e, ProtocolViolation) for e in events), example
            checked += 1
        # Server messages (mark and end exist both ways): the client must parse them.
        if example["type"] not in ("start", "text", "ping"):
            events = EmotuneWsClient().receive_text(text)
            assert not any(isinstance(e, ProtocolViolation) for e in events), example
            checked += 1
    assert checked >= len(examples)


def test_every_error_code_is_in_the_spec_table() -> None:
    spec = SPEC.read_text(encoding="utf-8")
    for code, (close_code, fatal) in ERROR_CODES.items():
        row = next((line for line in spec.splitlines() if line.startswith(f"| `{code}` |")), None)
        assert row is not None, code
        assert ("yes" if fatal else "no") in row.split("|")[2]
        if fatal:
            assert str(close_code) in row


def test_profile_must_be_one_the_gateway_serves() -> None:
    profiles = ("contact_center", "in_car", "ko_contact_center")
    server = EmotuneWsServer(profiles=profiles)
    (started_call,) = server.receive_text(EmotuneWsClient().start(profile=None, metadata={"tier": "gold"}))
    assert isinstance(started_call, CallStarted)  # no profile named: the gateway's default (the first)
    assert started_call.metadata == {"profile": "contact_center", "language": "en-US", "client_metadata": {"tier": "gold"}}
    server = EmotuneWsServer(profiles=profiles)
    (korean,) = server.receive_text(EmotuneWsClient().start(profile="ko_contact_center"))
    assert isinstance(korean, CallStarted) and korean.metadata["profile"] == "ko_contact_center"
    for bad in ("kiosk", 7, ""):
        server, client = EmotuneWsServer(profiles=profiles), EmotuneWsClient()
        body = json.loads(client.start())
        body["profile"] = bad
        (violation,) = server.receive_text(json.dumps(body))
        assert isinstance(violation, ProtocolViolation) and violation.fatal and violation.code == "bad_start"
        (error,) = deliver(server, client)
        assert isinstance(error, ServerError) and error.code == "bad_start" and error.fatal
        assert "contact_center, in_car, ko_contact_center" in error.message, error.message
        assert server.close_request is not None and server.close_request.code == CloseCode.PROTOCOL_ERROR
    with pytest.raises(ValueError):
        EmotuneWsServer(profiles=())


def test_handoff_carries_the_bots_context_unchanged() -> None:
    server, client = started()
    assert server.delivers_handoff_context
    context = {"version": 1, "reason": "requested", "slots": {"order_number": "482107"}, "caller_told": "briefed",
               "last_caller_words": ["I want a person"], "tickets": []}  # fmt: skip
    (message,) = server.send_handoff("requested", "Caller asked for a human.", context=context)
    assert json.loads(str(message))["context"] == context
    assert client.receive_text(str(message)) == [Handoff("requested", "Caller asked for a human.", None, context)]
    (bad,) = client.receive_text(json.dumps({"type": "handoff", "reason": "r", "summary": "s", "context": [1]}))
    assert isinstance(bad, ProtocolViolation)
