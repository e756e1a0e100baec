"""The gateway's websocket paths: which protocol core serves each, and how its peer is authenticated.

Authentication runs before the websocket upgrade (in the server's ``process_request``): a peer
that fails it gets an HTTP 401 and no audio of it is ever read. The checks themselves are the
protocol packages' pure functions; this module only wires them to the operator config (read at
each handshake, so a reloaded config applies to the next connection).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.http11 import Request

from connectors.protocols.audiohook import AudioHookServer
from connectors.protocols.base import CallProtocol, EscalationTracker
from connectors.protocols.emotune_ws import EmotuneWsServer, verify_bearer_token
from connectors.protocols.http_signatures import NonceCache, verify_api_key, verify_signature
from connectors.protocols.twilio import TwilioMediaStream, validate_twilio_signature
from emotune.config import EmotuneConfig
from emotune.errors import AuthenticationError

__all__ = ["Route", "bearer_token", "build_routes", "secret"]


@dataclass
class Route:
    name: str
    make_core: Callable[[Request], CallProtocol]
    authenticate: Callable[[Request, str], None]  # (upgrade request, "ws" or "wss"); raises AuthenticationError


def secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    query = parse_qs(urlsplit(request.path).query)
    return query.get("token", [None])[0]


def build_routes(current: Callable[[], EmotuneConfig]) -> dict[str, Route]:
    """Path -> route; ``current()`` returns the running config."""
    nonces = NonceCache()

    def twilio_auth(request: Request, scheme: str) -> None:
        token = secret(current().gateway.twilio.auth_token)
        if token is None:
            return  # no token configured: the operator runs without signature checks
        url = f"{scheme}://{request.headers.get('Host', '')}{request.path}"
        validate_twilio_signature(token, request.headers.get("X-Twilio-Signature"), url)

    def make_twilio(request: Request) -> CallProtocol:
        return TwilioMediaStream(transfer_to=current().gateway.twilio.transfer_to)

    def audiohook_auth(request: Request, scheme: str) -> None:
        genesys = current().gateway.genesys
        api_key = secret(genesys.api_key)
        if api_key is None:
            raise AuthenticationError("AudioHook is disabled: set EMOTUNE_GATEWAY__GENESYS__API_KEY")
        headers = list(request.headers.raw_items())
        verify_api_key(headers, api_key)
        client_secret = secret(genesys.client_secret)
        if client_secret is not None:
            verify_signature(
                headers, request.path, request.headers.get("Host", ""), client_secret, time.time(), nonces,
                max_age_s=genesys.max_clock_skew_s,
            )

    def make_audiohook(request: Request) -> CallProtocol:
        config = current()
        return AudioHookServer(
            session_id=request.headers.get("Audiohook-Session-Id"),
            organization_id=request.headers.get("Audiohook-Organization-Id"),
            escalation=EscalationTracker.from_config(config.escalation),
            max_frame_bytes=config.gateway.max_frame_bytes,
        )

    def stream_auth(request: Request, scheme: str) -> None:
        token = secret(current().gateway.auth_token)
        header = request.headers.get("Authorization")
        if token is not None and header is not None:
            verify_bearer_token(header, token)  # else the core checks the token in `start`

    def make_stream(request: Request) -> CallProtocol:
        gateway = current().gateway
        token = secret(gateway.auth_token)
        return EmotuneWsServer(
            auth_token=token,
            authenticated=token is not None and request.headers.get("Authorization") is not None,
            max_frame_bytes=gateway.max_frame_bytes,
        )

    return {
        "/twilio": Route("twilio", make_twilio, twilio_auth),
        "/audiohook": Route("audiohook", make_audiohook, audiohook_auth),
        "/v1/stream": Route("emotune-ws", make_stream, stream_auth),
    }
