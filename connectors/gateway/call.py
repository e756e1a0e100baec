"""One call's pipeline: protocol events in, emotion events, bot turns and audio out.

For every call the gateway builds a :class:`CallPipeline` around the call's I/O-free protocol core
(``connectors/protocols``) and an async ``send`` for the websocket. Per caller frame::

    AudioReceived -> decode (mu-law/PCM16) -> 16 kHz -> emotion stream (events every hop)
                                                     -> TurnSegmenter (energy VAD end-pointing)
    end of turn  -> ASR (worker thread) -> Rasa REST {emotion + intensity, tone, escalation rule}
                 -> reply + tone -> TTS with the tone's prosody -> protocol audio + mark
    caller speech while the bot is still playing -> ``clear`` (barge-in)
    reply.custom.handoff -> protocol hand-off (Twilio: transfer TwiML; ours: ``handoff`` message)

Monitor-only protocols (Genesys AudioHook: a human agent talks, we only listen) get emotion events
for every party and the escalation rule applied on the caller's stream; there is no bot turn.

Everything that happens is appended to a per-call JSON-lines log (:class:`CallLog`) and published
to the live feed. No audio is stored unless ``gateway.record_audio`` is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile as sf

from connectors.dialogue.rasa_client import BotReply, RasaClient
from connectors.gateway.feed import FeedHub
from connectors.gateway.logging_json import set_call_id
from connectors.gateway.metrics import GatewayMetrics
from connectors.protocols.base import (
    AudioDiscarded,
    AudioFormat,
    AudioReceived,
    CallEnded,
    CallProtocol,
    CallStarted,
    DtmfReceived,
    EscalationRaised,
    Event,
    MarkAcknowledged,
    Outgoing,
    PeerError,
    ProtocolViolation,
    StreamPaused,
    StreamResumed,
    TextTurn,
    TransferRequested,
)
from connectors.speech.asr import ASR_SAMPLE_RATE, SpeechRecognizer
from connectors.speech.tts import Speech, SpeechSynthesizer
from emotion_runtime.audio import StreamingResampler, energy_db
from emotion_runtime.audio import decode as decode_audio
from emotion_runtime.audio import encode as encode_audio
from emotune.config import EmotuneConfig
from emotune.errors import ConfigError, EmotuneError

__all__ = [
    "FRAME_S",
    "TurnSegmenter",
    "SegmentEvent",
    "EmotionAnalyzer",
    "EmotionFactory",
    "CallLog",
    "CallServices",
    "CallPipeline",
]

logger = logging.getLogger(__name__)

FRAME_S = 0.02  # the VAD decides per 20 ms frame, the telephony frame size
_FRAME = int(ASR_SAMPLE_RATE * FRAME_S)


@dataclass(frozen=True)
class SegmentEvent:
    """``onset``: the caller has been speaking ``min_onset_s`` (barge-in cue); ``turn``: a turn ended."""

    kind: str
    start_s: float
    end_s: float
    audio: np.ndarray | None = None


class TurnSegmenter:
    """Energy VAD end-pointing on 16 kHz audio: a turn ends after ``end_silence_s`` of silence.

    Why energy and not a model: it is cheap per 20 ms frame, has no dependency, and telephony
    audio of one caller is what it sees. A turn starts on frames above ``threshold_db`` dBFS and
    keeps counting frames down to ``hold_db`` lower as speech (soft word endings do not end it).
    Soft word onsets fall below the start threshold, so each turn keeps ``preroll_s`` of audio from
    before its first loud frame for the recogniser.
    """

    def __init__(
        self,
        threshold_db: float = -40.0,
        end_silence_s: float = 0.6,
        min_speech_s: float = 0.25,
        min_onset_s: float = 0.2,
        max_turn_s: float = 20.0,
        preroll_s: float = 0.8,
        hold_db: float = 10.0,
    ) -> None:
        if end_silence_s <= 0 or max_turn_s <= end_silence_s:
            raise ValueError("need 0 < end_silence_s < max_turn_s")
        self.threshold_db = threshold_db
        self.hold_threshold_db = threshold_db - hold_db
        self._end_frames = round(end_silence_s / FRAME_S)
        self._min_speech_frames = round(min_speech_s / FRAME_S)
        self._onset_frames = round(min_onset_s / FRAME_S)
        self._max_frames = round(max_turn_s / FRAME_S)
        self._preroll_frames = round(preroll_s / FRAME_S)
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames: list[np.ndarray] = []  # current turn (or pre-roll when idle)
        self._in_turn = False
        self._voiced = 0
        self._silent_run = 0
        self._onset_sent = False
        self._turn_start_frame = 0
        self.frames_seen = 0

    def push(self, samples: np.ndarray) -> list[SegmentEvent]:
        """Feed 16 kHz float samples; returns onsets and finished turns."""
        buf = np.concatenate([self._pending, np.asarray(samples, dtype=np.float32)])
        n_frames = buf.shape[0] // _FRAME
        self._pending = buf[n_frames * _FRAME :]
        events: list[SegmentEvent] = []
        for i in range(n_frames):
            frame = buf[i * _FRAME : (i + 1) * _FRAME]
            level_db = float(energy_db(frame))
            self.frames_seen += 1
            if not self._in_turn:
                voiced = level_db > self.threshold_db
                self._frames.append(frame)
                if len(self._frames) > self._preroll_frames + 1:
                    self._frames.pop(0)
                if voiced:
                    self._in_turn = True
                    self._voiced, self._silent_run, self._onset_sent = 1, 0, False
                    self._turn_start_frame = self.frames_seen - len(self._frames)
                continue
            self._frames.append(frame)
            if level_db > self.hold_threshold_db:
                self._voiced += 1
                self._silent_run = 0
            else:
                self._silent_run += 1
            now_s = self.frames_seen * FRAME_S
            if not self._onset_sent and self._voiced >= self._onset_frames:
                self._onset_sent = True
                events.append(SegmentEvent("onset", self._turn_start_frame * FRAME_S, now_s))
            if self._silent_run >= self._end_frames or len(self._frames) >= self._max_frames:
                events.extend(self._end_turn())
        return events

    def _end_turn(self) -> list[SegmentEvent]:
        frames, voiced = self._frames, self._voiced
        self._frames, self._in_turn, self._voiced, self._silent_run = [], False, 0, 0
        if voiced < self._min_speech_frames:
            return []  # a click or a cough, not a turn
        audio = np.concatenate(frames)
        start_s = self._turn_start_frame * FRAME_S
        return [SegmentEvent("turn", start_s, start_s + audio.shape[0] / ASR_SAMPLE_RATE, audio)]

    def flush(self) -> list[SegmentEvent]:
        """End of call: a turn still open ends here."""
        return self._end_turn() if self._in_turn else []


class EmotionAnalyzer(Protocol):
    """A per-stream emotion labeller: 16 kHz float samples in, CONTRACTS.md emotion events out."""

    def push(self, samples: np.ndarray) -> list[dict[str, Any]]: ...


EmotionFactory = Callable[[], EmotionAnalyzer]
TransferHandler = Callable[[TransferRequested], Awaitable[None]]


class CallLog:
    """Append-only JSON-lines record of one call (emotion events, turns, tones, escalations)."""

    def __init__(self, directory: Path | None, call_id: str) -> None:
        self.records: list[dict[str, Any]] = []
        self.path: Path | None = None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in call_id)[:100]
            self.path = directory / f"{safe}.jsonl"
        self._started = time.time()

    def write(self, kind: str, **fields: Any) -> dict[str, Any]:
        record = {"type": kind, "wall_time": round(time.time(), 3), **fields}
        self.records.append(record)
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, default=str) + "\n")
        return record


@dataclass
class CallServices:
    """What all calls share: config, engines, the Rasa client, the feed and where logs go."""

    config: EmotuneConfig
    recognizer: SpeechRecognizer
    synthesizer: SpeechSynthesizer
    rasa: RasaClient
    feed: FeedHub
    emotion_factory: EmotionFactory
    log_dir: Path | None = None
    on_transfer: TransferHandler | None = None
    recordings_dir: Path | None = None
    end_silence_s: float = 0.6
    metrics: GatewayMetrics | None = None  # the gateway's Prometheus metrics; None outside a gateway
    # Turns in speech recognition at once across all calls (asr.workers); None: no limit. Waiting
    # here, not inside the engine, lets a turn that waited past gateway.turn_deadline_s be shed.
    asr_slots: asyncio.Semaphore | None = None


@dataclass(frozen=True)
class _Turn:
    """A caller turn waiting for the bot: audio to transcribe, or text the client sent."""

    start_s: float
    end_s: float
    audio: np.ndarray | None = None
    text: str | None = None
    ended_at: float = field(default_factory=time.monotonic)  # when the end-pointer closed it


@dataclass
class _Party:
    """One audio channel of a call (the caller; AudioHook also the agent)."""

    name: str
    emotion: EmotionAnalyzer
    samples_seen: int = 0
    latest: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    recording: sf.SoundFile | None = None  # written as audio arrives: long calls stay out of memory
    resampler: StreamingResampler | None = None


class CallPipeline:
    """Drives one call. Feed it the core's events with :meth:`handle`; call :meth:`finish` at the end."""

    def __init__(
        self,
        services: CallServices,
        core: CallProtocol,
        send: Callable[[Outgoing], Awaitable[None]],
        protocol_name: str,
    ) -> None:
        self.services = services
        self.core = core
        self._send = send
        self.protocol_name = protocol_name
        self.call_id: str | None = None
        self.audio_format: AudioFormat | None = None
        self.parties: dict[str, _Party] = {}
        self.log: CallLog | None = None
        # Bot turns only where the protocol can play audio back; AudioHook is listen-only.
        self.dialogue = "audio" in core.capabilities
        self.segmenter = TurnSegmenter(
            threshold_db=services.config.streaming.vad_threshold_db, end_silence_s=services.end_silence_s
        )
        self._turns: asyncio.Queue[_Turn] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._marks: dict[str, float] = {}  # outstanding mark -> expected playback end (monotonic)
        self._playback_until = 0.0
        self._mark_counter = 0
        self._turn_counter = 0
        self.handed_off = False
        self.ended = False
        self.draining = False  # set by drain(): the gateway is stopping, no new turns
        self._fallbacks_in_a_row = 0

    # -- helpers -----------------------------------------------------------------------------
    def call_time(self) -> float:
        caller = self.parties.get("caller")
        return caller.samples_seen / ASR_SAMPLE_RATE if caller else 0.0

    def _record(self, kind: str, **fields: Any) -> None:
        if self.log is None:
            return
        record = self.log.write(kind, t=round(self.call_time(), 3), **fields)
        if self.call_id is not None:
            self.services.feed.publish(self.call_id, {k: v for k, v in record.items() if k != "wall_time"})

    async def _flush(self, messages: list[Outgoing]) -> None:
        for message in messages:
            await self._send(message)

    async def _after_send(self, messages: list[Outgoing]) -> None:
        await self._flush(messages)
        for event in self.core.take_events():
            await self._on_core_event(event)

    def bot_speaking(self) -> bool:
        return bool(self._marks) or time.monotonic() < self._playback_until

    # -- protocol events -----------------------------------------------------------------------
    async def handle(self, event: Event) -> None:
        if isinstance(event, AudioReceived):
            await self._on_audio(event)
        elif isinstance(event, CallStarted):
            self._on_started(event)
        elif isinstance(event, MarkAcknowledged):
            self._marks.pop(event.name, None)
            if not self._marks:
                self._playback_until = 0.0  # the peer's mark is the truth, not our estimate
            self._record("mark_played", name=event.name)
        elif isinstance(event, TextTurn):
            if self.dialogue:
                now = self.call_time()
                await self._queue_turn(_Turn(now, now, text=event.text))
        elif isinstance(event, DtmfReceived):
            self._record("dtmf", digit=event.digit, party=event.channel)
        elif isinstance(event, CallEnded):
            self._record("call_end_requested", reason=event.reason)
        elif isinstance(event, ProtocolViolation):
            self._record("protocol_violation", code=event.code, message=event.message, fatal=event.fatal)
        elif isinstance(event, PeerError):
            self._record("peer_error", code=event.code, message=event.message)
        elif isinstance(event, StreamPaused | StreamResumed | AudioDiscarded):
            self._record("stream_" + type(event).__name__.lower(), **{
                k: getattr(event, k) for k in ("discarded_s", "start_s", "duration_s") if hasattr(event, k)
            })  # fmt: skip
        else:
            await self._on_core_event(event)

    def _on_started(self, event: CallStarted) -> None:
        self.call_id = event.call_id
        set_call_id(event.call_id)  # every later log record of this connection carries it
        logger.info("call started (%s, %s %d Hz)", self.protocol_name, event.audio.encoding, event.audio.sample_rate)
        self.audio_format = event.audio
        self.log = CallLog(self.services.log_dir, event.call_id)
        for name in event.parties:
            self.parties[name] = _Party(name, self.services.emotion_factory())
        self.services.feed.publish(event.call_id, {"type": "call_started", "protocol": self.protocol_name})
        self.log.write(
            "call_started",
            t=0.0,
            call_id=event.call_id,
            stream_id=event.stream_id,
            protocol=self.protocol_name,
            audio={"encoding": event.audio.encoding, "sample_rate": event.audio.sample_rate},
            parties=list(event.parties),
            custom_parameters=dict(event.custom_parameters),
        )
        self._open_recordings()
        if self.dialogue:
            self._worker = asyncio.create_task(self._turn_worker(), name=f"turns-{event.call_id}")

    async def _on_audio(self, event: AudioReceived) -> None:
        party = self.parties.get(event.channel)
        if party is None:
            return  # audio before start is refused by the cores; unknown channels are ignored
        if party.resampler is None or party.resampler.from_rate != event.sample_rate:
            # Stateful per party: resampling 20 ms frames one by one would click at every edge.
            party.resampler = StreamingResampler(event.sample_rate, ASR_SAMPLE_RATE)
        received_at = time.monotonic()  # the frame that may close an analysis window arrived
        samples = party.resampler.process(decode_audio(event.payload, event.encoding))
        party.samples_seen += samples.shape[0]
        if party.recording is not None:
            party.recording.write(samples)
        for emotion in party.emotion.push(samples):
            await self._on_emotion(party, emotion)
            if self.services.metrics is not None:
                self.services.metrics.label_latency.observe(time.monotonic() - received_at)
        if self.dialogue and party.name == "caller" and not self.handed_off:
            for segment in self.segmenter.push(samples):
                await self._on_segment(segment)

    async def _on_emotion(self, party: _Party, emotion: dict[str, Any]) -> None:
        party.latest = emotion
        party.history.append(emotion)
        self._record("emotion", party=party.name, event=emotion)
        await self._after_send(self.core.send_emotion(emotion, party.name))

    async def _on_segment(self, segment: SegmentEvent) -> None:
        if segment.kind == "onset":
            if self.bot_speaking():
                # Barge-in: the caller talks over the bot, so stop the bot's queued audio.
                self._marks.clear()
                self._playback_until = 0.0
                self._record("barge_in", at=round(segment.end_s, 3))
                await self._after_send(self.core.send_clear())
            return
        await self._queue_turn(_Turn(segment.start_s, segment.end_s, audio=segment.audio))

    async def _queue_turn(self, turn: _Turn) -> None:
        if self.draining:
            # Shutting down: only turns already queued are answered; a new one would be cut off.
            self._drop_turn(turn, "gateway shutting down")
            return
        await self._turns.put(turn)

    def _drop_turn(self, turn: _Turn, reason: str) -> None:
        """A turn that will get no answer: counted and logged, never lost silently."""
        if self.services.metrics is not None:
            self.services.metrics.errors_total.inc("turn_dropped")
        self._record("turn_dropped", start_s=round(turn.start_s, 3), end_s=round(turn.end_s, 3), reason=reason)

    async def _on_core_event(self, event: Event) -> None:
        if isinstance(event, TransferRequested):
            self._record(
                "transfer_requested", target=event.target, twiml=event.twiml, reason=event.reason,
                summary=event.summary,
            )
            if self.services.on_transfer is not None:
                try:
                    await self.services.on_transfer(event)
                except EmotuneError as exc:
                    self._record("transfer_failed", error=str(exc))
        elif isinstance(event, EscalationRaised):
            # Listen-only protocols apply the escalation rule next to the protocol (no dialogue
            # engine); tell the platform's agent-assist side once per streak.
            summary = (
                f"The {event.party} sounded {', '.join(sorted(set(event.emotions)))} in "
                f"{event.streak} consecutive analysis windows."
            )
            self._record("escalation", party=event.party, reason=event.reason, streak=event.streak,
                         emotions=list(event.emotions), summary=summary)
            if not self.dialogue:
                await self._after_send(self.core.send_handoff(event.reason, summary))

    # -- bot turns -------------------------------------------------------------------------------
    async def _turn_worker(self) -> None:
        while True:
            turn = await self._turns.get()
            try:
                await self._run_turn(turn)
            except EmotuneError as exc:
                # One bad turn (e.g. TTS failure) must not end the call.
                logger.warning("turn failed on call %s: %s", self.call_id, exc)
                if self.services.metrics is not None:
                    self.services.metrics.errors_total.inc(f"turn_{type(exc).__name__}")
                self._record("turn_failed", error=str(exc))
            finally:
                self._turns.task_done()

    def turn_emotion(self, start_s: float | None = None, end_s: float | None = None) -> dict[str, Any] | None:
        """The caller's smoothed emotion for a turn: the last event whose window ends inside the
        turn (the state when the caller stopped speaking), else the latest event of the call."""
        caller = self.parties.get("caller")
        if caller is None or not caller.history:
            return None
        if start_s is not None and end_s is not None:
            for event in reversed(caller.history):
                event_end = float(event.get("end_s", -1.0))
                if start_s < event_end <= end_s + FRAME_S:
                    return event
        return caller.latest

    def metadata(self, start_s: float | None = None, end_s: float | None = None) -> dict[str, Any]:
        """Rasa message metadata: the turn's smoothed emotion + intensity, tone, escalation rule."""
        metadata = self.services.config.turn_metadata(self.turn_emotion(start_s, end_s))
        metadata["channel"] = self.protocol_name
        return metadata

    async def _run_turn(self, pending: _Turn) -> None:
        if self.handed_off or self.call_id is None:
            return
        self._turn_counter += 1
        turn = self._turn_counter
        start_s, end_s = pending.start_s, pending.end_s
        if pending.text is not None:
            text, asr_s = pending.text.strip(), 0.0
        else:
            assert pending.audio is not None
            slots = self.services.asr_slots or contextlib.nullcontext()
            async with slots:
                waited_s = time.monotonic() - pending.ended_at
                if waited_s > self.services.config.gateway.turn_deadline_s:
                    await self._shed_turn(turn, pending, waited_s)
                    return
                transcript = await asyncio.to_thread(
                    self.services.recognizer.transcribe, pending.audio, ASR_SAMPLE_RATE
                )
            text, asr_s = transcript.text, transcript.compute_s
        if not text:
            self._record("turn_skipped", turn=turn, start_s=start_s, end_s=end_s, reason="no words recognised")
            return
        await self._after_send(self.core.send_transcript(text, "caller", True))
        metadata = self.metadata(start_s, end_s) if pending.text is None else self.metadata()
        reply = await self.services.rasa.send(self.call_id, text, metadata)
        tone = reply.tone or str(metadata["tone"])
        if reply.fallback and self.services.metrics is not None:
            self.services.metrics.rasa_fallbacks_total.inc()
        # INFO carries no words (privacy: transcripts go to DEBUG only).
        logger.info("turn %d: tone %s, fallback %s, asr %.3f s, rasa %.3f s",
                    turn, tone, reply.fallback, asr_s, reply.latency_s)
        logger.debug("turn %d: caller said %r; bot replied %r", turn, text, reply.text)
        self._record(
            "turn",
            turn=turn,
            start_s=round(start_s, 3),
            end_s=round(end_s, 3),
            caller_text=text,
            emotion=metadata.get("emotion"),
            requested_tone=metadata["tone"],
            bot_text=reply.text,
            tone=tone,
            fallback=reply.fallback,
            fallback_reason=reply.fallback_reason,
            asr_s=round(asr_s, 3),
            rasa_s=round(reply.latency_s, 3),
        )
        if reply.text:
            await self._speak(reply, tone, pending.ended_at)
        handoff = reply.handoff
        self._fallbacks_in_a_row = self._fallbacks_in_a_row + 1 if reply.fallback else 0
        limit = self.services.config.rasa.handoff_after_fallbacks
        if handoff is None and limit and self._fallbacks_in_a_row >= limit:
            # The bot keeps failing this caller: a human takes over rather than more apologies.
            handoff = {"reason": "dialogue_unavailable",
                       "summary": f"The bot could not answer {self._fallbacks_in_a_row} turns in a row "
                                  f"({reply.fallback_reason})."}  # fmt: skip
        if handoff is not None:
            await self._handoff(handoff)

    async def _shed_turn(self, turn: int, pending: _Turn, waited_s: float) -> None:
        """Overload: the turn waited too long for recognition. Ask the caller to repeat (an
        explicit answer, never silence) without calling Rasa, so the dialogue state is untouched."""
        gateway = self.services.config.gateway
        if self.services.metrics is not None:
            self.services.metrics.errors_total.inc("turn_shed")
        logger.warning("turn %d shed: waited %.1f s for speech recognition (deadline %.1f s)",
                       turn, waited_s, gateway.turn_deadline_s)
        tone = str(self.metadata(pending.start_s, pending.end_s)["tone"])
        self._record("turn_shed", turn=turn, start_s=round(pending.start_s, 3), end_s=round(pending.end_s, 3),
                     waited_s=round(waited_s, 3), reason="overloaded: speech recognition backlog",
                     bot_text=gateway.busy_reply, tone=tone)
        await self._speak(BotReply(text=gateway.busy_reply, tone=tone), tone, pending.ended_at)

    async def _speak(self, reply: BotReply, tone: str, turn_ended_at: float) -> None:
        assert self.audio_format is not None
        prosody = self.services.config.tone_policy.prosody.get(tone) or self.services.config.tone_policy.prosody[
            self.services.config.tone_policy.default_tone
        ]
        speech: Speech = await asyncio.to_thread(self.services.synthesizer.synthesize, reply.text, prosody)
        # Bot speech goes out in the format the protocol announced for it (ours may differ from
        # the caller's input format); telephony plays back what it sends.
        out_format: AudioFormat = getattr(self.core, "output_audio", None) or self.audio_format
        if speech.samples.size == 0:  # tts.engine none: the client speaks the text itself
            await self._after_send(self.core.send_bot_reply(reply.text, tone, None, {"tone": tone}))
            self._observe_turn_latency(time.monotonic() - turn_ended_at)
            return
        await self._after_send(self.core.send_bot_reply(reply.text, tone, out_format, {"tone": tone}))
        wire = encode_audio(speech.at_rate(out_format.sample_rate).samples, out_format.encoding)
        response_s = time.monotonic() - turn_ended_at
        await self._after_send(self.core.send_audio(wire, out_format.encoding, out_format.sample_rate))
        self._observe_turn_latency(response_s)
        self._mark_counter += 1
        mark = f"reply-{self._mark_counter}"
        now = time.monotonic()
        self._playback_until = max(now, self._playback_until) + speech.duration_s
        marks = self.core.send_mark(mark)
        if marks:
            self._marks[mark] = self._playback_until
        await self._after_send(marks)
        # response_s: end of the caller's turn (after the end-pointing silence) -> first bot audio.
        self._record("bot_audio", mark=mark, tone=tone, duration_s=round(speech.duration_s, 3),
                     response_s=round(response_s, 3),
                     tts_s=round(speech.compute_s, 3))

    def _observe_turn_latency(self, seconds: float) -> None:
        if self.services.metrics is not None:
            self.services.metrics.turn_latency.observe(seconds)

    async def _wait_for_playback(self, limit_s: float = 20.0) -> None:
        deadline = time.monotonic() + limit_s
        while self.bot_speaking() and time.monotonic() < deadline and not self.ended:
            await asyncio.sleep(0.05)

    async def _handoff(self, handoff: Mapping[str, Any]) -> None:
        self.handed_off = True
        # Let the caller hear the bot's hand-off message before the transfer clears the line.
        await self._wait_for_playback()
        reason = str(handoff.get("reason", "escalation"))
        summary = str(handoff.get("summary", ""))
        target = self.services.config.gateway.twilio.transfer_to
        self._record("escalation", reason=reason, summary=summary, target=target,
                     emotion_history=handoff.get("emotion_history"))
        try:
            messages = self.core.send_handoff(reason, summary, target)
        except ConfigError as exc:
            # Twilio without gateway.twilio.transfer_to: nothing to dial, but closing the stream
            # below still hands the call back to Twilio, which goes on with the TwiML after
            # <Connect> (where an operator puts a <Dial> to the queue).
            logger.warning("call %s: no transfer on hand-off (%s); closing the stream instead", self.call_id, exc)
            self._record("transfer_not_configured", error=str(exc))
            messages = self.core.send_clear()
        await self._after_send(messages)
        # The platform now owns the call (Twilio: the transfer replaces the stream); end our side.
        await self._flush(self.core.close("handed off to a human"))

    # -- end ---------------------------------------------------------------------------------------
    async def drain(self, limit_s: float) -> None:
        """Wait (at most ``limit_s``) until the turns already queued have been answered."""
        self.draining = True
        if self._worker is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._turns.join(), timeout=limit_s)

    async def finish(self, reason: str) -> None:
        """Flush the last turn, wait for pending bot turns, write the summary."""
        if self.ended:
            return
        self.ended = True
        if self.dialogue and not self.handed_off:
            for segment in self.segmenter.flush():
                if segment.kind == "turn":
                    await self._queue_turn(_Turn(segment.start_s, segment.end_s, audio=segment.audio))
        if self._worker is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._turns.join(), timeout=self.services.config.rasa.timeout_s + 10)
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        # Turns the call ended before they were answered: never lost silently.
        while not self._turns.empty():
            self._drop_turn(self._turns.get_nowait(), f"call ended ({reason}) before the turn was answered")
        if self.call_id is None or self.log is None:
            return
        self._save_recordings()
        caller = self.parties.get("caller")
        self._record(
            "call_ended",
            reason=reason,
            duration_s=round(self.call_time(), 3),
            turns=self._turn_counter,
            handed_off=self.handed_off,
            emotion_events=len(caller.history) if caller else 0,
        )
        logger.info("call ended (%s) after %.1f s, %d turn(s)", reason, self.call_time(), self._turn_counter)
        self.services.feed.forget(self.call_id)

    def _open_recordings(self) -> None:
        directory = self.services.recordings_dir or self.services.log_dir
        if not self.services.config.gateway.record_audio or directory is None or self.log is None:
            return
        stem = self.log.path.stem if self.log.path is not None else "call"
        for party in self.parties.values():
            path = directory / f"{stem}.{party.name}.flac"
            party.recording = sf.SoundFile(str(path), "w", ASR_SAMPLE_RATE, 1, format="FLAC", subtype="PCM_16")
            self._record("recording_started", party=party.name, path=str(path))

    def _save_recordings(self) -> None:
        for party in self.parties.values():
            if party.recording is not None:
                party.recording.close()
                party.recording = None
