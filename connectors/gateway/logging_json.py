"""Structured logs: one JSON object per line, with ``call_id`` on every call-scoped record.

Call scope travels in a context variable holding a small mutable box: the gateway opens the box when
a connection arrives (before the protocol has told us the call id) and the pipeline fills in the id
at call start. Tasks created later in the call (the turn worker) copy the context, so they see the
same box and their records carry the id too, without threading it through every log call.

Privacy rule: transcripts (caller text, bot text) are logged at DEBUG only; INFO and above carry
ids, counts, tones and latencies.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

__all__ = [
    "CallScope",
    "JsonFormatter",
    "build_handler",
    "call_scope",
    "configure_logging",
    "current_call_id",
    "set_call_id",
]

# The attributes every LogRecord has; anything else came from ``extra=`` and is emitted as a field.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message", "asctime"}


class CallScope:
    """The per-connection box the context variable points at."""

    __slots__ = ("call_id",)

    def __init__(self) -> None:
        self.call_id: str | None = None


_SCOPE: contextvars.ContextVar[CallScope | None] = contextvars.ContextVar("emotune_call_scope", default=None)


@contextmanager
def call_scope() -> Iterator[CallScope]:
    """Open a call scope for the current task (and the tasks it creates from now on)."""
    scope = CallScope()
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


def set_call_id(call_id: str) -> None:
    """Name the call of the current scope (no-op outside a scope, e.g. the in-car SDK)."""
    scope = _SCOPE.get()
    if scope is not None:
        scope.call_id = call_id


def current_call_id() -> str | None:
    scope = _SCOPE.get()
    return scope.call_id if scope is not None else None


class _CallIdFilter(logging.Filter):
    """Stamps ``record.call_id`` from the call scope unless the caller passed one explicitly."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "call_id", None) is None:
            record.call_id = current_call_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC ISO-8601), level, logger, message, call_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        call_id = getattr(record, "call_id", None)
        if call_id is not None:
            payload["call_id"] = call_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in payload and key != "call_id":
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        call_id = getattr(record, "call_id", None)
        return f"{text} [call {call_id}]" if call_id is not None else text


def build_handler(json_lines: bool = False, stream: IO[str] | None = None) -> logging.Handler:
    """A handler (stderr by default) that stamps call ids and writes JSON lines or plain text."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(_CallIdFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


def configure_logging(json_lines: bool = False, level: int | str = logging.INFO) -> logging.Handler:
    """Install one stderr handler on the root logger (replacing earlier handlers); returns it."""
    handler = build_handler(json_lines)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
