"""The finetune_probe comparison: weights, nested choice, the probe, and the head's corpus shares."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_models.finetune_probe import choose_nested, class_weights
from emotion_models.linear_probe import fit_logistic


def test_class_weights_balance_classes_and_give_the_operator_its_share() -> None:
    corpus = np.array(["op"] * 6 + ["a"] * 10 + ["b"] * 4)
    labels = np.array([0, 0, 0, 0, 1, 1] + [0] * 5 + [1] * 5 + [2, 2, 3, 3])
    w = class_weights(corpus, labels, "op", 0.8)
    assert w.sum() == pytest.approx(1.0)
    assert w[corpus == "op"].sum() == pytest.approx(0.8)
    assert w[corpus == "a"].sum() == pytest.approx(0.1) and w[corpus == "b"].sum() == pytest.approx(0.1)
    op = corpus == "op"
    assert w[op & (labels == 0)].sum() == pytest.approx(w[op & (labels == 1)].sum())
    even = class_weights(corpus, labels, "op", None)
    assert all(even[corpus == c].sum() == pytest.approx(1 / 3) for c in ("op", "a", "b"))
    only = class_weights(corpus[op], labels[op], "op", 0.5)  # no other corpus: all of it
    assert only.sum() == pytest.approx(1.0)


def test_nested_choice_sees_only_the_speakers_it_is_given() -> None:
    seen: list[tuple[str, tuple[str, ...]]] = []

    def inner(value: float, held: str, rest: list[str]) -> float:
        seen.append((held, tuple(rest)))
        return {0.1: 0.5, 1.0: 0.7}[value] if held != "s2" else 0.0

    best, means = choose_nested(["s1", "s2", "s3"], [1.0, 0.1], inner)
    assert best == 1.0 and means["1.0"] == pytest.approx(1.4 / 3, abs=1e-4)
    assert {h for h, _ in seen} == {"s1", "s2", "s3"} and all(h not in rest for h, rest in seen)
    tie, _ = choose_nested(["s1", "s2"], [1.0, 0.1], lambda v, h, r: 0.5)
    assert tie == 1.0  # ties go to the first (more regularised) value


def test_the_logistic_probe_separates_linearly_separable_classes() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 20)
    x = rng.normal(size=(80, 6)).astype(np.float32)
    x[np.arange(80), labels] += 4.0
    linear = fit_logistic(x, labels, np.ones(80), 1e-3)
    import torch

    with torch.no_grad():
        assert (linear(torch.from_numpy(x)).argmax(dim=1).numpy() == labels).mean() > 0.95


def test_corpus_shares_set_the_draws_of_a_corpus_and_bad_shares_are_refused() -> None:
    from emotion_models.encoder_cache import WindowSet
    from emotion_models.train_head import _balanced_weights
    from emotune.errors import ConfigError

    n = 12
    corpus = np.array(["op"] * 4 + ["a"] * 4 + ["b"] * 4)
    labels = np.array([0, 1, 0, 1] * 3)
    meta = WindowSet(np.zeros((n, 1, 1, 1), np.float16), labels, np.full(n, 0.5, np.float32), corpus.copy(), corpus,
                     np.arange(n), np.zeros(n, int))  # fmt: skip
    rows = np.arange(n)
    even = _balanced_weights(meta, rows)
    assert even[corpus == "op"].sum() == pytest.approx(1 / 3)
    assert np.allclose(_balanced_weights(meta, rows, None), even)
    shared = _balanced_weights(meta, rows, {"op": 0.6})
    assert shared[corpus == "op"].sum() == pytest.approx(0.6) and shared[corpus == "a"].sum() == pytest.approx(0.2)
    for bad in ({"op": 1.0}, {"op": 0.0}, {"op": 0.7, "a": 0.5}):
        with pytest.raises(ConfigError, match="corpus_shares"):
            _balanced_weights(meta, rows, bad)


def test_mean_std_pooling_is_per_layer_mean_then_std() -> None:
    from emotion_models.finetune_probe import mean_std_pooled

    rng = np.random.default_rng(1)
    states = rng.normal(size=(5, 3, 4, 2)).astype(np.float16)
    out = mean_std_pooled(states, chunk=2)  # chunks must not change the result
    x = states.astype(np.float32)
    assert out.shape == (5, 3 * 2 * 2)
    expected = np.concatenate([x.mean(axis=2), x.std(axis=2)], axis=2).reshape(5, -1)
    assert np.allclose(out, expected)
    assert np.allclose(out.reshape(5, 3, 4)[:, 1, 2:], x[:, 1].std(axis=1))  # layer 1's std follows its mean


def test_layer_subsets_cover_the_named_layers() -> None:
    from emotion_models.finetune_probe import LAYER_SUBSETS, layer_rows

    assert layer_rows(7, "all") == list(range(7))
    assert layer_rows(7, "lower") == [0, 1, 2, 3] and layer_rows(7, "upper") == [3, 4, 5, 6]
    assert layer_rows(7, "middle") == [2, 3, 4]
    assert all(layer_rows(13, name) for name in LAYER_SUBSETS)
    with pytest.raises(ValueError):
        layer_rows(7, "top")


def test_windows_go_to_the_clip_their_centre_falls_in() -> None:
    from emotion_models.finetune_probe import clip_ids

    # stream 0: clips of 3.0 s and 2.5 s (+ 0.25-s gaps: the second starts at 3.25 s); stream 1: one clip
    stream = np.array([0, 0, 0, 0, 1, 1, 2])
    position = np.array([0, 1, 2, 3, 0, 1, 0])  # centres 1, 2, 3, 4 s; stream 1 centres 1, 2 s
    ids = clip_ids(stream, position, {0: [3.0, 2.5], 1: [4.0]})
    assert ids.tolist() == [0, 0, 0, 1, 1000, 1000, -1]  # centre 3.0 s: still the first clip; stream 2 unknown


def test_the_clip_score_averages_window_probabilities() -> None:
    from emotion_models.finetune_probe import clip_score

    labels = np.array([0, 0, 0, 1, 1])
    clips = np.array([7, 7, 7, 8, 8])
    probs = np.array([[0.9, 0.1, 0, 0], [0.2, 0.8, 0, 0], [0.3, 0.7, 0, 0],  # clip 7: mean 0.47 / 0.53 -> class 1
                      [0.4, 0.6, 0, 0], [0.6, 0.4, 0, 0]])  # clip 8: tie at 0.5 -> first class (0)
    s = clip_score(labels, probs, clips)
    assert s["clips"] == 2 and s["recall"]["neutral"] == 0.0 and s["ua"] == pytest.approx(0.0)
    probs[1] = [0.9, 0.1, 0, 0]  # clip 7 now averages to class 0
    probs[4] = [0.3, 0.7, 0, 0]  # clip 8 to class 1
    assert clip_score(labels, probs, clips)["ua"] == pytest.approx(1.0)


def test_the_blend_weights_the_head() -> None:
    from emotion_models.finetune_probe import ENSEMBLE_WEIGHTS, blend

    head, probe = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    assert np.allclose(blend(head, probe, 0.75), [[0.75, 0.25]])
    assert np.allclose(blend(head, probe, 1.0), head) and np.allclose(blend(head, probe, 0.0), probe)
    assert ENSEMBLE_WEIGHTS[0] == 1.0  # a tie keeps today's head alone


def _synthetic_operator(labels_of_held: np.ndarray | None = None) -> tuple[object, object]:
    """4 speakers x 4 classes x 6 windows; the class shows only in hidden state 2 (of 3)."""
    from emotion_models.encoder_cache import WindowSet
    from emotion_models.finetune_probe import Folds
    from emotion_models.train_head import TrainingData

    rng = np.random.default_rng(3)
    speakers = np.repeat(["s1", "s2", "s3", "s4"], 24)
    labels = np.tile(np.repeat(np.arange(4), 6), 4)
    states = rng.normal(size=(96, 3, 2, 4)).astype(np.float32)
    states[np.arange(96), 2, :, labels] += 3.0
    if labels_of_held is not None:
        labels = labels.copy()
        labels[speakers == "s4"] = labels_of_held
    n = len(labels)
    windows = {c: WindowSet(states.astype(np.float16), labels, np.full(n, 0.5, np.float32), speakers, np.full(n, "op"),
                            np.arange(n), np.zeros(n, int)) for c in ("clean", "telephone")}  # fmt: skip
    data = TrainingData(windows)
    return data, Folds(data, "op")


def test_the_layer_variant_learns_from_the_training_speakers_and_the_held_out_one_chooses_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import emotion_models.finetune_probe as fp
    from emotion_models.finetune_probe import _layers_variant, score

    monkeypatch.setattr(fp, "L2_GRID", (1.0,))  # 4 subsets x 1 L2: a few seconds
    data, folds = _synthetic_operator()
    outer = _layers_variant(folds, {c: data.windows[c].pooled for c in ("clean", "telephone")})  # type: ignore[attr-defined]
    probs, info = outer(["s1", "s2", "s3"], "s4")
    labels = data.meta.label[folds.rows(["s4"])]  # type: ignore[attr-defined]
    assert score(labels, probs["telephone"].argmax(axis=1))["ua"] > 0.9
    assert 2 in info["chosen"]["layer_indices"]
    scrambled = np.random.default_rng(5).permutation(labels)
    data2, folds2 = _synthetic_operator(scrambled)
    _, info2 = _layers_variant(folds2, {c: data2.windows[c].pooled for c in ("clean", "telephone")})(["s1", "s2", "s3"], "s4")  # type: ignore[attr-defined]
    assert info2["chosen"] == info["chosen"] and info2["inner_telephone_ua"] == info["inner_telephone_ua"]


def test_the_chosen_variant_is_picked_by_the_training_speakers_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import emotion_models.finetune_probe as fp
    from emotion_models.finetune_probe import _chosen_variant, mean_std_pooled, score

    monkeypatch.setattr(fp, "PROBE_GRID", [("mean_std", "all", 1.0), ("mean", "all", 1.0), ("mean", "lower", 1.0)])
    monkeypatch.setattr(fp, "LAYER_SUBSETS", ("all", "lower"))
    # The head fine-tune is exercised in test_train_head; here it stands for a candidate that says one class.
    monkeypatch.setattr(fp, "train_head", lambda *a, **k: {"_head": None, "_spec": None})
    monkeypatch.setattr(fp, "_predictions", lambda head, spec, data, rows, t: {c: np.tile([1.0, 0, 0, 0], (len(rows), 1)) for c in ("clean", "telephone")})
    channels = ("clean", "telephone")

    def outer_of(data: object, folds: object) -> tuple[dict[str, np.ndarray], dict[str, object]]:
        pooled = {c: data.windows[c].pooled for c in channels}  # type: ignore[attr-defined]
        meanstd = {c: mean_std_pooled(data.windows[c].states) for c in channels}  # type: ignore[attr-defined]
        return _chosen_variant(folds, (None, None, 1.0), {}, pooled, meanstd)(["s1", "s2", "s3"], "s4")  # type: ignore[arg-type]

    data, folds = _synthetic_operator()
    probs, info = outer_of(data, folds)
    assert info["chosen"]["variant"] in ("probe_meanstd", "probe_layers")  # type: ignore[index]
    assert info["inner_best_per_variant"]["head_finetune"] == 0.25  # type: ignore[index]
    labels = data.meta.label[folds.rows(["s4"])]  # type: ignore[attr-defined]
    assert score(labels, probs["telephone"].argmax(axis=1))["ua"] > 0.9
    data2, folds2 = _synthetic_operator(np.random.default_rng(5).permutation(labels))
    _, info2 = outer_of(data2, folds2)
    assert info2["chosen"] == info["chosen"] and info2["inner_telephone_ua"] == info["inner_telephone_ua"]
