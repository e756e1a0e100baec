"""TLS on the gateway, end to end: an operator config naming a certificate and key makes the one
port speak wss:// and https:// only. Real gateway in process, real sockets on 127.0.0.1, a
self-signed certificate made per test session with the openssl CLI (no key material committed)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from pydantic import SecretStr
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedOK, InvalidMessage, InvalidStatus

from connectors.devtools.emotune_ws_client import EmotuneWsClient, Ready
from connectors.devtools.rasa_stack import free_port
from connectors.devtools.twilio_client import TwilioStreamClient
from connectors.gateway import Gateway
from connectors.protocols.twilio import STREAM_TOKEN_PARAMETER, compute_twilio_signature, mint_stream_token
from connectors.tools.report import read_call_log
from emotune.config import EmotuneConfig, load_config
from emotune.errors import ConfigError

TOKEN = "tls-test-token"
TWILIO_TOKEN = "tls-twilio-token"
CALL_SID = "CA" + "7" * 32
MULAW_SILENCE = b"\xff" * 160  # one 20 ms frame at 8 kHz


def make_cert(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for IP 127.0.0.1 (an IP SAN: Python matches IPs against SANs only)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def cert_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make a test certificate")
    return make_cert(tmp_path_factory.mktemp("tls"), "gateway")


def trusting(cert: Path) -> ssl.SSLContext:
    """A client context that trusts exactly the test certificate (hostname checking stays on)."""
    return ssl.create_default_context(cafile=str(cert))


def tls_config(tmp_path: Path, cert: Path, key: Path) -> EmotuneConfig:
    # Through a YAML file and load_config, as an operator would configure it.
    path = tmp_path / "config.yml"
    data = {
        "gateway": {"host": "127.0.0.1", "tls_cert": str(cert), "tls_key": str(key), "idle_timeout_s": 10},
        "asr": {"engine": "none"},  # no speech in these calls; keeps start-up fast
        "tts": {"engine": "none"},
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    config = load_config(path)
    config.gateway.auth_token = SecretStr(TOKEN)  # secrets are env-only, so set after loading
    config.gateway.twilio.auth_token = SecretStr(TWILIO_TOKEN)
    config.gateway.metrics_token = SecretStr(TOKEN)
    return config


class CountingAnalyzer:
    """Stands in for the emotion model: records how much decoded audio reached it."""

    def __init__(self, sink: list[int]) -> None:
        self.sink = sink

    def feed(self, samples: np.ndarray) -> None:
        self.sink.append(int(samples.shape[0]))

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        pass


@contextlib.asynccontextmanager
async def running(
    config: EmotuneConfig, log_dir: Path, pushed: list[int] | None = None
) -> AsyncIterator[Gateway]:
    sink = [] if pushed is None else pushed
    gateway = Gateway(config, emotion_factory=lambda on_event, rate: CountingAnalyzer(sink), log_dir=log_dir)
    await gateway.start(port=0)
    gateway.config.gateway.public_url = f"wss://127.0.0.1:{gateway.port}"  # the URL Twilio dials and signs
    try:
        yield gateway
    finally:
        await gateway.stop(drain_timeout_s=2)


def causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps (httpx -> httpcore -> ssl)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


async def healthz(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    response = await client.get(url)
    assert response.status_code == 200
    return dict(response.json())


# -- 1. trusted clients: traffic flows over TLS ------------------------------------------------------
async def test_twilio_stream_over_wss_signed_for_the_wss_url(
    cert_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = cert_pair
    pushed: list[int] = []
    async with running(tls_config(tmp_path, cert, key), tmp_path, pushed) as gateway:
        url = f"wss://127.0.0.1:{gateway.port}/twilio"
        # Twilio signs the URL it dialled; behind TLS that is wss://, so a ws:// signature is wrong.
        forged = compute_twilio_signature(TWILIO_TOKEN, url.replace("wss://", "ws://", 1))
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, ssl=trusting(cert), additional_headers={"X-Twilio-Signature": forged}):
                pass
        assert refused.value.response.status_code == 401

        signature = compute_twilio_signature(TWILIO_TOKEN, url)
        # The per-call token the gateway's /twilio/voice TwiML hands Twilio (test_gateway_security fetches it).
        token = mint_stream_token(TWILIO_TOKEN, CALL_SID, int(time.time()) + 60)
        client = TwilioStreamClient(call_sid=CALL_SID, custom_parameters={STREAM_TOKEN_PARAMETER: token})
        async with asyncio.timeout(10):
            async with connect(
                url, ssl=trusting(cert), additional_headers={"X-Twilio-Signature": signature}
            ) as ws:
                await ws.send(client.connected())
                await ws.send(client.start())
                for _ in range(25):
                    await ws.send(client.media(MULAW_SILENCE))
                await ws.send(client.stop())
                with pytest.raises(ConnectionClosedOK):  # the gateway ends the call after `stop`
                    await ws.recv()
            assert ws.close_code == 1000
            while gateway.active:  # the pipeline writes its summary just after the close
                await asyncio.sleep(0.01)
    assert sum(pushed) > 0  # decoded caller audio reached the emotion stage
    records = read_call_log(tmp_path / f"{CALL_SID}.jsonl")
    assert records[0]["type"] == "call_started" and records[0]["protocol"] == "twilio"
    assert records[-1]["type"] == "call_ended" and records[-1]["reason"] == "stream stopped"


async def test_emotune_ws_session_and_healthz_over_tls(cert_pair: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = cert_pair
    async with running(tls_config(tmp_path, cert, key), tmp_path) as gateway:
        base = f"127.0.0.1:{gateway.port}"
        client = EmotuneWsClient()
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with (
            asyncio.timeout(10),
            httpx.AsyncClient(verify=trusting(cert)) as http_client,
            connect(f"wss://{base}/v1/stream", ssl=trusting(cert), additional_headers=auth) as ws,
        ):
            await ws.send(client.start(call_id="tls-call"))
            events = client.receive_text(str(await ws.recv()))
            assert isinstance(events[0], Ready) and events[0].call_id == "tls-call", events
            # Plain HTTP routes share the TLS listener.
            assert await healthz(http_client, f"https://{base}/healthz") == {
                "status": "ok",
                "active_calls": 1,
            }
            metrics = await http_client.get(f"https://{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert (
                metrics.status_code == 200 and 'emotune_calls_total{protocol="emotune-ws"} 1' in metrics.text
            )


# -- 2. a client that does not trust the certificate gets nothing --------------------------------------
async def test_untrusting_client_fails_certificate_verification(
    cert_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = cert_pair
    async with running(tls_config(tmp_path, cert, key), tmp_path) as gateway:
        base = f"127.0.0.1:{gateway.port}"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with asyncio.timeout(10):
            with pytest.raises(ssl.SSLCertVerificationError, match=r"self.signed certificate"):
                async with connect(
                    f"wss://{base}/v1/stream", ssl=ssl.create_default_context(), additional_headers=auth
                ):
                    pass
            async with httpx.AsyncClient() as untrusting:  # system CA bundle only
                with pytest.raises(httpx.ConnectError) as info:
                    await untrusting.get(f"https://{base}/healthz")
            assert any(isinstance(e, ssl.SSLCertVerificationError) for e in causes(info.value))
            assert gateway.metrics.calls_total.get("emotune-ws") == 0
            # The failed handshakes left the listener healthy for trusting clients.
            async with httpx.AsyncClient(verify=trusting(cert)) as trusted:
                assert (await healthz(trusted, f"https://{base}/healthz"))["status"] == "ok"


# -- 3. plaintext against the TLS port is not served --------------------------------------------------
async def test_plain_ws_and_http_get_no_answer_on_the_tls_port(
    cert_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = cert_pair
    async with running(tls_config(tmp_path, cert, key), tmp_path) as gateway:
        base = f"127.0.0.1:{gateway.port}"
        async with asyncio.timeout(10):
            # The server reads the HTTP upgrade as a bad TLS record and drops the connection
            # without an HTTP response, so the client never gets a websocket (nor a 4xx).
            with pytest.raises(InvalidMessage):
                async with connect(
                    f"ws://{base}/v1/stream", additional_headers={"Authorization": f"Bearer {TOKEN}"}
                ):
                    pass
            async with httpx.AsyncClient() as plain:
                with pytest.raises(httpx.RemoteProtocolError):
                    await plain.get(f"http://{base}/healthz")
        assert gateway.metrics.calls_total.get("emotune-ws") == 0
        assert not gateway.active


# -- 4. an unusable certificate stops the gateway from starting ---------------------------------------
@pytest.mark.parametrize("damage", ["missing cert", "cert not PEM", "key of another cert"])
async def test_unusable_certificate_fails_start_and_binds_nothing(
    cert_pair: tuple[Path, Path], tmp_path: Path, damage: str
) -> None:
    cert, key = cert_pair
    if damage == "missing cert":
        cert = tmp_path / "absent.crt"
    elif damage == "cert not PEM":
        cert = tmp_path / "garbage.crt"
        cert.write_text("not a certificate\n")
    else:
        key = make_cert(tmp_path, "other")[1]  # e.g. a renewed certificate deployed with the old key
    gateway = Gateway(
        tls_config(tmp_path, cert, key), emotion_factory=lambda on_event, rate: CountingAnalyzer([]), log_dir=tmp_path
    )
    port = free_port()
    try:
        # A config error naming the file (emotune serve prints it and exits 1), not a raw OSError.
        with pytest.raises(ConfigError, match=re.escape(str(cert if damage == "missing cert" else key))):
            await gateway.start(port=port)
        assert gateway.server is None
        with pytest.raises(OSError):  # nothing listens: the config is refused before binding
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
    finally:
        await gateway.stop()
