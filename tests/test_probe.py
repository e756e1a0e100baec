"""The linear probe as a shippable head: same features in training and inference, ONNX parity, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from emotion_models.probe import ProbeConfig, fit_probe, layer_rows, probe_features, window_features


def _states(n: int = 64, layers: int = 5, frames: int = 10, dim: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Windows whose class shows in layer 3's mean; float16 as the encoder cache stores them."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 4
    states = rng.normal(size=(n, layers, frames, dim)).astype(np.float32)
    states[np.arange(n), 3, :, labels] += 4.0
    return states.astype(np.float16), labels


@pytest.mark.parametrize("statistics", ["mean", "mean_std"])
def test_training_features_are_the_inference_features(statistics: str) -> None:
    states, _ = _states()
    cached = window_features(states, [1, 3], statistics)
    live = probe_features(torch.from_numpy(states.astype(np.float32)), torch.zeros(len(states), 5, 8), [1, 3], statistics).numpy()
    assert cached.shape == (64, 2 * 8 * (2 if statistics == "mean_std" else 1))
    np.testing.assert_array_equal(cached, live.astype(np.float32))
    if statistics == "mean_std":  # per layer: the mean over frames, then the population std
        x = states.astype(np.float32)[:, 3]
        np.testing.assert_allclose(cached[:, 16:24], x.mean(axis=1), atol=1e-6)
        np.testing.assert_allclose(cached[:, 24:32], x.std(axis=1), atol=1e-5)


def test_the_probe_learns_exports_with_parity_and_runs_in_the_torch_free_runtime(tmp_path: Path) -> None:
    from emotion_models.head import load_head, save_head
    from emotune.errors import ModelError
    from export_onnx.head import export_head

    states, labels = _states()
    rows = layer_rows(5, "upper")
    feats = window_features(states, rows, "mean_std")
    probe = fit_probe(feats[:48], labels[:48], np.full(48, 1 / 48), ProbeConfig(5, 8, rows, "mean_std", 0.1))
    with torch.no_grad():
        logits, arousal = probe(torch.from_numpy(states[48:].astype(np.float32)), torch.zeros(16, 5, 8))
    assert (logits.argmax(dim=1).numpy() == labels[48:]).mean() > 0.9
    assert ((arousal >= 0) & (arousal <= 1)).all()
    parity = export_head(probe, tmp_path / "head.onnx", states[:16].astype(np.float32))
    assert parity["max_abs_diff"] <= 1e-4 and parity["real_states"]
    # The runtime's own session on the exported graph gives the probe's classes.
    from emotion_runtime.files import open_session

    session = open_session(tmp_path / "head.onnx", 1)
    got = [int(np.argmax(session.run(None, {"states": s[None].astype(np.float32), "offset": np.zeros((1, 5, 8), np.float32)})[0]))
           for s in states[48:]]  # fmt: skip
    assert got == logits.argmax(dim=1).tolist()
    save_head(probe, tmp_path / "head.ckpt", {"base_model": "models/emotune-ser-v2-wb"})
    with pytest.raises(ModelError, match="linear_probe.*fine-tune from models/emotune-ser-v2-wb"):
        load_head(tmp_path / "head.ckpt")


def test_unknown_statistics_and_layers_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown statistics"):
        probe_features(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 4), [0], "median")
    with pytest.raises(ValueError, match="unknown layer subset"):
        layer_rows(7, "top")


def test_the_candidate_scores_what_the_shipped_graph_computes() -> None:
    """The candidate's own scoring (cached features) and ``evaluate`` (the head's inputs as the runtime
    builds them: states and the spec's offsets) agree, at a base whose global mean is far from zero."""
    from emotion_models.encoder_cache import WindowSet
    from emotion_models.finetune_v2 import ProbeCandidate
    from emotion_models.train_head import TrainingData, evaluate
    from emotion_runtime.adaptation import AdaptationSpec

    states, labels = _states(n=96)
    states = (states.astype(np.float32) + 7.0).astype(np.float16)
    speakers = np.repeat(["a", "b", "c", "d"], 24)
    n = len(labels)
    windows = {c: WindowSet(states, labels, np.full(n, 0.5, np.float32), speakers, np.full(n, "operator"), np.repeat(np.arange(16), 6),
                            np.tile(np.arange(6), 16)) for c in ("clean", "telephone")}  # fmt: skip
    data = TrainingData(windows)
    spec = AdaptationSpec("none", 2.0, np.full((5, 8), 7.0, np.float32), np.zeros((5, 8), np.float32))
    candidate = ProbeCandidate(data, spec)
    probe = candidate.fit(("mean_std", "upper", 0.1), ["a", "b", "c"])
    own = candidate.telephone_score(probe, ["d"])
    cells = evaluate(probe, data, spec, np.flatnonzero(speakers == "d"), 1.0)
    assert own > 0.9 and cells["telephone/single"]["ua"] == own == cells["telephone/mixed"]["ua"]
    # The log-loss criterion is minus the class-balanced mean log-loss of those same windows' probabilities.
    probs = torch.softmax(probe.classify(torch.from_numpy(candidate.features("mean_std", probe.config.layer_indices)["telephone"][
        candidate.rows(["d"])])), dim=1).detach().numpy()  # fmt: skip
    held_labels = labels[speakers == "d"]
    balanced = np.mean([-np.log(probs[held_labels == c, c]).mean() for c in np.unique(held_labels)])
    assert candidate.telephone_score(probe, ["d"], "log_loss") == pytest.approx(-balanced, rel=1e-5)
    with pytest.raises(ValueError, match="probe criterion 'brier'"):
        candidate.telephone_score(probe, ["d"], "brier")


def test_the_candidate_fits_on_copies_and_scores_only_the_original_clips() -> None:
    """Speed-perturbed copies train the probe; a score never sees them (``scored``)."""
    from emotion_models.encoder_cache import WindowSet
    from emotion_models.finetune_v2 import ProbeCandidate
    from emotion_models.train_head import TrainingData
    from emotion_runtime.adaptation import AdaptationSpec

    states, labels = _states(n=96)
    speakers = np.repeat(["a", "b", "c", "d"], 24)
    n = len(labels)
    windows = {c: WindowSet(states, labels, np.full(n, 0.5, np.float32), speakers, np.full(n, "operator"), np.repeat(np.arange(16), 6),
                            np.tile(np.arange(6), 16)) for c in ("clean", "telephone")}  # fmt: skip
    original = np.tile([True, True, True, False, False, False], 16)  # the first half of each stream stands for the clips
    spec = AdaptationSpec("none", 2.0, np.zeros((5, 8), np.float32), np.zeros((5, 8), np.float32))
    candidate = ProbeCandidate(TrainingData(windows), spec, original)
    assert len(candidate.rows(["a", "b"])) == 48 and len(candidate.rows(["a", "b"], scored_only=True)) == 24
    probe = candidate.fit(("mean", "all", 0.1), ["a", "b", "c"])
    held = candidate.rows(["d"], scored_only=True)
    assert set(held) == set(np.flatnonzero((speakers == "d") & original))
    with torch.no_grad():
        logits = probe.classify(torch.from_numpy(candidate.features("mean", probe.config.layer_indices)["telephone"][held]))
    expected = np.mean([(logits.argmax(1).numpy()[labels[held] == c] == c).mean() for c in np.unique(labels[held])])
    assert candidate.telephone_score(probe, ["d"]) == pytest.approx(expected)
