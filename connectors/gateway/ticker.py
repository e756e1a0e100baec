"""A periodic task on the event loop: the shared hubs' tick (emotion windows, VAD frames).

``step`` runs every ``period_s``; when one run takes longer than a period the next starts at once,
without a catch-up burst. A failing run is logged and counted by ``on_error`` and the ticks go on
(one bad batch must not stop every call). ``after_ticks(n)`` lets a call wait until what it fed
has been through ``n`` more ticks (the call is ending).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Ticker"]

logger = logging.getLogger(__name__)


class Ticker:
    def __init__(
        self, name: str, period_s: float, step: Callable[[], Awaitable[Any]], on_error: Callable[[], None]
    ) -> None:
        self.name = name
        self.period_s = period_s
        self._step = step
        self._on_error = on_error
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None
        self._ticked: asyncio.Condition | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def after_ticks(self, n: int, timeout_s: float = 2.0) -> None:
        """Wait until ``n`` more ticks have completed (at most ``timeout_s``; not at all if stopped)."""
        if self._task is None or self._ticked is None:
            return
        target = self.ticks + n
        ticked = self._ticked
        async with ticked:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ticked.wait_for(lambda: self.ticks >= target), timeout_s)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        self._ticked = asyncio.Condition()
        next_tick = loop.time()
        while True:
            next_tick += self.period_s
            delay = next_tick - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_tick = loop.time()  # the step took longer than a period: no catch-up burst
            try:
                await self._step()
            except Exception:  # noqa: BLE001 - one bad batch must not stop every call
                logger.exception("%s tick failed", self.name)
                self._on_error()
            self.ticks += 1
            async with self._ticked:
                self._ticked.notify_all()
