"""Audio decoding, resampling and energy for the streaming runtime (NumPy only).

The one implementation of every sample conversion in the project: float32 in [-1, 1] <-> PCM16
(scale 32768, clipped to int16) and <-> G.711 mu-law, wire bytes <-> samples (:func:`decode`,
:func:`encode`), and frame energy in dBFS (:func:`energy_db`). Gateway, ASR/TTS, protocol cores
and tools all use these, so they can never disagree about a sample.

G.711 mu-law follows ITU-T G.711 (bias 0x84, inverted bits); decoding is a 256-entry table.
Resampling is a windowed-sinc polyphase FIR that keeps its history between calls, so a stream cut
into 20 ms frames resamples exactly like the whole signal (no clicks at frame boundaries).
"""

from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np

from emotune.errors import FrameError, SampleRateError

__all__ = [
    "SUPPORTED_RATES",
    "MODEL_RATE",
    "mulaw_decode",
    "mulaw_encode",
    "pcm16_decode",
    "pcm16_encode",
    "pcm16_samples",
    "decode",
    "encode",
    "energy_db",
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


def pcm16_samples(samples: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] -> int16 (x 32768, clipped: +1.0 becomes 32767)."""
    return (np.clip(np.asarray(samples, dtype=np.float32), -1.0, 32767 / 32768) * 32768.0).astype(np.int16)


def pcm16_encode(samples: np.ndarray) -> bytes:
    """float samples in [-1, 1] -> little-endian signed 16-bit PCM bytes."""
    return pcm16_samples(samples).astype("<i2").tobytes()


def decode(payload: bytes, encoding: str, channels: int = 1) -> np.ndarray:
    """Wire bytes (``mulaw`` or ``pcm16`` LE, interleaved) -> float32, shape (n,) or (n, channels)."""
    if encoding == "mulaw":
        samples = mulaw_decode(payload)
    elif encoding == "pcm16":
        if len(payload) % 2:
            raise FrameError(f"PCM16 payload of {len(payload)} bytes is not whole 16-bit samples")
        samples = pcm16_decode(payload)
    else:
        raise FrameError(f"unsupported encoding {encoding!r}; use 'pcm16' or 'mulaw'")
    if channels > 1:
        if samples.shape[0] % channels:
            raise FrameError(f"{encoding} payload of {len(payload)} bytes is not whole {channels}-channel samples")
        return samples.reshape(-1, channels)
    return samples


def encode(samples: np.ndarray, encoding: str) -> bytes:
    """float32 samples -> wire bytes (``mulaw`` or ``pcm16`` little-endian)."""
    if encoding == "mulaw":
        return mulaw_encode(samples)
    if encoding == "pcm16":
        return pcm16_encode(samples)
    raise FrameError(f"unsupported encoding {encoding!r}; use 'pcm16' or 'mulaw'")


def energy_db(frames: np.ndarray) -> np.ndarray:
    """Mean-square energy in dBFS along the last axis (a full-scale square wave is 0 dB)."""
    x = np.asarray(frames, dtype=np.float64)
    return np.asarray(10.0 * np.log10(np.mean(x * x, axis=-1) + 1e-12))


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
    """Rational-ratio polyphase resampler with state: ``process(chunk)`` over a stream equals
    one-shot output. Each output sample costs ``taps / up`` multiply-adds, so awkward ratios such
    as 22050 -> 8000 Hz (441:160) are as cheap as 8000 -> 16000 Hz."""

    def __init__(self, from_rate: int, to_rate: int, taps_per_phase: int = 12) -> None:
        for rate in (from_rate, to_rate):
            if rate <= 0:
                raise SampleRateError(f"sample rate must be positive, got {rate}")
        g = gcd(from_rate, to_rate)
        self.from_rate, self.to_rate = from_rate, to_rate
        self.up, self.down = to_rate // g, from_rate // g
        self._phases: np.ndarray | None = None
        if self.up != self.down:
            taps = _lowpass(self.up, self.down, taps_per_phase)
            k = -(-taps.shape[0] // self.up)
            padded = np.zeros(k * self.up, dtype=np.float32)
            padded[: taps.shape[0]] = taps
            # phases[r, j] = taps[r + j*up]: the taps that meet real (non-stuffed) input samples.
            self._phases = padded.reshape(k, self.up).T.copy()
        self.reset()

    def reset(self) -> None:
        k = 0 if self._phases is None else self._phases.shape[1]
        self._history = np.zeros(max(k - 1, 0), dtype=np.float32)
        self._consumed = 0  # input samples seen
        self._next = 0  # upsampled-domain index of the next output sample

    def process(self, samples: np.ndarray) -> np.ndarray:
        x = np.asarray(samples, dtype=np.float32)
        if self._phases is None:
            return x
        k = self._phases.shape[1]
        buf = np.concatenate([self._history, x])
        first = self._consumed - self._history.shape[0]  # input index of buf[0]
        self._consumed += x.shape[0]
        if self.down == 1:
            # Integer upsampling (telephony 8 -> 16 kHz): every new input sample yields ``up``
            # outputs, one per phase, so each phase is a plain convolution (no gather matrix).
            self._next = self._consumed * self.up
            # outputs[n, r] = sum_j buf[n + k-1 - j] * phases[r, j]: one matrix product over a
            # sliding view (no copy), several times faster than one np.convolve per phase.
            windows = np.lib.stride_tricks.sliding_window_view(buf, k)
            out = (windows @ self._phases[:, ::-1].T).reshape(-1)
            self._history = buf[buf.shape[0] - (k - 1) :] if k > 1 else buf[:0]
            return out.astype(np.float32, copy=False)
        positions = np.arange(self._next, self._consumed * self.up, self.down, dtype=np.int64)
        if positions.size:
            self._next = int(positions[-1]) + self.down
        newest = positions // self.up - first  # buf index of the newest input each output uses
        gathered = buf[newest[:, None] - np.arange(k)[None, :]]
        out = np.einsum("ij,ij->i", gathered, self._phases[positions % self.up])
        self._history = buf[buf.shape[0] - (k - 1) :] if k > 1 else buf[:0]
        return out.astype(np.float32, copy=False)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """One-shot resampling of a whole signal (same filter as the streaming resampler)."""
    return StreamingResampler(from_rate, to_rate).process(samples)
