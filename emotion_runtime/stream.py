"""A tiny stateful object per audio stream: 20 ms frames in, smoothed emotion events out.

Per frame: decode (PCM16 or mu-law) -> resample to 16 kHz -> energy VAD -> log-mel frames appended
to a ring buffer (features are computed once per incoming frame, never again per overlapping
window). Every ``hop_s`` a window of ``window_s`` is due; it is scored only if enough of it was
voiced, so silence and hold music cost nothing. Scores are smoothed (EMA + hysteresis) so a steady
speaker does not flicker between labels.

:class:`EmotionStream` scores its own windows in :meth:`EmotionStream.push`; a :class:`StreamHub`
instead collects the windows due across many streams and scores them in one batched call. Audio
goes in as wire frames (:meth:`EmotionStream.feed`, exact 20 ms of PCM16 or mu-law) or as float
samples of any length at the stream's rate (:meth:`EmotionStream.feed_samples`), never re-quantised.
The hub's queue is bounded: a window that waited longer than ``max_delay_s`` to be scored is
dropped and counted (a late label is worse than none), as is the oldest beyond ``max_pending``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from emotion_runtime.audio import (
    MODEL_RATE,
    SUPPORTED_RATES,
    StreamingResampler,
    energy_db,
    mulaw_decode,
    pcm16_decode,
)
from emotion_runtime.model import EmotionModel, Prediction
from emotune.config import SmoothingConfig, StreamingConfig
from emotune.errors import FrameError, SampleRateError, SidecarError

__all__ = ["EmotionEvent", "EmotionStream", "PendingWindow", "StreamHub", "Encoding"]

Encoding = Literal["pcm16", "mulaw"]
_BYTES_PER_SAMPLE = {"pcm16": 2, "mulaw": 1}


@dataclass(frozen=True)
class EmotionEvent:
    """One smoothed emotion label for the window ``[start_s, end_s)`` of the stream."""

    label: str
    probabilities: dict[str, float]
    arousal: float
    valence: float
    confidence: float
    start_s: float
    end_s: float
    voiced_ratio: float
    raw_label: str  # this window's own top class, before smoothing
    # This window's own (calibrated) probabilities, before smoothing: what a turn aggregates.
    window_probabilities: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        data.update(self.extra)
        return data


@dataclass(frozen=True)
class PendingWindow:
    """A window whose features are ready and that waits to be scored."""

    stream: EmotionStream
    feats: np.ndarray  # [frames, n_mels]
    start_s: float
    end_s: float
    voiced_ratio: float
    due_at: float = field(default_factory=time.monotonic)  # when the frame that closed it arrived


class EmotionStream:
    """One audio stream. Not thread-safe on its own: feed it from one thread (the SDK locks)."""

    def __init__(
        self,
        model: EmotionModel,
        streaming: StreamingConfig | None = None,
        smoothing: SmoothingConfig | None = None,
        *,
        encoding: Encoding = "pcm16",
        sample_rate: int = 16000,
        frame_ms: int = 20,
        labels: list[str] | None = None,
    ) -> None:
        if encoding not in _BYTES_PER_SAMPLE:
            raise FrameError(f"unsupported encoding {encoding!r}; use 'pcm16' or 'mulaw'")
        if sample_rate not in SUPPORTED_RATES:
            raise SampleRateError(
                f"unsupported sample rate {sample_rate} Hz; supported: {', '.join(map(str, SUPPORTED_RATES))}"
            )
        if encoding == "mulaw" and sample_rate != 8000:
            raise SampleRateError(f"mu-law audio is 8000 Hz telephony; got {sample_rate} Hz")
        if frame_ms not in (10, 20, 30, 40):
            raise FrameError(f"frame_ms must be 10, 20, 30 or 40, got {frame_ms}")
        self.model = model
        self.streaming = streaming or StreamingConfig()
        self.smoothing = smoothing or SmoothingConfig()
        limits = model.sidecar.get("window_s")
        if isinstance(limits, dict) and not limits.get("min", 0) - 1e-9 <= self.streaming.window_s <= limits.get("max", 1e9) + 1e-9:
            raise SidecarError(
                f"streaming.window_s {self.streaming.window_s:g} s is outside what {model.path.parent.name} was "
                f"trained for ({limits.get('min'):g}-{limits.get('max'):g} s)"
            )
        self.encoding: Encoding = encoding
        self.sample_rate = sample_rate
        self.frame_bytes = sample_rate * frame_ms // 1000 * _BYTES_PER_SAMPLE[encoding]
        spec = model.fbank_spec
        self._frames_per_s = spec.sample_rate / spec.hop_length
        self._window = spec.frames_for(int(round(self.streaming.window_s * spec.sample_rate)))
        self._samples_per_frame = sample_rate * frame_ms // 1000
        self._window_in = int(round(self.streaming.window_s * sample_rate))
        self._hop_in = int(round(self.streaming.hop_s * sample_rate))
        self._labels = [label for label in (labels or model.labels) if label in model.labels]
        if len(self._labels) < 2:
            raise ValueError(f"labels {labels} must name at least two classes of {model.labels}")
        self._label_index = [model.labels.index(label) for label in self._labels]
        self._decode = mulaw_decode if encoding == "mulaw" else pcm16_decode
        self._resampler = StreamingResampler(sample_rate, MODEL_RATE)
        self._fbank = model.streaming_features()
        self.reset()

    # -- state ---------------------------------------------------------------------------------
    _pending: list[np.ndarray]
    _vad_blocks: list[bool]

    def reset(self) -> None:
        """Forget all audio and smoothing state (a new call on the same object)."""
        self._resampler.reset()
        self._fbank.reset()
        # v2 models adapt to the call: their per-call statistics start afresh with the stream.
        self.call_state = self.model.new_call_state()
        capacity = self._window * 2
        self._feats = np.zeros((capacity, self.model.fbank_spec.n_mels), dtype=np.float32)
        self._voiced = np.zeros(capacity, dtype=bool)
        self._filled = 0  # valid rows at the front of the ring buffer
        self._total_frames = 0  # feature frames since the start of the stream
        self._pending = []  # decoded samples not yet analysed
        self._input_samples = 0
        self._next_due = self._window_in  # in input samples
        self._vad_rest = np.zeros(0, dtype=np.float32)
        self._vad_blocks = []  # voiced flag per 10 ms block, aligned with feature rows
        self._smoothed: np.ndarray | None = None
        self._arousal = 0.0
        self._valence = 0.0
        self._label: str | None = None

    @property
    def current_label(self) -> str | None:
        return self._label

    # -- input -----------------------------------------------------------------------------------
    def _check(self, frame: object) -> bytes:
        if not isinstance(frame, bytes | bytearray | memoryview):
            raise FrameError(f"a frame must be bytes, got {type(frame).__name__}")
        data = bytes(frame)
        if len(data) != self.frame_bytes:
            raise FrameError(
                f"{self.encoding} frame at {self.sample_rate} Hz must be {self.frame_bytes} bytes, got {len(data)}"
            )
        return data

    def feed(self, frame: bytes) -> PendingWindow | None:
        """Take one frame; returns the window that became due, if any (not yet scored).

        Frames are only queued until a window is due (every ``hop_s``); then the queued audio is
        decoded, resampled and turned into features in one vectorised pass. Each sample's
        features are still computed exactly once, and per-frame Python overhead stays tiny,
        which is what lets one core serve hundreds of streams.
        """
        self._pending.append(self._decode(self._check(frame)))
        self._input_samples += self._samples_per_frame
        if self._input_samples < self._next_due:
            return None
        return self._close_window()

    def feed_samples(self, samples: np.ndarray) -> list[PendingWindow]:
        """Take float32 samples in [-1, 1] at the stream's ``sample_rate``, any length; returns the
        windows that became due (usually none or one; more if the chunk spans several hops)."""
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim != 1:
            raise FrameError(f"samples must be one channel (1-D), got shape {x.shape}")
        windows: list[PendingWindow] = []
        while x.shape[0]:
            take = min(x.shape[0], self._next_due - self._input_samples)
            self._pending.append(x[:take])
            self._input_samples += take
            x = x[take:]
            if self._input_samples >= self._next_due:
                window = self._close_window()
                if window is not None:
                    windows.append(window)
        return windows

    def _close_window(self) -> PendingWindow | None:
        self._next_due += self._hop_in
        self._analyse_pending()
        if self._filled < self._window:
            return None
        window = self._feats[self._filled - self._window : self._filled]
        voiced_ratio = float(self._voiced[self._filled - self._window : self._filled].mean())
        if voiced_ratio < self.streaming.min_voiced_ratio:
            return None
        spec = self.model.fbank_spec
        # Row i covers samples [i*hop, i*hop + win): report the span of audio the window saw.
        start_s = (self._total_frames - self._window) * spec.hop_length / spec.sample_rate
        end_s = ((self._total_frames - 1) * spec.hop_length + spec.win_length) / spec.sample_rate
        return PendingWindow(self, window.copy(), start_s, end_s, voiced_ratio)

    def _analyse_pending(self) -> None:
        samples = self._resampler.process(np.concatenate(self._pending) if self._pending else np.zeros(0, np.float32))
        self._pending.clear()
        hop = self.model.fbank_spec.hop_length
        # Energy VAD per 10 ms block (one block per feature row, aligned from the stream start).
        blocks = np.concatenate([self._vad_rest, samples])
        n_blocks = blocks.shape[0] // hop
        self._vad_rest = blocks[n_blocks * hop :]
        level = energy_db(blocks[: n_blocks * hop].reshape(n_blocks, hop))
        self._vad_blocks.extend((level >= self.streaming.vad_threshold_db).tolist())
        rows = self._fbank.push(samples)
        if rows.shape[0]:
            flags = np.array(self._vad_blocks[: rows.shape[0]], dtype=bool)
            del self._vad_blocks[: rows.shape[0]]
            self._append(rows, flags)

    def _append(self, rows: np.ndarray, voiced: np.ndarray) -> None:
        self._total_frames += rows.shape[0]
        rows, voiced = rows[-self._window :], voiced[-self._window :]
        n = rows.shape[0]
        if self._filled + n > self._feats.shape[0]:
            # Keep only what the next window needs; the buffer holds two windows, so this copy
            # happens about once per window length, not per frame.
            keep = min(self._window - n, self._filled)
            self._feats[:keep] = self._feats[self._filled - keep : self._filled]
            self._voiced[:keep] = self._voiced[self._filled - keep : self._filled]
            self._filled = keep
        self._feats[self._filled : self._filled + n] = rows
        self._voiced[self._filled : self._filled + n] = voiced
        self._filled += n

    # -- output ----------------------------------------------------------------------------------
    def complete(self, window: PendingWindow, probabilities: np.ndarray, arousal: float, valence: float) -> EmotionEvent:
        """Smooth one scored window into an event (probabilities in the model's class order)."""
        shown = probabilities[self._label_index]
        shown = shown / max(float(shown.sum()), 1e-9)
        alpha = self.smoothing.ema_alpha
        if self._smoothed is None:
            self._smoothed, self._arousal, self._valence = shown, arousal, valence
        else:
            self._smoothed = alpha * shown + (1 - alpha) * self._smoothed
            self._arousal = alpha * arousal + (1 - alpha) * self._arousal
            self._valence = alpha * valence + (1 - alpha) * self._valence
        smoothed = self._smoothed
        best = int(np.argmax(smoothed))
        candidate = self._labels[best]
        if self._label is None or candidate == self._label:
            self._label = candidate
        elif self._label in self._labels:
            current = float(smoothed[self._labels.index(self._label)])
            if float(smoothed[best]) >= current + self.smoothing.hysteresis:
                self._label = candidate
        label = self._label
        confidence = float(smoothed[self._labels.index(label)])
        if confidence < self.smoothing.min_confidence and "neutral" in self._labels:
            # No emotion is clear: call it neutral, as sure as the leading emotion is unsure.
            label, confidence = "neutral", 1.0 - float(smoothed.max())
        return EmotionEvent(
            label=label,
            probabilities={name: round(float(p), 4) for name, p in zip(self._labels, smoothed, strict=True)},
            arousal=round(float(self._arousal), 4),
            valence=round(float(self._valence), 4),
            confidence=round(confidence, 4),
            start_s=round(window.start_s, 3),
            end_s=round(window.end_s, 3),
            voiced_ratio=round(window.voiced_ratio, 3),
            raw_label=self._labels[int(np.argmax(shown))],
            window_probabilities={name: round(float(p), 4) for name, p in zip(self._labels, shown, strict=True)},
        )

    def push(self, frame: bytes) -> list[EmotionEvent]:
        """Take one frame and score the window it completed here (single-stream use)."""
        window = self.feed(frame)
        if window is None:
            return []
        prediction = self.model.predict(window.feats[None], [self.call_state])
        return [self.complete(window, prediction.probabilities[0], float(prediction.arousal[0]), float(prediction.valence[0]))]


class StreamHub:
    """Many streams, one model: audio goes in per stream; due windows are scored in batches.

    ``feed``/``feed_samples`` only compute features and queue the window that became due;
    ``flush()`` scores every queued window in one onnxruntime call (per window length) and returns
    the events. A server calls ``flush()`` once per tick (e.g. every 20-100 ms), or splits the work
    itself: ``take_due()`` then ``score(windows)`` on worker threads (``score`` is thread-safe as
    long as one stream's windows stay in one call, in order). Feeding is thread-safe.

    Bounded: at most ``max_pending`` windows wait (the oldest beyond are dropped, counted in
    ``dropped_overflow``), and ``take_due`` drops windows that have waited more than
    ``max_delay_s`` since their closing frame arrived (``dropped_late``).
    """

    def __init__(
        self, model: EmotionModel, max_batch: int = 64, *, max_pending: int = 4096, max_delay_s: float | None = None
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        if max_delay_s is not None and max_delay_s <= 0:
            raise ValueError(f"max_delay_s must be > 0, got {max_delay_s}")
        self.model = model
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.max_delay_s = max_delay_s
        self.dropped_late = 0
        self.dropped_overflow = 0
        self._pending: list[PendingWindow] = []
        self._lock = threading.Lock()

    def feed(self, stream: EmotionStream, frame: bytes) -> None:
        """One wire frame of ``stream`` (see :meth:`EmotionStream.feed`)."""
        window = stream.feed(frame)
        if window is not None:
            self._queue((window,))

    def feed_samples(self, stream: EmotionStream, samples: np.ndarray) -> None:
        """Float samples of ``stream`` (see :meth:`EmotionStream.feed_samples`)."""
        windows = stream.feed_samples(samples)
        if windows:
            self._queue(windows)

    def _queue(self, windows: Iterable[PendingWindow]) -> None:
        with self._lock:
            self._pending.extend(windows)
            excess = len(self._pending) - self.max_pending
            if excess > 0:
                del self._pending[:excess]
                self.dropped_overflow += excess

    def discard(self, stream: EmotionStream) -> int:
        """Forget the queued windows of a stream that ended; returns how many."""
        with self._lock:
            kept = [w for w in self._pending if w.stream is not stream]
            dropped = len(self._pending) - len(kept)
            self._pending = kept
        return dropped

    @property
    def pending(self) -> int:
        return len(self._pending)

    def take_due(self, now: float | None = None) -> list[PendingWindow]:
        """Everything queued, oldest first, minus the windows that are already too late."""
        with self._lock:
            pending, self._pending = self._pending, []
        if self.max_delay_s is None or not pending:
            return pending
        limit = (time.monotonic() if now is None else now) - self.max_delay_s
        fresh = [w for w in pending if w.due_at >= limit]
        with self._lock:
            self.dropped_late += len(pending) - len(fresh)
        return fresh

    def score(self, windows: list[PendingWindow]) -> list[tuple[EmotionStream, EmotionEvent]]:
        """Score windows in batches and smooth each into its stream's event (input order kept)."""
        events: list[tuple[EmotionStream, EmotionEvent]] = []
        by_length: dict[int, list[PendingWindow]] = {}
        for window in windows:
            by_length.setdefault(window.feats.shape[0], []).append(window)
        for group in by_length.values():
            for start in range(0, len(group), self.max_batch):
                batch = group[start : start + self.max_batch]
                prediction: Prediction = self.model.predict(
                    np.stack([w.feats for w in batch]), [w.stream.call_state for w in batch]
                )
                for i, window in enumerate(batch):
                    event = window.stream.complete(
                        window, prediction.probabilities[i], float(prediction.arousal[i]), float(prediction.valence[i])
                    )
                    events.append((window.stream, event))
        return events

    def flush(self) -> list[tuple[EmotionStream, EmotionEvent]]:
        """Score every window due since the last flush (single-threaded use)."""
        return self.score(self.take_due())
