"""One call: protocol events in, emotion events, bot turns and audio out; the stages' coordinator.

For every call the gateway builds a :class:`CallPipeline` around the call's I/O-free protocol core
(``connectors/protocols``) and an async ``send`` for the websocket. Per caller frame::

    AudioReceived -> audio_in: decode -> 16 kHz -> emotion channel (shared hub, events every hop)
                                                -> turn_taking: TurnSegmenter (silero VAD end-pointing)
    end of turn  -> dialogue_turn: ASR (worker process) -> Rasa {emotion + intensity, tone, rule}
                 -> speech_out: TTS with the tone's prosody -> protocol audio + mark
    caller speech while the bot is still playing -> ``clear`` (barge-in)
    reply.custom.handoff -> protocol hand-off (Twilio: transfer TwiML; ours: ``handoff`` message)

Monitor-only protocols (Genesys AudioHook: a human agent talks, we only listen) get emotion events
for every party and the escalation rule applied on the caller's stream; there is no bot turn.

Everything that happens is appended to a per-call JSON-lines log (``call_log``, written off the
loop) and published to the live feed. No audio is stored unless ``gateway.record_audio`` is on.
Per-call memory is bounded: an emotion-event ring per party, a bounded turn queue.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.dialogue.rasa_client import RasaClient
from connectors.gateway.audio_in import AudioIn, Party
from connectors.gateway.call_log import CallLog
from connectors.gateway.dialogue_turn import DialogueTurns, Turn
from connectors.gateway.emotion import EmotionFactory
from connectors.gateway.feed import FeedHub
from connectors.gateway.handoffs import HandoffStore
from connectors.gateway.logging_json import set_call_id
from connectors.gateway.metrics import GatewayMetrics
from connectors.gateway.speech_out import SpeechOut
from connectors.gateway.turn_taking import FRAME_S, SAMPLE_RATE, SegmentEvent, TurnSegmenter
from connectors.gateway.vad_hub import VadHub
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
from connectors.speech.asr import SpeechRecognizer
from connectors.speech.tts import SpeechSynthesizer
from emotion_runtime.turns import turn_reading
from emotune.config import EmotuneConfig
from emotune.errors import EmotuneError

__all__ = ["CallPipeline", "CallServices", "TransferHandler"]

logger = logging.getLogger(__name__)

REDACTED = "[redacted]"
_PRIVATE_FIELDS = frozenset({"caller_text", "bot_text", "digit", "digits", "text", "custom_parameters"})

# Applies an out-of-band transfer; True when the platform took the call.
TransferHandler = Callable[[TransferRequested], Awaitable[bool]]


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
    # The batched turn-taking VAD (silero) shared by all calls; None: each call scores its own.
    vad_hub: VadHub | None = None
    # Hand-off contexts kept for the agent desktop's lookup (GET /v1/handoff/{call_id}).
    handoffs: HandoffStore = field(default_factory=HandoffStore)
    # A call's start names a profile -> that profile's services (gateway/profiles.py); None: one profile.
    profiles: Callable[[str], Awaitable[CallServices]] | None = None


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
        self.conversation_id: str | None = None  # minted at start: the Rasa sender id
        self.audio_format: AudioFormat | None = None
        self.client_metadata: dict[str, Any] = {}  # our protocol's start.metadata, for Rasa
        self.parties: dict[str, Party] = {}
        self.log: CallLog | None = None
        # Bot turns only where the protocol can play audio back; AudioHook is listen-only.
        self.dialogue = "audio" in core.capabilities
        self.segmenter = TurnSegmenter.from_config(services.config, SAMPLE_RATE)
        self.audio_in = AudioIn(self)
        self.turns = DialogueTurns(self)
        self.speech = SpeechOut(self)
        self.ended = False
        self._finishing = False
        self.draining = False  # set by drain(): the gateway is stopping, no new turns

    # -- helpers shared by the stages --------------------------------------------------------------
    def call_time(self) -> float:
        caller = self.parties.get("caller")
        return caller.samples_seen / caller.sample_rate if caller else 0.0

    def private(self, value: Any) -> Any:
        """Caller/bot text, DTMF digits, custom parameters: kept only when the operator opted in."""
        gateway = self.services.config.gateway
        if value is None or gateway.log_transcripts or gateway.log_level == "DEBUG":
            return value
        return REDACTED

    def record(self, kind: str, **fields: Any) -> None:
        if self.log is None:
            return
        fields = {k: self.private(v) if k in _PRIVATE_FIELDS else v for k, v in fields.items()}
        record = self.log.write(kind, t=round(self.call_time(), 3), **fields)
        if self.call_id is not None:
            self.services.feed.publish(self.call_id, {k: v for k, v in record.items() if k != "wall_time"})

    async def flush(self, messages: list[Outgoing]) -> None:
        for message in messages:
            await self._send(message)

    async def after_send(self, messages: list[Outgoing]) -> None:
        await self.flush(messages)
        for event in self.core.take_events():
            await self._on_core_event(event)

    def bot_speaking(self) -> bool:
        return self.speech.speaking()

    @property
    def handed_off(self) -> bool:
        """True once the platform took the call (a transfer or an in-band hand-off was delivered)."""
        return self.turns.transferred

    # -- protocol events -----------------------------------------------------------------------
    async def handle(self, event: Event) -> None:
        if isinstance(event, AudioReceived):
            await self.audio_in.on_audio(event)
        elif isinstance(event, CallStarted):
            await self._on_started(event)
        elif isinstance(event, MarkAcknowledged):
            self.speech.mark_played(event.name)
            self.record("mark_played", name=event.name)
        elif isinstance(event, TextTurn):
            if self.dialogue:
                now = self.call_time()
                self.turns.put(Turn(now, now, text=event.text, source="text"))
        elif isinstance(event, DtmfReceived):
            self.record("dtmf", digit=event.digit, party=event.channel)
            if self.dialogue and event.channel == "caller" and not self.turns.handoff_requested:
                await self.turns.on_dtmf(event.digit)  # a typed number or a turn_taking.dtmf menu message
        elif isinstance(event, CallEnded):
            self.record("call_end_requested", reason=event.reason)
        elif isinstance(event, ProtocolViolation):
            self.record("protocol_violation", code=event.code, message=event.message, fatal=event.fatal)
        elif isinstance(event, PeerError):
            self.record("peer_error", code=event.code, message=event.message)
        elif isinstance(event, StreamPaused | StreamResumed | AudioDiscarded):
            self.record("stream_" + type(event).__name__.lower(), **{
                k: getattr(event, k) for k in ("discarded_s", "start_s", "duration_s") if hasattr(event, k)
            })  # fmt: skip
        else:
            await self._on_core_event(event)

    async def _on_started(self, event: CallStarted) -> None:
        profile = event.metadata.get("profile")
        if isinstance(profile, str) and self.services.profiles is not None:
            self.services = await self.services.profiles(profile)  # its bot, tone policy, voice
        client_metadata = event.metadata.get("client_metadata")
        if isinstance(client_metadata, dict):
            self.client_metadata = {**client_metadata}
        self.call_id = event.call_id
        # The conversation id Rasa sees is ours, never the client's call id (a client could otherwise
        # join or poison another caller's conversation); the client's id is kept as metadata.
        self.conversation_id = f"{self.protocol_name}-{uuid.uuid4().hex}"
        set_call_id(event.call_id)  # every later log record of this connection carries it
        logger.info("call started (%s, %s %d Hz)", self.protocol_name, event.audio.encoding, event.audio.sample_rate)
        self.audio_format = event.audio
        rate = event.audio.sample_rate
        self.segmenter = TurnSegmenter.from_config(self.services.config, rate)  # turn_taking: in config
        # Genesys probes an integration with an all-zero conversation: answer it, keep no file.
        probe = bool(event.metadata.get("is_probe"))
        self.log = CallLog(None if probe else self.services.log_dir, event.call_id)
        for name in event.parties:
            self.parties[name] = Party(name, self.services.emotion_factory(self._emotion_sink(name), rate), rate)
        self.services.feed.publish(event.call_id, {"type": "call_started", "protocol": self.protocol_name})
        self.log.write(
            "call_started",
            t=0.0,
            call_id=event.call_id,
            conversation_id=self.conversation_id,
            stream_id=event.stream_id,
            protocol=self.protocol_name,
            audio={"encoding": event.audio.encoding, "sample_rate": event.audio.sample_rate},
            parties=list(event.parties),
            custom_parameters=self.private(dict(event.custom_parameters)),
        )
        self.audio_in.open_recordings()
        if self.dialogue:
            self.turns.start(f"turns-{event.call_id}")

    def _emotion_sink(self, name: str) -> Callable[[dict[str, Any], float], Awaitable[None]]:
        async def sink(emotion: dict[str, Any], due_at: float) -> None:
            party = self.parties.get(name)
            if party is not None and not self.ended and not self._not_speech(party, emotion):
                await self.on_emotion(party, emotion)

        return sink

    def _not_speech(self, party: Party, emotion: dict[str, Any]) -> bool:
        """The caller's window was mostly not speech by the neural VAD (hold music, line or cabin
        noise pass the emotion stream's energy gate): no label, only a log record."""
        if party.name != "caller" or not self.dialogue or not self.segmenter.batched:
            return False
        share = self.segmenter.speech_share(float(emotion["start_s"]), float(emotion["end_s"]))
        if share is None or share >= self.services.config.streaming.min_voiced_ratio:
            return False
        self.record("emotion_not_speech", start_s=emotion["start_s"], end_s=emotion["end_s"],
                    speech_share=round(share, 2))
        return True

    async def on_emotion(self, party: Party, emotion: dict[str, Any]) -> None:
        party.latest = emotion
        party.history.append(emotion)
        party.events += 1
        self.record("emotion", party=party.name, event=emotion)
        await self.after_send(self.core.send_emotion(emotion, party.name))

    async def on_segment(self, segment: SegmentEvent) -> None:
        if segment.kind == "onset":
            await self.turns.on_onset(segment.end_s)  # barge-in: stop the bot, older turns go stale
            return
        if segment.kind == "pause":
            if segment.audio is not None and self.dialogue:
                self.turns.transcribe_early(segment.audio, self.segmenter.sample_rate, segment.pause)
            return
        self.turns.put(Turn(segment.start_s, segment.end_s, segment.audio, sample_rate=self.segmenter.sample_rate,
                            over_bot=self.turns.onset_over_bot, pause=segment.pause))

    async def _on_core_event(self, event: Event) -> None:
        if isinstance(event, TransferRequested):
            self.record(
                "transfer_requested", target=event.target, twiml=event.twiml, reason=event.reason,
                summary=event.summary,
            )
            applied = False
            if self.services.on_transfer is not None:
                try:
                    applied = bool(await self.services.on_transfer(event))
                except EmotuneError as exc:
                    self.record("transfer_failed", error=str(exc))
            if not applied:
                self.record("transfer_not_applied", target=event.target)
            self.turns.transfer_applied = applied
        elif isinstance(event, EscalationRaised):
            # Listen-only protocols apply the escalation rule next to the protocol (no dialogue
            # engine); tell the platform's agent-assist side once per streak.
            summaries = self.services.config.gateway.handoff_summaries
            summary = summaries.escalation_summary(event.party, event.emotions, event.streak)
            self.record("escalation", party=event.party, reason=event.reason, streak=event.streak,
                        emotions=list(event.emotions), summary=summary)
            if not self.dialogue:
                await self.after_send(self.core.send_handoff(event.reason, summary))

    # -- what Rasa hears about the caller ---------------------------------------------------------
    def turn_emotion(self, start_s: float | None = None, end_s: float | None = None) -> dict[str, Any] | None:
        """The caller's emotion for a turn: the mean of every window inside it
        (:func:`emotion_runtime.turns.turn_reading`); a turn too short for a window of its own
        gets the latest event of the call (the smoothed state when the caller stopped)."""
        caller = self.parties.get("caller")
        if caller is None or not caller.history:
            return None
        if start_s is not None and end_s is not None:
            reading = turn_reading(list(caller.history), start_s, end_s + FRAME_S)
            if reading is not None:
                return reading
        return caller.latest

    def metadata(self, start_s: float | None = None, end_s: float | None = None) -> dict[str, Any]:
        """Rasa message metadata: the turn's smoothed emotion + intensity, tone, escalation rule,
        what this call's platform does with a hand-off context, and the client's own metadata."""
        metadata = self.services.config.turn_metadata(self.turn_emotion(start_s, end_s))
        metadata["channel"] = self.protocol_name
        metadata["capabilities"] = {"handoff_context": self.core.delivers_handoff_context}
        if self.client_metadata:
            metadata["client"] = self.client_metadata
        return metadata

    # -- end ---------------------------------------------------------------------------------------
    async def drain(self, limit_s: float) -> None:
        """Wait (at most ``limit_s``) until the turns already queued have been answered."""
        self.draining = True
        await self.turns.drain(limit_s)

    async def finish(self, reason: str, peer_gone: bool = False) -> None:
        """Flush the last turn, wait for pending bot turns, write the summary, close the files.

        Where the protocol carries emotion events and the peer is still there, the windows
        already fed are scored first, so the call's last labels still reach the peer and the log."""
        if self.ended or self._finishing:
            return
        self._finishing = True
        for party in self.parties.values():
            if not peer_gone and "emotion" in self.core.capabilities:
                await party.emotion.drain()
            party.emotion.close()
        vad_hub = self.services.vad_hub
        if vad_hub is not None:
            if not peer_gone and self.dialogue:
                await vad_hub.drain(self.segmenter)  # the caller's last words still end a turn
            vad_hub.forget(self.segmenter)
        self.ended = True
        if self.dialogue and not self.turns.handoff_requested:
            for segment in self.segmenter.flush():
                if segment.kind == "turn":
                    self.turns.put(Turn(segment.start_s, segment.end_s, segment.audio,
                                        sample_rate=self.segmenter.sample_rate, pause=segment.pause))
        await self.turns.finish(reason, self.services.config.rasa.timeout_s + 10)
        if self.call_id is None or self.log is None:
            return
        pending = [party.recording.close() for party in self.parties.values() if party.recording is not None]
        caller = self.parties.get("caller")
        self.record(
            "call_ended",
            reason=reason,
            duration_s=round(self.call_time(), 3),
            turns=self.turns.count,
            handed_off=self.handed_off,
            handoff_requested=self.turns.handoff_requested,
            emotion_events=caller.events if caller else 0,
        )
        logger.info("call ended (%s) after %.1f s, %d turn(s)", reason, self.call_time(), self.turns.count)
        pending.append(self.log.close())
        for done in pending:
            await asyncio.wrap_future(done)  # on disk before anyone is told the call ended
        self.services.feed.forget(self.call_id)
