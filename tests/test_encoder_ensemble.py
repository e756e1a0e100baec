"""Two-encoder ensemble (emotion_models/encoder_ensemble.py): the combination rules, the window alignment
check, the nested weight choice and the saved probabilities, on synthetic data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emotion_models.encoder_cache import WindowSet
from emotion_models.encoder_ensemble import _load_probs, _save_probs, check_aligned, choose_weight, combine
from emotion_models.experiments_v2 import CELLS
from emotion_models.train_head import TrainingData
from emotune.errors import DataError


def _windows(n: int = 6, dim: int = 4, seed: int = 0) -> TrainingData:
    rng = np.random.default_rng(seed)
    sets = {}
    for channel in ("clean", "telephone"):
        sets[channel] = WindowSet(
            states=rng.standard_normal((n, 3, 2, dim)).astype(np.float16),
            label=np.array([0, 1, 2, 3, -1, -1][:n]),
            arousal=np.array([0.2, 0.9, 0.1, 0.5, np.nan, 0.7][:n]),
            speaker=np.array(["a", "a", "b", "b", "c", "c"][:n]),
            corpus=np.array(["ravdess", "ravdess", "emodb", "emodb", "baved", "baved"][:n]),
            stream=np.array([0, 0, 1, 1, 2, 2][:n]),
            position=np.array([0, 1, 0, 1, 0, 1][:n]),
        )
    return TrainingData(sets)


def test_log_rule_is_the_normalised_geometric_mean_and_can_fix_both_members() -> None:
    # each member alone picks a wrong class (0 and 2); both give class 1 a fair share
    first = np.array([[0.50, 0.45, 0.04, 0.01]])
    second = np.array([[0.04, 0.45, 0.50, 0.01]])
    log = combine([first, second], [0.5, 0.5], "log")
    geometric = np.sqrt(first * second)
    np.testing.assert_allclose(log, geometric / geometric.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(log.sum(axis=1), 1.0)
    assert first.argmax() == 0 and second.argmax() == 2 and log.argmax() == 1
    prob = combine([first, second], [0.5, 0.5], "prob")
    np.testing.assert_allclose(prob, (first + second) / 2)
    assert prob.argmax() == 1
    # a weight of 1 is that member alone, under both rules
    np.testing.assert_allclose(combine([first, second], [1.0, 0.0], "log"), first, rtol=1e-9)
    np.testing.assert_allclose(combine([first, second], [0.0, 1.0], "prob"), second)


def test_combine_refuses_bad_weights_shapes_and_rules() -> None:
    p = np.full((3, 4), 0.25)
    with pytest.raises(ValueError, match="sum to 1"):
        combine([p, p], [0.7, 0.7])
    with pytest.raises(ValueError, match="sum to 1"):
        combine([p, p], [1.5, -0.5])
    with pytest.raises(ValueError, match="shape"):
        combine([p, p[:2]], [0.5, 0.5])
    with pytest.raises(ValueError, match="weights"):
        combine([p, p], [1.0])
    with pytest.raises(ValueError, match="rule"):
        combine([p, p], [0.5, 0.5], "max")


def test_aligned_caches_pass_even_with_different_encoders_and_nan_arousal() -> None:
    check_aligned(_windows(seed=0), _windows(dim=7, seed=1))  # states differ (other encoder): fine


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [("position", [1, 0, 0, 1, 0, 1], "window 0 has position"), ("speaker", ["a", "a", "b", "x", "c", "c"], "window 3 has speaker"),
     ("label", [0, 1, 2, 3, -1, 0], "window 5 has label"), ("arousal", [0.2, 0.9, 0.1, 0.5, 0.3, 0.7], "window 4 has arousal")],
)  # fmt: skip
def test_misaligned_windows_are_refused_with_the_first_difference(field: str, value: list[object], expected: str) -> None:
    first, second = _windows(), _windows()
    setattr(second.windows["telephone"], field, np.array(value))
    with pytest.raises(DataError, match=expected) as caught:
        check_aligned(first, second, ["st", "wb"])
    assert "(telephone)" in str(caught.value) and "st and wb" in str(caught.value)


def test_different_window_counts_are_refused() -> None:
    with pytest.raises(DataError, match="6 vs 5 windows"):
        check_aligned(_windows(6), _windows(5))


def test_the_weight_for_a_fold_is_chosen_on_the_other_folds_only() -> None:
    grid = (0.0, 0.2, 0.5, 1.0)
    scores = {
        "ravdess": dict(zip(grid, (0.40, 0.50, 0.45, 0.30), strict=True)),
        "emodb": dict(zip(grid, (0.40, 0.48, 0.46, 0.30), strict=True)),
        "korean": dict(zip(grid, (0.10, 0.10, 0.10, 0.90), strict=True)),  # held out: its own best is 1.0
    }
    assert choose_weight(scores, "korean") == 0.2
    # with korean among the folds the choice moves: 1.0 has mean 0.50, 0.2 has 0.36
    assert choose_weight(scores, "ravdess") == 1.0
    ties = {"a": {0.0: 0.5, 0.5: 0.5, 1.0: 0.5}, "b": {0.0: 0.1, 0.5: 0.1, 1.0: 0.1}}
    assert choose_weight(ties, "b") == 0.5  # ties go to equal weights
    with pytest.raises(ValueError, match="no fold"):
        choose_weight({"a": {0.5: 1.0}}, "a")


def test_saved_window_probabilities_load_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    member = {
        "temperature": 1.25, "dev_speakers": ["emodb_03"], "best_epoch": 4, "dev_ua": 0.5, "train_s": 1.0,
        "dev": rng.dirichlet(np.ones(4), 8), "dev_labels": rng.integers(0, 4, 8),
        "test": {cell: rng.dirichlet(np.ones(4), 5) for cell in CELLS},
    }  # fmt: skip
    folds = {"turev": {"rows": np.arange(5), "members": {"st": member, "wb": {**member, "temperature": 0.9}}}}
    path = tmp_path / "probs.npz"
    _save_probs(path, folds)
    back = _load_probs(path, ["st", "wb"])
    assert list(back) == ["turev"]
    assert back["turev"]["members"]["wb"]["temperature"] == 0.9
    assert back["turev"]["members"]["st"]["dev_speakers"] == ["emodb_03"]
    np.testing.assert_allclose(back["turev"]["members"]["st"]["test"]["telephone/single"], member["test"]["telephone/single"], rtol=1e-6)
    assert _load_probs(path, ["st", "other"]) == {}  # a fold missing one encoder is not a fold
