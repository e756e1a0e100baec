"""Tests of the emotion model recipe: features, network, checkpoints, data prep, training, fine-tuning.

Everything runs on data generated here (no ../shared): synthetic "emotions" are harmonic tones
whose pitch, loudness and modulation differ per class, which a working pipeline learns quickly.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from emotion_models.augment import speed_perturb, telephone, trim_silence
from emotion_models.evaluate import metrics
from emotion_models.features_torch import TorchFbank
from emotion_models.labels import apply_label_map
from emotion_models.model import EmotionNet, EmotionNetConfig, load_checkpoint, save_checkpoint
from emotion_models.prepare import build_manifest, read_manifest, read_source, write_manifest
from emotion_runtime.features import fbank
from emotune.errors import ConfigError, DataError, ModelFileError

CLASSES = ["neutral", "happy", "sad", "angry"]
# (fundamental Hz, amplitude, vibrato Hz) per synthetic class
VOICES = {"neutral": (140, 0.1, 0.0), "happy": (260, 0.2, 6.0), "sad": (110, 0.03, 0.0), "angry": (200, 0.5, 12.0)}


def synth(label: str, seconds: float = 1.2, rate: int = 16000, seed: int = 0) -> np.ndarray:
    base_f0, amp, vibrato = VOICES[label]
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = base_f0 * (1 + rng.uniform(-0.05, 0.05))
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * vibrato * t))) / rate
    wav = sum(np.sin(k * phase) / k for k in range(1, 6))
    wav = amp * wav / np.abs(wav).max() + 0.002 * rng.standard_normal(len(t))
    return wav.astype(np.float32)


def write_clip(path: Path, label: str, rate: int = 16000, seed: int = 0, seconds: float = 1.2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, synth(label, seconds, rate, seed), rate)
    return path


def write_csv(path: Path, rows: list[dict[str, str]], fields: tuple[str, ...] = ("path", "label", "speaker")) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in fields})
    return path


def synthetic_corpus(root: Path, speakers: int = 4, per_class: int = 3, rate: int = 16000) -> Path:
    rows = []
    for s in range(speakers):
        for label in CLASSES:
            for i in range(per_class):
                name = f"spk{s}_{label}_{i}.wav"
                write_clip(root / "audio" / name, label, rate, seed=s * 100 + i)
                rows.append({"path": f"audio/{name}", "label": label, "speaker": f"spk{s}"})
    return write_csv(root / "manifest.csv", rows)


# ---------------------------------------------------------------------------- features


@pytest.mark.parametrize("n_samples", [400, 16000, 32123])
def test_torch_fbank_equals_runtime_fbank(n_samples: int) -> None:
    signal = np.random.default_rng(n_samples).uniform(-0.5, 0.5, n_samples).astype(np.float32)
    expected = fbank(signal)
    got = TorchFbank()(torch.from_numpy(signal))[0].numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-3


def test_torch_fbank_short_and_bad_input() -> None:
    assert TorchFbank()(torch.zeros(2, 100)).shape == (2, 0, 64)
    with pytest.raises(ValueError, match="batch, samples"):
        TorchFbank()(torch.zeros(1, 2, 400))


# ---------------------------------------------------------------------------- network


def test_emotion_net_shapes_and_ranges() -> None:
    model = EmotionNet(EmotionNetConfig(channels=32, n_blocks=2, se_channels=8, attention_channels=16)).eval()
    for batch, frames in [(1, 98), (3, 298)]:
        logits, arousal, valence = model(torch.randn(batch, frames, 64) * 3)
        assert logits.shape == (batch, 4) and arousal.shape == (batch,) and valence.shape == (batch,)
        assert bool(((arousal >= 0) & (arousal <= 1)).all()) and bool(((valence >= -1) & (valence <= 1)).all())


def test_per_window_normalisation_makes_level_irrelevant() -> None:
    # A louder (log-mel + constant) or differently scaled window must give the same output.
    model = EmotionNet(EmotionNetConfig(channels=32, se_channels=8, attention_channels=16)).eval()
    feats = torch.randn(2, 150, 64)
    with torch.inference_mode():
        reference = model(feats)[0]
        louder = model(feats + 4.0)[0]
        scaled = model(feats * 2.0 - 1.0)[0]
    assert torch.allclose(reference, louder, atol=1e-4)
    assert torch.allclose(reference, scaled, atol=1e-4)


def test_bad_model_config() -> None:
    with pytest.raises(ValueError, match="n_blocks"):
        EmotionNetConfig(n_blocks=5)
    with pytest.raises(ValueError, match="res2_scale"):
        EmotionNetConfig(channels=30, res2_scale=4)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = EmotionNet(EmotionNetConfig(channels=32, se_channels=8, attention_channels=16)).eval()
    meta = {"labels": CLASSES, "licence": "test"}
    path = save_checkpoint(tmp_path / "m.ckpt", model, meta)
    loaded, loaded_meta = load_checkpoint(path)
    feats = torch.randn(2, 120, 64)
    with torch.inference_mode():
        assert torch.equal(model(feats)[0], loaded(feats)[0])
    assert loaded_meta["labels"] == CLASSES and loaded_meta["model_config"]["channels"] == 32
    assert [p.name for p in tmp_path.iterdir()] == ["m.ckpt"]  # no temp file left behind


def test_checkpoint_errors(tmp_path: Path) -> None:
    model = EmotionNet(EmotionNetConfig(channels=32, se_channels=8, attention_channels=16))
    with pytest.raises(ValueError, match="labels"):
        save_checkpoint(tmp_path / "m.ckpt", model, {"labels": ["a", "b"]})
    with pytest.raises(ModelFileError, match="not found"):
        load_checkpoint(tmp_path / "missing.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match="cannot read"):
        load_checkpoint(tmp_path / "junk.ckpt")
    torch.save({"format": "something-else"}, tmp_path / "other.ckpt")
    with pytest.raises(ModelFileError, match="not an Emotune"):
        load_checkpoint(tmp_path / "other.ckpt")


# ---------------------------------------------------------------------------- augmentation + metrics


def test_telephone_channel_removes_wideband_energy() -> None:
    t = np.arange(16000) / 16000
    wav = torch.from_numpy((0.3 * np.sin(2 * np.pi * 1000 * t) + 0.3 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32))
    out = telephone(wav.unsqueeze(0))[0, :16000].numpy()
    spectrum = np.abs(np.fft.rfft(out))
    assert spectrum[6000] < 0.01 * spectrum[1000]  # 1 Hz bins: the 6 kHz tone is gone
    assert spectrum[1000] > 0.5 * np.abs(np.fft.rfft(wav.numpy()))[1000]


def test_speed_perturb_and_trim() -> None:
    wav = synth("happy", 1.0)
    assert len(speed_perturb(wav, 1.1)) == round(16000 / 1.1)
    padded = np.concatenate([np.zeros(16000, np.float32), wav, np.zeros(8000, np.float32)])
    trimmed = trim_silence(padded)
    assert 16000 <= len(trimmed) <= 16000 + 2 * 1600 + 800


def test_metrics_unweighted_vs_weighted() -> None:
    # class 0: 8/10 right, class 1: 0/2 right -> WA 8/12, UA (0.8 + 0) / 2
    y_true = [0] * 10 + [1] * 2
    y_pred = [0] * 8 + [1] * 2 + [0] * 2
    m = metrics(y_true, y_pred, ["a", "b"])
    assert m["wa"] == pytest.approx(8 / 12) and m["ua"] == pytest.approx(0.4)
    assert m["confusion"] == [[8, 2], [2, 0]]


# ---------------------------------------------------------------------------- data preparation


def test_label_map_rules() -> None:
    assert apply_label_map("Calm", {"calm": "neutral"}, CLASSES) == "neutral"
    assert apply_label_map("angry", {"angry": None}, CLASSES) is None
    assert apply_label_map("fearful", {}, CLASSES) is None
    assert apply_label_map("exc", {"exc": "happy"}, CLASSES) == "happy"


def test_ravdess_original_layout(tmp_path: Path) -> None:
    actor = tmp_path / "Actor_07"
    for emotion in ("01", "02", "03", "04", "05", "06"):
        write_clip(actor / f"03-01-{emotion}-01-01-01-07.wav", "neutral")
    write_clip(actor / "03-02-05-01-01-01-07.wav", "angry")  # song: skipped
    (actor / "notes.txt").write_text("not audio")
    rows = build_manifest([{"kind": "ravdess_original", "path": tmp_path}], CLASSES, min_examples_per_class=1)
    labels = sorted(r.label for r in rows)
    assert labels == ["angry", "happy", "neutral", "neutral", "sad"]  # calm -> neutral, fearful dropped
    assert {r.speaker for r in rows} == {"ravdess_07"} and all(r.duration == pytest.approx(1.2) for r in rows)


def test_emodb_original_and_prepared_layouts(tmp_path: Path) -> None:
    for name, label in [("03a01Wa", "angry"), ("03a01Fa", "happy"), ("08b02Tc", "sad"), ("08b02Nc", "neutral"),
                        ("08b02Lc", "neutral")]:  # fmt: skip
        write_clip(tmp_path / "orig" / "wav" / f"{name}.wav", label)
    clips = read_source({"kind": "emodb", "path": tmp_path / "orig"})
    assert sorted((c.speaker, c.label) for c in clips) == [
        ("emodb_03", "angry"), ("emodb_03", "happy"), ("emodb_08", "boredom"),
        ("emodb_08", "neutral"), ("emodb_08", "sad"),
    ]  # fmt: skip
    prepared = tmp_path / "prep"
    write_clip(prepared / "x.flac", "angry")
    write_csv(prepared / "manifest.csv", [{"path": "x.flac", "label": "angry", "speaker": "emodb_03"}])
    assert read_source({"kind": "emodb", "path": prepared})[0].path == prepared / "x.flac"


def test_crema_d_layout(tmp_path: Path) -> None:
    for name in ("1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1002_DFA_SAD_LO", "1002_DFA_NEU_XX", "1002_DFA_DIS_XX"):
        write_clip(tmp_path / "AudioWAV" / f"{name}.wav", "neutral")
    rows = build_manifest([{"kind": "crema_d", "path": tmp_path}], CLASSES, min_examples_per_class=1)
    assert sorted((r.speaker, r.label) for r in rows) == [
        ("crema_1001", "angry"), ("crema_1001", "happy"), ("crema_1002", "neutral"), ("crema_1002", "sad"),
    ]  # fmt: skip


def test_iemocap_layout_with_label_map(tmp_path: Path) -> None:
    session = tmp_path / "Session1"
    lines = [
        "% header line",
        "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]",
        "[10.0 - 12.0]\tSes01F_impro01_M001\tang\t[2.0, 4.0, 4.0]",
        "[12.0 - 14.0]\tSes01F_impro01_F002\texc\t[4.0, 4.0, 3.0]",
        "[14.0 - 16.0]\tSes01F_impro01_M003\tsad\t[2.0, 2.0, 2.0]",
        "[16.0 - 18.0]\tSes01F_impro01_F004\tfru\t[2.0, 3.0, 3.0]",
    ]
    label_file = session / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    label_file.parent.mkdir(parents=True)
    label_file.write_text("\n".join(lines) + "\n")
    for utt in ("F000", "M001", "F002", "M003", "F004"):
        write_clip(session / "sentences" / "wav" / "Ses01F_impro01" / f"Ses01F_impro01_{utt}.wav", "neutral")
    source = {"kind": "iemocap", "path": tmp_path, "label_map": {"excited": "happy"}}
    rows = build_manifest([source], CLASSES, min_examples_per_class=1)
    assert sorted((r.speaker, r.label, r.original_label) for r in rows) == [
        ("iemocap_01F", "happy", "excited"), ("iemocap_01F", "neutral", "neutral"),
        ("iemocap_01M", "angry", "angry"), ("iemocap_01M", "sad", "sad"),
    ]  # fmt: skip


def test_csv_layout_and_manifest_round_trip(tmp_path: Path) -> None:
    manifest = synthetic_corpus(tmp_path, speakers=1, per_class=2, rate=8000)
    rows = build_manifest([{"kind": "csv", "path": manifest}], CLASSES, min_examples_per_class=2)
    assert len(rows) == 8 and all(Path(r.path).is_absolute() for r in rows)
    out = write_manifest(rows, tmp_path / "common.csv")
    assert read_manifest(out) == rows


def test_bad_manifest_missing_files(tmp_path: Path) -> None:
    manifest = synthetic_corpus(tmp_path, speakers=1, per_class=2)
    (tmp_path / "audio" / "spk0_sad_1.wav").unlink()
    with pytest.raises(DataError, match=r"1 missing audio file\(s\).*spk0_sad_1.wav"):
        build_manifest([{"kind": "csv", "path": manifest}], CLASSES, min_examples_per_class=1)


def test_bad_manifest_unknown_label(tmp_path: Path) -> None:
    write_clip(tmp_path / "a.wav", "angry")
    manifest = write_csv(tmp_path / "m.csv", [{"path": "a.wav", "label": "furious", "speaker": "s"}])
    with pytest.raises(DataError, match="unknown label 'furious'.*label_map"):
        build_manifest([{"kind": "csv", "path": manifest}], CLASSES, min_examples_per_class=1)
    # Mapping it (or dropping it with null) makes the same file acceptable.
    rows = build_manifest([{"kind": "csv", "path": manifest, "label_map": {"furious": "angry"}}], ["angry", "sad"],
                          min_examples_per_class=0)  # fmt: skip
    assert [r.label for r in rows] == ["angry"]


def test_bad_manifest_too_few_examples(tmp_path: Path) -> None:
    manifest = synthetic_corpus(tmp_path, speakers=1, per_class=2)
    with pytest.raises(DataError, match=r"too few examples per class \(need >= 5\): neutral: 2"):
        build_manifest([{"kind": "csv", "path": manifest}], CLASSES, min_examples_per_class=5)


def test_bad_manifest_unreadable_and_short_audio(tmp_path: Path) -> None:
    (tmp_path / "broken.wav").write_bytes(b"RIFF0000garbage")
    write_clip(tmp_path / "short.wav", "sad", seconds=0.1)
    manifest = write_csv(tmp_path / "m.csv", [
        {"path": "broken.wav", "label": "sad", "speaker": "s"},
        {"path": "short.wav", "label": "sad", "speaker": "s"},
    ])  # fmt: skip
    with pytest.raises(DataError) as info:
        build_manifest([{"kind": "csv", "path": manifest}], ["sad", "angry"], min_examples_per_class=0)
    assert "unreadable audio" in str(info.value) and "shorter than" in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [("file,emotion\na.wav,sad\n", "missing column"), ("path,label\n", "no rows"), ("path,label\n,sad\n", "empty path")],
)
def test_bad_csv_structure(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(DataError, match=message):
        build_manifest([{"kind": "csv", "path": tmp_path / "m.csv"}], CLASSES)


def test_bad_source_kind_and_paths(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown data source kind"):
        read_source({"kind": "tess", "path": tmp_path})
    with pytest.raises(DataError, match="not found"):
        read_source({"kind": "crema_d", "path": tmp_path / "nope"})
    with pytest.raises(DataError, match="no CREMA-D files"):
        read_source({"kind": "crema_d", "path": tmp_path})
    with pytest.raises(DataError, match="manifest CSV not found"):
        read_source({"kind": "csv", "path": tmp_path / "nope.csv"})


# ---------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def smoke_training(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from emotion_models.train import run

    root = tmp_path_factory.mktemp("smoke")
    manifest = synthetic_corpus(root, speakers=4, per_class=3)
    hparams = Path(__file__).resolve().parent.parent / "emotion_models" / "hparams" / "smoke.yaml"
    results = run(hparams, {"data_folder": str(manifest), "output_folder": str(root / "out")})
    return root, results


@pytest.mark.slow
def test_smoke_training_end_to_end(smoke_training: tuple[Path, dict]) -> None:
    root, results = smoke_training
    out = root / "out"
    assert {p.name for p in out.iterdir()} >= {"model.ckpt", "results.json", "manifest.csv", "confusion_clean.png",
                                               "confusion_telephone.png"}  # fmt: skip
    written = json.loads((out / "results.json").read_text())
    assert written["test"]["clean"]["n"] == results["test"]["clean"]["n"] > 0
    assert len(written["training"]["history"]) == 1
    # Test and training speakers never overlap.
    assert not set(written["split"]["train"]["speakers"]) & set(written["split"]["test"]["speakers"])
    model, meta = load_checkpoint(out / "model.ckpt")
    assert meta["labels"] == CLASSES and meta["fbank"]["n_mels"] == 64
    logits, _, _ = model(TorchFbank()(torch.from_numpy(synth("angry"))))
    assert logits.shape == (1, 4) and torch.isfinite(logits).all()


@pytest.mark.slow
def test_finetune_on_8khz_operator_data(smoke_training: tuple[Path, dict], tmp_path: Path) -> None:
    from emotion_models import finetune

    root, _ = smoke_training
    manifest = synthetic_corpus(tmp_path / "calls", speakers=3, per_class=3, rate=8000)
    report = finetune.run(manifest, root / "out" / "model.ckpt", tmp_path / "ft", epochs=1, threads=1, progress=False)
    assert report["speaker_independent_validation"] is True
    assert not set(report["train"]["speakers"]) & set(report["validation"]["speakers"])
    assert set(report["before"]) == set(report["after"]) == {"clean", "telephone"}
    model, meta = load_checkpoint(tmp_path / "ft" / "model.ckpt")
    assert meta["labels"] == CLASSES and "fine-tuned on manifest.csv" in meta["training_data"]
    assert json.loads((tmp_path / "ft" / "finetune_report.json").read_text())["checkpoint"].endswith("model.ckpt")


def test_finetune_rejects_bad_input(smoke_training: tuple[Path, dict], tmp_path: Path) -> None:
    from emotion_models import finetune

    root, _ = smoke_training
    base = root / "out" / "model.ckpt"
    manifest = synthetic_corpus(tmp_path / "calls", speakers=2, per_class=1)
    with pytest.raises(DataError, match="epochs"):
        finetune.run(manifest, base, tmp_path / "ft", epochs=0)
    with pytest.raises(DataError, match="too few examples"):
        finetune.run(manifest, base, tmp_path / "ft", epochs=1, min_examples_per_class=5)
    with pytest.raises(ModelFileError):
        finetune.run(manifest, tmp_path / "missing.ckpt", tmp_path / "ft", epochs=1)


def test_load_hparams_with_config_data_sources(tmp_path: Path) -> None:
    from emotion_models.train import load_hparams
    from emotune.config import DataSource

    hparams_file = Path(__file__).resolve().parent.parent / "emotion_models" / "hparams" / "ecapa_small.yaml"
    source = DataSource(kind="csv", path=tmp_path / "calls.csv", label_map={"furious": "angry"})
    hp = load_hparams(hparams_file, {"data_sources": [source], "output_folder": str(tmp_path), "number_of_epochs": 3})
    assert hp["data_sources"] == [{"kind": "csv", "path": str(tmp_path / "calls.csv"), "label_map": {"furious": "angry"}}]
    assert hp["split"]["mode"] == "auto" and hp["number_of_epochs"] == 3
    assert isinstance(hp["model"], EmotionNet) and hp["model"].config.channels == 96
    with pytest.raises(DataError, match="hparams file not found"):
        load_hparams(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="data_folder_ravdess' is a !PLACEHOLDER"):
        load_hparams(hparams_file, {"output_folder": str(tmp_path)})
    with pytest.raises(ConfigError, match="Override 'chanels' not found"):
        load_hparams(hparams_file, {"data_sources": [source], "output_folder": str(tmp_path), "chanels": 3})
