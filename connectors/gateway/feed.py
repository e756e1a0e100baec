"""Live emotion feed for supervisors: every call's events, fanned out to websocket subscribers.

The gateway publishes each call's emotion events, turns, tones and escalations to a
:class:`FeedHub`; a supervisor's browser opens ``/feed/{call_id}?token=...`` (the page is
``connectors/gateway/static/feed.html``, served at ``/feed.html``) and gets a backlog of what already
happened in the call, then every new message as JSON text frames::

    {"type": "emotion", "call_id": ..., "t": <call time s>, "event": {label, probabilities, ...}}
    {"type": "turn", "call_id": ..., "t": ..., "caller_text": ..., "bot_text": ..., "tone": ...}
    {"type": "escalation", ...}    {"type": "call_ended", ...}
    {"type": "handoff", "reason": ..., "context": {...}, "lookup": "/v1/handoff/<call>", "delivered": bool}

``/feed/*`` subscribes to every call (for a wallboard). Slow subscribers never slow a call down:
each has a bounded queue and loses its oldest messages first.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emotune.errors import AuthenticationError

__all__ = ["ALL_CALLS", "STATIC_DIR", "FeedHub", "FeedSubscription", "check_token"]

ALL_CALLS = "*"
STATIC_DIR = Path(__file__).resolve().parent / "static"
_BACKLOG = 500  # messages kept per call for late subscribers
_QUEUE = 1000  # per-subscriber buffer before the oldest messages are dropped


def check_token(expected: str | None, offered: str | None) -> None:
    """Constant-time token check; raises AuthenticationError (a missing server token refuses all)."""
    if not expected:
        raise AuthenticationError("the feed is disabled: no gateway.auth_token is configured")
    if not offered:
        raise AuthenticationError("missing token (use ?token=... or Authorization: Bearer ...)")
    if not hmac.compare_digest(expected.encode(), offered.encode()):
        raise AuthenticationError("invalid token")


@dataclass(eq=False)  # identity equality: subscriptions live in sets
class FeedSubscription:
    call_id: str
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(_QUEUE))
    dropped: int = 0

    async def next_frame(self) -> str:
        """The next message as a JSON text frame (waits for one)."""
        return json.dumps(await self.queue.get(), separators=(",", ":"))

    def offer(self, message: dict[str, Any]) -> None:
        if self.queue.full():
            self.queue.get_nowait()  # the newest state matters more than old history
            self.dropped += 1
        self.queue.put_nowait(message)


class FeedHub:
    """In-process publish/subscribe of per-call feed messages (one hub per gateway)."""

    def __init__(self) -> None:
        self._backlog: dict[str, deque[dict[str, Any]]] = {}
        self._subscribers: dict[str, set[FeedSubscription]] = {}
        self.active_calls: set[str] = set()

    def publish(self, call_id: str, message: dict[str, Any]) -> None:
        message = {"call_id": call_id, **message}
        self._backlog.setdefault(call_id, deque(maxlen=_BACKLOG)).append(message)
        if message.get("type") == "call_started":
            self.active_calls.add(call_id)
        elif message.get("type") == "call_ended":
            self.active_calls.discard(call_id)
        for key in (call_id, ALL_CALLS):
            for subscription in self._subscribers.get(key, ()):
                subscription.offer(message)

    def forget(self, call_id: str) -> None:
        """Drop a finished call's backlog (the call log on disk keeps the record)."""
        self._backlog.pop(call_id, None)

    def backlog(self, call_id: str) -> list[dict[str, Any]]:
        if call_id == ALL_CALLS:
            return [m for log in self._backlog.values() for m in log]
        return list(self._backlog.get(call_id, ()))

    def subscribe(self, call_id: str) -> FeedSubscription:
        subscription = FeedSubscription(call_id)
        for message in self.backlog(call_id):
            subscription.offer(message)
        self._subscribers.setdefault(call_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: FeedSubscription) -> None:
        subscribers = self._subscribers.get(subscription.call_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.call_id]

    def subscriber_count(self) -> int:
        return sum(len(subscribers) for subscribers in self._subscribers.values())
