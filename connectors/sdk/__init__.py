"""Embeddable emotion SDK for an in-car unit or any Python app: in-process, no server, no torch.

    from connectors.sdk import EmotionSDK

    sdk = EmotionSDK.open()                       # shipped model, config.yml defaults
    with sdk.session(encoding="pcm16", sample_rate=16000) as session:
        session.on_event(lambda event: print(event.label, event.confidence))
        for frame in frames_of_20_ms:               # bytes, 640 bytes at 16 kHz PCM16
            session.feed(frame)

One :class:`EmotionSDK` holds one onnxruntime session (one intra-op thread by default) shared by all
its sessions; each :class:`EmotionSession` is one audio stream (a seat microphone, a call leg).
Sessions are thread-safe: ``feed`` may be called from an audio thread while another thread reads
events. Events arrive by callback, by the return value of ``feed``, or by ``async for`` over
:meth:`EmotionSession.events`. Dialogue is optional: :meth:`EmotionSession.say` sends a text turn
with the latest emotion to a Rasa server and returns the replies with their tone.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from connectors.dialogue.rasa_client import BotReply, RasaSyncClient
from emotion_runtime import EmotionEvent, EmotionModel, EmotionStream
from emotion_runtime.stream import Encoding
from emotune.config import EmotuneConfig, load_config
from emotune.errors import ConfigError, DialogueError, EmotuneError, RasaUnavailableError

__all__ = ["EmotionSDK", "EmotionSession", "BotReply", "EmotionEvent"]

EventCallback = Callable[[EmotionEvent], None]


class EmotionSession:
    """One audio stream. Create with :meth:`EmotionSDK.session`."""

    def __init__(self, sdk: EmotionSDK, stream: EmotionStream, session_id: str) -> None:
        self._sdk = sdk
        self._stream = stream
        self.session_id = session_id
        self._lock = threading.Lock()
        self._callbacks: list[EventCallback] = []
        self._queues: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[EmotionEvent | None]]] = []
        self._latest: EmotionEvent | None = None
        self._closed = False

    @property
    def latest(self) -> EmotionEvent | None:
        """The most recent (smoothed) emotion event, or None before the first."""
        return self._latest

    def on_event(self, callback: EventCallback) -> None:
        """Call ``callback(event)`` for every event (on the thread that called :meth:`feed`)."""
        with self._lock:
            self._callbacks.append(callback)

    def feed(self, frame: bytes) -> list[EmotionEvent]:
        """Feed one 20 ms frame in the session's encoding; returns the events it completed."""
        with self._lock:
            if self._closed:
                raise EmotuneError(f"session {self.session_id} is closed")
            events = self._stream.push(frame)
            if events:
                self._latest = events[-1]
            callbacks, queues = list(self._callbacks), list(self._queues)
        for event in events:
            for callback in callbacks:
                callback(event)
            for loop, queue in queues:
                loop.call_soon_threadsafe(queue.put_nowait, event)
        return events

    async def events(self) -> AsyncIterator[EmotionEvent]:
        """Async iterator over events until the session is closed."""
        queue: asyncio.Queue[EmotionEvent | None] = asyncio.Queue()
        entry = (asyncio.get_running_loop(), queue)
        with self._lock:
            if self._closed:
                return
            self._queues.append(entry)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            with self._lock:
                if entry in self._queues:
                    self._queues.remove(entry)

    def reset(self) -> None:
        """Forget the audio so far (e.g. a new driver or a new call on the same leg)."""
        with self._lock:
            self._stream.reset()
            self._latest = None

    def say(self, text: str, *, timeout_s: float | None = None) -> BotReply:
        """Send a text turn with the latest emotion to Rasa (config ``rasa.url``); the reply carries
        the tone for TTS prosody and, on escalation, the hand-off summary."""
        return self._sdk._dialogue_turn(self.session_id, text, self._latest, timeout_s)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            queues = list(self._queues)
        self._sdk._release_id(self.session_id)
        for loop, queue in queues:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    def __enter__(self) -> EmotionSession:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class EmotionSDK:
    """The model (loaded once) plus the operator's settings. Thread-safe."""

    def __init__(self, config: EmotuneConfig, model: EmotionModel) -> None:
        self.config = config
        self.model = model
        self._count = 0
        self._open_ids: set[str] = set()
        self._lock = threading.Lock()
        self._rasa: RasaSyncClient | None = None  # opened on the first say()

    @classmethod
    def open(
        cls,
        config: EmotuneConfig | str | Path | None = None,
        *,
        variant: str | None = None,
        rasa_url: str | None = None,
    ) -> EmotionSDK:
        """Load the model named by the config (default: the shipped model and defaults)."""
        cfg = config if isinstance(config, EmotuneConfig) else load_config(config)
        updates: dict[str, Any] = {}
        if variant is not None:
            updates["model"] = cfg.model.model_copy(update={"variant": variant})
        if rasa_url is not None:
            updates["rasa"] = cfg.rasa.model_copy(update={"url": rasa_url})
        if updates:
            cfg = cfg.model_copy(update=updates)
        model = EmotionModel.load(
            cfg.model_path(), cfg.sidecar_path(), intra_op_threads=cfg.model.intra_op_threads
        )
        return cls(cfg, model)

    def session(
        self, *, encoding: Encoding = "pcm16", sample_rate: int = 16000, session_id: str | None = None
    ) -> EmotionSession:
        """A new audio stream; frames are 20 ms in ``encoding`` at ``sample_rate``.

        ``session_id`` is the Rasa conversation id of its ``say`` turns: by default a fresh random one
        (``session-<uuid4>``), so two devices never share a conversation. One of your own must be
        unique per device (the same id on two devices is one conversation) and is refused while a
        session of this SDK already uses it."""
        with self._lock:
            self._count += 1
            sid = session_id or f"session-{uuid.uuid4().hex}"
            if session_id is not None and session_id in self._open_ids:
                raise ConfigError("sdk", [f"session_id {session_id!r} is already in use by an open session"])
            self._open_ids.add(sid)
        stream = EmotionStream(
            self.model,
            streaming=self.config.streaming,
            smoothing=self.config.smoothing,
            encoding=encoding,
            sample_rate=sample_rate,
            labels=self.config.model.labels,
        )
        return EmotionSession(self, stream, sid)

    def _release_id(self, session_id: str) -> None:
        with self._lock:
            self._open_ids.discard(session_id)

    def _dialogue_turn(
        self, sender: str, text: str, event: EmotionEvent | None, timeout_s: float | None
    ) -> BotReply:
        metadata = self.config.turn_metadata(event.to_dict() if event is not None else None)
        with self._lock:
            if self._rasa is None:
                self._rasa = RasaSyncClient(self.config.rasa)
            rasa = self._rasa
        try:
            reply = rasa.exchange(sender, text, metadata, timeout_s)
        except DialogueError as exc:
            raise RasaUnavailableError(f"Rasa at {self.config.rasa.url} failed: {exc}") from exc
        reply.tone = reply.tone or str(metadata["tone"])
        return reply
