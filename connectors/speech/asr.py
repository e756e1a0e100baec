"""Speech recognition behind one small interface: a caller's turn of audio in, text out.

Utterance-level on purpose: the gateway's end-pointer decides when a turn ends, then hands the
whole turn to :meth:`SpeechRecognizer.transcribe`. The default engine is pocketsphinx (offline; its
PyPI wheel ships the en-US acoustic model, language model and dictionary). ``none`` is for
platforms that send the caller's text themselves. A cloud engine plugs in by implementing
:class:`SpeechRecognizer` and declaring its factory in the ``emotune.asr_engines`` entry-point
group (or calling :func:`register_engine`); see :mod:`connectors.speech.engines`.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from connectors.speech import asr_worker
from connectors.speech.engines import EngineRegistry
from emotion_runtime.audio import pcm16_samples
from emotune.config import AsrConfig
from emotune.errors import AudioError, ConfigError, NotBuiltError, SampleRateError, SpeechEngineError

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
_DECODE_TIMEOUT_S = 60.0  # a 20 s turn decodes in ~6 s here; far beyond that the worker is stuck


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

    def close(self) -> None:
        """Release workers and connections; in-flight turns finish first."""
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
    return pcm16_samples(array)


class PocketsphinxRecognizer:
    """Offline en-US recognition with pocketsphinx's bundled model, in worker processes.

    ``workers`` processes (one per core by default) each hold a decoder, so concurrent calls are
    recognised in parallel and the gateway's event loop never waits on the GIL (pocketsphinx holds
    it while decoding). A worker that dies fails only its turn (:class:`SpeechEngineError`); the
    pool is rebuilt for the next one. Call :meth:`close` when done.
    """

    name = "pocketsphinx"

    def __init__(self, language: str = "en-US", workers: int = 1, max_active_hmms: int = 3000) -> None:
        if language.lower() not in ("en-us", "en"):
            raise ConfigError(
                "asr", [f"asr.language: pocketsphinx ships only en-US, got {language!r}"]
            )
        if importlib.util.find_spec("pocketsphinx") is None:
            raise NotBuiltError(
                "ASR engine 'pocketsphinx' is not installed: pip install 'emotune[runtime]' "
                "or set asr.engine: none"
            )
        self.workers = max(1, workers)
        self.max_active_hmms = max_active_hmms
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn: forking a process that runs onnxruntime and asyncio threads is unsafe.
        pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=asr_worker.start_decoder,
            initargs=(self.max_active_hmms,),
        )
        for _ in range(self.workers):
            # Start every worker (and load its model) now, not on a caller's first turn.
            pool.submit(asr_worker.ready)
        return pool

    def transcribe(self, samples: np.ndarray, sample_rate: int = ASR_SAMPLE_RATE) -> Transcript:
        pcm = _as_pcm16(samples, sample_rate)
        audio_s = pcm.shape[0] / ASR_SAMPLE_RATE
        if pcm.shape[0] < _MIN_SAMPLES:
            return Transcript("", self.name, audio_s, 0.0)
        with self._lock:
            pool = self._pool
        try:
            text, compute_s = pool.submit(asr_worker.decode, pcm.tobytes()).result(timeout=_DECODE_TIMEOUT_S)
        except (BrokenProcessPool, TimeoutError) as exc:
            with self._lock:
                if self._pool is pool:  # first to notice rebuilds; later turns use the new pool
                    pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = self._new_pool()
            raise SpeechEngineError(f"pocketsphinx worker failed on a {audio_s:.1f} s turn: {exc!r}") from exc
        return Transcript(text, self.name, audio_s, compute_s)

    def worker_pids(self) -> list[int]:
        """Process ids of the live decoder workers (for monitoring and fault tests)."""
        with self._lock:
            processes = getattr(self._pool, "_processes", None) or {}
            return [int(pid) for pid in processes]

    def close(self) -> None:
        with self._lock:
            self._pool.shutdown(wait=True, cancel_futures=True)


class NoRecognizer:
    """For platforms that send the caller's text: audio is never transcribed."""

    name = "none"

    def transcribe(self, samples: np.ndarray, sample_rate: int = ASR_SAMPLE_RATE) -> Transcript:
        pcm = _as_pcm16(samples, sample_rate)
        return Transcript("", self.name, pcm.shape[0] / ASR_SAMPLE_RATE, 0.0)

    def close(self) -> None:
        """Nothing to release."""


_ENGINES: EngineRegistry[AsrConfig, SpeechRecognizer] = EngineRegistry(
    "asr",
    {
        "pocketsphinx": lambda cfg: PocketsphinxRecognizer(
            cfg.language, workers=cfg.concurrency(), max_active_hmms=cfg.max_active_hmms
        ),
        "none": lambda cfg: NoRecognizer(),
    },
)


def register_engine(name: str, factory: Callable[[AsrConfig], SpeechRecognizer]) -> None:
    """Make another engine (e.g. a cloud ASR client) available to :func:`create_recognizer`
    and to config validation (``asr.engine``). Call it before loading the config."""
    _ENGINES.register(name, factory)


def create_recognizer(config: AsrConfig) -> SpeechRecognizer:
    """The recogniser the operator's config asks for."""
    return _ENGINES.create(config)
