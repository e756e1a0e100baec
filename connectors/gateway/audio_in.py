"""Audio in: one party's wire frames -> float samples -> emotion channel, turn-taking, recording.

Decoding is the runtime's (:mod:`emotion_runtime.audio`). The samples stay at the call's own
rate: the emotion stream resamples in one vectorised pass per hop and the turn's audio is
resampled for the recogniser once per turn, so nothing is resampled 50 times a second. The float
samples go to the emotion channel as they are (no re-quantisation); its events come back
asynchronously, from the shared hub, to :meth:`CallPipeline.on_emotion`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connectors.gateway.call_log import Recording
from connectors.gateway.emotion import EmotionChannel
from connectors.protocols.base import AudioReceived
from emotion_runtime.audio import StreamingResampler
from emotion_runtime.audio import decode as decode_audio

if TYPE_CHECKING:
    from connectors.gateway.call import CallPipeline

__all__ = ["HISTORY_EVENTS", "Party", "AudioIn"]

# Emotion events a party keeps in memory (a ring): enough for any turn's lookup; the call log on
# disk has them all.
HISTORY_EVENTS = 64


@dataclass
class Party:
    """One audio channel of a call (the caller; AudioHook also the agent)."""

    name: str
    emotion: EmotionChannel
    sample_rate: int
    samples_seen: int = 0
    latest: dict[str, Any] | None = None
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY_EVENTS))
    events: int = 0
    recording: Recording | None = None  # written as audio arrives (off the loop)
    resampler: StreamingResampler | None = None  # only if a frame's rate differs from the call's


class AudioIn:
    """Routes each party's audio of one call."""

    def __init__(self, call: CallPipeline) -> None:
        self.call = call

    async def on_audio(self, event: AudioReceived) -> None:
        call = self.call
        party = call.parties.get(event.channel)
        if party is None:
            return  # audio before start is refused by the cores; unknown channels are ignored
        samples = decode_audio(event.payload, event.encoding)
        if event.sample_rate != party.sample_rate:
            if party.resampler is None or party.resampler.from_rate != event.sample_rate:
                # Stateful: resampling frames one by one would click at every edge.
                party.resampler = StreamingResampler(event.sample_rate, party.sample_rate)
            samples = party.resampler.process(samples)
        party.samples_seen += samples.shape[0]
        if party.recording is not None:
            party.recording.write(samples)
        party.emotion.feed(samples)
        if call.dialogue and party.name == "caller" and not call.turns.handoff_requested:
            hub = call.services.vad_hub
            if hub is not None and call.segmenter.batched:
                hub.feed(call.segmenter, samples, call.on_segment)  # scored with every call's frames
            else:
                for segment in call.segmenter.push(samples):
                    await call.on_segment(segment)

    def open_recordings(self) -> None:
        call = self.call
        directory = call.services.recordings_dir or call.services.log_dir
        if not call.services.config.gateway.record_audio or directory is None or call.log is None:
            return
        stem = call.log.path.stem if call.log.path is not None else "call"
        for party in call.parties.values():
            path = directory / f"{stem}.{party.name}.flac"
            party.recording = Recording(path, party.sample_rate)
            call.record("recording_started", party=party.name, path=str(path))
