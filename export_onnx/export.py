"""Checkpoint -> ``emotion.onnx`` + ``emotion.int8.onnx`` + ``emotion.json`` sidecar, self-verifying.

The graph takes log-mel features (``emotion_runtime.features``), not waveforms: FACTS.md measured the
in-graph STFT as the expensive part, and the streaming runtime computes features once per incoming
frame instead of once per overlapping window. Batch and time axes are dynamic so the runtime can
score every window that is due across many streams in one call.

The export fails (``ModelExportError``) if onnxruntime and PyTorch disagree by more than 1e-4 on any
output at any of several window lengths and batch sizes.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emotion_models.model import EmotionNet, load_checkpoint
from emotion_runtime.features import DEFAULT_SPEC
from emotion_runtime.files import sha256_of
from emotune.errors import ModelError

__all__ = ["ModelExportError", "run", "export_fp32", "verify_parity", "sha256_of", "PARITY_TOLERANCE"]

PARITY_TOLERANCE = 1e-4
OPSET = 18
INPUT_NAME = "feats"
OUTPUT_NAMES = ("logits", "arousal", "valence")
PARITY_FRAMES = (98, 148, 198, 298)  # 1, 1.5, 2 and 3 s windows
PARITY_BATCHES = (1, 3)


class ModelExportError(ModelError):
    """The export produced a graph that does not behave like the checkpoint."""


def _log(message: str) -> None:
    print(f"[export] {message}", file=sys.stderr, flush=True)




def export_fp32(model: EmotionNet, path: Path) -> None:
    """Dynamo export with dynamic batch and time axes."""
    n_mels = model.config.n_mels
    example = torch.randn(2, 198, n_mels)
    batch, frames = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("frames", min=40, max=1000)
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=list(OUTPUT_NAMES),
        dynamic_shapes={"feats": {0: batch, 1: frames}},
        opset_version=OPSET,
        external_data=False,
        verbose=False,
    )
    if program is None:
        raise ModelExportError("torch.onnx.export returned no program")
    program.save(str(path), external_data=False)


def _ort_session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def verify_parity(model: EmotionNet, path: Path, seed: int = 0) -> float:
    """Max |torch - onnxruntime| over all outputs, several lengths and batch sizes."""
    session = _ort_session(path)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for frames in PARITY_FRAMES:
        for batch in PARITY_BATCHES:
            # Realistic log-mel range (log of power in [1e-6, 1e2]).
            feats = rng.uniform(-12.0, 4.0, size=(batch, frames, model.config.n_mels)).astype(np.float32)
            with torch.no_grad():
                expected = [t.numpy() for t in model(torch.from_numpy(feats))]
            got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: feats})
            for name, exp, out in zip(OUTPUT_NAMES, expected, got, strict=True):
                if exp.shape != out.shape:
                    raise ModelExportError(f"{name}: shape {out.shape} from ONNX, {exp.shape} from torch")
                worst = max(worst, float(np.max(np.abs(exp - out))))
    return worst


def _time_per_window(path: Path, n_mels: int, repeats: int = 50) -> float:
    session = _ort_session(path)
    feats = np.random.default_rng(1).uniform(-12, 4, size=(1, 198, n_mels)).astype(np.float32)
    session.run(None, {INPUT_NAME: feats})
    start = time.perf_counter()
    for _ in range(repeats):
        session.run(None, {INPUT_NAME: feats})
    return (time.perf_counter() - start) / repeats * 1000.0


def run(
    checkpoint: Path,
    out_dir: Path,
    *,
    calibration: np.ndarray | None = None,
    quantize: bool = True,
    name: str = "emotion",
) -> dict[str, Any]:
    """Export, verify parity, quantize and write the sidecar. Returns the export report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model, meta = load_checkpoint(checkpoint)
    model.eval()
    fp32_path = out_dir / f"{name}.onnx"
    _log(f"exporting {checkpoint} -> {fp32_path}")
    export_fp32(model, fp32_path)
    _log("checking parity with PyTorch at 4 window lengths x 2 batch sizes")
    max_diff = verify_parity(model, fp32_path)
    if not max_diff <= PARITY_TOLERANCE:
        fp32_path.unlink(missing_ok=True)
        raise ModelExportError(f"ONNX differs from PyTorch by {max_diff:.2e} > {PARITY_TOLERANCE:g}")
    _log(f"parity ok: max |diff| = {max_diff:.2e}")
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "parity_max_abs_diff": max_diff,
        "parity_tolerance": PARITY_TOLERANCE,
        "fp32_ms_per_2s_window": _time_per_window(fp32_path, model.config.n_mels),
        "fp32_bytes": fp32_path.stat().st_size,
    }
    files = {"fp32": fp32_path.name}
    if quantize:
        from export_onnx.quantize import quantize_static_int8

        int8_path = out_dir / f"{name}.int8.onnx"
        _log(f"static int8 quantization -> {int8_path}")
        report["int8"] = quantize_static_int8(fp32_path, int8_path, model.config.n_mels, calibration)
        report["int8"]["ms_per_2s_window"] = _time_per_window(int8_path, model.config.n_mels)
        report["int8"]["bytes"] = int8_path.stat().st_size
        files["int8"] = int8_path.name
    sidecar = build_sidecar(model, meta, out_dir, files)
    (out_dir / f"{name}.json").write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    report["sidecar"] = str(out_dir / f"{name}.json")
    (out_dir / "export_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    _log(f"wrote {out_dir / (name + '.json')} and export_report.json")
    return report


def build_sidecar(model: EmotionNet, meta: dict[str, Any], out_dir: Path, files: dict[str, str]) -> dict[str, Any]:
    labels = list(meta.get("labels") or meta.get("classes") or [])
    if len(labels) != model.config.n_classes:
        raise ModelExportError(f"checkpoint meta has {len(labels)} labels for {model.config.n_classes} classes")
    spec = meta.get("fbank") or DEFAULT_SPEC.to_dict()
    return {
        "format": "emotune-emotion-onnx/1",
        "labels": labels,
        "sample_rate": int(spec["sample_rate"]),
        "window_s": {"default": 2.0, "min": 1.0, "max": 3.0},
        "hop_s": 1.0,
        "features": {"kind": "log-mel (emotion_runtime.features.fbank)", **spec},
        "opset": OPSET,
        "inputs": {INPUT_NAME: {"dtype": "float32", "shape": ["batch", "frames", model.config.n_mels]}},
        "outputs": {
            "logits": {"dtype": "float32", "shape": ["batch", len(labels)], "meaning": "class scores, softmax -> probabilities"},
            "arousal": {"dtype": "float32", "shape": ["batch"], "meaning": "0..1, label-derived"},
            "valence": {"dtype": "float32", "shape": ["batch"], "meaning": "-1..1, label-derived"},
        },
        "normalisation": "per-window, inside the graph",
        "files": {variant: {"path": fname, "sha256": sha256_of(out_dir / fname)} for variant, fname in files.items()},
        "model_config": meta.get("model_config", {}),
        "training_data": meta.get("training_data", []),
        "licence": meta.get("licence", "unknown"),
        "results": meta.get("results_summary", {}),
    }


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Export an Emotune checkpoint to ONNX")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--output", type=Path, default=Path("results/export"))
    parser.add_argument("--no-int8", action="store_true")
    args = parser.parse_args(argv)
    report = run(args.checkpoint, args.output, quantize=not args.no_int8)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
