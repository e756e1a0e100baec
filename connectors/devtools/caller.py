"""A simulated Twilio caller: streams a call to the gateway exactly like Twilio Media Streams does.

It sends ``connected``/``start``, then 20 ms mu-law ``media`` frames in real time (or ``speed``
times faster), plays the bot's audio on a simulated phone (a playback clock), echoes each ``mark``
once the audio before it has "played", and on ``clear`` drops the queued audio and echoes the
pending marks at once, as Twilio does. Between the caller's turns it keeps the line open with
silence frames (a phone line never stops sending) until the bot's reply has finished playing,
like a polite caller; ``barge_in=True`` makes it talk over the bot instead.

Used by the demo (``connectors/demo.py``) and the end-to-end tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from connectors.devtools.twilio_client import ClearRequested, MarkRequested, OutboundMedia, TwilioStreamClient
from connectors.protocols.base import ProtocolViolation
from emotion_runtime.audio import encode as encode_audio
from emotion_runtime.audio import resample
from emotune.errors import AudioError, ProtocolError

__all__ = ["CallerTurn", "CallerResult", "TwilioCaller", "TWILIO_RATE", "voiced_span"]

TWILIO_RATE = 8000
_FRAME_MS = 20
_FRAME_BYTES = TWILIO_RATE * _FRAME_MS // 1000


@dataclass(frozen=True)
class CallerTurn:
    """One thing the caller says: mono float audio at ``sample_rate``, with what it is (for logs)."""

    audio: np.ndarray
    sample_rate: int
    label: str = ""
    text: str = ""

    def mulaw(self) -> bytes:
        if self.audio.ndim != 1 or self.audio.size == 0:
            raise AudioError("a caller turn needs non-empty mono audio")
        return encode_audio(resample(self.audio, self.sample_rate, TWILIO_RATE), "mulaw")

    def speech_end_s(self) -> float:
        """Where the speech ends inside the clip (see :func:`voiced_span`)."""
        return voiced_span(self.audio, self.sample_rate)[1]


def voiced_span(audio: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """(start, end) in seconds of the clip's speech: its first to last 20-ms frame within 25 dB of the
    loudest (recorded clips carry leading and trailing room noise, which is not speech)."""
    frame = sample_rate * _FRAME_MS // 1000
    frames = audio[: audio.shape[0] // frame * frame].reshape(-1, frame).astype(np.float64)
    if not frames.size:
        return 0.0, audio.shape[0] / sample_rate
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    voiced = np.flatnonzero(level > level.max() - 25.0)
    return int(voiced[0]) * frame / sample_rate, (int(voiced[-1]) + 1) * frame / sample_rate


@dataclass
class CallerResult:
    """What the caller experienced."""

    bot_audio_s: float = 0.0
    bot_audio_by_mark: dict[str, float] = field(default_factory=dict)
    marks_echoed: list[str] = field(default_factory=list)
    clears: int = 0
    violations: list[str] = field(default_factory=list)
    closed_by_gateway: bool = False
    close_code: int | None = None
    duration_s: float = 0.0
    # Per turn, from the last voiced frame the caller sent to the first bot audio that arrived
    # after it: the wait the caller hears (end-pointing, recognition, dialogue, synthesis, network).
    reply_waits_s: list[float] = field(default_factory=list)


class _Phone:
    """The caller's handset: bot audio queued for playback on a clock, marks at positions in it."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.queued_s = 0.0  # audio received but not yet played
        self.marks: list[tuple[float, str]] = []  # (queued_s at which the mark is reached, name)
        self._last = time.monotonic()
        self.unplayed_since_mark_s = 0.0

    def advance(self) -> list[str]:
        now = time.monotonic()
        played = (now - self._last) * self.speed
        self._last = now
        self.queued_s = max(0.0, self.queued_s - played)
        self.marks = [(pos - played, name) for pos, name in self.marks]
        due = [name for pos, name in self.marks if pos <= 0.0]
        self.marks = [(pos, name) for pos, name in self.marks if pos > 0.0]
        return due

    def add_audio(self, seconds: float) -> None:
        self.advance()
        self.queued_s += seconds

    def add_mark(self, name: str) -> None:
        self.advance()
        self.marks.append((self.queued_s, name))

    def clear(self) -> list[str]:
        names = [name for _, name in self.marks]
        self.queued_s, self.marks = 0.0, []
        return names

    @property
    def busy(self) -> bool:
        return self.queued_s > 0.0 or bool(self.marks)


class TwilioCaller:
    """Streams ``turns`` to a gateway's ``/twilio`` path and plays back what the bot says.

    ``speed``: 1.0 = real time; 4.0 streams four times faster (tests). ``headers``: e.g. an
    ``X-Twilio-Signature``. ``on_event`` sees every server event (for live printing).
    """

    def __init__(
        self,
        url: str,
        turns: Sequence[CallerTurn],
        *,
        speed: float = 1.0,
        barge_in: bool = False,
        pause_s: float = 0.8,
        max_wait_s: float = 30.0,
        call_sid: str = "CA" + "0" * 32,
        custom_parameters: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        on_event: Callable[[object], None] | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        if not turns:
            raise AudioError("a call needs at least one caller turn")
        self.url = url
        self.turns = list(turns)
        self.speed = speed
        self.barge_in = barge_in
        self.pause_s = pause_s
        self.max_wait_s = max_wait_s
        self.headers = dict(headers or {})
        self.on_event = on_event
        self.client = TwilioStreamClient(call_sid=call_sid, custom_parameters=custom_parameters)
        self.result = CallerResult()
        self._phone = _Phone(speed)
        self._silence = encode_audio(np.zeros(_FRAME_BYTES, dtype=np.float32), "mulaw")
        self._got_reply = asyncio.Event()
        self._speech_ended_at: float | None = None  # the current turn's end of speech, until audio comes

    async def _receive(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                if not isinstance(message, str):
                    self.result.violations.append("binary frame from server")
                    continue
                for event in self.client.receive_text(message):
                    if self.on_event is not None:
                        self.on_event(event)
                    if isinstance(event, OutboundMedia):
                        seconds = len(event.payload) / TWILIO_RATE
                        if self._speech_ended_at is not None:
                            self.result.reply_waits_s.append(time.monotonic() - self._speech_ended_at)
                            self._speech_ended_at = None
                        self.result.bot_audio_s += seconds
                        self._phone.add_audio(seconds)
                        self._got_reply.set()
                    elif isinstance(event, MarkRequested):
                        self._phone.add_mark(event.name)
                        self.result.bot_audio_by_mark[event.name] = self.result.bot_audio_s
                    elif isinstance(event, ClearRequested):
                        self.result.clears += 1
                        for name in self._phone.clear():
                            await self._echo(ws, name)
                    elif isinstance(event, ProtocolViolation):
                        self.result.violations.append(event.message)
        except ConnectionClosed as exc:
            self.result.closed_by_gateway = True
            self.result.close_code = exc.rcvd.code if exc.rcvd else None

    async def _echo(self, ws: ClientConnection, name: str) -> None:
        self.result.marks_echoed.append(name)
        await ws.send(self.client.mark(name))

    async def _send_frame(self, ws: ClientConnection, frame: bytes, deadline: float) -> float:
        """Send one 20 ms frame, echo marks that are due, keep the real-time pace."""
        await ws.send(self.client.media(frame))
        for name in self._phone.advance():
            await self._echo(ws, name)
        deadline += _FRAME_MS / 1000 / self.speed
        delay = deadline - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        return deadline

    async def _stream(self, ws: ClientConnection) -> None:
        deadline = time.monotonic()
        for index, turn in enumerate(self.turns):
            audio = turn.mulaw()
            self._got_reply.clear()
            speech_end = int(turn.speech_end_s() * TWILIO_RATE)
            for i in range(0, len(audio), _FRAME_BYTES):
                frame = audio[i : i + _FRAME_BYTES].ljust(_FRAME_BYTES, self._silence[:1])
                deadline = await self._send_frame(ws, frame, deadline)
                if i < speech_end <= i + _FRAME_BYTES and not self.barge_in:
                    self._speech_ended_at = time.monotonic()  # the last voiced frame is out
            if self.barge_in and index < len(self.turns) - 1:
                # Talk over the bot: start the next turn as soon as its reply starts playing.
                waited = 0.0
                while not self._got_reply.is_set() and waited < self.max_wait_s:
                    deadline = await self._send_frame(ws, self._silence, deadline)
                    waited += _FRAME_MS / 1000
                continue
            # Silence until the bot has answered and finished playing (or gave up), then a pause.
            waited, quiet = 0.0, 0.0
            while waited < self.max_wait_s and quiet < self.pause_s:
                deadline = await self._send_frame(ws, self._silence, deadline)
                waited += _FRAME_MS / 1000
                answered = self._got_reply.is_set() and not self._phone.busy
                quiet = quiet + _FRAME_MS / 1000 if answered else 0.0

    async def run(self) -> CallerResult:
        """Place the call; returns when every turn was spoken and the bot finished (or hung up)."""
        started = time.monotonic()
        try:
            ws = await connect(self.url, additional_headers=self.headers, open_timeout=10)
        except OSError as exc:
            raise ProtocolError(f"cannot connect to {self.url}: {exc}") from exc
        async with ws:
            receiver = asyncio.create_task(self._receive(ws))
            try:
                await ws.send(self.client.connected())
                await ws.send(self.client.start())
                await self._stream(ws)
                await ws.send(self.client.stop())
            except ConnectionClosed:
                self.result.closed_by_gateway = True
            finally:
                with contextlib.suppress(ConnectionClosed):
                    await ws.close()
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(receiver, timeout=5)
        self.result.duration_s = time.monotonic() - started
        return self.result
