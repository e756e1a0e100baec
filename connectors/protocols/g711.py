"""G.711 mu-law <-> PCM16 (numpy), so cores can accept the bot's PCM16 for mu-law-only wires.

Written from the ITU-T G.711 definition (bias 132, 14-bit magnitude, 8 segments). The
streaming runtime has its own decoder in ``emotion_runtime.audio``; this copy keeps the
protocol package free of runtime imports.
"""

from __future__ import annotations

import numpy as np

from emotune.errors import FrameError

__all__ = ["pcm16_to_mulaw", "mulaw_to_pcm16"]

_BIAS = 0x84
_CLIP = 32635


def pcm16_to_mulaw(pcm: bytes) -> bytes:
    """Little-endian signed 16-bit PCM -> mu-law bytes (one byte per sample)."""
    if len(pcm) % 2:
        raise FrameError(f"PCM16 audio must have an even number of bytes, got {len(pcm)}")
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.int32)
    sign = np.where(samples < 0, 0x80, 0x00)
    magnitude = np.minimum(np.abs(samples), _CLIP) + _BIAS
    # Segment = position of the highest set bit above bit 7 (0..7).
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    code = ~(sign | (exponent << 4) | mantissa) & 0xFF
    return code.astype(np.uint8).tobytes()


def mulaw_to_pcm16(mulaw: bytes) -> bytes:
    """mu-law bytes -> little-endian signed 16-bit PCM."""
    codes = ~np.frombuffer(mulaw, dtype=np.uint8).astype(np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    samples = np.where(sign != 0, -magnitude, magnitude)
    return samples.astype("<i2").tobytes()
