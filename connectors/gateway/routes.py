"""The gateway's paths: which protocol core serves each, and how its peer is authenticated.

Authentication runs before the websocket upgrade (in the server's ``process_request``): a peer
that fails it gets an HTTP 401 and no audio of it is ever read. The checks themselves are the
protocol packages' pure functions; this module only wires them to the operator config (read at
each handshake, so a reloaded config applies to the next connection).

Fail closed: an endpoint whose credential is not configured refuses everyone, unless the gateway
runs in ``gateway.insecure_dev`` mode (loopback only, announced loudly at start-up). Roles are
separate: ``gateway.auth_token`` is the callers' (``/v1/stream``), ``gateway.feed_token`` the
supervisors' (``/feed``), ``gateway.metrics_token`` the scraper's (``/metrics``).
"""

from __future__ import annotations

import http
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.http11 import Request

from connectors.gateway.handoffs import HANDOFF_PATH, HandoffStore
from connectors.gateway.nonce_store import ClaimedNonce, RedisNonceStore
from connectors.protocols.audiohook import AudioHookServer
from connectors.protocols.base import CallProtocol, EscalationTracker
from connectors.protocols.emotune_ws import DEFAULT_PROFILES, EmotuneWsServer, verify_bearer_token
from connectors.protocols.http_signatures import NonceCache, verify_api_key, verify_signature
from connectors.protocols.twilio import (
    STREAM_TOKEN_PARAMETER,
    TwilioMediaStream,
    mint_stream_token,
    stream_twiml,
    validate_twilio_signature,
    verify_stream_token,
)
from emotune.config import EmotuneConfig, GatewayConfig
from emotune.errors import AuthenticationError

__all__ = [
    "Route", "bearer_token", "build_routes", "check_feed", "check_metrics", "credential_problems", "handoff_lookup",
    "secret", "signed_url", "twilio_voice_twiml",
]

STREAM_TOKEN_TTL_S = 120  # Twilio opens the stream right after it fetched the TwiML

Authenticate = Callable[[Request, str], Awaitable[None] | None]


@dataclass
class Route:
    name: str
    make_core: Callable[[Request], CallProtocol]
    authenticate: Authenticate  # (upgrade request, "ws" or "wss"); raises AuthenticationError


def secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def bearer_token(request: Request, query_fallback: bool = False) -> str | None:
    """The ``Authorization: Bearer`` token; ``?token=`` only where ``query_fallback`` (the feed page:
    a browser's WebSocket cannot set headers)."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    if not query_fallback:
        return None
    return parse_qs(urlsplit(request.path).query).get("token", [None])[0]


def _check(expected: str | None, offered: str | None, what: str, env: str, dev: bool) -> None:
    if expected is None:
        if dev:
            return  # insecure_dev: announced at start-up
        raise AuthenticationError(f"{what} is disabled: set {env}")
    if not offered:
        raise AuthenticationError(f"{what}: missing bearer token (Authorization: Bearer ...)")
    verify_bearer_token(f"Bearer {offered}", expected)


def check_feed(gateway: GatewayConfig, request: Request) -> None:
    """Supervisors only: the callers' token is not accepted here."""
    _check(secret(gateway.feed_token), bearer_token(request, query_fallback=True), "the feed",
           "EMOTUNE_GATEWAY__FEED_TOKEN", gateway.insecure_dev)


def handoff_lookup(gateway: GatewayConfig, store: HandoffStore, request: Request) -> tuple[http.HTTPStatus, bytes]:
    """``GET /v1/handoff/{call_id}``: the hand-off context the agent desktop fetches when the
    transferred call rings (docs/handoff.md). The supervisors' token (``gateway.feed_token``), in the
    header only: the body holds the caller's words and numbers. 404 once unknown or expired."""
    try:
        _check(secret(gateway.feed_token), bearer_token(request), "/v1/handoff", "EMOTUNE_GATEWAY__FEED_TOKEN",
               gateway.insecure_dev)  # fmt: skip
    except AuthenticationError as exc:
        return http.HTTPStatus.UNAUTHORIZED, json.dumps({"error": str(exc)}).encode()
    call_id = unquote(urlsplit(request.path).path.removeprefix(HANDOFF_PATH))
    record = store.get(call_id) if call_id else None
    if record is None:
        message = f"no hand-off context for call {call_id[:128]!r} (none happened, or it expired after {store.ttl_s:.0f} s)"
        return http.HTTPStatus.NOT_FOUND, json.dumps({"error": message}).encode()
    return http.HTTPStatus.OK, json.dumps(record.as_json()).encode()


def check_metrics(gateway: GatewayConfig, request: Request) -> None:
    _check(secret(gateway.metrics_token), bearer_token(request), "/metrics",
           "EMOTUNE_GATEWAY__METRICS_TOKEN", gateway.insecure_dev)


def credential_problems(gateway: GatewayConfig) -> tuple[list[str], list[str]]:
    """(reasons to refuse to start, warnings). A half-configured endpoint refuses to start; with
    nothing configured at all the gateway would refuse every call, so that refuses too."""
    errors: list[str] = []
    warnings: list[str] = []
    dev = gateway.insecure_dev
    genesys = gateway.genesys
    if genesys.api_key is not None and genesys.client_secret is None:
        message = ("gateway.genesys: an API key without EMOTUNE_GATEWAY__GENESYS__CLIENT_SECRET: the AudioHook "
                   "HTTP message signature cannot be checked")
        (warnings if dev else errors).append(message + (" (insecure_dev: NOT CHECKED)" if dev else ""))
    if gateway.twilio.auth_token is not None and gateway.public_url is None:
        message = ("gateway.public_url is not set: Twilio signs the URL it connects to, which the gateway "
                   "cannot know behind a load balancer")
        (warnings if dev else errors).append(message + (" (insecure_dev: guessed from Host)" if dev else ""))
    if gateway.twilio.auth_token is None and not dev:
        warnings.append("no EMOTUNE_GATEWAY__TWILIO__AUTH_TOKEN: /twilio refuses every connection")
    if gateway.auth_token is None and not dev:
        warnings.append("no EMOTUNE_GATEWAY__AUTH_TOKEN: /v1/stream refuses every connection")
    if gateway.feed_token is None and not dev:
        warnings.append("no EMOTUNE_GATEWAY__FEED_TOKEN: /feed refuses every connection")
    if gateway.metrics_token is None and not dev:
        warnings.append("no EMOTUNE_GATEWAY__METRICS_TOKEN: /metrics refuses every scrape")
    if dev:
        open_paths = [name for name, value in (
            ("/twilio (no signature check)", gateway.twilio.auth_token), ("/v1/stream", gateway.auth_token),
            ("/feed", gateway.feed_token), ("/metrics", gateway.metrics_token),
        ) if value is None]  # fmt: skip
        if open_paths:
            warnings.append("OPEN TO ANYONE: " + ", ".join(open_paths))
    callers = (gateway.twilio.auth_token, gateway.auth_token, genesys.api_key)
    if not dev and all(value is None for value in callers):
        errors.append(
            "no endpoint has credentials (EMOTUNE_GATEWAY__AUTH_TOKEN, EMOTUNE_GATEWAY__TWILIO__AUTH_TOKEN, "
            "EMOTUNE_GATEWAY__GENESYS__API_KEY + __CLIENT_SECRET): every call would be refused. Set one, or "
            "run `emotune serve --insecure-dev` on loopback for development"
        )
    if dev and gateway.host not in ("127.0.0.1", "::1", "localhost"):
        errors.append(f"insecure_dev accepts unauthenticated peers: only on loopback, not host {gateway.host!r}")
    return errors, warnings


def signed_url(gateway: GatewayConfig, request: Request, scheme: str) -> str:
    """The URL Twilio signed: ``gateway.public_url`` + the request path (query included)."""
    if gateway.public_url is not None:
        return gateway.public_url.rstrip("/") + request.path
    return f"{scheme}://{request.headers.get('Host', '')}{request.path}"  # insecure_dev only


def twilio_voice_twiml(gateway: GatewayConfig, request: Request, now: float) -> str:
    """The answer to Twilio's voice webhook (``GET /twilio/voice?CallSid=...``, signed over the
    https form of ``gateway.public_url``): TwiML connecting the call to ``/twilio`` with a per-call
    stream token. Raises AuthenticationError for an unsigned or wrongly signed request."""
    token = secret(gateway.twilio.auth_token)
    if token is None or gateway.public_url is None:
        raise AuthenticationError("Twilio is disabled: set EMOTUNE_GATEWAY__TWILIO__AUTH_TOKEN and gateway.public_url")
    base = gateway.public_url.rstrip("/")
    webhook = base.replace("wss://", "https://", 1).replace("ws://", "http://", 1)  # the same host over HTTP
    validate_twilio_signature(token, request.headers.get("X-Twilio-Signature"), webhook + request.path)
    call_sid = parse_qs(urlsplit(request.path).query).get("CallSid", [""])[0]
    if not call_sid:
        raise AuthenticationError("the voice webhook carries no CallSid")
    return stream_twiml(base + "/twilio", mint_stream_token(token, call_sid, int(now) + STREAM_TOKEN_TTL_S))


def build_routes(
    current: Callable[[], EmotuneConfig], profiles: Callable[[], Sequence[str]] | None = None
) -> dict[str, Route]:
    """Path -> route; ``current()`` returns the running config, ``profiles()`` the profiles a call on
    our protocol may name (the default first)."""
    nonces = NonceCache()
    used_stream_tokens: dict[str, float] = {}  # one start per minted token (until it expires)
    shared: dict[str, RedisNonceStore] = {}

    def twilio_auth(request: Request, scheme: str) -> None:
        gateway = current().gateway
        token = secret(gateway.twilio.auth_token)
        if token is None:
            if gateway.insecure_dev:
                return
            raise AuthenticationError("Twilio is disabled: set EMOTUNE_GATEWAY__TWILIO__AUTH_TOKEN")
        if gateway.public_url is None and not gateway.insecure_dev:
            raise AuthenticationError("Twilio signatures need gateway.public_url")
        validate_twilio_signature(token, request.headers.get("X-Twilio-Signature"), signed_url(gateway, request, scheme))

    def check_twilio_start(call_sid: str, parameters: Mapping[str, str]) -> None:
        gateway = current().gateway
        token = secret(gateway.twilio.auth_token)
        if token is None or not gateway.twilio.require_stream_token:
            return  # insecure_dev without a token, or the operator's own TwiML
        offered = parameters.get(STREAM_TOKEN_PARAMETER)
        now = time.time()
        expiry = verify_stream_token(token, call_sid, offered, now)
        for old in [t for t, until in used_stream_tokens.items() if until < now]:
            del used_stream_tokens[old]
        assert offered is not None
        if offered in used_stream_tokens:
            raise AuthenticationError("stream token was already used (replayed stream)")
        used_stream_tokens[offered] = expiry

    def make_twilio(request: Request) -> CallProtocol:
        twilio = current().gateway.twilio
        return TwilioMediaStream(transfer_to=twilio.transfer_to, check_start=check_twilio_start,
                                 agent_context=twilio.agent_context,
                                 transfer_announcement=twilio.transfer_announcement,
                                 announcement_language=twilio.transfer_announcement_language)  # fmt: skip

    def audiohook_auth(request: Request, scheme: str) -> Awaitable[None] | None:
        gateway = current().gateway
        genesys = gateway.genesys
        api_key = secret(genesys.api_key)
        if api_key is None:
            raise AuthenticationError("AudioHook is disabled: set EMOTUNE_GATEWAY__GENESYS__API_KEY")
        headers = list(request.headers.raw_items())
        verify_api_key(headers, api_key)
        client_secret = secret(genesys.client_secret)
        if client_secret is None:
            if gateway.insecure_dev:
                return None  # announced at start-up: the signature is NOT checked
            raise AuthenticationError("AudioHook signature cannot be checked: set EMOTUNE_GATEWAY__GENESYS__CLIENT_SECRET")
        now = time.time()
        if gateway.nonce_store is None:
            verify_signature(headers, request.path, request.headers.get("Host", ""), client_secret, now, nonces,
                             max_age_s=genesys.max_clock_skew_s)  # fmt: skip
            return None
        claimed = ClaimedNonce()
        verify_signature(headers, request.path, request.headers.get("Host", ""), client_secret, now, claimed,
                         max_age_s=genesys.max_clock_skew_s)  # fmt: skip
        store = shared.get(gateway.nonce_store)
        if store is None:
            store = shared[gateway.nonce_store] = RedisNonceStore(gateway.nonce_store)
        assert claimed.nonce is not None
        return store.claim(claimed.nonce, now, claimed.keep_until)

    def make_audiohook(request: Request) -> CallProtocol:
        config = current()
        return AudioHookServer(
            session_id=request.headers.get("Audiohook-Session-Id"),
            organization_id=request.headers.get("Audiohook-Organization-Id"),
            escalation=EscalationTracker.from_config(config.escalation),
            max_frame_bytes=config.gateway.max_frame_bytes,
        )

    def stream_auth(request: Request, scheme: str) -> None:
        gateway = current().gateway
        token = secret(gateway.auth_token)
        if token is None:
            if gateway.insecure_dev:
                return
            raise AuthenticationError("/v1/stream is disabled: set EMOTUNE_GATEWAY__AUTH_TOKEN")
        # At the upgrade, in the header: an unauthenticated socket never holds a call slot.
        verify_bearer_token(request.headers.get("Authorization"), token)

    def make_stream(request: Request) -> CallProtocol:
        return EmotuneWsServer(auth_token=None, authenticated=True, max_frame_bytes=current().gateway.max_frame_bytes,
                               profiles=tuple(profiles()) if profiles is not None else DEFAULT_PROFILES)

    return {
        "/twilio": Route("twilio", make_twilio, twilio_auth),
        "/audiohook": Route("audiohook", make_audiohook, audiohook_auth),
        "/v1/stream": Route("emotune-ws", make_stream, stream_auth),
    }
