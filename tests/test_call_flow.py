"""Barge-in and the call flow on a real gateway: real websockets, Whisper, silero VAD, espeak-ng.

Rasa is left unreachable on purpose (a refused port): every dialogue turn gets the configured
fallback reply at once, so these tests are about when the bot speaks, not what it says.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from benchmarks.line_signals import hold_music
from connectors.devtools.caller import voiced_span
from connectors.devtools.emotune_ws_client import BotReply, ClearAudio, EmotuneWsClient, Handoff, Ready
from connectors.devtools.rasa_stack import free_port
from connectors.devtools.twilio_client import TwilioStreamClient
from connectors.gateway import Gateway
from connectors.gateway.call import CallPipeline
from connectors.protocols.twilio import TwilioMediaStream
from connectors.tools.demo import load_sample_call
from emotion_runtime.audio import encode as encode_audio
from emotion_runtime.audio import resample
from emotune.config import EmotuneConfig

TOKEN = "call-flow-token"
FALLBACK = "Sorry, I am having trouble right now."


def config_for(**turn_taking: Any) -> EmotuneConfig:
    config = EmotuneConfig(
        turn_taking=turn_taking,
        rasa={"timeout_s": 1.0, "handoff_after_fallbacks": 0, "fallback_reply": FALLBACK},
        asr={"workers": 1},
    )
    config.gateway.auth_token = SecretStr(TOKEN)
    config.gateway.log_level = "DEBUG"  # the call log keeps the words (redacted otherwise)
    return config


@contextlib.asynccontextmanager
async def running(config: EmotuneConfig, tmp_path: Path) -> AsyncIterator[Gateway]:
    gateway = Gateway(config, log_dir=tmp_path, rasa_url=f"http://127.0.0.1:{free_port()}")
    await gateway.start(port=0)
    try:
        yield gateway
    finally:
        await gateway.stop()


async def open_call(gateway: Gateway, call_id: str) -> tuple[ClientConnection, EmotuneWsClient]:
    client = EmotuneWsClient()
    ws = await connect(f"ws://127.0.0.1:{gateway.port}/v1/stream", additional_headers={"Authorization": f"Bearer {TOKEN}"})
    await ws.send(client.start(call_id=call_id))
    assert isinstance(client.receive_text(str(await asyncio.wait_for(ws.recv(), 10)))[0], Ready)
    return ws, client


async def collect(ws: ClientConnection, client: EmotuneWsClient, events: list[Any]) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            if isinstance(message, str):
                events.extend(e for e in client.receive_text(message) if isinstance(e, BotReply | ClearAudio | Handoff))


def call_log(tmp_path: Path) -> list[dict[str, Any]]:
    (path,) = tmp_path.glob("*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def pcm16(audio: np.ndarray) -> bytes:
    return encode_audio(audio, "pcm16")


async def stream(ws: ClientConnection, client: EmotuneWsClient, audio: np.ndarray) -> None:
    """Send 16 kHz audio in real time, 20 ms a frame."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    for i, frame in enumerate(client.audio_frames(pcm16(audio))):
        await ws.send(frame)
        await asyncio.sleep(max(0.0, started + (i + 1) * 0.02 - loop.time()))


def voiced_part(audio: np.ndarray) -> np.ndarray:
    """``audio`` (16 kHz) without its leading and trailing room noise."""
    start_s, end_s = voiced_span(audio, 16000)
    return audio[int(start_s * 16000) : int(end_s * 16000)]


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(16000 * seconds), dtype=np.float32)


async def silent_caller(ws: ClientConnection, client: EmotuneWsClient, limit_s: float) -> list[Any]:
    """A caller on an open line who says nothing (the platform streams silence, as phones do),
    until the server hangs up; returns what the bot sent."""
    events: list[Any] = []
    reader = asyncio.create_task(collect(ws, client, events))
    with contextlib.suppress(ConnectionClosed):
        await asyncio.wait_for(stream(ws, client, silence(limit_s)), limit_s + 5)
    await asyncio.wait_for(reader, 5)
    return events


async def test_barge_in_stops_the_greeting_and_no_stale_reply_is_played(tmp_path: Path) -> None:
    """The caller talks over the greeting (clear), pauses 0.7 s mid-request and goes on. Which of two
    correct things happens depends on how fast the recogniser is against the caller's 0.1-s resume:
    if the caller is speaking again when the first half's words arrive, that half is carried into
    the second and the caller gets exactly one reply, for both; if the words came first (Whisper
    took 89 ms on a quiet machine), the first half is answered before the caller goes on and that
    reply is cut by barge-in. Either way no reply starts after the caller spoke over its turn."""
    greeting = "Hello, thank you for calling. How can I help you today? Please tell me in a few words."
    turns = load_sample_call().turns
    first, second = turns[0], turns[1]
    # Without early transcription: with it, the first half's words are ready when the end-pointer
    # closes it, so it is answered before the caller goes on (that reply is then cut by barge-in).
    async with running(config_for(greeting=greeting, early_transcription_s=None), tmp_path) as gateway:
        ws, client = await open_call(gateway, "barge-in")
        events: list[Any] = []
        reader = asyncio.create_task(collect(ws, client, events))
        async with asyncio.timeout(10):
            while not events:
                await asyncio.sleep(0.02)
        assert isinstance(events[0], BotReply) and events[0].text == greeting
        # The clips' own leading/trailing silence is cut so that the pause is really 0.7 s: the
        # end-pointer (0.6 s) closes the first half just before the caller goes on.
        halves = [voiced_part(first.audio), silence(0.7), voiced_part(second.audio)]
        await stream(ws, client, np.concatenate([silence(0.2), *halves, silence(1.0)]))
        async with asyncio.timeout(40):
            while sum(isinstance(e, BotReply) for e in events) < 2:
                await asyncio.sleep(0.05)
        await stream(ws, client, silence(3.0))  # time for a stale reply to show up, if there were one
        await ws.send(client.end())
        await asyncio.wait_for(reader, 20)
    replies = [e.text for e in events if isinstance(e, BotReply)]
    assert any(isinstance(e, ClearAudio) for e in events[1:]), events
    records = call_log(tmp_path)
    kinds = [r["type"] for r in records]
    turns = [r for r in records if r["type"] == "turn"]
    # The invariant of both outcomes: between a turn's answer and its first audio no barge-in fell
    # (a reply that went stale is dropped, never started).
    for i, kind in enumerate(kinds):
        if kind == "turn" and "bot_audio" in kinds[i + 1 :]:
            assert "barge_in" not in kinds[i + 1 : kinds.index("bot_audio", i + 1)], kinds
    if "turn_superseded" in kinds:  # the caller resumed before the words came: one reply, for both
        assert replies == [greeting, FALLBACK], replies
        (turn,) = turns
        heard = turn["caller_text"].lower()
        assert heard.count("door") == 2, heard  # both sentences end in "by the door"
    else:  # the words came first: the first half answered, cut by the caller, then the second answered
        assert replies == [greeting, FALLBACK, FALLBACK], replies
        assert [t["caller_text"].lower().count("door") for t in turns] == [1, 1], turns
        first_reply_audio = kinds.index("bot_audio", kinds.index("turn"))
        assert "barge_in" in kinds[first_reply_audio:kinds.index("turn", first_reply_audio)], kinds  # it was cut


async def test_a_typed_turn_is_answered_while_the_caller_keeps_talking(tmp_path: Path) -> None:
    """Text from the platform is not the caller's speech: speech onsets never make it stale."""
    turns = load_sample_call().turns
    async with running(config_for(), tmp_path) as gateway:
        ws, client = await open_call(gateway, "typed-over-speech")
        events: list[Any] = []
        reader = asyncio.create_task(collect(ws, client, events))
        talking = asyncio.create_task(stream(ws, client, np.concatenate([t.audio for t in turns[:3]])))
        await asyncio.sleep(1.0)
        await ws.send(client.text("I want to check my order"))
        await talking
        async with asyncio.timeout(30):
            while sum(isinstance(e, BotReply) for e in events) < 1:
                await asyncio.sleep(0.05)
        await ws.send(client.end())
        await asyncio.wait_for(reader, 20)
    records = call_log(tmp_path)
    typed = [r for r in records if r["type"] == "turn" and r["caller_text"] == "I want to check my order"]
    assert typed, [r["type"] for r in records]
    assert not [r for r in records if r["type"] == "turn_superseded" and "order" in r["caller_text"]]


async def test_hold_music_gets_no_emotion_label_and_speech_does(tmp_path: Path) -> None:
    """The neural VAD gates the caller's emotion windows: music on the line is not an emotion."""
    config = config_for()
    config.tts.engine = "none"
    speech = np.concatenate([t.audio for t in load_sample_call().turns[:2]])
    async with running(config, tmp_path) as gateway:
        ws, client = await open_call(gateway, "hold-music")
        reader = asyncio.create_task(collect(ws, client, []))
        # Chords under a melody, loud enough to pass any energy gate: only the VAD knows it is music.
        music = 0.1 * hold_music(6.0, rate=16000)
        await stream(ws, client, np.concatenate([music, speech, silence(1.0)]))
        await ws.send(client.end())
        await asyncio.wait_for(reader, 30)
    records = call_log(tmp_path)
    music_end = 6.0
    labelled = [r["event"] for r in records if r["type"] == "emotion"]
    gated = [r for r in records if r["type"] == "emotion_not_speech"]
    assert gated and all(r["end_s"] <= music_end + 1.0 for r in gated), gated
    assert not [e for e in labelled if e["end_s"] <= music_end], labelled  # no label on music alone
    assert [e for e in labelled if e["start_s"] >= music_end], labelled  # the caller's speech is labelled


async def test_silence_gets_a_reprompt_then_goodbye(tmp_path: Path) -> None:
    config = config_for(reprompt_after_s=1.0, max_reprompts=1, silence_action="goodbye")
    config.tts.engine = "none"
    async with running(config, tmp_path) as gateway:
        ws, client = await open_call(gateway, "silent")
        events = await silent_caller(ws, client, 15.0)  # the server hangs up long before
    replies = [e.text for e in events if isinstance(e, BotReply)]
    tt = config.turn_taking
    assert replies == [tt.reprompt, tt.goodbye], replies
    assert any(r["type"] == "bot_hung_up" for r in call_log(tmp_path))


async def test_max_call_length_hands_off(tmp_path: Path) -> None:
    config = config_for(max_call_s=1.0, max_call_action="handoff")
    config.tts.engine = "none"
    async with running(config, tmp_path) as gateway:
        ws, client = await open_call(gateway, "long")
        events = await silent_caller(ws, client, 15.0)
    assert [e.text for e in events if isinstance(e, BotReply)] == [config.turn_taking.max_call_message]
    assert any(isinstance(e, Handoff) and e.reason == "max_call_length" for e in events), events


def twilio_pipeline(gateway: Gateway) -> tuple[CallPipeline, TwilioStreamClient, Callable[[str], Awaitable[None]]]:
    """A real call pipeline behind the Twilio core, fed its JSON frames directly (the route's signature
    check is another test's business): (pipeline, client, feed)."""
    core = TwilioMediaStream()

    async def send(message: Any) -> None:
        pass

    pipeline = CallPipeline(gateway.services, core, send, "twilio")

    async def feed(frame: str) -> None:
        for event in core.receive_text(frame):
            await pipeline.handle(event)

    return pipeline, TwilioStreamClient(), feed


async def started(client: TwilioStreamClient, feed: Callable[[str], Awaitable[None]]) -> None:
    await feed(client.connected())
    await feed(client.start())
    for frame in client.media_frames(encode_audio(resample(silence(0.2), 16000, 8000), "mulaw")):
        await feed(frame)


async def test_dtmf_reaches_the_dialogue_and_a_flood_is_dropped(tmp_path: Path) -> None:
    """Twilio's keypad events through a real call pipeline (the Twilio core fed its JSON frames
    directly: the route's signature check is another test's business)."""
    config = config_for(dtmf={"0": "/request_human"}, dtmf_max_per_s=5.0)
    config.tts.engine = "none"
    async with running(config, tmp_path) as gateway:
        pipeline, client, feed = twilio_pipeline(gateway)
        await started(client, feed)
        await asyncio.sleep(0.5)
        await feed(client.dtmf("0"))
        for _ in range(30):  # a flood
            await feed(client.dtmf("5"))
        await asyncio.sleep(1.5)
        await pipeline.finish("test over")
    records = call_log(tmp_path)
    turns = [r for r in records if r["type"] == "turn"]
    assert [t["caller_text"] for t in turns] == ["/request_human"], turns
    dropped = [r for r in records if r["type"] == "dtmf_dropped"]
    assert 20 <= len(dropped) <= 30, len(dropped)


async def test_keypad_number_is_one_turn_and_bad_entries_get_their_prompts(tmp_path: Path) -> None:
    """turn_taking.keypad on a real call pipeline (Twilio frames fed to the core; Rasa unreachable, so
    the collector is armed here as the bot's "what's your order number?" arms it)."""
    config = config_for(dtmf={"0": "/request_human"}, dtmf_max_per_s=5.0)
    config.tts.engine = "none"
    async with running(config, tmp_path) as gateway:
        pipeline, client, feed = twilio_pipeline(gateway)
        async def keys(typed: str, gap_s: float = 0.25) -> None:
            for key in typed:
                await feed(client.dtmf(key))
                await asyncio.sleep(gap_s)

        async def answered(count: int) -> None:
            async with asyncio.timeout(10):
                while sum(r["type"] == "turn" for r in call_log(tmp_path)) < count:
                    await asyncio.sleep(0.05)

        await started(client, feed)
        await asyncio.sleep(1.0)
        turns = pipeline.turns
        turns.keypad.arm()
        pipeline.speech.playback_until = time.monotonic() + 30  # the bot is still asking: keys barge in
        await keys("4821*482107#")  # a slip, '*', then the number: one turn (its 0 is no hand-off)
        await answered(1)
        assert pipeline.speech.playback_until == 0.0  # the first key stopped the bot
        turns.keypad.arm()
        await keys("#")  # nothing typed: the keypad prompt, no turn
        turns.keypad.arm()
        await keys("1234567890#", gap_s=0.21)  # too long: sent at once, the rest ignored
        await answered(2)
        await asyncio.sleep(config.turn_taking.keypad.inter_digit_timeout_s + 0.3)
        turns.keypad.arm()
        await keys("4")
        for _ in range(12):  # a flood mid-number: digits dropped, the number thrown away
            await feed(client.dtmf("2"))
        await asyncio.sleep(config.turn_taking.keypad.inter_digit_timeout_s + 0.5)
        await keys("517")  # typed again, then a pause instead of '#': sent as it is
        await asyncio.sleep(config.turn_taking.keypad.inter_digit_timeout_s + 0.5)
        await answered(3)
        await pipeline.finish("test over")
    records = call_log(tmp_path)
    assert [t["caller_text"] for t in records if t["type"] == "turn"] == ["482107", "123456789", "517"]
    numbers = [(r["digits"], r["reason"]) for r in records if r["type"] == "keypad_number"]
    assert numbers == [("482107", "terminator"), ("123456789", "too_long"), ("517", "timeout")], numbers
    kinds = [r["type"] for r in records]
    # The first digit stopped the bot (barge-in), before the slip was cleared and the number sent.
    assert kinds.index("dtmf") + 1 == kinds.index("barge_in") < kinds.index("keypad_cleared") < kinds.index("keypad_number")
    prompts = [r["prompt"] for r in records if r["type"] == "bot_prompt"]
    assert prompts == ["keypad_empty", "keypad_abandoned"], prompts
    ignored = [r["reason"] for r in records if r["type"] == "keypad_ignored"]
    assert ignored == ["too_long", "too_long"], ignored  # the 0 and the '#' after the 9th digit
    assert sum(r["type"] == "dtmf_dropped" for r in records) >= 5  # the flood: dropped, none a digit


@pytest.mark.parametrize("words", ["uh-huh", "Okay.", "Mm-hmm, okay!"])
def test_backchannels_are_recognised(words: str) -> None:
    from connectors.gateway.dialogue_turn import DialogueTurns

    class _Call:
        services = type("S", (), {"config": EmotuneConfig()})()

    turns = DialogueTurns(_Call())  # type: ignore[arg-type]
    assert turns.is_backchannel(words)
    assert not turns.is_backchannel("okay I want a refund")
