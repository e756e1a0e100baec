"""Twilio Media Streams core: a scripted call, every malformed input, transfer, signatures."""

from __future__ import annotations

import base64
import json
import math
import struct

import pytest

from connectors.devtools.twilio_client import ClearRequested, MarkRequested, OutboundMedia, TwilioStreamClient
from connectors.protocols import (
    AudioReceived,
    CallEnded,
    CallStarted,
    CloseCode,
    DtmfReceived,
    MarkAcknowledged,
    ProtocolViolation,
    TransferRequested,
    TwilioMediaStream,
    mulaw_to_pcm16,
    pcm16_to_mulaw,
    transfer_twiml,
    validate_twilio_signature,
)
from connectors.protocols.twilio import compute_twilio_signature, handoff_references
from emotune.errors import (
    AuthenticationError,
    ConfigError,
    FrameError,
    ProtocolError,
    SampleRateError,
    SequenceError,
)


def tone_pcm16(seconds: float, rate: int = 8000, hz: float = 440.0) -> bytes:
    n = int(seconds * rate)
    return struct.pack(f"<{n}h", *(int(8000 * math.sin(2 * math.pi * hz * i / rate)) for i in range(n)))


def started() -> tuple[TwilioMediaStream, TwilioStreamClient]:
    core = TwilioMediaStream(transfer_to="+15551234567")
    client = TwilioStreamClient(custom_parameters={"lang": "en-US"})
    assert core.receive_text(client.connected()) == []
    events = core.receive_text(client.start())
    assert isinstance(events[0], CallStarted)
    return core, client


def test_scripted_call() -> None:
    core = TwilioMediaStream(transfer_to="sip:agent@pbx.example.com")
    client = TwilioStreamClient(custom_parameters={"customer": "42"})

    assert core.receive_text(client.connected()) == []
    (start,) = core.receive_text(client.start())
    assert isinstance(start, CallStarted)
    assert start.call_id == client.call_sid and start.stream_id == client.stream_sid
    assert start.custom_parameters == {"customer": "42"}
    assert (start.audio.encoding, start.audio.sample_rate, start.audio.channels) == ("mulaw", 8000, 1)
    assert start.parties == ("caller",)

    caller_audio = pcm16_to_mulaw(tone_pcm16(0.1))
    received = b""
    for frame in client.media_frames(caller_audio):
        (event,) = core.receive_text(frame)
        assert isinstance(event, AudioReceived) and event.channel == "caller" and event.encoding == "mulaw"
        received += event.payload
    assert received == caller_audio
    assert isinstance(event, AudioReceived) and event.timestamp_ms == 80.0 and event.chunk == 5  # 5 x 20 ms

    assert core.receive_text(client.dtmf("5")) == [DtmfReceived(digit="5", channel="caller")]

    # Bot speaks 50 ms of PCM16: 20 ms media messages, mu-law encoded, then a mark.
    bot_pcm = tone_pcm16(0.05, hz=220)
    messages = core.send_audio(bot_pcm, encoding="pcm16", sample_rate=8000)
    assert len(messages) == 3
    payloads = [json.loads(m)["media"]["payload"] for m in messages]
    assert b"".join(base64.b64decode(p) for p in payloads) == pcm16_to_mulaw(bot_pcm)
    assert all(json.loads(m)["streamSid"] == client.stream_sid for m in messages)
    (mark,) = core.send_mark("reply-1")
    assert json.loads(mark) == {"event": "mark", "streamSid": client.stream_sid, "mark": {"name": "reply-1"}}
    assert core.pending_marks == ["reply-1"]

    # What the client (Twilio) makes of these.
    seen = [e for m in [*messages, mark] for e in client.receive_text(str(m))]
    assert sum(len(e.payload) for e in seen if isinstance(e, OutboundMedia)) == len(bot_pcm) // 2
    assert MarkRequested("reply-1") in seen

    # Barge-in: clear, Twilio echoes the pending mark.
    (clear,) = core.send_clear()
    assert json.loads(clear) == {"event": "clear", "streamSid": client.stream_sid}
    assert client.receive_text(str(clear)) == [ClearRequested()]
    assert core.receive_text(client.mark("reply-1")) == [MarkAcknowledged("reply-1")]
    assert core.pending_marks == []

    assert core.receive_text(client.stop()) == [CallEnded(reason="stop")]
    assert core.close_request is not None and core.close_request.code == CloseCode.NORMAL
    assert core.data_to_send() == []


def test_handoff_queues_transfer_with_twiml() -> None:
    core, _client = started()
    messages = core.send_handoff("sustained_anger", "Caller angry about a double charge")
    assert [json.loads(m)["event"] for m in messages] == ["clear"]
    (transfer,) = core.take_events()
    assert isinstance(transfer, TransferRequested)
    assert transfer.target == "+15551234567" and transfer.call_id.startswith("CA")
    assert "<Dial" in transfer.twiml and "<Number>+15551234567</Number>" in transfer.twiml
    assert core.take_events() == []
    # An explicit target wins over the configured one.
    core.send_handoff("asked_for_human", "", target="client:agent_7")
    assert "<Client><Identity>agent_7</Identity>" in core.take_events()[0].twiml  # type: ignore[attr-defined]
    assert not core.delivers_handoff_context  # the operator has not said its desktop fetches the context


CONTEXT = {
    "version": 1, "reason": "sustained_anger", "task": "refund", "summary": "Caller sounded angry. Order 482107.",
    "slots": {"order_number": "482107", "account_number": "48213706"},
    "tickets": [{"reference": "719857", "kind": "refund"}, {"reference": "720001", "kind": "complaint"}],
    "last_caller_words": ["this is ridiculous"],
}  # fmt: skip


def test_transfer_names_the_handoff_but_never_carries_the_callers_data() -> None:
    core = TwilioMediaStream(transfer_to="sip:agent@pbx.example.com", agent_context=True)
    client = TwilioStreamClient()
    core.receive_text(client.start())
    assert core.delivers_handoff_context
    core.send_handoff("sustained_anger", "summary", context=CONTEXT)
    (transfer,) = core.take_events()
    assert isinstance(transfer, TransferRequested)
    sid = client.call_sid
    assert (f"<Sip>sip:agent@pbx.example.com?x-emotune-call-sid={sid}&amp;x-emotune-reason=sustained_anger"
            "&amp;x-emotune-task=refund&amp;x-emotune-tickets=719857%2C720001</Sip>") in transfer.twiml  # fmt: skip
    for private in ("482107", "48213706", "ridiculous", "angry."):
        assert private not in transfer.twiml
    # A client: target gets the same references as <Parameter>s of the Voice SDK call.
    core.send_handoff("requested", "s", target="client:agent_7", context={"task": None, "tickets": []})
    twiml = core.take_events()[0].twiml  # type: ignore[attr-defined]
    assert (f'<Client><Identity>agent_7</Identity><Parameter name="emotune_call_sid" value="{sid}"/>'
            '<Parameter name="emotune_reason" value="requested"/></Client>') in twiml  # fmt: skip
    # A SIP URI that already has headers keeps them; a value with characters outside the safe set
    # (a reason a bot made up) is left out rather than escaped into the signalling.
    xml = transfer_twiml("sip:q@pbx.example.com?x-site=leeds", references={"call-sid": "CA1"})
    assert "<Sip>sip:q@pbx.example.com?x-site=leeds&amp;x-emotune-call-sid=CA1</Sip>" in xml
    refs = handoff_references("CA1", "angry <script>", {"tickets": [{"reference": "1 2"}]})
    assert refs == {"call-sid": "CA1"}
    # A phone number carries nothing: its agent looks the call SID up.
    assert transfer_twiml("+15550100", references={"call-sid": "CA1"}).count("CA1") == 0


def test_handoff_without_target_is_a_config_error() -> None:
    core = TwilioMediaStream()
    client = TwilioStreamClient()
    core.receive_text(client.start())
    with pytest.raises(ConfigError, match="transfer_to"):
        core.send_handoff("anger", "summary")


def test_transfer_twiml_escapes_and_validates() -> None:
    xml = transfer_twiml("sip:queue@pbx.example.com", announcement="Tom & Jerry <3")
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?><Response><Say>Tom &amp; Jerry &lt;3</Say>')
    assert "<Sip>sip:queue@pbx.example.com</Sip>" in xml and xml.endswith("</Dial></Response>")
    for bad in ["", "12", "+0123", "call me", "sip:<x>@y", "+1555</Number><Hangup/>"]:
        with pytest.raises(ConfigError):
            transfer_twiml(bad)
    with pytest.raises(ConfigError):
        TwilioMediaStream(transfer_to="not a number")


def test_the_transfer_announcement_is_spoken_in_the_lines_language() -> None:
    """A Korean line's transfer: Twilio's <Say> in Korean with a Korean voice, not the English default."""
    core = TwilioMediaStream(transfer_to="+15550100", transfer_announcement="상담원에게 연결하고 있습니다.",
                             announcement_language="ko-KR")
    core.receive_text(TwilioStreamClient().start())
    core.send_handoff("anger", "summary")
    (transfer,) = [e for e in core.take_events() if isinstance(e, TransferRequested)]
    assert '<Say language="ko-KR">상담원에게 연결하고 있습니다.</Say><Dial' in transfer.twiml
    assert "<Say>" in transfer_twiml("+15550100", announcement="Hello")  # no language: Twilio's default
    for bad in ["korean", "ko_KR", 'ko-KR" loop="0']:
        with pytest.raises(ConfigError, match="not a <Say> language"):
            transfer_twiml("+15550100", announcement="x", language=bad)
        with pytest.raises(ConfigError, match="not a <Say> language"):
            TwilioMediaStream(transfer_to="+15550100", announcement_language=bad)  # refused before any call


def test_send_audio_checks_format_and_state() -> None:
    core = TwilioMediaStream()
    with pytest.raises(ProtocolError, match="state"):
        core.send_audio(b"\xff" * 160)
    core.receive_text(TwilioStreamClient().start())
    with pytest.raises(SampleRateError):
        core.send_audio(b"\x00\x00" * 160, encoding="pcm16", sample_rate=16000)
    with pytest.raises(ProtocolError, match="name"):
        core.send_mark("")
    with pytest.raises(FrameError, match="even number"):
        core.send_audio(b"\x00\x00\x00", encoding="pcm16", sample_rate=8000)
    assert core.send_audio(b"") == []


def test_gap_in_sequence_is_reported_but_audio_kept() -> None:
    core, client = started()
    client.sequence += 2  # two messages lost
    gap, audio = core.receive_text(client.media(b"\xff" * 160))
    assert isinstance(gap, ProtocolViolation) and not gap.fatal and gap.code == "sequence_gap"
    assert isinstance(gap.error, SequenceError) and "jumped" in gap.message
    assert isinstance(audio, AudioReceived)


def test_repeated_sequence_number_is_dropped() -> None:
    core, client = started()
    frame = client.media(b"\xff" * 160)
    assert isinstance(core.receive_text(frame)[0], AudioReceived)
    (again,) = core.receive_text(frame)
    assert isinstance(again, ProtocolViolation) and isinstance(again.error, SequenceError)
    assert "repeat" in again.message and core.close_request is None


def media(payload: str = "//8=", **overrides: object) -> str:
    body: dict[str, object] = {
        "event": "media",
        "streamSid": "MZ00000000000000000000000000000000",
        "media": {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": payload},
    }
    body.update(overrides)
    return json.dumps(body)


MALFORMED = {
    "not json": ("{event: media", "not valid JSON"),
    "json array": ("[1, 2]", "must be a JSON object"),
    "json nan": ('{"event": NaN}', "not valid JSON"),
    "too long": ("[" * 100_000 + "]" * 100_000, "exceeds the limit"),
    "deep nesting": ("[" * 30_000 + "]" * 30_000, "nested too deeply"),
    "no event": ('{"streamSid": "MZ"}', "missing field 'event'"),
    "event not string": ('{"event": 5}', "must be a string"),
    "unknown event": ('{"event": "dance"}', "unknown Twilio event 'dance'"),
    "bad base64": (media("%%%"), "not valid base64"),
    "payload not string": (media(payload=5), "'payload' must be a string"),  # type: ignore[arg-type]
    "other stream": (media(streamSid="MZother"), "not this stream"),
    "unknown track": (media(media={"track": "sideways", "payload": "//8="}), "was not announced"),
    "bad chunk": (media(media={"payload": "//8=", "chunk": "-3"}), "non-negative decimal"),
    "bad dtmf": ('{"event": "dtmf", "dtmf": {"digit": "x"}}', "not a DTMF digit"),
    "mark without name": ('{"event": "mark", "mark": {}}', "missing field 'name'"),
    "second start": (TwilioStreamClient().start(), "second 'start'"),
    "bad sequence number": ('{"event": "dtmf", "sequenceNumber": "abc", "dtmf": {"digit": "1"}}', "decimal"),
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_malformed_messages_become_nonfatal_violations(kind: str) -> None:
    text, expected = MALFORMED[kind]
    core, _client = started()
    (event,) = core.receive_text(text)
    assert isinstance(event, ProtocolViolation), kind
    assert isinstance(event.error, ProtocolError)
    assert expected in event.message
    assert not event.fatal and core.close_request is None


def test_media_before_start_and_stop_before_start() -> None:
    core = TwilioMediaStream()
    (event,) = core.receive_text(media())
    assert isinstance(event, ProtocolViolation) and "before 'start'" in event.message
    (event,) = core.receive_text('{"event": "stop"}')
    assert isinstance(event, ProtocolViolation) and "before 'start'" in event.message


def test_unsupported_media_format_is_fatal() -> None:
    start = json.loads(TwilioStreamClient().start())
    start["start"]["mediaFormat"] = {"encoding": "audio/x-l16", "sampleRate": 16000, "channels": 1}
    core = TwilioMediaStream()
    (event,) = core.receive_text(json.dumps(start))
    assert isinstance(event, ProtocolViolation) and event.fatal and event.code == "unsupported_media"
    assert core.close_request is not None and core.close_request.code == CloseCode.UNSUPPORTED_DATA


def test_binary_frame_and_messages_after_stop() -> None:
    core, client = started()
    (event,) = core.receive_bytes(b"\x00\x01")
    assert isinstance(event, ProtocolViolation) and "binary" in event.message
    core.receive_text(client.stop())
    (event,) = core.receive_text(client.media(b"\xff"))
    assert isinstance(event, ProtocolViolation) and "after 'stop'" in event.message


def test_client_rejects_bad_server_messages() -> None:
    client = TwilioStreamClient()
    for text in [
        "nope",
        '{"event": "media", "streamSid": "MZx"}',
        json.dumps({"event": "jump", "streamSid": client.stream_sid}),
    ]:
        (event,) = client.receive_text(text)
        assert isinstance(event, ProtocolViolation)


def test_mulaw_roundtrip_is_close() -> None:
    pcm = tone_pcm16(0.05)
    back = struct.unpack(f"<{len(pcm) // 2}h", mulaw_to_pcm16(pcm16_to_mulaw(pcm)))
    orig = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    # G.711 keeps the error within ~1/16 of the magnitude (plus the smallest step).
    assert all(abs(a - b) <= abs(a) / 16 + 8 for a, b in zip(orig, back, strict=True))


# ---- X-Twilio-Signature ------------------------------------------------------------------------
TOKEN = "12345"
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}


def test_signature_matches_twilios_published_example() -> None:
    assert compute_twilio_signature(TOKEN, DOC_URL, DOC_PARAMS) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    validate_twilio_signature(TOKEN, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", DOC_URL, DOC_PARAMS)


def test_websocket_upgrade_signature_good_and_bad() -> None:
    url = "wss://voice.example.com/twilio/stream?tenant=7"
    good = compute_twilio_signature(TOKEN, url)
    validate_twilio_signature(TOKEN, good, url)
    validate_twilio_signature(
        TOKEN, good, "wss://voice.example.com:443/twilio/stream?tenant=7"
    )  # proxy added port
    with pytest.raises(AuthenticationError, match="does not match"):
        validate_twilio_signature(TOKEN, good, "wss://voice.example.com/twilio/stream?tenant=8")
    with pytest.raises(AuthenticationError, match="does not match"):
        validate_twilio_signature("other-token", good, url)
    with pytest.raises(AuthenticationError, match="missing"):
        validate_twilio_signature(TOKEN, None, url)
    with pytest.raises(AuthenticationError, match="no Twilio auth token"):
        validate_twilio_signature("", good, url)
    with pytest.raises(AuthenticationError):
        validate_twilio_signature(TOKEN, "\udcff garbage", url)
