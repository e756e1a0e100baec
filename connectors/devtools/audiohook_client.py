"""What Genesys AudioHook sends for one session, and what it makes of the server's messages.

A peer emulator for tests and the demo; the server core is :mod:`connectors.protocols.audiohook`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.protocols.audiohook import (
    AUDIOHOOK_VERSION,
    format_duration,
)
from connectors.protocols.base import (
    CloseCode,
    Event,
    ProtocolViolation,
    get_field,
    parse_json_object,
)
from emotune.errors import ProtocolError, SequenceError

__all__ = [
    "Opened",
    "Pong",
    "PauseRequested",
    "ResumeRequested",
    "ServerEvent",
    "DisconnectRequested",
    "Closed",
    "Updated",
    "AudioHookClient",
]


@dataclass(frozen=True, slots=True)
class Opened(Event):
    media: tuple[Mapping[str, Any], ...]
    start_paused: bool
    supported_languages: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Pong(Event):
    pass


@dataclass(frozen=True, slots=True)
class PauseRequested(Event):
    pass


@dataclass(frozen=True, slots=True)
class ResumeRequested(Event):
    pass


@dataclass(frozen=True, slots=True)
class ServerEvent(Event):
    entities: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class DisconnectRequested(Event):
    reason: str
    info: str = ""


@dataclass(frozen=True, slots=True)
class Closed(Event):
    pass


@dataclass(frozen=True, slots=True)
class Updated(Event):
    pass


_SERVER_EVENTS = {
    "pong": Pong,
    "pause": PauseRequested,
    "resume": ResumeRequested,
    "closed": Closed,
    "updated": Updated,
}


class AudioHookClient:
    """Builds what Genesys sends for one session and checks the server's replies (seq/clientseq)."""

    def __init__(
        self,
        session_id: str | None = None,
        organization_id: str = "d7934305-0972-4844-938e-9060eef73d05",
        conversation_id: str | None = None,
        channels: Sequence[str] = ("external", "internal"),
    ) -> None:
        self.session_id = session_id or str(uuid.uuid4())
        self.organization_id = organization_id
        self.conversation_id = conversation_id or str(uuid.uuid4())
        self.channels = list(channels)
        self.seq = 0
        self.serverseq = 0
        self.samples_sent = 0

    @property
    def position(self) -> str:
        return format_duration(self.samples_sent / 8000)

    def message(self, kind: str, parameters: Mapping[str, Any] | None = None) -> str:
        self.seq += 1
        return json.dumps(
            {
                "version": AUDIOHOOK_VERSION,
                "id": self.session_id,
                "type": kind,
                "seq": self.seq,
                "serverseq": self.serverseq,
                "position": self.position,
                "parameters": dict(parameters or {}),
            }
        )

    def open(
        self, media: Iterable[Mapping[str, Any]] | None = None, language: str = "en-US", **extra: Any
    ) -> str:
        offers = (
            list(media)
            if media is not None
            else [
                {"type": "audio", "format": "PCMU", "channels": self.channels, "rate": 8000},
                {"type": "audio", "format": "PCMU", "channels": self.channels[:1], "rate": 8000},
            ]
        )
        return self.message(
            "open",
            {
                "organizationId": self.organization_id,
                "conversationId": self.conversation_id,
                "participant": {
                    "id": str(uuid.uuid4()),
                    "ani": "+15551230000",
                    "aniName": "Caller",
                    "dnis": "+15559870000",
                },
                "media": offers,
                "language": language,
                **extra,
            },
        )

    def audio(self, caller: bytes, agent: bytes | None = None) -> bytes:
        """One binary frame: mono caller audio, or caller+agent interleaved byte by byte."""
        if agent is None:
            self.samples_sent += len(caller)
            return caller
        if len(caller) != len(agent):
            raise ProtocolError("caller and agent audio must have the same length to interleave")
        frame = bytearray(2 * len(caller))
        frame[0::2], frame[1::2] = caller, agent
        self.samples_sent += len(caller)
        return bytes(frame)

    def ping(self, rtt_s: float | None = None) -> str:
        return self.message("ping", {"rtt": format_duration(rtt_s)} if rtt_s is not None else {})

    def paused(self) -> str:
        return self.message("paused")

    def resumed(self, discarded_s: float = 0.0) -> str:
        return self.message("resumed", {"start": self.position, "discarded": format_duration(discarded_s)})

    def update(self, language: str) -> str:
        return self.message("update", {"language": language})

    def error(self, code: int, text: str) -> str:
        return self.message("error", {"code": code, "message": text})

    def close(self, reason: str = "end") -> str:
        return self.message("close", {"reason": reason})

    def receive_text(self, text: str) -> list[Event]:
        """Parse one server message; checks seq continuity and that clientseq is not ahead of us."""
        try:
            message = parse_json_object(text)
            if message.get("version") != AUDIOHOOK_VERSION:
                raise ProtocolError("server message has the wrong version")
            kind = get_field(message, "type", str, "server message")
            seq = get_field(message, "seq", int, kind[:40])
            clientseq = get_field(message, "clientseq", int, kind[:40])
            parameters = get_field(message, "parameters", dict, kind[:40])
            if seq != self.serverseq + 1:
                raise SequenceError(f"server seq {seq} after {self.serverseq}")
            if clientseq > self.seq:
                raise SequenceError(f"server clientseq {clientseq} ahead of our seq {self.seq}")
            if message.get("id") != self.session_id:
                raise ProtocolError("server message for another session")
            self.serverseq = seq
            if kind == "opened":
                media = get_field(parameters, "media", list, "opened")
                languages = parameters.get("supportedLanguages", [])
                if not isinstance(languages, list) or not all(isinstance(x, str) for x in languages):
                    raise ProtocolError("opened: supportedLanguages must be a list of strings")
                return [Opened(tuple(media), bool(parameters.get("startPaused", False)), tuple(languages))]
            if kind == "event":
                return [ServerEvent(tuple(get_field(parameters, "entities", list, "event")))]
            if kind == "disconnect":
                reason = get_field(parameters, "reason", str, "disconnect")
                info = parameters.get("info", "")
                return [DisconnectRequested(reason, info if isinstance(info, str) else "")]
            if kind in _SERVER_EVENTS:
                return [_SERVER_EVENTS[kind]()]
            raise ProtocolError(f"unknown server message '{kind[:40]}'")
        except SequenceError as exc:
            return [ProtocolViolation(exc, "seq_gap", CloseCode.PROTOCOL_ERROR, True)]
        except ProtocolError as exc:
            return [ProtocolViolation(exc, "bad_message", CloseCode.PROTOCOL_ERROR, True)]
