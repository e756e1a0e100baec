"""Async client for Rasa's REST channel that never loses a caller's turn.

``POST {rasa.url}/webhooks/rest/webhook`` with ``{"sender", "message", "metadata"}``; Rasa answers
a list of messages, each with ``text`` and/or ``custom``. Our bots put the reply's tone in
``custom.tone`` and a hand-off in ``custom.handoff`` (see docs/CONTRACTS.md).

When Rasa is down, slow or answers garbage, :meth:`RasaClient.send` still returns a
:class:`BotReply`: the operator's ``rasa.fallback_reply``, flagged ``fallback=True`` with the
reason. Internally the failure is a :class:`emotune.errors.RasaUnavailableError`; every call tries
Rasa again, so the client recovers on its own as soon as Rasa is back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from emotune.config import RasaConfig
from emotune.errors import DialogueError, RasaUnavailableError

__all__ = ["WEBHOOK_PATH", "BotReply", "RasaClient", "parse_rasa_messages"]

logger = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/rest/webhook"


@dataclass
class BotReply:
    """The bot's answer to one caller turn."""

    text: str
    tone: str | None = None
    handoff: dict[str, Any] | None = None
    fallback: bool = False
    fallback_reason: str | None = None
    latency_s: float = 0.0
    raw: list[dict[str, Any]] = field(default_factory=list)


def parse_rasa_messages(messages: Any) -> BotReply:
    """Rasa's REST answer (a list of messages) -> one reply; raises DialogueError if malformed."""
    if not isinstance(messages, list):
        raise DialogueError(f"Rasa answered {type(messages).__name__}, expected a list of messages")
    texts: list[str] = []
    tone: str | None = None
    handoff: dict[str, Any] | None = None
    for message in messages:
        if not isinstance(message, dict):
            raise DialogueError(f"Rasa message is {type(message).__name__}, expected an object")
        text = message.get("text")
        if isinstance(text, str) and text.strip():
            texts.append(text.strip())
        custom = message.get("custom")
        if isinstance(custom, dict):
            if isinstance(custom.get("tone"), str):
                tone = custom["tone"]
            if isinstance(custom.get("handoff"), dict):
                handoff = custom["handoff"]
            # A custom payload may carry the text itself (custom-only responses).
            if isinstance(custom.get("text"), str) and custom["text"].strip() and not text:
                texts.append(custom["text"].strip())
    return BotReply(text=" ".join(texts), tone=tone, handoff=handoff, raw=list(messages))


class RasaClient:
    """One shared HTTP connection pool for all calls; use as ``async with RasaClient(cfg) as rasa``."""

    def __init__(self, config: RasaConfig, url: str | None = None) -> None:
        self.config = config
        self._url_override = url
        self._set_urls()
        self._http = httpx.AsyncClient()
        self.failures = 0  # consecutive failed turns; back to 0 once Rasa answers again

    async def __aenter__(self) -> RasaClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def reconfigure(self, config: RasaConfig) -> None:
        """New URL / timeout / fallback reply from a reloaded config (an explicit URL stays)."""
        self.config = config
        self._set_urls()

    def _set_urls(self) -> None:
        primary = self._url_override or self.config.url
        urls = [primary, *(u for u in self.config.replicas if u != primary)]
        self.webhook_urls = [u.rstrip("/") + WEBHOOK_PATH for u in urls]
        self._preferred = 0  # the replica that answered last

    @property
    def webhook_url(self) -> str:
        return self.webhook_urls[self._preferred]

    async def close(self) -> None:
        await self._http.aclose()

    async def _post(self, sender: str, message: str, metadata: dict[str, Any]) -> BotReply:
        body = {"sender": sender, "message": message, "metadata": metadata}
        n = len(self.webhook_urls)
        failures: list[str] = []
        for attempt in range(n):
            index = (self._preferred + attempt) % n
            url = self.webhook_urls[index]
            try:
                response = await self._http.post(url, json=body, timeout=self.config.timeout_s)
            except httpx.TimeoutException as exc:
                # Not retried elsewhere: the turn may have been processed, and must not run twice.
                raise RasaUnavailableError(f"Rasa at {url} did not answer within {self.config.timeout_s:g} s") from exc
            except httpx.TransportError as exc:
                failures.append(f"cannot reach Rasa at {url}: {exc}")
                continue
            if response.status_code in (502, 503) and attempt < n - 1:
                failures.append(f"Rasa at {url} answered HTTP {response.status_code}")
                continue
            if index != self._preferred:
                logger.info("Rasa replica %s took over the turn", url)
                self._preferred = index
            return self._parse(response)
        raise RasaUnavailableError("; ".join(failures))

    @staticmethod
    def _parse(response: httpx.Response) -> BotReply:
        if response.status_code != 200:
            raise RasaUnavailableError(f"Rasa answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            payload = response.json()
        except ValueError as exc:
            raise RasaUnavailableError("Rasa answered something that is not JSON") from exc
        return parse_rasa_messages(payload)

    async def send(self, sender: str, message: str, metadata: dict[str, Any] | None = None) -> BotReply:
        """One caller turn -> the bot's reply, or the configured fallback reply if Rasa failed."""
        if not sender:
            raise DialogueError("sender (the call id) must not be empty")
        started = time.perf_counter()
        try:
            reply = await self._post(sender, message, metadata or {})
            if not reply.text and reply.handoff is None:
                # Silence is never an answer on a call. Seen when a custom action fails (the action
                # server is down): Rasa drops that action's messages and answers with nothing.
                raise DialogueError("Rasa answered with no message (is the action server up?)")
        except DialogueError as exc:
            self.failures += 1
            logger.warning("Rasa turn failed for %s (%d in a row): %s", sender, self.failures, exc)
            return BotReply(
                text=self.config.fallback_reply,
                fallback=True,
                fallback_reason=str(exc),
                latency_s=time.perf_counter() - started,
            )
        if self.failures:
            logger.info("Rasa is answering again after %d failed turn(s)", self.failures)
        self.failures = 0
        reply.latency_s = time.perf_counter() - started
        return reply
