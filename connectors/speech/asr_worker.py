"""The decoders that run in each ASR worker process (pocketsphinx or Whisper via faster-whisper).

Kept apart from :mod:`connectors.speech.asr` so a worker imports only its engine (small and quick to
spawn). Processes, not threads: pocketsphinx holds the GIL while it decodes (measured: two
threads with a decoder each take as long as one), which would also stall the gateway's event loop;
CTranslate2 releases it, but one process per turn in flight keeps a stuck or crashed decoder from
taking the gateway with it, and a timed-out turn can be killed with its process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["start_decoder", "start_whisper", "ready", "decode"]

_decode: Callable[[bytes], str] | None = None


def start_decoder(max_active_hmms: int) -> None:
    """Process-pool initializer for pocketsphinx: load the model once per worker."""
    global _decode
    from pocketsphinx import Decoder

    decoder: Any = Decoder(loglevel="FATAL", maxhmmpf=max_active_hmms)

    def run(pcm16: bytes) -> str:
        decoder.start_utt()
        decoder.process_raw(pcm16, no_search=False, full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        return hypothesis.hypstr.strip() if hypothesis is not None else ""

    _decode = run


def start_whisper(
    model_dir: str, language: str | None, beam_size: int, compute_type: str, cpu_threads: int,
    no_speech_threshold: float, max_new_tokens: int = 96,
) -> None:
    """Process-pool initializer for Whisper: load the CTranslate2 model folder once per worker.

    The folder was verified (sha256 of every file) by the parent before the pool was started; a
    local folder never touches a model hub (``local_files_only``)."""
    global _decode
    from faster_whisper import WhisperModel

    model = WhisperModel(
        model_dir, device="cpu", compute_type=compute_type, cpu_threads=cpu_threads, num_workers=1,
        local_files_only=True,
    )

    def run(pcm16: bytes) -> str:
        audio = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32) / 32768.0
        segments, _info = model.transcribe(
            audio, language=language, beam_size=beam_size, without_timestamps=True,
            condition_on_previous_text=False, vad_filter=False, no_speech_threshold=no_speech_threshold,
            temperature=0.0, max_new_tokens=max_new_tokens,
        )
        return " ".join(segment.text.strip() for segment in segments).strip()

    _decode = run


def ready() -> bool:
    """A no-op task: submitting one per worker makes the pool start them all up front."""
    return _decode is not None


def decode(pcm16: bytes) -> tuple[str, float]:
    """16 kHz mono PCM16 of one turn -> (text, seconds spent decoding)."""
    assert _decode is not None, "worker started without a decoder"
    started = time.perf_counter()
    text = _decode(pcm16)
    return text, time.perf_counter() - started
