"""Gateway observability: Prometheus /metrics (hand-written exposition format) and JSON-line logs
with call ids and no transcripts at INFO. Real gateway, real emotion runtime, real Rasa where a bot
turn is needed."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from connectors.devtools.caller import CallerTurn, TwilioCaller
from connectors.devtools.emotune_ws_client import EmotuneWsClient, Ready
from connectors.devtools.rasa_stack import RasaStack
from connectors.gateway import Gateway
from connectors.gateway.logging_json import build_handler
from connectors.gateway.metrics import GatewayMetrics, Histogram
from connectors.tools.demo import load_sample_call
from emotune.config import PROJECT_ROOT, load_config

TOKEN = "metrics-test-token"


def parse_metrics(text: str) -> dict[str, float]:
    """Sample lines -> {'name{labels}': value}; also checks every sample has a TYPE line."""
    samples: dict[str, float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)", line)
        assert match, f"bad exposition line: {line!r}"
        name = match.group(1)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or base in typed, f"{name} has no # TYPE"
        samples[name + (match.group(2) or "")] = float(match.group(3))
    return samples


async def scrape(gateway: Gateway) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"http://127.0.0.1:{gateway.port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse_metrics(response.text)


def test_histogram_buckets_are_cumulative_and_labels_escaped() -> None:
    histogram = Histogram("h_seconds", "test", buckets=(0.1, 1.0))
    for value in (0.05, 0.5, 0.5, 3.0):
        histogram.observe(value)
    text = "\n".join(histogram.render())
    samples = parse_metrics(text)
    assert samples['h_seconds_bucket{le="0.1"}'] == 1
    assert samples['h_seconds_bucket{le="1"}'] == 3
    assert samples['h_seconds_bucket{le="+Inf"}'] == 4
    assert samples["h_seconds_count"] == 4 and samples["h_seconds_sum"] == pytest.approx(4.05)
    metrics = GatewayMetrics()
    metrics.errors_total.inc('odd "kind"\n')
    assert 'kind="odd \\"kind\\"\\n"' in metrics.render()
    with pytest.raises(ValueError, match="takes labels"):
        metrics.calls_total.inc()
    with pytest.raises(ValueError, match="increasing"):
        Histogram("bad", "bad", buckets=(1.0, 0.5))


async def test_metrics_count_calls_and_refusals_by_reason(tmp_path: Path) -> None:
    config = load_config(PROJECT_ROOT / "config.yml")
    config.gateway.max_calls = 1
    config.gateway.auth_token = SecretStr(TOKEN)
    config.gateway.metrics_token = SecretStr(TOKEN)
    gateway = Gateway(config, log_dir=tmp_path)
    await gateway.start(port=0)
    base = f"ws://127.0.0.1:{gateway.port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        before = await scrape(gateway)
        assert before["emotune_active_calls"] == 0
        with pytest.raises(InvalidStatus):
            async with connect(f"{base}/nowhere"):
                pass
        with pytest.raises(InvalidStatus):
            async with connect(f"{base}/v1/stream", additional_headers={"Authorization": "Bearer wrong"}):
                pass
        client = EmotuneWsClient()
        async with connect(f"{base}/v1/stream", additional_headers=auth) as ws:
            await ws.send(client.start(call_id="metrics-call"))
            assert isinstance(client.receive_text(str(await asyncio.wait_for(ws.recv(), 10)))[0], Ready)
            during = await scrape(gateway)
            assert during["emotune_active_calls"] == 1
            with pytest.raises(InvalidStatus):
                async with connect(f"{base}/v1/stream", additional_headers=auth):
                    pass
        for _ in range(100):  # the server notices the close asynchronously
            after = await scrape(gateway)
            if after["emotune_active_calls"] == 0:
                break
            await asyncio.sleep(0.05)
        assert after["emotune_active_calls"] == 0
        assert after['emotune_calls_total{protocol="emotune-ws"}'] == 1
        assert after['emotune_refusals_total{reason="bad_path"}'] == 1
        assert after['emotune_refusals_total{reason="auth"}'] == 1
        assert after['emotune_refusals_total{reason="capacity"}'] == 1
    finally:
        await gateway.stop()


@pytest.fixture(scope="module")
def rasa() -> Iterator[RasaStack]:
    with RasaStack("contact_center", ci=True) as stack:
        yield stack


@pytest.fixture(scope="module")
def sample() -> list[CallerTurn]:
    return load_sample_call().turns


@contextlib.contextmanager
def captured_logs(level: int) -> Iterator[io.StringIO]:
    """The process's log records at ``level`` as JSON lines, through the gateway's own handler."""
    buffer = io.StringIO()
    handler = build_handler(json_lines=True, stream=buffer)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@pytest.mark.rasa
@pytest.mark.slow
@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG])
async def test_a_call_fills_the_latency_histograms_and_logs_json_with_call_ids(
    rasa: RasaStack, sample: list[CallerTurn], tmp_path: Path, level: int
) -> None:
    config = load_config(PROJECT_ROOT / "config.yml")
    config.gateway.metrics_token = SecretStr(TOKEN)
    config.gateway.insecure_dev = True  # unsigned Twilio caller on loopback (signatures: test_gateway_security)
    config.gateway.log_transcripts = level == logging.DEBUG  # the call file keeps text only when asked
    gateway = Gateway(config, log_dir=tmp_path, rasa_url=rasa.url)
    await gateway.start(port=0)
    call_sid = f"CAmetrics{level}"
    try:
        with captured_logs(level) as buffer:
            caller = TwilioCaller(f"ws://127.0.0.1:{gateway.port}/twilio", [sample[0]], speed=4.0, call_sid=call_sid)
            result = await caller.run()
            # The caller may hang up before the gateway has finished the call: wait for it to end.
            for _ in range(400):
                if not gateway.active:
                    break
                await asyncio.sleep(0.05)
        metrics = await scrape(gateway)
    finally:
        await gateway.stop()
    assert result.bot_audio_s > 0.5
    assert metrics['emotune_calls_total{protocol="twilio"}'] == 1
    assert metrics["emotune_turn_latency_seconds_count"] == 1
    # The one turn was recognised by Whisper alone (one caller): a batch of one.
    assert metrics["emotune_asr_words_wait_seconds_count"] == metrics["emotune_asr_queue_seconds_count"] == 1
    assert metrics['emotune_asr_batch_turns_bucket{le="1"}'] == metrics["emotune_asr_batch_turns_count"] == 1
    assert metrics["emotune_label_latency_seconds_count"] >= 1
    assert metrics['emotune_label_latency_seconds_bucket{le="+Inf"}'] == metrics["emotune_label_latency_seconds_count"]
    assert metrics["emotune_rasa_fallbacks_total"] == 0
    assert metrics["emotune_active_calls"] == 0

    records = [json.loads(line) for line in buffer.getvalue().splitlines()]  # every line is one JSON object
    call_records = [r for r in records if r["logger"] == "connectors.gateway.call"]
    messages = [r["message"] for r in call_records]
    assert any(m.startswith("call started") for m in messages), messages
    assert any(m.startswith("call ended") for m in messages), messages
    assert all(r.get("call_id") == call_sid for r in call_records), call_records
    turn = next(r for r in (json.loads(line) for line in (tmp_path / f"{call_sid}.jsonl").read_text().splitlines())
                if r["type"] == "turn")
    everything = buffer.getvalue()
    if level == logging.INFO:  # privacy: no words of the caller or the bot below DEBUG
        assert turn["caller_text"] not in everything and turn["bot_text"] not in everything
    else:
        assert turn["caller_text"] in everything and turn["bot_text"] in everything
