"""The one small interface every telephony/app protocol core implements, and its typed events.

A core is a pure state machine (the python-websockets "sans-I/O" idea): the gateway feeds it the
websocket messages it received, gets typed events back, and writes out the messages the core
wants sent. No sockets, no asyncio, no clocks (time is passed in where it matters), so every
protocol rule can be tested with plain function calls.

Three ways data comes out of a core:

* ``receive_text(str)`` / ``receive_bytes(bytes)`` return the :class:`Event` s that message caused.
  They never raise on bad peer input: a malformed message becomes a :class:`ProtocolViolation`
  event carrying the :class:`~emotune.errors.ProtocolError` that describes it.
* Replies the protocol requires on its own (AudioHook ``opened``/``pong``/``closed``, our
  ``ready``/``pong``/``error``) wait in an outbox: drain it with ``data_to_send()`` after every
  receive call and send each item (``str`` = text frame, ``bytes`` = binary frame).
* ``send_*`` methods return the messages for one thing the gateway wants to say (audio, mark,
  emotion, hand-off...). Events caused by those calls (e.g. :class:`EscalationRaised`,
  :class:`TransferRequested`) are collected with ``take_events()``.

When the core decides the websocket must end, ``close_request`` becomes a :class:`CloseRequest`
(websocket close code + reason): send ``data_to_send()`` first, then close with that code.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from emotune.errors import ProtocolError
from emotune.escalation import StreakCounter, StreakRule

if TYPE_CHECKING:  # only for the annotation: the cores need no config at import time
    from emotune.config import EscalationConfig

__all__ = [
    "AudioEncoding",
    "AudioFormat",
    "Outgoing",
    "CloseCode",
    "CloseRequest",
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
    "CallProtocol",
    "DEFAULT_MAX_MESSAGE_CHARS",
    "parse_json_object",
    "get_field",
]

AudioEncoding = Literal["mulaw", "pcm16"]
Outgoing = str | bytes

# Bigger control messages than this are refused before parsing: a JSON bomb must cost nothing.
DEFAULT_MAX_MESSAGE_CHARS = 65_536


class CloseCode:
    """Websocket close codes (RFC 6455 section 7.4.1) the cores ask for."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """What the bytes of an audio stream mean."""

    encoding: AudioEncoding
    sample_rate: int
    channels: int = 1

    @property
    def bytes_per_sample(self) -> int:
        return 1 if self.encoding == "mulaw" else 2

    def bytes_for(self, seconds: float) -> int:
        """Bytes of (interleaved) audio that last ``seconds``."""
        return int(round(seconds * self.sample_rate)) * self.bytes_per_sample * self.channels


@dataclass(frozen=True, slots=True)
class CloseRequest:
    """The core wants the websocket closed with this code once its outbox is sent."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event a core emits."""


@dataclass(frozen=True, slots=True)
class CallStarted(Event):
    """A call/session began: who it is and what audio will arrive.

    ``parties`` names the audio channels in the order they arrive, e.g. ``("caller",)`` for
    Twilio inbound audio or ``("caller", "agent")`` for an AudioHook stereo stream.
    """

    call_id: str
    stream_id: str
    audio: AudioFormat
    parties: tuple[str, ...] = ("caller",)
    custom_parameters: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AudioReceived(Event):
    """One frame of one party's audio, still in its wire encoding (``mulaw`` or ``pcm16`` LE)."""

    channel: str
    payload: bytes
    encoding: AudioEncoding
    sample_rate: int
    timestamp_ms: float | None = None
    chunk: int | None = None


@dataclass(frozen=True, slots=True)
class DtmfReceived(Event):
    digit: str
    channel: str = "caller"


@dataclass(frozen=True, slots=True)
class MarkAcknowledged(Event):
    """The peer played (or, after a clear, dropped) all audio queued before this mark."""

    name: str


@dataclass(frozen=True, slots=True)
class TextTurn(Event):
    """A typed (or client-transcribed) user turn, for clients that send text instead of audio."""

    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PingReceived(Event):
    """A keep-alive arrived (the core already queued the pong). ``rtt_s``: the peer's estimate."""

    rtt_s: float | None = None


@dataclass(frozen=True, slots=True)
class StreamPaused(Event):
    """Audio stopped flowing on purpose (hold, server pause); timelines keep running."""


@dataclass(frozen=True, slots=True)
class StreamResumed(Event):
    """Audio flows again. ``discarded_s``: stream time the peer dropped while paused."""

    discarded_s: float = 0.0


@dataclass(frozen=True, slots=True)
class AudioDiscarded(Event):
    """The peer dropped ``duration_s`` of audio starting at ``start_s`` (e.g. network backlog)."""

    start_s: float
    duration_s: float


@dataclass(frozen=True, slots=True)
class SessionUpdated(Event):
    """Session settings changed mid-call (AudioHook ``update``: language)."""

    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PeerError(Event):
    """The peer reported an error of its own (it is not our violation)."""

    code: int | str
    message: str


@dataclass(frozen=True, slots=True)
class CallEnded(Event):
    reason: str


@dataclass(frozen=True, slots=True)
class ProtocolViolation(Event):
    """The peer broke the protocol. ``error`` says how (a ProtocolError subclass).

    ``code`` is the protocol's own error code (what was or would be sent back, e.g. our
    ``bad_json``), ``close_code`` the websocket close code if the violation is ``fatal``.
    Non-fatal violations drop the offending message and the call goes on.
    """

    error: ProtocolError
    code: str
    close_code: int
    fatal: bool

    @property
    def message(self) -> str:
        return str(self.error)


@dataclass(frozen=True, slots=True)
class EscalationRaised(Event):
    """The caller stayed negative long enough (``EscalationConfig``) to need a human."""

    party: str
    reason: str
    streak: int
    emotions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TransferRequested(Event):
    """The gateway must move the call to a human out of band (Twilio: REST call update).

    ``twiml`` is the document to apply to the live call (``POST /2010-04-01/Accounts/{account_sid}
    /Calls/{call_sid}.json`` with ``Twiml=<twiml>``).
    """

    call_id: str
    account_id: str
    target: str
    twiml: str
    reason: str
    summary: str


class EscalationTracker(StreakCounter):
    """The escalation rule (:mod:`emotune.escalation`) applied to one party's emotion events.

    Why here: monitor-mode protocols (AudioHook agent assist) have no dialogue engine to decide
    escalation, so the rule from ``EscalationConfig`` is applied next to the protocol.
    """

    def __init__(
        self,
        negative_emotions: Sequence[str] = ("angry",),
        streak_turns: int = 3,
        min_confidence: float = 0.5,
        floor_confidence: float | None = None,
    ) -> None:
        super().__init__(StreakRule(tuple(negative_emotions), streak_turns, min_confidence, floor_confidence))

    @classmethod
    def from_config(cls, config: EscalationConfig) -> EscalationTracker:
        """The operator's ``escalation`` section (``EmotuneConfig.escalation``)."""
        return cls(config.negative_emotions, config.streak_turns, config.min_confidence, config.floor_confidence)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_object(text: str, max_chars: int = DEFAULT_MAX_MESSAGE_CHARS) -> dict[str, Any]:
    """A text frame as a JSON object, or ProtocolError saying exactly why not."""
    if len(text) > max_chars:
        raise ProtocolError(f"text message of {len(text)} characters exceeds the limit of {max_chars}")
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ProtocolError("text message is JSON nested too deeply") from None
    except ValueError as exc:
        raise ProtocolError(f"text message is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"text message must be a JSON object, got {type(value).__name__}")
    return value


def get_field(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``obj[key]`` checked for type; bool is never accepted as a number."""
    if key not in obj:
        raise ProtocolError(f"{where}: missing field '{key}'")
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ProtocolError(f"{where}: field '{key}' must be {_kind_names(kinds)}, got a boolean")
    if not isinstance(value, kinds):
        raise ProtocolError(f"{where}: field '{key}' must be {_kind_names(kinds)}, got {_json_type(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError(f"{where}: field '{key}' must be a finite number")
    return value


def _kind_names(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", dict: "an object", list: "an array"}
    names[bool] = "a boolean"
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array"}.get(
        type(value), "an object"
    )


class CallProtocol(ABC):
    """One call's protocol state on the server side. Subclasses: one per provider.

    ``capabilities`` lists which ``send_*`` operations actually put something on the wire;
    the others return ``[]`` (e.g. Twilio has no channel for emotion labels).
    """

    name: ClassVar[str] = "abstract"
    capabilities: ClassVar[frozenset[str]] = frozenset()
    # Whether the hand-off context reaches the human on this call (docs/handoff.md): the gateway
    # tells the bot so in every turn's metadata (capabilities.handoff_context), and the bot only
    # promises the caller a briefed colleague when it is true.
    delivers_handoff_context: bool = False

    def __init__(self) -> None:
        self._outbox: list[Outgoing] = []
        self._events: list[Event] = []
        self.close_request: CloseRequest | None = None
        self.call_id: str | None = None

    # -- what the gateway feeds in -------------------------------------------------------------
    @abstractmethod
    def receive_text(self, text: str) -> list[Event]:
        """Handle one text frame from the peer."""

    @abstractmethod
    def receive_bytes(self, data: bytes) -> list[Event]:
        """Handle one binary frame from the peer."""

    # -- what comes out ----------------------------------------------------------------------
    def data_to_send(self) -> list[Outgoing]:
        """Drain the replies the protocol itself requires (send them in order)."""
        out, self._outbox = self._outbox, []
        return out

    def take_events(self) -> list[Event]:
        """Drain events caused by ``send_*`` calls (escalations, transfer instructions)."""
        events, self._events = self._events, []
        return events

    # -- what the gateway wants to say ---------------------------------------------------------
    def send_audio(
        self, audio: bytes, encoding: AudioEncoding = "mulaw", sample_rate: int = 8000
    ) -> list[Outgoing]:
        """Bot audio for the peer to play (framed as the protocol requires)."""
        return []

    def send_mark(self, name: str) -> list[Outgoing]:
        """Ask the peer to acknowledge when all audio sent so far has been played."""
        return []

    def send_clear(self) -> list[Outgoing]:
        """Barge-in: drop bot audio the peer has queued but not played."""
        return []

    def send_emotion(self, event: Mapping[str, Any], party: str = "caller") -> list[Outgoing]:
        """One emotion event (CONTRACTS.md shape) about ``party``."""
        return []

    def send_transcript(self, text: str, party: str = "caller", final: bool = True) -> list[Outgoing]:
        return []

    def send_bot_reply(
        self,
        text: str,
        tone: str,
        audio_format: AudioFormat | None = None,
        custom: Mapping[str, Any] | None = None,
    ) -> list[Outgoing]:
        return []

    def send_handoff(
        self,
        reason: str,
        summary: str,
        target: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> list[Outgoing]:
        """Hand the caller to a human (how depends on the protocol; see each core). ``context``
        is the bot's hand-off context (docs/handoff.md), carried as far as the protocol allows."""
        return []

    @abstractmethod
    def close(self, reason: str = "completed") -> list[Outgoing]:
        """End the session from our side, protocol-correctly; sets ``close_request``."""

    # -- helpers for subclasses ----------------------------------------------------------------
    def _violation(
        self, error: ProtocolError, code: str, close_code: int = CloseCode.PROTOCOL_ERROR, fatal: bool = True
    ) -> ProtocolViolation:
        if fatal and self.close_request is None:
            self.close_request = CloseRequest(close_code, _close_reason(str(error)))
        return ProtocolViolation(error=error, code=code, close_code=close_code, fatal=fatal)


def _close_reason(text: str) -> str:
    """Websocket close reasons must fit in 123 UTF-8 bytes."""
    encoded = text.encode("utf-8", "replace")  # lone surrogates from a peer become '?'
    if len(encoded) <= 123:
        return encoded.decode("utf-8")
    return encoded[:120].decode("utf-8", "ignore") + "..."
