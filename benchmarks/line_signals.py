"""Synthetic line conditions (pink noise, babble, hold music, SNR mixing, the G.711 phone line) shared
by the benchmarks and the tests.

Every generator is deterministic for its seed or generator, so a benchmark's committed figures
(``benchmarks/results/bench_asr.json``, ``bench_end_of_turn.json``) come out the same on every run.
Noise and music come at unit RMS; callers scale them (:func:`mix_at_snr`, or a plain factor).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emotion_runtime.audio import decode, encode, resample

__all__ = [
    "LINE_RATE", "babble", "hold_music", "mix_at_snr", "phone_line", "pink_noise", "speech_level", "telephone",
]

LINE_RATE = 8000  # G.711 telephony
_CHORDS = ((261.6, 329.6, 392.0), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6), (196.0, 246.9, 293.7))
_MELODY_SCALE = (523.3, 587.3, 659.3, 698.5, 784.0, 880.0, 987.8, 1046.5)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of 1/f noise at unit RMS, float64 (callers that feed a codec cast to float32)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.shape[0]), 1))
    noise = np.fft.irfft(spectrum, n)
    return noise / np.sqrt(np.mean(noise**2))


def babble(talkers: Sequence[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """``talkers`` (one speech array each, at the line's rate) spoken at once, each looped to ``n``
    samples and shifted at random; float32 at unit RMS. Pass one voice several times for more talkers."""
    mix = np.zeros(n, dtype=np.float64)
    for voice in talkers:
        mix += np.roll(np.resize(voice, n), int(rng.integers(0, n)))
    return (mix / np.sqrt(np.mean(mix**2))).astype(np.float32)


def hold_music(seconds: float, rate: int = LINE_RATE, seed: int = 0) -> np.ndarray:
    """Synthesised hold music, float32 at unit RMS: sustained triads (three harmonics each, a new chord
    every 2 s) under a plucked melody (a note every 0.25 s from the chord's scale, each decaying).
    Tonal and loud, so it passes any energy gate: only a VAD that knows speech rejects it."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    out = np.zeros_like(t)
    chord_index = (t // 2.0).astype(int) % len(_CHORDS)
    for i, chord in enumerate(_CHORDS):
        part = chord_index == i
        out[part] += sum(np.sin(2 * np.pi * f * h * t[part]) / h for f in chord for h in (1, 2, 3)) / 9.0
    note_s = 0.25
    for k in range(int(np.ceil(seconds / note_s))):
        part = (t >= k * note_s) & (t < (k + 1) * note_s)
        f, since = _MELODY_SCALE[int(rng.integers(len(_MELODY_SCALE)))], t[part] - k * note_s
        out[part] += 1.5 * np.exp(-since / 0.12) * (np.sin(2 * np.pi * f * since) + 0.3 * np.sin(4 * np.pi * f * since))
    return (out / np.sqrt(np.mean(out**2))).astype(np.float32)


def speech_level(audio: np.ndarray) -> float:
    """RMS of the samples above 2% of the peak (the speech, not the silence around it)."""
    x = np.asarray(audio, dtype=np.float64)
    loud = x[np.abs(x) > 0.02 * np.max(np.abs(x))]
    return float(np.sqrt(np.mean(loud**2))) if loud.size else float(np.sqrt(np.mean(x**2)))


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, level: float, snr_db: float) -> np.ndarray:
    """``signal`` plus ``noise`` (any level, at least as long) scaled to ``snr_db`` below the speech
    ``level``; float32."""
    scale = level * 10 ** (-snr_db / 20) / np.sqrt(np.mean(np.asarray(noise, np.float64) ** 2))
    return (np.asarray(signal, np.float64) + scale * noise[: signal.shape[0]]).astype(np.float32)


def telephone(line_8k: np.ndarray) -> np.ndarray:
    """8-kHz line audio through G.711 mu-law and back, float32 (clipped to [-1, 1] first, as a codec does)."""
    return decode(encode(np.clip(line_8k, -1.0, 1.0).astype(np.float32), "mulaw"), "mulaw")


def phone_line(audio_16k: np.ndarray, snr_db: float | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """16-kHz speech as a recogniser behind a phone line hears it: down to 8 kHz, pink noise added at
    ``snr_db`` below its :func:`speech_level` (none when ``snr_db`` is None), G.711 mu-law, back to 16 kHz."""
    line = resample(audio_16k, 16000, LINE_RATE).astype(np.float64)
    if snr_db is not None:
        if rng is None:
            raise ValueError("phone_line: noise at snr_db needs an rng")
        # Not mix_at_snr: this order of operations (unit noise times level times gain) is the one
        # benchmarks/results/bench_asr.json was computed with, and it rounds differently.
        line = line + pink_noise(line.shape[0], rng) * speech_level(line) * 10 ** (-snr_db / 20)
    return resample(telephone(line), LINE_RATE, 16000)
