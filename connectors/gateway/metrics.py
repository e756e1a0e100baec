"""Prometheus metrics for the gateway, written in the text exposition format (no client library),
and the event-loop lag probe that feeds one of them.

Why hand-written: the format is small and stable (version 0.0.4), and the streaming venv stays free
of another dependency. Counters and histograms here are updated from the single asyncio thread, so
no locks are needed.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "CONTENT_TYPE",
    "watch_loop_lag",
    "Counter",
    "Gauge",
    "GatewayMetrics",
    "Histogram",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS_S: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS_S: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 3, 4, 6, 8, 12, 16)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{name}="{_escape(value)}"' for name, value in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class Counter:
    name: str
    help: str
    label_names: tuple[str, ...] = ()
    values: dict[tuple[str, ...], float] = field(default_factory=dict)

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        if len(labels) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {labels}")
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        if not self.label_names and not self.values:
            yield f"{self.name} 0"
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, labels)} {_number(value)}"


@dataclass
class Gauge:
    name: str
    help: str
    value: float = 0.0

    def set(self, value: float) -> None:
        self.value = value

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        yield f"{self.name} {_number(self.value)}"


@dataclass
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...] = LATENCY_BUCKETS_S
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if list(self.buckets) != sorted(self.buckets):
            raise ValueError(f"{self.name}: buckets must be increasing")
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        self.count += 1
        self.total += value
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[index] += 1  # stored non-cumulative, summed at render

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for bound, cumulative in zip(self.buckets, self.counts, strict=True):
            yield f'{self.name}_bucket{{le="{_number(bound)}"}} {cumulative}'
        yield f'{self.name}_bucket{{le="+Inf"}} {self.count}'
        yield f"{self.name}_sum {_number(self.total)}"
        yield f"{self.name}_count {self.count}"


class GatewayMetrics:
    """Every metric the gateway exports; one instance per Gateway."""

    def __init__(self) -> None:
        self.active_calls = Gauge("emotune_active_calls", "Calls currently connected.")
        self.calls_total = Counter("emotune_calls_total", "Calls accepted, by protocol.", ("protocol",))
        self.refusals_total = Counter(
            "emotune_refusals_total", "Handshakes refused, by reason (auth, capacity, bad_path).", ("reason",)
        )
        self.errors_total = Counter("emotune_errors_total", "Errors during calls, by kind.", ("kind",))
        self.label_latency = Histogram(
            "emotune_label_latency_seconds", "Emotion window close to emotion event sent, seconds."
        )
        self.turn_latency = Histogram(
            "emotune_turn_latency_seconds", "Caller turn end to first bot audio (or reply), seconds."
        )
        # Where a turn's wait for its words goes: recognition queue, batching, decoding.
        self.words_wait = Histogram(
            "emotune_asr_words_wait_seconds",
            "Caller turn end to its recognised words (an early transcript may be ready before), seconds.",
        )
        self.asr_queue = Histogram(
            "emotune_asr_queue_seconds", "Turn given to the recogniser until a worker took it, seconds."
        )
        self.asr_batch_turns = Histogram(
            "emotune_asr_batch_turns", "Turns decoded in one batch with each recognised turn (itself included).",
            buckets=BATCH_BUCKETS,
        )
        self.rasa_fallbacks_total = Counter(
            "emotune_rasa_fallbacks_total", "Bot turns answered with the fallback reply (Rasa unreachable)."
        )
        self.emotion_windows_dropped_total = Counter(
            "emotune_emotion_windows_dropped_total",
            "Emotion windows never scored, by reason (late: waited past gateway.emotion_max_delay_s; "
            "overflow: beyond the queue bound).",
            ("reason",),
        )
        self.event_loop_lag = Histogram(
            "emotune_event_loop_lag_seconds",
            "How late the event loop ran a timer it was asked to run (sampled every 50 ms), seconds.",
            buckets=LAG_BUCKETS_S,
        )

    def render(self) -> str:
        lines: list[str] = []
        for metric in (
            self.active_calls, self.calls_total, self.refusals_total, self.errors_total,
            self.label_latency, self.turn_latency, self.words_wait, self.asr_queue, self.asr_batch_turns,
            self.rasa_fallbacks_total,
            self.emotion_windows_dropped_total, self.event_loop_lag,
        ):
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


async def watch_loop_lag(histogram: Histogram, interval_s: float = 0.05) -> None:
    """Until cancelled: sleep ``interval_s`` and record how much later than asked the loop woke us.

    Anything that blocks the loop (synchronous inference, file writes, a slow callback) shows up
    here first, before it shows up as late emotion events or turns."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time() + interval_s
        await asyncio.sleep(interval_s)
        histogram.observe(max(0.0, loop.time() - asked))
