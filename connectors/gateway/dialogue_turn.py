"""The dialogue turn: a finished caller turn -> ASR -> Rasa (with the emotion metadata) -> reply.

Turns wait in a bounded per-call queue (``gateway.max_queued_turns``; a turn beyond it is dropped
and counted, never lost silently) and are answered one at a time by the call's turn worker.
Speech recognition runs in ``asr.workers`` processes; a turn that waited ``gateway.turn_deadline_s``
for one is answered with ``gateway.busy_reply`` instead (overload shedding). The reply is spoken
by :mod:`connectors.gateway.speech_out`; ``custom.handoff`` in it, or repeated Rasa failures, hand
the call to a human.

Barge-in and stale work (the interruption rule): a caller onset (``turn_taking.barge_in_min_speech_s``
of speech) while the bot plays stops the playback (``clear``); any turn that ended before that onset
is stale: its reply is not played (if Rasa already has it, its tracker keeps the turn), and a turn
still waiting for Rasa is not sent alone: its words are carried into the caller's next turn, so a
caller who paused mid-sentence is answered once, for the whole sentence. A turn spoken over the
bot that holds only backchannel words (``barge_in_ignore_words``: "uh-huh", "okay") is not a turn.

The call flow around the turns (``turn_taking:``): a greeting when the call starts, a reprompt after
``reprompt_after_s`` of silence and ``silence_action`` after ``max_reprompts`` of them, keypad keys
(rate-limited): a number typed while the bot asks for one is one turn carrying its digits
(:mod:`connectors.gateway.keypad`), any other key a single-key menu message; a maximum call length.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from connectors.dialogue.rasa_client import BotReply
from connectors.gateway.handoffs import HANDOFF_PATH
from connectors.gateway.keypad import (
    EmptyEntry,
    EntryAbandoned,
    EntryCleared,
    KeyIgnored,
    KeypadCollector,
    KeypadEvent,
    MenuKey,
    NumberEntered,
    asked_step,
)
from connectors.gateway.turn_taking import SAMPLE_RATE
from connectors.speech.asr import Transcript, recognise
from emotion_runtime.audio import resample
from emotune.errors import ConfigError, EmotuneError, SpeechEngineError

if TYPE_CHECKING:
    from connectors.gateway.call import CallPipeline

__all__ = ["DialogueTurns", "Turn"]

logger = logging.getLogger(__name__)

# Hand-off context fields holding the caller's words or identifiers (redacted on the feed by default).
_PRIVATE_CONTEXT = frozenset({"summary", "last_caller_words", "slots", "tickets"})


@dataclass(frozen=True)
class Turn:
    """A caller turn waiting for the bot: audio to transcribe, or text the client sent."""

    start_s: float
    end_s: float
    audio: np.ndarray | None = None  # at ``sample_rate``
    text: str | None = None
    sample_rate: int = SAMPLE_RATE
    ended_at: float = field(default_factory=time.monotonic)  # when the end-pointer closed it
    over_bot: bool = False  # began while the bot was speaking or a reply was on its way
    source: str = "speech"  # speech, text (typed) or dtmf
    pause: int | None = None  # the segmenter's pause that ended it (matches an early transcript's)


@dataclass
class EarlyTranscript:
    """A turn's words recognised at a pause before its end (``turn_taking.early_transcription_s``).
    Good for the turn that ends in the same pause: no speech came after its audio."""

    pause: int
    started_at: float
    task: asyncio.Task[Transcript]


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
        self.timer: asyncio.Task[None] | None = None
        self.busy = False  # a turn is being answered (ASR, Rasa, TTS)
        self.last_onset_at = 0.0  # monotonic time of the caller's last confirmed speech onset
        self.onset_over_bot = False  # that onset came while the bot spoke or a reply was pending
        self._carried: list[str] = []  # words of superseded turns, for the caller's next turn
        self._started_at = time.monotonic()
        self._quiet_since = self._started_at
        self._reprompts = 0
        self._dtmf_tokens = 0.0
        self._dtmf_at = self._started_at
        self.keypad = KeypadCollector(call.services.config.turn_taking.keypad)
        self._prompts: set[asyncio.Task[None]] = set()  # keypad prompts being spoken
        self._early: dict[int, EarlyTranscript] = {}  # pause -> its guess (turns may wait in the queue)
        self._ignore = self._backchannel_pattern()

    def _backchannel_pattern(self) -> re.Pattern[str] | None:
        words = self.call.services.config.turn_taking.barge_in_ignore_words
        if not words:
            return None
        alternatives = "|".join(sorted((re.escape(w.lower()) for w in words), key=len, reverse=True))
        return re.compile(rf"^(?:\s*(?:{alternatives})\s*[.,!?]*)+$")

    def start(self, name: str) -> None:
        self._started_at = self._quiet_since = time.monotonic()
        self.worker = asyncio.create_task(self._work(), name=name)
        self.timer = asyncio.create_task(self._watch(), name=f"{name}-timer")

    # -- the interruption rule ----------------------------------------------------------------------
    async def on_onset(self, at_s: float) -> None:
        """The caller has been speaking ``barge_in_min_speech_s``: stop the bot, make older turns stale."""
        speech = self.call.speech
        self.last_onset_at = time.monotonic()
        self.onset_over_bot = speech.speaking() or self.busy or not self.queue.empty()
        if speech.speaking():
            await speech.barge_in(at_s)

    def stale(self, turn: Turn) -> bool:
        """The caller spoke again after ``turn`` ended: its reply would answer a superseded turn."""
        return turn.source == "speech" and self.last_onset_at > turn.ended_at

    def is_backchannel(self, text: str) -> bool:
        return self._ignore is not None and bool(self._ignore.match(text.lower()))

    async def on_dtmf(self, digit: str) -> None:
        """A keypad key: a digit of the number the bot asked for, or a single-key menu message (the
        mapped dialogue message becomes a caller turn). A flood is dropped (and a number it cut into
        is thrown away)."""
        tt = self.call.services.config.turn_taking
        now = time.monotonic()
        self._dtmf_tokens = min(tt.dtmf_max_per_s, self._dtmf_tokens + (now - self._dtmf_at) * tt.dtmf_max_per_s)
        self._dtmf_at = now
        if self._dtmf_tokens < 1.0 and now - self._started_at > 1.0 / tt.dtmf_max_per_s:
            if self.call.services.metrics is not None:
                self.call.services.metrics.errors_total.inc("dtmf_dropped")
            self.call.record("dtmf_dropped", digit=digit, reason=f"over {tt.dtmf_max_per_s:g} digits/s")
            await self._on_keypad(self.keypad.lost(now))
            return
        self._dtmf_tokens = max(0.0, self._dtmf_tokens - 1.0)
        self._reprompts, self._quiet_since = 0, now  # the caller is answering
        events = self.keypad.key(digit, now)
        # A key with no meaning (an unmapped menu key) does not stop the bot; a digit of a number does.
        meaningless = bool(events) and all(isinstance(e, MenuKey) and e.key not in tt.dtmf for e in events)
        if not meaningless and tt.keypad.barge_in and self.call.speech.speaking():
            await self.call.speech.barge_in(self.call.call_time())  # a key stops the bot, as speech does
        await self._on_keypad(events)

    async def _on_keypad(self, events: list[KeypadEvent]) -> None:
        call, tt = self.call, self.call.services.config.turn_taking
        for event in events:
            at = call.call_time()
            if isinstance(event, MenuKey):
                message = tt.dtmf.get(event.key)
                if message is not None:
                    self.put(Turn(at, at, text=message, source="dtmf"))
            elif isinstance(event, NumberEntered):
                call.record("keypad_number", digits=event.digits, length=len(event.digits), reason=event.reason)
                self.put(Turn(at, at, text=event.digits, source="dtmf"))
            elif isinstance(event, EmptyEntry):
                call.record("keypad_empty")
                self._prompt(tt.keypad.empty_prompt, "keypad_empty")
            elif isinstance(event, EntryAbandoned):
                call.record("keypad_abandoned", digits=event.digits or None, reason="a key was dropped")
                self._prompt(tt.keypad.retype_prompt, "keypad_abandoned")
            elif isinstance(event, EntryCleared):
                call.record("keypad_cleared", digits=event.digits)
            elif isinstance(event, KeyIgnored):
                call.record("keypad_ignored", digit=event.key, reason=event.reason)

    def _prompt(self, text: str, kind: str) -> None:
        """A keypad prompt, spoken beside the protocol's event loop (synthesis takes a while)."""

        async def speak() -> None:
            try:
                await self.say(text, kind)
            except EmotuneError as exc:
                logger.warning("keypad prompt failed on call %s: %s", self.call.call_id, exc)
                self.call.record("turn_failed", error=str(exc))

        task = asyncio.create_task(speak(), name=f"{kind}-{self.call.call_id}")
        self._prompts.add(task)
        task.add_done_callback(self._prompts.discard)

    # -- the call flow: greeting, reprompts, maximum call length ----------------------------------
    async def say(self, text: str, kind: str) -> None:
        """A prompt of the bot's own (no Rasa turn), in the default tone."""
        call = self.call
        tone = call.services.config.tone_policy.default_tone
        call.record("bot_prompt", prompt=kind, bot_text=text, tone=tone)
        await call.speech.speak(BotReply(text=text, tone=tone), tone, None)

    async def _watch(self) -> None:
        """Greeting first, then once every 0.2 s: the call's length and the caller's silence."""
        call, tt = self.call, self.call.services.config.turn_taking
        try:
            if tt.greeting:
                self.busy = True
                try:
                    await self.say(tt.greeting, "greeting")
                finally:
                    self.busy = False
            while not call.ended and not self.handoff_requested:
                await asyncio.sleep(0.2)
                now = time.monotonic()
                await self._on_keypad(self.keypad.poll(now))  # a pause ends a typed number
                if now - self._started_at >= tt.max_call_s:
                    await self._end_call("max_call_length", tt.max_call_message, tt.max_call_action)
                    return
                if tt.reprompt_after_s is None:
                    continue
                if (self.busy or call.speech.speaking() or call.segmenter.in_speech or not self.queue.empty()
                        or self.keypad.collecting):
                    self._quiet_since = now
                elif now - self._quiet_since >= tt.reprompt_after_s:
                    if self._reprompts >= tt.max_reprompts:
                        await self._end_call("caller_silent", tt.goodbye, tt.silence_action)
                        return
                    self._reprompts += 1
                    self.call.record("reprompt", count=self._reprompts, silent_s=round(now - self._quiet_since, 2))
                    await self.say(tt.reprompt, "reprompt")
                    self._quiet_since = time.monotonic()
        except EmotuneError as exc:
            logger.warning("call flow failed on call %s: %s", call.call_id, exc)
            call.record("call_flow_failed", error=str(exc))

    async def _end_call(self, reason: str, message: str, action: str) -> None:
        call = self.call
        logger.info("call %s: %s, %s", call.call_id, reason, action)
        if action == "handoff":
            await self.say(message, reason)
            summary = call.services.config.gateway.handoff_summaries.call_ended_summary(reason)
            await self.hand_off({"reason": reason, "summary": summary})
            return
        self.handoff_requested = True  # no more bot turns
        await self.say(message, reason)
        await call.speech.wait_for_playback()
        call.record("bot_hung_up", reason=reason)
        await call.flush(call.core.close(reason))

    def transcribe_early(self, audio: np.ndarray, sample_rate: int, pause: int) -> None:
        """The caller paused: recognise the turn so far now, so that if the pause ends the turn its
        words are ready. Only with a recognition slot free right now (``asr.turns_in_flight()``): a guess
        never queues for a slot ahead of another caller's finished turn. It may share a worker's batch
        with one, which makes that batch a little slower (a batch of 4 takes 2.4-2.9 turns' time)."""
        services = self.call.services
        slots = services.asr_slots
        if services.recognizer.name == "none" or self.handoff_requested or (slots is not None and slots.locked()):
            return

        async def guess() -> Transcript:
            async with slots or contextlib.nullcontext():
                resampled = resample(audio, sample_rate, SAMPLE_RATE)
                return await recognise(services.recognizer, resampled)

        task = asyncio.create_task(guess(), name=f"early-asr-{self.call.call_id}")
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # a failure is met again at the turn
        self._early[pause] = EarlyTranscript(pause, time.monotonic(), task)

    def _take_early(self, pending: Turn) -> EarlyTranscript | None:
        """The guess made in the pause that ended ``pending``, if any; guesses of earlier pauses are of
        speech that went on (or of turns already answered): forgotten, left to finish."""
        if pending.pause is None:
            return None
        early = self._early.pop(pending.pause, None)
        for pause in [p for p in self._early if p < pending.pause]:
            del self._early[pause]
        return early

    def put(self, turn: Turn) -> None:
        if self.call.draining:
            # Shutting down: only turns already queued are answered; a new one would be cut off.
            self.drop(turn, "gateway shutting down")
            return
        self._reprompts = 0  # the caller answered
        self._quiet_since = time.monotonic()
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
            self.busy = True
            try:
                await self._run(turn)
            except EmotuneError as exc:
                # One bad turn (e.g. TTS failure) must not end the call.
                logger.warning("turn failed on call %s: %s", self.call.call_id, exc)
                if self.call.services.metrics is not None:
                    self.call.services.metrics.errors_total.inc(f"turn_{type(exc).__name__}")
                self.call.record("turn_failed", error=str(exc))
            finally:
                self.busy = False
                self._quiet_since = time.monotonic()
                self.queue.task_done()

    async def _run(self, pending: Turn) -> None:
        call, services = self.call, self.call.services
        if self.handoff_requested or call.call_id is None:
            return
        self.count += 1
        turn = self.count
        start_s, end_s = pending.start_s, pending.end_s
        language: str | None = None  # set when the recogniser heard another language than the line's
        recognised, batch, queued_s = False, 1, 0.0  # how its recognition was served: batch size, wait for a worker
        if pending.text is not None:
            text, asr_s = pending.text.strip(), 0.0
        elif services.recognizer.name == "none":
            text, asr_s = "", 0.0  # the platform sends the caller's text; its audio is never transcribed
        else:
            transcript = await self._transcript(turn, pending)
            if transcript is None:
                return
            text, asr_s = transcript.text, transcript.compute_s
            recognised, batch, queued_s = True, transcript.batch_size, transcript.queued_s
            language = transcript.language if transcript.other_language else None
        words_wait_s = time.monotonic() - pending.ended_at  # the turn's end to its words: the caller waits
        if recognised and services.metrics is not None:
            services.metrics.words_wait.observe(words_wait_s)
            services.metrics.asr_queue.observe(queued_s)
            services.metrics.asr_batch_turns.observe(batch)
        if not text:
            call.record("turn_skipped", turn=turn, start_s=start_s, end_s=end_s, reason="no words recognised")
            return
        if pending.over_bot and pending.source == "speech" and self.is_backchannel(text):
            call.record("turn_skipped", turn=turn, start_s=start_s, end_s=end_s, reason="backchannel",
                        caller_text=text)
            return
        if pending.source == "speech":
            await self._hear_out_a_resumed_caller()
        if self.stale(pending) and pending.source == "speech":
            # The caller went on talking: this is the first part of their next turn.
            self._carried.append(text)
            call.record("turn_superseded", turn=turn, start_s=round(start_s, 3), end_s=round(end_s, 3),
                        caller_text=text, reason="the caller spoke again before the reply")
            return
        if language is not None and services.config.asr.other_language_reply:
            await self._other_language(turn, pending, text, language)
            return
        if self._carried and pending.source == "speech":
            text = " ".join([*self._carried, text])
        self._carried = []
        await call.after_send(call.core.send_transcript(text, "caller", True))
        metadata = call.metadata(start_s, end_s) if pending.text is None else call.metadata()
        reply = await services.rasa.send(call.conversation_id or call.call_id, text, metadata)
        # The bot asks for a number: keys typed from now on (even over the question) are its digits.
        if asked_step(reply.raw) in services.config.turn_taking.keypad.steps:
            self.keypad.arm()
        else:
            self.keypad.disarm()
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
            asr_batch=batch, asr_queued_s=round(queued_s, 3), words_wait_s=round(words_wait_s, 3),
            rasa_s=round(reply.latency_s, 3),
        )  # fmt: skip
        if reply.text and self.stale(pending) and reply.handoff is None:
            # Barge-in while Rasa answered: Rasa's tracker has the turn, the caller hears nothing of it.
            call.record("reply_dropped", turn=turn, bot_text=reply.text, reason="the caller spoke again")
        elif reply.text:
            await call.speech.speak(reply, tone, pending.ended_at, stale=lambda: self.stale(pending))
        handoff = reply.handoff
        self._fallbacks_in_a_row = self._fallbacks_in_a_row + 1 if reply.fallback else 0
        limit = services.config.rasa.handoff_after_fallbacks
        if handoff is None and limit and self._fallbacks_in_a_row >= limit:
            # The bot keeps failing this caller: a human takes over rather than more apologies.
            summaries = services.config.gateway.handoff_summaries
            handoff = {"reason": "dialogue_unavailable",
                       "summary": summaries.fallbacks_summary(self._fallbacks_in_a_row, reply.fallback_reason)}
        if handoff is not None:
            await self.hand_off(handoff)

    async def _transcript(self, turn: int, pending: Turn) -> Transcript | None:
        """The turn's words: the early transcript when the turn ended in its pause, else recognised
        now. None when the turn was shed (recognition backlog) or recognition failed (both answered)."""
        call, services = self.call, self.call.services
        early = self._take_early(pending)
        try:
            if early is not None:
                transcript = await early.task
                call.record("early_transcript_used", turn=turn, pause=early.pause,
                            saved_s=round(max(0.0, pending.ended_at - early.started_at), 3))  # fmt: skip
                return transcript
            assert pending.audio is not None
            slots = services.asr_slots or contextlib.nullcontext()
            # The deadline counts from when this turn could first be served: time spent behind the
            # same call's previous turn is not an ASR backlog.
            ready_at = time.monotonic()
            async with slots:
                waited_s = time.monotonic() - ready_at
                if waited_s > services.config.gateway.turn_deadline_s:
                    await self._shed(turn, pending, waited_s)
                    return None
                audio = resample(pending.audio, pending.sample_rate, SAMPLE_RATE)  # once per turn
                return await recognise(services.recognizer, audio)
        except SpeechEngineError as exc:
            await self._recognition_failed(turn, pending, exc)
            return None

    async def _hear_out_a_resumed_caller(self) -> None:
        """The caller began speaking again after this turn ended (a pause mid-sentence), not yet long
        enough to be an onset: wait for that decision rather than answer half a sentence. If they go
        on, the turn is stale and its words carried into the next; a click or a cough ends first
        and the turn is answered. Bounded by the onset time plus a margin."""
        call = self.call
        limit = time.monotonic() + call.services.config.turn_taking.barge_in_min_speech_s + 0.5
        while call.segmenter.in_speech and not call.ended and time.monotonic() < limit:
            await asyncio.sleep(0.02)

    async def _recognition_failed(self, turn: int, pending: Turn, exc: SpeechEngineError) -> None:
        """The recogniser failed or timed out: the caller is asked to repeat (never silence)."""
        call, gateway = self.call, self.call.services.config.gateway
        if call.services.metrics is not None:
            call.services.metrics.errors_total.inc("asr_failed")
        logger.warning("turn %d: speech recognition failed on call %s: %s", turn, call.call_id, exc)
        tone = call.services.config.tone_policy.default_tone
        call.record("asr_failed", turn=turn, start_s=round(pending.start_s, 3), end_s=round(pending.end_s, 3),
                    error=str(exc), bot_text=gateway.busy_reply)
        await call.speech.speak(BotReply(text=gateway.busy_reply, tone=tone), tone, pending.ended_at)

    async def _other_language(self, turn: int, pending: Turn, text: str, language: str) -> None:
        """A turn in one of ``asr.alternative_languages``: the bot speaks the line's language only, so
        it says so (``asr.other_language_reply``) instead of sending words its NLU cannot read."""
        call = self.call
        reply = call.services.config.asr.other_language_reply or ""
        tone = str(call.metadata(pending.start_s, pending.end_s)["tone"])
        call.record("turn_other_language", turn=turn, start_s=round(pending.start_s, 3),
                    end_s=round(pending.end_s, 3), language=language, caller_text=text, bot_text=reply, tone=tone)
        await call.speech.speak(BotReply(text=reply, tone=tone), tone, pending.ended_at)

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
        context = self._keep_context(handoff)
        try:
            messages = call.core.send_handoff(reason, summary, target, context)
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

    def _keep_context(self, handoff: Mapping[str, Any]) -> dict[str, Any]:
        """The context for the human (docs/handoff.md): the bot's ``custom.handoff``, or the gateway's
        own reason and summary when the gateway handed off. Kept for the agent desktop's lookup
        (``GET /v1/handoff/{call_id}``) and published as a ``handoff`` feed event, where the caller's
        words and numbers are redacted unless the operator opted in (as in every call file)."""
        call = self.call
        context = {**handoff, "conversation_id": handoff.get("conversation_id") or call.conversation_id}
        if call.call_id is not None:
            call.services.handoffs.put(call.call_id, call.protocol_name, context)
        shown = {k: call.private(v) if k in _PRIVATE_CONTEXT else v for k, v in context.items()}
        call.record("handoff", reason=str(context.get("reason", "escalation")), context=shown,
                    lookup=f"{HANDOFF_PATH}{call.call_id}", delivered=call.core.delivers_handoff_context)
        return context

    async def drain(self, limit_s: float) -> None:
        """Wait (at most ``limit_s``) until the turns already queued have been answered."""
        if self.worker is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), timeout=limit_s)

    async def finish(self, reason: str, limit_s: float) -> None:
        """Answer what is queued (within ``limit_s``), stop the worker, count what is left."""
        for prompt in list(self._prompts):
            prompt.cancel()
        if self.timer is not None:
            self.timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.timer
        if self.worker is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.queue.join(), timeout=limit_s)
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker
        # Turns the call ended before they were answered: never lost silently.
        while not self.queue.empty():
            self.drop(self.queue.get_nowait(), f"call ended ({reason}) before the turn was answered")
