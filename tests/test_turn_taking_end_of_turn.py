"""The end-of-turn stage: the decision rule, the segmenter and VAD hub wiring, and the real smart-turn model."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest

from connectors.devtools.turn_samples import speech_cuts
from connectors.gateway.end_of_turn import Decision, EndOfTurnRule
from connectors.gateway.turn_taking import EnergyVad, SegmentEvent, TurnSegmenter
from connectors.gateway.vad_hub import VadHub
from connectors.tools.demo import load_sample_call
from emotion_runtime import weights
from emotion_runtime.audio import decode, encode, resample
from emotion_runtime.end_of_turn import MODEL_NAME, SmartTurnModel
from emotune.config import PROJECT_ROOT, EmotuneConfig
from emotune.errors import ModelFileError

RULE = EndOfTurnRule("smart_turn", threshold=0.5, short_silence_s=0.2, end_silence_s=0.6, long_silence_s=2.0)
SMART = {"end_of_turn": "smart_turn"}


def _first_end(rule: EndOfTurnRule, probability: float | None, step: float = 0.02) -> tuple[float, bool]:
    """Walk one pause frame by frame: (silence at which the turn ends, whether the model was asked)."""
    asked, answer = False, None
    for i in range(1, 1000):
        decision = rule.decide(i * step, asked, answer)
        if decision is Decision.ASK:
            asked, answer = True, probability
            decision = rule.decide(i * step, asked, answer)
        if decision is Decision.END:
            return i * step, asked
    raise AssertionError("the turn never ended")


def test_rule_finished_ends_at_the_short_pause_unfinished_waits_to_the_long_one() -> None:
    assert _first_end(RULE, 0.9) == (pytest.approx(0.2), True)
    assert _first_end(RULE, 0.5) == (pytest.approx(0.2), True)  # at the threshold: finished
    assert _first_end(RULE, 0.1) == (pytest.approx(2.0), True)


def test_rule_without_an_answer_falls_back_to_the_silence_rule_and_never_sticks() -> None:
    # Model failed, timed out or its request was dropped: no probability ever arrives.
    assert _first_end(RULE, None) == (pytest.approx(0.6), True)
    # An answer arriving late still counts while the pause lasts; nothing waits past long_silence_s.
    assert RULE.decide(0.5, True, None) is Decision.WAIT
    assert RULE.decide(0.5, True, 0.9) is Decision.END
    assert RULE.decide(2.0, True, 0.0) is Decision.END
    silence = EndOfTurnRule("silence", end_silence_s=0.6)
    assert _first_end(silence, 0.9) == (pytest.approx(0.6), False)  # the model is never asked
    with pytest.raises(ValueError):
        EndOfTurnRule("smart_turn", short_silence_s=0.7, end_silence_s=0.6)


class _FakeModel:
    def __init__(self, probability: float | None) -> None:
        self.p = probability
        self.calls = 0

    def probability(self, audio: np.ndarray, sample_rate: int) -> float:
        self.calls += 1
        if self.p is None:
            raise RuntimeError("model down")
        return self.p

    def probabilities(self, turns: list[tuple[np.ndarray, int]]) -> list[float]:
        return [self.probability(a, r) for a, r in turns]


def _tone_then_silence(rate: int = 8000) -> np.ndarray:
    t = np.arange(rate) / rate
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return np.concatenate([np.zeros(rate // 2, np.float32), tone, np.zeros(3 * rate, np.float32)])


def _turn_end_delay(probability: float | None) -> tuple[float, int]:
    model = _FakeModel(probability)
    segmenter = TurnSegmenter(sample_rate=8000, vad=EnergyVad(8000), rule=RULE, end_of_turn_model=model)  # type: ignore[arg-type]
    audio = _tone_then_silence()
    events = [e for i in range(0, audio.shape[0], 160) for e in segmenter.push(audio[i : i + 160])]
    (turn,) = [e for e in events if e.kind == "turn"]
    return turn.end_s - 1.5, model.calls


def test_segmenter_asks_once_per_pause_and_follows_the_answer() -> None:
    delay, calls = _turn_end_delay(0.9)
    assert delay == pytest.approx(0.2, abs=0.03) and calls == 1
    delay, calls = _turn_end_delay(0.1)
    assert delay == pytest.approx(2.0, abs=0.03) and calls == 1


def test_speech_after_a_pause_starts_a_new_question() -> None:
    model = _FakeModel(0.1)
    segmenter = TurnSegmenter(sample_rate=8000, vad=EnergyVad(8000), rule=RULE, end_of_turn_model=model)  # type: ignore[arg-type]
    tone = _tone_then_silence()[4000:12000]
    gap = np.zeros(4000, np.float32)  # 0.5 s: asked (unfinished), then the caller goes on
    audio = np.concatenate([gap, tone, gap, tone, np.zeros(20000, np.float32)])
    events = [e for i in range(0, audio.shape[0], 160) for e in segmenter.push(audio[i : i + 160])]
    assert [e.kind for e in events].count("turn") == 1  # one turn for both halves
    assert model.calls == 2


# -- the gateway's VAD hub: the model off the event loop, failures fall back ----------------------
def _phone(audio_16k: np.ndarray) -> np.ndarray:
    return decode(encode(resample(audio_16k, 16000, 8000), "mulaw"), "mulaw")


async def _through_hub(
    config: EmotuneConfig, audio: np.ndarray, rate: int, model: object | None = None, *, answered_in_time: bool = False
) -> tuple[list[SegmentEvent], VadHub]:
    """Feeds ``audio`` in real time (20-ms frames). ``answered_in_time``: while an end-of-turn question
    is in flight, no more audio is fed, as if the model answered at once (how fast it answers on a
    loaded machine is the benchmark's business, not a unit test's)."""
    hub = VadHub(config)
    segmenter = TurnSegmenter.from_config(config, rate)
    if model is not None:
        segmenter.end_of_turn_model = model  # type: ignore[assignment]
    events: list[SegmentEvent] = []

    async def sink(event: SegmentEvent) -> None:
        events.append(event)

    hub.start()
    try:
        step = rate // 50
        loop = asyncio.get_running_loop()
        clock = loop.time()
        for i in range(0, audio.shape[0], step):  # real time: the model's answer arrives later in wall time
            hub.feed(segmenter, audio[i : i + step], sink)
            clock += 0.02
            await asyncio.sleep(max(0.0, clock - loop.time()))
            if answered_in_time and hub.end_of_turn_in_flight:
                while hub.end_of_turn_in_flight:  # the caller's audio waits for the answer
                    await asyncio.sleep(0.005)
                clock = loop.time()
        await hub.drain(segmenter)
    finally:
        await hub.stop()
    return [e for e in events if e.kind == "turn"], hub


def _sample_turn(path: Path | None = None) -> tuple[np.ndarray, int]:
    turn = load_sample_call(path) if path else load_sample_call()
    clip = turn.turns[0]
    end, _ = speech_cuts(clip.audio, clip.sample_rate)
    audio = np.concatenate([clip.audio[:end], np.zeros(int(2.5 * clip.sample_rate), np.float32)])
    return audio, end


async def test_hub_with_a_failing_model_ends_turns_by_the_silence_rule_and_counts_it() -> None:
    audio, end = _sample_turn()
    turns, hub = await _through_hub(EmotuneConfig(turn_taking=SMART), _phone(audio), 8000, _FakeModel(None))
    assert len(turns) == 1
    assert turns[0].end_s - end / 16000 == pytest.approx(0.6, abs=0.1)  # end_silence_s, never stuck
    assert hub.end_of_turn_failed == 1


# -- the real smart-turn v3.2 model ------------------------------------------------------------
async def test_real_model_ends_a_finished_phone_turn_at_the_short_pause_through_the_hub() -> None:
    """RAVDESS speech through 8 kHz mu-law, the gateway's hub, silero and smart-turn: ends ~0.2 s
    after the speech (the silence rule would take 0.6 s)."""
    audio, end = _sample_turn()
    turns, hub = await _through_hub(EmotuneConfig(turn_taking=SMART), _phone(audio), 8000, answered_in_time=True)
    assert len(turns) == 1 and hub.end_of_turn_scored == 1
    assert 0.15 < turns[0].end_s - end / 16000 < 0.45


def test_real_model_tells_finished_from_unfinished_korean_turns() -> None:
    """The six Korean demo turns (korean_operator clips): whole, each ends at the short pause; cut
    mid-way by the fixed rule, most wait (measured: 5 of 6 below 0.5). Wrong features (no
    unit-variance normalisation, padding at the end, wrong rate) break this."""
    model = SmartTurnModel.load()
    finished, unfinished = [], []
    for clip in load_sample_call(PROJECT_ROOT / "samples" / "demo_call_ko.flac").turns:
        end, mid = speech_cuts(clip.audio, clip.sample_rate)
        pause = np.zeros(clip.sample_rate // 5, np.float32)
        finished.append(model.probability(np.concatenate([clip.audio[:end], pause]), clip.sample_rate))
        unfinished.append(model.probability(np.concatenate([clip.audio[:mid], pause]), clip.sample_rate))
    assert min(finished) > 0.9
    assert sum(p < 0.5 for p in unfinished) >= 4
    # And through the segmenter's own path (from_config, push, 16 kHz): the first turn ends early.
    config = EmotuneConfig(turn_taking=SMART)
    clip = load_sample_call(PROJECT_ROOT / "samples" / "demo_call_ko.flac").turns[0]
    end, mid = speech_cuts(clip.audio, clip.sample_rate)
    for cut, lo, hi in ((end, 0.15, 0.45), (mid, 1.9, 2.2)):
        segmenter = TurnSegmenter.from_config(config, clip.sample_rate)
        audio = np.concatenate([clip.audio[:cut], np.zeros(3 * clip.sample_rate, np.float32)])
        events = [e for i in range(0, audio.shape[0], 320) for e in segmenter.push(audio[i : i + 320])]
        ends = [e.end_s for e in events if e.kind == "turn"]
        assert ends and lo < ends[-1] - cut / clip.sample_rate < hi  # the turn holding the cut


def test_a_missing_or_altered_model_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="missing"):
        SmartTurnModel.load(tmp_path)
    target = tmp_path / MODEL_NAME
    target.parent.mkdir(parents=True)
    shutil.copyfile(weights.DEFAULT_ROOT / MODEL_NAME, target)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="altered"):
        SmartTurnModel.load(tmp_path)
