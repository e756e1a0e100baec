"""Async client for Rasa's REST channel that never loses a caller's turn.

``POST {rasa.url}/webhooks/rest/webhook`` with ``{"sender", "message", "metadata"}``; Rasa answers
a list of messages, each with ``text`` and/or ``custom``. Our bots put the reply's tone in
``custom.tone`` and a hand-off in ``custom.handoff`` (see docs/CONTRACTS.md).

When Rasa is down, slow or answers garbage, :meth:`RasaClient.send` still returns a
:class:`BotReply`: the operator's ``rasa.fallback_reply``, flagged ``fallback=True`` with the
reason. Internally the failure is a :class:`emotune.errors.RasaUnavailableError`; every call tries
Rasa again, so the client recovers on its own as soon as Rasa is back.

One core, two drivers: :class:`RasaRoutes` decides (no I/O) which replica to try, what counts as
a failure (refused, 502/503 -> next replica; a timeout is never retried, since the turn may have
run; an empty answer is a failure) and how to read the answer. :class:`RasaClient` drives it with
an async HTTP pool for the gateway, :class:`RasaSyncClient` with a blocking one for the SDK.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import httpx

from emotune.config import RasaConfig
from emotune.errors import DialogueError, RasaUnavailableError

__all__ = ["WEBHOOK_PATH", "BotReply", "RasaClient", "RasaRequest", "RasaRoutes", "RasaSyncClient", "parse_rasa_messages"]

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


@dataclass(frozen=True)
class RasaRequest:
    """One POST the core wants made."""

    url: str
    body: dict[str, Any]
    timeout_s: float


Outcome = httpx.Response | httpx.HTTPError
Exchange = Generator[RasaRequest, Outcome, BotReply]


def parse_response(response: httpx.Response) -> BotReply:
    if response.status_code != 200:
        raise RasaUnavailableError(f"Rasa answered HTTP {response.status_code}: {response.text[:200]}")
    try:
        payload = response.json()
    except ValueError as exc:
        raise RasaUnavailableError("Rasa answered something that is not JSON") from exc
    return parse_rasa_messages(payload)


class RasaRoutes:
    """The client core: replicas in fail-over order and the rules for one exchange (no I/O)."""

    def __init__(self, config: RasaConfig, url: str | None = None) -> None:
        self._url_override = url
        self.reconfigure(config)

    def reconfigure(self, config: RasaConfig) -> None:
        """New URL / timeout / replicas from a reloaded config (an explicit URL stays)."""
        self.config = config
        primary = self._url_override or config.url
        urls = [primary, *(u for u in config.replicas if u != primary)]
        self.webhook_urls = [u.rstrip("/") + WEBHOOK_PATH for u in urls]
        self.preferred = 0  # the replica that answered last

    def exchange(self, sender: str, message: str, metadata: dict[str, Any]) -> Exchange:
        """Yields the requests to make, is sent each outcome (a response or the transport error),
        returns the reply; raises :class:`DialogueError` (RasaUnavailableError) when Rasa failed."""
        if not sender:
            raise DialogueError("sender (the call id) must not be empty")
        body = {"sender": sender, "message": message, "metadata": metadata}
        n = len(self.webhook_urls)
        failures: list[str] = []
        for attempt in range(n):
            index = (self.preferred + attempt) % n
            url = self.webhook_urls[index]
            outcome = yield RasaRequest(url, body, self.config.timeout_s)
            if isinstance(outcome, httpx.TimeoutException):
                # Not retried elsewhere: the turn may have been processed, and must not run twice.
                raise RasaUnavailableError(f"Rasa at {url} did not answer within {self.config.timeout_s:g} s")
            if isinstance(outcome, httpx.HTTPError):
                failures.append(f"cannot reach Rasa at {url}: {outcome}")
                continue
            if outcome.status_code in (502, 503) and attempt < n - 1:
                failures.append(f"Rasa at {url} answered HTTP {outcome.status_code}")
                continue
            if index != self.preferred:
                logger.info("Rasa replica %s took over the turn", url)
                self.preferred = index
            reply = parse_response(outcome)
            if not reply.text and reply.handoff is None:
                # Silence is never an answer on a call. Seen when a custom action fails (the action
                # server is down): Rasa drops that action's messages and answers with nothing.
                raise DialogueError("Rasa answered with no message (is the action server up?)")
            return reply
        raise RasaUnavailableError("; ".join(failures))


class RasaClient:
    """One shared HTTP connection pool for all calls; use as ``async with RasaClient(cfg) as rasa``."""

    def __init__(self, config: RasaConfig, url: str | None = None) -> None:
        self.routes = RasaRoutes(config, url)
        self._http = httpx.AsyncClient()
        self.failures = 0  # consecutive failed turns; back to 0 once Rasa answers again

    async def __aenter__(self) -> RasaClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def config(self) -> RasaConfig:
        return self.routes.config

    def reconfigure(self, config: RasaConfig) -> None:
        self.routes.reconfigure(config)

    @property
    def webhook_urls(self) -> list[str]:
        return self.routes.webhook_urls

    @property
    def webhook_url(self) -> str:
        return self.routes.webhook_urls[self.routes.preferred]

    async def close(self) -> None:
        await self._http.aclose()

    async def exchange(self, sender: str, message: str, metadata: dict[str, Any]) -> BotReply:
        """One turn through the core; raises DialogueError if Rasa failed."""
        steps = self.routes.exchange(sender, message, metadata)
        request = next(steps)
        while True:
            outcome: Outcome
            try:
                outcome = await self._http.post(request.url, json=request.body, timeout=request.timeout_s)
            except httpx.HTTPError as exc:
                outcome = exc
            try:
                request = steps.send(outcome)
            except StopIteration as done:
                return done.value

    async def send(self, sender: str, message: str, metadata: dict[str, Any] | None = None) -> BotReply:
        """One caller turn -> the bot's reply, or the configured fallback reply if Rasa failed."""
        if not sender:
            raise DialogueError("sender (the call id) must not be empty")
        started = time.perf_counter()
        try:
            reply = await self.exchange(sender, message, metadata or {})
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


class RasaSyncClient:
    """The same core over a blocking HTTP pool (the in-process SDK); raises instead of falling back."""

    def __init__(self, config: RasaConfig, url: str | None = None) -> None:
        self.routes = RasaRoutes(config, url)
        self._http = httpx.Client()

    def close(self) -> None:
        self._http.close()

    def exchange(self, sender: str, message: str, metadata: dict[str, Any], timeout_s: float | None = None) -> BotReply:
        """One turn; raises DialogueError (RasaUnavailableError when no replica answered)."""
        started = time.perf_counter()
        steps = self.routes.exchange(sender, message, metadata)
        request = next(steps)
        while True:
            outcome: Outcome
            try:
                outcome = self._http.post(request.url, json=request.body, timeout=timeout_s or request.timeout_s)
            except httpx.HTTPError as exc:
                outcome = exc
            try:
                request = steps.send(outcome)
            except StopIteration as done:
                reply: BotReply = done.value
                reply.latency_s = time.perf_counter() - started
                return reply
