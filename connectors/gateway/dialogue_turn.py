"""The dialogue turn: a finished caller turn -> ASR -> Rasa (with the emotion metadata) -> reply.

Turns wait in a bounded per-call queue (``gateway.max_queued_turns``; a turn beyond it is dropped
and counted, never lost silently) and are answered one at a time by the call's turn worker.
Speech recognition runs in ``asr.workers`` processes; a turn that waited ``gateway.turn_deadline_s``
for one is answered with ``gateway.busy_reply`` instead (overload shedding). The reply is spoken
by :mod:`connectors.gateway.speech_out`; ``custom.handoff`` in it, or repeated Rasa failures, hand
the call to a human.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from connectors.dialogue.rasa_client import BotReply
from connectors.gateway.turn_taking import SAMPLE_RATE
from emotion_runtime.audio import resample
from emotune.errors import ConfigError, EmotuneError

if TYPE_CHECKING:
    from connectors.gateway.call import CallPipeline

__all__ = ["DialogueTurns", "Turn"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Turn:
    """A caller turn waiting for the bot: audio to transcribe, or text the client sent."""

    start_s: float
    end_s: float
    audio: np.ndarray | None = None  # at ``sample_rate``
    text: str | None = None
    sample_rate: int = SAMPLE_RATE
    ended_at: float = field(default_factory=time.monotonic)  # when the end-pointer closed it


class DialogueTurns:
    """One call's turn queue, its worker and the hand-off."""

    def __init__(self, call: CallPipeline) -> None:
        self.call = call
        self.queue: asyncio.Queue[Turn] = asyncio.Queue(call.services.config.gateway.max_queued_turns)
        self.worker: asyncio.Task[None] | None = None
        self.count = 0
        self.handoff_requested = False  # no more bot turns (the hand-off is under way)
        self.transferred = False  # the platform actually took the call (see finish's call_ended)
        self.transfer_applied: bool | None = None  # set by the out-of-band transfer, if any
        self._fallbacks_in_a_row = 0

    def start(self, name: str) -> None:
        self.worker = asyncio.create_task(self._work(), name=name)

    def put(self, turn: Turn) -> None:
        if self.call.draining:
            # Shutting down: only turns already queued are answered; a new one would be cut off.
            self.drop(turn, "gateway shutting down")
            return
        try:
            self.queue.put_nowait(turn)
        except asyncio.QueueFull:
            self.drop(turn, f"{self.queue.maxsize} turns already waiting for the bot")

    def drop(self, turn: Turn, reason: str) -> None:
        """A turn that will get no answer: counted and logged, never lost silently."""
        if self.call.services.metrics is not None:
            self.call.services.metrics.errors_total.inc("turn_dropped")
        self.call.record("turn_dropped", start_s=round(turn.start_s, 3), end_s=round(turn.end_s, 3), reason=reason)

    async def _work(self) -> None:
        while True:
            turn = await self.queue.get()
            try:
                await self._run(turn)
            except EmotuneError as exc:
                # One bad turn (e.g. TTS failure) must not end the call.
                logger.warning("turn failed on call %s: %s", self.call.call_id, exc)
                if self.call.services.metrics is not None:
                    self.call.services.metrics.errors_total.inc(f"turn_{type(exc).__name__}")
                self.call.record("turn_failed", error=str(exc))
            finally:
                self.queue.task_done()

    async def _run(self, pending: Turn) -> None:
        call, services = self.call, self.call.services
        if self.handoff_requested or call.call_id is None:
            return
        self.count += 1
        turn = self.count
        start_s, end_s = pending.start_s, pending.end_s
        if pending.text is not None:
            text, asr_s = pending.text.strip(), 0.0
        else:
            assert pending.audio is not None
            slots = services.asr_slots or contextlib.nullcontext()
            async with slots:
                waited_s = time.monotonic() - pending.ended_at
                if waited_s > services.config.gateway.turn_deadline_s:
                    await self._shed(turn, pending, waited_s)
                    return
                audio = resample(pending.audio, pending.sample_rate, SAMPLE_RATE)  # once per turn
                transcript = await asyncio.to_thread(services.recognizer.transcribe, audio, SAMPLE_RATE)
            text, asr_s = transcript.text, transcript.compute_s
        if not text:
            call.record("turn_skipped", turn=turn, start_s=start_s, end_s=end_s, reason="no words recognised")
            return
        await call.after_send(call.core.send_transcript(text, "caller", True))
        metadata = call.metadata(start_s, end_s) if pending.text is None else call.metadata()
        reply = await services.rasa.send(call.conversation_id or call.call_id, text, metadata)
        tone = reply.tone or str(metadata["tone"])
        if reply.fallback and services.metrics is not None:
            services.metrics.rasa_fallbacks_total.inc()
        # INFO carries no words (privacy: transcripts go to DEBUG only).
        logger.info("turn %d: tone %s, fallback %s, asr %.3f s, rasa %.3f s",
                    turn, tone, reply.fallback, asr_s, reply.latency_s)
        logger.debug("turn %d: caller said %r; bot replied %r", turn, text, reply.text)
        call.record(
            "turn", turn=turn, start_s=round(start_s, 3), end_s=round(end_s, 3), caller_text=text,
            emotion=metadata.get("emotion"), requested_tone=metadata["tone"], bot_text=reply.text, tone=tone,
            fallback=reply.fallback, fallback_reason=reply.fallback_reason, asr_s=round(asr_s, 3),
            rasa_s=round(reply.latency_s, 3),
        )  # fmt: skip
        if reply.text:
            await call.speech.speak(reply, tone, pending.ended_at)
        handoff = reply.handoff
        self._fallbacks_in_a_row = self._fallbacks_in_a_row + 1 if reply.fallback else 0
        limit = services.config.rasa.handoff_after_fallbacks
        if handoff is None and limit and self._fallbacks_in_a_row >= limit:
            # The bot keeps failing this caller: a human takes over rather than more apologies.
            handoff = {"reason": "dialogue_unavailable",
                       "summary": f"The bot could not answer {self._fallbacks_in_a_row} turns in a row "
                                  f"({reply.fallback_reason})."}  # fmt: skip
        if handoff is not None:
            await self.hand_off(handoff)

    async def _shed(self, turn: int, pending: Turn, waited_s: float) -> None:
        """Overload: the turn waited too long for recognition. Ask the caller to repeat (an
        explicit answer, never silence) without calling Rasa, so the dialogue state is untouched."""
        call, gateway = self.call, self.call.services.config.gateway
        if call.services.metrics is not None:
            call.services.metrics.errors_total.inc("turn_shed")
        logger.warning("turn %d shed: waited %.1f s for speech recognition (deadline %.1f s)",
                       turn, waited_s, gateway.turn_deadline_s)
        tone = str(call.metadata(pending.start_s, pending.end_s)["tone"])
        call.record("turn_shed", turn=turn, start_s=round(pending.start_s, 3), end_s=round(pending.end_s, 3),
                    waited_s=round(waited_s, 3), reason="overloaded: speech recognition backlog",
                    bot_text=gateway.busy_reply, tone=tone)
        await call.speech.speak(BotReply(text=gateway.busy_reply, tone=tone), tone, pending.ended_at)

    async def hand_off(self, handoff: Mapping[str, Any]) -> None:
        call = self.call
        self.handoff_requested = True
        # Let the caller hear the bot's hand-off message before the transfer clears the line.
        await call.speech.wait_for_playback()
        reason = str(handoff.get("reason", "escalation"))
        summary = str(handoff.get("summary", ""))
        target = call.services.config.gateway.twilio.transfer_to
        call.record("escalation", reason=reason, summary=summary, target=target,
                    emotion_history=handoff.get("emotion_history"))
        try:
            messages = call.core.send_handoff(reason, summary, target)
        except ConfigError as exc:
            # Twilio without gateway.twilio.transfer_to: nothing to dial, but closing the stream
            # below still hands the call back to Twilio, which goes on with the TwiML after
            # <Connect> (where an operator puts a <Dial> to the queue). Not a transfer by us.
            logger.warning("call %s: no transfer on hand-off (%s); closing the stream instead", call.call_id, exc)
            call.record("transfer_not_configured", error=str(exc))
            await call.after_send(call.core.send_clear())
        else:
            self.transfer_applied = None
            await call.after_send(messages)
            # In-band protocols (ours) hand off with their own message; Twilio needs the
            # out-of-band transfer, which reports whether it was applied.
            self.transferred = self.transfer_applied if self.transfer_applied is not None else bool(messages)
        # The platform now owns the call (Twilio: the transfer replaces the stream); end our side.
        await call.flush(call.core.close("handed off to a human"))

    async def drain(self, limit_s: float) -> None:
        """Wait (at most ``limit_s``) until the turns already queued have been answered."""
        if self.worker is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), timeout=limit_s)

    async def finish(self, reason: str, limit_s: float) -> None:
        """Answer what is queued (within ``limit_s``), stop the worker, count what is left."""
        if self.worker is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.queue.join(), timeout=limit_s)
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker
        # Turns the call ended before they were answered: never lost silently.
        while not self.queue.empty():
            self.drop(self.queue.get_nowait(), f"call ended ({reason}) before the turn was answered")
