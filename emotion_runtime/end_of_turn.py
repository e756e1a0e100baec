"""The smart-turn v3.2 end-of-turn model: has the caller finished their turn? (torch-free)

``models/encoders/smart-turn-v3.2/smart-turn-v3.2-cpu.onnx`` (BSD-2, shipped in pipecat-ai 1.14.0,
installed and sha256-checked by :mod:`emotion_runtime.weights`; a missing, truncated or altered
file is refused with :class:`~emotune.errors.ModelFileError`). Input ``input_features``
``[batch, 80, 800]``: Whisper's log-mel of the turn's most recent 8 s of 16 kHz audio (zero-padded
at the front when shorter), computed on the zero-mean unit-variance waveform (Hugging Face's
``do_normalize``, which the model was trained with, statistics over the whole padded 8 s);
output ``logits`` ``[batch, 1]``, already a sigmoid: the probability that the turn is complete.
Pipecat's analyzer calls a turn complete above 0.5; our threshold is ``turn_taking.end_of_turn_threshold``.

The features are :func:`emotion_runtime.whisper_mel.whisper_log_mel` (the whole-clip Whisper
feature, normalisation and last-frame drop included), so the model sees what it was trained on.
One session per process, one thread; :meth:`SmartTurnModel.probabilities` scores several turns
in one run. About 44 ms per turn on one core here.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emotion_runtime import weights
from emotion_runtime.audio import resample
from emotion_runtime.files import open_session
from emotion_runtime.whisper_mel import SAMPLE_RATE, whisper_log_mel

__all__ = ["MODEL_NAME", "SECONDS", "SmartTurnModel", "smart_turn_features"]

MODEL_NAME = "smart-turn-v3.2/smart-turn-v3.2-cpu.onnx"
SECONDS = 8  # the model's context: the most recent 8 s of the turn
_SAMPLES = SECONDS * SAMPLE_RATE
_VARIANCE_EPS = 1e-7


def smart_turn_features(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A turn's audio (mono float, any rate) -> the model's ``[80, 800]`` input for one turn."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio [samples], got shape {x.shape}")
    if sample_rate != SAMPLE_RATE:
        x = resample(x, sample_rate, SAMPLE_RATE)
    x = x[-_SAMPLES:]
    if x.size < _SAMPLES:
        x = np.concatenate([np.zeros(_SAMPLES - x.size, dtype=np.float32), x])
    x = (x - x.mean()) / np.sqrt(x.var() + _VARIANCE_EPS)
    return whisper_log_mel(x.astype(np.float32, copy=False))


class SmartTurnModel:
    """The verified smart-turn file and its onnxruntime session (shared by every call of a process)."""

    _cache: dict[tuple[str, int], SmartTurnModel] = {}
    _cache_lock = threading.Lock()

    def __init__(self, path: Path, session: Any) -> None:
        self.path = path
        self._session = session

    @classmethod
    def load(cls, dest_root: str | Path | None = None, *, threads: int = 1) -> SmartTurnModel:
        """The model under ``dest_root`` (default ``models/encoders``), verified by sha256 first."""
        path = weights.verified_path(MODEL_NAME, dest_root)  # raises ModelFileError
        key = (str(path.resolve()), threads)
        with cls._cache_lock:
            model = cls._cache.get(key)
            if model is None:
                model = cls._cache[key] = cls(path, open_session(path, threads))
            return model

    def probabilities(self, turns: Sequence[tuple[np.ndarray, int]]) -> list[float]:
        """``(audio, sample_rate)`` of each turn so far (ending at now) -> P(turn complete) each."""
        if not turns:
            return []
        features = np.stack([smart_turn_features(audio, rate) for audio, rate in turns])
        (out,) = self._session.run(["logits"], {"input_features": features})
        return [float(p) for p in np.asarray(out, dtype=np.float64).reshape(len(turns))]

    def probability(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
        return self.probabilities([(audio, sample_rate)])[0]
