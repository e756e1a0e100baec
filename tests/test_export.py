"""ONNX export: parity with PyTorch, dynamic batch/time, int8 twin, sidecar, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from emotion_models.model import EmotionNet, EmotionNetConfig, save_checkpoint  # noqa: E402
from emotion_runtime import EmotionModel  # noqa: E402
from emotion_runtime.features import DEFAULT_SPEC  # noqa: E402
from emotune.errors import ModelFileError  # noqa: E402
from export_onnx.export import ModelExportError, run, verify_parity  # noqa: E402

LABELS = ["neutral", "happy", "sad", "angry"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    model = EmotionNet(EmotionNetConfig(channels=32, n_blocks=1, embedding_dim=32, attention_channels=16, se_channels=8))
    model.eval()
    ckpt = save_checkpoint(
        root / "model.ckpt",
        model,
        {"labels": LABELS, "fbank": DEFAULT_SPEC.to_dict(), "training_data": ["generated"], "licence": "test"},
    )
    report = run(ckpt, root / "out")
    return root / "out", report


def test_parity_and_files(exported: tuple[Path, dict]) -> None:
    out, report = exported
    assert report["parity_max_abs_diff"] <= 1e-4
    for name in ("emotion.onnx", "emotion.int8.onnx", "emotion.json", "export_report.json"):
        assert (out / name).is_file()
    sidecar = json.loads((out / "emotion.json").read_text())
    assert sidecar["labels"] == LABELS
    assert sidecar["inputs"]["feats"]["shape"] == ["batch", "frames", 64]
    assert set(sidecar["files"]) == {"fp32", "int8"}
    assert sidecar["licence"] == "test"


def test_dynamic_batch_and_time_in_runtime(exported: tuple[Path, dict]) -> None:
    out, _ = exported
    for variant in ("emotion.onnx", "emotion.int8.onnx"):
        model = EmotionModel.load(out / variant, out / "emotion.json")
        for batch, frames in ((1, 98), (5, 198), (2, 298)):
            pred = model.predict(np.random.default_rng(0).uniform(-12, 4, (batch, frames, 64)).astype(np.float32))
            assert pred.probabilities.shape == (batch, 4)
            assert np.allclose(pred.probabilities.sum(axis=1), 1.0, atol=1e-5)
            assert np.all((pred.arousal >= 0) & (pred.arousal <= 1))


def test_parity_check_detects_a_different_model(exported: tuple[Path, dict]) -> None:
    out, _ = exported
    torch.manual_seed(1)
    other = EmotionNet(EmotionNetConfig(channels=32, n_blocks=1, embedding_dim=32, attention_channels=16, se_channels=8))
    other.eval()
    assert verify_parity(other, out / "emotion.onnx") > 1e-4


def test_corrupt_checkpoint_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "model.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match="model.ckpt"):
        run(bad, tmp_path / "out")


def test_export_error_is_a_model_error() -> None:
    from emotune.errors import ModelError

    assert issubclass(ModelExportError, ModelError)
