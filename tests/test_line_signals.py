"""The shared synthetic line conditions: mixing hits the asked SNR, noise and music come at unit RMS,
and every signal is the same for the same seed (the benchmarks' committed figures rely on it)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.line_signals import (
    LINE_RATE,
    babble,
    hold_music,
    mix_at_snr,
    phone_line,
    pink_noise,
    speech_level,
    telephone,
)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))


def _speech_like() -> np.ndarray:
    """A tone burst between silences: speech_level must see the burst, not the silence."""
    burst = 0.2 * np.sin(np.arange(8000) / 3)
    return np.concatenate([np.zeros(4000), burst, np.zeros(4000)]).astype(np.float32)


@pytest.mark.parametrize("snr_db", [10.0, 5.0, 0.0])
def test_noise_is_mixed_at_the_asked_snr_against_the_speech_level(snr_db: float) -> None:
    speech = _speech_like()
    level = speech_level(speech)
    assert level == pytest.approx(0.2 / np.sqrt(2), rel=1e-2)  # the burst's RMS; silence left out
    noise = 7 * np.random.default_rng(2).standard_normal(speech.shape[0] + 100)  # any level, longer
    mixed = mix_at_snr(speech, noise, level, snr_db)
    assert mixed.dtype == np.float32 and mixed.shape == speech.shape
    snr = 10 * np.log10(level**2 / np.mean((mixed.astype(np.float64) - speech) ** 2))
    assert snr == pytest.approx(snr_db, abs=0.01)


def test_noise_and_music_come_at_unit_rms_with_their_dtypes() -> None:
    rng = np.random.default_rng(0)
    pink = pink_noise(LINE_RATE * 4, rng)
    assert pink.dtype == np.float64 and _rms(pink) == pytest.approx(1.0, abs=1e-9)
    # 1/f: the lowest eighth of the band holds far more power than the highest.
    power = np.abs(np.fft.rfft(pink)) ** 2
    eighth = power.shape[0] // 8
    assert power[1:eighth].sum() > 5 * power[-eighth:].sum()
    talkers = [_speech_like(), 0.5 * _speech_like()[::-1]]
    mix = babble(talkers, LINE_RATE * 3, rng)
    assert mix.dtype == np.float32 and mix.shape == (LINE_RATE * 3,) and _rms(mix) == pytest.approx(1.0, abs=1e-5)
    for rate in (LINE_RATE, 16000):
        music = hold_music(6.0, rate)
        assert music.dtype == np.float32 and music.shape == (6 * rate,)
        assert _rms(music) == pytest.approx(1.0, abs=1e-3)


def test_the_same_seed_gives_the_same_signal_and_another_seed_another() -> None:
    def signals(seed: int) -> list[np.ndarray]:
        speech = np.tile(_speech_like(), 2)
        return [
            pink_noise(5000, np.random.default_rng(seed)),
            babble([_speech_like()] * 3, 9000, np.random.default_rng(seed)),
            hold_music(3.0, seed=seed),
            phone_line(speech, 5.0, np.random.default_rng(seed)),
        ]

    for a, b, other in zip(signals(4), signals(4), signals(5), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
        assert not np.array_equal(a, other)


def test_the_phone_line_is_mulaw_at_8_khz_and_clips_like_a_codec() -> None:
    line = telephone(np.array([0.0, 0.5, -0.5, 3.0, -3.0], np.float32))
    assert line.dtype == np.float32
    assert np.all(np.abs(line) <= 1.0) and line[3] == line.max() and line[4] == line.min()
    assert line[1] == pytest.approx(0.5, rel=0.05)  # mu-law keeps a mid-level sample within a few %
    speech = np.tile(_speech_like(), 2)
    clean = phone_line(speech)
    assert clean.dtype == np.float32 and clean.shape == speech.shape  # back at 16 kHz for a recogniser
    with pytest.raises(ValueError, match="rng"):
        phone_line(speech, 10.0)
