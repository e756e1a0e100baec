"""Genesys Cloud AudioHook (protocol version 2), server side in monitor mode (agent assist).

Genesys (the client) opens a websocket, then a session:

* ``open`` (client) -> ``opened`` (server): media negotiation. We accept PCMU 8 kHz with channels
  ``external`` (the customer) and/or ``internal`` (the agent); stereo frames interleave one byte
  per channel in the negotiated channel order and are split into ``caller`` / ``agent`` audio.
* ``ping`` -> ``pong``; ``paused``/``resumed`` (client reports a pause, e.g. secure flow);
  ``pause``/``resume`` (server asks); ``update`` (language); ``discarded``; ``error``;
  ``close`` -> ``closed``; ``disconnect`` (server asks the client to close; reason
  completed/unauthorized/error).
* Every text message carries ``version`` "2", session ``id``, ``seq``; client messages also
  ``serverseq`` (last server seq seen) and ``position`` (ISO 8601 duration of audio so far);
  server messages ``clientseq`` (last client seq seen). A client ``seq`` must be exactly the
  previous one plus one: any gap ends the session (:class:`~emotune.errors.SequenceError` ->
  ``disconnect`` reason ``error``).

Fatal violations here do not close the socket at once: the core queues a ``disconnect`` and
waits in state ``disconnecting`` for the client's ``close``, answers ``closed`` and only then sets
``close_request``. The gateway should still close after a few seconds if no ``close`` arrives.

Emotion labels go out as AudioHook ``event`` messages with a custom entity type
``emotune.emotion`` (data: the CONTRACTS.md emotion event plus ``party``); sustained caller anger
adds an ``emotune.escalation`` entity and an :class:`~connectors.protocols.base.EscalationRaised`
event. Genesys' own consumers only read the entity types they know (``transcript``,
``agentassist``); custom entities are for our agent-assist UI reading the same stream, so treat
them as a documented extension, not something Genesys displays.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from emotune.errors import AuthenticationError, ProtocolError, SequenceError

from .base import (
    DEFAULT_MAX_MESSAGE_CHARS,
    AudioDiscarded,
    AudioFormat,
    AudioReceived,
    CallEnded,
    CallProtocol,
    CallStarted,
    CloseCode,
    CloseRequest,
    EscalationRaised,
    EscalationTracker,
    Event,
    Outgoing,
    PeerError,
    PingReceived,
    ProtocolViolation,
    SessionUpdated,
    StreamPaused,
    StreamResumed,
    get_field,
    parse_json_object,
)

__all__ = [
    "AUDIOHOOK_VERSION",
    "NULL_UUID",
    "CHANNEL_PARTIES",
    "parse_duration",
    "format_duration",
    "AudioHookServer",
]

AUDIOHOOK_VERSION = "2"
NULL_UUID = "00000000-0000-0000-0000-000000000000"
CHANNEL_PARTIES = {"external": "caller", "internal": "agent"}
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DURATION = re.compile(r"^PT(\d{1,12}(?:\.\d{1,9})?)S$")
_CLIENT_TYPES = ("open", "close", "discarded", "error", "paused", "ping", "resumed", "update")
_DISCONNECT_REASONS = ("completed", "unauthorized", "error")


def parse_duration(text: Any, where: str) -> float:
    """AudioHook durations are ISO 8601 seconds only: ``PT12.34S``."""
    if not isinstance(text, str):
        raise ProtocolError(f"{where}: duration must be a string like 'PT1.5S'")
    match = _DURATION.match(text)
    if match is None:
        raise ProtocolError(f"{where}: {text[:40]!r} is not a duration like 'PT1.5S'")
    return float(match.group(1))


def format_duration(seconds: float) -> str:
    text = f"{max(seconds, 0.0):.3f}".rstrip("0").rstrip(".")
    return f"PT{text}S"


def _check_uuid(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _UUID.match(value):
        raise ProtocolError(f"{where}: {str(value)[:40]!r} is not a UUID")
    return value.lower()


class _Disconnect(Exception):
    """Internal: this violation ends the session with a ``disconnect`` of this reason."""

    def __init__(self, error: Exception, code: str, reason: str = "error") -> None:
        self.error, self.code, self.reason = error, code, reason


@dataclass(frozen=True, slots=True)
class _Media:
    format: str
    rate: int
    channels: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {"type": "audio", "format": self.format, "channels": list(self.channels), "rate": self.rate}


class AudioHookServer(CallProtocol):
    """One AudioHook session, server side.

    ``session_id`` / ``organization_id``: the ``Audiohook-Session-Id`` / ``Audiohook-Organization-Id``
    upgrade headers; when given, the ``open`` message must match them (else ``unauthorized``).
    ``escalation``: tracker applied to caller emotion events (defaults: 3 angry in a row at >= 0.5).
    """

    name = "genesys_audiohook"
    capabilities = frozenset({"emotion", "handoff", "pause", "resume"})

    def __init__(
        self,
        session_id: str | None = None,
        organization_id: str | None = None,
        escalation: EscalationTracker | None = None,
        supported_languages: Sequence[str] = ("en-US",),
        start_paused: bool = False,
        max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS,
        max_frame_bytes: int = 64_000,
    ) -> None:
        super().__init__()
        self.session_id = session_id.lower() if session_id else None
        self.organization_id = organization_id.lower() if organization_id else None
        self.escalation = escalation or EscalationTracker()
        self.supported_languages = list(supported_languages)
        self.start_paused = start_paused
        self.max_message_chars = max_message_chars
        self.max_frame_bytes = max_frame_bytes
        self.state = "awaiting_open"  # -> active <-> paused; -> disconnecting -> closed
        self.seq = 0  # last seq we sent
        self.clientseq = 0  # last client seq accepted
        self.media: _Media | None = None
        self.language: str | None = None
        self.samples_received = 0  # per channel, drives AudioReceived timestamps
        self.client_position_s = 0.0

    # -- sending helpers -------------------------------------------------------------------------
    def _message(self, kind: str, parameters: Mapping[str, Any]) -> str:
        self.seq += 1
        return json.dumps(
            {
                "version": AUDIOHOOK_VERSION,
                "type": kind,
                "seq": self.seq,
                "clientseq": self.clientseq,
                "id": self.session_id or NULL_UUID,
                "parameters": dict(parameters),
            }
        )

    def _disconnect(self, failure: _Disconnect) -> ProtocolViolation:
        """Queue ``disconnect``; wait for the client's ``close`` (see module doc)."""
        info = str(failure.error)[:500]
        if self.state not in ("disconnecting", "closed"):
            self._outbox.append(self._message("disconnect", {"reason": failure.reason, "info": info}))
            self.state = "disconnecting"
        error = failure.error if isinstance(failure.error, ProtocolError) else ProtocolError(info)
        close_code = (
            CloseCode.POLICY_VIOLATION if failure.reason == "unauthorized" else CloseCode.PROTOCOL_ERROR
        )
        return ProtocolViolation(error=error, code=failure.code, close_code=close_code, fatal=True)

    # -- incoming --------------------------------------------------------------------------------
    def receive_text(self, text: str) -> list[Event]:
        if self.state == "closed":
            return [
                ProtocolViolation(
                    ProtocolError("message after 'closed'"), "after_close", CloseCode.PROTOCOL_ERROR, False
                )
            ]
        try:
            message = parse_json_object(text, self.max_message_chars)
            kind = self._check_envelope(message)
        except _Disconnect as failure:
            if self.state == "disconnecting":
                return []  # already ending: the client may still be flushing; only 'close' matters
            return [self._disconnect(failure)]
        except ProtocolError as exc:
            if self.state == "disconnecting":
                return []
            return [self._disconnect(_Disconnect(exc, "bad_message"))]
        if self.state == "disconnecting" and kind != "close":
            return []
        try:
            return self._dispatch(kind, message)
        except _Disconnect as failure:
            return [self._disconnect(failure)]
        except ProtocolError as exc:
            return [self._disconnect(_Disconnect(exc, "bad_parameters"))]

    def _check_envelope(self, message: Mapping[str, Any]) -> str:
        version = message.get("version")
        if version != AUDIOHOOK_VERSION:
            raise _Disconnect(
                ProtocolError(f"unsupported AudioHook version {str(version)[:20]!r} (expected '2')"),
                "version",
            )
        kind = get_field(message, "type", str, "message")
        seq = get_field(message, "seq", int, kind[:40])
        serverseq = get_field(message, "serverseq", int, kind[:40])
        session_id = _check_uuid(message.get("id"), f"{kind[:40]}: id")
        get_field(message, "parameters", dict, kind[:40])
        if "position" in message:
            self.client_position_s = parse_duration(message["position"], f"{kind[:40]}: position")
        if self.state == "disconnecting":
            return kind  # no more bookkeeping: we only wait for 'close'
        if seq != self.clientseq + 1:
            raise _Disconnect(
                SequenceError(f"{kind[:40]}: seq {seq} after {self.clientseq} (must increase by exactly 1)"),
                "seq_gap",
            )
        if serverseq < 0 or serverseq > self.seq:
            raise _Disconnect(
                SequenceError(f"{kind[:40]}: serverseq {serverseq} but we sent only {self.seq}"), "serverseq"
            )
        if self.state == "awaiting_open":
            if self.session_id is not None and session_id != self.session_id:
                self.session_id = session_id  # answer the disconnect in terms the client recognises
                raise _Disconnect(
                    AuthenticationError("session id differs from the Audiohook-Session-Id header"),
                    "session_id",
                    "unauthorized",
                )
            self.session_id = session_id
        elif session_id != self.session_id:
            raise _Disconnect(ProtocolError(f"{kind[:40]}: session id changed mid-session"), "session_id")
        if kind not in _CLIENT_TYPES:
            raise _Disconnect(
                ProtocolError(f"'{kind[:40]}' is not an AudioHook client message"), "unknown_type"
            )
        self.clientseq = seq
        return kind

    def _dispatch(self, kind: str, message: Mapping[str, Any]) -> list[Event]:
        parameters: Mapping[str, Any] = message["parameters"]
        if kind == "close":
            return self._on_close(parameters)
        if self.state == "awaiting_open" and kind != "open":
            raise _Disconnect(ProtocolError(f"'{kind}' before 'open'"), "not_open")
        if kind == "open":
            return self._on_open(parameters)
        if kind == "ping":
            rtt = parse_duration(parameters["rtt"], "ping: rtt") if "rtt" in parameters else None
            self._outbox.append(self._message("pong", {}))
            return [PingReceived(rtt_s=rtt)]
        if kind == "paused":
            if self.state != "active":
                return []  # idempotent: already paused
            self.state = "paused"
            return [StreamPaused()]
        if kind == "resumed":
            discarded = parse_duration(parameters.get("discarded", "PT0S"), "resumed: discarded")
            if self.state != "paused":
                return []
            self.state = "active"
            return [StreamResumed(discarded_s=discarded)]
        if kind == "discarded":
            start = parse_duration(parameters.get("start"), "discarded: start")
            duration = parse_duration(parameters.get("discarded"), "discarded: discarded")
            return [AudioDiscarded(start_s=start, duration_s=duration)]
        if kind == "update":
            language = parameters.get("language")
            if language is not None and not isinstance(language, str):
                raise ProtocolError("update: language must be a string")
            if language:
                self.language = language
            return [SessionUpdated(parameters=dict(parameters))]
        # kind == "error": the client reports its own trouble; it will close the session itself.
        code = parameters.get("code", 0)
        text = parameters.get("message", "")
        if isinstance(code, bool) or not isinstance(code, int | str) or not isinstance(text, str):
            raise ProtocolError("error: code must be a number and message a string")
        return [PeerError(code=code, message=text[:1000])]

    def _on_open(self, parameters: Mapping[str, Any]) -> list[Event]:
        if self.state != "awaiting_open":
            raise _Disconnect(ProtocolError("second 'open' in one session"), "already_open")
        organization = _check_uuid(parameters.get("organizationId"), "open: organizationId")
        if self.organization_id is not None and organization != self.organization_id:
            raise _Disconnect(
                AuthenticationError("organizationId differs from the Audiohook-Organization-Id header"),
                "organization",
                "unauthorized",
            )
        conversation = _check_uuid(parameters.get("conversationId"), "open: conversationId")
        participant = parameters.get("participant", {})
        if not isinstance(participant, dict):
            raise ProtocolError("open: participant must be an object")
        offers = get_field(parameters, "media", list, "open")
        media = self._select_media(offers)
        if media is None:
            raise _Disconnect(
                ProtocolError(
                    "open: no supported media offered (need type audio, format PCMU, rate 8000, "
                    "channels from external/internal)"
                ),
                "unsupported_media",
            )
        language = parameters.get("language")
        if language is not None and not isinstance(language, str):
            raise ProtocolError("open: language must be a string")
        custom = parameters.get("customConfig", {})
        if not isinstance(custom, dict):
            raise ProtocolError("open: customConfig must be an object")
        self.media, self.language = media, language
        self.call_id = conversation
        opened: dict[str, Any] = {"startPaused": self.start_paused, "media": [media.as_json()]}
        if parameters.get("supportedLanguages") is True:
            opened["supportedLanguages"] = self.supported_languages
        self._outbox.append(self._message("opened", opened))
        self.state = "paused" if self.start_paused else "active"
        return [
            CallStarted(
                call_id=conversation,
                stream_id=self.session_id or NULL_UUID,
                audio=AudioFormat("mulaw", media.rate, len(media.channels)),
                parties=tuple(CHANNEL_PARTIES[c] for c in media.channels),
                custom_parameters={k: str(v) for k, v in custom.items()},
                metadata={
                    "organization_id": organization,
                    "participant": participant,
                    "language": language,
                    # Genesys probes a new integration with an all-zero conversation id.
                    "is_probe": conversation == NULL_UUID,
                },
            )
        ]

    @staticmethod
    def _select_media(offers: list[Any]) -> _Media | None:
        usable = []
        for offer in offers:
            if not isinstance(offer, dict):
                raise ProtocolError("open: each media offer must be an object")
            channels = offer.get("channels")
            if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
                raise ProtocolError("open: media channels must be a list of strings")
            if (
                offer.get("type") == "audio"
                and offer.get("format") == "PCMU"
                and offer.get("rate") == 8000
                and 1 <= len(channels) <= 2
                and len(set(channels)) == len(channels)
                and all(c in CHANNEL_PARTIES for c in channels)
            ):
                usable.append(_Media("PCMU", 8000, tuple(channels)))
        # Prefer stereo (both parties) over mono; otherwise keep Genesys' order of preference.
        usable.sort(key=lambda m: -len(m.channels))
        return usable[0] if usable else None

    def _on_close(self, parameters: Mapping[str, Any]) -> list[Event]:
        reason = parameters.get("reason", "end")
        self._outbox.append(self._message("closed", {}))
        self.state = "closed"
        self.close_request = CloseRequest(CloseCode.NORMAL, "session closed")
        return [CallEnded(reason=str(reason)[:100])]

    def receive_bytes(self, data: bytes) -> list[Event]:
        if self.state in ("disconnecting", "closed"):
            return []  # in flight before the client saw our disconnect / its own close
        if self.state == "awaiting_open" or self.media is None:
            return [
                self._disconnect(
                    _Disconnect(ProtocolError("audio frame before 'opened'"), "audio_before_open")
                )
            ]
        if self.state == "paused":
            return [
                self._disconnect(_Disconnect(ProtocolError("audio frame while paused"), "audio_while_paused"))
            ]
        channels = len(self.media.channels)
        if len(data) > self.max_frame_bytes:
            error = ProtocolError(f"audio frame of {len(data)} bytes exceeds {self.max_frame_bytes}")
            return [self._disconnect(_Disconnect(error, "frame_too_large"))]
        if len(data) % channels:
            error = ProtocolError(
                f"stereo PCMU frame of {len(data)} bytes is not a whole number of sample pairs"
            )
            return [self._disconnect(_Disconnect(error, "bad_frame"))]
        if not data:
            return []
        timestamp_ms = 1000.0 * self.samples_received / self.media.rate
        self.samples_received += len(data) // channels
        return [
            AudioReceived(
                channel=CHANNEL_PARTIES[name],
                payload=data[index::channels],
                encoding="mulaw",
                sample_rate=self.media.rate,
                timestamp_ms=timestamp_ms,
            )
            for index, name in enumerate(self.media.channels)
        ]

    # -- outgoing --------------------------------------------------------------------------------
    def _require_open(self) -> bool:
        """True if events may be sent now; False if the session is ending (drop quietly)."""
        if self.state == "awaiting_open":
            raise ProtocolError("cannot send AudioHook events before the session is opened")
        return self.state in ("active", "paused")

    def send_event(self, entities: Sequence[Mapping[str, Any]]) -> list[Outgoing]:
        """An ``event`` message with the given entities (``{"type": ..., "data": ...}``)."""
        if not self._require_open():
            return []
        return [self._message("event", {"entities": [dict(e) for e in entities]})]

    def send_emotion(self, event: Mapping[str, Any], party: str = "caller") -> list[Outgoing]:
        """Emotion for ``party`` ('caller' or 'agent'); caller streaks may add an escalation."""
        if party not in CHANNEL_PARTIES.values():
            raise ProtocolError(f"unknown party {party!r} (caller or agent)")
        label, confidence = event.get("label"), event.get("confidence", 0.0)
        if not isinstance(label, str) or not isinstance(confidence, int | float):
            raise ProtocolError("emotion event needs a string 'label' and a numeric 'confidence'")
        entities: list[dict[str, Any]] = [{"type": "emotune.emotion", "data": {"party": party, **event}}]
        if party == "caller" and self.escalation.observe(label, float(confidence)):
            streak = tuple(self.escalation.labels)
            raised = EscalationRaised(
                party="caller", reason="sustained_negative_emotion", streak=len(streak), emotions=streak
            )
            self._events.append(raised)
            entities.append(
                {
                    "type": "emotune.escalation",
                    "data": {
                        "party": "caller",
                        "reason": raised.reason,
                        "streak": raised.streak,
                        "emotions": list(streak),
                    },
                }
            )
        return self.send_event(entities)

    def send_handoff(
        self,
        reason: str,
        summary: str,
        target: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> list[Outgoing]:
        """Monitor mode cannot move the call; we tell the agent-assist side instead (an
        ``emotune.handoff`` entity, with the context when there is one). Genesys routes on its own
        entity types only, so nothing here reaches an agent by itself: no claim to the caller."""
        data: dict[str, Any] = {"reason": reason, "summary": summary}
        if target:
            data["target"] = target
        if context is not None:
            data["context"] = dict(context)
        return self.send_event([{"type": "emotune.handoff", "data": data}])

    def send_pause(self) -> list[Outgoing]:
        """Ask Genesys to stop streaming (it confirms with ``paused``)."""
        return [self._message("pause", {})] if self._require_open() else []

    def send_resume(self) -> list[Outgoing]:
        return [self._message("resume", {})] if self._require_open() else []

    def close(self, reason: str = "completed") -> list[Outgoing]:
        """Server-initiated end: ``disconnect`` (completed); Genesys answers with ``close``."""
        if self.state in ("disconnecting", "closed"):
            return []
        if reason not in _DISCONNECT_REASONS:
            reason = "completed"
        self.state = "disconnecting"
        return [self._message("disconnect", {"reason": reason})]
