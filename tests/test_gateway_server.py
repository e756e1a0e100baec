"""Gateway server behaviour that needs no call audio: routing, limits, config reload."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from connectors.devtools.rasa_stack import free_port
from connectors.gateway import Gateway, pid_file, request_reload, serve
from emotune.config import EmotuneConfig


def _no_calls(on_event: Any, rate: int) -> Any:
    raise AssertionError("no call audio in these tests")


async def test_unknown_path_and_call_limit_are_refused_at_the_handshake(tmp_path: Path) -> None:
    config = EmotuneConfig()
    config.gateway.max_calls = 1
    config.gateway.auth_token = SecretStr("t")
    gateway = Gateway(config, emotion_factory=_no_calls, log_dir=tmp_path)
    await gateway.start(port=0)
    base = f"ws://127.0.0.1:{gateway.port}"
    try:
        with pytest.raises(InvalidStatus) as unknown:
            async with connect(f"{base}/nowhere"):
                pass
        assert unknown.value.response.status_code == 404
        auth = {"Authorization": "Bearer t"}
        async with connect(f"{base}/v1/stream", additional_headers=auth):
            await asyncio.sleep(0.1)  # the first call is now active
            with pytest.raises(InvalidStatus) as busy:
                async with connect(f"{base}/v1/stream", additional_headers=auth):
                    pass
            assert busy.value.response.status_code == 503
    finally:
        await gateway.stop()


async def test_sighup_reloads_a_valid_config_and_keeps_the_old_one_otherwise(tmp_path: Path) -> None:
    port = free_port()
    config_file = tmp_path / "config.yml"
    config_file.write_text(f"gateway: {{port: {port}}}\nrasa: {{fallback_reply: first}}\n")
    config = EmotuneConfig(gateway={"port": port, "runtime_dir": tmp_path / "run"}, rasa={"fallback_reply": "first"})
    config.gateway.auth_token = SecretStr("t")  # fail closed: a gateway with no credentials does not start
    started: asyncio.Future[Gateway] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(config, emotion_factory=_no_calls, log_dir=tmp_path, ready=started.set_result, config_path=config_file)
    )
    gateway = await asyncio.wait_for(started, 10)
    try:
        assert pid_file(config).read_text().split()[0] == str(os.getpid())
        config_file.write_text(f"gateway: {{port: {port}}}\nrasa: {{fallback_reply: second}}\n")
        assert request_reload(config) == 0
        await asyncio.sleep(0.2)
        assert gateway.services.config.rasa.fallback_reply == "second"
        assert gateway.rasa.config.fallback_reply == "second"
        config_file.write_text("rasa: {timeout_s: -1}\n")  # invalid: must not replace the running config
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.2)
        assert gateway.services.config.rasa.fallback_reply == "second"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not pid_file(config).exists()
    assert request_reload(config) == 1  # nothing running any more


async def test_twilio_transfer_posts_the_twiml_to_the_calls_api() -> None:
    """The REST call Twilio's API would receive, captured by a loopback HTTP listener (Twilio's
    API cannot run here; the request format is what is under test)."""
    import base64
    from urllib.parse import parse_qs

    from connectors.dialogue.transfer import TwilioRestTransfer
    from connectors.protocols.base import TransferRequested
    from connectors.protocols.twilio import transfer_twiml
    from emotune.errors import DialogueError

    captured: dict[str, Any] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        lines = head.split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await reader.readexactly(int(headers["content-length"]))
        captured.update(request=lines[0], headers=headers, body=body.decode())
        status = b"201 Created" if "AC1" in lines[0] else b"404 Not Found"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    twiml = transfer_twiml("+15550100")
    transfer = TransferRequested(call_id="CA1", account_id="AC1", target="+15550100", twiml=twiml,
                                 reason="sustained_anger", summary="angry")  # fmt: skip
    async with server:
        await TwilioRestTransfer("secret-token", base_url=f"http://127.0.0.1:{port}")(transfer)
        assert captured["request"] == "POST /2010-04-01/Accounts/AC1/Calls/CA1.json HTTP/1.1"
        assert captured["headers"]["authorization"] == "Basic " + base64.b64encode(b"AC1:secret-token").decode()
        assert parse_qs(captured["body"])["Twiml"] == [twiml]
        with pytest.raises(DialogueError, match="404"):
            wrong = TransferRequested("CA1", "AC2", "+15550100", twiml, "sustained_anger", "angry")
            await TwilioRestTransfer("secret-token", base_url=f"http://127.0.0.1:{port}")(wrong)
    captured.clear()
    await TwilioRestTransfer(None)(transfer)  # no credentials: nothing is sent, no error
    assert captured == {}
