"""G.711 mu-law <-> PCM16 as bytes, so cores can accept the bot's PCM16 for mu-law-only wires.

A thin bytes-level face over the one G.711 codec in ``emotion_runtime.audio`` (NumPy only, no
I/O, no torch), so the protocols and the runtime can never disagree about a sample.
"""

from __future__ import annotations

from emotion_runtime.audio import mulaw_decode, mulaw_encode, pcm16_decode, pcm16_encode
from emotune.errors import FrameError

__all__ = ["pcm16_to_mulaw", "mulaw_to_pcm16"]


def pcm16_to_mulaw(pcm: bytes) -> bytes:
    """Little-endian signed 16-bit PCM -> mu-law bytes (one byte per sample)."""
    if len(pcm) % 2:
        raise FrameError(f"PCM16 audio must have an even number of bytes, got {len(pcm)}")
    return mulaw_encode(pcm16_decode(pcm))


def mulaw_to_pcm16(mulaw: bytes) -> bytes:
    """mu-law bytes -> little-endian signed 16-bit PCM."""
    return pcm16_encode(mulaw_decode(mulaw))
