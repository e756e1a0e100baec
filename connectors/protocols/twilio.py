"""Twilio Media Streams (bidirectional ``<Connect><Stream>``): server core, client builder, auth.

Wire format (JSON text frames only):

* Twilio -> us: ``connected`` (protocol "Call"), ``start`` (streamSid, callSid, accountSid,
  tracks, customParameters, mediaFormat audio/x-mulaw 8000 Hz mono), ``media`` (base64 mu-law
  ``payload``, ``track``, ``chunk``, ``timestamp`` in ms), ``dtmf``, ``mark`` (echo of ours once
  played), ``stop``. Every message after ``connected`` has a string ``sequenceNumber`` counting up
  by one.
* us -> Twilio: ``media`` (base64 mu-law 8 kHz), ``mark``, ``clear`` (drop queued audio: barge-in).

Escalation cannot be done on the stream: a transfer is a REST update of the live call with TwiML
``<Response><Dial>target</Dial></Response>``. :meth:`TwilioMediaStream.send_handoff` clears bot
audio and queues a :class:`~connectors.protocols.base.TransferRequested` event carrying that TwiML
(see :func:`transfer_twiml`); the gateway performs the REST call. A ``<Dial>`` carries no body, so
the hand-off context travels by reference: the call SID, reason, task and ticket references as
``x-emotune-*`` SIP headers (``<Sip>``) or ``<Parameter>`` s (``<Client>``); the agent desktop
fetches the whole context from the gateway's ``GET /v1/handoff/{CallSid}`` (docs/handoff.md).

The websocket upgrade is authenticated with ``X-Twilio-Signature``: base64 HMAC-SHA1, keyed by the
account auth token, over the full URL Twilio connected to (a GET upgrade has no POST parameters):
:func:`validate_twilio_signature`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit
from xml.sax.saxutils import escape

from emotune.config import DEFAULT_TRANSFER_ANNOUNCEMENT, SAY_LANGUAGE_PATTERN
from emotune.errors import (
    AuthenticationError,
    ConfigError,
    FrameError,
    ProtocolError,
    SampleRateError,
    SequenceError,
)

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
    DtmfReceived,
    Event,
    MarkAcknowledged,
    Outgoing,
    TransferRequested,
    get_field,
    parse_json_object,
)
from .g711 import pcm16_to_mulaw

__all__ = [
    "TWILIO_AUDIO",
    "TwilioMediaStream",
    "decode_base64",
    "STREAM_TOKEN_PARAMETER",
    "compute_twilio_signature",
    "mint_stream_token",
    "stream_twiml",
    "validate_twilio_signature",
    "verify_stream_token",
    "transfer_twiml",
    "handoff_references",
]

TWILIO_AUDIO = AudioFormat("mulaw", 8000, 1)
_DTMF_DIGITS = frozenset("0123456789*#ABCDabcdw")
_TRACK_TO_PARTY = {"inbound": "caller", "outbound": "callee"}
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_SAY_LANGUAGE = re.compile(SAY_LANGUAGE_PATTERN)
_SIP = re.compile(r"^sips?:[^\s<>\"']+@[^\s<>\"']+$")
_CLIENT = re.compile(r"^client:[A-Za-z0-9_.-]{1,121}$")


def decode_base64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"{where}: payload is not valid base64 ({exc})") from None


def _int_string(obj: Mapping[str, Any], key: str, where: str) -> int:
    """Twilio sends counters as decimal strings ("12"); accept ints too."""
    value = get_field(obj, key, (str, int), where)
    if isinstance(value, int):
        number = value
    elif value.isascii() and value.isdigit() and len(value) <= 18:
        number = int(value)
    else:
        raise ProtocolError(
            f"{where}: field '{key}' must be a non-negative decimal number, got {value[:40]!r}"
        )
    if number < 0:
        raise ProtocolError(f"{where}: field '{key}' must not be negative")
    return number


class TwilioMediaStream(CallProtocol):
    """Server side of one Twilio bidirectional Media Stream.

    ``transfer_to``: default escalation target (E.164 number, ``sip:`` URI or ``client:name``);
    ``chunk_ms``: size of outbound media messages (Twilio plays any size; 20 ms keeps barge-in
    ``clear`` responsive); ``agent_context``: the operator's agent desktop fetches the hand-off
    context (``gateway.twilio.agent_context``), so it does reach the human.
    """

    name = "twilio"
    capabilities = frozenset({"audio", "mark", "clear", "handoff"})

    def __init__(
        self,
        transfer_to: str | None = None,
        chunk_ms: int = 20,
        max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS,
        transfer_announcement: str | None = DEFAULT_TRANSFER_ANNOUNCEMENT,
        announcement_language: str | None = None,
        check_start: Callable[[str, Mapping[str, str]], None] | None = None,
        agent_context: bool = False,
    ) -> None:
        """``check_start(call_sid, custom_parameters)`` raises AuthenticationError to refuse a
        ``start`` (the gateway checks its per-call stream token there); the stream is closed 1008."""
        super().__init__()
        if not 10 <= chunk_ms <= 1000:
            raise ValueError("chunk_ms must be between 10 and 1000")
        if transfer_to is not None:
            _check_transfer_target(transfer_to)
        if announcement_language is not None:
            _check_say_language(announcement_language)
        self.transfer_to = transfer_to
        self.chunk_ms = chunk_ms
        self.max_message_chars = max_message_chars
        self.transfer_announcement = transfer_announcement
        self.announcement_language = announcement_language
        self.check_start = check_start
        self.delivers_handoff_context = agent_context
        self.state = "awaiting_start"  # -> streaming -> stopped
        self.stream_sid: str | None = None
        self.account_sid: str | None = None
        self.tracks: tuple[str, ...] = ()
        self.last_sequence: int | None = None
        self.pending_marks: list[str] = []

    # -- incoming ------------------------------------------------------------------------------
    def receive_bytes(self, data: bytes) -> list[Event]:
        error = ProtocolError(
            f"Twilio Media Streams sends only JSON text frames; got a {len(data)}-byte binary frame"
        )
        return [self._violation(error, "binary_frame", CloseCode.UNSUPPORTED_DATA, fatal=False)]

    def receive_text(self, text: str) -> list[Event]:
        if self.state == "stopped":
            error = ProtocolError("message after 'stop': the stream is over")
            return [self._violation(error, "after_stop", fatal=False)]
        try:
            message = parse_json_object(text, self.max_message_chars)
            kind = get_field(message, "event", str, "Twilio message")
            handler = _HANDLERS.get(kind)
            if handler is None:
                raise ProtocolError(f"unknown Twilio event '{kind[:40]}'")
            return handler(self, message)
        except SequenceError as exc:
            return [self._violation(exc, "sequence", fatal=False)]
        except ProtocolError as exc:
            # Twilio cannot be told about our parsing trouble; drop the message, keep the call.
            return [self._violation(exc, "bad_message", CloseCode.INVALID_PAYLOAD, fatal=False)]

    def _check_sequence(self, message: Mapping[str, Any], where: str) -> list[Event]:
        """sequenceNumber must count up by one; a gap is reported, a repeat is dropped."""
        if "sequenceNumber" not in message:
            return []
        number = _int_string(message, "sequenceNumber", where)
        previous = self.last_sequence
        events: list[Event] = []
        if previous is not None:
            if number <= previous:
                raise SequenceError(
                    f"{where}: sequenceNumber {number} does not follow {previous} (repeat or reorder)"
                )
            if number != previous + 1:
                gap = SequenceError(
                    f"{where}: sequenceNumber jumped from {previous} to {number}: messages lost"
                )
                events.append(self._violation(gap, "sequence_gap", fatal=False))
        self.last_sequence = number
        return events

    def _check_stream(self, message: Mapping[str, Any], where: str) -> None:
        if self.state != "streaming":
            raise ProtocolError(f"'{where}' before 'start'")
        sid = message.get("streamSid")
        if sid is not None and sid != self.stream_sid:
            raise ProtocolError(
                f"{where}: streamSid {str(sid)[:40]!r} is not this stream ({self.stream_sid})"
            )

    def _on_connected(self, message: Mapping[str, Any]) -> list[Event]:
        protocol = message.get("protocol", "Call")
        if protocol != "Call":
            raise ProtocolError(f"connected: unsupported protocol {str(protocol)[:40]!r} (expected 'Call')")
        return []

    def _on_start(self, message: Mapping[str, Any]) -> list[Event]:
        if self.state != "awaiting_start":
            raise ProtocolError("second 'start' on one stream")
        events = self._check_sequence(message, "start")
        start = get_field(message, "start", dict, "start")
        stream_sid = get_field(start, "streamSid", str, "start")
        call_sid = get_field(start, "callSid", str, "start")
        account_sid = start.get("accountSid", "")
        if not isinstance(account_sid, str):
            raise ProtocolError("start: field 'accountSid' must be a string")
        if not stream_sid or not call_sid:
            raise ProtocolError("start: streamSid and callSid must not be empty")
        tracks = start.get("tracks", ["inbound"])
        if (
            not isinstance(tracks, list)
            or not tracks
            or not all(isinstance(t, str) and t in _TRACK_TO_PARTY for t in tracks)
        ):
            raise ProtocolError(
                f"start: tracks must be a list drawn from inbound/outbound, got {str(tracks)[:60]}"
            )
        params = start.get("customParameters", {})
        if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
            raise ProtocolError("start: customParameters must be an object of string values")
        if self.check_start is not None:
            try:
                self.check_start(call_sid, params)
            except AuthenticationError as exc:
                self.state = "stopped"
                return [*events, self._violation(ProtocolError(f"start refused: {exc}"), "unauthorized",
                                                 CloseCode.POLICY_VIOLATION)]
        media = get_field(start, "mediaFormat", dict, "start")
        encoding = media.get("encoding")
        rate = media.get("sampleRate")
        channels = media.get("channels")
        if encoding != "audio/x-mulaw" or rate != 8000 or channels != 1:
            error = ProtocolError(
                f"start: unsupported mediaFormat {encoding!r}/{rate!r}/{channels!r} (expected audio/x-mulaw/8000/1)"
            )
            return [*events, self._violation(error, "unsupported_media", CloseCode.UNSUPPORTED_DATA)]
        self.state = "streaming"
        self.stream_sid, self.account_sid, self.call_id = stream_sid, account_sid, call_sid
        self.tracks = tuple(tracks)
        started = CallStarted(
            call_id=call_sid,
            stream_id=stream_sid,
            audio=TWILIO_AUDIO,
            parties=tuple(_TRACK_TO_PARTY[t] for t in tracks),
            custom_parameters=dict(params),
            metadata={"account_sid": account_sid, "tracks": list(tracks)},
        )
        return [*events, started]

    def _on_media(self, message: Mapping[str, Any]) -> list[Event]:
        self._check_stream(message, "media")
        events = self._check_sequence(message, "media")
        media = get_field(message, "media", dict, "media")
        track = media.get("track", "inbound")
        if track not in self.tracks:
            raise ProtocolError(
                f"media: track {str(track)[:40]!r} was not announced in start ({list(self.tracks)})"
            )
        payload = decode_base64(get_field(media, "payload", str, "media"), "media")
        chunk = _int_string(media, "chunk", "media") if "chunk" in media else None
        timestamp = _int_string(media, "timestamp", "media") if "timestamp" in media else None
        audio = AudioReceived(
            channel=_TRACK_TO_PARTY[track],
            payload=payload,
            encoding="mulaw",
            sample_rate=8000,
            timestamp_ms=float(timestamp) if timestamp is not None else None,
            chunk=chunk,
        )
        return [*events, audio]

    def _on_dtmf(self, message: Mapping[str, Any]) -> list[Event]:
        self._check_stream(message, "dtmf")
        events = self._check_sequence(message, "dtmf")
        dtmf = get_field(message, "dtmf", dict, "dtmf")
        digit = get_field(dtmf, "digit", str, "dtmf")
        if len(digit) != 1 or digit not in _DTMF_DIGITS:
            raise ProtocolError(f"dtmf: {digit[:10]!r} is not a DTMF digit")
        return [*events, DtmfReceived(digit=digit, channel="caller")]

    def _on_mark(self, message: Mapping[str, Any]) -> list[Event]:
        self._check_stream(message, "mark")
        events = self._check_sequence(message, "mark")
        mark = get_field(message, "mark", dict, "mark")
        name = get_field(mark, "name", str, "mark")
        if name in self.pending_marks:
            self.pending_marks.remove(name)
        return [*events, MarkAcknowledged(name=name)]

    def _on_stop(self, message: Mapping[str, Any]) -> list[Event]:
        if self.state != "streaming":
            raise ProtocolError("'stop' before 'start'")
        events = self._check_sequence(message, "stop")
        self.state = "stopped"
        self.close_request = CloseRequest(CloseCode.NORMAL, "stream stopped")
        return [*events, CallEnded(reason="stop")]

    # -- outgoing ------------------------------------------------------------------------------
    def _require_stream(self) -> str:
        if self.state != "streaming" or self.stream_sid is None:
            raise ProtocolError(f"cannot send on a Twilio stream in state '{self.state}'")
        return self.stream_sid

    def send_audio(
        self, audio: bytes, encoding: AudioEncoding = "mulaw", sample_rate: int = 8000
    ) -> list[Outgoing]:
        """Bot audio as ``media`` messages of ``chunk_ms`` each. PCM16 is converted to mu-law;
        the rate must already be 8000 Hz (resample with ``emotion_runtime.audio`` first)."""
        stream_sid = self._require_stream()
        if sample_rate != 8000:
            raise SampleRateError(f"Twilio plays 8000 Hz audio only; got {sample_rate} Hz (resample first)")
        if encoding == "pcm16":
            audio = pcm16_to_mulaw(audio)
        elif encoding != "mulaw":
            raise FrameError(f"unknown audio encoding {encoding!r} (mulaw or pcm16)")
        step = 8 * self.chunk_ms  # mu-law: 8 bytes per ms
        return [
            json.dumps(
                {
                    "event": "media",
                    "streamSid": stream_sid,
                    "media": {"payload": base64.b64encode(audio[i : i + step]).decode("ascii")},
                }
            )
            for i in range(0, len(audio), step)
        ]

    def send_mark(self, name: str) -> list[Outgoing]:
        stream_sid = self._require_stream()
        if not name:
            raise ProtocolError("a mark needs a non-empty name")
        self.pending_marks.append(name)
        return [json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})]

    def send_clear(self) -> list[Outgoing]:
        # Twilio answers a clear by echoing every pending mark; they stay pending until then.
        return [json.dumps({"event": "clear", "streamSid": self._require_stream()})]

    def send_handoff(
        self,
        reason: str,
        summary: str,
        target: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> list[Outgoing]:
        """Stop bot audio and queue a :class:`TransferRequested` (take it with ``take_events()``);
        its TwiML names the hand-off (:func:`handoff_references`) for the agent's side.

        Raises ConfigError when neither ``target`` nor the configured ``transfer_to`` is set.
        """
        messages = self.send_clear()
        chosen = target or self.transfer_to
        if chosen is None:
            raise ConfigError(
                "gateway.twilio.transfer_to",
                ["not set: a Twilio call cannot be transferred without a target"],
            )
        references = handoff_references(self.call_id or "", reason, context)
        twiml = transfer_twiml(chosen, announcement=self.transfer_announcement,
                               language=self.announcement_language, references=references)
        self._events.append(
            TransferRequested(
                call_id=self.call_id or "",
                account_id=self.account_sid or "",
                target=chosen,
                twiml=twiml,
                reason=reason,
                summary=summary,
            )
        )
        return messages

    def close(self, reason: str = "completed") -> list[Outgoing]:
        # Media Streams has no in-band goodbye: we just close the socket (Twilio then ends the
        # <Connect> verb and continues the call's TwiML).
        if self.close_request is None:
            self.close_request = CloseRequest(CloseCode.NORMAL, reason[:100])
        self.state = "stopped"
        return []


_HANDLERS = {
    "connected": TwilioMediaStream._on_connected,
    "start": TwilioMediaStream._on_start,
    "media": TwilioMediaStream._on_media,
    "dtmf": TwilioMediaStream._on_dtmf,
    "mark": TwilioMediaStream._on_mark,
    "stop": TwilioMediaStream._on_stop,
}


# ---------------------------------------------------------------------------------------------
# Transfer (escalation to a human)
# ---------------------------------------------------------------------------------------------
def _check_say_language(language: str) -> None:
    if not _SAY_LANGUAGE.match(language):
        raise ConfigError("gateway.twilio.transfer_announcement_language",
                          [f"not a <Say> language: {language!r} (a locale such as ko-KR or en-US)"])


def _check_transfer_target(target: str) -> None:
    if not (_E164.match(target) or _SIP.match(target) or _CLIENT.match(target)):
        raise ConfigError(
            "gateway.twilio.transfer_to",
            [f"{target!r} is not an E.164 number (+15551234567), a sip: URI or client:<identity>"],
        )


_REFERENCE_VALUE = re.compile(r"^[A-Za-z0-9_.:,-]{1,64}$")


def handoff_references(call_sid: str, reason: str, context: Mapping[str, Any] | None) -> dict[str, str]:
    """What the transfer itself tells the agent's side: identifiers only (the call SID to fetch the
    context with, the reason, the task, ticket references), never the caller's words or numbers,
    which SIP signalling would carry in clear text. Values outside ``[A-Za-z0-9_.:,-]`` are left out."""
    tickets = (context or {}).get("tickets") or []
    fields = {
        "call-sid": call_sid,
        "reason": reason,
        "task": (context or {}).get("task"),
        "tickets": ",".join(str(t.get("reference")) for t in tickets if isinstance(t, Mapping))[:64] or None,
    }
    return {k: v for k, v in fields.items() if isinstance(v, str) and _REFERENCE_VALUE.match(v)}


def transfer_twiml(
    target: str,
    announcement: str | None = None,
    timeout_s: int = 30,
    references: Mapping[str, str] | None = None,
    language: str | None = None,
) -> str:
    """TwiML that transfers the live call to ``target`` (number, ``sip:`` URI or ``client:id``).

    ``announcement`` is spoken by Twilio's own voice first, in ``language`` (a ``<Say>`` locale such as
    ``ko-KR``; None: Twilio's default, en-US), so a Korean line does not hear an English voice.

    ``references`` (:func:`handoff_references`) become ``x-emotune-<name>`` SIP headers on a
    ``sip:`` target (query parameters of the URI, which Twilio sends as INVITE headers) or
    ``<Parameter name="emotune_<name>">`` s on a ``client:`` target; a phone number carries
    nothing (its agent looks the call SID up)."""
    _check_transfer_target(target)
    refs = dict(references or {})
    if _SIP.match(target):
        headers = "&".join(f"x-emotune-{name}={quote(value, safe='')}" for name, value in refs.items())
        uri = target + (("&" if "?" in target else "?") + headers if headers else "")
        noun = f"<Sip>{escape(uri)}</Sip>"
    elif target.startswith("client:"):
        identity = escape(target.removeprefix("client:"))
        if refs:
            parameters = "".join(
                f'<Parameter name="emotune_{name.replace("-", "_")}" value="{escape(value, {chr(34): "&quot;"})}"/>'
                for name, value in refs.items()
            )
            noun = f"<Client><Identity>{identity}</Identity>{parameters}</Client>"
        else:
            noun = f"<Client>{identity}</Client>"
    else:
        noun = f"<Number>{escape(target)}</Number>"
    if language is not None:
        _check_say_language(language)
    spoken_in = f' language="{language}"' if language else ""
    say = f"<Say{spoken_in}>{escape(announcement)}</Say>" if announcement else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<Response>{say}<Dial timeout="{int(timeout_s)}">{noun}</Dial></Response>'
    )


# ---------------------------------------------------------------------------------------------
# X-Twilio-Signature
# ---------------------------------------------------------------------------------------------
STREAM_TOKEN_PARAMETER = "emotune_stream_token"


def _stream_key(auth_token: str) -> bytes:
    return hmac.new(auth_token.encode("utf-8"), b"emotune stream token v1", hashlib.sha256).digest()


def mint_stream_token(auth_token: str, call_sid: str, expires_at: int) -> str:
    """A per-call token the gateway puts in a ``<Parameter>`` of the TwiML it serves: ``<expiry>.<mac>``,
    the MAC an HMAC-SHA256 over the call SID and expiry under a key derived from the auth token."""
    mac = hmac.new(_stream_key(auth_token), f"{call_sid}|{expires_at}".encode(), hashlib.sha256).digest()
    return f"{expires_at}.{base64.urlsafe_b64encode(mac).decode('ascii').rstrip('=')}"


def verify_stream_token(auth_token: str, call_sid: str, token: str | None, now: float) -> int:
    """Raise AuthenticationError unless ``token`` was minted for ``call_sid`` and has not expired;
    returns its expiry (for the caller's used-token memory)."""
    if not token:
        raise AuthenticationError(f"no {STREAM_TOKEN_PARAMETER} parameter (use the gateway's /twilio/voice TwiML)")
    expiry, _, _mac = token.partition(".")
    if not expiry.isdigit():
        raise AuthenticationError("malformed stream token")
    expected = mint_stream_token(auth_token, call_sid, int(expiry))
    if not hmac.compare_digest(expected.encode("ascii"), token.encode("utf-8", "replace")):
        raise AuthenticationError("stream token was not minted for this callSid")
    if int(expiry) < now:
        raise AuthenticationError("stream token expired")
    return int(expiry)


def stream_twiml(stream_url: str, token: str) -> str:
    """The TwiML the gateway answers Twilio's voice webhook with: connect to ``stream_url``, carrying
    the per-call token as a custom parameter."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
        f'<Stream url="{escape(stream_url, {chr(34): "&quot;"})}">'
        f'<Parameter name="{STREAM_TOKEN_PARAMETER}" value="{escape(token, {chr(34): "&quot;"})}"/>'
        "</Stream></Connect></Response>"
    )


def compute_twilio_signature(
    auth_token: str, url: str, params: Mapping[str, str | Sequence[str]] | None = None
) -> str:
    """base64(HMAC-SHA1(auth_token, url + each sorted POST param name followed by its value))."""
    data = url
    for key in sorted(params or {}):
        values = (params or {})[key]
        for value in sorted([values] if isinstance(values, str) else values):
            data += key + value
    digest = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _url_variants(url: str) -> Iterable[str]:
    """The URL as given, and with the default port added or removed (proxies differ on this)."""
    yield url
    parts = urlsplit(url)
    default = {"https": 443, "wss": 443, "http": 80, "ws": 80}.get(parts.scheme)
    if default is None or parts.hostname is None:
        return
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    try:
        port = parts.port
    except ValueError:
        return
    if port is None:
        yield urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default}"))
    elif port == default:
        yield urlunsplit(parts._replace(netloc=f"{prefix}{host}"))


def validate_twilio_signature(
    auth_token: str, signature: str | None, url: str, params: Mapping[str, str | Sequence[str]] | None = None
) -> None:
    """Raise AuthenticationError unless ``signature`` (the X-Twilio-Signature header) is valid
    for ``url`` (the full wss:// URL Twilio connected to, query string included)."""
    if not auth_token:
        raise AuthenticationError("no Twilio auth token configured: cannot validate X-Twilio-Signature")
    if not signature:
        raise AuthenticationError("missing X-Twilio-Signature header")
    for candidate in _url_variants(url):
        expected = compute_twilio_signature(auth_token, candidate, params)
        if hmac.compare_digest(expected.encode("ascii"), signature.strip().encode("utf-8", "replace")):
            return
    raise AuthenticationError("X-Twilio-Signature does not match the URL and auth token")
