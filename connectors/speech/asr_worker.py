"""The pocketsphinx decoder that runs in each ASR worker process.

Kept apart from :mod:`connectors.speech.asr` so a worker imports only pocketsphinx (small and quick to
spawn). Processes, not threads: pocketsphinx holds the GIL while it decodes (measured: two
threads with a decoder each take as long as one), which would also stall the gateway's event loop.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["start_decoder", "ready", "decode"]

_decoder: Any = None


def start_decoder(max_active_hmms: int) -> None:
    """Process-pool initializer: load the model once per worker."""
    global _decoder
    from pocketsphinx import Decoder

    _decoder = Decoder(loglevel="FATAL", maxhmmpf=max_active_hmms)


def ready() -> bool:
    """A no-op task: submitting one per worker makes the pool start them all up front."""
    return _decoder is not None


def decode(pcm16: bytes) -> tuple[str, float]:
    """16 kHz mono PCM16 of one turn -> (text, seconds spent decoding)."""
    started = time.perf_counter()
    _decoder.start_utt()
    _decoder.process_raw(pcm16, no_search=False, full_utt=True)
    _decoder.end_utt()
    hypothesis = _decoder.hyp()
    text = hypothesis.hypstr.strip() if hypothesis is not None else ""
    return text, time.perf_counter() - started
