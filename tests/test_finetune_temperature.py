"""`emotune finetune` fits the shipped temperature on the operator's held-out speakers, ECE reported nested."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax
from test_finetune_cli import V2_BASE, V2_ENCODER, _manifest  # the synthetic operator calls and the v2 base

from emotion_models.finetune_v2 import (
    CELLS,
    _calibration,
    _calibration_card,
    nested_temperatures,
    pooled_temperature,
)
from emotion_models.train_head import expected_calibration_error

OVERCONFIDENCE = 3.0  # the synthetic scores are the calibrated logits times this


def _fold(seed: int, n: int = 600) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Calibrated logits (labels drawn from their softmax), the overconfident probabilities, labels."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=1.5, size=(n, 4))
    labels = np.asarray([rng.choice(4, p=p) for p in softmax(logits, axis=1)])
    return logits, softmax(OVERCONFIDENCE * logits, axis=1), labels


def test_nested_temperature_cools_overconfident_folds_without_seeing_them() -> None:
    folds = [_fold(seed) for seed in range(4)]
    probs, labels = [f[1] for f in folds], [f[2] for f in folds]
    pooled = pooled_temperature(probs, labels)
    assert 2.0 < pooled < 4.0  # close to the overconfidence factor
    temperatures = nested_temperatures(probs, labels)
    assert all(t > 1.0 for t in temperatures)
    for (logits, overconfident, y), t in zip(folds, temperatures, strict=True):
        nested = softmax(OVERCONFIDENCE * logits / t, axis=1)
        assert expected_calibration_error(nested, y) < expected_calibration_error(overconfident, y)


def test_a_folds_temperature_does_not_depend_on_its_own_data() -> None:
    folds = [_fold(seed) for seed in range(3)]
    probs, labels = [f[1] for f in folds], [f[2] for f in folds]
    before = nested_temperatures(probs, labels)
    # Fold 0 replaced by underconfident scores of other windows: only the other folds' temperatures move.
    logits, _, y = _fold(99)
    after = nested_temperatures([softmax(logits / OVERCONFIDENCE, axis=1), *probs[1:]], [y, *labels[1:]])
    assert after[0] == before[0]
    assert after[1:] != before[1:]


def test_fewer_than_two_folds_keep_the_base_temperature() -> None:
    with pytest.raises(ValueError):
        nested_temperatures([np.full((2, 4), 0.25)], [np.zeros(2, dtype=int)])
    calibration = _calibration([], [], None, 0.95)  # type: ignore[arg-type]  # no fold: the data is never read
    assert calibration["temperature"] == calibration["base_temperature"] == 0.95
    assert calibration["temperature_from"] == "base model" and "fewer than 2" in calibration["why"]
    assert "the base model's (fitted on its own training corpora), kept: fewer than 2" in "\n".join(_calibration_card(calibration))


@pytest.mark.skipif(not (V2_BASE / "emotion.json").is_file() or not V2_ENCODER.is_file(), reason="v2 model or encoder absent")
def test_finetune_ships_the_fitted_temperature_only_if_it_calibrates_unseen_speakers_better(tmp_path: Path) -> None:
    from emotion_models import finetune_v2

    out = tmp_path / "v2"
    report = finetune_v2.run(_manifest(tmp_path, speakers=3, per_class=2), V2_BASE, out, 1, threads=1, progress=False,
                             data_licence="synthetic test clips, CC0")
    calibration = report["calibration"]
    assert calibration["base_temperature"] == json.loads((V2_BASE / "emotion.json").read_text())["temperature"]
    nested, base = (np.mean(list(calibration[k].values())) for k in ("ece_nested_temperature", "ece_base_temperature"))
    if nested < base:
        assert calibration["temperature"] == calibration["fitted_temperature"]
        assert calibration["temperature_from"].startswith("the held-out speakers of the 3 ")
    else:
        assert calibration["temperature"] == calibration["base_temperature"]
        assert calibration["temperature_from"] == "base model" and "the base one stays" in calibration["why"]
    assert json.loads((out / "emotion.json").read_text())["temperature"] == calibration["temperature"]
    assert json.loads((out / "finetune_report.json").read_text())["calibration"] == calibration
    assert set(calibration["ece_base_temperature"]) == set(calibration["ece_nested_temperature"]) == set(CELLS)
    assert [f["speaker"] for f in calibration["folds"]] == [f["speaker"] for f in report["folds"]]
    for cal, fold in zip(calibration["folds"], report["folds"], strict=True):
        assert cal["ece_base_temperature"] == {c: fold["after"][c]["ece"] for c in CELLS}
        assert cal["ua_recall_unchanged"]  # a temperature never moves the top class
        assert 0.5 <= cal["temperature"] <= 4.0
    card = (out / "MODEL_CARD.md").read_text()
    shipped = "fitted on the held-out speakers" if nested < base else "the base model's (fitted on its own training corpora), kept"
    assert f"T = {calibration['temperature']:.2f}, {shipped}" in card
    assert "ECE at nested T" in card
    assert "The fine-tuning data's terms, as stated by whoever ran the fine-tuning: synthetic test clips, CC0" in card
