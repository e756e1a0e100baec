"""The voice gateway: one asyncio websocket server, one pipeline per call.

Paths (one port)::

    /twilio        Twilio Media Streams (bidirectional <Connect><Stream>); X-Twilio-Signature
                   is checked when EMOTUNE_GATEWAY__TWILIO__AUTH_TOKEN is set
    /audiohook     Genesys AudioHook (monitor): X-API-KEY + HTTP message signature
    /v1/stream     our own protocol ("emotune-ws", docs/protocol.md): Bearer token
    /feed/{call}   live emotion feed for supervisors (``*`` = every call): ?token= or Bearer
    /feed.html     the feed page (plain HTTP GET), /healthz  liveness + active calls, /metrics Prometheus text format

Authentication happens in ``process_request``, i.e. before the websocket upgrade: a peer that
fails it gets an HTTP 401/403 and no audio of it is ever read. ``serve(config)`` runs until
cancelled; ``main(argv)`` is the command-line entry (``emotune serve`` wires it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http
import json
import logging
import os
import signal
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from connectors.dialogue.rasa_client import RasaClient
from connectors.dialogue.transfer import TwilioRestTransfer
from connectors.gateway.call import CallPipeline, CallServices, EmotionAnalyzer, EmotionFactory
from connectors.gateway.feed import ALL_CALLS, STATIC_DIR, FeedHub, check_token
from connectors.gateway.logging_json import call_scope, configure_logging
from connectors.gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from connectors.gateway.metrics import GatewayMetrics
from connectors.protocols.base import CallProtocol, Outgoing, ProtocolViolation
from connectors.speech.asr import ASR_SAMPLE_RATE, create_recognizer
from connectors.speech.tts import create_synthesizer
from emotune.config import EmotuneConfig, load_config
from emotune.errors import AuthenticationError, ConfigError, EmotuneError, NotBuiltError

__all__ = [
    "DEFAULT_LOG_DIR",
    "Gateway",
    "runtime_emotion_factory",
    "serve",
    "main",
    "pid_file",
    "request_reload",
]

logger = logging.getLogger(__name__)

DEFAULT_LOG_DIR = Path("reports/calls")
_PAGES = {"/feed.html": ("feed.html", "text/html; charset=utf-8")}


def runtime_emotion_factory(config: EmotuneConfig) -> EmotionFactory:
    """Per-call emotion streams from the torch-free runtime, all sharing one ONNX session."""
    try:
        from emotion_runtime import EmotionModel, EmotionStream
    except ImportError as exc:
        raise NotBuiltError("the streaming emotion runtime (emotion_runtime) is not available") from exc
    model = EmotionModel.load(
        config.model_path(), config.sidecar_path(), intra_op_threads=config.model.intra_op_threads
    )

    def factory() -> EmotionAnalyzer:
        stream = EmotionStream(
            model,
            streaming=config.streaming,
            smoothing=config.smoothing,
            encoding="pcm16",
            sample_rate=ASR_SAMPLE_RATE,
        )
        return _RuntimeStream(stream)

    return factory


class _RuntimeStream:
    """Adapts an ``emotion_runtime.EmotionStream`` (exact 20 ms PCM16 frames in, typed events out)
    to the pipeline's analyser (16 kHz float chunks of any length in, CONTRACTS.md dicts out)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._pending = b""

    def push(self, samples: np.ndarray) -> list[dict[str, Any]]:
        self._pending += (np.clip(samples, -1.0, 32767 / 32768) * 32768.0).astype("<i2").tobytes()
        size = self._stream.frame_bytes
        events: list[dict[str, Any]] = []
        while len(self._pending) >= size:
            frame, self._pending = self._pending[:size], self._pending[size:]
            events.extend(event.to_dict() for event in self._stream.push(frame))
        return events


@dataclass
class _Route:
    name: str
    make_core: Callable[[Request], CallProtocol]
    authenticate: Callable[[Request, str], None]


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def _bearer(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    query = parse_qs(urlsplit(request.path).query)
    return query.get("token", [None])[0]


class Gateway:
    """Owns the shared services (engines, Rasa client, feed) and the websocket server."""

    def __init__(
        self,
        config: EmotuneConfig,
        emotion_factory: EmotionFactory | None = None,
        log_dir: Path | None = DEFAULT_LOG_DIR,
        rasa_url: str | None = None,
        end_silence_s: float = 0.6,
    ) -> None:
        self.config = config
        self.feed = FeedHub()
        self.metrics = GatewayMetrics()
        self.rasa = RasaClient(config.rasa, url=rasa_url)
        twilio_token = _secret(config.gateway.twilio.auth_token)
        self.services = CallServices(
            config=config,
            recognizer=create_recognizer(config.asr),
            synthesizer=create_synthesizer(config.tts),
            rasa=self.rasa,
            feed=self.feed,
            emotion_factory=emotion_factory or runtime_emotion_factory(config),
            log_dir=config.resolve(Path(log_dir)) if log_dir is not None else None,
            on_transfer=TwilioRestTransfer(twilio_token),
            end_silence_s=end_silence_s,
            metrics=self.metrics,
            asr_slots=asyncio.Semaphore(config.asr.concurrency()),
        )
        self.active: dict[int, CallPipeline] = {}
        self.connections: dict[int, ServerConnection] = {}
        self.stopping = False
        self.server: Server | None = None
        self.routes = self._build_routes()

    # -- routing and authentication -------------------------------------------------------------
    def _build_routes(self) -> dict[str, _Route]:
        gateway = self.config.gateway
        routes: dict[str, _Route] = {}

        from connectors.protocols.twilio import TwilioMediaStream, validate_twilio_signature

        def twilio_auth(request: Request, scheme: str) -> None:
            token = _secret(gateway.twilio.auth_token)
            if token is None:
                return  # no token configured: the operator runs without signature checks
            url = f"{scheme}://{request.headers.get('Host', '')}{request.path}"
            validate_twilio_signature(token, request.headers.get("X-Twilio-Signature"), url)

        routes["/twilio"] = _Route(
            "twilio", lambda request: TwilioMediaStream(transfer_to=gateway.twilio.transfer_to), twilio_auth
        )

        from connectors.protocols.audiohook import AudioHookServer
        from connectors.protocols.base import EscalationTracker
        from connectors.protocols.emotune_ws import EmotuneWsServer, verify_bearer_token
        from connectors.protocols.http_signatures import NonceCache, verify_api_key, verify_signature

        escalation = self.config.escalation
        nonces = NonceCache()

        def audiohook_auth(request: Request, scheme: str) -> None:
            api_key = _secret(gateway.genesys.api_key)
            if api_key is None:
                raise AuthenticationError("AudioHook is disabled: set EMOTUNE_GATEWAY__GENESYS__API_KEY")
            headers = list(request.headers.raw_items())
            verify_api_key(headers, api_key)
            secret = _secret(gateway.genesys.client_secret)
            if secret is not None:
                verify_signature(
                    headers, request.path, request.headers.get("Host", ""), secret, time.time(), nonces,
                    max_age_s=gateway.genesys.max_clock_skew_s,
                )

        def make_audiohook(request: Request) -> CallProtocol:
            return AudioHookServer(
                session_id=request.headers.get("Audiohook-Session-Id"),
                organization_id=request.headers.get("Audiohook-Organization-Id"),
                escalation=EscalationTracker(
                    escalation.negative_emotions, escalation.streak_turns, escalation.min_confidence
                ),
                max_frame_bytes=gateway.max_frame_bytes,
            )

        routes["/audiohook"] = _Route("audiohook", make_audiohook, audiohook_auth)

        def stream_auth(request: Request, scheme: str) -> None:
            token = _secret(gateway.auth_token)
            header = request.headers.get("Authorization")
            if token is not None and header is not None:
                verify_bearer_token(header, token)  # else the core checks the token in `start`

        def make_stream(request: Request) -> CallProtocol:
            token = _secret(gateway.auth_token)
            return EmotuneWsServer(
                auth_token=token,
                authenticated=token is not None and request.headers.get("Authorization") is not None,
                max_frame_bytes=gateway.max_frame_bytes,
            )

        routes["/v1/stream"] = _Route("emotune-ws", make_stream, stream_auth)
        return routes

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

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return self._plain_http(path)
        scheme = "wss" if self.config.gateway.tls_cert else "ws"
        try:
            if path.startswith("/feed/"):
                check_token(_secret(self.config.gateway.auth_token), _bearer(request))
                return None
            route = self.routes.get(path)
            if route is None:
                self.metrics.refusals_total.inc("bad_path")
                return self._http_response(http.HTTPStatus.NOT_FOUND, b"unknown path\n", "text/plain")
            route.authenticate(request, scheme)
        except AuthenticationError as exc:
            logger.warning("refused %s from %s: %s", path, connection.remote_address, exc)
            self.metrics.refusals_total.inc("auth")
            return self._http_response(http.HTTPStatus.UNAUTHORIZED, f"{exc}\n".encode(), "text/plain")
        if len(self.active) >= self.config.gateway.max_calls:
            self.metrics.refusals_total.inc("capacity")
            return self._http_response(
                http.HTTPStatus.SERVICE_UNAVAILABLE, b"too many concurrent calls\n", "text/plain"
            )
        return None

    def _plain_http(self, path: str) -> Response:
        if path in _PAGES:
            filename, content_type = _PAGES[path]
            body = (STATIC_DIR / filename).read_bytes()
            return self._http_response(http.HTTPStatus.OK, body, content_type)
        if path == "/healthz":
            body = json.dumps({"status": "ok", "active_calls": len(self.active)}).encode()
            return self._http_response(http.HTTPStatus.OK, body, "application/json")
        if path == "/metrics":
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
        stream = self.feed.stream(call_id)
        try:
            while True:
                next_message = asyncio.ensure_future(anext(stream))
                done, _ = await asyncio.wait({next_message, closed}, return_when=asyncio.FIRST_COMPLETED)
                if closed in done:
                    next_message.cancel()
                    return
                await connection.send(next_message.result())
        except ConnectionClosed:
            return
        finally:
            closed.cancel()
            await stream.aclose()

    async def _serve_call(self, connection: ServerConnection, route: _Route, core: CallProtocol) -> None:
        async def send(message: Outgoing) -> None:
            await connection.send(message)

        pipeline = CallPipeline(self.services, core, send, route.name)
        self.active[id(connection)] = pipeline
        self.connections[id(connection)] = connection
        self.metrics.calls_total.inc(route.name)
        self.metrics.active_calls.set(len(self.active))
        reason = "peer closed"
        rate_limited = False
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
                    if isinstance(event, ProtocolViolation):
                        self.metrics.errors_total.inc("protocol_violation")
                        logger.warning("%s call %s: %s", route.name, pipeline.call_id, event.message)
                    await pipeline.handle(event)
                if core.close_request is not None:
                    reason = core.close_request.reason or "protocol close"
        except ConnectionClosed:
            reason = "gateway shutdown" if self.stopping else "peer closed"
        except EmotuneError as exc:
            self.metrics.errors_total.inc(type(exc).__name__)
            logger.exception("call %s failed", pipeline.call_id)
            reason = f"error: {exc}"
        finally:
            await pipeline.finish(reason)
            self.active.pop(id(connection), None)
            self.connections.pop(id(connection), None)
            self.metrics.active_calls.set(len(self.active))
            close = core.close_request
            with contextlib.suppress(ConnectionClosed):
                await self._flush(connection, core.data_to_send())
                if rate_limited:
                    await connection.close(1008, "inbound message rate limit exceeded")  # policy violation
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
        listener = ("host", "port", "tls_cert", "tls_key")
        if any(getattr(new.gateway, k) != getattr(self.config.gateway, k) for k in listener):
            logger.warning("gateway host/port/TLS changes need a restart; other settings reloaded")
        previous, self.config = self.config, new
        self.services.config = new
        if new.asr != previous.asr:
            old_recognizer = self.services.recognizer
            self.services.recognizer = create_recognizer(new.asr)
            self.services.asr_slots = asyncio.Semaphore(new.asr.concurrency())
            # Turns already in the old engine finish there; close it off the event loop.
            threading.Thread(target=old_recognizer.close, name="asr-close", daemon=True).start()
        self.services.synthesizer = create_synthesizer(new.tts)
        self.rasa.reconfigure(new.rasa)
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
        await self.rasa.close()
        await asyncio.to_thread(self.services.recognizer.close)

    async def _drain(self, key: int, pipeline: CallPipeline, limit_s: float) -> None:
        await pipeline.drain(limit_s)
        connection = self.connections.get(key)
        if connection is not None:
            with contextlib.suppress(ConnectionClosed):
                await connection.close(1001, "gateway shutting down")


def pid_file(config: EmotuneConfig) -> Path:
    """Where a running gateway on this host/port records its process id (for reloads)."""
    return Path(tempfile.gettempdir()) / f"emotune-gateway-{config.gateway.port}.pid"


def request_reload(config: EmotuneConfig) -> int:
    """Ask the gateway running on ``config.gateway.port`` to re-read its config file (SIGHUP).

    The config given here was already validated by the caller (``emotune config reload``), so a
    broken file never reaches the running gateway. Returns a process exit code.
    """
    path = pid_file(config)
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        print(f"no running gateway found for port {config.gateway.port} ({path}): {exc}")
        return 1
    print(f"asked gateway (pid {pid}) to reload its config")
    return 0


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
    gateway = Gateway(config, emotion_factory=emotion_factory, log_dir=log_dir)
    await gateway.start()
    logger.info("gateway listening on %s:%d (paths: %s, /feed/{call_id})",
                config.gateway.host, gateway.port, ", ".join(gateway.routes))
    if config.gateway.auth_token is None:
        logger.warning("no EMOTUNE_GATEWAY__AUTH_TOKEN: /v1/stream accepts anyone, the /feed is disabled")
    if config.gateway.twilio.auth_token is None:
        logger.warning("no Twilio auth token: X-Twilio-Signature is not checked and transfers are not applied")
    if config.gateway.genesys.api_key is None:
        logger.warning("no Genesys API key: /audiohook refuses every connection")
    pid_path = pid_file(config)
    pid_path.write_text(str(os.getpid()))
    loop = asyncio.get_running_loop()
    if config_path is not None:
        loop.add_signal_handler(signal.SIGHUP, lambda: gateway.reload(config_path))
    try:
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
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if args.port is not None:
            config.gateway.port = args.port
    except ConfigError as exc:
        configure_logging(json_lines=args.log_format == "json", level=args.log_level or "INFO")
        print(exc)
        return 2
    configure_logging(
        json_lines=(args.log_format or config.gateway.log_format) == "json",
        level=args.log_level or config.gateway.log_level,
    )

    async def run() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        started = time.monotonic()
        try:
            await serve(config, log_dir=args.log_dir, config_path=args.config)
        except asyncio.CancelledError:
            logger.info("gateway stopped after %.0f s", time.monotonic() - started)

    try:
        asyncio.run(run())
    except EmotuneError as exc:
        # e.g. a missing/corrupt model or sidecar: refuse to start, naming the file.
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
