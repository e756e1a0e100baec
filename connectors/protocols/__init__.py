"""I/O-free protocol cores: one per provider, all behind :class:`CallProtocol`.

Cores (server side, one instance per websocket connection):

=========================  ==========================================================
``TwilioMediaStream``      Twilio Media Streams, bidirectional (``<Connect><Stream>``)
``AudioHookServer``        Genesys Cloud AudioHook v2, monitor mode (agent assist)
``EmotuneWsServer``        our emotune-ws v1 (apps, in-car unit; docs/protocol.md)
=========================  ==========================================================

This package holds the cores only: no sockets, no clocks, no files. The peers' side (what
Twilio, Genesys or an app would send; for the demo caller, tests and benchmarks) lives in
:mod:`connectors.devtools` (``TwilioStreamClient``, ``AudioHookClient``, ``EmotuneWsClient``).

Upgrade-request authentication is a set of pure functions, called by the gateway before it
accepts the websocket: :func:`validate_twilio_signature` (X-Twilio-Signature),
:func:`verify_api_key` + :func:`verify_signature` (AudioHook X-API-KEY and RFC 9421 HMAC
signature, replay-checked with a shared :class:`NonceCache`), :func:`verify_bearer_token`
(emotune-ws). Each raises :class:`~emotune.errors.AuthenticationError` with the reason.

How the gateway drives a core (no asyncio inside the core)::

    core = TwilioMediaStream(transfer_to=cfg.gateway.twilio.transfer_to)
    async for message in websocket:
        events = core.receive_text(message) if isinstance(message, str) else core.receive_bytes(message)
        for outgoing in core.data_to_send():          # protocol-required replies, in order
            await websocket.send(outgoing)
        for event in events:
            match event:
                case CallStarted(): ...               # open the emotion stream for event.parties
                case AudioReceived(): ...             # feed event.payload (wire encoding) to the runtime
                case TextTurn() | DtmfReceived(): ... # to Rasa
                case ProtocolViolation(fatal=True): log(event.message)
                case CallEnded(): ...
        if core.close_request:                        # the core says the connection is done
            await websocket.close(core.close_request.code, core.close_request.reason)
            break

    # Gateway -> peer: each send_* returns the frames to write (str = text, bytes = binary).
    for frame in core.send_audio(pcm16_8k, encoding="pcm16", sample_rate=8000): await websocket.send(frame)
    for frame in core.send_emotion(emotion_event, party="caller"): ...
    for event in core.take_events(): ...             # EscalationRaised, TransferRequested

Where the operator config goes (``cfg = emotune.config.load_config(...)``)::

    TwilioMediaStream(transfer_to=cfg.gateway.twilio.transfer_to)
    validate_twilio_signature(cfg.gateway.twilio.auth_token.get_secret_value(), header, full_wss_url)
    verify_api_key(headers, cfg.gateway.genesys.api_key.get_secret_value())
    verify_signature(headers, path_and_query, host, cfg.gateway.genesys.client_secret.get_secret_value(),
                     now=time.time(), nonce_cache=shared_cache, max_age_s=cfg.gateway.genesys.max_clock_skew_s)
    AudioHookServer(session_id=headers["Audiohook-Session-Id"], organization_id=headers["Audiohook-Organization-Id"],
                    escalation=EscalationTracker.from_config(cfg.escalation),
                    max_frame_bytes=cfg.gateway.max_frame_bytes)
    EmotuneWsServer(auth_token=<cfg.gateway.auth_token secret>, authenticated=<Bearer header verified>,
                    max_frame_bytes=cfg.gateway.max_frame_bytes)

AudioHook note: after a fatal violation or ``close()`` the core waits (state ``disconnecting``)
for Genesys' ``close``; close the socket yourself if none arrives within a few seconds.

Guarantees: ``receive_*`` never raise for any peer input (random bytes, broken JSON, wrong
types, gaps): the result is a :class:`ProtocolViolation` whose ``error`` is a
:class:`~emotune.errors.ProtocolError` (``SequenceError`` for gaps, ``AuthenticationError`` for
identity mismatches), with the protocol's error code and a websocket close code. ``send_*``
raise ProtocolError / FrameError / SampleRateError / ConfigError for misuse by our own code.
"""

from __future__ import annotations

from .audiohook import AudioHookServer
from .base import (
    AudioDiscarded,
    AudioEncoding,
    AudioFormat,
    AudioReceived,
    CallEnded,
    CallProtocol,
    CallStarted,
    CloseCode,
    CloseRequest,
    DtmfReceived,
    EscalationRaised,
    EscalationTracker,
    Event,
    MarkAcknowledged,
    Outgoing,
    PeerError,
    PingReceived,
    ProtocolViolation,
    SessionUpdated,
    StreamPaused,
    StreamResumed,
    TextTurn,
    TransferRequested,
)
from .emotune_ws import EmotuneWsServer, verify_bearer_token
from .g711 import mulaw_to_pcm16, pcm16_to_mulaw
from .http_signatures import NonceCache, sign_request, verify_api_key, verify_signature
from .twilio import TwilioMediaStream, transfer_twiml, validate_twilio_signature

__all__ = [
    # interface + events
    "CallProtocol",
    "Event",
    "CallStarted",
    "AudioReceived",
    "DtmfReceived",
    "MarkAcknowledged",
    "TextTurn",
    "PingReceived",
    "StreamPaused",
    "StreamResumed",
    "AudioDiscarded",
    "SessionUpdated",
    "PeerError",
    "CallEnded",
    "ProtocolViolation",
    "EscalationRaised",
    "TransferRequested",
    "EscalationTracker",
    "AudioFormat",
    "AudioEncoding",
    "Outgoing",
    "CloseCode",
    "CloseRequest",
    # cores
    "TwilioMediaStream",
    "AudioHookServer",
    "EmotuneWsServer",
    # upgrade authentication and helpers
    "validate_twilio_signature",
    "transfer_twiml",
    "verify_api_key",
    "verify_signature",
    "sign_request",
    "NonceCache",
    "verify_bearer_token",
    "pcm16_to_mulaw",
    "mulaw_to_pcm16",
    "PROTOCOLS",
]

# Gateway route name -> core class.
PROTOCOLS: dict[str, type[CallProtocol]] = {
    "twilio": TwilioMediaStream,
    "genesys": AudioHookServer,
    "emotune-ws": EmotuneWsServer,
}
