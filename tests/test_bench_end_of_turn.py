"""The end-of-turn benchmark's own machinery: the replayed sweep is the running segmenter, each
question goes to the model once, the choice rule does what it says (its line signals: test_line_signals).
(No figure is checked here: those live in benchmarks/results/bench_end_of_turn.json.)"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import bench_end_of_turn as bench
from benchmarks.line_signals import pink_noise
from connectors.devtools.turn_samples import speech_cuts
from connectors.gateway.turn_taking import TurnSegmenter
from connectors.tools.demo import load_sample_call
from emotion_runtime.end_of_turn import SmartTurnModel
from emotune.config import EmotuneConfig

SILENCE = EmotuneConfig(turn_taking={"end_of_turn": "silence"})
SETTINGS = (bench.Setting("silence"), bench.Setting("smart_turn"), bench.Setting("smart_turn", 0.9, 0.3, 1.0))


def _samples() -> list[tuple[np.ndarray, int]]:
    """Two sample-call turns, whole and cut mid-way, clean and with pink noise on the phone line."""
    noises = {"pink": pink_noise(8000 * 20, np.random.default_rng(0)).astype(np.float32)}
    out = []
    for clip in load_sample_call().turns[:2]:
        for cut in speech_cuts(clip.audio, clip.sample_rate):
            for condition in (bench.CONDITIONS[0], bench.CONDITIONS[3]):
                out.append(bench.line_audio(clip.audio, cut, condition, noises, np.random.default_rng(1)))
    return out


def _events(events: list) -> list[tuple[str, float, float]]:
    return [(e.kind, round(e.start_s, 3), round(e.end_s, 3)) for e in events]


def test_replayed_settings_give_the_events_of_the_segmenter_from_config() -> None:
    """Stored VAD scores + cached model answers, per setting == ``TurnSegmenter.from_config`` with
    that setting in config.yml terms, pushed 20 ms at a time with the real VAD and model."""
    model = SmartTurnModel.load()
    for x, rate in _samples():
        vad, scores = bench.vad_scores(SILENCE, x, rate)
        cache = bench.AnswerCache(model.probability)
        for setting in SETTINGS:
            replayed = bench.replay(SILENCE, x, rate, vad, scores, setting.rule(0.6), cache)
            config = EmotuneConfig(turn_taking={
                "end_of_turn": setting.mode, "end_of_turn_threshold": setting.threshold,
                "short_silence_s": setting.short_silence_s, "long_silence_s": max(0.6, setting.long_silence_s)})
            segmenter = TurnSegmenter.from_config(config, rate)
            step = rate // 50
            real = [e for i in range(0, x.shape[0], step) for e in segmenter.push(x[i : i + step])] + segmenter.flush()
            assert _events(replayed) == _events(real), setting.name


def test_each_question_goes_to_the_model_once_across_settings() -> None:
    calls: list[int] = []

    def model(audio: np.ndarray, sample_rate: int) -> float:
        calls.append(audio.shape[0])
        return 0.1  # "unfinished": every setting waits, asking at its own short pause

    x, rate = _samples()[0]
    vad, scores = bench.vad_scores(SILENCE, x, rate)
    cache = bench.AnswerCache(model)
    for _ in range(2):
        for setting in SETTINGS:
            bench.replay(SILENCE, x, rate, vad, scores, setting.rule(0.6), cache)
    assert len(calls) == len(cache.answers)
    assert len({asked for _, asked in cache.answers}) >= 2  # short pauses 0.2 and 0.3 s ask at other frames


def _rows(delays: list[float | None], split: bool = False) -> list[dict]:
    return [{"delay_s": d, "split": split} for d in delays]


def test_summary_measures_and_the_choice_rule() -> None:
    fast = bench.Setting("smart_turn", 0.5, 0.2, 1.0)
    row = bench.summarise(_rows([0.2, 0.3, None, 0.7]), _rows([0.2, 1.0]), fast, 0.6)
    assert row["finished_ended_early"] == 0.5 and row["finished_within_1s"] == 0.75
    assert row["finished_lost"] == 0.25 and row["finished_delay_s_mean"] == pytest.approx((0.2 + 0.3 + 2.5 + 0.7) / 4)
    assert row["unfinished_held"] == 0.5 and row["unfinished_ended_early"] == 0.5
    assert row["cut_inside_utterance"] == 0.0
    silence = bench.summarise(_rows([0.6, 0.6]), _rows([0.6]), bench.Setting("silence"), 0.6)
    quick = bench.summarise(_rows([0.2, 0.6]), _rows([0.2]), fast, 0.6)
    cutting = bench.summarise(_rows([0.2, 0.2], split=True), _rows([0.2]), bench.Setting("smart_turn", 0.3), 0.6)
    choice = bench.choose([silence, quick, cutting])
    assert choice["setting"] == fast.name  # the faster one cuts callers off mid-utterance: not eligible
    assert bench.choose([silence, cutting])["setting"] is None
