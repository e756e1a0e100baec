"""What Twilio Media Streams sends for one call, and what it makes of the gateway's replies.

A peer emulator for the demo caller, tests and benchmarks; the server side is
:mod:`connectors.protocols.twilio`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.protocols.base import (
    CloseCode,
    Event,
    ProtocolViolation,
    get_field,
    parse_json_object,
)
from connectors.protocols.twilio import decode_base64
from emotune.errors import ProtocolError

__all__ = [
    "OutboundMedia",
    "MarkRequested",
    "ClearRequested",
    "TwilioStreamClient",
]


@dataclass(frozen=True, slots=True)
class OutboundMedia(Event):
    """Bot audio the server sent (client-side view of a server ``media`` message), mu-law 8 kHz."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class MarkRequested(Event):
    """The server placed a mark; a real Twilio echoes it once the audio before it has played."""

    name: str


@dataclass(frozen=True, slots=True)
class ClearRequested(Event):
    """The server asked to drop queued audio (barge-in)."""


class TwilioStreamClient:
    """Builds the messages Twilio would send for one call and parses the server's replies.

    Each builder returns one JSON text frame; sequence numbers, chunks and timestamps advance
    like Twilio's (timestamps from the audio sent so far, 8 samples per ms).
    """

    def __init__(
        self,
        stream_sid: str = "MZ00000000000000000000000000000000",
        call_sid: str = "CA00000000000000000000000000000000",
        account_sid: str = "AC00000000000000000000000000000000",
        custom_parameters: Mapping[str, str] | None = None,
        tracks: Sequence[str] = ("inbound",),
    ) -> None:
        self.stream_sid, self.call_sid, self.account_sid = stream_sid, call_sid, account_sid
        self.custom_parameters = dict(custom_parameters or {})
        self.tracks = list(tracks)
        self.sequence = 0
        self.chunk = 0
        self.samples_sent = 0
        self.marks_to_echo: list[str] = []

    def _next(self, body: dict[str, Any]) -> str:
        self.sequence += 1
        return json.dumps({"event": body.pop("event"), "sequenceNumber": str(self.sequence), **body})

    def connected(self) -> str:
        return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self) -> str:
        return self._next(
            {
                "event": "start",
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": self.tracks,
                    "customParameters": self.custom_parameters,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
                "streamSid": self.stream_sid,
            }
        )

    def media(self, mulaw: bytes, track: str = "inbound") -> str:
        self.chunk += 1
        timestamp = self.samples_sent // 8
        self.samples_sent += len(mulaw)
        return self._next(
            {
                "event": "media",
                "media": {
                    "track": track,
                    "chunk": str(self.chunk),
                    "timestamp": str(timestamp),
                    "payload": base64.b64encode(mulaw).decode("ascii"),
                },
                "streamSid": self.stream_sid,
            }
        )

    def media_frames(self, mulaw: bytes, frame_ms: int = 20) -> list[str]:
        step = 8 * frame_ms
        return [self.media(mulaw[i : i + step]) for i in range(0, len(mulaw), step)]

    def dtmf(self, digit: str) -> str:
        return self._next(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    def mark(self, name: str) -> str:
        return self._next({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    def stop(self) -> str:
        return self._next(
            {
                "event": "stop",
                "streamSid": self.stream_sid,
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
            }
        )

    def receive_text(self, text: str) -> list[Event]:
        """Parse one server message: OutboundMedia, MarkRequested, ClearRequested or a violation."""
        try:
            message = parse_json_object(text)
            kind = get_field(message, "event", str, "server message")
            if message.get("streamSid") != self.stream_sid:
                raise ProtocolError(f"{kind[:40]}: streamSid missing or not this stream")
            if kind == "media":
                media = get_field(message, "media", dict, "media")
                payload = decode_base64(get_field(media, "payload", str, "media"), "media")
                return [OutboundMedia(payload=payload)]
            if kind == "mark":
                name = get_field(get_field(message, "mark", dict, "mark"), "name", str, "mark")
                self.marks_to_echo.append(name)
                return [MarkRequested(name=name)]
            if kind == "clear":
                return [ClearRequested()]
            raise ProtocolError(f"unknown server event '{kind[:40]}'")
        except ProtocolError as exc:
            return [
                ProtocolViolation(
                    error=exc, code="bad_message", close_code=CloseCode.INVALID_PAYLOAD, fatal=False
                )
            ]
