"""Cost of EmotionNet sizes per 2-s window (fbank computed outside), one thread: torch and onnxruntime.

    nice .venv/bin/python -m emotion_models.speed --out results/model_speed.json

Used to choose the shipped size: the runtime target is ~200 streams per core at a 1 s cadence,
i.e. at most ~4 ms of network per window. Timings on a shared machine are noisy: the JSON keeps
the median and the 10th percentile (closest to the uncontended cost).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emotion_models.model import EmotionNet, EmotionNetConfig

__all__ = ["SIZES", "measure", "main"]

SIZES = [(64, 2), (96, 2), (128, 2), (96, 3), (128, 3)]
FRAMES_2S = 198  # (32000 - 400) // 160 + 1


def _times(fn: Any, repeats: int) -> dict[str, float]:
    for _ in range(10):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return {"median_ms": round(float(np.median(samples)), 3), "p10_ms": round(float(np.percentile(samples, 10)), 3)}


def measure(channels: int, n_blocks: int, repeats: int = 200) -> dict[str, Any]:
    import onnxruntime as ort

    torch.set_num_threads(1)
    model = EmotionNet(EmotionNetConfig(channels=channels, n_blocks=n_blocks)).eval()
    feats = torch.randn(1, FRAMES_2S, 64)
    with torch.inference_mode():
        torch_times = _times(lambda: model(feats), repeats // 2)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        torch.onnx.export(
            model, (feats,), str(path), input_names=["feats"], output_names=["logits", "arousal", "valence"],
            dynamic_axes={"feats": {0: "batch", 1: "frames"}}, dynamo=False, opset_version=17,
        )  # fmt: skip
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        array = feats.numpy()
        ort_times = _times(lambda: session.run(None, {"feats": array}), repeats)
    return {
        "channels": channels, "n_blocks": n_blocks, "parameters": model.n_parameters(),
        "torch_1thread": torch_times, "onnxruntime_1thread": ort_times,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("results/model_speed.json"))
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    rows = []
    for channels, n_blocks in SIZES:
        row = measure(channels, n_blocks, args.repeats)
        rows.append(row)
        print(
            f"C={channels:3d} blocks={n_blocks} params={row['parameters']:7d}  "
            f"torch {row['torch_1thread']['median_ms']:.2f} ms  onnxruntime {row['onnxruntime_1thread']['median_ms']:.2f} ms "
            f"(p10 {row['onnxruntime_1thread']['p10_ms']:.2f})",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"window_s": 2.0, "frames": FRAMES_2S, "sizes": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
