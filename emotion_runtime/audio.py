"""Audio decoding and resampling for the streaming runtime (NumPy only).

G.711 mu-law follows ITU-T G.711 (bias 0x84, inverted bits); decoding is a 256-entry table.
Resampling is a windowed-sinc polyphase FIR that keeps its history between calls, so a stream cut
into 20 ms frames resamples exactly like the whole signal (no clicks at frame boundaries).
"""

from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np

from emotune.errors import SampleRateError

__all__ = [
    "SUPPORTED_RATES",
    "MODEL_RATE",
    "mulaw_decode",
    "mulaw_encode",
    "pcm16_decode",
    "pcm16_encode",
    "StreamingResampler",
    "resample",
]

MODEL_RATE = 16000
SUPPORTED_RATES = (8000, 16000, 48000)
_MULAW_BIAS = 0x84
_MULAW_CLIP = 32635


@lru_cache(maxsize=1)
def _mulaw_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + _MULAW_BIAS) << exponent) - _MULAW_BIAS
    table = np.where(sign != 0, -magnitude, magnitude).astype(np.float32) / 32768.0
    table.flags.writeable = False
    return table


def mulaw_decode(data: bytes) -> np.ndarray:
    """G.711 mu-law bytes -> float32 samples in [-1, 1]."""
    return _mulaw_table()[np.frombuffer(data, dtype=np.uint8)]


def mulaw_encode(samples: np.ndarray) -> bytes:
    """float32 samples in [-1, 1] -> G.711 mu-law bytes."""
    pcm = np.clip(np.asarray(samples, dtype=np.float64) * 32768.0, -32768, 32767).astype(np.int32)
    sign = np.where(pcm < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(pcm), _MULAW_CLIP) + _MULAW_BIAS
    exponent = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 7, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def pcm16_decode(data: bytes) -> np.ndarray:
    """Little-endian signed 16-bit PCM -> float32 in [-1, 1)."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def pcm16_encode(samples: np.ndarray) -> bytes:
    return (np.clip(np.asarray(samples), -1.0, 32767 / 32768) * 32768.0).astype("<i2").tobytes()


@lru_cache(maxsize=16)
def _lowpass(up: int, down: int, taps_per_phase: int) -> np.ndarray:
    """Windowed-sinc anti-alias/anti-image filter at the upsampled rate, gain ``up``."""
    cutoff = 0.9 / max(up, down)  # fraction of the upsampled Nyquist, with a 10% guard band
    half = taps_per_phase * max(up, down)
    n = np.arange(-half, half + 1, dtype=np.float64)
    taps = cutoff * np.sinc(cutoff * n) * np.kaiser(2 * half + 1, 8.0)
    taps *= up / taps.sum()
    out = taps.astype(np.float32)
    out.flags.writeable = False
    return out


class StreamingResampler:
    """Rational-ratio resampler with state: ``process(chunk)`` over a stream equals one-shot output."""

    def __init__(self, from_rate: int, to_rate: int, taps_per_phase: int = 12) -> None:
        for rate in (from_rate, to_rate):
            if rate <= 0:
                raise SampleRateError(f"sample rate must be positive, got {rate}")
        g = gcd(from_rate, to_rate)
        self.from_rate, self.to_rate = from_rate, to_rate
        self.up, self.down = to_rate // g, from_rate // g
        self._taps = _lowpass(self.up, self.down, taps_per_phase) if self.up != self.down else None
        self.reset()

    def reset(self) -> None:
        n = 0 if self._taps is None else self._taps.shape[0] - 1
        self._history = np.zeros(n, dtype=np.float32)
        self._phase = 0

    def process(self, samples: np.ndarray) -> np.ndarray:
        x = np.asarray(samples, dtype=np.float32)
        if self._taps is None:
            return x
        upsampled = np.zeros(x.shape[0] * self.up, dtype=np.float32)
        upsampled[:: self.up] = x
        buf = np.concatenate([self._history, upsampled])
        filtered = np.convolve(buf, self._taps, mode="valid")
        self._history = buf[buf.shape[0] - self._history.shape[0] :]
        out = filtered[self._phase :: self.down]
        self._phase = (self._phase - filtered.shape[0]) % self.down
        return out.astype(np.float32, copy=False)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """One-shot resampling of a whole signal (same filter as the streaming resampler)."""
    return StreamingResampler(from_rate, to_rate).process(samples)
