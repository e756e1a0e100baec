"""Issue 15's attacks, each tried against a running gateway over real websockets (and a real Redis).

Every endpoint fails closed; /v1/stream authenticates at the upgrade and counts handshakes in
progress against max_calls; Twilio signatures are checked over gateway.public_url; a second stream
claiming a live call id is closed 1008; the caller and feed roles are separate; Rasa's sender is
minted by the gateway; digits and words stay out of the call file and the feed by default; the PID
file is private; AudioHook nonces are shared by replicas through Redis.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from connectors.devtools.emotune_ws_client import EmotuneWsClient
from connectors.devtools.twilio_client import TwilioStreamClient
from connectors.gateway.server import (
    Gateway,
    check_startup,
    pid_file,
    request_reload,
    write_pid_file,
)
from connectors.protocols.http_signatures import sign_request
from connectors.protocols.twilio import compute_twilio_signature
from emotune.config import EmotuneConfig
from emotune.errors import ConfigError
from tests.servers import free_port, redis_available, redis_server

CALLER, SUPERVISOR, SCRAPER, TWILIO = "caller-token", "supervisor-token", "scraper-token", "twilio-token"
API_KEY, CLIENT_SECRET = "ak-security", "c2VjdXJpdHktdGVzdC1zZWNyZXQ="
PUBLIC = "wss://voice.example.com"  # what Twilio dials: a TLS load balancer in front of the gateway
CARD = "4111111111111111"
SECRET_WORDS = "my card number is four one one one"


class _Silent:
    """Stands in for the emotion model (these tests are about who may connect, not emotions)."""

    def feed(self, samples: Any) -> None:
        return None

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        return None


def _no_model(on_event: Any, rate: int) -> Any:
    return _Silent()


def secure_config(**gateway: Any) -> EmotuneConfig:
    config = EmotuneConfig(gateway={"public_url": PUBLIC, **gateway}, asr={"engine": "none"}, tts={"engine": "none"})
    config.gateway.auth_token = SecretStr(CALLER)
    config.gateway.feed_token = SecretStr(SUPERVISOR)
    config.gateway.metrics_token = SecretStr(SCRAPER)
    config.gateway.twilio.auth_token = SecretStr(TWILIO)
    config.gateway.genesys.api_key = SecretStr(API_KEY)
    config.gateway.genesys.client_secret = SecretStr(CLIENT_SECRET)
    return config


class _RasaWire(http.server.BaseHTTPRequestHandler):
    """Records the REST channel requests the gateway sends (the sender id is what is under test)."""

    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        answer = json.dumps([{"recipient_id": body["sender"], "text": "ok"}]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def rasa_wire() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    handler = type("Wire", (_RasaWire,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


async def _running(config: EmotuneConfig, log_dir: Path, rasa_url: str | None = None) -> Gateway:
    gateway = Gateway(config, emotion_factory=_no_model, log_dir=log_dir, rasa_url=rasa_url)
    await gateway.start(port=0)
    return gateway


@pytest.fixture
async def gateway(tmp_path: Path, rasa_wire: tuple[str, list[dict[str, Any]]]) -> AsyncIterator[Gateway]:
    gw = await _running(secure_config(max_calls=3), tmp_path, rasa_wire[0])
    try:
        yield gw
    finally:
        await gw.stop(drain_timeout_s=2)


async def _status(url: str, headers: dict[str, str] | None = None, port: int | None = None) -> int:
    """The upgrade's HTTP status (101 = accepted). With ``port``, ``url``'s host is only the Host
    header (a load balancer's name) and the socket goes to 127.0.0.1:port."""
    where = {"host": "127.0.0.1", "port": port} if port is not None else {}
    try:
        async with connect(url, additional_headers=headers or {}, open_timeout=10, **where):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def twilio_headers(path: str = "/twilio", token: str = TWILIO) -> dict[str, str]:
    return {"X-Twilio-Signature": compute_twilio_signature(token, PUBLIC + path)}


async def voice_webhook(gateway: Gateway, call_sid: str, token: str = TWILIO) -> httpx.Response:
    """What Twilio does when the call comes in: GET the voice webhook, signed over the public https URL."""
    path = f"/twilio/voice?CallSid={call_sid}&AccountSid=AC00000000000000000000000000000000"
    signature = compute_twilio_signature(token, PUBLIC.replace("wss://", "https://") + path)
    async with httpx.AsyncClient() as client:
        return await client.get(f"http://127.0.0.1:{gateway.port}{path}", headers={"X-Twilio-Signature": signature})


async def stream_token(gateway: Gateway, call_sid: str) -> dict[str, str]:
    """The <Parameter> of the TwiML the gateway served for ``call_sid`` (as Twilio puts it in start)."""
    answer = await voice_webhook(gateway, call_sid)
    assert answer.status_code == 200, answer.text
    name, value = re.search(r'<Parameter name="([^"]+)" value="([^"]+)"', answer.text).groups()  # type: ignore[union-attr]
    return {name: value}


async def _closed_code(ws: Any) -> int | None:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await ws.recv()
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


# -- 1. fail closed ----------------------------------------------------------------------------
def test_serve_refuses_to_start_without_credentials_or_with_a_half_configured_endpoint() -> None:
    with pytest.raises(ConfigError, match="no endpoint has credentials"):
        check_startup(EmotuneConfig())
    audiohook_without_secret = EmotuneConfig()
    audiohook_without_secret.gateway.genesys.api_key = SecretStr(API_KEY)
    with pytest.raises(ConfigError, match="CLIENT_SECRET"):
        check_startup(audiohook_without_secret)
    twilio_without_url = EmotuneConfig()
    twilio_without_url.gateway.twilio.auth_token = SecretStr(TWILIO)
    with pytest.raises(ConfigError, match="public_url"):
        check_startup(twilio_without_url)
    with pytest.raises(ConfigError, match="only on loopback"):
        check_startup(EmotuneConfig(gateway={"insecure_dev": True, "host": "0.0.0.0"}))
    check_startup(EmotuneConfig(gateway={"insecure_dev": True}))  # explicit dev mode on loopback starts


async def test_every_endpoint_refuses_without_its_credential(tmp_path: Path) -> None:
    config = EmotuneConfig(asr={"engine": "none"}, tts={"engine": "none"})  # nothing configured, not dev
    config.gateway.genesys.api_key = SecretStr(API_KEY)  # API key but no client secret: AudioHook half-set
    gw = await _running(config, tmp_path)
    base = f"ws://127.0.0.1:{gw.port}"
    try:
        assert await _status(f"{base}/twilio") == 401
        assert await _status(f"{base}/v1/stream") == 401
        assert await _status(f"{base}/feed/*") == 401
        # The right API key and a wrong signature: refused, never silently skipped.
        headers = {"X-API-KEY": API_KEY, "Audiohook-Session-Id": "e160e428-53e2-487c-977d-96989bf5c99d"}
        assert await _status(f"{base}/audiohook", headers) == 401
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{gw.port}/metrics")).status_code == 401
            assert (await client.get(f"http://127.0.0.1:{gw.port}/healthz")).status_code == 200
    finally:
        await gw.stop(drain_timeout_s=1)


async def test_metrics_and_feed_need_their_own_tokens(gateway: Gateway) -> None:
    base = f"ws://127.0.0.1:{gateway.port}"
    metrics = f"http://127.0.0.1:{gateway.port}/metrics"
    async with httpx.AsyncClient() as client:
        assert (await client.get(metrics, headers={"Authorization": f"Bearer {CALLER}"})).status_code == 401
        assert (await client.get(metrics, params={"token": SCRAPER})).status_code == 401  # header only
        assert (await client.get(metrics, headers={"Authorization": f"Bearer {SCRAPER}"})).status_code == 200
    # The callers' token cannot read the wallboard of every call's transcript.
    assert await _status(f"{base}/feed/*", {"Authorization": f"Bearer {CALLER}"}) == 401
    assert await _status(f"{base}/feed/*?token={CALLER}") == 401
    assert await _status(f"{base}/feed/*", {"Authorization": f"Bearer {SUPERVISOR}"}) == 101
    assert await _status(f"{base}/feed/*?token={SUPERVISOR}") == 101  # the page's browser fallback
    # /v1/stream: the header at the upgrade; a token in the query string is not accepted.
    assert await _status(f"{base}/v1/stream?token={CALLER}") == 401
    assert await _status(f"{base}/v1/stream", {"Authorization": f"Bearer {SUPERVISOR}"}) == 401


# -- 2. the upgrade holds the slot -------------------------------------------------------------
async def test_unauthenticated_sockets_hold_no_slot_and_concurrent_handshakes_do_not_overshoot(
    gateway: Gateway,
) -> None:
    url = f"ws://127.0.0.1:{gateway.port}/v1/stream"
    statuses = await asyncio.gather(*(_status(url) for _ in range(20)))
    assert set(statuses) == {401} and not gateway.slots
    auth = {"Authorization": f"Bearer {CALLER}"}
    opened: list[Any] = []

    async def one() -> int:
        try:
            ws = await connect(url, additional_headers=auth, open_timeout=10)
        except InvalidStatus as exc:
            return exc.response.status_code
        opened.append(ws)
        return 101

    results = await asyncio.gather(*(one() for _ in range(8)))  # max_calls = 3, all at once
    try:
        assert sorted(results) == [101] * 3 + [503] * 5
    finally:
        for ws in opened:
            await ws.close()


# -- 6. Twilio -------------------------------------------------------------------------------
async def test_twilio_signature_is_checked_over_the_public_url(gateway: Gateway) -> None:
    url = f"ws://127.0.0.1:{gateway.port}/twilio"
    # Signed for the URL the gateway sees (behind the load balancer): not what Twilio signs.
    local = {"X-Twilio-Signature": compute_twilio_signature(TWILIO, url)}
    assert await _status(url, local) == 401
    assert await _status(url, twilio_headers(token="guess")) == 401
    assert await _status(url) == 401
    assert await _status(url, twilio_headers()) == 101


async def test_a_second_stream_claiming_a_live_call_sid_is_closed_1008(gateway: Gateway) -> None:
    # The live-call check on its own (an operator serving their own TwiML, without stream tokens);
    # with tokens the replayed start is refused even earlier (test above).
    gateway.config.gateway.twilio.require_stream_token = False
    url = f"ws://127.0.0.1:{gateway.port}/twilio"
    victim_sid = "CAvictim0000000000000000000000000"
    victim = TwilioStreamClient(call_sid=victim_sid, custom_parameters=await stream_token(gateway, victim_sid))
    async with connect(url, additional_headers=twilio_headers()) as genuine:
        await genuine.send(victim.connected())
        await genuine.send(victim.start())
        await genuine.send(victim.media(b"\xff" * 160))
        await genuine.ping()  # the start was read: the call is live
        while not gateway.live_calls:
            await asyncio.sleep(0.01)
        # A replayed upgrade (the same signed URL) with the victim's callSid in its start.
        # (Even with the victim's token from the TwiML: the attacker could not have it, but the live
        # check does not rely on that.)
        attacker = TwilioStreamClient(call_sid=victim.call_sid, stream_sid="MZattacker00000000000000000000000",
                                      custom_parameters=victim.custom_parameters)
        async with connect(url, additional_headers=twilio_headers()) as replayed:
            await replayed.send(attacker.connected())
            await replayed.send(attacker.start())
            assert await _closed_code(replayed) == 1008
        assert gateway.metrics.refusals_total.get("duplicate_call") == 1
        await genuine.send(victim.media(b"\xff" * 160))  # the victim's call goes on
        await genuine.ping()
        assert len(gateway.active) == 1


async def test_a_signed_upgrade_cannot_start_a_call_without_the_token_minted_for_its_sid(gateway: Gateway) -> None:
    assert (await voice_webhook(gateway, "CAone", token="guess")).status_code == 401
    answer = await voice_webhook(gateway, "CAone0000000000000000000000000000")
    assert answer.status_code == 200 and f'<Stream url="{PUBLIC}/twilio">' in answer.text
    token = await stream_token(gateway, "CAone0000000000000000000000000000")
    url = f"ws://127.0.0.1:{gateway.port}/twilio"

    async def start(call_sid: str, parameters: dict[str, str]) -> int | None:
        client = TwilioStreamClient(call_sid=call_sid, custom_parameters=parameters)
        async with connect(url, additional_headers=twilio_headers()) as ws:
            await ws.send(client.connected())
            await ws.send(client.start())
            await ws.send(client.stop())
            return await _closed_code(ws)

    assert await start("CAother000000000000000000000000000", token) == 1008  # minted for another call
    assert await start("CAone0000000000000000000000000000", {}) == 1008  # no token
    assert await start("CAone0000000000000000000000000000", token) == 1000  # the genuine stream
    assert await start("CAone0000000000000000000000000000", token) == 1008  # replayed after it ended


# -- 3 + 5. identities the gateway mints; nothing private in the file or the feed ------------------
async def test_rasa_sender_is_minted_and_digits_and_words_stay_out_of_logs_and_feed(
    gateway: Gateway, rasa_wire: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    _, seen = rasa_wire
    base = f"ws://127.0.0.1:{gateway.port}"
    feed: list[dict[str, Any]] = []
    async with connect(f"{base}/feed/*", additional_headers={"Authorization": f"Bearer {SUPERVISOR}"}) as wallboard:
        for attempt in range(2):  # two calls with the same client id: two conversations
            client = EmotuneWsClient()
            async with connect(f"{base}/v1/stream", additional_headers={"Authorization": f"Bearer {CALLER}"}) as ws:
                await ws.send(client.start(call_id="shared-id"))
                await ws.recv()  # ready
                await ws.send(client.text(SECRET_WORDS))
                while len(seen) <= attempt:
                    await ws.recv()
            ended = 0
            while ended <= attempt:  # the first call is over before the second reuses its id
                feed.append(json.loads(await asyncio.wait_for(wallboard.recv(), 10)))
                ended = sum(m.get("type") == "call_ended" and m.get("call_id") == "shared-id" for m in feed)
        sid = "CAdtmf0000000000000000000000000000"
        twilio = TwilioStreamClient(call_sid=sid, custom_parameters={"pin": "9876", **await stream_token(gateway, sid)})
        async with connect(f"{base}/twilio", additional_headers=twilio_headers()) as ws:
            await ws.send(twilio.connected())
            await ws.send(twilio.start())
            for digit in CARD:
                await ws.send(twilio.dtmf(digit))
            await ws.send(twilio.stop())
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.recv()
        while not any(m.get("type") == "call_ended" and m.get("call_id") == twilio.call_sid for m in feed):
            feed.append(json.loads(await asyncio.wait_for(wallboard.recv(), 10)))
    senders = [body["sender"] for body in seen]
    assert len(set(senders)) == 2 and "shared-id" not in senders
    assert all(s.startswith("emotune-ws-") for s in senders)
    assert [body["message"] for body in seen] == [SECRET_WORDS] * 2  # the words reach Rasa only
    files = "".join(p.read_text() for p in tmp_path.glob("*.jsonl"))
    for text in (files, json.dumps(feed)):
        assert "dtmf" in text  # the key press is recorded ...
        assert "1111" not in text and "9876" not in text and SECRET_WORDS not in text  # ... its digits are not


# -- 7. PID file -------------------------------------------------------------------------------
def test_pid_file_is_private_not_followed_and_reload_signals_only_our_gateway(tmp_path: Path) -> None:
    config = EmotuneConfig(gateway={"runtime_dir": tmp_path / "run", "port": free_port()})
    path = pid_file(config)
    assert (os.stat(path.parent).st_mode & 0o777) == 0o700
    target = tmp_path / "victim"
    target.write_text("keep")
    path.symlink_to(target)
    assert request_reload(config) == 1  # a symlink is not read either
    write_pid_file(path)  # O_EXCL | O_NOFOLLOW: the planted link is replaced, never written through
    assert target.read_text() == "keep" and not path.is_symlink()
    assert (path.stat().st_mode & 0o777) == 0o600
    with pytest.raises(ConfigError, match="another gateway"):
        write_pid_file(path)  # this (live) process holds the port's PID file
    path.unlink()
    # A PID file naming some other live process (here: a sleep we started) is not signalled.
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        path.write_text(f"{sleeper.pid} 1")
        assert request_reload(config) == 1
        assert sleeper.poll() is None
    finally:
        sleeper.send_signal(signal.SIGTERM)
        sleeper.wait()
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o777)
    os.chmod(open_dir, 0o777)
    with pytest.raises(ConfigError, match="0700"):
        pid_file(EmotuneConfig(gateway={"runtime_dir": open_dir}))


# -- 8. AudioHook nonces across replicas ---------------------------------------------------------
def _audiohook(host: str) -> dict[str, str]:
    headers = {
        "X-API-KEY": API_KEY,
        "Audiohook-Organization-Id": "d7934305-0972-4844-938e-9060eef73d05",
        "Audiohook-Session-Id": "e160e428-53e2-487c-977d-96989bf5c99d",
        "Audiohook-Correlation-Id": "b1c5e9a0-0000-4000-8000-000000000001",
    }
    return {**headers, **sign_request(headers, "/audiohook", host, CLIENT_SECRET, created=int(time.time()))}


@pytest.mark.skipif(not redis_available(), reason="needs Debian's redis-server")
async def test_a_signed_audiohook_upgrade_replays_on_no_replica(tmp_path: Path) -> None:
    host = "audiohook.example.com"  # both replicas behind one name: the signed @authority
    with redis_server() as redis_port:
        store = f"redis://127.0.0.1:{redis_port}/0"
        first = await _running(secure_config(nonce_store=store), tmp_path / "a")
        second = await _running(secure_config(nonce_store=store), tmp_path / "b")
        url = f"ws://{host}/audiohook"
        try:
            signed = _audiohook(host)
            assert await _status(url, signed, port=first.port) == 101
            assert await _status(url, signed, port=second.port) == 401  # replayed on the other replica
            assert await _status(url, signed, port=first.port) == 401
            assert await _status(url, _audiohook(host), port=second.port) == 101  # a fresh signature
        finally:
            await first.stop(drain_timeout_s=1)
            await second.stop(drain_timeout_s=1)
    # Redis gone: fail closed (refused), not an unchecked nonce.
    third = await _running(secure_config(nonce_store=store), tmp_path / "c")
    try:
        assert await _status(url, _audiohook(host), port=third.port) == 401
    finally:
        await third.stop(drain_timeout_s=1)


async def test_a_replayed_audiohook_upgrade_is_refused_by_the_single_replica_cache(gateway: Gateway) -> None:
    host = f"127.0.0.1:{gateway.port}"
    signed = _audiohook(host)
    assert await _status(f"ws://{host}/audiohook", signed) == 101
    assert await _status(f"ws://{host}/audiohook", signed) == 401
    wrong = {**_audiohook(host), "X-API-KEY": "wrong"}
    assert await _status(f"ws://{host}/audiohook", wrong) == 401


async def test_a_reload_keeps_the_credentials_and_cannot_turn_on_dev_mode(gateway: Gateway, tmp_path: Path) -> None:
    edited = tmp_path / "config.yml"
    edited.write_text(f"gateway: {{insecure_dev: true, public_url: '{PUBLIC}'}}\nasr: {{engine: none}}\ntts: {{engine: none}}\n")
    assert gateway.reload(edited)
    assert not gateway.config.gateway.insecure_dev
    assert gateway.config.gateway.auth_token is not None and gateway.config.gateway.auth_token.get_secret_value() == CALLER
    assert await _status(f"ws://127.0.0.1:{gateway.port}/v1/stream") == 401
    edited.write_text("asr: {engine: none}\ntts: {engine: none}\n")  # the Twilio token stays, public_url gone
    assert not gateway.reload(edited)
    assert gateway.config.gateway.public_url == PUBLIC
