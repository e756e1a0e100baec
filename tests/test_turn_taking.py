"""End-pointing with the silero VAD on telephone audio: real speech, real noise, the real model."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from benchmarks import line_signals
from benchmarks.line_signals import hold_music, mix_at_snr, telephone
from connectors.gateway.turn_taking import CallerLevel, SegmentEvent, SileroVad, TurnSegmenter, score_silero
from connectors.gateway.vad_hub import VadHub
from connectors.speech.tts import EspeakSynthesizer, Prosody
from connectors.tools.demo import load_sample_call
from emotion_runtime.audio import resample
from emotune.config import EmotuneConfig
from emotune.errors import AudioError

RATE = 8000


def phone_line(audio_16k: np.ndarray) -> np.ndarray:
    """16 kHz speech -> 8 kHz mu-law and back to float, as a Twilio call delivers it."""
    return telephone(resample(audio_16k, 16000, RATE))


def babble(n: int, rng: np.random.Generator) -> np.ndarray:
    """Six talkers at once (the sample call's own turns, each time-shifted)."""
    voices = np.concatenate([phone_line(t.audio) for t in load_sample_call().turns])
    return line_signals.babble([voices] * 6, n, rng)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS pink noise in float32, the line audio's dtype."""
    return line_signals.pink_noise(n, rng).astype(np.float32)


def call_audio(noise_kind: str | None, snr_db: float, rng: np.random.Generator) -> tuple[np.ndarray, list[float]]:
    """Two caller turns with 2.5 s pauses, noise over everything at ``snr_db`` (speech level)."""
    turns = [phone_line(t.audio) for t in load_sample_call().turns[:2]]
    gap = np.zeros(int(2.5 * RATE), dtype=np.float32)
    parts, ends, t = [gap], [], gap.shape[0] / RATE
    for turn in turns:
        parts += [turn, gap]
        t += turn.shape[0] / RATE
        ends.append(t)
        t += gap.shape[0] / RATE
    speech = np.concatenate(parts)
    if noise_kind is None:
        return speech, ends
    level = float(np.sqrt(np.mean(np.concatenate(turns) ** 2)))  # the turns' plain RMS: this test's SNR
    noise = {"pink": pink_noise, "babble": babble, "other_talkers": other_talkers_babble}[noise_kind](speech.shape[0], rng)
    return mix_at_snr(speech, noise, level, snr_db), ends


def other_talkers_babble(n: int, rng: np.random.Generator) -> np.ndarray:
    """Six other voices at once (espeak-ng, six voices and sentences): the office behind a caller."""
    lines = [("en-us+f3", "I told him the train was late again this morning and nobody said anything"),
             ("en-gb+m3", "we should probably order more paper before the end of the month"),
             ("en-us+m5", "did you see the game last night it went to extra time"),
             ("en-gb-scotland+f2", "my sister is moving to the coast next year with her kids"),
             ("en-029+m2", "the printer on the third floor has been broken for a week"),
             ("en-us+f5", "can you send me the slides from the meeting on tuesday")]
    voices = []
    for voice, text in lines:
        speech = EspeakSynthesizer(voice).synthesize(text, Prosody())
        voices.append(phone_line(resample(speech.samples, speech.sample_rate, 16000)))
    return line_signals.babble(voices, n, rng)


def segment(audio: np.ndarray, config: EmotuneConfig | None = None) -> list:
    segmenter = TurnSegmenter.from_config(config or EmotuneConfig(), RATE)
    events = []
    for i in range(0, audio.shape[0], 160):  # 20 ms telephony frames
        events += segmenter.push(audio[i : i + 160])
    return events + segmenter.flush()


@pytest.mark.parametrize(("noise", "snr_db"), [(None, 0.0), ("pink", 10.0), ("pink", 5.0), ("babble", 10.0)])
def test_turns_end_within_a_second_of_the_speech_in_noise(noise: str | None, snr_db: float) -> None:
    audio, speech_ends = call_audio(noise, snr_db, np.random.default_rng(1))
    turns = [e for e in segment(audio) if e.kind == "turn"]
    # Every spoken turn is found and ends within 1 s of its last word (0.6 s of it is the
    # end-pointing silence); the noise between turns becomes no turn of its own.
    assert len(turns) == len(speech_ends), [(round(t.start_s, 2), round(t.end_s, 2)) for t in turns]
    for turn, spoken_end in zip(turns, speech_ends, strict=True):
        assert spoken_end - 0.2 <= turn.end_s <= spoken_end + 1.0, (turn.end_s, spoken_end)


@pytest.mark.parametrize("snr_db", [15.0, 10.0, 5.0])
def test_other_talkers_behind_the_caller_do_not_hold_the_turn_open(snr_db: float) -> None:
    """Silero hears the office's talkers as speech; the caller-level gate ends each turn at the caller's
    last word anyway (a turn split at a pause inside it is the gate's known cost, measured in
    benchmarks/results/bench_background_speech.json, so it is not what this checks)."""
    vad_alone = EmotuneConfig(turn_taking={"background_speech_db": None})
    held_by_the_vad_alone = 0
    for seed in (1, 2, 3):
        audio, speech_ends = call_audio("other_talkers", snr_db, np.random.default_rng(seed))
        turns = [e for e in segment(audio) if e.kind == "turn"]
        for spoken_end in speech_ends:
            assert any(spoken_end - 0.2 <= t.end_s <= spoken_end + 1.0 for t in turns), (spoken_end, turns)
        assert not any(t.start_s < speech_ends[0] and t.end_s > speech_ends[1] - 1.0 for t in turns)
        alone = [e for e in segment(audio, vad_alone) if e.kind == "turn"]
        held_by_the_vad_alone += not all(any(end - 0.2 <= t.end_s <= end + 1.0 for t in alone) for end in speech_ends)
    if snr_db <= 10.0:  # the control: here the VAD alone keeps at least one turn open past its last word
        assert held_by_the_vad_alone >= 2


def _frames(levels_db: list[float], speech: list[bool], gate: CallerLevel) -> list[bool]:
    return [gate.push(level, is_speech) for level, is_speech in zip(levels_db, speech, strict=True)]


def test_caller_level_leaves_a_quiet_line_alone() -> None:
    """Digital silence or a quiet room behind the caller: soft syllables far under their level stay speech."""
    gate = CallerLevel(0.032, below_caller_db=6.0, noisy_line_db=35.0, smooth_frames=1)
    rng = np.random.default_rng(0)
    levels = [-20.0 + float(rng.normal(0, 2)) if i % 50 < 30 else -75.0 for i in range(600)]
    speech = [i % 50 < 30 for i in range(600)]
    levels[::7] = [-40.0] * len(levels[::7])  # soft syllables 20 dB under the caller, called speech
    speech[::7] = [True] * len(speech[::7])
    assert all(_frames(levels, speech, gate))
    assert gate.caller_db - gate.background_db >= 35.0


def test_caller_level_gates_speech_like_background_on_a_noisy_line() -> None:
    gate = CallerLevel(0.032, below_caller_db=6.0, noisy_line_db=35.0, smooth_frames=1)
    rng = np.random.default_rng(1)
    caller = [i % 100 < 40 for i in range(1200)]  # 1.3 s of caller, 1.9 s of background only, repeated
    levels = [(-15.0 if c else -30.0) + float(rng.normal(0, 1)) for c in caller]
    loud = _frames(levels, [True] * len(levels), gate)  # the VAD calls every frame speech
    settled = slice(400, None)
    assert gate.background_is_speech
    assert all(ok for ok, c in zip(loud[settled], caller[settled], strict=True) if c)
    background_kept = [ok for ok, c in zip(loud[settled], caller[settled], strict=True) if not c]
    assert sum(background_kept) / len(background_kept) < 0.05


def test_caller_level_says_where_a_background_pause_began() -> None:
    """Smoothed over 10 frames, the level calls the background some frames after the caller stopped;
    ``quiet_frames`` then counts back to the caller's last loud frame (at most the smoothing window), on
    the first background frame only."""
    gate = CallerLevel(0.032, below_caller_db=6.0, noisy_line_db=35.0, smooth_frames=10)
    caller = [i % 100 < 40 for i in range(1200)]  # the caller speaks frames 1100-1139, then stops
    levels = [-15.0 if c else -30.0 for c in caller]
    loud = _frames(levels[:1140], [True] * 1140, gate)
    assert loud[1139] and gate.background_is_speech
    quiet = []
    for i in range(1140, 1160):
        loud.append(gate.push(levels[i], True))
        quiet.append(gate.quiet_frames)
    first_gated = next(i for i in range(1140, 1160) if not loud[i])
    assert 1141 < first_gated < 1150  # the smoothing's lag
    assert quiet[first_gated - 1140] == first_gated - 1140 + 1  # back to the caller's last word
    # Counted once, on the run's first frame (a pause starts there); the run's later frames say 0.
    assert quiet[: first_gated - 1140] == [0] * (first_gated - 1140) and set(quiet[first_gated - 1140 + 1 :]) == {0}
    # One loud frame: still background to the smoothed level, but no longer a quiet run behind it.
    assert not gate.push(-15.0, True) and gate.quiet_frames == 0


def test_a_loud_background_syllable_breaks_the_pause_only_without_hysteresis() -> None:
    """Inside a background pause, a stretch 2 dB over the pause threshold is the caller again with
    ``resume_db`` 0 but not with 3; the caller at their own level is heard either way."""
    caller = [i % 100 < 40 for i in range(1160)]
    levels = [-15.0 if c else -30.0 for c in caller]
    for resume_db, peak_heard in ((0.0, True), (3.0, False)):
        gate = CallerLevel(0.032, below_caller_db=6.0, noisy_line_db=35.0, smooth_frames=1, resume_db=resume_db)
        loud = _frames(levels, [True] * len(levels), gate)
        assert not loud[-1] and gate.background_is_speech
        threshold = gate.caller_db - 6.0
        assert gate.push(threshold + 2.0, True) is peak_heard
        assert gate.push(-15.0, True)


def test_hindsight_ends_background_pauses_sooner_and_transcribes_each_pause_once() -> None:
    """With ``background_pause_hindsight`` a turn on a babbling line ends earlier (never later) than
    without, still after the caller's last word, and each pause still gives at most one early
    transcription."""
    plain = EmotuneConfig(turn_taking={"background_pause_hindsight": False})
    hindsight = EmotuneConfig(turn_taking={"background_pause_hindsight": True})
    earlier = 0
    for seed in (1, 2, 3):
        audio, speech_ends = call_audio("other_talkers", 5.0, np.random.default_rng(seed))
        runs = {name: segment(audio, config) for name, config in (("plain", plain), ("hindsight", hindsight))}
        for name, events in runs.items():
            pauses = [(e.kind, e.pause) for e in events if e.kind == "pause"]
            assert len(pauses) == len(set(pauses)), name
        ends = {name: [min((t.end_s for t in events if t.kind == "turn" and t.end_s >= end - 0.2), default=np.inf)
                       for end in speech_ends] for name, events in runs.items()}  # fmt: skip
        for spoken_end, fast, slow in zip(speech_ends, ends["hindsight"], ends["plain"], strict=True):
            assert spoken_end - 0.2 <= fast <= slow
            earlier += fast < slow
    assert earlier >= 3


def test_caller_level_leaves_steady_noise_the_vad_rejects_alone() -> None:
    """Pink noise 15 dB under the caller: the VAD already calls it no speech, so the caller's soft
    syllables (10 dB under their level) are not taken for background."""
    gate = CallerLevel(0.032, below_caller_db=6.0, noisy_line_db=35.0, smooth_frames=1)
    rng = np.random.default_rng(2)
    caller = [i % 100 < 40 for i in range(1200)]
    levels = [(-15.0 if c else -30.0) + float(rng.normal(0, 1)) for c in caller]
    speech = list(caller)
    for i in range(0, 1200, 100):
        levels[i + 40 : i + 50] = [-25.0] * 10  # a soft trailing syllable, called speech
        speech[i + 40 : i + 50] = [True] * 10
    loud = _frames(levels, speech, gate)
    assert not gate.background_is_speech
    # Every frame the VAD called speech stays speech (a non-speech frame the gate refuses changes nothing).
    assert all(ok for ok, is_speech in zip(loud, speech, strict=True) if is_speech)


def test_hold_music_and_steady_noise_are_no_turn() -> None:
    rng = np.random.default_rng(2)
    for audio in (0.1 * hold_music(8.0, RATE), 0.05 * pink_noise(RATE * 8, rng)):
        assert [e for e in segment(audio) if e.kind == "turn"] == []


def test_energy_vad_stays_selectable_and_bad_rates_are_refused() -> None:
    config = EmotuneConfig(turn_taking={"vad": "energy"})
    segmenter = TurnSegmenter.from_config(config, RATE)
    assert segmenter.frame_s == pytest.approx(0.02)
    with pytest.raises(AudioError, match="8 or 16 kHz"):
        SileroVad(44100)
    wide = TurnSegmenter.from_config(EmotuneConfig(), 48000)  # resampled to 16 kHz for the VAD
    assert wide.sample_rate == 16000


def test_batched_vad_scores_equal_each_stream_scored_alone() -> None:
    """The gateway scores every call's frames together: that must not change any call's scores."""
    rng = np.random.default_rng(3)
    audios = [call_audio(kind, 10.0, rng)[0] for kind in (None, "pink", "babble")]
    alone = [SileroVad(RATE) for _ in audios]
    together = [SileroVad(RATE) for _ in audios]
    frame = alone[0].frame_samples
    expected: list[list[float]] = [[] for _ in audios]
    got: list[list[float]] = [[] for _ in audios]
    # Uneven chunks per stream and tick (0-3 frames), as calls' frames arrive in the gateway.
    offsets = [0] * len(audios)
    for _ in range(300):
        batch = []
        for i, audio in enumerate(audios):
            chunk = audio[offsets[i] : offsets[i] + int(rng.integers(0, 4)) * frame]
            offsets[i] += chunk.shape[0]
            frames = chunk[: (chunk.shape[0] // frame) * frame].reshape(-1, frame)
            expected[i] += alone[i].levels(frames).tolist()
            batch.append((together[i], frames))
        for i, scores in enumerate(score_silero(batch)):
            got[i] += scores.tolist()
    for e, g in zip(expected, got, strict=True):
        assert len(e) > 200
        np.testing.assert_allclose(g, e, atol=1e-5)
        assert max(e) > 0.5  # speech was there to score


async def test_vad_hub_drops_frames_that_waited_too_long_and_counts_them() -> None:
    config = EmotuneConfig(turn_taking={"vad_max_delay_s": 0.05})
    hub = VadHub(config)
    segmenter = TurnSegmenter.from_config(config, RATE)
    events: list[SegmentEvent] = []

    async def sink(event: SegmentEvent) -> None:
        events.append(event)

    speech = call_audio(None, 30.0, np.random.default_rng(0))[0]
    hub.feed(segmenter, speech[: RATE * 2], sink)
    await asyncio.sleep(0.1)  # no tick ran: the machine fell behind
    hub.feed(segmenter, speech[RATE * 2 : RATE * 3], sink)
    await hub.tick()
    frame = segmenter.vad.frame_samples
    assert hub.frames_dropped == (RATE * 2) // frame
    assert segmenter.frames_seen == (RATE * 3) // frame - hub.frames_dropped
    await hub.stop()
