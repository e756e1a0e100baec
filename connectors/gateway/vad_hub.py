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

The end-of-turn model (``turn_taking.end_of_turn: smart_turn``) runs here too, on its own thread so
VAD ticks never wait for it: a segmenter whose caller has paused ``short_silence_s`` leaves a
request (once per pause); each tick, if no model run is in flight, up to ``end_of_turn_batch``
waiting requests are scored in one run, and the answers go back to their segmenters on the loop
(a finished turn ends there and then). A request that waited longer than
``end_silence_s - short_silence_s`` is useless (the silence rule ends that pause first): it is
dropped and counted (``emotune_errors_total{kind="end_of_turn_dropped"}``); a failed run is counted
as ``end_of_turn_failed``. Either way the silence rule ends the turn: nothing waits on the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from connectors.gateway.end_of_turn import EndOfTurnRequest
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
        self.frames_dropped = 0  # VAD frames thrown away as late, since start
        self._streams: dict[int, _Stream] = {}  # id(segmenter) -> stream
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="vad")
        tt = config.turn_taking
        self.end_of_turn_batch = tt.end_of_turn_batch
        self.end_of_turn_max_wait_s = max(0.0, tt.end_silence_s - tt.short_silence_s)
        self.end_of_turn_dropped = 0  # end-of-turn requests thrown away as late
        self.end_of_turn_failed = 0
        self.end_of_turn_scored = 0
        self._eot_waiting: list[tuple[_Stream, EndOfTurnRequest, float]] = []
        self._eot_task: asyncio.Task[None] | None = None
        self._eot_executor = ThreadPoolExecutor(1, thread_name_prefix="end-of-turn")
        self.ticker = Ticker("vad-hub", config.turn_taking.vad_tick_ms / 1000.0, self.tick, self._tick_failed)

    def start(self) -> None:
        self.ticker.start()

    async def stop(self) -> None:
        await self.ticker.stop()
        if self._eot_task is not None:
            self._eot_task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._eot_executor.shutdown(wait=False, cancel_futures=True)

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

    @property
    def end_of_turn_in_flight(self) -> bool:
        """Whether an end-of-turn question is waiting for or being scored by the model."""
        return self._eot_task is not None or bool(self._eot_waiting)

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
        self._schedule_end_of_turn(now)
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
            request = stream.segmenter.take_end_of_turn_request()
            if request is not None:
                self._eot_waiting.append((stream, request, time.monotonic()))
        self._schedule_end_of_turn(time.monotonic())

    def _schedule_end_of_turn(self, now: float) -> None:
        """Start one end-of-turn model run over the oldest waiting requests, if none is in flight."""
        if self._eot_task is not None or not self._eot_waiting:
            return
        waiting = [item for item in self._eot_waiting if not item[0].closed]
        fresh = [item for item in waiting if now - item[2] <= self.end_of_turn_max_wait_s]
        self._eot_dropped(len(waiting) - len(fresh))
        items, self._eot_waiting = fresh[: self.end_of_turn_batch], fresh[self.end_of_turn_batch :]
        if items:
            self._eot_task = asyncio.get_running_loop().create_task(self._score_end_of_turn(items))

    async def _score_end_of_turn(self, items: list[tuple[_Stream, EndOfTurnRequest, float]]) -> None:
        loop = asyncio.get_running_loop()
        try:
            model = items[0][0].segmenter.end_of_turn_model
            assert model is not None  # only model-rule segmenters leave requests
            turns = [(request.audio, request.sample_rate) for _, request, _ in items]
            try:
                probabilities = await loop.run_in_executor(self._eot_executor, model.probabilities, turns)
            except Exception:  # noqa: BLE001 - the silence rule ends these pauses instead
                self.end_of_turn_failed += len(items)
                if self.metrics is not None:
                    self.metrics.errors_total.inc("end_of_turn_failed", amount=len(items))
                logger.exception("end-of-turn model failed on %d turns (the silence rule ends them)", len(items))
                return
            self.end_of_turn_scored += len(items)
            for (stream, request, _), probability in zip(items, probabilities, strict=True):
                if stream.closed:
                    continue
                events = stream.segmenter.end_of_turn_answer(request.pause, probability)
                if events:
                    stream.delivery = loop.create_task(self._deliver(stream, events, stream.delivery))
        finally:
            self._eot_task = None

    async def _deliver(self, stream: _Stream, events: list[SegmentEvent], previous: asyncio.Task[None] | None) -> None:
        if previous is not None and not previous.done():
            with contextlib.suppress(Exception):
                await previous
        for event in events:
            if stream.closed:
                return
            await stream.sink(event)

    def _dropped(self, n: int) -> None:
        if n > 0:
            self.frames_dropped += n
            self._report_drop("vad_frames_dropped", n, "VAD frames dropped so far (late): %d", self.frames_dropped)

    def _eot_dropped(self, n: int) -> None:
        if n > 0:
            self.end_of_turn_dropped += n
            self._report_drop("end_of_turn_dropped", n, "end-of-turn requests dropped so far "
                              "(late; the silence rule ended them): %d", self.end_of_turn_dropped)

    def _report_drop(self, kind: str, n: int, message: str, total: int) -> None:
        """``n`` more drops of ``kind`` into ``emotune_errors_total``; the log line shows the running ``total``."""
        if self.metrics is not None:
            self.metrics.errors_total.inc(kind, amount=n)
        logger.warning(message, total)

    def _tick_failed(self) -> None:
        if self.metrics is not None:
            self.metrics.errors_total.inc("vad_tick")
