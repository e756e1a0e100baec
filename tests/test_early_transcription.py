"""Early transcription (``turn_taking.early_transcription_s``): the turn so far is recognised at a short
pause, and used only when the turn ends in that same pause (no speech after its audio)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from test_call_flow import call_log, collect, config_for, open_call, running, silence, stream, voiced_part

from connectors.devtools.emotune_ws_client import BotReply
from connectors.gateway.turn_taking import SegmentEvent, TurnSegmenter
from connectors.tools.demo import load_sample_call
from emotune.config import PROJECT_ROOT, EmotuneConfig, load_config

RATE = 16000


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def quiet(seconds: float) -> np.ndarray:
    return np.zeros(int(RATE * seconds), dtype=np.float32)


def events_of(audio: np.ndarray, early_s: float | None = 0.25) -> list[SegmentEvent]:
    segmenter = TurnSegmenter(threshold_db=-40.0, end_silence_s=0.6, early_transcription_s=early_s)
    return [e for e in segmenter.push(audio) if e.kind != "onset"]


def test_a_pause_hands_over_the_turn_so_far_and_the_turn_ends_in_it() -> None:
    events = events_of(np.concatenate([quiet(0.5), tone(1.0), quiet(1.0)]))
    assert [e.kind for e in events] == ["pause", "turn"]
    pause, turn = events
    assert pause.pause == turn.pause  # no speech after the early audio: its transcript is the turn's
    assert pause.end_s == pytest.approx(1.5 + 0.25, abs=0.05)
    assert pause.audio is not None and turn.audio is not None
    # The turn so far padded with digital silence to the turn's length: on a silent line, the very input
    # the recogniser gets at the turn's end (so the early words are the words it would have heard).
    assert pause.audio.shape == turn.audio.shape
    assert np.array_equal(pause.audio, turn.audio)


def test_speech_after_a_pause_makes_its_early_audio_useless() -> None:
    events = events_of(np.concatenate([quiet(0.5), tone(0.8), quiet(0.4), tone(0.8), quiet(1.0)]))
    assert [e.kind for e in events] == ["pause", "pause", "turn"]
    first, second, turn = events
    assert first.pause != turn.pause and second.pause == turn.pause


def test_null_in_the_environment_switches_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMOTUNE_TURN_TAKING__EARLY_TRANSCRIPTION_S", "null")
    assert load_config(PROJECT_ROOT / "config.yml").turn_taking.early_transcription_s is None
    monkeypatch.setenv("EMOTUNE_TURN_TAKING__EARLY_TRANSCRIPTION_S", "0.3")
    assert load_config(PROJECT_ROOT / "config.yml").turn_taking.early_transcription_s == 0.3


def test_off_means_no_pause_events_and_a_too_late_setting_is_refused() -> None:
    assert [e.kind for e in events_of(np.concatenate([tone(1.0), quiet(1.0)]), early_s=None)] == ["turn"]
    with pytest.raises(ValidationError, match="early_transcription_s must be below end_silence_s"):
        EmotuneConfig.model_validate({"turn_taking": {"early_transcription_s": 0.6, "end_silence_s": 0.6}})


async def _one_turn(tmp_path: Path, audio: np.ndarray, **turn_taking: Any) -> list[dict[str, Any]]:
    """One caller turn through a real gateway (real silero VAD and Whisper); the call log."""
    async with running(config_for(**turn_taking), tmp_path) as gateway:
        ws, client = await open_call(gateway, "early")
        events: list[Any] = []
        reader = asyncio.create_task(collect(ws, client, events))
        await stream(ws, client, audio)
        async with asyncio.timeout(30):
            while not any(isinstance(e, BotReply) for e in events):
                await asyncio.sleep(0.05)
        await ws.send(client.end())
        await asyncio.wait_for(reader, 20)
    return call_log(tmp_path)


async def test_the_early_transcript_answers_a_turn_that_ended_in_its_pause(tmp_path: Path) -> None:
    first = voiced_part(load_sample_call().turns[0].audio)
    records = await _one_turn(tmp_path, np.concatenate([silence(0.3), first, silence(1.5)]))
    (turn,) = [r for r in records if r["type"] == "turn"]
    assert "door" in turn["caller_text"].lower(), turn
    used = [r for r in records if r["type"] == "early_transcript_used"]
    assert len(used) == 1 and used[0]["saved_s"] > 0.2, used  # end_silence_s 0.6 - 0.25, less the VAD's frames


async def test_a_caller_who_goes_on_after_the_pause_is_heard_in_full(tmp_path: Path) -> None:
    """A 0.45-s pause mid-request starts a guess of the first half; the caller goes on, so the turn
    (one turn: the pause is shorter than end_silence_s) is the whole request, never the guess."""
    turns = load_sample_call().turns
    halves = [voiced_part(turns[0].audio), silence(0.45), voiced_part(turns[1].audio)]
    records = await _one_turn(tmp_path, np.concatenate([silence(0.3), *halves, silence(1.5)]))
    (turn,) = [r for r in records if r["type"] == "turn"]
    assert turn["caller_text"].lower().count("door") == 2, turn  # both sentences end in "by the door"


async def test_with_early_transcription_off_the_turn_is_recognised_at_its_end(tmp_path: Path) -> None:
    first = voiced_part(load_sample_call().turns[0].audio)
    records = await _one_turn(tmp_path, np.concatenate([silence(0.3), first, silence(1.5)]), early_transcription_s=None)
    assert "door" in next(r for r in records if r["type"] == "turn")["caller_text"].lower()
    assert not [r for r in records if r["type"] == "early_transcript_used"]
