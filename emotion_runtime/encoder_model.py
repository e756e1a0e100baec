"""The v2 model at run time: Whisper log-mel -> pretrained encoder -> per-call adaptation -> head.

Rows are :class:`~emotion_runtime.encoder.StreamingEncoderRows` (80 log10 mels + energy). Loaded by :meth:`emotion_runtime.EmotionModel.load` when the sidecar's format is the v2 one; it keeps
the v1 interface (``predict``, ``fbank_spec``, ``streaming_features``) so streams, hubs, the gateway
and the SDK use both alike. Each stream owns a :class:`~emotion_runtime.adaptation.CallAdaptation`
(``new_call_state()``), updated once per scored window, in order.

Every file is verified before it is opened: the encoder against the sidecar's sha256 (which is also
the registry's pin), the head and the adaptation statistics against theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emotion_runtime.adaptation import NEUTRAL_GATE, AdaptationSpec, CallAdaptation
from emotion_runtime.encoder import EncoderSession, StreamingEncoderRows, encoder_mel, pool_states
from emotion_runtime.files import open_session, sha256_of
from emotion_runtime.model import V2_FORMAT, EmotionModel, Prediction
from emotion_runtime.weights import PROJECT_ROOT
from emotion_runtime.whisper_mel import (
    HOP_LENGTH,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
)
from emotune.errors import ModelFileError, SidecarError

__all__ = ["WhisperMelSpec", "EncoderHeadModel", "V2_FORMAT"]

# Label-derived valence (emotion_models.labels): v2 heads predict classes and arousal only.
_VALENCE = {"happy": 0.7, "neutral": 0.0, "angry": -0.6, "sad": -0.6}


@dataclass(frozen=True)
class WhisperMelSpec:
    """The v2 feature layout, shaped like :class:`~emotion_runtime.features.FbankSpec` for the streams."""

    sample_rate: int = SAMPLE_RATE
    hop_length: int = HOP_LENGTH
    win_length: int = N_FFT
    n_mels: int = N_MELS + 1  # 80 log10 mels + the energy column (emotion_runtime.encoder)

    def frames_for(self, samples: int) -> int:
        # Rows are centred every 10 ms: a 2-s window is 200 rows (the encoder's T).
        return int(round(samples / self.hop_length))


def _verified(path: Path, expected: str | None, what: str) -> Path:
    if not path.is_file():
        raise ModelFileError(f"{what} not found: {path} (expected sha256 {expected})")
    actual = sha256_of(path)
    if actual != expected:
        raise ModelFileError(f"{what} {path} is truncated, altered or another version: sha256 {actual}, expected {expected}")
    return path


class EncoderHeadModel(EmotionModel):
    """A v2 model folder: ``emotion.json`` + ``head.onnx`` + ``adaptation.npz`` (+ the shared encoder)."""

    def __init__(  # noqa: D107 - the v1 session is replaced by encoder + head
        self, path: Path, sidecar: dict[str, Any], encoder: EncoderSession, head: Any, spec: AdaptationSpec
    ) -> None:
        self.path = path
        self.sidecar = sidecar
        self.labels: list[str] = list(sidecar["labels"])
        self.fbank_spec = WhisperMelSpec()  # type: ignore[assignment]
        self.sample_rate = SAMPLE_RATE
        self.adaptation = spec
        self.temperature = float(sidecar.get("temperature", 1.0))
        self.pool = int(sidecar["encoder"]["pool"])
        self.unit_variance = bool(sidecar["features"].get("unit_variance", False))
        self._encoder = encoder
        self._head = head
        self._valence = np.array([_VALENCE.get(label, 0.0) for label in self.labels], dtype=np.float32)

    @classmethod
    def load(  # type: ignore[override]
        cls, sidecar_file: Path, sidecar: dict[str, Any], *, intra_op_threads: int = 1, root: Path | None = None
    ) -> EncoderHeadModel:
        folder = sidecar_file.parent
        try:
            encoder_info, files = sidecar["encoder"], sidecar["files"]
            head_info, stats_info = files["head"], files["adaptation"]
        except (KeyError, TypeError) as exc:
            raise SidecarError(f"v2 sidecar {sidecar_file} lacks {exc}") from exc
        base = root or PROJECT_ROOT
        encoder = EncoderSession.load(
            base / encoder_info["path"], encoder_info["sha256"], intra_op_threads=intra_op_threads
        )
        head_path = _verified(folder / head_info["path"], head_info["sha256"], "emotion head")
        _verified(folder / stats_info["path"], stats_info["sha256"], "adaptation statistics")
        spec = load_adaptation(folder, sidecar)
        expected = (int(encoder_info["layers"]), int(encoder_info["dim"]))
        if spec.shape != expected:
            raise SidecarError(f"sidecar {sidecar_file}: adaptation statistics {spec.shape} do not match the encoder {expected}")
        if encoder.layers is not None and (encoder.layers, encoder.dim) != expected:
            raise SidecarError(
                f"sidecar {sidecar_file} describes a {expected} encoder, but {encoder.path} gives "
                f"{(encoder.layers, encoder.dim)}: the sidecar does not match its model"
            )
        return cls(head_path, sidecar, encoder, open_session(head_path, intra_op_threads), spec)

    # -- the interface streams use -----------------------------------------------------------------
    def streaming_features(self) -> StreamingEncoderRows:  # type: ignore[override]
        return StreamingEncoderRows()

    def new_call_state(self) -> CallAdaptation:
        return CallAdaptation(self.adaptation)

    def predict(self, feats: np.ndarray, call_states: list[Any] | None = None) -> Prediction:
        """Score ``feats`` [batch, 200, 80] (log10 mel rows of 2-s windows), one call state per window."""
        if feats.ndim != 3 or feats.shape[2] != N_MELS + 1:
            raise ValueError(f"expected [batch, rows, {N_MELS + 1}] encoder rows, got {feats.shape}")
        states = call_states or [None] * feats.shape[0]
        probabilities, arousal = [], []
        for rows, call in zip(feats, states, strict=True):
            pooled = pool_states(self._encoder.run(encoder_mel(rows, self.unit_variance)), self.pool)
            call = call or self.new_call_state()
            offset = call.update(pooled.mean(axis=1))
            logits, level = self._head.run(None, {"states": pooled[None].astype(np.float32), "offset": offset[None]})
            scaled = logits[0] / self.temperature
            shifted = np.exp(scaled - scaled.max())
            probabilities.append(shifted / shifted.sum())
            call.heard(probabilities[-1])
            arousal.append(float(np.asarray(level).reshape(-1)[0]))
        probs = np.stack(probabilities).astype(np.float32)
        return Prediction(probs, np.asarray(arousal, dtype=np.float32), probs @ self._valence)


def load_adaptation(folder: Path, sidecar: dict[str, Any]) -> AdaptationSpec:
    """The adaptation statistics a v2 sidecar names (``adaptation.npz`` beside it)."""
    try:
        info = sidecar["adaptation"]
        with np.load(folder / sidecar["files"]["adaptation"]["path"], allow_pickle=False) as stats:
            neutral = stats["neutral_mean"].astype(np.float32) if "neutral_mean" in stats else None
            return AdaptationSpec(
                str(info["mode"]), float(info["prior_windows"]),
                stats["global_mean"].astype(np.float32), stats["weights"].astype(np.float32), neutral,
                float(info.get("gate", NEUTRAL_GATE)), int(info.get("neutral_index", 0)),
            )  # fmt: skip
    except (KeyError, OSError, ValueError) as exc:
        raise SidecarError(f"cannot read the adaptation statistics of {folder}: {exc}") from exc


def read_v2_sidecar(path: Path) -> dict[str, Any]:
    """A v2 sidecar, refused (SidecarError) when it is unreadable or of another format."""
    from emotion_runtime.model import read_sidecar

    sidecar = read_sidecar(path)
    if sidecar.get("format") != V2_FORMAT:
        raise SidecarError(f"{path} is a {sidecar.get('format')!r} sidecar, not a v2 ({V2_FORMAT}) model")
    return sidecar
