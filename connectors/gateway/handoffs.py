"""Hand-off contexts kept for the human who takes the call (``GET /v1/handoff/{call_id}``).

A Twilio ``<Dial>`` carries no body, so when the bot hands a caller over the gateway keeps the
bot's context (docs/handoff.md) under the call's platform id (Twilio: the CallSid the agent's leg
knows as its parent call) and the agent desktop fetches it when the call rings. Bounded and
expiring: at most ``max_entries`` contexts, each for ``ttl_s`` after the hand-off (the call plus a
grace period for wrap-up); the gateway's process memory is the only copy (no disk: it holds the
caller's words and numbers).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["HANDOFF_PATH", "HandoffRecord", "HandoffStore"]

HANDOFF_PATH = "/v1/handoff/"


@dataclass(frozen=True)
class HandoffRecord:
    call_id: str
    protocol: str
    context: Mapping[str, Any]
    stored_at: float  # wall clock (s since the epoch)

    def as_json(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "protocol": self.protocol, "stored_at": round(self.stored_at, 3),
                "context": dict(self.context)}  # fmt: skip


class HandoffStore:
    """Call id -> the latest hand-off context of that call; oldest dropped first beyond the bound."""

    def __init__(self, max_entries: int = 1000, ttl_s: float = 3600.0, clock: Callable[[], float] = time.time) -> None:
        if max_entries < 1 or ttl_s <= 0:
            raise ValueError("a hand-off store needs max_entries >= 1 and ttl_s > 0")
        self.max_entries, self.ttl_s, self._clock = max_entries, ttl_s, clock
        self._records: OrderedDict[str, HandoffRecord] = OrderedDict()

    def put(self, call_id: str, protocol: str, context: Mapping[str, Any]) -> HandoffRecord:
        self._expire()
        record = HandoffRecord(call_id, protocol, dict(context), self._clock())
        self._records.pop(call_id, None)
        self._records[call_id] = record
        while len(self._records) > self.max_entries:
            self._records.popitem(last=False)
        return record

    def get(self, call_id: str) -> HandoffRecord | None:
        self._expire()
        return self._records.get(call_id)

    def __len__(self) -> int:
        self._expire()
        return len(self._records)

    def _expire(self) -> None:
        oldest_kept = self._clock() - self.ttl_s
        while self._records:
            first = next(iter(self._records.values()))
            if first.stored_at >= oldest_kept:
                return
            self._records.popitem(last=False)
