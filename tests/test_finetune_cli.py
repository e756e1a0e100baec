"""`emotune finetune`: operator data in, a new verified ONNX model (+ int8) out, in one command."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotune.config import PROJECT_ROOT

pytest.importorskip("torch")

# The v1 path (fbank network + export + int8): config.yml now ships a v2 model, so name the v1 base.
V1_BASE = PROJECT_ROOT / "models" / "emotune-ser-v1" / "model.ckpt"
VOICES = {"neutral": (140, 0.1), "happy": (260, 0.2), "sad": (110, 0.03), "angry": (200, 0.5)}


def _manifest(root: Path, rate: int = 8000, speakers: int = 3, per_class: int = 3) -> Path:
    rows = []
    for s in range(speakers):
        for label, (f0, amp) in VOICES.items():
            for i in range(per_class):
                t = np.arange(int(1.5 * rate)) / rate
                phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * s + 0.05 * np.sin(2 * np.pi * 4 * t))) / rate
                wav = amp * sum(np.sin(k * phase) / k for k in range(1, 4)) / 2
                name = f"calls/spk{s}_{label}_{i}.wav"
                (root / "calls").mkdir(parents=True, exist_ok=True)
                sf.write(root / name, wav.astype(np.float32), rate)
                rows.append({"path": name, "label": label, "speaker": f"agent-line-{s}"})
    path = root / "my_calls.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "speaker"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _emotune(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "emotune", *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=900)


def test_finetune_produces_a_verified_model(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    out = tmp_path / "model"
    result = _emotune("finetune", "--data", str(manifest), "--output", str(out), "--epochs", "1", "--base", str(V1_BASE))
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("model.ckpt", "emotion.onnx", "emotion.int8.onnx", "emotion.json", "finetune_report.json",
                 "export_report.json"):
        assert (out / name).is_file(), name
    lines = result.stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")  # the final summary object
    summary = json.loads("\n".join(lines[start:]))
    assert summary["parity_max_abs_diff"] <= 1e-4
    assert "[finetune] 3/3" in result.stderr  # progress is shown
    # The new model runs in the torch-free runtime and the config can point at it.
    from connectors.sdk import EmotionSDK
    from emotune.config import load_config

    cfg = load_config(PROJECT_ROOT / "config.yml", model={"path": str(out / "emotion.onnx")})
    sdk = EmotionSDK.open(cfg)
    assert sdk.model.labels == ["neutral", "happy", "sad", "angry"]
    sidecar = json.loads((out / "emotion.json").read_text())
    assert any("my_calls.csv" in entry for entry in sidecar["training_data"])


def test_finetune_refuses_a_bad_manifest_before_training(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, speakers=2, per_class=1)
    rows = manifest.read_text().splitlines()
    rows.append("calls/missing.wav,angry,agent-line-0")
    rows.append(f"{rows[1].split(',')[0]},furious,agent-line-1")
    manifest.write_text("\n".join(rows) + "\n")
    result = _emotune("finetune", "--data", str(manifest), "--output", str(tmp_path / "m"), "--epochs", "1",
                      "--base", str(V1_BASE))
    assert result.returncode != 0
    assert "missing.wav" in result.stderr
    assert "furious" in result.stderr
    assert not (tmp_path / "m" / "model.ckpt").exists()


V2_BASE = PROJECT_ROOT / "models" / "emotune-ser-v2-st"
V2_ENCODER = PROJECT_ROOT / "models" / "encoders" / "smart-turn-v3.2" / "encoder.onnx"


@pytest.mark.skipif(not (V2_BASE / "emotion.json").is_file() or not V2_ENCODER.is_file(), reason="v2 model or encoder absent")
def test_finetune_of_a_v2_model_adapts_its_head_and_reports_unseen_speakers(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, rate=8000, speakers=3, per_class=2)
    out = tmp_path / "v2"
    result = _emotune("finetune", "--data", str(manifest), "--output", str(out), "--epochs", "1", "--base", str(V2_BASE))
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("head.onnx", "head.ckpt", "adaptation.npz", "emotion.json", "finetune_report.json"):
        assert (out / name).is_file(), name
    report = json.loads((out / "finetune_report.json").read_text())
    assert [fold["speaker"] for fold in report["folds"]] == ["agent-line-0", "agent-line-1", "agent-line-2"]
    assert set(report["before"]) == set(report["after"]) == {"clean/mixed", "clean/single", "telephone/mixed", "telephone/single"}
    assert set(report["candidates"]) == {"head_finetune", "linear_probe"} and report["chosen"] in report["candidates"]
    sidecar = json.loads((out / "emotion.json").read_text())
    assert sidecar["encoder"] == json.loads((V2_BASE / "emotion.json").read_text())["encoder"]  # encoder unchanged
    assert any("my_calls.csv" in entry for entry in sidecar["trained_on"])
    from emotion_runtime import EmotionModel

    assert EmotionModel.load(out).labels == ["neutral", "happy", "sad", "angry"]


@pytest.mark.skipif(not (V2_BASE / "emotion.json").is_file(), reason="v2 model absent")
def test_finetune_of_a_v2_model_refuses_a_bad_manifest(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, speakers=1, per_class=1)
    manifest.write_text(manifest.read_text() + "calls/missing.wav,angry,agent-line-0\ncalls/spk0_sad_0.wav,furious,x\n")
    result = _emotune("finetune", "--data", str(manifest), "--output", str(tmp_path / "out"), "--base", str(V2_BASE))
    assert result.returncode != 0
    assert "missing.wav" in result.stderr and "furious" in result.stderr
    assert not (tmp_path / "out" / "emotion.json").exists()


@pytest.mark.skipif(not (V2_BASE / "emotion.json").is_file() or not V2_ENCODER.is_file(), reason="v2 model or encoder absent")
def test_a_finetune_that_ships_the_linear_probe_writes_a_model_the_runtime_runs(tmp_path: Path) -> None:
    from emotion_models.finetune_v2 import run

    manifest = _manifest(tmp_path, rate=8000, speakers=3, per_class=2)
    out = tmp_path / "probe"
    report = run(manifest, V2_BASE, out, 1, candidates=("linear_probe",), progress=False, threads=1)
    assert report["chosen"] == "linear_probe" and set(report["candidates"]) == {"head_finetune", "linear_probe"}
    assert [f["speaker"] for f in report["folds"]] == ["agent-line-0", "agent-line-1", "agent-line-2"]
    assert all(f["setting"]["statistics"] in ("mean", "mean_std") for f in report["folds"])  # chosen inside each fold
    assert "folds" in report["candidates"]["head_finetune"]  # the reference stays in the report
    # Speed-perturbed copies train (config default 0.9x, 1.1x); scores and hand-offs count the original clips only.
    assert report["augmentation"]["speed_perturb"] == [0.9, 1.1] and report["augmentation"]["windows"]["copies"] > 0
    hand_offs = report["after"]["telephone/single"]["hand_offs"]
    assert {h["angry_calls"] for h in hand_offs.values()} == {3} and {h["other_calls"] for h in hand_offs.values()} == {9}
    sidecar = json.loads((out / "emotion.json").read_text())
    assert sidecar["head"]["kind"] == "linear_probe" and sidecar["parity"]["max_abs_diff"] <= 1e-4
    assert "linear_probe" in (out / "MODEL_CARD.md").read_text()
    from emotion_runtime import EmotionModel

    assert EmotionModel.load(out).labels == ["neutral", "happy", "sad", "angry"]
    # A probe is fitted, not trained further: fine-tuning from it is refused with the way out.
    result = _emotune("finetune", "--data", str(manifest), "--output", str(tmp_path / "again"), "--epochs", "1", "--base", str(out))
    assert result.returncode != 0 and "fine-tune from" in result.stderr and str(V2_BASE) in result.stderr
