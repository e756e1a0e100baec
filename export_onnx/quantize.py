"""Static int8 quantization (QDQ, per-channel) with calibration windows.

Dynamic quantization turns convolutions into ConvInteger, which is slow; static quantization with
calibration data keeps them as QLinear-friendly QDQ pairs. On CPUs without VNNI (like our CI
machines) int8 is smaller but not faster: the report states what was measured, not what was hoped.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["quantize_static_int8", "calibration_from_manifest"]


class _WindowReader:
    """onnxruntime CalibrationDataReader over an array of feature windows [N, frames, mels]."""

    def __init__(self, windows: np.ndarray, input_name: str = "feats") -> None:
        self._iter: Iterator[np.ndarray] = iter(windows)
        self._input = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        window = next(self._iter, None)
        return None if window is None else {self._input: window[None].astype(np.float32)}

    def rewind(self) -> None:  # pragma: no cover - not used by the MinMax calibrator
        pass


def _synthetic_windows(n_mels: int, count: int = 64, frames: int = 198) -> np.ndarray:
    """Stand-in calibration when no audio is given: log-mels of shaped noise at several levels."""
    from emotion_runtime.features import fbank

    rng = np.random.default_rng(0)
    samples = (frames - 1) * 160 + 400
    out = []
    for i in range(count):
        tone = np.sin(2 * np.pi * (120 + 15 * i) * np.arange(samples) / 16000)
        noise = rng.standard_normal(samples)
        signal = (0.3 * tone + 0.05 * noise) * (10 ** (-(i % 8) * 0.25))
        out.append(fbank(signal.astype(np.float32))[:frames, :n_mels])
    return np.stack(out)


def quantize_static_int8(
    fp32_path: Path, int8_path: Path, n_mels: int, calibration: np.ndarray | None = None
) -> dict[str, Any]:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    windows = calibration if calibration is not None else _synthetic_windows(n_mels)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # The symbolic shape pass fails on this graph (FACTS.md); ONNX shape inference suffices.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(int8_path),
            _WindowReader(windows),  # type: ignore[arg-type]
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    return {
        "method": "static QDQ, per-channel, MinMax",
        "calibration_windows": int(windows.shape[0]),
        "calibration_source": "given audio" if calibration is not None else "synthetic (no audio given)",
    }


def calibration_from_manifest(manifest: Path, count: int = 64, frames: int = 198) -> np.ndarray | None:
    """Calibration windows from an operator's CSV manifest (``path`` column), any sample rate."""
    import csv

    import soundfile as sf

    from emotion_runtime.audio import resample
    from emotion_runtime.features import fbank

    with open(manifest, newline="") as handle:
        paths = [row["path"] for row in csv.DictReader(handle) if row.get("path")]
    windows = []
    for rel in paths[:count]:
        path = Path(rel) if Path(rel).is_absolute() else manifest.parent / rel
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        signal = resample(audio.mean(axis=1), rate, 16000)
        need = (frames - 1) * 160 + 400
        signal = np.pad(signal, (0, max(0, need - signal.size)))[:need]
        windows.append(fbank(signal))
    return np.stack(windows) if windows else None
