"""Speech recognition behind one small interface: a caller's turn of audio in, text out.

Utterance-level on purpose: the gateway's end-pointer decides when a turn ends, then hands the
whole turn to :meth:`SpeechRecognizer.transcribe`. The default engine is pocketsphinx (offline; its
PyPI wheel ships the en-US acoustic model, language model and dictionary). ``none`` is for
platforms that send the caller's text themselves. A cloud engine plugs in by implementing
:class:`SpeechRecognizer` and registering a factory with :func:`register_engine`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from emotune.config import AsrConfig
from emotune.errors import AudioError, ConfigError, NotBuiltError, SampleRateError

__all__ = [
    "ASR_SAMPLE_RATE",
    "Transcript",
    "SpeechRecognizer",
    "PocketsphinxRecognizer",
    "NoRecognizer",
    "register_engine",
    "create_recognizer",
]

ASR_SAMPLE_RATE = 16000  # every engine is fed 16 kHz mono; the gateway upsamples 8 kHz telephony
_MIN_SAMPLES = ASR_SAMPLE_RATE // 10  # under 100 ms there is nothing to recognise


@dataclass(frozen=True)
class Transcript:
    """What an engine heard in one turn."""

    text: str
    engine: str
    audio_s: float
    compute_s: float


@runtime_checkable
class SpeechRecognizer(Protocol):
    """Utterance-level recogniser: 16 kHz mono PCM of one caller turn -> text."""

    name: str

    def transcribe(self, samples: np.ndarray, sample_rate: int = ASR_SAMPLE_RATE) -> Transcript:
        """Recognise one turn. ``samples`` are int16 PCM or float in [-1, 1]."""
        ...


def _as_pcm16(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    if sample_rate != ASR_SAMPLE_RATE:
        raise SampleRateError(
            f"speech recognisers take {ASR_SAMPLE_RATE} Hz audio, got {sample_rate} Hz "
            "(resample telephony audio first)"
        )
    array = np.asarray(samples)
    if array.ndim != 1:
        raise AudioError(f"expected mono 1-D audio, got shape {array.shape}")
    if array.dtype == np.int16:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise AudioError(f"expected int16 PCM or float samples, got dtype {array.dtype}")
    if array.size and not np.all(np.isfinite(array)):
        raise AudioError("audio contains NaN or infinite samples")
    return (np.clip(array, -1.0, 1.0) * 32767.0).astype(np.int16)


class PocketsphinxRecognizer:
    """Offline en-US recognition with pocketsphinx's bundled model.

    One decoder per recogniser; decoding is serialised by a lock because the decoder keeps state.
    The gateway calls :meth:`transcribe` in a worker thread so the event loop keeps streaming.
    """

    name = "pocketsphinx"

    def __init__(self, language: str = "en-US") -> None:
        if language.lower() not in ("en-us", "en"):
            raise ConfigError(
                "asr", [f"asr.language: pocketsphinx ships only en-US, got {language!r}"]
            )
        try:
            from pocketsphinx import Decoder  # imported lazily: optional 'runtime' extra
        except ImportError as exc:
            raise NotBuiltError(
                "ASR engine 'pocketsphinx' is not installed: pip install 'emotune[runtime]' "
                "or set asr.engine: none"
            ) from exc
        self._decoder = Decoder(loglevel="FATAL")
        self._lock = threading.Lock()

    def transcribe(self, samples: np.ndarray, sample_rate: int = ASR_SAMPLE_RATE) -> Transcript:
        pcm = _as_pcm16(samples, sample_rate)
        audio_s = pcm.shape[0] / ASR_SAMPLE_RATE
        if pcm.shape[0] < _MIN_SAMPLES:
            return Transcript("", self.name, audio_s, 0.0)
        started = time.perf_counter()
        with self._lock:
            self._decoder.start_utt()
            self._decoder.process_raw(pcm.tobytes(), no_search=False, full_utt=True)
            self._decoder.end_utt()
            hypothesis = self._decoder.hyp()
        text = hypothesis.hypstr.strip() if hypothesis is not None else ""
        return Transcript(text, self.name, audio_s, time.perf_counter() - started)


class NoRecognizer:
    """For platforms that send the caller's text: audio is never transcribed."""

    name = "none"

    def transcribe(self, samples: np.ndarray, sample_rate: int = ASR_SAMPLE_RATE) -> Transcript:
        pcm = _as_pcm16(samples, sample_rate)
        return Transcript("", self.name, pcm.shape[0] / ASR_SAMPLE_RATE, 0.0)


_ENGINES: dict[str, Callable[[AsrConfig], SpeechRecognizer]] = {
    "pocketsphinx": lambda cfg: PocketsphinxRecognizer(cfg.language),
    "none": lambda cfg: NoRecognizer(),
}


def register_engine(name: str, factory: Callable[[AsrConfig], SpeechRecognizer]) -> None:
    """Make another engine (e.g. a cloud ASR client) available to :func:`create_recognizer`."""
    _ENGINES[name] = factory


def create_recognizer(config: AsrConfig) -> SpeechRecognizer:
    """The recogniser the operator's config asks for."""
    factory = _ENGINES.get(config.engine)
    if factory is None:
        known = ", ".join(sorted(_ENGINES))
        raise ConfigError("asr", [f"asr.engine: unknown engine {config.engine!r} (known: {known})"])
    return factory(config)
