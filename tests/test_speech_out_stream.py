"""Speech out, sentence by sentence: the first sentence goes to the caller before the next is
synthesised, a barge-in stops the sentences not yet sent, whole-reply engines are unchanged."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np

from connectors.dialogue.rasa_client import BotReply
from connectors.gateway.speech_out import SpeechOut
from connectors.protocols.base import AudioFormat
from connectors.speech.tts import Speech
from emotune.config import EmotuneConfig, Prosody

RATE = 8000


def _speech(text: str, seconds: float = 0.5) -> Speech:
    return Speech(np.full(round(seconds * RATE), 0.1, dtype=np.float32), RATE, text, 0.01)


class _Core:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    def send_bot_reply(self, text: str, tone: str, fmt: Any, meta: Any) -> list[Any]:
        self.events.append("reply")
        return []

    def send_audio(self, wire: bytes, encoding: str, rate: int) -> list[Any]:
        self.events.append(f"audio {len(wire)}")
        return []

    def send_mark(self, name: str) -> list[Any]:
        self.events.append(f"mark {name}")
        return [name]

    def send_clear(self) -> list[Any]:
        self.events.append("clear")
        return []


def _call(synthesizer: Any, events: list[str]) -> SimpleNamespace:
    records: list[tuple[str, dict[str, Any]]] = []

    async def after_send(messages: list[Any]) -> None:
        return None

    return SimpleNamespace(
        audio_format=AudioFormat("mulaw", RATE), core=_Core(events), ended=False, records=records,
        services=SimpleNamespace(config=EmotuneConfig(), synthesizer=synthesizer, metrics=None),
        record=lambda kind, **fields: records.append((kind, fields)), after_send=after_send,
    )  # fmt: skip


class _Streaming:
    name = "streaming"

    def __init__(self, events: list[str], on_part: Any = None) -> None:
        self.events = events
        self.on_part = on_part

    def synthesize(self, text: str, prosody: Prosody) -> Speech:  # pragma: no cover - not used when streaming
        raise AssertionError("a streaming engine is asked for parts")

    def synthesize_parts(self, text: str, prosody: Prosody) -> Iterator[Speech]:
        for index, sentence in enumerate(text.split(". ")):
            if self.on_part is not None:
                self.on_part(index)
            self.events.append(f"synth {index}")
            yield _speech(sentence)


def test_first_sentence_is_sent_before_the_next_is_synthesised() -> None:
    events: list[str] = []
    call = _call(_Streaming(events), events)
    out = SpeechOut(call)  # type: ignore[arg-type]
    asyncio.run(out.speak(BotReply(text="One. Two. Three."), "standard", turn_ended_at=None))
    audio = f"audio {round(0.5 * RATE)}"
    assert events == ["synth 0", "reply", audio, "synth 1", audio, "synth 2", audio, "mark reply-1"]
    kind, fields = call.records[-1]
    assert kind == "bot_audio" and fields["parts"] == 3 and fields["cut"] is False
    assert abs(fields["duration_s"] - 1.5) < 1e-6 and out.marks and out.speaking()


def test_barge_in_stops_the_sentences_not_yet_sent() -> None:
    events: list[str] = []

    async def run() -> None:
        loop = asyncio.get_running_loop()

        def on_part(index: int) -> None:  # the caller talks over sentence 1 while sentence 2 is made
            if index == 1:
                asyncio.run_coroutine_threadsafe(out.barge_in(0.4), loop).result(timeout=5)

        synthesizer = _Streaming(events, on_part)
        call.services.synthesizer = synthesizer
        await out.speak(BotReply(text="One. Two. Three."), "standard", turn_ended_at=None)

    call = _call(None, events)
    out = SpeechOut(call)  # type: ignore[arg-type]
    asyncio.run(run())
    assert events == ["synth 0", "reply", f"audio {round(0.5 * RATE)}", "clear", "synth 1"]  # no mark either
    assert not out.marks and not out.speaking()
    kind, fields = call.records[-1]
    assert kind == "bot_audio" and fields["parts"] == 1 and fields["cut"] is True


def test_a_whole_reply_engine_sends_one_audio_and_one_mark() -> None:
    events: list[str] = []

    class Whole:
        name = "whole"

        def synthesize(self, text: str, prosody: Prosody) -> Speech:
            events.append("synth")
            return _speech(text, 1.0)

    call = _call(Whole(), events)
    out = SpeechOut(call)  # type: ignore[arg-type]
    asyncio.run(out.speak(BotReply(text="One. Two."), "calm", turn_ended_at=None))
    assert events == ["synth", "reply", f"audio {RATE}", "mark reply-1"]
    assert call.records[-1][1]["parts"] == 1
