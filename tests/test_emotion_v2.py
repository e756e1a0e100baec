"""The v2 model family: per-call adaptation, the head recipe, export parity, and refusal of bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from emotion_runtime.adaptation import (
    AdaptationSpec,
    CallAdaptation,
    causal_offsets,
    gated_offsets,
    speaker_share_weights,
)

ROOT = Path(__file__).resolve().parents[1]


def _spec(mode: str = "speaker_share", layers: int = 3, dim: int = 8, prior: float = 4.0) -> AdaptationSpec:
    rng = np.random.default_rng(1)
    weights = {"none": np.zeros((layers, dim)), "call_mean": np.ones((layers, dim))}.get(
        mode, rng.uniform(0, 1, (layers, dim))
    )
    return AdaptationSpec(mode, prior, rng.standard_normal((layers, dim)).astype(np.float32), weights.astype(np.float32))


@pytest.mark.parametrize("mode", ["none", "call_mean", "speaker_share"])
def test_streaming_statistics_equal_the_batch_ones(mode: str) -> None:
    spec = _spec(mode)
    means = np.random.default_rng(2).standard_normal((25, 3, 8)).astype(np.float32) * 3 + 1
    call = CallAdaptation(spec)
    streamed = np.stack([call.update(m) for m in means])
    np.testing.assert_allclose(streamed, causal_offsets(spec, means), atol=1e-5)
    assert call.windows == 25
    call.reset()
    np.testing.assert_allclose(call.update(means[0]), causal_offsets(spec, means[:1])[0], atol=1e-6)


def test_modes_mean_what_they_say() -> None:
    means = np.random.default_rng(3).standard_normal((40, 3, 8)).astype(np.float32) + 5.0
    none, full = _spec("none"), _spec("call_mean", prior=0.0)
    np.testing.assert_allclose(causal_offsets(none, means), np.broadcast_to(none.global_mean, means.shape), atol=1e-6)
    # With no prior, the full mode's last offset is the call's own mean.
    np.testing.assert_allclose(causal_offsets(full, means)[-1], means.mean(axis=0), atol=1e-4)


def _neutral_spec(prior: float = 2.0) -> AdaptationSpec:
    rng = np.random.default_rng(4)
    shape = (3, 8)
    return AdaptationSpec(
        "neutral_baseline", prior, rng.standard_normal(shape).astype(np.float32), np.ones(shape, np.float32),
        rng.standard_normal(shape).astype(np.float32), gate=0.5, neutral_index=0,
    )  # fmt: skip


def test_neutral_baseline_streaming_equals_batch_and_learns_only_from_neutral_windows() -> None:
    spec = _neutral_spec()
    rng = np.random.default_rng(5)
    means = rng.standard_normal((30, 3, 8)).astype(np.float32) * 2
    p_neutral = rng.uniform(0, 1, 30)
    call = CallAdaptation(spec)
    streamed = []
    for m, p in zip(means, p_neutral, strict=True):
        streamed.append(call.update(m))
        call.heard(np.asarray([p, 1 - p]))
    np.testing.assert_allclose(np.stack(streamed), gated_offsets(spec, means, p_neutral >= 0.5), atol=1e-5)
    assert call.windows == int((p_neutral >= 0.5).sum())
    # A caller who never sounds neutral (an angry call) is judged exactly as with no adaptation.
    angry = gated_offsets(spec, means, np.zeros(30, dtype=bool))
    np.testing.assert_allclose(angry, np.broadcast_to(spec.global_mean, means.shape), atol=1e-6)
    # A caller whose neutral voice is the corpora's neutral voice is not moved either.
    same = gated_offsets(spec, np.broadcast_to(spec.neutral_mean, means.shape).copy(), np.ones(30, dtype=bool))
    np.testing.assert_allclose(same, np.broadcast_to(spec.global_mean, means.shape), atol=1e-5)
    # The first window cannot gate itself.
    np.testing.assert_allclose(gated_offsets(spec, means[:1], np.ones(1, dtype=bool))[0], spec.global_mean, atol=1e-6)
    with pytest.raises(ValueError, match="gated_offsets"):
        causal_offsets(spec, means)


def test_training_offsets_of_a_gated_spec_need_the_labels() -> None:
    from emotion_models.train_head import offsets_for

    spec = _neutral_spec()
    means = np.random.default_rng(6).standard_normal((6, 3, 8)).astype(np.float32)
    labels = np.asarray([0, 1, 0, 0, 1, 0])  # neutral_index 0
    calls = [np.arange(6)]
    np.testing.assert_allclose(offsets_for(spec, means, calls, labels), gated_offsets(spec, means, labels == 0), atol=1e-2)
    with pytest.raises(ValueError, match="gated by the labels"):
        offsets_for(spec, means, calls)


def test_neutral_baseline_without_its_statistics_is_refused() -> None:
    with pytest.raises(ValueError, match="neutral_mean"):
        AdaptationSpec("neutral_baseline", 2.0, np.zeros((3, 8), np.float32), np.ones((3, 8), np.float32))
    with pytest.raises(ValueError, match="not one of"):
        AdaptationSpec("speaker_mean", 2.0, np.zeros((3, 8), np.float32), np.ones((3, 8), np.float32))


def test_window_statistics_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(ValueError, match="do not match"):
        CallAdaptation(_spec()).update(np.zeros((2, 8), np.float32))


def test_speaker_share_weights_separate_voice_from_emotion() -> None:
    rng = np.random.default_rng(4)
    speakers, labels, rows = [], [], []
    for s in range(6):
        voice = rng.standard_normal() * 5  # dimension 0: the speaker's voice
        for label in range(4):
            for _ in range(10):
                rows.append([voice + rng.standard_normal() * 0.1, label * 2.0 + rng.standard_normal() * 0.1])
                speakers.append(f"s{s}")
                labels.append(label)
    weights = speaker_share_weights(np.asarray(rows)[:, None, :], np.asarray(speakers), np.asarray(labels))
    assert weights[0, 0] > 0.9 and weights[0, 1] < 0.1


# -- the runtime side: a real v2 model folder on the real smart-turn encoder --------------------------

ENCODER = ROOT / "models" / "encoders" / "smart-turn-v3.2" / "encoder.onnx"
needs_encoder = pytest.mark.skipif(not ENCODER.is_file(), reason="smart-turn encoder not installed (make weights)")


@pytest.fixture(scope="module")
def v2_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A v2 folder with an untrained head: exercises export, sidecar and loading, not accuracy."""
    import torch

    from emotion_models.head import EmotionHead, HeadConfig, save_head
    from export_onnx.head import write_v2_model

    torch.manual_seed(0)
    dest = tmp_path_factory.mktemp("v2") / "model"
    head = EmotionHead(HeadConfig(layers=5, dim=384, hidden=16, attention=8), np.ones((5, 384), np.float32))
    spec = AdaptationSpec("speaker_share", 4.0, np.zeros((5, 384), np.float32), np.full((5, 384), 0.5, np.float32))
    save_head(head, dest / "head.ckpt")
    write_v2_model(dest, head, spec, encoder="smart-turn-v3.2", temperature=1.2, pool=10,
                   labels=["neutral", "happy", "sad", "angry"], trained_on=["test"])  # fmt: skip
    return dest


def _speech_like(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (0.3 * envelope * np.sin(2 * np.pi * (140 + 40 * np.sin(2 * np.pi * 0.5 * t)) * t)).astype(np.float32)


@needs_encoder
def test_v2_folder_streams_events_and_adapts_per_call(v2_model: Path) -> None:
    from emotion_runtime import EmotionModel, EmotionStream, StreamHub
    from emotion_runtime.audio import pcm16_encode

    model = EmotionModel.load(v2_model)
    assert model.labels == ["neutral", "happy", "sad", "angry"]
    sidecar = json.loads((v2_model / "emotion.json").read_text())
    assert sidecar["parity"]["max_abs_diff"] <= 1e-4
    assert set(sidecar["licence"]) == {"head", "encoder", "code"}
    audio = pcm16_encode(_speech_like(4.0))
    stream = EmotionStream(model, encoding="pcm16", sample_rate=16000)
    events = [e for start in range(0, len(audio), 640) for e in stream.push(audio[start : start + 640])]
    assert len(events) == 3  # windows end at 2, 3 and 4 s
    assert stream.call_state.windows == 3
    assert all(abs(sum(e.probabilities.values()) - 1) < 1e-3 for e in events)
    # The hub gives the same events as the stream on its own (same per-call statistics, in order).
    hub, other = StreamHub(model), EmotionStream(model, encoding="pcm16", sample_rate=16000)
    hub_events = []
    for start in range(0, len(audio), 640):
        hub.feed(other, audio[start : start + 640])
        hub_events.extend(event for _, event in hub.flush())
    assert [e.probabilities for e in hub_events] == [e.probabilities for e in events]


@needs_encoder
def test_neutral_baseline_folder_loads_and_gates_the_call_by_its_own_scores(tmp_path: Path) -> None:
    """A window joins the call's statistics exactly when its neutral score passes the gate, and the
    statistics then move later windows' scores (never the first: a window cannot gate itself)."""
    import torch

    from emotion_models.head import EmotionHead, HeadConfig
    from emotion_runtime import EmotionModel, EmotionStream
    from emotion_runtime.audio import pcm16_encode
    from export_onnx.head import write_v2_model

    torch.manual_seed(0)
    head = EmotionHead(HeadConfig(layers=5, dim=384, hidden=16, attention=8), np.ones((5, 384), np.float32))
    shape = (5, 384)
    neutral_mean = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    audio = pcm16_encode(_speech_like(6.0))
    runs = {}
    for gate in (0.0, 1.0):  # every window passes / none does
        spec = AdaptationSpec("neutral_baseline", 2.0, np.zeros(shape, np.float32), np.ones(shape, np.float32),
                              neutral_mean, gate=gate, neutral_index=0)  # fmt: skip
        folder = tmp_path / f"gate{gate}"
        write_v2_model(folder, head, spec, encoder="smart-turn-v3.2", temperature=1.0, pool=10,
                       labels=["neutral", "happy", "sad", "angry"], trained_on=["test"])  # fmt: skip
        model = EmotionModel.load(folder)
        loaded = model.adaptation  # type: ignore[attr-defined]
        assert loaded.gated and loaded.gate == gate and np.array_equal(loaded.neutral_mean, neutral_mean)
        stream = EmotionStream(model, encoding="pcm16", sample_rate=16000)
        events = [e for start in range(0, len(audio), 640) for e in stream.push(audio[start : start + 640])]
        runs[gate] = (events, stream.call_state.windows)
    (gated, n_gated), (ungated, n_ungated) = runs[0.0], runs[1.0]
    assert len(gated) == len(ungated) == 5
    assert (n_gated, n_ungated) == (5, 0)
    assert gated[0].probabilities == pytest.approx(ungated[0].probabilities, abs=1e-6)
    assert gated[-1].probabilities != pytest.approx(ungated[-1].probabilities, abs=1e-4)


@needs_encoder
def test_audio_shorter_than_a_window_waits_without_a_label(v2_model: Path) -> None:
    from emotion_runtime import EmotionModel, EmotionStream
    from emotion_runtime.audio import pcm16_encode

    stream = EmotionStream(EmotionModel.load(v2_model), encoding="pcm16", sample_rate=16000)
    audio = pcm16_encode(_speech_like(1.9))
    assert not [e for start in range(0, len(audio), 640) for e in stream.push(audio[start : start + 640])]
    assert stream.call_state.windows == 0


def _copy(v2_model: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(v2_model, dest)
    return dest


@needs_encoder
@pytest.mark.parametrize("name", ["head.onnx", "adaptation.npz"])
@pytest.mark.parametrize("damage", ["missing", "truncated", "altered"])
def test_damaged_head_files_are_refused_with_file_and_expected_sha(v2_model: Path, tmp_path: Path, name: str, damage: str) -> None:
    from emotion_runtime import EmotionModel
    from emotune.errors import ModelFileError

    folder = _copy(v2_model, tmp_path)
    target = folder / name
    data = target.read_bytes()
    if damage == "missing":
        target.unlink()
    elif damage == "truncated":
        target.write_bytes(data[: len(data) // 2])
    else:
        target.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    expected = json.loads((folder / "emotion.json").read_text())["files"]["head" if name == "head.onnx" else "adaptation"]["sha256"]
    with pytest.raises(ModelFileError) as info:
        EmotionModel.load(folder)
    assert name in str(info.value) and expected in str(info.value)


@needs_encoder
@pytest.mark.parametrize("damage", ["missing", "truncated", "altered"])
def test_damaged_encoder_is_refused_with_file_and_expected_sha(v2_model: Path, tmp_path: Path, damage: str) -> None:
    from emotion_runtime import EmotionModel
    from emotune.errors import ModelFileError

    folder = _copy(v2_model, tmp_path)
    encoder = tmp_path / "encoder.onnx"
    data = ENCODER.read_bytes()
    if damage == "truncated":
        encoder.write_bytes(data[: len(data) // 2])
    elif damage == "altered":
        encoder.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    sidecar = json.loads((folder / "emotion.json").read_text())
    sidecar["encoder"]["path"] = str(encoder)  # absolute: outside the project's encoder folder
    (folder / "emotion.json").write_text(json.dumps(sidecar))
    with pytest.raises(ModelFileError) as info:
        EmotionModel.load(folder)
    assert str(encoder) in str(info.value) and sidecar["encoder"]["sha256"] in str(info.value)


@needs_encoder
def test_a_sidecar_that_does_not_match_its_model_is_refused(v2_model: Path, tmp_path: Path) -> None:
    from emotion_runtime import EmotionModel
    from emotune.errors import SidecarError

    folder = _copy(v2_model, tmp_path)
    sidecar = json.loads((folder / "emotion.json").read_text())
    sidecar["encoder"]["dim"] = 512  # says Whisper-base, the statistics and encoder are smart-turn's
    (folder / "emotion.json").write_text(json.dumps(sidecar))
    with pytest.raises(SidecarError, match="do not match"):
        EmotionModel.load(folder)
    del sidecar["adaptation"]
    (folder / "emotion.json").write_text(json.dumps(sidecar))
    with pytest.raises(SidecarError):
        EmotionModel.load(folder)


# -- a per-turn label that escalation can trust --------------------------------------------------------


def _event(start: float, probs: dict[str, float]) -> dict[str, object]:
    return {"start_s": start, "end_s": start + 2.0, "window_probabilities": probs, "arousal": 0.5, "valence": 0.0}


def test_a_turn_is_the_mean_of_its_windows_not_the_last_one() -> None:
    from emotion_runtime.turns import turn_reading

    angry, weak = {"neutral": 0.2, "angry": 0.8}, {"neutral": 0.6, "angry": 0.4}
    events = [_event(0.0, {"neutral": 0.9, "angry": 0.1}), _event(3.0, angry), _event(4.0, angry), _event(5.0, weak)]
    reading = turn_reading(events, 3.5, 7.5)  # centres 4, 5, 6 are inside; the 1-s one belongs to an earlier turn
    assert reading is not None and reading["windows"] == 3 and reading["label"] == "angry"
    assert reading["confidence"] == pytest.approx((0.8 + 0.8 + 0.4) / 3, abs=1e-4)
    assert turn_reading(events, 20.0, 21.0) is None  # too short for a window of its own: no reading


def test_accumulated_evidence_survives_one_weak_turn_and_resets_on_a_calm_one() -> None:
    from emotune.escalation import StreakRule

    strict, evidence = StreakRule(("angry",), 3, 0.5), StreakRule(("angry",), 3, 0.5, 0.35)
    measured = [("angry", 0.61), ("neutral", 0.53, {"angry": 0.47, "neutral": 0.53}), ("angry", 0.63)]
    assert not strict.due(measured) and evidence.due(measured)
    assert not evidence.due([*measured[:2], ("neutral", 0.9, {"angry": 0.05, "neutral": 0.9}), ("angry", 0.63)])
    assert not evidence.due([("angry", 0.4), ("angry", 0.4), ("angry", 0.45)])  # never clearly angry
    with pytest.raises(ValueError):
        StreakRule(("angry",), 3, 0.5, 0.6)  # a floor above the bar


def _synthetic_corpora(shifted: bool) -> object:
    """Three class corpora of three speakers each; in each corpus a class lights up its own direction
    (``shifted``: a corpus-specific one, so what one corpus teaches is wrong on the others)."""
    from emotion_models.encoder_cache import WindowSet
    from emotion_models.train_head import TrainingData

    rng = np.random.default_rng(0)
    states, labels, speakers, corpora, streams, positions = [], [], [], [], [], []
    for c, corpus in enumerate(("a", "b", "c")):
        for s in range(3):
            for label in range(4):
                direction = (label + (c if shifted else 0)) % 4
                for position in range(6):
                    x = rng.normal(0.0, 1.0, (2, 10, 8))
                    x[:, :, direction] += 3.0
                    states.append(x)
                    labels.append(label)
                    speakers.append(f"{corpus}_{s}")
                    corpora.append(corpus)
                    streams.append(len({(sp, lb) for sp, lb in zip(speakers, labels, strict=True)}) - 1)
                    positions.append(position)
    n = len(labels)
    ws = WindowSet(np.stack(states).astype(np.float16), np.asarray(labels), np.full(n, 0.5, np.float32),
                   np.asarray(speakers), np.asarray(corpora), np.asarray(streams), np.asarray(positions))  # fmt: skip
    return TrainingData({"clean": ws, "telephone": ws})


_TINY_RECIPE = {
    "seed": 3, "threads": 1, "progress": False, "adaptation": "none", "prior_windows": 4.0, "dev_share": 0.34,
    "number_of_epochs": 2, "draws_per_epoch": 256, "batch_size": 32, "lr": 0.01, "weight_decay": 0.0,
    "label_smoothing": 0.0, "arousal_weight": 0.0, "state_noise": 0.0, "hidden": 16, "dropout": 0.0,
}  # fmt: skip


def test_temperature_from_held_out_corpora_learns_the_unheard_corpus_confidence() -> None:
    from emotion_models.train_head import run

    data = _synthetic_corpora(shifted=True)
    rows = np.arange(len(data.meta.label))  # type: ignore[attr-defined]
    in_corpus = run(dict(_TINY_RECIPE), data, rows, None)  # type: ignore[arg-type]
    across = run({**_TINY_RECIPE, "temperature_from": "held_out_corpora"}, data, rows, None)  # type: ignore[arg-type]
    assert in_corpus["temperature_from"] == "dev_speakers" and "temperature_corpora" not in in_corpus
    assert across["temperature_corpora"] == ["a", "b", "c"]
    # Development speakers of the same corpora are easy; a corpus the head never heard is not: the
    # temperature fitted on the unheard corpora flattens the probabilities far more.
    assert in_corpus["temperature"] < 1.5 < across["temperature"]


def test_an_unknown_temperature_source_is_refused_before_training() -> None:
    from emotion_models.train_head import run
    from emotune.errors import ConfigError

    data = _synthetic_corpora(shifted=False)
    with pytest.raises(ConfigError, match="temperature_from"):
        run({**_TINY_RECIPE, "temperature_from": "test_set"}, data, np.arange(10), None)  # type: ignore[arg-type]


def test_the_dev_speaker_temperature_is_the_one_run_fits() -> None:
    """One helper fits the recipe's default temperature for run, escalation_choice and ensemble_v2."""
    from emotion_models.train_head import dev_speaker_temperature, labelled_dev_rows, run

    data = _synthetic_corpora(shifted=True)
    meta = data.meta  # type: ignore[attr-defined]
    train_rows = np.flatnonzero(meta.corpus != "c")
    result = run(dict(_TINY_RECIPE), data, train_rows, None)  # type: ignore[arg-type]
    dev = labelled_dev_rows(meta, train_rows, result["dev_speakers"])
    assert len(dev) and set(meta.speaker[dev].tolist()) == set(result["dev_speakers"])
    assert not np.isin(dev, np.flatnonzero(meta.corpus == "c")).any()
    fitted = dev_speaker_temperature(result["_head"], result["_spec"], data, train_rows, result["dev_speakers"], 3)  # type: ignore[arg-type]
    assert round(fitted, 3) == result["temperature"]


def test_speed_copies_follow_the_originals_train_and_never_score(tmp_path: Path) -> None:
    """``with_speed_copies``: each copy is its own stream after the originals, marked by ``speed``; a cache
    written before the field existed loads as all original; the dev windows that pick the epoch and the
    temperature are originals only."""
    from emotion_models.encoder_cache import Stream, WindowSet, load_window_set, with_speed_copies
    from emotion_models.train_head import labelled_dev_rows

    wav = np.sin(np.arange(32000) / 10.0).astype(np.float32)
    streams = with_speed_copies([Stream(wav, "angry", 0.9, "s1", "c"), Stream(wav, "sad", 0.2, "s1", "c")], [1.1, 1.0, 0.9])
    assert [st.speed for st in streams] == [1.0, 1.0, 0.9, 0.9, 1.1, 1.1]
    assert [st.label for st in streams] == ["angry", "sad"] * 3
    assert len(streams[2].wav) == round(32000 / 0.9) and len(streams[4].wav) == round(32000 / 1.1)
    data = _synthetic_corpora(shifted=False)
    ws = data.meta  # type: ignore[attr-defined]
    old = tmp_path / "old.npz"
    np.savez(old, **{f: getattr(ws, f) for f in WindowSet.__dataclass_fields__ if f != "speed"})
    assert load_window_set(old).original.all()
    speed = np.where(np.arange(len(ws.label)) % 2 == 0, 1.0, 0.9).astype(np.float32)
    copied = WindowSet(*(getattr(ws, f) for f in WindowSet.__dataclass_fields__ if f != "speed"), speed)
    rows = np.arange(len(ws.label))
    dev = labelled_dev_rows(copied, rows, np.unique(copied.speaker)[:2])
    assert len(dev) and copied.original[dev].all()
    assert len(labelled_dev_rows(ws, rows, np.unique(ws.speaker)[:2])) == 2 * len(dev)


def test_the_corpus_adversary_reverses_its_gradient_and_leaves_the_head_unchanged() -> None:
    """``corpus_adversary_weight``: the reversal passes the embedding through and sends back minus the
    weight times the gradient; training with it changes the head (the adversary acts) but not its
    parameters' names and shapes (the classifier is training-only: the exported head is the same graph)."""
    import torch

    from emotion_models.train_head import _ReverseGradient, run

    z = torch.ones(3, 4, requires_grad=True)
    out = _ReverseGradient.apply(z, 0.3)
    assert torch.equal(out, z)
    (out * torch.arange(4.0)).sum().backward()
    assert torch.allclose(z.grad, -0.3 * torch.arange(4.0).expand(3, 4))

    data = _synthetic_corpora(shifted=False)
    rows = np.arange(len(data.meta.label))  # type: ignore[attr-defined]
    plain = run(dict(_TINY_RECIPE), data, rows, None)["_head"]  # type: ignore[arg-type]
    adversarial = run({**_TINY_RECIPE, "corpus_adversary_weight": 1.0}, data, rows, None)["_head"]  # type: ignore[arg-type]
    plain_state, adversarial_state = plain.state_dict(), adversarial.state_dict()
    assert {k: v.shape for k, v in plain_state.items()} == {k: v.shape for k, v in adversarial_state.items()}
    assert not all(torch.equal(plain_state[k], adversarial_state[k]) for k in plain_state)


def test_mixup_loss_at_share_one_is_the_plain_loss_and_training_with_it_runs() -> None:
    """``mixup_alpha``: with every share at 1 (no partner's part) the mixed loss is the plain one, BAVED-like
    draws without a class label included; a tiny run with mixup still learns the classes."""
    import speechbrain as sb
    import torch

    from emotion_models.head import EmotionHead, HeadConfig
    from emotion_models.train_head import HeadBrain, run

    recipe = {**_TINY_RECIPE, "label_smoothing": 0.1, "arousal_weight": 0.5}
    brain = HeadBrain(modules={"head": EmotionHead(HeadConfig(layers=2, dim=8, hidden=16))}, hparams=recipe,
                      run_opts={"device": "cpu", "noprogressbar": True})
    torch.manual_seed(0)
    logits, arousal = torch.randn(6, 4), torch.rand(6)
    labels = torch.tensor([0, 1, -1, 3, 2, -1])
    arousal_target = torch.tensor([0.2, 0.8, 0.5, float("nan"), 0.9, 0.1])
    brain._corpus_logits, brain._mix = None, None
    batch = [torch.zeros(1), torch.zeros(1), labels, arousal_target]
    plain = brain.compute_objectives((logits, arousal), batch, sb.Stage.TRAIN)
    import torch.nn.functional as F

    known, level = labels >= 0, ~torch.isnan(arousal_target)
    expected = F.cross_entropy(logits[known], labels[known], label_smoothing=0.1) + 0.5 * F.mse_loss(
        arousal[level], arousal_target[level]
    )
    assert torch.allclose(plain, expected)  # means over the draws that carry each target
    brain._mix = (torch.tensor([5, 4, 3, 2, 1, 0]), torch.ones(6))
    mixed = brain.compute_objectives((logits, arousal), batch, sb.Stage.TRAIN)
    assert torch.allclose(plain, mixed)

    data = _synthetic_corpora(shifted=False)
    rows = np.arange(len(data.meta.label))  # type: ignore[attr-defined]
    result = run({**_TINY_RECIPE, "mixup_alpha": 0.4, "number_of_epochs": 3}, data, rows, rows)  # type: ignore[arg-type]
    assert result["test"]["clean/mixed"]["ua"] > 0.5


def test_auc_of_the_arousal_diagnostic_ranks_ties_half_and_sees_an_inverted_score() -> None:
    from emotion_models.arousal_transfer import auc

    positive = np.array([True, True, False, False])
    assert auc(np.array([0.9, 0.8, 0.2, 0.1]), positive) == 1.0
    assert auc(np.array([0.1, 0.2, 0.8, 0.9]), positive) == 0.0  # ranked the wrong way round
    assert auc(np.full(4, 0.5), positive) == 0.5
    assert auc(np.array([0.9, 0.3, 0.3, 0.1]), positive) == 0.875
    with pytest.raises(ValueError, match="positives and negatives"):
        auc(np.array([0.1, 0.2]), np.array([True, True]))
