"""v1 on the v2 protocol's windows (emotion_models/loco_v1.py) and the distilled student (distill.py).

Synthetic audio only (no ../shared): tones per class, as in test_emotion_models.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from emotion_models.corpora import CLASSES, Utterance
from emotion_models.distill import align, distill_loss, fit_student, soft_targets, teacher_probs, window_clips
from emotion_models.encoder_cache import WindowSet, _windows
from emotion_models.loco_v1 import CELLS, Windows, evaluate_windows, summarise_loco, windows_of
from emotion_models.model import EmotionNet, EmotionNetConfig
from emotion_models.train import load_hparams
from emotion_models.train_head import TrainingData, fit_adaptation
from emotune.errors import DataError

ROOT = Path(__file__).resolve().parent.parent
RATE = 16000


def _tone(label: str, seconds: float, seed: int) -> np.ndarray:
    f0 = {"neutral": 140, "happy": 260, "sad": 110, "angry": 200}[label]
    amp = {"neutral": 0.1, "happy": 0.2, "sad": 0.03, "angry": 0.5}[label]
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (amp * np.sin(2 * np.pi * f0 * t) + 0.002 * rng.standard_normal(len(t))).astype(np.float32)


def _utterances(seconds: float = 1.5, corpora: tuple[str, ...] = ("a", "b")) -> list[Utterance]:
    out = []
    for corpus in corpora:
        for s in range(3):
            for k, label in enumerate(CLASSES):
                for i in range(2):
                    wav = _tone(label, seconds, seed=100 * s + 10 * k + i)
                    out.append(Utterance(wav, label, None, f"{corpus}_{s}", corpus, "xx", f"{corpus}/{s}/{label}/{i}"))
    return out


@pytest.mark.parametrize("seconds", [0.4, 0.8, 1.2, 3.1, 7.77])
def test_windows_are_the_encoder_caches_windows(seconds: float) -> None:
    """Same streams and the same number of 2-s windows per stream as encoder_cache (so rows align)."""
    utt = [Utterance(_tone("angry", seconds, 0), "angry", 0.9, "a_0", "a", "xx", "p")]
    windows = windows_of(utt)
    joined = np.concatenate([utt[0].wav, np.zeros(int(0.25 * RATE), dtype=np.float32)])
    assert len(windows.stream) == len(_windows(joined, unit_variance=False))
    assert list(windows.position) == list(range(len(windows.stream)))
    assert all(len(c.wav) == 2 * RATE for c in window_clips(windows, np.arange(len(windows.stream))))


def test_per_bin_affine_fbank_change_is_erased_by_v1() -> None:
    """Why v1 has no fbank-statistics adaptation: any per-call per-bin scale and shift of the fbank is
    undone by the network's own per-window normalisation, so the scores cannot change."""
    torch.manual_seed(0)
    model = EmotionNet(EmotionNetConfig(channels=16, n_blocks=1, se_channels=8, attention_channels=8)).eval()
    feats = torch.randn(3, 198, 64)
    scale, shift = torch.rand(1, 1, 64) * 3 + 0.2, torch.randn(1, 1, 64) * 4
    with torch.no_grad():
        before, after = model(feats)[0], model(feats * scale + shift)[0]
    assert torch.allclose(before, after, atol=1e-3)


def test_distill_loss_is_zero_at_the_teacher_and_positive_elsewhere() -> None:
    teacher = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]])
    assert torch.allclose(soft_targets(teacher, 1.0), teacher)
    logits = torch.log(teacher) / 1.0
    assert float(distill_loss(logits, teacher, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distill_loss(torch.zeros(2, 4), teacher, 2.0)) > 0.01
    softer = soft_targets(teacher, 2.0)
    assert float(softer[0].max()) < 0.7 and torch.allclose(softer.sum(dim=1), torch.ones(2))


def _fake_cache(windows_meta: WindowSet) -> TrainingData:
    return TrainingData({"clean": windows_meta, "telephone": windows_meta})


def _window_set(windows: Windows, drop_last: bool = False) -> WindowSet:
    n = len(windows.stream) - int(drop_last)
    rng = np.random.default_rng(0)
    return WindowSet(
        rng.standard_normal((n, 2, 3, 8)).astype(np.float16), windows.label[:n], np.full(n, np.nan, dtype=np.float32),
        windows.speaker[:n], windows.corpus[:n], windows.stream[:n], windows.position[:n],
    )  # fmt: skip


def test_align_finds_each_window_in_the_cache_or_says_which_is_missing() -> None:
    windows = windows_of(_utterances(seconds=2.5))
    rows = align(windows, _fake_cache(_window_set(windows)))
    assert list(rows) == list(range(len(windows.stream)))
    with pytest.raises(DataError, match="not in the encoder cache"):
        align(windows, _fake_cache(_window_set(windows, drop_last=True)))


def test_teacher_probs_and_one_student_epoch(tmp_path: Path) -> None:
    from emotion_models.head import EmotionHead, HeadConfig

    windows = windows_of(_utterances(seconds=2.5))
    cache = _fake_cache(_window_set(windows))
    head = EmotionHead(HeadConfig(layers=2, dim=8, hidden=8, dropout=0.0), np.ones((2, 8), dtype=np.float32))
    spec = fit_adaptation("none", 4.0, cache.meta.pooled, cache.meta)
    probs = teacher_probs(head, spec, cache, np.arange(len(windows.stream)), ["clean", "telephone"])
    assert probs.shape == (len(windows.stream), 4) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)

    hparams = load_hparams(ROOT / "emotion_models" / "hparams" / "smoke.yaml",
                           {"data_folder": "unused", "output_folder": str(tmp_path)})  # fmt: skip
    train_rows = np.flatnonzero(windows.corpus == "a")
    clips = window_clips(windows, train_rows)
    kd = {"draws_per_epoch": 8, "number_of_epochs": 1, "kd_weight": 0.7, "kd_temperature": 2.0}
    result = fit_student(hparams["model"], clips[:-4], clips[-4:], probs, hparams, kd)
    assert result["best_epoch"] == 1

    test = evaluate_windows(hparams["model"], windows, np.flatnonzero(windows.corpus == "b"))
    assert set(test) == set(CELLS)
    assert test["clean/mixed"] == test["clean/single"]  # v1 keeps no per-call state
    row = summarise_loco({"b": {"test": test}})["modes"]["none"]
    assert row["loco_mean_ua"] == pytest.approx(np.mean([test[c]["ua"] for c in CELLS]), abs=1e-4)
    assert 0.0 <= row["loco_mean_ece"] <= 1.0


def test_bench_variants_reads_a_v1_loco_summary(tmp_path: Path) -> None:
    """bench_variants takes v1's and the student's accuracy from their LOCO summaries (no sidecar mode)."""
    import json
    import sys

    sys.path.insert(0, str(ROOT))
    from benchmarks.bench_variants import _accuracy

    windows = windows_of(_utterances(seconds=2.5))
    model = EmotionNet(EmotionNetConfig(channels=16, n_blocks=1, se_channels=8, attention_channels=8))
    summary = summarise_loco({"b": {"test": evaluate_windows(model, windows, np.flatnonzero(windows.corpus == "b"))}})
    path = tmp_path / "results.json"
    path.write_text(json.dumps(summary))
    row = _accuracy({"model": None, "results": str(path)})
    assert row["adaptation"] == "none" and row["loco_mean_ua"] == summary["modes"]["none"]["loco_mean_ua"]
    assert "held_out_speakers_ua_clean_mixed" not in row
    assert "not built" in _accuracy({"model": None, "results": str(tmp_path / "absent.json")})["note"]


def test_control_run_trains_no_teacher() -> None:
    """kd_weight 0 is the control (same windows, budget and network, hard labels only): no teacher head."""
    from emotion_models.distill import fold_teacher

    windows = windows_of(_utterances(seconds=2.5))
    cache = _fake_cache(_window_set(windows))
    soft, report = fold_teacher({"kd_weight": 0}, cache, "b", np.arange(5), threads=1)
    assert soft.shape == (5, 4) and np.allclose(soft, 0.25) and "no teacher" in report["note"]


def test_ship_student_refuses_a_fold_that_heard_its_test_corpus(tmp_path: Path) -> None:
    """The shipped student must be a fold trained without its test corpus (Korean stays out of it)."""
    import json

    from emotion_models.model import save_checkpoint
    from emotion_models.ship_student import ship

    model = EmotionNet(EmotionNetConfig(channels=16, n_blocks=1, se_channels=8, attention_channels=8))
    save_checkpoint(tmp_path / "korean_operator" / "model.ckpt", model,
                    {"labels": list(CLASSES), "training_data": ["korean_operator", "ravdess"]})  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps({"modes": {"none": {"folds": ["korean_operator"]}}}))
    (tmp_path / "loco.json").write_text(json.dumps({"none": {"folds": {"korean_operator": {}}}}))
    with pytest.raises(ValueError, match="trained without it"):
        ship(tmp_path, "korean_operator", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
