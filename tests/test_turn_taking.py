"""End-pointing with the silero VAD on telephone audio: real speech, real noise, the real model."""

from __future__ import annotations

import numpy as np
import pytest

from connectors.gateway.turn_taking import SileroVad, TurnSegmenter
from connectors.tools.demo import load_sample_call
from emotion_runtime.audio import decode as decode_audio
from emotion_runtime.audio import encode as encode_audio
from emotion_runtime.audio import resample
from emotune.config import EmotuneConfig
from emotune.errors import AudioError

RATE = 8000


def phone_line(audio_16k: np.ndarray) -> np.ndarray:
    """16 kHz speech -> 8 kHz mu-law and back to float, as a Twilio call delivers it."""
    return decode_audio(encode_audio(resample(audio_16k, 16000, RATE), "mulaw"), "mulaw")


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.shape[0]), 1))
    noise = np.fft.irfft(spectrum, n)
    return (noise / np.sqrt(np.mean(noise**2))).astype(np.float32)


def babble(n: int, rng: np.random.Generator) -> np.ndarray:
    """Several talkers at once (the sample call's own turns, time-shifted and summed)."""
    voices = np.concatenate([phone_line(t.audio) for t in load_sample_call().turns])
    mix = sum(np.roll(np.resize(voices, n), int(rng.integers(0, n))) for _ in range(6))
    mix = np.asarray(mix, dtype=np.float32)
    return mix / np.sqrt(np.mean(mix**2))


def hold_music(n: int) -> np.ndarray:
    """A chord progression with harmonics: steady, tonal, loud."""
    t = np.arange(n) / RATE
    chords = [(261.6, 329.6, 392.0), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6), (196.0, 246.9, 293.7)]
    out = np.zeros(n, dtype=np.float64)
    for i, chord in enumerate(chords * (n // (RATE * 2) + 1)):
        seg = slice(i * RATE * 2, min(n, (i + 1) * RATE * 2))
        for f in chord:
            for h in (1, 2, 3):
                out[seg] += np.sin(2 * np.pi * f * h * t[seg]) / h
    out /= np.sqrt(np.mean(out**2))
    return out.astype(np.float32)


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
    level = np.sqrt(np.mean(np.concatenate(turns) ** 2))
    noise = {"pink": pink_noise, "babble": babble}[noise_kind](speech.shape[0], rng)
    return speech + noise * level * 10 ** (-snr_db / 20), ends


def segment(audio: np.ndarray) -> list:
    segmenter = TurnSegmenter.from_config(EmotuneConfig(), RATE)
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


def test_hold_music_and_steady_noise_are_no_turn() -> None:
    rng = np.random.default_rng(2)
    for audio in (0.1 * hold_music(RATE * 8), 0.05 * pink_noise(RATE * 8, rng)):
        assert [e for e in segment(audio) if e.kind == "turn"] == []


def test_energy_vad_stays_selectable_and_bad_rates_are_refused() -> None:
    config = EmotuneConfig(turn_taking={"vad": "energy"})
    segmenter = TurnSegmenter.from_config(config, RATE)
    assert segmenter.frame_s == pytest.approx(0.02)
    with pytest.raises(AudioError, match="8 or 16 kHz"):
        SileroVad(44100)
    wide = TurnSegmenter.from_config(EmotuneConfig(), 48000)  # resampled to 16 kHz for the VAD
    assert wide.sample_rate == 16000
