"""Where AudioHook signature nonces are remembered: in this process, or in Redis for several replicas.

A signed AudioHook upgrade may be replayed within the signature's clock-skew window. One gateway
refuses a replay with its in-process :class:`~connectors.protocols.http_signatures.NonceCache`; with
several replicas behind a load balancer a replay sent to another replica would pass, so
``gateway.nonce_store: redis://host:port/db`` keeps the nonces in Redis (``SET key 1 NX PX ttl``: the
first replica to claim a nonce wins, every later claim anywhere is refused).

The Redis client here speaks the four RESP commands it needs over asyncio streams (no client
library in the toolkit venv). A Redis that cannot be reached fails closed: the upgrade is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from urllib.parse import urlsplit

from emotune.errors import AuthenticationError, ConfigError

__all__ = ["ClaimedNonce", "RedisNonceStore"]


class ClaimedNonce:
    """A ``nonce_cache`` for ``verify_signature`` that only records the nonce the signature carries,
    so that it can be claimed in Redis (asynchronously) once the signature is known to be valid."""

    def __init__(self) -> None:
        self.nonce: str | None = None
        self.keep_until = 0.0

    def check_and_remember(self, nonce: str, now: float, keep_until: float) -> None:
        self.nonce, self.keep_until = nonce, keep_until


def _command(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class RedisNonceStore:
    """Nonces shared by every gateway replica, in one Redis (keys ``emotune:nonce:<nonce>``)."""

    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "redis" or not parts.hostname:
            raise ConfigError("gateway", [f"gateway.nonce_store: {url!r} is not redis://host:port/db"])
        self.host, self.port = parts.hostname, parts.port or 6379
        self.db = parts.path.strip("/") or "0"
        self.password = parts.password
        self.timeout_s = timeout_s
        self._lock = asyncio.Lock()
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def _reply(self, reader: asyncio.StreamReader) -> bytes | None:
        line = await reader.readline()
        if not line:
            raise ConnectionError("Redis closed the connection")
        kind, body = line[:1], line[1:].rstrip(b"\r\n")
        if kind == b"-":
            raise ConnectionError(f"Redis: {body.decode(errors='replace')}")
        if kind == b"$":
            size = int(body)
            if size < 0:
                return None
            data = await reader.readexactly(size + 2)
            return data[:-2]
        return body  # +OK, :1

    async def _call(self, *parts: str) -> bytes | None:
        if self._streams is None:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self._streams = (reader, writer)
            if self.password:
                await self._send_and_read("AUTH", self.password)
            await self._send_and_read("SELECT", self.db)
        return await self._send_and_read(*parts)

    async def _send_and_read(self, *parts: str) -> bytes | None:
        assert self._streams is not None
        reader, writer = self._streams
        writer.write(_command(*parts))
        await writer.drain()
        return await self._reply(reader)

    async def claim(self, nonce: str, now: float, keep_until: float) -> None:
        """Raise AuthenticationError if any replica claimed ``nonce`` already (or Redis is unreachable)."""
        ttl_ms = max(1, math.ceil((keep_until - now) * 1000))
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout_s):
                    answer = await self._call("SET", f"emotune:nonce:{nonce}", "1", "NX", "PX", str(ttl_ms))
            except (OSError, ConnectionError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
                await self.close()
                raise AuthenticationError(f"nonce store unavailable, refusing ({exc or type(exc).__name__})") from exc
        if answer is None:
            raise AuthenticationError("signature nonce was already used (replayed request)")

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()
