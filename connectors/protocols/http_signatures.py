"""HTTP Message Signatures (RFC 9421) with HMAC-SHA256, as Genesys AudioHook signs its upgrade.

Genesys signs the websocket upgrade request with the integration's client secret (base64) and
names the API key as ``keyid``. Headers look like::

    Signature-Input: sig1=("@request-target" "@authority" "audiohook-organization-id"
        "audiohook-session-id" "audiohook-correlation-id" "x-api-key");keyid="<api key>";
        nonce="<random>";alg="hmac-sha256";created=1641013200;expires=1641013500
    Signature: sig1=:<base64 HMAC-SHA256 of the signature base>:

The signature base is one line per covered component, ``"<name>": <value>``, then
``"@signature-params": <the inner list and its parameters>``, joined by ``\\n``.

Everything here is pure: time comes in as ``now`` (Unix seconds) and replay protection uses a
:class:`NonceCache` the caller keeps (one per gateway process).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from emotune.errors import AuthenticationError, ConfigError

__all__ = [
    "AUDIOHOOK_COVERED_COMPONENTS",
    "SignatureParameters",
    "NonceCache",
    "NonceRecorder",
    "HeaderLike",
    "normalize_headers",
    "parse_signature_input",
    "parse_signature",
    "signature_base",
    "sign_request",
    "verify_api_key",
    "verify_signature",
    "decode_client_secret",
]

AUDIOHOOK_COVERED_COMPONENTS = (
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
)

HeaderLike = Mapping[str, str] | Iterable[tuple[str, str]]
Param = str | int | bool | bytes


# ---------------------------------------------------------------------------------------------
# A small parser for the RFC 8941 structured fields these two headers use
# ---------------------------------------------------------------------------------------------
class _FieldParser:
    """Dictionary members whose values are inner lists of strings or byte sequences, with
    parameters (strings, integers, tokens, booleans, byte sequences)."""

    def __init__(self, text: str, header: str) -> None:
        self.text, self.pos, self.header = text, 0, header

    def fail(self, what: str) -> AuthenticationError:
        return AuthenticationError(f"malformed {self.header} header: {what} at offset {self.pos}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_spaces(self) -> None:
        while self.peek() in (" ", "\t") and self.peek():
            self.pos += 1

    def key(self) -> str:
        start = self.pos
        if not (self.peek().islower() and self.peek().isascii()) and self.peek() != "*":
            raise self.fail("expected a lowercase key")
        while self.peek() and (self.peek() in "abcdefghijklmnopqrstuvwxyz0123456789_-.*"):
            self.pos += 1
        return self.text[start : self.pos]

    def string(self) -> str:
        self.pos += 1  # opening quote
        out = []
        while True:
            char = self.peek()
            if not char:
                raise self.fail("unterminated string")
            self.pos += 1
            if char == "\\":
                escaped = self.peek()
                if escaped not in ('"', "\\") or not escaped:
                    raise self.fail("bad escape in string")
                out.append(escaped)
                self.pos += 1
            elif char == '"':
                return "".join(out)
            elif not (" " <= char <= "~"):
                raise self.fail("non-printable character in string")
            else:
                out.append(char)

    def bare_item(self) -> Param:
        char = self.peek()
        if char == '"':
            return self.string()
        if char == ":":
            end = self.text.find(":", self.pos + 1)
            if end < 0:
                raise self.fail("unterminated byte sequence")
            raw = self.text[self.pos + 1 : end]
            self.pos = end + 1
            try:
                return base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise self.fail("byte sequence is not base64") from None
        if char == "?":
            flag = self.text[self.pos + 1 : self.pos + 2]
            if flag not in ("0", "1"):
                raise self.fail("bad boolean")
            self.pos += 2
            return flag == "1"
        if char == "-" or char.isdigit():
            start = self.pos
            self.pos += 1
            while self.peek().isdigit() and self.peek().isascii():
                self.pos += 1
            digits = self.text[start : self.pos]
            if digits == "-" or len(digits.lstrip("-")) > 15 or not digits.lstrip("-").isascii():
                raise self.fail("bad integer")
            return int(digits)
        if char.isalpha() and char.isascii() or char == "*":
            start = self.pos
            while self.peek() and (
                self.peek().isalnum() and self.peek().isascii() or self.peek() in "_-.:%*/!#$&'+^`|~"
            ):
                self.pos += 1
            return self.text[start : self.pos]
        raise self.fail("expected a value")

    def parameters(self) -> dict[str, Param]:
        params: dict[str, Param] = {}
        while self.peek() == ";":
            self.pos += 1
            self.skip_spaces()
            name = self.key()
            if self.peek() == "=":
                self.pos += 1
                params[name] = self.bare_item()
            else:
                params[name] = True
        return params

    def member_value(self) -> tuple[Param | list[Param], dict[str, Param]]:
        if self.peek() == "(":
            self.pos += 1
            items: list[Param] = []
            while True:
                self.skip_spaces()
                if self.peek() == ")":
                    self.pos += 1
                    break
                if not self.peek():
                    raise self.fail("unterminated inner list")
                items.append(self.bare_item())
                if self.peek() == ";":
                    raise self.fail("component parameters (e.g. ;sf) are not supported")
                if self.peek() not in (" ", ")"):
                    raise self.fail("expected a space or ')' in inner list")
            return items, self.parameters()
        return self.bare_item(), self.parameters()

    def dictionary(self) -> dict[str, tuple[Param | list[Param], dict[str, Param]]]:
        members: dict[str, tuple[Param | list[Param], dict[str, Param]]] = {}
        self.skip_spaces()
        while self.pos < len(self.text):
            name = self.key()
            if self.peek() != "=":
                raise self.fail("expected '='")
            self.pos += 1
            members[name] = self.member_value()
            self.skip_spaces()
            if self.pos >= len(self.text):
                break
            if self.peek() != ",":
                raise self.fail("expected ','")
            self.pos += 1
            self.skip_spaces()
        if not members:
            raise self.fail("empty header")
        return members


def _serialize(value: Param) -> str:
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode("ascii") + ":"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class SignatureParameters:
    """One parsed Signature-Input member."""

    label: str
    components: tuple[str, ...]
    params: tuple[tuple[str, Param], ...]

    def get(self, name: str) -> Param | None:
        return dict(self.params).get(name)

    def serialize(self) -> str:
        """The ``@signature-params`` value: inner list plus parameters, in their original order."""
        inner = "(" + " ".join(_serialize(c) for c in self.components) + ")"
        parts = []
        for name, value in self.params:
            parts.append(f";{name}" if value is True else f";{name}={_serialize(value)}")
        return inner + "".join(parts)


def normalize_headers(headers: HeaderLike) -> dict[str, str]:
    """Lower-cased names; repeated headers joined with ', '; values trimmed (RFC 9421 section 2.1).

    Inner whitespace is kept as sent: the signer hashed it that way.
    """
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    merged: dict[str, list[str]] = {}
    for name, value in pairs:
        merged.setdefault(name.strip().lower(), []).append(value.strip())
    return {name: ", ".join(values) for name, values in merged.items()}


def parse_signature_input(text: str) -> dict[str, SignatureParameters]:
    members = _FieldParser(text, "Signature-Input").dictionary()
    parsed = {}
    for label, (value, params) in members.items():
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise AuthenticationError(f"Signature-Input '{label}' must be an inner list of component names")
        parsed[label] = SignatureParameters(label, tuple(str(c) for c in value), tuple(params.items()))
    return parsed


def parse_signature(text: str) -> dict[str, bytes]:
    members = _FieldParser(text, "Signature").dictionary()
    out = {}
    for label, (value, _params) in members.items():
        if not isinstance(value, bytes):
            raise AuthenticationError(f"Signature '{label}' must be a byte sequence (:base64:)")
        out[label] = value
    return out


def signature_base(
    params: SignatureParameters,
    headers: Mapping[str, str],
    request_target: str,
    authority: str,
    method: str = "GET",
) -> str:
    """The exact text that was signed. ``headers`` must come from :func:`normalize_headers`."""
    lines = []
    for component in params.components:
        if component == "@request-target":
            value = request_target
        elif component == "@authority":
            value = authority.lower()
        elif component == "@method":
            value = method.upper()
        elif component == "@path":
            value = request_target.split("?", 1)[0]
        elif component == "@query":
            value = "?" + request_target.split("?", 1)[1] if "?" in request_target else "?"
        elif component.startswith("@"):
            raise AuthenticationError(f"unsupported derived component '{component}'")
        elif component in headers:
            value = headers[component]
        else:
            raise AuthenticationError(f"signed header '{component}' is missing from the request")
        if "\n" in value or "\r" in value:
            raise AuthenticationError(f"component '{component}' contains a line break")
        lines.append(f'"{component}": {value}')
    lines.append(f'"@signature-params": {params.serialize()}')
    return "\n".join(lines)


def decode_client_secret(client_secret_b64: str) -> bytes:
    try:
        secret = base64.b64decode(client_secret_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("gateway.genesys.client_secret", ["not valid base64"]) from None
    if not secret:
        raise ConfigError("gateway.genesys.client_secret", ["empty"])
    return secret


class NonceRecorder(Protocol):
    """What ``verify_signature`` remembers nonces in (a :class:`NonceCache`, or a recorder whose nonce
    the gateway then claims in a store shared by replicas)."""

    def check_and_remember(self, nonce: str, now: float, keep_until: float) -> None: ...


class NonceCache:
    """Nonces seen recently, each kept until its signature could no longer be accepted anyway."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._expiry: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._expiry)

    def _prune(self, now: float) -> None:
        for nonce in [n for n, until in self._expiry.items() if until < now]:
            del self._expiry[nonce]
        while len(self._expiry) >= self.max_entries:
            # Full of live nonces: forget the one expiring soonest (bounded memory beats a
            # perfect memory under a flood; the signature's age limit still applies).
            del self._expiry[min(self._expiry, key=self._expiry.__getitem__)]

    def check_and_remember(self, nonce: str, now: float, keep_until: float) -> None:
        """Raise AuthenticationError if ``nonce`` was seen and is still live; else remember it."""
        if self._expiry.get(nonce, -1.0) >= now:
            raise AuthenticationError("signature nonce was already used (replayed request)")
        self._prune(now)
        self._expiry[nonce] = keep_until


def verify_api_key(headers: HeaderLike, expected_api_key: str) -> None:
    """Raise AuthenticationError unless the X-API-KEY header equals the configured key."""
    if not expected_api_key:
        raise AuthenticationError("no AudioHook API key configured")
    given = normalize_headers(headers).get("x-api-key")
    if not given:
        raise AuthenticationError("missing X-API-KEY header")
    if not hmac.compare_digest(given.encode("utf-8", "replace"), expected_api_key.encode("utf-8")):
        raise AuthenticationError("X-API-KEY does not match the configured key")


def verify_signature(
    headers: HeaderLike,
    request_target: str,
    authority: str,
    client_secret_b64: str,
    now: float,
    nonce_cache: NonceRecorder,
    max_age_s: float = 300.0,
    required_components: Sequence[str] = AUDIOHOOK_COVERED_COMPONENTS,
    method: str = "GET",
) -> SignatureParameters:
    """Check an AudioHook request signature; return the verified parameters.

    Rules: a label present in both headers; ``alg`` (if given) is hmac-sha256; ``keyid`` equals the
    request's X-API-KEY; all ``required_components`` are covered; ``created`` is no further than
    ``max_age_s`` in the past nor in the future (clock skew); ``expires`` (if given) is not past;
    the HMAC matches; and the ``nonce`` was not seen before (checked last, so forged requests
    cannot fill the cache).
    """
    secret = decode_client_secret(client_secret_b64)
    normalized = normalize_headers(headers)
    if "signature-input" not in normalized or "signature" not in normalized:
        raise AuthenticationError("missing Signature / Signature-Input headers")
    inputs = parse_signature_input(normalized["signature-input"])
    signatures = parse_signature(normalized["signature"])
    label = next((name for name in inputs if name in signatures), None)
    if label is None:
        raise AuthenticationError("Signature and Signature-Input share no label")
    params, signature = inputs[label], signatures[label]

    alg = params.get("alg")
    if alg is not None and alg != "hmac-sha256":
        raise AuthenticationError(f"unsupported signature algorithm {str(alg)[:40]!r} (hmac-sha256 expected)")
    keyid = params.get("keyid")
    if not isinstance(keyid, str) or not keyid:
        raise AuthenticationError("signature has no keyid")
    api_key = normalized.get("x-api-key", "")
    if not hmac.compare_digest(keyid.encode("utf-8"), api_key.encode("utf-8", "replace")):
        raise AuthenticationError("signature keyid does not match X-API-KEY")
    missing = [c for c in required_components if c not in params.components]
    if missing:
        raise AuthenticationError(f"signature does not cover {', '.join(missing)}")

    created = params.get("created")
    if not isinstance(created, int) or isinstance(created, bool):
        raise AuthenticationError("signature has no integer 'created' time")
    if created > now + max_age_s:
        raise AuthenticationError(
            f"signature created {created - now:.0f} s in the future (clock skew too large)"
        )
    if now - created > max_age_s:
        raise AuthenticationError(f"signature is {now - created:.0f} s old (limit {max_age_s:.0f} s)")
    expires = params.get("expires")
    if expires is not None:
        if not isinstance(expires, int) or isinstance(expires, bool):
            raise AuthenticationError("signature 'expires' must be an integer")
        if now > expires:
            raise AuthenticationError("signature has expired")
    nonce = params.get("nonce")
    if not isinstance(nonce, str) or not nonce:
        raise AuthenticationError("signature has no nonce (replay protection requires one)")

    base = signature_base(params, normalized, request_target, authority, method)
    expected = hmac.new(secret, base.encode("utf-8"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise AuthenticationError("signature does not match (wrong client secret or altered request)")
    nonce_cache.check_and_remember(nonce, now, keep_until=created + max_age_s)
    return params


def sign_request(
    headers: HeaderLike,
    request_target: str,
    authority: str,
    client_secret_b64: str,
    created: int,
    expires: int | None = None,
    nonce: str | None = None,
    components: Sequence[str] = AUDIOHOOK_COVERED_COMPONENTS,
    label: str = "sig1",
    method: str = "GET",
) -> dict[str, str]:
    """The Signature-Input and Signature headers a Genesys client would add (our test client)."""
    secret = decode_client_secret(client_secret_b64)
    normalized = normalize_headers(headers)
    api_key = normalized.get("x-api-key")
    if not api_key:
        raise AuthenticationError("cannot sign without an X-API-KEY header (it is the keyid)")
    param_list: list[tuple[str, Param]] = [
        ("keyid", api_key),
        ("nonce", nonce if nonce is not None else secrets.token_urlsafe(16)),
        ("alg", "hmac-sha256"),
        ("created", int(created)),
    ]
    if expires is not None:
        param_list.append(("expires", int(expires)))
    params = SignatureParameters(label, tuple(components), tuple(param_list))
    base = signature_base(params, normalized, request_target, authority, method)
    digest = hmac.new(secret, base.encode("utf-8"), hashlib.sha256).digest()
    return {
        "Signature-Input": f"{label}={params.serialize()}",
        "Signature": f"{label}=:{base64.b64encode(digest).decode('ascii')}:",
    }
