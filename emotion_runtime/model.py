"""Loading the ONNX emotion model with its JSON sidecar, verified, one session shared by all streams."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emotion_runtime.features import FbankSpec, StreamingFbank
from emotion_runtime.files import open_session, sha256_of
from emotion_runtime.memory import HeapTrimmer
from emotune.errors import ModelFileError, SidecarError

__all__ = ["EmotionModel", "Prediction"]

V2_FORMAT = "emotune-emotion-encoder-head/2"
_REQUIRED_SIDECAR_KEYS = ("labels", "sample_rate", "features", "inputs", "outputs", "files")
_SESSIONS: dict[tuple[str, str, int], Any] = {}
_SESSIONS_LOCK = threading.Lock()


@dataclass(frozen=True)
class Prediction:
    """Model outputs for a batch of windows."""

    probabilities: np.ndarray  # [batch, classes], softmax of the logits
    arousal: np.ndarray  # [batch], 0..1
    valence: np.ndarray  # [batch], -1..1


def read_sidecar(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SidecarError(f"model sidecar not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SidecarError(f"model sidecar {path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SidecarError(f"model sidecar {path} must be a JSON object")
    missing = [k for k in _REQUIRED_SIDECAR_KEYS if k not in data]
    if missing:
        raise SidecarError(f"model sidecar {path} lacks: {', '.join(missing)}")
    if not isinstance(data["labels"], list) or len(data["labels"]) < 2:
        raise SidecarError(f"model sidecar {path}: 'labels' must list at least two classes")
    return data


class EmotionModel:
    """An emotion model file plus its sidecar. Use :meth:`load`; call :meth:`predict` from any thread."""

    # One per process: every model and stream frees into the same heap.
    heap_trimmer: HeapTrimmer = HeapTrimmer()

    def __init__(self, path: Path, sidecar: dict[str, Any], session: Any) -> None:
        self.path = path
        self.sidecar = sidecar
        self.labels: list[str] = list(sidecar["labels"])
        features = {k: v for k, v in sidecar["features"].items() if k in FbankSpec.__dataclass_fields__}
        try:
            self.fbank_spec = FbankSpec(**features)
        except TypeError as exc:
            raise SidecarError(f"sidecar features do not describe a filterbank: {exc}") from exc
        self.sample_rate = int(sidecar["sample_rate"])
        self._session = session
        self._input = session.get_inputs()[0].name
        self._outputs = [o.name for o in session.get_outputs()]

    @classmethod
    def load(
        cls, onnx_path: str | Path, sidecar_path: str | Path | None = None, *, intra_op_threads: int = 1
    ) -> EmotionModel:
        """Verify the file against the sidecar's sha256 and open (or reuse) its session."""
        path = Path(onnx_path)
        if path.is_dir() or path.suffix == ".json":
            # A model folder (or its sidecar): the v2 layout, encoder + head.
            sidecar_file = Path(sidecar_path) if sidecar_path else (path / "emotion.json" if path.is_dir() else path)
        else:
            sidecar_file = Path(sidecar_path) if sidecar_path else _default_sidecar(path)
        sidecar = read_sidecar(sidecar_file)
        if sidecar.get("format") == V2_FORMAT:
            from emotion_runtime.encoder_model import EncoderHeadModel

            return EncoderHeadModel.load(sidecar_file, sidecar, intra_op_threads=intra_op_threads)
        if path.is_dir() or path.suffix == ".json":
            raise SidecarError(f"{sidecar_file} is a {sidecar.get('format')!r} sidecar: point model.path at its .onnx file")
        if not path.is_file():
            raise ModelFileError(f"model file not found: {path}")
        expected = {entry.get("path"): entry.get("sha256") for entry in sidecar["files"].values()}
        if path.name not in expected:
            raise SidecarError(f"sidecar {sidecar_file} does not describe {path.name}")
        actual = sha256_of(path)
        if actual != expected[path.name]:
            raise ModelFileError(
                f"model file {path} is corrupt or was replaced: sha256 {actual[:12]}..., "
                f"sidecar {sidecar_file} expects {str(expected[path.name])[:12]}..."
            )
        key = (str(path.resolve()), actual, intra_op_threads)
        with _SESSIONS_LOCK:
            session = _SESSIONS.get(key)
            if session is None:
                session = _SESSIONS[key] = open_session(path, intra_op_threads)
        return cls(path, sidecar, session)

    def streaming_features(self) -> StreamingFbank:
        """The per-stream feature extractor this model's windows are made of."""
        return StreamingFbank(self.fbank_spec)

    def new_call_state(self) -> Any:
        """Per-stream model state (v1 models have none; v2 models adapt to the call)."""
        return None

    def predict(self, feats: np.ndarray, call_states: list[Any] | None = None) -> Prediction:
        """Score ``feats`` [batch, frames, n_mels] (all windows the same length); v1 ignores ``call_states``."""
        if feats.ndim != 3 or feats.shape[2] != self.fbank_spec.n_mels:
            raise ValueError(f"expected [batch, frames, {self.fbank_spec.n_mels}] features, got {feats.shape}")
        outputs = dict(
            zip(self._outputs, self._session.run(None, {self._input: feats.astype(np.float32)}), strict=True)
        )
        logits = outputs["logits"]
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        self.heap_trimmer.maybe_trim()  # after the activations of this run were freed
        return Prediction(shifted / shifted.sum(axis=1, keepdims=True), outputs["arousal"], outputs["valence"])


def _default_sidecar(path: Path) -> Path:
    # emotion.int8.onnx shares emotion.json with its fp32 twin.
    stem = path.name.removesuffix(".onnx").removesuffix(".int8")
    return path.with_name(stem + ".json")
