"""Speech out: the bot's reply as audio in the protocol's format, marks, playback and barge-in.

TTS runs on a worker thread with the tone's prosody; the audio goes out in the format the protocol
announced for bot speech, sentence by sentence when the engine synthesises that way (Kokoro's
``synthesize_parts``: the first sentence is sent while the next is synthesised, so the caller's wait
is the first sentence's, and a barge-in stops the sentences not yet sent); a mark after it tells us when the peer has played it (until then the
bot is speaking, and caller speech is a barge-in that clears the peer's queued audio). A mark the
peer never acknowledges expires ``MARK_GRACE_S`` after the audio's expected end, so a lost mark
does not leave the bot "speaking" for good. A reply that went stale while it was synthesised (the
caller spoke again) is not sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

from connectors.dialogue.rasa_client import BotReply
from connectors.protocols.base import AudioFormat
from connectors.speech.tts import Speech
from emotion_runtime.audio import encode as encode_audio
from emotune.config import Prosody
from emotune.errors import AudioError

if TYPE_CHECKING:
    from connectors.gateway.call import CallPipeline

__all__ = ["MARK_GRACE_S", "SpeechOut"]

MARK_GRACE_S = 2.0  # a mark not acknowledged this long after its audio should have ended is lost

logger = logging.getLogger(__name__)


class SpeechOut:
    """One call's outgoing speech and what the peer has (not yet) played."""

    def __init__(self, call: CallPipeline) -> None:
        self.call = call
        self.marks: dict[str, float] = {}  # outstanding mark -> expected playback end (monotonic)
        self.playback_until = 0.0
        self._mark_counter = 0
        self._streaming = 0  # replies whose later sentences are still being synthesised and sent
        self._barge_ins = 0

    def speaking(self) -> bool:
        now = time.monotonic()
        if self.marks:
            lost = [name for name, until in self.marks.items() if now > until + MARK_GRACE_S]
            for name in lost:
                del self.marks[name]
                self.call.record("mark_lost", name=name)
        return bool(self.marks) or self._streaming > 0 or now < self.playback_until

    def mark_played(self, name: str) -> None:
        self.marks.pop(name, None)
        if not self.marks:
            self.playback_until = 0.0  # the peer's mark is the truth, not our estimate

    async def barge_in(self, at_s: float) -> None:
        """The caller talks over the bot: stop the bot's queued audio."""
        self.marks.clear()
        self.playback_until = 0.0
        self._barge_ins += 1  # a reply still streaming sends no more sentences
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
        parts = self._parts(reply.text, prosody)
        first = await asyncio.to_thread(next, parts, None)
        if first is None:  # an engine's empty iterator: nothing to say
            raise AudioError(f"the synthesiser gave no audio for {reply.text[:80]!r}")
        speech: Speech = first
        if stale is not None and stale():
            parts.close()
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
        response_s = time.monotonic() - turn_ended_at if turn_ended_at is not None else None
        await self._send_part(speech, out_format)
        if response_s is not None:
            self._observe_turn_latency(response_s)
        duration_s, tts_s, first_tts_s, sent, cut = speech.duration_s, speech.compute_s, speech.compute_s, 1, False
        barge_ins = self._barge_ins
        self._streaming += 1
        try:
            while (part := await asyncio.to_thread(next, parts, None)) is not None:
                if self._barge_ins != barge_ins or call.ended:
                    cut = True
                    break
                await self._send_part(part, out_format)
                duration_s, tts_s, sent = duration_s + part.duration_s, tts_s + part.compute_s, sent + 1
        except AudioError as exc:  # a later sentence failed: the caller heard the first ones
            logger.warning("tts failed after %d sentences of a reply: %s", sent, exc)
            cut = True
        finally:
            parts.close()
            self._streaming -= 1
        self._mark_counter += 1
        mark = f"reply-{self._mark_counter}"
        marks = [] if self._barge_ins != barge_ins else call.core.send_mark(mark)
        if marks:
            self.marks[mark] = self.playback_until
        await call.after_send(marks)
        # response_s: end of the caller's turn (after the end-pointing silence) -> first bot audio.
        call.record("bot_audio", mark=mark, tone=tone, duration_s=round(duration_s, 3),
                    response_s=round(response_s, 3) if response_s is not None else None,
                    tts_s=round(tts_s, 3), first_tts_s=round(first_tts_s, 3), parts=sent, cut=cut)

    def _parts(self, text: str, prosody: Prosody) -> Generator[Speech, None, None]:
        """The reply's audio as the engine gives it: sentence by sentence, or whole."""
        synthesizer = self.call.services.synthesizer
        stream = getattr(synthesizer, "synthesize_parts", None)
        if stream is not None:
            yield from stream(text, prosody)
        else:
            yield synthesizer.synthesize(text, prosody)

    async def _send_part(self, speech: Speech, out_format: AudioFormat) -> None:
        wire = encode_audio(speech.at_rate(out_format.sample_rate).samples, out_format.encoding)
        await self.call.after_send(self.call.core.send_audio(wire, out_format.encoding, out_format.sample_rate))
        self.playback_until = max(time.monotonic(), self.playback_until) + speech.duration_s

    def _observe_turn_latency(self, seconds: float) -> None:
        if self.call.services.metrics is not None:
            self.call.services.metrics.turn_latency.observe(seconds)

    async def wait_for_playback(self, limit_s: float = 20.0) -> None:
        deadline = time.monotonic() + limit_s
        while self.speaking() and time.monotonic() < deadline and not self.call.ended:
            await asyncio.sleep(0.05)
