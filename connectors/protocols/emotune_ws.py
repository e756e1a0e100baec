"""emotune-ws v1: our own websocket protocol for apps and the in-car unit (spec: docs/protocol.md).

JSON text frames carry control messages (each has a ``type``); binary frames carry audio: from
the client, in the format announced by ``start``; from the server, bot speech in the format
announced by the preceding ``bot`` message. The server core below answers protocol-level
messages itself (``ready``, ``pong``, ``error``, ``end``) through ``data_to_send()``.
"""

from __future__ import annotations

import hmac
import json
import re
import uuid
from collections.abc import Collection, Mapping
from typing import Any

from emotune.errors import AuthenticationError, ProtocolError

from .base import (
    DEFAULT_MAX_MESSAGE_CHARS,
    AudioEncoding,
    AudioFormat,
    AudioReceived,
    CallEnded,
    CallProtocol,
    CallStarted,
    CloseCode,
    CloseRequest,
    Event,
    MarkAcknowledged,
    Outgoing,
    PingReceived,
    ProtocolViolation,
    TextTurn,
    get_field,
    parse_json_object,
)

__all__ = [
    "PROTOCOL_NAME",
    "PROTOCOL_VERSION",
    "ENCODINGS",
    "SAMPLE_RATES",
    "ERROR_CODES",
    "DEFAULT_AUDIO",
    "DEFAULT_PROFILES",
    "EmotuneWsServer",
    "verify_bearer_token",
    "parse_format",
    "format_json",
]

PROTOCOL_NAME = "emotune-ws"
PROTOCOL_VERSION = 1
ENCODINGS: tuple[AudioEncoding, ...] = ("pcm16", "mulaw")
SAMPLE_RATES = (8000, 16000, 48000)
MAX_TEXT_CHARS = 4000
DEFAULT_AUDIO = AudioFormat("pcm16", 16000, 1)
_CALL_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
DEFAULT_PROFILES = ("contact_center", "in_car")  # a core outside a gateway (the gateway passes its own)

# code -> (websocket close code if fatal, fatal?)  -- the table in docs/protocol.md
ERROR_CODES: dict[str, tuple[int, bool]] = {
    "bad_json": (CloseCode.INVALID_PAYLOAD, False),
    "bad_message": (CloseCode.INVALID_PAYLOAD, False),
    "unknown_type": (CloseCode.PROTOCOL_ERROR, False),
    "already_started": (CloseCode.PROTOCOL_ERROR, False),
    "bad_audio_frame": (CloseCode.INVALID_PAYLOAD, False),
    "after_end": (CloseCode.PROTOCOL_ERROR, False),
    "not_started": (CloseCode.PROTOCOL_ERROR, True),
    "bad_start": (CloseCode.PROTOCOL_ERROR, True),
    "unsupported_version": (CloseCode.PROTOCOL_ERROR, True),
    "unsupported_audio": (CloseCode.UNSUPPORTED_DATA, True),
    "message_too_large": (CloseCode.MESSAGE_TOO_BIG, True),
    "frame_too_large": (CloseCode.MESSAGE_TOO_BIG, True),
    "unauthorized": (CloseCode.POLICY_VIOLATION, True),
    "too_many_calls": (CloseCode.TRY_AGAIN_LATER, True),
    "internal": (CloseCode.INTERNAL_ERROR, True),
}


def verify_bearer_token(authorization: str | None, expected: str) -> None:
    """Raise AuthenticationError unless ``authorization`` is ``Bearer <expected>``."""
    if not expected:
        raise AuthenticationError("no gateway auth token configured")
    if not authorization:
        raise AuthenticationError("missing Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("Authorization header must be 'Bearer <token>'")
    if not hmac.compare_digest(token.strip().encode("utf-8", "replace"), expected.encode("utf-8")):
        raise AuthenticationError("bearer token is not valid")


def parse_format(value: Any, where: str) -> AudioFormat:
    if not isinstance(value, dict):
        raise ProtocolError(
            f'{where} must be an object like {{"encoding": "pcm16", "sample_rate": 16000, "channels": 1}}'
        )
    encoding = value.get("encoding")
    rate = value.get("sample_rate")
    channels = value.get("channels", 1)
    if encoding not in ENCODINGS:
        raise ProtocolError(
            f"{where}.encoding must be one of {', '.join(ENCODINGS)}, got {str(encoding)[:20]!r}"
        )
    if isinstance(rate, bool) or rate not in SAMPLE_RATES:
        raise ProtocolError(
            f"{where}.sample_rate must be one of {', '.join(map(str, SAMPLE_RATES))}, got {str(rate)[:20]!r}"
        )
    if isinstance(channels, bool) or channels != 1:
        raise ProtocolError(f"{where}.channels must be 1 (mono), got {str(channels)[:20]!r}")
    return AudioFormat(encoding, rate, 1)


def format_json(audio: AudioFormat) -> dict[str, Any]:
    return {"encoding": audio.encoding, "sample_rate": audio.sample_rate, "channels": audio.channels}


class _Reject(Exception):
    def __init__(self, code: str, message: str, error: ProtocolError | None = None) -> None:
        self.code, self.message = code, message
        self.error = error or ProtocolError(message)


class EmotuneWsServer(CallProtocol):
    """Server side of one emotune-ws v1 session.

    ``auth_token``: when set and the upgrade was not already authenticated
    (``authenticated=False``), ``start`` must carry ``"token"`` (browsers cannot set headers).
    ``output_audio``: default format of bot speech unless the client asks for another.
    ``profiles``: the profiles a ``start`` may name (the gateway's configured ones), the first
    being the default when ``start`` names none; any other name is refused with ``bad_start``.
    """

    name = PROTOCOL_NAME
    capabilities = frozenset({"audio", "mark", "clear", "emotion", "transcript", "bot_reply", "handoff"})
    delivers_handoff_context = True  # the ``handoff`` message carries it to the client app

    def __init__(
        self,
        auth_token: str | None = None,
        authenticated: bool = False,
        output_audio: AudioFormat = DEFAULT_AUDIO,
        max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS,
        max_frame_bytes: int = 64_000,
        audio_frame_ms: int = 20,
        profiles: Collection[str] = DEFAULT_PROFILES,
    ) -> None:
        super().__init__()
        if not profiles:
            raise ValueError("an emotune-ws core needs at least one profile")
        self.profiles = tuple(profiles)
        self.auth_token = auth_token
        self.authenticated = authenticated or auth_token is None
        self.input_audio: AudioFormat | None = None
        self.output_audio = output_audio
        self.max_message_chars = max_message_chars
        self.max_frame_bytes = max_frame_bytes
        self.audio_frame_ms = audio_frame_ms
        self.session_id = str(uuid.uuid4())
        self.state = "awaiting_start"  # -> started -> ended
        self.samples_received = 0

    def _error(self, reject: _Reject) -> ProtocolViolation:
        close_code, fatal = ERROR_CODES[reject.code]
        if self.state == "awaiting_start" and reject.code in ("bad_json", "bad_message"):
            fatal = True  # nothing useful can follow a broken start
        self._outbox.append(
            json.dumps({"type": "error", "code": reject.code, "message": reject.message, "fatal": fatal})
        )
        if fatal:
            self.state = "ended"
        return self._violation(reject.error, reject.code, close_code, fatal)

    # -- incoming --------------------------------------------------------------------------------
    def receive_text(self, text: str) -> list[Event]:
        if self.state == "ended":
            return [
                self._violation(ProtocolError("message after the session ended"), "after_end", fatal=False)
            ]
        try:
            if len(text) > self.max_message_chars:
                raise _Reject(
                    "message_too_large",
                    f"text message of {len(text)} characters exceeds {self.max_message_chars}",
                )
            try:
                message = parse_json_object(text, self.max_message_chars)
            except ProtocolError as exc:
                raise _Reject("bad_json", str(exc), exc) from None
            kind = message.get("type")
            if not isinstance(kind, str):
                raise _Reject("bad_message", "message needs a string 'type'")
            try:
                return self._dispatch(kind, message)
            except ProtocolError as exc:
                code = "bad_start" if kind == "start" else "bad_message"
                raise _Reject(code, str(exc), exc) from None
        except _Reject as reject:
            return [self._error(reject)]

    def _dispatch(self, kind: str, message: Mapping[str, Any]) -> list[Event]:
        if kind == "start":
            return self._on_start(message)
        if kind not in ("text", "ping", "end", "mark"):
            raise _Reject("unknown_type", f"unknown message type '{kind[:40]}' (ignored)")
        if self.state != "started":
            raise _Reject("not_started", f"'{kind[:40]}' before 'start'")
        if kind == "text":
            text = get_field(message, "text", str, "text")
            if not text.strip() or len(text) > MAX_TEXT_CHARS:
                raise ProtocolError(f"text: 'text' must be 1..{MAX_TEXT_CHARS} characters and not blank")
            metadata = message.get("metadata", {})
            if not isinstance(metadata, dict):
                raise ProtocolError("text: 'metadata' must be an object")
            return [TextTurn(text=text, metadata=metadata)]
        if kind == "ping":
            ping_id = message.get("id")
            if ping_id is not None and (isinstance(ping_id, bool) or not isinstance(ping_id, str | int)):
                raise ProtocolError("ping: 'id' must be a string or integer")
            self._outbox.append(json.dumps({"type": "pong", "id": ping_id}))
            return [PingReceived()]
        if kind == "mark":
            return [MarkAcknowledged(name=get_field(message, "name", str, "mark"))]
        reason = message.get("reason", "client_end")
        if not isinstance(reason, str):
            raise ProtocolError("end: 'reason' must be a string")
        self._outbox.append(json.dumps({"type": "end", "reason": "client_end"}))
        self.state = "ended"
        self.close_request = CloseRequest(CloseCode.NORMAL, "session ended")
        return [CallEnded(reason=reason[:100] or "client_end")]

    def _on_start(self, message: Mapping[str, Any]) -> list[Event]:
        if self.state != "awaiting_start":
            raise _Reject("already_started", "'start' was already received (ignored)")
        version = message.get("version")
        if isinstance(version, bool) or version != PROTOCOL_VERSION:
            raise _Reject(
                "unsupported_version", f"protocol version {str(version)[:20]!r} is not supported (use 1)"
            )
        if not self.authenticated:
            token = message.get("token")
            if not isinstance(token, str) or not hmac.compare_digest(
                token.encode("utf-8", "replace"), (self.auth_token or "").encode("utf-8")
            ):
                raise _Reject(
                    "unauthorized",
                    "missing or invalid token",
                    AuthenticationError("missing or invalid token"),
                )
        try:
            audio = parse_format(message.get("audio"), "start.audio")
            output = (
                parse_format(message["output_audio"], "start.output_audio")
                if "output_audio" in message
                else None
            )
        except ProtocolError as exc:
            raise _Reject("unsupported_audio", str(exc), exc) from None
        call_id = message.get("call_id", self.session_id)
        if not isinstance(call_id, str) or not _CALL_ID.match(call_id):
            raise ProtocolError(
                "start.call_id must be 1..128 characters of letters, digits, '.', '_', ':' or '-'"
            )
        profile = message.get("profile", self.profiles[0])
        if not isinstance(profile, str) or profile not in self.profiles:
            raise ProtocolError(
                f"start.profile {str(profile)[:40]!r} is not served here; this gateway serves: {', '.join(self.profiles)}"
            )
        metadata = message.get("metadata", {})
        if not isinstance(metadata, dict):
            raise ProtocolError("start.metadata must be an object")
        language = message.get("language", "en-US")
        if not isinstance(language, str):
            raise ProtocolError("start.language must be a string")
        self.input_audio, self.call_id, self.state = audio, call_id, "started"
        if output is not None:
            self.output_audio = output
        self._outbox.append(
            json.dumps(
                {
                    "type": "ready",
                    "version": PROTOCOL_VERSION,
                    "session_id": self.session_id,
                    "call_id": call_id,
                    "audio": format_json(audio),
                    "output_audio": format_json(self.output_audio),
                }
            )
        )
        return [
            CallStarted(
                call_id=call_id,
                stream_id=self.session_id,
                audio=audio,
                parties=("caller",),
                metadata={"profile": profile, "language": language, "client_metadata": metadata},
            )
        ]

    def receive_bytes(self, data: bytes) -> list[Event]:
        if self.state == "ended":
            return [self._violation(ProtocolError("audio after the session ended"), "after_end", fatal=False)]
        try:
            if self.state != "started" or self.input_audio is None:
                raise _Reject("not_started", "audio frame before 'start'")
            if len(data) > self.max_frame_bytes:
                raise _Reject(
                    "frame_too_large", f"audio frame of {len(data)} bytes exceeds {self.max_frame_bytes}"
                )
            width = self.input_audio.bytes_per_sample
            if not data or len(data) % width:
                raise _Reject(
                    "bad_audio_frame",
                    f"audio frame of {len(data)} bytes is not a whole number of {width}-byte samples (dropped)",
                )
        except _Reject as reject:
            return [self._error(reject)]
        timestamp_ms = 1000.0 * self.samples_received / self.input_audio.sample_rate
        self.samples_received += len(data) // width
        return [
            AudioReceived(
                channel="caller",
                payload=data,
                encoding=self.input_audio.encoding,
                sample_rate=self.input_audio.sample_rate,
                timestamp_ms=timestamp_ms,
            )
        ]

    # -- outgoing --------------------------------------------------------------------------------
    def _live(self) -> bool:
        if self.state == "awaiting_start":
            raise ProtocolError("cannot send before the session started")
        return self.state == "started"

    def send_audio(
        self, audio: bytes, encoding: AudioEncoding = "pcm16", sample_rate: int = 16000
    ) -> list[Outgoing]:
        """Bot speech as binary frames; must match ``output_audio`` (announced in ``ready``)."""
        if not self._live():
            return []
        if (encoding, sample_rate) != (self.output_audio.encoding, self.output_audio.sample_rate):
            raise ProtocolError(
                f"bot audio is {encoding}/{sample_rate} Hz but the client expects "
                f"{self.output_audio.encoding}/{self.output_audio.sample_rate} Hz"
            )
        if len(audio) % self.output_audio.bytes_per_sample:
            raise ProtocolError("bot audio is not a whole number of samples")
        step = self.output_audio.bytes_for(self.audio_frame_ms / 1000)
        return [audio[i : i + step] for i in range(0, len(audio), step)]

    def _json(self, body: Mapping[str, Any]) -> list[Outgoing]:
        return [json.dumps(dict(body))] if self._live() else []

    def send_mark(self, name: str) -> list[Outgoing]:
        return self._json({"type": "mark", "name": name})

    def send_clear(self) -> list[Outgoing]:
        return self._json({"type": "clear"})

    def send_emotion(self, event: Mapping[str, Any], party: str = "caller") -> list[Outgoing]:
        return self._json({"type": "emotion", "party": party, "emotion": dict(event)})

    def send_transcript(self, text: str, party: str = "caller", final: bool = True) -> list[Outgoing]:
        return self._json({"type": "transcript", "party": party, "text": text, "final": final})

    def send_bot_reply(
        self,
        text: str,
        tone: str,
        audio_format: AudioFormat | None = None,
        custom: Mapping[str, Any] | None = None,
    ) -> list[Outgoing]:
        """A bot turn. ``audio_format`` set: binary speech frames follow (``send_audio``)."""
        body: dict[str, Any] = {"type": "bot", "text": text, "tone": tone, "audio": None}
        if audio_format is not None:
            body["audio"] = format_json(audio_format)
        if custom:
            body["custom"] = dict(custom)
        return self._json(body)

    def send_handoff(
        self,
        reason: str,
        summary: str,
        target: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> list[Outgoing]:
        """The ``handoff`` message; ``context`` (the bot's, docs/handoff.md) travels unchanged."""
        body: dict[str, Any] = {"type": "handoff", "reason": reason, "summary": summary}
        if target:
            body["target"] = target
        if context is not None:
            body["context"] = dict(context)
        return self._json(body)

    def send_error(self, code: str, message: str) -> list[Outgoing]:
        """Gateway-side errors (``too_many_calls``, ``internal``, ``unauthorized``...)."""
        if code not in ERROR_CODES:
            raise ValueError(f"unknown emotune-ws error code {code!r}")
        close_code, fatal = ERROR_CODES[code]
        if fatal:
            self.state = "ended"
            self.close_request = self.close_request or CloseRequest(close_code, message[:100])
        return [json.dumps({"type": "error", "code": code, "message": message, "fatal": fatal})]

    def close(self, reason: str = "completed") -> list[Outgoing]:
        if self.state == "ended":
            return []
        self.state = "ended"
        self.close_request = CloseRequest(CloseCode.NORMAL, reason[:100])
        return [json.dumps({"type": "end", "reason": reason})]
