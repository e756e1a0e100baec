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

# One turn's PCM16 -> (text, language code or None when the engine does not say).
_decode: Callable[[bytes], tuple[str, str | None]] | None = None


def start_decoder(max_active_hmms: int) -> None:
    """Process-pool initializer for pocketsphinx: load the model once per worker."""
    global _decode
    from pocketsphinx import Decoder

    decoder: Any = Decoder(loglevel="FATAL", maxhmmpf=max_active_hmms)

    def run(pcm16: bytes) -> tuple[str, str | None]:
        decoder.start_utt()
        decoder.process_raw(pcm16, no_search=False, full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        return (hypothesis.hypstr.strip() if hypothesis is not None else ""), "en"

    _decode = run


def start_whisper(
    model_dir: str, language: str | None, beam_size: int, compute_type: str, cpu_threads: int,
    no_speech_threshold: float, max_new_tokens: int = 96, alternative_languages: tuple[str, ...] = (),
    vad_filter: bool = False,
) -> None:
    """Process-pool initializer for Whisper: load the CTranslate2 model folder once per worker.

    The folder was verified (sha256 of every file) by the parent before the pool was started; a
    local folder never touches a model hub (``local_files_only``). With ``alternative_languages``
    each turn's language is identified first, among ``language`` and those only (a Korean line
    never decodes a turn as Japanese), and the turn is decoded in the most probable of them."""
    global _decode
    from faster_whisper import WhisperModel

    model = WhisperModel(
        model_dir, device="cpu", compute_type=compute_type, cpu_threads=cpu_threads, num_workers=1,
        local_files_only=True,
    )

    allowed = (language, *alternative_languages) if language is not None else ()

    def pick_language(audio: np.ndarray) -> str | None:
        if len(allowed) < 2:
            return language
        _top, _probability, ranked = model.detect_language(audio)
        scores = dict(ranked)
        # Ties go to the line's own language (max keeps the first of equal scores).
        return max(allowed, key=lambda code: scores.get(code, 0.0))

    def run(pcm16: bytes) -> tuple[str, str | None]:
        audio = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32) / 32768.0
        segments, info = model.transcribe(
            audio, language=pick_language(audio), beam_size=beam_size, without_timestamps=True,
            condition_on_previous_text=False, vad_filter=vad_filter, no_speech_threshold=no_speech_threshold,
            temperature=0.0, max_new_tokens=max_new_tokens,
        )
        text = " ".join(segment.text.strip() for segment in segments).strip()
        return text, info.language

    _decode = run


def ready() -> bool:
    """A no-op task: submitting one per worker makes the pool start them all up front."""
    return _decode is not None


def decode(pcm16: bytes) -> tuple[str, str | None, float]:
    """16 kHz mono PCM16 of one turn -> (text, its language code, seconds spent decoding)."""
    assert _decode is not None, "worker started without a decoder"
    started = time.perf_counter()
    text, language = _decode(pcm16)
    return text, language, time.perf_counter() - started
