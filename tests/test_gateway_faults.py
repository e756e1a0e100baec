"""Gateway faults: Rasa dying mid-call, a broken model at start-up, clients vanishing mid-frame,
SIGTERM while turns are in flight. Real gateway (in process or as `python -m connectors.gateway`),
real emotion runtime, real Rasa (RasaStack ci=True) on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from connectors.devtools.emotune_ws_client import BotReply, EmotuneWsClient, Handoff, Ready
from connectors.devtools.rasa_stack import RasaStack, free_port
from connectors.devtools.twilio_client import TwilioStreamClient
from connectors.gateway import Gateway
from connectors.tools.demo import load_sample_call
from connectors.tools.report import read_call_log
from emotune.config import PROJECT_ROOT, EmotuneConfig, load_config

TOKEN = "faults-test-token"
MODEL_DIR = PROJECT_ROOT / "models" / "emotune-ser-v1"


def make_config(rasa_timeout_s: float = 1.0) -> EmotuneConfig:
    config = load_config(PROJECT_ROOT / "config.yml")
    config.gateway.auth_token = SecretStr(TOKEN)
    config.gateway.log_transcripts = True  # these tests read the replies back from the call log
    config.gateway.insecure_dev = True  # unsigned Twilio callers on loopback (signatures: test_gateway_security)
    config.gateway.idle_timeout_s = 600.0  # the Rasa restart below takes a while; the call must stay up
    config.rasa.timeout_s = rasa_timeout_s
    config.rasa.replicas = []
    config.tts.engine = "none"  # text replies: these tests are about the turn, not the audio
    return config


async def next_reply(ws: ClientConnection, client: EmotuneWsClient, timeout_s: float = 30.0) -> BotReply:
    async with asyncio.timeout(timeout_s):
        while True:
            message = await ws.recv()
            events = client.receive_bytes(message) if isinstance(message, bytes) else client.receive_text(message)
            for event in events:
                if isinstance(event, BotReply):
                    return event


async def open_call(port: int, call_id: str) -> tuple[ClientConnection, EmotuneWsClient]:
    client = EmotuneWsClient()
    ws = await connect(f"ws://127.0.0.1:{port}/v1/stream", additional_headers={"Authorization": f"Bearer {TOKEN}"})
    await ws.send(client.start(call_id=call_id))
    ready = client.receive_text(str(await asyncio.wait_for(ws.recv(), 10)))
    assert isinstance(ready[0], Ready), ready
    return ws, client


@pytest.fixture(scope="module")
def rasa() -> Iterator[RasaStack]:
    with RasaStack("contact_center", ci=True) as stack:
        yield stack


# -- (a) Rasa killed mid-call ------------------------------------------------------------------------
@pytest.mark.rasa
@pytest.mark.slow
async def test_rasa_killed_mid_call_gets_the_fallback_fast_and_service_resumes(rasa: RasaStack, tmp_path: Path) -> None:
    config = make_config(rasa_timeout_s=1.0)
    gateway = Gateway(config, log_dir=tmp_path, rasa_url=rasa.url)
    await gateway.start(port=0)
    try:
        ws, client = await open_call(gateway.port, "rasa-dies")
        async with ws:
            await ws.send(client.text("where is my parcel"))
            first = await next_reply(ws, client)
            assert first.text != config.rasa.fallback_reply

            await asyncio.to_thread(rasa.kill_rasa)
            started = time.monotonic()
            await ws.send(client.text("where is my parcel"))
            fallback = await next_reply(ws, client)
            waited = time.monotonic() - started
            assert fallback.text == config.rasa.fallback_reply
            # "About 1 s" with a 1 s client timeout; a generous bound so a busy machine does not flake.
            assert waited < config.rasa.timeout_s + 2.0, waited

            await asyncio.to_thread(rasa.restart)
            await ws.send(client.text("where is my parcel"))
            again = await next_reply(ws, client, timeout_s=60)
            assert again.text != config.rasa.fallback_reply  # same call, served again
        assert gateway.metrics.rasa_fallbacks_total.get() == 1
    finally:
        await gateway.stop()
        if not rasa.running:
            await asyncio.to_thread(rasa.restart)
    turns = [r for r in read_call_log(tmp_path / "rasa-dies.jsonl") if r["type"] == "turn"]
    assert [t["fallback"] for t in turns] == [False, True, False]


@pytest.mark.rasa
@pytest.mark.slow
async def test_action_server_killed_mid_call_gets_an_answer_fast_and_service_resumes(
    rasa: RasaStack, tmp_path: Path
) -> None:
    config = make_config(rasa_timeout_s=2.0)
    gateway = Gateway(config, log_dir=tmp_path, rasa_url=rasa.url)
    await gateway.start(port=0)
    try:
        ws, client = await open_call(gateway.port, "actions-die")
        async with ws:
            await ws.send(client.text("where is my parcel"))
            first = await next_reply(ws, client)
            assert first.text and first.text != config.rasa.fallback_reply

            await asyncio.to_thread(rasa.kill_actions)
            started = time.monotonic()
            await ws.send(client.text("where is my parcel"))
            degraded = await next_reply(ws, client)
            waited = time.monotonic() - started
            # Rasa is up but its custom actions are gone: the caller still hears an answer (the
            # bot's own reply, or the fallback when Rasa's answer is empty or an error), fast.
            assert degraded.text, degraded
            assert waited < config.rasa.timeout_s + 1.0, waited

            await asyncio.to_thread(rasa.start_actions)
            await ws.send(client.text("where is my parcel"))
            again = await next_reply(ws, client, timeout_s=60)
            assert again.text and again.text != config.rasa.fallback_reply  # served normally again
    finally:
        await gateway.stop()
        if not rasa.running:
            await asyncio.to_thread(rasa.restart)
    turns = [r for r in read_call_log(tmp_path / "actions-die.jsonl") if r["type"] == "turn"]
    assert len(turns) == 3 and turns[0]["fallback"] is False and turns[2]["fallback"] is False


async def test_repeated_fallbacks_hand_the_call_to_a_human(tmp_path: Path) -> None:
    config = make_config(rasa_timeout_s=1.0)
    config.rasa.handoff_after_fallbacks = 2
    gateway = Gateway(config, log_dir=tmp_path, rasa_url=f"http://127.0.0.1:{free_port()}")  # no Rasa there
    await gateway.start(port=0)
    try:
        ws, client = await open_call(gateway.port, "bot-broken")
        async with ws:
            handoffs: list[Handoff] = []
            for _ in range(2):
                await ws.send(client.text("where is my parcel"))
                assert (await next_reply(ws, client)).text == config.rasa.fallback_reply
            async with asyncio.timeout(10):
                while not handoffs:
                    message = await ws.recv()
                    parse = client.receive_bytes if isinstance(message, bytes) else client.receive_text
                    handoffs += [e for e in parse(message) if isinstance(e, Handoff)]
    finally:
        await gateway.stop()
    assert handoffs[0].reason == "dialogue_unavailable" and "2 turns in a row" in handoffs[0].summary
    log = read_call_log(tmp_path / "bot-broken.jsonl")
    assert [r["fallback"] for r in log if r["type"] == "turn"] == [True, True]
    assert any(r["type"] == "escalation" and r["reason"] == "dialogue_unavailable" for r in log)


# -- (b) broken model files --------------------------------------------------------------------------
def _gateway_process(args: list[str], env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "connectors.gateway", *args],
        cwd=PROJECT_ROOT, env={**os.environ, **(env or {})}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs,
    )


@pytest.mark.parametrize(
    ("broken", "damage"),
    [
        ("emotion.onnx", "missing"),
        ("emotion.onnx", "corrupt"),
        ("emotion.json", "missing"),
        ("emotion.json", "corrupt"),
    ],
)
def test_gateway_refuses_to_start_with_a_broken_model_naming_the_file(tmp_path: Path, broken: str, damage: str) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for name in ("emotion.onnx", "emotion.json"):
        shutil.copy(MODEL_DIR / name, model_dir / name)
    target = model_dir / broken
    if damage == "missing":
        target.unlink()
    else:
        data = bytearray(target.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 64] = b"\x00" * 64 if broken.endswith(".onnx") else b"{" * 64
        target.write_bytes(bytes(data))
    config_file = tmp_path / "config.yml"
    config_file.write_text(
        f"model: {{path: {model_dir / 'emotion.onnx'}, variant: fp32}}\ngateway: {{port: {free_port()}}}\n"
    )
    process = _gateway_process(["--config", str(config_file), "--log-dir", str(tmp_path / "logs")],
                               env={"EMOTUNE_GATEWAY__AUTH_TOKEN": TOKEN})  # credentials: the model is what fails
    try:
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0, stdout + stderr
    assert str(target) in stderr or target.name in stderr, stderr


# -- (c) client vanishes mid-frame -------------------------------------------------------------------
async def test_client_dropping_mid_frame_ends_the_call_and_frees_it(tmp_path: Path) -> None:
    config = make_config()
    gateway = Gateway(config, log_dir=tmp_path, rasa_url=f"http://127.0.0.1:{free_port()}")
    await gateway.start(port=0)
    try:
        client = TwilioStreamClient(call_sid="CAdropped")
        ws = await connect(f"ws://127.0.0.1:{gateway.port}/twilio")
        await ws.send(client.connected())
        await ws.send(client.start())
        audio = load_sample_call().turns[0].mulaw()
        for frame in client.media_frames(audio[:16000]):  # 2 s of speech, no end of turn yet
            await ws.send(frame)
        for _ in range(100):
            if gateway.active:
                break
            await asyncio.sleep(0.05)
        assert len(gateway.active) == 1
        # Half a websocket frame header + part of a payload, then the TCP connection just dies.
        assert ws.transport is not None
        ws.transport.write(b"\x81\xfe\x40\x00" + b"\x00" * 4 + b'{"event": "me')
        ws.transport.abort()
        for _ in range(200):
            if not gateway.active:
                break
            await asyncio.sleep(0.05)
        assert not gateway.active
        assert gateway.metrics.active_calls.value == 0
        async with httpx.AsyncClient() as http:  # and the gateway still serves
            assert (await http.get(f"http://127.0.0.1:{gateway.port}/healthz")).status_code == 200
    finally:
        await gateway.stop()
    log = read_call_log(tmp_path / "CAdropped.jsonl")
    assert log[-1]["type"] == "call_ended", log[-3:]


# -- (d) SIGTERM ------------------------------------------------------------------------------------
@pytest.mark.rasa
@pytest.mark.slow
async def test_sigterm_finishes_the_turn_in_flight_then_closes_1001_and_exits_0(rasa: RasaStack, tmp_path: Path) -> None:
    port = free_port()
    config_file = tmp_path / "config.yml"
    config_file.write_text(
        f"gateway: {{port: {port}, idle_timeout_s: 120}}\nrasa: {{url: '{rasa.url}', timeout_s: 5, replicas: []}}\n"
        "tts: {engine: none}\n"
    )
    process = _gateway_process(
        ["--config", str(config_file), "--log-dir", str(tmp_path / "logs"), "--log-format", "json"],
        env={"EMOTUNE_GATEWAY__AUTH_TOKEN": TOKEN},
    )
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(600):
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, process.communicate()
                await asyncio.sleep(0.1)
        ws, client = await open_call(port, "sigterm-call")
        await ws.send(client.text("where is my parcel"))
        await asyncio.sleep(0.05)  # the gateway has the turn; Rasa is answering it
        process.send_signal(signal.SIGTERM)
        reply = await next_reply(ws, client)  # the turn in flight is still answered
        assert reply.text
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(30):
                while True:
                    await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        returncode = await asyncio.to_thread(process.wait, 60)
        assert returncode == 0, process.communicate()
        with pytest.raises(OSError):  # no longer accepting
            await connect(f"ws://127.0.0.1:{port}/v1/stream", open_timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = read_call_log(tmp_path / "logs" / "sigterm-call.jsonl")
    assert log[-1]["type"] == "call_ended" and log[-1]["reason"] == "gateway shutdown", log[-1]


# -- hostile input limits ----------------------------------------------------------------------------
async def _closed_code(ws: ClientConnection, timeout_s: float = 20.0) -> int | None:
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(timeout_s):
            while True:
                await ws.recv()
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


async def test_hostile_clients_are_cut_off_with_protocol_correct_close_codes(tmp_path: Path) -> None:
    config = make_config()
    config.gateway.max_frame_bytes = 4000
    config.gateway.idle_timeout_s = 0.5
    config.gateway.handshake_timeout_s = 0.5
    config.gateway.max_messages_per_s = 50
    config.gateway.rate_burst_s = 1.0
    gateway = Gateway(config, log_dir=tmp_path, rasa_url=f"http://127.0.0.1:{free_port()}")
    await gateway.start(port=0)
    try:
        # Oversized frame: refused by the websocket layer, 1009 message too big.
        ws, _ = await open_call(gateway.port, "too-big")
        await ws.send(b"\x00" * 5000)
        assert await _closed_code(ws) == 1009
        # Flood: 50 messages/s allowed (1 s burst); 500 back-to-back -> 1008 policy violation.
        ws, client = await open_call(gateway.port, "flood")
        frame = b"\x00" * 640
        with contextlib.suppress(ConnectionClosed):  # sends are buffered: may or may not see the close
            for _ in range(500):
                await ws.send(frame)
        assert await _closed_code(ws) == 1008
        # Idle: nothing for longer than idle_timeout_s -> the gateway ends the call.
        ws, _ = await open_call(gateway.port, "idle")
        code = await _closed_code(ws)
        assert code is not None and code != 1006
        assert read_call_log(tmp_path / "idle.jsonl")[-1]["reason"] == "idle timeout"
        # Handshake: a TCP client that never sends its HTTP upgrade is dropped after handshake_timeout_s.
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(b"GET /v1/stream HTTP/1.1\r\n")  # ...and never the rest
        async with asyncio.timeout(10):
            rest = await reader.read()  # EOF once the gateway gives up
        assert b"101" not in rest
        writer.close()
        for _ in range(100):
            if not gateway.active:
                break
            await asyncio.sleep(0.05)
        assert not gateway.active
        assert gateway.metrics.errors_total.get("rate_limit") == 1
    finally:
        await gateway.stop()
