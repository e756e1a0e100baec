"""The gateway's server: one asyncio websocket listener, one pipeline per call, and its lifecycle.

Paths (one port)::

    /twilio        Twilio Media Streams (bidirectional <Connect><Stream>): X-Twilio-Signature over
                   gateway.public_url + path (EMOTUNE_GATEWAY__TWILIO__AUTH_TOKEN)
    /audiohook     Genesys AudioHook (monitor): X-API-KEY + HTTP message signature (both mandatory)
    /v1/stream     our own protocol ("emotune-ws", docs/protocol.md): callers' Bearer token at the upgrade
    /feed/{call}   live emotion feed for supervisors (``*`` = every call): the feed token (Bearer; ?token=
                   only because the page's browser WebSocket cannot send headers)
    /feed.html     the feed page (plain HTTP GET), /healthz  liveness + active calls,
    /metrics       Prometheus text format (the metrics token, Bearer)
    /v1/handoff/{call}  the hand-off context of a transferred call, for the agent desktop (the feed
                   token, Bearer; docs/handoff.md)

Every endpoint fails closed: without its credential it refuses everyone, unless ``insecure_dev``.

Authentication happens in ``process_request``, i.e. before the websocket upgrade (``routes``): a
peer that fails it gets an HTTP 401/403 and no audio of it is ever read. Emotion inference runs
off the event loop in one shared hub (``emotion``); a probe measures the loop's own lag. ``serve(config)`` runs until
cancelled; ``main(argv)`` is the command-line entry (``emotune serve`` wires it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import http
import json
import logging
import os
import signal
import ssl
import stat
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from connectors.dialogue.rasa_client import RasaClient
from connectors.dialogue.transfer import TwilioRestTransfer
from connectors.gateway.call import CallPipeline, CallServices
from connectors.gateway.emotion import EmotionFactory, EmotionService
from connectors.gateway.feed import ALL_CALLS, STATIC_DIR, FeedHub
from connectors.gateway.handoffs import HANDOFF_PATH
from connectors.gateway.logging_json import call_scope, configure_logging
from connectors.gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from connectors.gateway.metrics import GatewayMetrics, watch_loop_lag
from connectors.gateway.profiles import CallProfiles
from connectors.gateway.routes import (
    Route,
    build_routes,
    check_feed,
    check_metrics,
    credential_problems,
    handoff_lookup,
    secret,
    twilio_voice_twiml,
)
from connectors.gateway.vad_hub import VadHub
from connectors.protocols.base import CallProtocol, CallStarted, Outgoing, ProtocolViolation
from connectors.speech.asr import create_recognizer
from connectors.speech.tts import create_synthesizer
from emotune.config import SECRET_FIELDS, EmotuneConfig, load_config
from emotune.errors import AuthenticationError, ConfigError, EmotuneError

__all__ = [
    "DEFAULT_LOG_DIR",
    "Gateway",
    "serve",
    "main",
    "check_startup",
    "pid_file",
    "request_reload",
    "runtime_dir",
    "run_until_stopped",
]

logger = logging.getLogger(__name__)
_WS_LOGGER = logging.getLogger("connectors.gateway.websockets")
_WS_LOGGER.setLevel(logging.WARNING)

DEFAULT_LOG_DIR = Path("reports/calls")
_PAGES = {"/feed.html": ("feed.html", "text/html; charset=utf-8")}


class Gateway:
    """Owns the shared services (engines, Rasa client, feed) and the websocket server."""

    def __init__(
        self,
        config: EmotuneConfig,
        emotion_factory: EmotionFactory | None = None,
        log_dir: Path | None = DEFAULT_LOG_DIR,
        rasa_url: str | None = None,
        end_silence_s: float = 0.6,
        config_path: Path | None = None,
    ) -> None:
        """``emotion_factory`` replaces the shared emotion hub (tests that need no model);
        ``config_path``: the file whose other ``profiles:`` a call may choose (gateway/profiles.py)."""
        self.config = config
        self.feed = FeedHub()
        self.metrics = GatewayMetrics()
        self.rasa = RasaClient(config.rasa, url=rasa_url)
        twilio_token = secret(config.gateway.twilio.auth_token)
        self.emotion: EmotionService | None = None
        if emotion_factory is None:
            self.emotion = EmotionService.from_config(config, self.metrics)
            emotion_factory = self.emotion.open
        self.vad_hub = VadHub(config, self.metrics)
        self.services = CallServices(
            config=config,
            recognizer=create_recognizer(config.asr),
            synthesizer=create_synthesizer(config.tts),
            rasa=self.rasa,
            feed=self.feed,
            emotion_factory=emotion_factory,
            log_dir=config.resolve(Path(log_dir)) if log_dir is not None else None,
            on_transfer=TwilioRestTransfer(twilio_token),
            end_silence_s=end_silence_s,
            metrics=self.metrics,
            asr_slots=asyncio.Semaphore(config.asr.turns_in_flight()),
            vad_hub=self.vad_hub,
        )
        self.active: dict[int, CallPipeline] = {}
        # Call slots held from the moment a handshake passed authentication until its socket closes:
        # the max_calls check counts handshakes in progress, so concurrent upgrades cannot overshoot.
        self.slots: set[int] = set()
        self.live_calls: set[tuple[str, str]] = set()  # (protocol, platform call id) of calls in progress
        self.connections: dict[int, ServerConnection] = {}
        self.stopping = False
        self.server: Server | None = None
        self.profiles = CallProfiles(self.services, config_path)
        self.services.profiles = self.profiles.services_for
        self.routes = build_routes(lambda: self.config, lambda: self.profiles.names)
        self._lag_probe: asyncio.Task[None] | None = None

    # -- plain HTTP and the upgrade check --------------------------------------------------------
    def _http_response(self, status: http.HTTPStatus, body: bytes, content_type: str) -> Response:
        headers = Headers(
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
                ("Connection", "close"),
            ]
        )
        return Response(status.value, status.phrase, headers, body)

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        gateway = self.config.gateway
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return self._plain_http(path, request)
        scheme = "wss" if gateway.tls_cert else "ws"
        try:
            if path.startswith("/feed/"):
                check_feed(gateway, request)
                return None
            route = self.routes.get(path)
            if route is None:
                self.metrics.refusals_total.inc("bad_path")
                return self._http_response(http.HTTPStatus.NOT_FOUND, b"unknown path\n", "text/plain")
            pending = route.authenticate(request, scheme)
            if pending is not None:
                await pending
        except AuthenticationError as exc:
            return self._refuse_auth(connection, path, exc)
        # No await between this check and taking the slot: concurrent handshakes cannot both pass.
        if len(self.slots) >= self.config.gateway.max_calls:
            self.metrics.refusals_total.inc("capacity")
            return self._http_response(
                http.HTTPStatus.SERVICE_UNAVAILABLE, b"too many concurrent calls\n", "text/plain"
            )
        key = id(connection)
        self.slots.add(key)
        asyncio.get_running_loop().create_task(self._release_slot(connection, key))
        return None

    async def _release_slot(self, connection: ServerConnection, key: int) -> None:
        try:
            await connection.wait_closed()
        finally:
            self.slots.discard(key)

    def _refuse_auth(self, connection: ServerConnection, path: str, exc: AuthenticationError) -> Response:
        logger.warning("refused %s from %s: %s", path, connection.remote_address, exc)
        self.metrics.refusals_total.inc("auth")
        return self._http_response(http.HTTPStatus.UNAUTHORIZED, f"{exc}\n".encode(), "text/plain")

    def _plain_http(self, path: str, request: Request) -> Response:
        if path in _PAGES:
            filename, content_type = _PAGES[path]
            body = (STATIC_DIR / filename).read_bytes()
            return self._http_response(http.HTTPStatus.OK, body, content_type)
        if path == "/twilio/voice":
            try:
                twiml = twilio_voice_twiml(self.config.gateway, request, time.time())
            except AuthenticationError as exc:
                self.metrics.refusals_total.inc("auth")
                return self._http_response(http.HTTPStatus.UNAUTHORIZED, f"{exc}\n".encode(), "text/plain")
            return self._http_response(http.HTTPStatus.OK, twiml.encode(), "text/xml; charset=utf-8")
        if path.startswith(HANDOFF_PATH):
            status, body = handoff_lookup(self.config.gateway, self.services.handoffs, request)
            if status == http.HTTPStatus.UNAUTHORIZED:
                self.metrics.refusals_total.inc("auth")
            return self._http_response(status, body, "application/json")
        if path == "/healthz":
            body = json.dumps({"status": "ok", "active_calls": len(self.active)}).encode()
            return self._http_response(http.HTTPStatus.OK, body, "application/json")
        if path == "/metrics":
            try:
                check_metrics(self.config.gateway, request)
            except AuthenticationError as exc:
                self.metrics.refusals_total.inc("auth")
                return self._http_response(http.HTTPStatus.UNAUTHORIZED, f"{exc}\n".encode(), "text/plain")
            self.metrics.active_calls.set(len(self.active))
            return self._http_response(http.HTTPStatus.OK, self.metrics.render().encode(), METRICS_CONTENT_TYPE)
        return self._http_response(http.HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    # -- connections --------------------------------------------------------------------------
    async def _handler(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        path = urlsplit(connection.request.path).path
        if path.startswith("/feed/"):
            await self._serve_feed(connection, unquote(path.removeprefix("/feed/")) or ALL_CALLS)
            return
        route = self.routes[path]
        with call_scope():  # log records of this connection (and its turn worker) get the call id
            await self._serve_call(connection, route, route.make_core(connection.request))

    async def _serve_feed(self, connection: ServerConnection, call_id: str) -> None:
        closed = asyncio.create_task(connection.wait_closed())
        subscription = self.feed.subscribe(call_id)
        try:
            while True:
                next_frame = asyncio.ensure_future(subscription.next_frame())
                done, _ = await asyncio.wait({next_frame, closed}, return_when=asyncio.FIRST_COMPLETED)
                if closed in done:
                    next_frame.cancel()
                    return
                await connection.send(next_frame.result())
        except ConnectionClosed:
            return
        finally:
            closed.cancel()
            self.feed.unsubscribe(subscription)  # a supervisor who left holds nothing

    async def _serve_call(self, connection: ServerConnection, route: Route, core: CallProtocol) -> None:
        async def send(message: Outgoing) -> None:
            await connection.send(message)

        pipeline = CallPipeline(self.services, core, send, route.name)
        self.active[id(connection)] = pipeline
        self.connections[id(connection)] = connection
        self.metrics.calls_total.inc(route.name)
        self.metrics.active_calls.set(len(self.active))
        reason = "peer closed"
        rate_limited = False
        duplicate: str | None = None  # a second stream claiming a call id that is already live
        live_key: tuple[str, str] | None = None
        # Inbound message-rate cap per call (token bucket, gateway.max_messages_per_s). The burst
        # is long on purpose: after a network or loop stall a well-behaved caller's backlog
        # arrives at once and must not be mistaken for a flood.
        rate = self.config.gateway.max_messages_per_s
        capacity = rate * self.config.gateway.rate_burst_s
        tokens, refilled_at = capacity, time.monotonic()
        try:
            while core.close_request is None:
                try:
                    async with asyncio.timeout(self.config.gateway.idle_timeout_s):
                        message = await connection.recv()
                except TimeoutError:
                    reason = "idle timeout"
                    await self._flush(connection, core.close("idle timeout"))
                    break
                if core.close_request is not None:
                    reason = core.close_request.reason  # the pipeline ended the call (hand-off)
                    break
                now = time.monotonic()
                tokens = min(capacity, tokens + (now - refilled_at) * rate)
                refilled_at = now
                if tokens < 1.0:
                    rate_limited, reason = True, "inbound message rate limit exceeded"
                    self.metrics.errors_total.inc("rate_limit")
                    logger.warning("%s call %s: %s", route.name, pipeline.call_id, reason)
                    break
                tokens -= 1.0
                events = core.receive_text(message) if isinstance(message, str) else core.receive_bytes(message)
                await self._flush(connection, core.data_to_send())
                for event in events:
                    if isinstance(event, CallStarted):
                        key = (route.name, event.call_id)
                        if key in self.live_calls:
                            duplicate = f"call {event.call_id} is already live on this gateway"
                            break
                        live_key = key
                        self.live_calls.add(key)
                    if isinstance(event, ProtocolViolation):
                        self.metrics.errors_total.inc("protocol_violation")
                        logger.warning("%s call %s: %s", route.name, pipeline.call_id, event.message)
                    await pipeline.handle(event)
                if duplicate is not None:
                    reason = duplicate
                    self.metrics.refusals_total.inc("duplicate_call")
                    logger.warning("%s: refused a second stream: %s", route.name, duplicate)
                    break
                if core.close_request is not None:
                    reason = core.close_request.reason or "protocol close"
        except ConnectionClosed:
            reason = "gateway shutdown" if self.stopping else "peer closed"
        except EmotuneError as exc:
            self.metrics.errors_total.inc(type(exc).__name__)
            logger.exception("call %s failed", pipeline.call_id)
            reason = f"error: {exc}"
        finally:
            if live_key is not None:
                self.live_calls.discard(live_key)  # before call_ended is published: the id may be reused then
            await pipeline.finish(reason, peer_gone=reason == "peer closed")
            self.active.pop(id(connection), None)
            self.connections.pop(id(connection), None)
            self.metrics.active_calls.set(len(self.active))
            close = core.close_request
            with contextlib.suppress(ConnectionClosed):
                await self._flush(connection, core.data_to_send())
                if rate_limited:
                    await connection.close(1008, "inbound message rate limit exceeded")  # policy violation
                elif duplicate is not None:
                    await connection.close(1008, "call id already live")
                elif close is not None:
                    await connection.close(close.code, close.reason)
                else:
                    await connection.close()

    @staticmethod
    async def _flush(connection: ServerConnection, messages: Sequence[Outgoing]) -> None:
        for message in messages:
            await connection.send(message)

    # -- lifecycle ----------------------------------------------------------------------------
    def _ssl_context(self) -> ssl.SSLContext | None:
        gateway = self.config.gateway
        if gateway.tls_cert is None or gateway.tls_key is None:
            return None
        cert, key = self.config.resolve(gateway.tls_cert), self.config.resolve(gateway.tls_key)
        for name, path in (("tls_cert", cert), ("tls_key", key)):
            try:
                path.read_bytes()  # load_cert_chain's own OSError does not say which file
            except OSError as exc:
                raise ConfigError("gateway", [f"gateway.{name}: cannot read {path}: {exc.strerror or exc}"]) from exc
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            # An empty password: an encrypted key fails here instead of prompting on a terminal.
            context.load_cert_chain(cert, key, password=lambda: b"")
        except ssl.SSLError as exc:
            raise ConfigError("gateway", [
                f"gateway.tls_cert/tls_key: {cert} and {key} are not a matching PEM certificate and "
                f"unencrypted private key ({exc.reason or exc})"
            ]) from exc
        return context

    async def start(self, port: int | None = None) -> Server:
        gateway = self.config.gateway
        if gateway.twilio.transfer_to is None:
            logger.warning(
                "gateway.twilio.transfer_to is not set: an escalated Twilio call is not dialled anywhere; "
                "the stream is closed and Twilio continues with the TwiML after <Connect>"
            )
        self.server = await ws_serve(
            self._handler,
            gateway.host,
            gateway.port if port is None else port,
            process_request=self._process_request,
            open_timeout=gateway.handshake_timeout_s,
            max_size=gateway.max_frame_bytes,
            ssl=self._ssl_context(),
            # Audio frames do not compress; per-message deflate would cost CPU on every frame.
            compression=None,
            # websockets logs every connection (a health check: three INFO lines); the gateway
            # logs calls itself, so only its warnings and errors are kept.
            logger=_WS_LOGGER,
        )
        if self.emotion is not None:
            self.emotion.start()
        self.vad_hub.start()
        # Models, sessions and config are loaded and live for the process: exclude them from the
        # cyclic GC's scans, whose full passes otherwise stall the event loop for tens of ms.
        gc.freeze()
        self._lag_probe = asyncio.get_running_loop().create_task(
            watch_loop_lag(self.metrics.event_loop_lag), name="loop-lag"
        )
        return self.server

    @property
    def port(self) -> int:
        assert self.server is not None, "start() the gateway first"
        return int(next(iter(self.server.sockets)).getsockname()[1])

    def reload(self, path: Path) -> bool:
        """Re-read the config file; the new settings apply from the next turn. False if invalid."""
        try:
            new = load_config(path)
        except ConfigError as exc:
            logger.error("config reload refused, keeping the running config:\n%s", exc)
            return False
        if self.config.gateway.port is not None:
            new.gateway.port = self.config.gateway.port  # a --port override stays
        # Security settings: dev mode stays as started (a reload can neither open endpoints without
        # the start-up banner and loopback check, nor drop a --insecure-dev); the secrets come from
        # this process's environment, which a reload cannot change, so the running ones stay.
        new.gateway.insecure_dev = self.config.gateway.insecure_dev
        for field_path in SECRET_FIELDS:
            old_parent: Any = self.config
            new_parent: Any = new
            for key in field_path[:-1]:
                old_parent, new_parent = getattr(old_parent, key), getattr(new_parent, key)
            if getattr(new_parent, field_path[-1]) is None:
                setattr(new_parent, field_path[-1], getattr(old_parent, field_path[-1]))
        errors, _ = credential_problems(new.gateway)
        if errors:
            logger.error("config reload refused, keeping the running config:\n%s", "\n".join(errors))
            return False
        listener = ("host", "port", "tls_cert", "tls_key")
        if any(getattr(new.gateway, k) != getattr(self.config.gateway, k) for k in listener):
            logger.warning("gateway host/port/TLS changes need a restart; other settings reloaded")
        previous, self.config = self.config, new
        self.services.config = new
        if self.emotion is not None:
            self.emotion.config = new  # streaming and smoothing settings of calls that start from now
        if new.asr != previous.asr:
            old_recognizer = self.services.recognizer
            self.services.recognizer = create_recognizer(new.asr)
            self.services.asr_slots = asyncio.Semaphore(new.asr.turns_in_flight())
            # Turns already in the old engine finish there; close it off the event loop.
            threading.Thread(target=old_recognizer.close, name="asr-close", daemon=True).start()
        self.services.synthesizer = create_synthesizer(new.tts)
        self.rasa.reconfigure(new.rasa)
        self.profiles.reload(path)
        logger.info("config reloaded from %s", path)
        return True

    async def stop(self, drain_timeout_s: float | None = None) -> None:
        """Graceful stop: refuse new calls, let each call's queued turns finish (reply sent), then
        close every call with 1001 going away. ``drain_timeout_s`` bounds the wait per call
        (default: the Rasa timeout + 10 s, enough for one ASR + Rasa + TTS turn)."""
        self.stopping = True
        if self.server is not None:
            self.server.close(close_connections=False)  # stop listening; live calls continue for now
            limit = self.config.rasa.timeout_s + 10 if drain_timeout_s is None else drain_timeout_s
            await asyncio.gather(
                *(self._drain(key, pipeline, limit) for key, pipeline in list(self.active.items()))
            )
            self.server.close()  # anything left (feeds): 1001 going away
            await self.server.wait_closed()
        if self._lag_probe is not None:
            self._lag_probe.cancel()
        if self.emotion is not None:
            await self.emotion.stop()
        await self.vad_hub.stop()
        await self.rasa.close()
        await self.profiles.close()
        await asyncio.to_thread(self.services.recognizer.close)

    async def _drain(self, key: int, pipeline: CallPipeline, limit_s: float) -> None:
        await pipeline.drain(limit_s)
        connection = self.connections.get(key)
        if connection is not None:
            with contextlib.suppress(ConnectionClosed):
                await connection.close(1001, "gateway shutting down")


def runtime_dir(config: EmotuneConfig) -> Path:
    """The gateway's private runtime directory (0700, ours, not a symlink): created if missing."""
    if config.gateway.runtime_dir is not None:
        path = config.resolve(config.gateway.runtime_dir)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / "emotune"
    else:
        path = Path.home() / ".cache" / "emotune" / "run"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ConfigError("gateway", [
            f"gateway.runtime_dir: {path} must be a directory (not a symlink) owned by this user with mode 0700"
        ])
    return path


def pid_file(config: EmotuneConfig) -> Path:
    """Where a running gateway on this port records its process id (for reloads)."""
    return runtime_dir(config) / f"gateway-{config.gateway.port}.pid"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22): with the
    PID it names one process, so a recycled PID is never mistaken for the gateway."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat_line.rpartition(")")[2].split()[19]


def write_pid_file(path: Path) -> None:
    """Create ``path`` exclusively (never through a symlink) with ``<pid> <start time>``; a stale
    file of a gateway that is gone is replaced."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        if _gateway_pid(path) is not None:
            raise ConfigError("gateway", [f"another gateway is running on this port ({path})"]) from None
        path.unlink()
        fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{os.getpid()} {_start_time(os.getpid())}")


def _gateway_pid(path: Path) -> int | None:
    """The PID in ``path`` if the file is a regular file of ours (not a symlink) and the process it
    names is alive, ours, and the very process that wrote it (same start time)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd) as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            return None
        fields = handle.read().split()
    if len(fields) != 2 or not fields[0].isdigit():
        return None
    pid = int(fields[0])
    try:
        if Path(f"/proc/{pid}").stat().st_uid != os.getuid():
            return None
    except OSError:
        return None
    return pid if _start_time(pid) == fields[1] else None


def request_reload(config: EmotuneConfig) -> int:
    """Ask the gateway running on ``config.gateway.port`` to re-read its config file (SIGHUP).

    The config given here was already validated by the caller (``emotune config reload``), so a
    broken file never reaches the running gateway. The PID is only signalled if the file is ours
    (not a symlink) and names a live gateway process of this user. Returns a process exit code.
    """
    path = pid_file(config)
    pid = _gateway_pid(path)
    if pid is None:
        print(f"no running gateway found for port {config.gateway.port} ({path})")
        return 1
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        print(f"cannot signal gateway pid {pid}: {exc}")
        return 1
    print(f"asked gateway (pid {pid}) to reload its config")
    return 0


_BANNER = "=" * 78


def check_startup(config: EmotuneConfig) -> None:
    """Refuse to start with a half-configured endpoint (or none); warn loudly in insecure_dev mode."""
    errors, warnings = credential_problems(config.gateway)
    if errors:
        raise ConfigError("gateway", errors)
    if config.gateway.insecure_dev:
        banner = [
            _BANNER,
            "INSECURE DEVELOPMENT MODE (gateway.insecure_dev / --insecure-dev): endpoints without a",
            "credential accept ANYONE. Never expose this gateway; it only listens on loopback.",
            *warnings,
            _BANNER,
        ]
        for line in banner:
            logger.warning("%s", line)
        print("\n".join(banner), file=sys.stderr)
        return
    for line in warnings:
        logger.warning("%s", line)


async def serve(
    config: EmotuneConfig,
    emotion_factory: EmotionFactory | None = None,
    log_dir: Path | None = DEFAULT_LOG_DIR,
    ready: Callable[[Gateway], Awaitable[None] | None] | None = None,
    config_path: Path | None = None,
) -> None:
    """Run the gateway until cancelled (Ctrl-C / SIGTERM from :func:`main`).

    With ``config_path``, SIGHUP re-reads that file: tone policy, escalation, Rasa and ASR/TTS
    settings apply to the next turn of every call; listener settings (host, port, TLS) need a
    restart. An invalid file is logged and ignored (the running config stays).
    """
    check_startup(config)
    pid_path = pid_file(config)
    gateway = Gateway(config, emotion_factory=emotion_factory, log_dir=log_dir, config_path=config_path)
    write_pid_file(pid_path)
    loop = asyncio.get_running_loop()
    if config_path is not None:
        loop.add_signal_handler(signal.SIGHUP, lambda: gateway.reload(config_path))
    try:
        await gateway.start()
        logger.info("gateway listening on %s:%d (paths: %s, /feed/{call_id})",
                    config.gateway.host, gateway.port, ", ".join(gateway.routes))
        if ready is not None:
            result = ready(gateway)
            if asyncio.iscoroutine(result):
                await result
        await asyncio.Future()  # until cancelled
    finally:
        if config_path is not None:
            loop.remove_signal_handler(signal.SIGHUP)
        pid_path.unlink(missing_ok=True)
        await gateway.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="emotune serve", description="Run the emotion-aware voice gateway.")
    parser.add_argument("--config", type=Path, default=None, help="operator config (default: built-in defaults)")
    parser.add_argument("--port", type=int, default=None, help="override gateway.port")
    parser.add_argument("--log-dir", type=Path, default=DEFAULT_LOG_DIR, help="per-call JSON-lines logs")
    parser.add_argument(
        "--log-format", choices=("text", "json"), default=None,
        help="process log format (default: gateway.log_format; env EMOTUNE_GATEWAY__LOG_FORMAT)",
    )
    parser.add_argument(
        "--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), default=None,
        help="default: gateway.log_level. DEBUG adds transcripts (caller and bot text); INFO never logs them",
    )
    parser.add_argument(
        "--insecure-dev", action="store_true",
        help="development only: endpoints without a credential accept anyone (loopback only, loud warning)",
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if args.port is not None:
            config.gateway.port = args.port
        if args.insecure_dev:
            config.gateway.insecure_dev = True
    except ConfigError as exc:
        configure_logging(json_lines=args.log_format == "json", level=args.log_level or "INFO")
        print(exc)
        return 2
    configure_logging(
        json_lines=(args.log_format or config.gateway.log_format) == "json",
        level=args.log_level or config.gateway.log_level,
    )

    started = time.monotonic()
    return run_until_stopped(
        lambda: serve(config, log_dir=args.log_dir, config_path=args.config),
        lambda: logger.info("gateway stopped after %.0f s", time.monotonic() - started),
    )


def run_until_stopped(body: Callable[[], Awaitable[None]], on_stop: Callable[[], None] | None = None) -> int:
    """Run ``body()`` on a new event loop until it returns or SIGINT/SIGTERM cancels it (its
    ``finally`` blocks then stop what it started); returns the process exit code. An EmotuneError
    (e.g. a missing or corrupt model) refuses to start with a message naming the file."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await body()
        except asyncio.CancelledError:
            if on_stop is not None:
                on_stop()

    try:
        asyncio.run(run())
    except EmotuneError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
