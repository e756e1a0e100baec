"""The turn-taking VAD of every call, scored together per tick, off the event loop.

A call's caller audio is cut into VAD frames on the loop (:meth:`TurnSegmenter.take_frames`,
cheap); the frames wait here. Every ``turn_taking.vad_tick_ms`` a tick scores all waiting calls'
frames with :func:`connectors.gateway.turn_taking.score_silero` (one batched network run per frame
position instead of one per call and frame) in an executor thread, then, back on the loop, each
call's segmenter turns its scores into onsets and turn ends, delivered to the call in order.
One tick is in flight at a time. A call whose frames waited longer than
``turn_taking.vad_max_delay_s`` (the machine cannot keep up) loses the oldest ones, counted as
``emotune_errors_total{kind="vad_frames_dropped"}``: memory stays bounded and end-pointing resumes
on current audio instead of lagging further behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from connectors.gateway.metrics import GatewayMetrics
from connectors.gateway.ticker import Ticker
from connectors.gateway.turn_taking import SegmentEvent, SileroVad, TurnSegmenter, score_silero
from emotune.config import EmotuneConfig

__all__ = ["SegmentSink", "VadHub"]

logger = logging.getLogger(__name__)

# Called on the event loop with each onset / finished turn of one call, in order.
SegmentSink = Callable[[SegmentEvent], Awaitable[None]]


class _Stream:
    def __init__(self, segmenter: TurnSegmenter, sink: SegmentSink) -> None:
        self.segmenter = segmenter
        self.sink = sink
        self.waiting: list[tuple[float, np.ndarray]] = []  # (when queued, frames)
        self.delivery: asyncio.Task[None] | None = None
        self.closed = False


class VadHub:
    """Batched VAD for every call of one gateway. ``start()`` on the loop, ``stop()`` at the end."""

    def __init__(self, config: EmotuneConfig, metrics: GatewayMetrics | None = None) -> None:
        self.metrics = metrics
        self.max_delay_s = config.turn_taking.vad_max_delay_s
        self.frames_dropped = 0
        self._streams: dict[int, _Stream] = {}  # id(segmenter) -> stream
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="vad")
        self.ticker = Ticker("vad-hub", config.turn_taking.vad_tick_ms / 1000.0, self.tick, self._tick_failed)

    def start(self) -> None:
        self.ticker.start()

    async def stop(self) -> None:
        await self.ticker.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def feed(self, segmenter: TurnSegmenter, samples: np.ndarray, sink: SegmentSink) -> None:
        """Queue a call's caller samples; its segment events reach ``sink`` after a tick."""
        stream = self._streams.get(id(segmenter))
        if stream is None:
            stream = self._streams[id(segmenter)] = _Stream(segmenter, sink)
        frames = segmenter.take_frames(samples)
        if frames.shape[0]:
            stream.waiting.append((time.monotonic(), frames))

    async def drain(self, segmenter: TurnSegmenter) -> None:
        """Wait until the frames already fed for this segmenter have been scored and delivered."""
        stream = self._streams.get(id(segmenter))
        if stream is None:
            return
        await self.ticker.after_ticks(2)
        if stream.delivery is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(stream.delivery), timeout=2.0)

    def forget(self, segmenter: TurnSegmenter) -> None:
        stream = self._streams.pop(id(segmenter), None)
        if stream is not None:
            stream.closed = True

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    async def tick(self) -> None:
        now = time.monotonic()
        batch: list[tuple[_Stream, np.ndarray]] = []
        for stream in self._streams.values():
            if not stream.waiting:
                continue
            fresh = [frames for queued, frames in stream.waiting if now - queued <= self.max_delay_s]
            self._dropped(sum(f.shape[0] for _, f in stream.waiting) - sum(f.shape[0] for f in fresh))
            stream.waiting = []
            if fresh:
                batch.append((stream, np.concatenate(fresh)))
        if not batch:
            return
        pairs: list[tuple[SileroVad, np.ndarray]] = []
        for stream, frames in batch:
            vad = stream.segmenter.vad
            assert isinstance(vad, SileroVad)  # only batched segmenters are fed here
            pairs.append((vad, frames))
        loop = asyncio.get_running_loop()
        scores = await loop.run_in_executor(self._executor, score_silero, pairs)
        for (stream, frames), levels in zip(batch, scores, strict=True):
            if stream.closed:
                continue
            events = stream.segmenter.advance(frames, levels)
            if events:
                stream.delivery = loop.create_task(self._deliver(stream, events, stream.delivery))

    async def _deliver(self, stream: _Stream, events: list[SegmentEvent], previous: asyncio.Task[None] | None) -> None:
        if previous is not None and not previous.done():
            with contextlib.suppress(Exception):
                await previous
        for event in events:
            if stream.closed:
                return
            await stream.sink(event)

    def _dropped(self, n: int) -> None:
        if n <= 0:
            return
        self.frames_dropped += n
        if self.metrics is not None:
            self.metrics.errors_total.inc("vad_frames_dropped", amount=n)
        logger.warning("VAD frames dropped so far (late): %d", self.frames_dropped)

    def _tick_failed(self) -> None:
        if self.metrics is not None:
            self.metrics.errors_total.inc("vad_tick")
