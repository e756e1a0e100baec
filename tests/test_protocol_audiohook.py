"""Genesys AudioHook monitor-mode core: scripted session, sequence rules, malformed input, auth."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connectors.devtools.audiohook_client import (
    AudioHookClient,
    Closed,
    DisconnectRequested,
    Opened,
    PauseRequested,
    Pong,
    ResumeRequested,
    ServerEvent,
)
from connectors.protocols import (
    AudioDiscarded,
    AudioHookServer,
    AudioReceived,
    CallEnded,
    CallStarted,
    CloseCode,
    EscalationRaised,
    EscalationTracker,
    NonceCache,
    PeerError,
    PingReceived,
    ProtocolViolation,
    SessionUpdated,
    StreamPaused,
    StreamResumed,
    sign_request,
    verify_api_key,
    verify_signature,
)
from connectors.protocols.audiohook import format_duration, parse_duration
from connectors.protocols.http_signatures import normalize_headers, parse_signature_input, signature_base
from emotune.errors import AuthenticationError, ConfigError, ProtocolError, SequenceError


def reply(server: AudioHookServer, client: AudioHookClient) -> list[object]:
    """Deliver everything the server queued to the client; return the client's view."""
    return [event for text in server.data_to_send() for event in client.receive_text(str(text))]


def opened_session(**server_kwargs: Any) -> tuple[AudioHookServer, AudioHookClient]:
    client = AudioHookClient()
    server = AudioHookServer(
        session_id=client.session_id, organization_id=client.organization_id, **server_kwargs
    )
    (started,) = server.receive_text(client.open())
    assert isinstance(started, CallStarted)
    (opened,) = reply(server, client)
    assert isinstance(opened, Opened)
    return server, client


def test_scripted_session() -> None:
    client = AudioHookClient()
    server = AudioHookServer(session_id=client.session_id, organization_id=client.organization_id)

    (started,) = server.receive_text(client.open(supportedLanguages=True))
    assert isinstance(started, CallStarted)
    assert started.call_id == client.conversation_id and started.stream_id == client.session_id
    assert started.parties == ("caller", "agent") and started.audio.channels == 2
    assert started.metadata["is_probe"] is False
    (opened,) = reply(server, client)
    assert isinstance(opened, Opened) and opened.start_paused is False
    assert opened.media == (
        {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000},
    )
    assert opened.supported_languages == ("en-US",)

    # 100 ms of stereo audio: caller bytes 0x10.., agent bytes 0x80..
    caller, agent = bytes(range(0x10, 0x10 + 80)) * 10, bytes(range(0x80, 0x80 + 80)) * 10
    frame = client.audio(caller, agent)
    assert len(frame) == 1600 and frame[:4] == bytes([0x10, 0x80, 0x11, 0x81])
    caller_event, agent_event = server.receive_bytes(frame)
    assert isinstance(caller_event, AudioReceived) and isinstance(agent_event, AudioReceived)
    assert (caller_event.channel, caller_event.payload) == ("caller", caller)
    assert (agent_event.channel, agent_event.payload) == ("agent", agent)
    assert (
        caller_event.encoding == "mulaw"
        and caller_event.sample_rate == 8000
        and caller_event.timestamp_ms == 0.0
    )
    second, _ = server.receive_bytes(client.audio(caller, agent))
    assert second.timestamp_ms == 100.0  # type: ignore[attr-defined]

    assert server.receive_text(client.ping(rtt_s=0.05)) == [PingReceived(rtt_s=0.05)]
    assert reply(server, client) == [Pong()]

    # Emotion for both parties goes out as custom entities.
    (message,) = server.send_emotion(
        {"label": "sad", "confidence": 0.7, "start_s": 0.0, "end_s": 2.0}, party="agent"
    )
    (event,) = client.receive_text(str(message))
    assert isinstance(event, ServerEvent)
    assert event.entities[0] == {
        "type": "emotune.emotion",
        "data": {"party": "agent", "label": "sad", "confidence": 0.7, "start_s": 0.0, "end_s": 2.0},
    }

    # Server-initiated pause; the client confirms with 'paused', later resumes.
    (pause,) = server.send_pause()
    assert client.receive_text(str(pause)) == [PauseRequested()]
    assert server.receive_text(client.paused()) == [StreamPaused()]
    (resume,) = server.send_resume()
    assert client.receive_text(str(resume)) == [ResumeRequested()]
    assert server.receive_text(client.resumed(discarded_s=1.5)) == [StreamResumed(discarded_s=1.5)]

    (update,) = server.receive_text(client.update("de-DE"))
    assert isinstance(update, SessionUpdated) and server.language == "de-DE"
    assert server.receive_text(client.message("discarded", {"start": "PT1S", "discarded": "PT0.5S"})) == [
        AudioDiscarded(start_s=1.0, duration_s=0.5)
    ]
    assert server.receive_text(client.error(429, "rate limited")) == [
        PeerError(code=429, message="rate limited")
    ]

    assert server.receive_text(client.close()) == [CallEnded(reason="end")]
    assert reply(server, client) == [Closed()]
    assert server.close_request is not None and server.close_request.code == CloseCode.NORMAL
    # server seq and clientseq were consistent all along (the client checks them in receive_text)
    assert server.seq == client.serverseq and server.clientseq == client.seq


def test_sustained_caller_anger_raises_one_escalation() -> None:
    server, client = opened_session(
        escalation=EscalationTracker(["angry"], streak_turns=3, min_confidence=0.5)
    )
    angry = {"label": "angry", "confidence": 0.8}
    outputs = [server.send_emotion(angry, party="caller") for _ in range(2)]
    assert server.take_events() == []
    outputs.append(server.send_emotion(angry, party="caller"))
    (raised,) = server.take_events()
    assert raised == EscalationRaised(
        party="caller", reason="sustained_negative_emotion", streak=3, emotions=("angry",) * 3
    )
    seen = [e for batch in outputs for msg in batch for e in client.receive_text(str(msg))]
    assert all(isinstance(e, ServerEvent) for e in seen)
    assert [e["type"] for e in seen[-1].entities] == ["emotune.emotion", "emotune.escalation"]  # type: ignore[attr-defined]
    # A fourth angry event does not fire again; a calm one re-arms the tracker.
    server.send_emotion(angry)
    server.send_emotion({"label": "neutral", "confidence": 0.9})
    assert server.take_events() == []
    # The agent's anger never escalates; low-confidence anger does not count.
    for _ in range(5):
        server.send_emotion(angry, party="agent")
        server.send_emotion({"label": "angry", "confidence": 0.3}, party="caller")
    assert server.take_events() == []


def test_handoff_and_server_disconnect() -> None:
    server, client = opened_session()
    (handoff,) = server.send_handoff("sustained_anger", "Caller upset about billing")
    (event,) = client.receive_text(str(handoff))
    assert event.entities[0]["type"] == "emotune.handoff"  # type: ignore[attr-defined]
    assert "context" not in event.entities[0]["data"]  # type: ignore[attr-defined]
    assert not server.delivers_handoff_context  # monitor-only: nothing guarantees an agent reads it
    (handoff,) = server.send_handoff("requested", "Asked for a human", context={"version": 1, "task": "refund"})
    (event,) = client.receive_text(str(handoff))
    assert event.entities[0]["data"]["context"] == {"version": 1, "task": "refund"}  # type: ignore[attr-defined]
    (disconnect,) = server.close("completed")
    assert client.receive_text(str(disconnect)) == [DisconnectRequested("completed", "")]
    assert server.close_request is None  # waits for the client's close transaction
    assert server.send_emotion({"label": "happy", "confidence": 0.9}) == []
    assert server.receive_text(client.close("end")) == [CallEnded(reason="end")]
    assert reply(server, client) == [Closed()]
    assert server.close_request is not None


def test_sequence_gap_disconnects_with_error() -> None:
    server, client = opened_session()
    client.seq += 1  # one client message lost
    (violation,) = server.receive_text(client.ping())
    assert isinstance(violation, ProtocolViolation) and violation.fatal and violation.code == "seq_gap"
    assert isinstance(violation.error, SequenceError)
    (disconnect,) = reply(server, client)
    assert (
        isinstance(disconnect, DisconnectRequested)
        and disconnect.reason == "error"
        and "seq" in disconnect.info
    )
    # While disconnecting, further traffic is ignored and audio dropped; 'close' completes.
    assert server.receive_text(client.ping()) == []
    assert server.receive_bytes(b"\xff\xff") == []
    assert server.receive_text(client.close("error")) == [CallEnded(reason="error")]
    assert reply(server, client) == [Closed()]


def test_repeated_seq_and_future_serverseq_are_rejected() -> None:
    server, client = opened_session()
    client.seq -= 1  # replays the open's seq
    (violation,) = server.receive_text(client.ping())
    assert isinstance(violation, ProtocolViolation) and isinstance(violation.error, SequenceError)

    server, client = opened_session()
    client.serverseq = 99
    (violation,) = server.receive_text(client.ping())
    assert violation.code == "serverseq"  # type: ignore[attr-defined]


def test_audio_before_open_and_while_paused_is_rejected() -> None:
    server = AudioHookServer()
    (violation,) = server.receive_bytes(b"\xff" * 320)
    assert (
        isinstance(violation, ProtocolViolation) and violation.code == "audio_before_open" and violation.fatal
    )

    server, client = opened_session()
    server.receive_text(client.paused())
    (violation,) = server.receive_bytes(b"\xff" * 320)
    assert isinstance(violation, ProtocolViolation) and violation.code == "audio_while_paused"


def test_start_paused_and_odd_stereo_frames() -> None:
    server, client = opened_session(start_paused=True)
    assert server.state == "paused"
    server, client = opened_session()
    (violation,) = server.receive_bytes(b"\xff" * 321)
    assert isinstance(violation, ProtocolViolation) and violation.code == "bad_frame"
    server, client = opened_session(max_frame_bytes=1000)
    (violation,) = server.receive_bytes(b"\xff" * 1002)
    assert violation.code == "frame_too_large"  # type: ignore[attr-defined]


def test_media_negotiation() -> None:
    # Mono (caller only) offered first, stereo second: we pick stereo.
    client = AudioHookClient()
    server = AudioHookServer()
    offers = [
        {"type": "audio", "format": "L16", "channels": ["external", "internal"], "rate": 16000},
        {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000},
        {"type": "audio", "format": "PCMU", "channels": ["internal", "external"], "rate": 8000},
    ]
    (started,) = server.receive_text(client.open(media=offers))
    assert started.parties == ("agent", "caller")  # type: ignore[attr-defined]
    # The agent is the first byte of each pair in this channel order.
    agent_first, caller_second = server.receive_bytes(b"\x01\x02" * 10)
    assert agent_first.channel == "agent" and agent_first.payload == b"\x01" * 10  # type: ignore[attr-defined]
    assert caller_second.channel == "caller" and caller_second.payload == b"\x02" * 10  # type: ignore[attr-defined]

    client, server = AudioHookClient(), AudioHookServer()
    (violation,) = server.receive_text(client.open(media=[offers[0]]))
    assert isinstance(violation, ProtocolViolation) and violation.code == "unsupported_media"
    (disconnect,) = reply(server, client)
    assert isinstance(disconnect, DisconnectRequested) and "PCMU" in disconnect.info


def test_probe_connection_and_identity_checks() -> None:
    client = AudioHookClient(conversation_id="00000000-0000-0000-0000-000000000000")
    (started,) = AudioHookServer().receive_text(client.open())
    assert started.metadata["is_probe"] is True  # type: ignore[attr-defined]

    client = AudioHookClient()
    server = AudioHookServer(session_id="11111111-1111-1111-1111-111111111111")
    (violation,) = server.receive_text(client.open())
    assert isinstance(violation.error, AuthenticationError)  # type: ignore[attr-defined]
    assert violation.close_code == CloseCode.POLICY_VIOLATION  # type: ignore[attr-defined]
    (disconnect,) = reply(server, client)
    assert disconnect.reason == "unauthorized"  # type: ignore[attr-defined]

    client = AudioHookClient()
    server = AudioHookServer(organization_id="22222222-2222-2222-2222-222222222222")
    (violation,) = server.receive_text(client.open())
    assert violation.code == "organization"  # type: ignore[attr-defined]


def envelope(**overrides: object) -> str:
    body: dict[str, object] = {
        "version": "2",
        "id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
        "type": "ping",
        "seq": 1,
        "serverseq": 0,
        "position": "PT0S",
        "parameters": {},
    }
    body.update(overrides)
    return json.dumps({k: v for k, v in body.items() if v is not None})


MALFORMED = {
    "not json": ("{'version': 2}", "bad_message", "not valid JSON"),
    "array": ("[]", "bad_message", "JSON object"),
    "wrong version": (envelope(version="1"), "version", "unsupported AudioHook version"),
    "version as number": (envelope(version=2), "version", "unsupported AudioHook version"),
    "no type": (envelope(type=None), "bad_message", "missing field 'type'"),
    "seq string": (envelope(seq="1"), "bad_message", "'seq' must be an integer"),
    "seq bool": (envelope(seq=True), "bad_message", "got a boolean"),
    "bad id": (envelope(id="not-a-uuid"), "bad_message", "is not a UUID"),
    "bad position": (envelope(position="1.5s"), "bad_message", "not a duration"),
    "parameters not object": (envelope(parameters=[]), "bad_message", "'parameters' must be an object"),
    "ping before open": (envelope(), "not_open", "before 'open'"),
    "server message type": (envelope(type="opened"), "unknown_type", "not an AudioHook client message"),
    "open without media": (
        envelope(
            type="open",
            parameters={
                "organizationId": "d7934305-0972-4844-938e-9060eef73d05",
                "conversationId": "d7934305-0972-4844-938e-9060eef73d05",
            },
        ),
        "bad_parameters",
        "missing field 'media'",
    ),
    "open with bad org": (
        envelope(type="open", parameters={"organizationId": 5}),
        "bad_parameters",
        "is not a UUID",
    ),
    "too long": ("x" * 70_000, "bad_message", "exceeds the limit"),
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_malformed_messages_disconnect_with_error(kind: str) -> None:
    text, code, expected = MALFORMED[kind]
    server = AudioHookServer()
    (violation,) = server.receive_text(text)
    assert isinstance(violation, ProtocolViolation) and isinstance(violation.error, ProtocolError)
    assert violation.code == code and expected in violation.message and violation.fatal
    (disconnect,) = server.data_to_send()
    body = json.loads(disconnect)
    assert body["type"] == "disconnect" and body["parameters"]["reason"] == "error"
    # clientseq counts the message only if its envelope (seq, id) was acceptable
    assert body["seq"] == 1 and body["clientseq"] == (1 if code in ("not_open", "bad_parameters") else 0)


def test_malformed_parameters_after_open() -> None:
    cases: list[tuple[str, dict[str, object], str]] = [
        ("ping", {"rtt": "soon"}, "not a duration"),
        ("update", {"language": 7}, "language must be a string"),
        ("error", {"code": True, "message": "x"}, "code must be a number"),
        ("discarded", {"start": "PT1S"}, "duration"),
    ]
    for kind, parameters, expected in cases:
        server, client = opened_session()
        (violation,) = server.receive_text(client.message(kind, parameters))
        assert isinstance(violation, ProtocolViolation) and expected in violation.message, kind


def test_durations() -> None:
    assert (
        parse_duration("PT12.5S", "x") == 12.5
        and format_duration(1.25) == "PT1.25S"
        and format_duration(0) == "PT0S"
    )
    for bad in ["12.5", "PT-1S", "P1D", "PT1.5", 5, None]:
        with pytest.raises(ProtocolError):
            parse_duration(bad, "x")


def test_sending_before_open_is_our_bug() -> None:
    with pytest.raises(ProtocolError, match="before the session is opened"):
        AudioHookServer().send_emotion({"label": "angry", "confidence": 0.9})
    server, _ = opened_session()
    with pytest.raises(ProtocolError, match="unknown party"):
        server.send_emotion({"label": "angry", "confidence": 0.9}, party="bot")
    with pytest.raises(ProtocolError, match="label"):
        server.send_emotion({"confidence": 0.9})


# ---- upgrade authentication --------------------------------------------------------------------
API_KEY = "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh"
SECRET = "TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU="
DOC_HEADERS = {
    "Host": "audiohook.example.com",
    "Audiohook-Organization-Id": "d7934305-0972-4844-938e-9060eef73d05",
    "Audiohook-Correlation-Id": "e160e428-53e2-487c-977d-96989bf5c99d",
    "Audiohook-Session-Id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
    "X-API-KEY": API_KEY,
    "Signature": "sig1=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:",
    "Signature-Input": 'sig1=("@request-target" "@authority" "audiohook-organization-id" "audiohook-session-id" '
    '"audiohook-correlation-id" "x-api-key");keyid="SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh";'
    'nonce="VGhpc0lzQVVuaXF1ZU5vbmNl";alg="hmac-sha256";created=1641013200;expires=3282026430',
}
TARGET, AUTHORITY = "/api/v1/voicebiometrics/ws", "audiohook.example.com"


def test_genesys_published_signature_example_verifies() -> None:
    cache = NonceCache()
    params = verify_signature(DOC_HEADERS, TARGET, AUTHORITY, SECRET, now=1641013210, nonce_cache=cache)
    assert params.get("keyid") == API_KEY and len(cache) == 1
    base = signature_base(
        parse_signature_input(DOC_HEADERS["Signature-Input"])["sig1"],
        normalize_headers(DOC_HEADERS),
        TARGET,
        AUTHORITY,
    )
    assert base.splitlines()[0] == '"@request-target": /api/v1/voicebiometrics/ws'
    assert base.splitlines()[-1].startswith('"@signature-params": ("@request-target" "@authority"')


def signed(now: int, nonce: str = "n-1", secret: str = SECRET, expires: int | None = None) -> dict[str, str]:
    headers = {k: v for k, v in DOC_HEADERS.items() if not k.startswith("Signature")}
    return {
        **headers,
        **sign_request(headers, TARGET, AUTHORITY, secret, created=now, expires=expires, nonce=nonce),
    }


def test_signature_good_bad_expired_replayed() -> None:
    now, cache = 1_700_000_000, NonceCache()
    verify_signature(signed(now), TARGET, AUTHORITY, SECRET, now=now + 5, nonce_cache=cache)
    with pytest.raises(AuthenticationError, match="replayed"):
        verify_signature(signed(now), TARGET, AUTHORITY, SECRET, now=now + 6, nonce_cache=cache)
    other_secret = "b3RoZXIgc2VjcmV0IG9mIDMyIGJ5dGVzIGxlbmd0aCEh"
    with pytest.raises(AuthenticationError, match="does not match"):
        verify_signature(
            signed(now, "n-2", other_secret), TARGET, AUTHORITY, SECRET, now=now, nonce_cache=cache
        )
    with pytest.raises(AuthenticationError, match="does not match"):
        verify_signature(signed(now, "n-3"), "/other/path", AUTHORITY, SECRET, now=now, nonce_cache=cache)
    with pytest.raises(AuthenticationError, match="old"):
        verify_signature(
            signed(now - 301, "n-4"), TARGET, AUTHORITY, SECRET, now=now, nonce_cache=cache, max_age_s=300
        )
    with pytest.raises(AuthenticationError, match="future"):
        verify_signature(signed(now + 400, "n-5"), TARGET, AUTHORITY, SECRET, now=now, nonce_cache=cache)
    with pytest.raises(AuthenticationError, match="expired"):
        verify_signature(
            signed(now - 10, "n-6", expires=now - 1), TARGET, AUTHORITY, SECRET, now=now, nonce_cache=cache
        )
    # A forged request must not burn a nonce: the genuine request with that nonce still passes.
    verify_signature(signed(now, "n-2"), TARGET, AUTHORITY, SECRET, now=now, nonce_cache=cache)


def test_signature_header_tampering() -> None:
    now, cache = 1_700_000_000, NonceCache()
    good = signed(now)
    cases = {
        "altered session header": (
            {**good, "Audiohook-Session-Id": "00000000-0000-0000-0000-000000000001"},
            "does not match",
        ),
        "api key differs from keyid": ({**good, "X-API-KEY": "other"}, "keyid does not match"),
        "missing headers": ({k: v for k, v in good.items() if k != "Signature"}, "missing Signature"),
        "label mismatch": (
            {**good, "Signature": good["Signature"].replace("sig1", "sig2")},
            "share no label",
        ),
        "garbage input": ({**good, "Signature-Input": "sig1=(@x"}, "malformed Signature-Input"),
        "signature not bytes": ({**good, "Signature": 'sig1="abc"'}, "byte sequence"),
        "wrong alg": (
            {**good, "Signature-Input": good["Signature-Input"].replace("hmac-sha256", "rsa-pss-sha512")},
            "unsupported signature algorithm",
        ),
        "no nonce": (
            {**good, "Signature-Input": good["Signature-Input"].replace('nonce="n-1";', "")},
            "no nonce",
        ),
        "too few components": (
            {**good, "Signature-Input": good["Signature-Input"].replace(' "x-api-key"', "")},
            "does not cover x-api-key",
        ),
    }
    for name, (headers, expected) in cases.items():
        with pytest.raises(AuthenticationError, match=expected):
            verify_signature(headers, TARGET, AUTHORITY, SECRET, now=now, nonce_cache=cache)
        assert len(cache) == 0, name


def test_bad_client_secret_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="base64"):
        verify_signature(signed(1), TARGET, AUTHORITY, "%%%", now=1, nonce_cache=NonceCache())


def test_api_key_check() -> None:
    verify_api_key({"x-api-key": API_KEY}, API_KEY)
    verify_api_key([("X-Api-Key", API_KEY)], API_KEY)
    with pytest.raises(AuthenticationError, match="missing"):
        verify_api_key({}, API_KEY)
    with pytest.raises(AuthenticationError, match="does not match"):
        verify_api_key({"X-API-KEY": "guess"}, API_KEY)
    with pytest.raises(AuthenticationError, match="configured"):
        verify_api_key({"X-API-KEY": "guess"}, "")


def test_nonce_cache_is_bounded_and_forgets_expired_nonces() -> None:
    cache = NonceCache(max_entries=3)
    for i in range(10):
        cache.check_and_remember(f"n{i}", now=100, keep_until=200 + i)
    assert len(cache) <= 3
    cache.check_and_remember("late", now=300, keep_until=400)  # everything older has expired
    assert len(cache) == 1
    cache.check_and_remember("n0", now=300, keep_until=400)  # an expired nonce may come back


def test_escalation_tracker_from_operator_config() -> None:
    from emotune.config import EscalationConfig

    tracker = EscalationTracker.from_config(
        EscalationConfig(negative_emotions=["angry", "sad"], streak_turns=2, min_confidence=0.6, floor_confidence=None)
    )
    assert [tracker.observe(label, 0.7) for label in ["sad", "angry", "angry", "neutral", "angry"]] == [
        False,
        True,
        False,
        False,
        False,
    ]
    assert tracker.observe("angry", 0.59) is False and tracker.labels == [] and tracker.streak == 0
    # Accumulated evidence (the default floor): one weaker window does not reset the run.
    evidence = EscalationTracker.from_config(
        EscalationConfig(negative_emotions=["angry"], streak_turns=3, min_confidence=0.5, floor_confidence=0.35)
    )
    assert [evidence.observe("angry", p) for p in (0.61, 0.47, 0.63)] == [False, False, True]
    assert evidence.observe("neutral", 0.9) is False and evidence.streak == 0
    assert [evidence.observe("angry", p) for p in (0.4, 0.4, 0.45)] == [False, False, False]  # weak throughout


def test_header_values_are_trimmed_but_inner_spaces_kept() -> None:
    headers = normalize_headers([("X-Thing", "  a  b "), ("x-thing", "c"), ("Other", "d")])
    assert headers == {"x-thing": "a  b, c", "other": "d"}
    now = 1_700_000_000
    base = {k: v for k, v in DOC_HEADERS.items() if not k.startswith("Signature")}
    spaced = {**base, "Audiohook-Correlation-Id": "two  spaces"}
    signed_spaced = {**spaced, **sign_request(spaced, TARGET, AUTHORITY, SECRET, created=now, nonce="sp")}
    verify_signature(signed_spaced, TARGET, AUTHORITY, SECRET, now=now, nonce_cache=NonceCache())
    collapsed = {**signed_spaced, "Audiohook-Correlation-Id": "two spaces"}
    with pytest.raises(AuthenticationError, match="does not match"):
        verify_signature(collapsed, TARGET, AUTHORITY, SECRET, now=now, nonce_cache=NonceCache())
