"""The client side of emotune-ws v1 (apps, benchmarks, tests): builds what a client sends and
parses the server's messages into typed events. The server core is :mod:`connectors.protocols.emotune_ws`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.protocols.base import (
    AudioFormat,
    CloseCode,
    Event,
    ProtocolViolation,
    get_field,
    parse_json_object,
)
from connectors.protocols.emotune_ws import (
    DEFAULT_AUDIO,
    PROTOCOL_VERSION,
    format_json,
    parse_format,
)
from emotune.errors import ProtocolError

__all__ = [
    "Ready",
    "EmotionMessage",
    "TranscriptMessage",
    "BotReply",
    "BotAudio",
    "Handoff",
    "ServerError",
    "ServerEnded",
    "Pong",
    "ClearAudio",
    "MarkPlaced",
    "EmotuneWsClient",
]


@dataclass(frozen=True, slots=True)
class Ready(Event):
    session_id: str
    call_id: str
    audio: AudioFormat
    output_audio: AudioFormat


@dataclass(frozen=True, slots=True)
class EmotionMessage(Event):
    party: str
    emotion: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class TranscriptMessage(Event):
    party: str
    text: str
    final: bool


@dataclass(frozen=True, slots=True)
class BotReply(Event):
    text: str
    tone: str
    audio: AudioFormat | None
    custom: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BotAudio(Event):
    payload: bytes


@dataclass(frozen=True, slots=True)
class Handoff(Event):
    reason: str
    summary: str
    target: str | None = None
    context: Mapping[str, Any] | None = None  # the bot's hand-off context (docs/handoff.md)


@dataclass(frozen=True, slots=True)
class ServerError(Event):
    code: str
    message: str
    fatal: bool


@dataclass(frozen=True, slots=True)
class ServerEnded(Event):
    reason: str


@dataclass(frozen=True, slots=True)
class Pong(Event):
    id: str | int | None = None


@dataclass(frozen=True, slots=True)
class ClearAudio(Event):
    pass


@dataclass(frozen=True, slots=True)
class MarkPlaced(Event):
    name: str


class EmotuneWsClient:
    """Builds client messages and parses server messages (no I/O)."""

    def __init__(self, audio: AudioFormat = DEFAULT_AUDIO) -> None:
        self.audio = audio

    def start(
        self,
        call_id: str | None = None,
        token: str | None = None,
        profile: str | None = "contact_center",
        output_audio: AudioFormat | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """``profile=None`` leaves the choice to the gateway (its default profile)."""
        body: dict[str, Any] = {
            "type": "start",
            "version": PROTOCOL_VERSION,
            "audio": format_json(self.audio),
        }
        if profile is not None:
            body["profile"] = profile
        if call_id is not None:
            body["call_id"] = call_id
        if token is not None:
            body["token"] = token
        if output_audio is not None:
            body["output_audio"] = format_json(output_audio)
        if metadata:
            body["metadata"] = dict(metadata)
        return json.dumps(body)

    def audio_frames(self, audio: bytes, frame_ms: int = 20) -> list[bytes]:
        step = self.audio.bytes_for(frame_ms / 1000)
        return [audio[i : i + step] for i in range(0, len(audio), step)]

    def text(self, text: str, metadata: Mapping[str, Any] | None = None) -> str:
        return json.dumps(
            {"type": "text", "text": text, **({"metadata": dict(metadata)} if metadata else {})}
        )

    def ping(self, ping_id: str | int | None = None) -> str:
        return json.dumps({"type": "ping", "id": ping_id})

    def mark(self, name: str) -> str:
        return json.dumps({"type": "mark", "name": name})

    def end(self, reason: str = "client_end") -> str:
        return json.dumps({"type": "end", "reason": reason})

    def receive_bytes(self, data: bytes) -> list[Event]:
        return [BotAudio(payload=data)]

    def receive_text(self, text: str) -> list[Event]:
        try:
            message = parse_json_object(text)
            kind = get_field(message, "type", str, "server message")
            if kind == "ready":
                return [
                    Ready(
                        session_id=get_field(message, "session_id", str, "ready"),
                        call_id=get_field(message, "call_id", str, "ready"),
                        audio=parse_format(message.get("audio"), "ready.audio"),
                        output_audio=parse_format(message.get("output_audio"), "ready.output_audio"),
                    )
                ]
            if kind == "emotion":
                return [
                    EmotionMessage(
                        get_field(message, "party", str, "emotion"),
                        get_field(message, "emotion", dict, "emotion"),
                    )
                ]
            if kind == "transcript":
                return [
                    TranscriptMessage(
                        get_field(message, "party", str, "transcript"),
                        get_field(message, "text", str, "transcript"),
                        get_field(message, "final", bool, "transcript"),
                    )
                ]
            if kind == "bot":
                audio = message.get("audio")
                custom = message.get("custom", {})
                if not isinstance(custom, dict):
                    raise ProtocolError("bot: 'custom' must be an object")
                return [
                    BotReply(
                        get_field(message, "text", str, "bot"),
                        get_field(message, "tone", str, "bot"),
                        None if audio is None else parse_format(audio, "bot.audio"),
                        custom,
                    )
                ]
            if kind == "handoff":
                target = message.get("target")
                context = message.get("context")
                if context is not None and not isinstance(context, dict):
                    raise ProtocolError("handoff: 'context' must be an object")
                return [
                    Handoff(
                        get_field(message, "reason", str, "handoff"),
                        get_field(message, "summary", str, "handoff"),
                        target if isinstance(target, str) else None,
                        context,
                    )
                ]
            if kind == "error":
                return [
                    ServerError(
                        get_field(message, "code", str, "error"),
                        get_field(message, "message", str, "error"),
                        get_field(message, "fatal", bool, "error"),
                    )
                ]
            if kind == "end":
                return [ServerEnded(get_field(message, "reason", str, "end"))]
            if kind == "pong":
                ping_id = message.get("id")
                return [
                    Pong(
                        ping_id if isinstance(ping_id, str | int) and not isinstance(ping_id, bool) else None
                    )
                ]
            if kind == "clear":
                return [ClearAudio()]
            if kind == "mark":
                return [MarkPlaced(get_field(message, "name", str, "mark"))]
            raise ProtocolError(f"unknown server message type '{kind[:40]}'")
        except ProtocolError as exc:
            return [ProtocolViolation(exc, "bad_message", CloseCode.INVALID_PAYLOAD, False)]
