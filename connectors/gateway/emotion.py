"""The gateway's emotion path: every call's audio into one shared hub, scored in batches off the loop.

Each call party gets a channel from :meth:`EmotionService.open`. ``channel.feed(samples)`` takes
float samples of any length at the party's rate (decoded by the call, never re-quantised; the
stream resamples to the model's rate in one pass per hop) and computes features on the event loop, which is cheap: one vectorised pass per
hop. Windows that become due wait in one :class:`emotion_runtime.StreamHub` for all calls. Every
``gateway.emotion_tick_ms`` a tick takes them all, splits them by stream over
``gateway.inference_threads`` executor threads (onnxruntime releases the GIL, so the threads run
in parallel) and hands each event back on the loop to its call. One tick's scoring is in flight
at a time; windows that waited longer than ``gateway.emotion_max_delay_s`` are dropped and counted
(``emotune_emotion_windows_dropped_total``), as are windows beyond the hub's bound.

The service talks to the runtime only through its public API (``EmotionModel``, ``EmotionStream``,
``StreamHub``), so any model family behind that API drops in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from connectors.gateway.metrics import GatewayMetrics
from connectors.gateway.ticker import Ticker
from emotion_runtime import EmotionEvent, EmotionModel, EmotionStream, PendingWindow, StreamHub
from emotune.config import EmotuneConfig

__all__ = ["EmotionChannel", "EmotionFactory", "EmotionService", "EventSink", "usable_cores"]

logger = logging.getLogger(__name__)

# Called on the event loop with one CONTRACTS.md emotion event and when its window became due.
EventSink = Callable[[dict[str, Any], float], Awaitable[None]]


class EmotionChannel(Protocol):
    """One party's audio towards emotion labels."""

    def feed(self, samples: np.ndarray) -> None: ...

    async def drain(self) -> None:
        """Wait until the windows already fed have been delivered (the call is ending)."""
        ...

    def close(self) -> None: ...


EmotionFactory = Callable[[EventSink, int], EmotionChannel]  # (sink, the party's sample rate)


def usable_cores() -> int:
    """Cores this process may run on (``taskset`` and cgroups' cpusets narrow it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class _Channel:
    def __init__(self, service: EmotionService, stream: EmotionStream, sink: EventSink) -> None:
        self._service = service
        self.stream = stream
        self.sink = sink
        self.closed = False
        self.delivery: asyncio.Task[None] | None = None  # this party's events go out in order

    def feed(self, samples: np.ndarray) -> None:
        if not self.closed:
            self._service.hub.feed_samples(self.stream, samples)

    async def drain(self) -> None:
        if not self.closed:
            await self._service.after_ticks(2)
            if self.delivery is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(self.delivery), timeout=2.0)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._service.forget(self)


class EmotionService:
    """The shared hub, its executor and the tick task. ``start()`` on the loop, ``stop()`` at the end."""

    def __init__(
        self, model: EmotionModel, config: EmotuneConfig, metrics: GatewayMetrics | None = None
    ) -> None:
        gateway = config.gateway
        self.model = model
        self.config = config
        self.metrics = metrics
        self.threads = gateway.inference_threads or usable_cores()
        self.tick_s = gateway.emotion_tick_ms / 1000.0
        self.hub = StreamHub(model, max_pending=max(64, 8 * gateway.max_calls), max_delay_s=gateway.emotion_max_delay_s)
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="emotion")
        self._channels: dict[int, _Channel] = {}  # id(stream) -> channel
        self._reported = (0, 0)  # hub drop counters already added to the metrics
        self.ticker = Ticker("emotion-hub", self.tick_s, self.tick, self._tick_failed)

    @classmethod
    def from_config(cls, config: EmotuneConfig, metrics: GatewayMetrics | None = None) -> EmotionService:
        model = EmotionModel.load(
            config.model_path(), config.sidecar_path(), intra_op_threads=config.model.intra_op_threads
        )
        return cls(model, config, metrics)

    # -- channels ------------------------------------------------------------------------------
    def open(self, sink: EventSink, sample_rate: int) -> EmotionChannel:
        stream = EmotionStream(
            self.model,
            streaming=self.config.streaming,
            smoothing=self.config.smoothing,
            encoding="pcm16",
            sample_rate=sample_rate,
            labels=self.config.model.labels,
        )
        channel = _Channel(self, stream, sink)
        self._channels[id(stream)] = channel
        return channel

    def forget(self, channel: _Channel) -> None:
        self._channels.pop(id(channel.stream), None)
        self.hub.discard(channel.stream)

    @property
    def open_channels(self) -> int:
        return len(self._channels)

    # -- the tick --------------------------------------------------------------------------------
    def start(self) -> None:
        self.ticker.start()

    async def stop(self) -> None:
        await self.ticker.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def after_ticks(self, n: int, timeout_s: float = 2.0) -> None:
        """Wait until ``n`` more ticks have completed (at most ``timeout_s``; not at all if stopped)."""
        await self.ticker.after_ticks(n, timeout_s)

    def _tick_failed(self) -> None:
        if self.metrics is not None:
            self.metrics.errors_total.inc("emotion_tick")

    async def tick(self) -> int:
        """Score every due window once; returns how many events went out."""
        windows = self.hub.take_due()
        self._count_drops()
        if not windows:
            return 0
        loop = asyncio.get_running_loop()
        chunks = _split_by_stream(windows, self.threads)
        results = await asyncio.gather(
            *(loop.run_in_executor(self._executor, self.hub.score, chunk) for chunk in chunks)
        )
        due: dict[int, list[float]] = {}
        for window in windows:
            due.setdefault(id(window.stream), []).append(window.due_at)
        by_channel: dict[int, list[tuple[EmotionEvent, float]]] = {}
        for events in results:
            for stream, event in events:
                by_channel.setdefault(id(stream), []).append((event, due[id(stream)].pop(0)))
        sent = 0
        for key, items in by_channel.items():
            channel = self._channels.get(key)
            if channel is None or channel.closed:
                continue  # the call ended while its window was being scored
            channel.delivery = loop.create_task(self._deliver(channel, items, channel.delivery))
            sent += len(items)
        return sent

    async def _deliver(
        self, channel: _Channel, items: list[tuple[EmotionEvent, float]], previous: asyncio.Task[None] | None
    ) -> None:
        if previous is not None and not previous.done():
            with contextlib.suppress(Exception):
                await previous
        for event, due_at in items:
            if channel.closed:
                return
            try:
                await channel.sink(event.to_dict(), due_at)
            except Exception as exc:  # noqa: BLE001 - e.g. the peer hung up mid-send: its call ends anyway
                logger.debug("emotion event not delivered: %s", exc)
                return
            if self.metrics is not None:
                self.metrics.label_latency.observe(time.monotonic() - due_at)

    def _count_drops(self) -> None:
        late, overflow = self.hub.dropped_late, self.hub.dropped_overflow
        if self.metrics is not None and (late, overflow) != self._reported:
            self.metrics.emotion_windows_dropped_total.inc("late", amount=late - self._reported[0])
            self.metrics.emotion_windows_dropped_total.inc("overflow", amount=overflow - self._reported[1])
        if (late, overflow) != self._reported:
            logger.warning("emotion windows dropped so far: %d late, %d over the queue bound", late, overflow)
        self._reported = (late, overflow)


def _split_by_stream(windows: list[PendingWindow], parts: int) -> list[list[PendingWindow]]:
    """Up to ``parts`` chunks of similar size; one stream's windows stay together and in order."""
    by_stream: dict[int, list[PendingWindow]] = {}
    for window in windows:
        by_stream.setdefault(id(window.stream), []).append(window)
    groups = list(by_stream.values())
    parts = max(1, min(parts, len(groups)))
    chunks: list[list[PendingWindow]] = [[] for _ in range(parts)]
    for i, group in enumerate(groups):
        chunks[i % parts].extend(group)
    return chunks
