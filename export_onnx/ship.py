"""Export the shipped model: calibrate int8 on real training audio, compare fp32 and int8 on
held-out speakers (clean and simulated telephone), and write everything beside the model.

    .venv/bin/python -m export_onnx.ship            # needs ../shared/data (RAVDESS + EmoDB)

Held-out speakers are the recipe's test speakers (RAVDESS actors 19-24, EmoDB 03 and 16); the
calibration windows come from other speakers only.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from emotion_runtime import EmotionModel
from emotion_runtime.audio import mulaw_decode, mulaw_encode, resample
from emotion_runtime.features import fbank
from emotune.config import PROJECT_ROOT
from export_onnx.export import run

__all__ = ["main", "evaluate_variant"]

SHARED = PROJECT_ROOT.parent / "shared" / "data"
MODEL_DIR = PROJECT_ROOT / "models" / "emotune-ser-v1"
HELD_OUT = {f"ravdess_{i}" for i in range(19, 25)} | {"emodb_03", "emodb_16"}
LABEL_MAP = {"neutral": "neutral", "calm": "neutral", "happy": "happy", "sad": "sad", "angry": "angry"}
WINDOW_SAMPLES = 32000


def _rows() -> list[tuple[Path, str, str]]:
    rows = []
    for corpus in ("ravdess", "emodb"):
        with open(SHARED / corpus / "manifest.csv") as handle:
            for row in csv.DictReader(handle):
                if row["label"] in LABEL_MAP:
                    rows.append((SHARED / corpus / row["path"], LABEL_MAP[row["label"]], row["speaker"]))
    return rows


def _window(path: Path, telephone: bool = False) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32")
    audio = resample(audio, rate, 16000)
    if telephone:
        audio = resample(mulaw_decode(mulaw_encode(resample(audio, 16000, 8000))), 8000, 16000)
    # The loudest 2 s of the clip (clips are mostly silence-padded acted sentences).
    if audio.size < WINDOW_SAMPLES:
        audio = np.pad(audio, (0, WINDOW_SAMPLES - audio.size))
    energy = np.convolve(audio**2, np.ones(1600), mode="valid")[::160]
    start = int(np.argmax(np.convolve(energy, np.ones(WINDOW_SAMPLES // 160), mode="valid"))) * 160 if audio.size > WINDOW_SAMPLES else 0
    return fbank(audio[start : start + WINDOW_SAMPLES])


def evaluate_variant(model: EmotionModel, windows: np.ndarray, labels: list[str]) -> dict[str, Any]:
    probs = np.concatenate([model.predict(windows[i : i + 64]).probabilities for i in range(0, len(windows), 64)])
    predicted = [model.labels[i] for i in probs.argmax(axis=1)]
    recall = {c: float(np.mean([p == c for p, t in zip(predicted, labels, strict=True) if t == c])) for c in model.labels}
    start = time.perf_counter()
    for _ in range(30):
        model.predict(windows[:1])
    return {
        "ua": round(float(np.mean(list(recall.values()))), 4),
        "wa": round(float(np.mean([p == t for p, t in zip(predicted, labels, strict=True)])), 4),
        "recall": {k: round(v, 4) for k, v in recall.items()},
        "ms_per_window_1_thread": round((time.perf_counter() - start) / 30 * 1000, 3),
        "windows": len(labels),
    }


def main(argv: list[str] | None = None) -> int:
    if not (SHARED / "ravdess" / "manifest.csv").is_file():
        print(f"needs {SHARED} (RAVDESS + EmoDB)", file=sys.stderr)
        return 2
    rows = _rows()
    train_rows = [r for r in rows if r[2] not in HELD_OUT]
    test_rows = [r for r in rows if r[2] in HELD_OUT]
    rng = np.random.default_rng(0)
    pick = rng.choice(len(train_rows), size=min(128, len(train_rows)), replace=False)
    print(f"[ship] calibration: {len(pick)} windows from training speakers", file=sys.stderr)
    calibration = np.stack([_window(train_rows[i][0], telephone=bool(i % 2)) for i in pick])
    report = run(MODEL_DIR / "model.ckpt", MODEL_DIR, calibration=calibration)
    labels = [r[1] for r in test_rows]
    comparison: dict[str, Any] = {}
    for channel in ("clean", "telephone"):
        print(f"[ship] evaluating fp32 and int8 on {len(test_rows)} held-out clips ({channel})", file=sys.stderr)
        windows = np.stack([_window(r[0], telephone=channel == "telephone") for r in test_rows])
        for variant, fname in (("fp32", "emotion.onnx"), ("int8", "emotion.int8.onnx")):
            model = EmotionModel.load(MODEL_DIR / fname, MODEL_DIR / "emotion.json")
            comparison[f"{variant}_{channel}"] = evaluate_variant(model, windows, labels)
    report["int8_vs_fp32_held_out_speakers"] = comparison
    report["int8_ua_loss_points_clean"] = round((comparison["fp32_clean"]["ua"] - comparison["int8_clean"]["ua"]) * 100, 2)
    report["int8_speedup"] = round(
        comparison["fp32_clean"]["ms_per_window_1_thread"] / comparison["int8_clean"]["ms_per_window_1_thread"], 2
    )
    report["evaluation_note"] = (
        "one 2-s window per clip (the loudest 2 s), held-out speakers RAVDESS 19-24 + EmoDB 03/16; "
        "the recipe's per-clip figures in results.json average over whole clips and differ slightly"
    )
    (MODEL_DIR / "export_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("parity_max_abs_diff", "int8_ua_loss_points_clean", "int8_speedup")}, indent=2))
    print(json.dumps(comparison, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
