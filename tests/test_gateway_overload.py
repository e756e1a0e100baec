"""Overload shedding: a caller turn that waited past ``gateway.turn_deadline_s`` for speech
recognition gets ``gateway.busy_reply`` (an explicit answer, never silence) and the call goes on.

Real gateway in process, real pocketsphinx workers, real websocket client. The backlog a burst of
calls makes is produced deterministically by holding the gateway's recognition slot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect

from connectors.devtools.emotune_ws_client import BotReply, EmotuneWsClient, Ready
from connectors.devtools.rasa_stack import free_port
from connectors.gateway import Gateway
from connectors.tools.demo import load_sample_call
from connectors.tools.report import read_call_log
from emotion_runtime.audio import encode as encode_audio
from emotune.config import PROJECT_ROOT, EmotuneConfig, load_config

TOKEN = "overload-test-token"


def _config(rasa_timeout_s: float) -> EmotuneConfig:
    config = load_config(PROJECT_ROOT / "config.yml")
    config.gateway.auth_token = SecretStr(TOKEN)
    config.gateway.log_transcripts = True  # the shed turn's reply is read back from the call log
    config.gateway.insecure_dev = True  # unsigned Twilio callers on loopback (signatures: test_gateway_security)
    config.tts.engine = "none"  # replies as text: these tests are about which answer, not its audio
    config.rasa.timeout_s = rasa_timeout_s
    return config


@contextlib.asynccontextmanager
async def _call(port: int, client: EmotuneWsClient, call_id: str) -> AsyncIterator[ClientConnection]:
    async with connect(f"ws://127.0.0.1:{port}/v1/stream",
                       additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        await ws.send(client.start(call_id=call_id))
        assert isinstance(client.receive_text(str(await ws.recv()))[0], Ready)
        yield ws


async def _reply(ws: ClientConnection, client: EmotuneWsClient) -> BotReply:
    async with asyncio.timeout(30):
        while True:
            message = await ws.recv()
            parse = client.receive_bytes if isinstance(message, bytes) else client.receive_text
            for event in parse(message):
                if isinstance(event, BotReply):
                    return event


async def test_a_turn_past_the_deadline_gets_the_busy_reply_and_the_next_turn_is_served(tmp_path: Path) -> None:
    config = _config(rasa_timeout_s=1.0)
    config.gateway.turn_deadline_s = 0.5
    config.asr.workers = 1
    # No Rasa listens there: a shed turn never reaches Rasa, a served one gets the Rasa fallback.
    gateway = Gateway(config, log_dir=tmp_path, rasa_url=f"http://127.0.0.1:{free_port()}")
    await gateway.start(port=0)
    slots = gateway.services.asr_slots
    assert slots is not None
    turn = load_sample_call().turns[0]
    speech = encode_audio(np.concatenate([turn.audio, np.zeros(16000, np.float32)]), "pcm16")
    client = EmotuneWsClient()
    try:
        async with _call(gateway.port, client, "overloaded") as ws:

            held = config.asr.turns_in_flight()  # the worker's whole batch
            for _ in range(held):
                await slots.acquire()  # every recogniser busy, as under a burst of calls
            for frame in client.audio_frames(speech):
                await ws.send(frame)
            await asyncio.sleep(1.0)  # the turn ends and waits past its 0.5 s deadline
            for _ in range(held):
                slots.release()
            shed = await _reply(ws, client)
            assert shed.text == config.gateway.busy_reply

            for frame in client.audio_frames(speech):  # the caller repeats; nothing is backed up now
                await ws.send(frame)
            served = await _reply(ws, client)
            assert served.text == config.rasa.fallback_reply  # went to (absent) Rasa: served, not shed
    finally:
        await gateway.stop()
    assert gateway.metrics.errors_total.get("turn_shed") == 1
    log = read_call_log(tmp_path / "overloaded.jsonl")
    kinds = [r["type"] for r in log if r["type"] in ("turn_shed", "turn")]
    assert kinds == ["turn_shed", "turn"]
    shed_record = next(r for r in log if r["type"] == "turn_shed")
    assert shed_record["waited_s"] >= 0.5 and shed_record["bot_text"] == config.gateway.busy_reply


async def test_turns_arriving_while_the_gateway_drains_are_logged_as_dropped(tmp_path: Path) -> None:
    """SIGTERM path (Gateway.stop): the turn in flight is answered, a turn the caller starts during
    the drain is not queued (it would be cut off) but counted and logged as dropped."""

    async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # a Rasa that hangs: keeps the first turn in flight

    hanging = await asyncio.start_server(never_answers, "127.0.0.1", 0)
    rasa_port = hanging.sockets[0].getsockname()[1]
    config = _config(rasa_timeout_s=2.0)
    gateway = Gateway(config, log_dir=tmp_path, rasa_url=f"http://127.0.0.1:{rasa_port}")
    await gateway.start(port=0)
    client = EmotuneWsClient()
    try:
        async with _call(gateway.port, client, "draining") as ws:
            await ws.send(client.text("where is my parcel"))
            await asyncio.sleep(0.2)  # the turn is at Rasa now
            stopping = asyncio.create_task(gateway.stop(drain_timeout_s=10))
            await asyncio.sleep(0.2)
            await ws.send(client.text("hello?"))  # arrives during the drain
            reply = await _reply(ws, client)
            assert reply.text == config.rasa.fallback_reply  # the turn in flight still got its answer
            await asyncio.wait_for(stopping, 30)
    finally:
        hanging.close()
        if not gateway.stopping:
            await gateway.stop()
    assert gateway.metrics.errors_total.get("turn_dropped") == 1
    log = read_call_log(tmp_path / "draining.jsonl")
    dropped = [r for r in log if r["type"] == "turn_dropped"]
    assert [r["reason"] for r in dropped] == ["gateway shutting down"]
    assert [r["type"] for r in log if r["type"] == "turn"] == ["turn"]
