"""The live emotion feed: websocket auth and backlog, and the web page in headless Chromium (CDP)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from connectors.gateway import Gateway
from emotune.config import EmotuneConfig

TOKEN = "feed-test-token"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _no_calls(on_event: Any, rate: int) -> Any:
    raise AssertionError("no call is placed in the feed tests")


@pytest.fixture
async def gateway(tmp_path: Any) -> AsyncIterator[Gateway]:
    config = EmotuneConfig()
    config.gateway.auth_token = SecretStr(TOKEN)
    config.gateway.feed_token = SecretStr(TOKEN)  # the supervisors' role (same string here, separate setting)
    gw = Gateway(config, emotion_factory=_no_calls, log_dir=tmp_path)
    await gw.start(port=0)
    try:
        yield gw
    finally:
        await gw.stop()


def emotion(t: float, label: str, p: float) -> dict[str, Any]:
    rest = (1.0 - p) / 3
    probabilities = {k: (p if k == label else rest) for k in ("neutral", "happy", "sad", "angry")}
    return {
        "type": "emotion", "t": t, "party": "caller",
        "event": {"label": label, "probabilities": probabilities, "arousal": 0.7, "valence": -0.5,
                  "confidence": p, "start_s": t - 2, "end_s": t},
    }  # fmt: skip


async def test_feed_refuses_missing_or_wrong_tokens(gateway: Gateway) -> None:
    base = f"ws://127.0.0.1:{gateway.port}/feed/CA1"
    for url in (base, base + "?token=wrong"):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url):
                pass
        assert refused.value.response.status_code == 401


async def test_feed_sends_backlog_then_live_messages(gateway: Gateway) -> None:
    gateway.feed.publish("CA1", emotion(1.0, "neutral", 0.8))
    async with connect(f"ws://127.0.0.1:{gateway.port}/feed/CA1?token={TOKEN}") as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert first["call_id"] == "CA1" and first["event"]["label"] == "neutral"
        gateway.feed.publish("CA2", emotion(1.0, "sad", 0.9))  # another call: not for this subscriber
        gateway.feed.publish("CA1", emotion(2.0, "angry", 0.9))
        second = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert second["event"]["label"] == "angry"
    async with connect(
        f"ws://127.0.0.1:{gateway.port}/feed/*", additional_headers={"Authorization": f"Bearer {TOKEN}"}
    ) as ws:
        calls = {json.loads(await asyncio.wait_for(ws.recv(), 5))["call_id"] for _ in range(3)}
        assert calls == {"CA1", "CA2"}


async def test_page_and_health_are_served_over_http(gateway: Gateway) -> None:
    async with httpx.AsyncClient() as client:
        page = await client.get(f"http://127.0.0.1:{gateway.port}/feed.html")
        health = await client.get(f"http://127.0.0.1:{gateway.port}/healthz")
        missing = await client.get(f"http://127.0.0.1:{gateway.port}/nothing")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "<canvas" in page.text and not re.search(r"(src|href)=[\"']https?://", page.text)  # no CDN
    assert health.json() == {"status": "ok", "active_calls": 0}
    assert missing.status_code == 404


class Chromium:
    """Headless Chromium driven over the DevTools protocol (plain websockets)."""

    def __init__(self, url: str) -> None:
        assert CHROMIUM is not None
        self.profile = tempfile.mkdtemp(prefix="emotune-chromium-")
        self.process = subprocess.Popen(
            [
                CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={self.profile}", "--remote-debugging-port=0", url,
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        self._ids = 0

    async def page_socket(self) -> str:
        assert self.process.stderr is not None
        loop = asyncio.get_running_loop()
        port = None
        for _ in range(200):
            line = (await loop.run_in_executor(None, self.process.stderr.readline)).decode(errors="replace")
            match = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if match:
                port = int(match.group(1))
                break
        assert port is not None, "chromium did not start its DevTools endpoint"
        async with httpx.AsyncClient() as client:
            for _ in range(50):
                targets = (await client.get(f"http://127.0.0.1:{port}/json/list")).json()
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    return str(pages[0]["webSocketDebuggerUrl"])
                await asyncio.sleep(0.1)
        raise AssertionError("no page target in chromium")

    async def evaluate(self, ws: Any, expression: str) -> Any:
        self._ids += 1
        await ws.send(json.dumps({"id": self._ids, "method": "Runtime.evaluate",
                                  "params": {"expression": expression, "returnByValue": True}}))
        while True:
            reply = json.loads(await ws.recv())
            if reply.get("id") == self._ids:
                return reply["result"]["result"].get("value")

    async def wait_for(self, ws: Any, expression: str, timeout_s: float = 15.0) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout_s
        value = None
        while asyncio.get_running_loop().time() < deadline:
            value = await self.evaluate(ws, expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression!r} (last value {value!r})")

    def close(self) -> None:
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        if self.process.poll() is None:
            self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


# Counts canvas pixels drawn in the "angry" colour (#c0392b): the timeline really was drawn.
ANGRY_PIXELS = """(() => { const c = document.getElementById('timeline');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] === 0xc0 && d[i+1] === 0x39 && d[i+2] === 0x2b) n++;
  return n; })()"""


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package 'chromium' not installed (make setup installs it)")
@pytest.mark.slow
async def test_page_draws_live_events_in_headless_chromium(gateway: Gateway) -> None:
    browser = Chromium(f"http://127.0.0.1:{gateway.port}/feed.html?call=CA9&token={TOKEN}")
    try:
        async with connect(await browser.page_socket(), max_size=None) as ws:
            await browser.wait_for(ws, "document.getElementById('state').textContent === 'live'")
            assert await browser.evaluate(ws, ANGRY_PIXELS) == 0
            for i, (label, p) in enumerate([("neutral", 0.7), ("angry", 0.6), ("angry", 0.9)]):
                gateway.feed.publish("CA9", emotion(float(i + 2), label, p))
            gateway.feed.publish("CA9", {"type": "turn", "t": 4.2, "turn": 1, "caller_text": "where is my refund",
                                         "emotion": emotion(4.0, "angry", 0.9)["event"], "bot_text": "I'm sorry.",
                                         "tone": "calm", "fallback": False})  # fmt: skip
            gateway.feed.publish("CA9", {"type": "escalation", "t": 5.0, "reason": "sustained_anger",
                                         "summary": "Caller sounded angry."})  # fmt: skip
            gateway.feed.publish("CA9", {"type": "handoff", "t": 5.1, "reason": "sustained_anger", "delivered": True,
                                         "lookup": "/v1/handoff/CA9", "context": {
                                             "version": 1, "reason": "sustained_anger", "task": "refund",
                                             "intent": "request_refund", "summary": "Caller sounded angry. Topic: refund.",
                                             "slots": {"order_number": "482107"},
                                             "tickets": [{"reference": "719857", "kind": "refund"}],
                                             "last_caller_words": ["I want a refund", "this is ridiculous"],
                                             "emotion_history": [{"turn": 2, "label": "angry"}],
                                             "caller_told": "briefed"}})  # fmt: skip
            gateway.feed.publish("CA7", emotion(2.0, "sad", 0.9))  # other call: must not show
            await browser.wait_for(ws, "document.getElementById('event-count').textContent === '3'")
            await browser.wait_for(ws, "document.querySelectorAll('#turns tr').length === 1")
            row = await browser.evaluate(ws, "document.querySelector('#turns tr').textContent")
            assert "where is my refund" in row and "calm" in row
            assert "ESCALATION" in await browser.evaluate(ws, "document.getElementById('escalations').textContent")
            handoff = await browser.wait_for(ws, "document.getElementById('handoffs').textContent")
            for shown in ("HAND-OFF (sustained_anger)", "context delivered to the agent", "Topic: refund",
                          "order_number: 482107", "refund 719857", "this is ridiculous", "/v1/handoff/CA9"):
                assert shown in handoff, (shown, handoff)
            assert (await browser.evaluate(ws, "document.getElementById('latest-label').textContent")).startswith(
                "angry"
            )
            assert await browser.evaluate(ws, ANGRY_PIXELS) > 50
    finally:
        browser.close()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package 'chromium' not installed (make setup installs it)")
@pytest.mark.slow
async def test_page_with_a_wrong_token_shows_an_error(gateway: Gateway) -> None:
    browser = Chromium(f"http://127.0.0.1:{gateway.port}/feed.html?call=CA9&token=wrong")
    try:
        async with connect(await browser.page_socket(), max_size=None) as ws:
            state = await browser.wait_for(
                ws, "document.getElementById('state').className === 'error' && "
                "document.getElementById('state').textContent"
            )
            assert "error" in state
    finally:
        browser.close()
