"""Speech out: the bot's reply as audio in the protocol's format, marks, playback and barge-in.

TTS runs on a worker thread with the tone's prosody; the audio goes out in the format the protocol
announced for bot speech; a mark after it tells us when the peer has played it (until then the
bot is speaking, and caller speech is a barge-in that clears the peer's queued audio). A mark the
peer never acknowledges expires ``MARK_GRACE_S`` after the audio's expected end, so a lost mark
does not leave the bot "speaking" for good. A reply that went stale while it was synthesised (the
caller spoke again) is not sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from connectors.dialogue.rasa_client import BotReply
from connectors.protocols.base import AudioFormat
from connectors.speech.tts import Speech
from emotion_runtime.audio import encode as encode_audio

if TYPE_CHECKING:
    from connectors.gateway.call import CallPipeline

__all__ = ["MARK_GRACE_S", "SpeechOut"]

MARK_GRACE_S = 2.0  # a mark not acknowledged this long after its audio should have ended is lost


class SpeechOut:
    """One call's outgoing speech and what the peer has (not yet) played."""

    def __init__(self, call: CallPipeline) -> None:
        self.call = call
        self.marks: dict[str, float] = {}  # outstanding mark -> expected playback end (monotonic)
        self.playback_until = 0.0
        self._mark_counter = 0

    def speaking(self) -> bool:
        now = time.monotonic()
        if self.marks:
            lost = [name for name, until in self.marks.items() if now > until + MARK_GRACE_S]
            for name in lost:
                del self.marks[name]
                self.call.record("mark_lost", name=name)
        return bool(self.marks) or now < self.playback_until

    def mark_played(self, name: str) -> None:
        self.marks.pop(name, None)
        if not self.marks:
            self.playback_until = 0.0  # the peer's mark is the truth, not our estimate

    async def barge_in(self, at_s: float) -> None:
        """The caller talks over the bot: stop the bot's queued audio."""
        self.marks.clear()
        self.playback_until = 0.0
        self.call.record("barge_in", at=round(at_s, 3))
        await self.call.after_send(self.call.core.send_clear())

    async def speak(
        self, reply: BotReply, tone: str, turn_ended_at: float | None, stale: Callable[[], bool] | None = None
    ) -> None:
        """Synthesise and send one reply. ``turn_ended_at`` (monotonic) is when the caller's turn
        ended (None for the bot's own prompts: no turn latency); ``stale()`` true after synthesis
        drops the reply (the caller barged in meanwhile)."""
        call = self.call
        assert call.audio_format is not None
        policy = call.services.config.tone_policy
        prosody = policy.prosody.get(tone) or policy.prosody[policy.default_tone]
        speech: Speech = await asyncio.to_thread(call.services.synthesizer.synthesize, reply.text, prosody)
        if stale is not None and stale():
            call.record("reply_dropped", bot_text=reply.text, reason="the caller spoke again during synthesis")
            return
        # Bot speech goes out in the format the protocol announced for it (ours may differ from
        # the caller's input format); telephony plays back what it sends.
        out_format: AudioFormat = getattr(call.core, "output_audio", None) or call.audio_format
        if speech.samples.size == 0:  # tts.engine none: the client speaks the text itself
            await call.after_send(call.core.send_bot_reply(reply.text, tone, None, {"tone": tone}))
            if turn_ended_at is not None:
                self._observe_turn_latency(time.monotonic() - turn_ended_at)
            return
        await call.after_send(call.core.send_bot_reply(reply.text, tone, out_format, {"tone": tone}))
        wire = encode_audio(speech.at_rate(out_format.sample_rate).samples, out_format.encoding)
        response_s = time.monotonic() - turn_ended_at if turn_ended_at is not None else None
        await call.after_send(call.core.send_audio(wire, out_format.encoding, out_format.sample_rate))
        if response_s is not None:
            self._observe_turn_latency(response_s)
        self._mark_counter += 1
        mark = f"reply-{self._mark_counter}"
        now = time.monotonic()
        self.playback_until = max(now, self.playback_until) + speech.duration_s
        marks = call.core.send_mark(mark)
        if marks:
            self.marks[mark] = self.playback_until
        await call.after_send(marks)
        # response_s: end of the caller's turn (after the end-pointing silence) -> first bot audio.
        call.record("bot_audio", mark=mark, tone=tone, duration_s=round(speech.duration_s, 3),
                    response_s=round(response_s, 3) if response_s is not None else None,
                    tts_s=round(speech.compute_s, 3))

    def _observe_turn_latency(self, seconds: float) -> None:
        if self.call.services.metrics is not None:
            self.call.services.metrics.turn_latency.observe(seconds)

    async def wait_for_playback(self, limit_s: float = 20.0) -> None:
        deadline = time.monotonic() + limit_s
        while self.speaking() and time.monotonic() < deadline and not self.call.ended:
            await asyncio.sleep(0.05)
