"""The torch-free streaming runtime on the shipped model: frames in, smoothed events out."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from emotion_runtime import EmotionModel, EmotionStream, StreamHub, mulaw_encode, resample
from emotion_runtime.audio import StreamingResampler
from emotune.config import PROJECT_ROOT, SmoothingConfig, StreamingConfig
from emotune.errors import FrameError, ModelFileError, SampleRateError, SidecarError

MODEL_DIR = PROJECT_ROOT / "models" / "emotune-ser-v1"
SAMPLE = PROJECT_ROOT / "samples"


@pytest.fixture(scope="module")
def model() -> EmotionModel:
    return EmotionModel.load(MODEL_DIR / "emotion.onnx")


def _voice_like(seconds: float, rate: int, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A harmonic 'voice' with syllable-rate amplitude modulation, at speech level (~-20 dBFS)."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12 if rate > 8000 else 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    signal = 0.1 * voice * envelope + 0.003 * rng.standard_normal(t.size)
    return signal.astype(np.float32)


def _frames(signal: np.ndarray, rate: int, encoding: str) -> list[bytes]:
    n = rate // 50
    chunks = [signal[i : i + n] for i in range(0, signal.size - n + 1, n)]
    if encoding == "mulaw":
        return [mulaw_encode(c) for c in chunks]
    return [(np.clip(c, -1, 1) * 32767).astype("<i2").tobytes() for c in chunks]


@pytest.mark.parametrize(("encoding", "rate"), [("pcm16", 8000), ("pcm16", 16000), ("pcm16", 48000), ("mulaw", 8000)])
def test_each_encoding_and_rate_yields_events(model: EmotionModel, encoding: str, rate: int) -> None:
    stream = EmotionStream(model, encoding=encoding, sample_rate=rate)  # type: ignore[arg-type]
    events = [e for frame in _frames(_voice_like(5.0, rate), rate, encoding) for e in stream.push(frame)]
    # 5 s, 2 s window, 1 s hop: windows end at 2, 3, 4, 5 s (the last may fall short by a frame).
    assert 3 <= len(events) <= 4
    for event in events:
        assert event.label in model.labels
        assert abs(sum(event.probabilities.values()) - 1.0) < 1e-3
        assert 0.0 <= event.arousal <= 1.0 and -1.0 <= event.valence <= 1.0
        assert event.end_s - event.start_s == pytest.approx(2.0, abs=0.02)
    assert [round(e.end_s) for e in events] == list(range(2, 2 + len(events)))


def test_same_audio_same_events_whatever_the_rate(model: EmotionModel) -> None:
    """Resampling inside the runtime: 48 kHz and 16 kHz versions of a signal label alike."""
    sig16 = _voice_like(4.0, 16000)
    sig48 = resample(sig16, 16000, 48000)
    s16 = EmotionStream(model, sample_rate=16000)
    a = [e for f in _frames(sig16, 16000, "pcm16") for e in s16.push(f)]
    s48 = EmotionStream(model, sample_rate=48000)
    b = [e for f in _frames(sig48, 48000, "pcm16") for e in s48.push(f)]
    assert [e.raw_label for e in a] == [e.raw_label for e in b]


def test_silence_is_not_labelled(model: EmotionModel) -> None:
    stream = EmotionStream(model, sample_rate=16000)
    silence = np.zeros(16000 * 4, dtype=np.float32)
    assert [e for f in _frames(silence, 16000, "pcm16") for e in stream.push(f)] == []


@pytest.mark.parametrize(
    ("frame", "error", "match"),
    [
        (b"\x00" * 639, FrameError, "640 bytes"),
        (b"\x00" * 1280, FrameError, "640 bytes"),
        ("not bytes", FrameError, "bytes"),
        (np.zeros(320, dtype=np.int16), FrameError, "bytes"),
    ],
)
def test_wrong_frames_are_refused_clearly(model: EmotionModel, frame: object, error: type, match: str) -> None:
    stream = EmotionStream(model, sample_rate=16000)
    with pytest.raises(error, match=match):
        stream.push(frame)  # type: ignore[arg-type]


def test_unsupported_rates_and_encodings(model: EmotionModel) -> None:
    with pytest.raises(SampleRateError, match="44100"):
        EmotionStream(model, sample_rate=44100)
    with pytest.raises(SampleRateError, match="mu-law"):
        EmotionStream(model, encoding="mulaw", sample_rate=16000)
    with pytest.raises(FrameError, match="encoding"):
        EmotionStream(model, encoding="opus")  # type: ignore[arg-type]


def test_smoothing_holds_a_label_against_small_wobbles(model: EmotionModel) -> None:
    stream = EmotionStream(model, smoothing=SmoothingConfig(ema_alpha=0.5, hysteresis=0.2, min_confidence=0.0))
    from emotion_runtime.stream import PendingWindow

    def scored(p: list[float]) -> str:
        w = PendingWindow(stream, np.zeros((200, 64), np.float32), 0.0, 2.0, 1.0)
        return stream.complete(w, np.array(p), 0.5, 0.0).label

    assert scored([0.1, 0.1, 0.1, 0.7]) == "angry"
    # Alternating near-ties would flicker without hysteresis; the label stays put.
    labels = [scored(p) for p in ([0.1, 0.45, 0.05, 0.4], [0.1, 0.4, 0.05, 0.45]) * 3]
    assert set(labels) == {"angry"}
    # A clear, sustained change does switch.
    labels = [scored([0.05, 0.85, 0.05, 0.05]) for _ in range(3)]
    assert labels[-1] == "happy"


def test_smoothing_off_follows_each_window(model: EmotionModel) -> None:
    stream = EmotionStream(model, smoothing=SmoothingConfig(ema_alpha=1.0, hysteresis=0.0, min_confidence=0.0))
    from emotion_runtime.stream import PendingWindow

    w = PendingWindow(stream, np.zeros((200, 64), np.float32), 0.0, 2.0, 1.0)
    assert stream.complete(w, np.array([0.1, 0.45, 0.05, 0.4]), 0.5, 0.0).label == "happy"
    assert stream.complete(w, np.array([0.1, 0.4, 0.05, 0.45]), 0.5, 0.0).label == "angry"


def test_reset_forgets_audio_and_smoothing(model: EmotionModel) -> None:
    stream = EmotionStream(model, sample_rate=16000)
    frames = _frames(_voice_like(3.0, 16000), 16000, "pcm16")
    first = [e for f in frames for e in stream.push(f)]
    stream.reset()
    assert stream.current_label is None
    second = [e for f in frames for e in stream.push(f)]
    assert [e.to_dict() for e in first] == [e.to_dict() for e in second]


def test_hub_batches_many_streams_with_identical_results(model: EmotionModel) -> None:
    hub = StreamHub(model)
    signals = [_voice_like(3.0, 8000, f0=100 + 30 * i, seed=i) for i in range(6)]
    batched = [EmotionStream(model, encoding="mulaw", sample_rate=8000) for _ in signals]
    alone = [EmotionStream(model, encoding="mulaw", sample_rate=8000) for _ in signals]
    frames = [_frames(s, 8000, "mulaw") for s in signals]
    got: dict[int, list] = {i: [] for i in range(6)}
    want: dict[int, list] = {i: [] for i in range(6)}
    for t in range(len(frames[0])):
        for i in range(6):
            hub.feed(batched[i], frames[i][t])
            want[i].extend(alone[i].push(frames[i][t]))
        for stream, event in hub.flush():
            got[batched.index(stream)].append(event)
    for i in range(6):
        assert len(got[i]) == len(want[i]) >= 1
        for a, b in zip(got[i], want[i], strict=True):
            assert a.label == b.label
            for k in a.probabilities:
                assert a.probabilities[k] == pytest.approx(b.probabilities[k], abs=1e-3)


def test_float_samples_of_any_length_label_like_wire_frames(model: EmotionModel) -> None:
    """feed_samples takes the decoded audio directly (no re-quantisation), in chunks of any size."""
    signal = _voice_like(4.0, 16000)
    frames = _frames(signal, 16000, "pcm16")
    by_frame = EmotionStream(model, sample_rate=16000)
    want = [e for f in frames for e in by_frame.push(f)]
    decoded = np.concatenate([np.frombuffer(f, "<i2").astype(np.float32) / 32768.0 for f in frames])
    by_chunk = EmotionStream(model, sample_rate=16000)
    got = []
    for start in range(0, decoded.size, 4321):  # chunks that straddle the hop boundaries
        for window in by_chunk.feed_samples(decoded[start : start + 4321]):
            prediction = model.predict(window.feats[None])
            got.append(by_chunk.complete(window, prediction.probabilities[0], float(prediction.arousal[0]),
                                         float(prediction.valence[0])))
    assert len(got) == len(want) >= 2
    for a, b in zip(got, want, strict=True):
        assert (a.label, a.start_s, a.end_s) == (b.label, b.start_s, b.end_s)
        for k in a.probabilities:
            assert a.probabilities[k] == pytest.approx(b.probabilities[k], abs=1e-4)
    with pytest.raises(FrameError, match="one channel"):
        by_chunk.feed_samples(np.zeros((10, 2), np.float32))


def test_hub_drops_late_and_excess_windows_and_counts_them(model: EmotionModel) -> None:
    hub = StreamHub(model, max_pending=3, max_delay_s=0.5)
    streams = [EmotionStream(model, sample_rate=16000) for _ in range(5)]
    voice = _voice_like(2.0, 16000)
    for stream in streams:
        hub.feed_samples(stream, voice)  # each stream closes its first window
    assert hub.pending == 3 and hub.dropped_overflow == 2  # the oldest two went
    kept = hub.take_due()
    assert [w.stream for w in kept] == streams[2:]
    for stream in streams:
        hub.feed_samples(stream, voice[:16000])  # one hop more: a second window each (3 kept)
    late = max(w.due_at for w in hub.take_due(now=0.0)) + 10.0  # nothing is late at t=0
    assert hub.dropped_late == 0
    for stream in streams[:2]:
        hub.feed_samples(stream, voice[:16000])
    assert hub.take_due(now=late) == [] and hub.dropped_late == 2
    hub.feed_samples(streams[0], voice[:16000])
    assert hub.discard(streams[0]) == 1 and hub.pending == 0
    assert len(hub.score(kept)) == 3


def test_streaming_resampler_equals_one_shot() -> None:
    sig = _voice_like(1.0, 8000)
    stream = StreamingResampler(8000, 16000)
    pieces = np.concatenate([stream.process(sig[i : i + 160]) for i in range(0, sig.size, 160)])
    assert np.allclose(pieces, resample(sig, 8000, 16000), atol=1e-6)


def test_resampler_removes_aliases() -> None:
    t = np.arange(48000) / 48000
    above_nyquist = np.sin(2 * np.pi * 11000 * t).astype(np.float32)  # above 8 kHz: must vanish
    assert np.abs(resample(above_nyquist, 48000, 16000)[300:]).max() < 0.01


def _copy_model(tmp_path: Path) -> Path:
    for name in ("emotion.onnx", "emotion.json"):
        shutil.copy(MODEL_DIR / name, tmp_path / name)
    return tmp_path / "emotion.onnx"


def test_missing_model_file_names_the_file(tmp_path: Path) -> None:
    path = _copy_model(tmp_path)
    path.unlink()
    with pytest.raises(ModelFileError, match=str(path)):
        EmotionModel.load(path)


def test_corrupt_model_file_is_refused(tmp_path: Path) -> None:
    path = _copy_model(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupt"):
        EmotionModel.load(path)


def test_truncated_model_with_matching_sidecar_is_refused_by_onnxruntime(tmp_path: Path) -> None:
    from emotune.errors import ModelError

    path = _copy_model(tmp_path)
    path.write_bytes(path.read_bytes()[:5000])
    sidecar = json.loads((tmp_path / "emotion.json").read_text())
    import hashlib

    sidecar["files"]["fp32"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "emotion.json").write_text(json.dumps(sidecar))
    with pytest.raises(ModelError, match="cannot load"):
        EmotionModel.load(path)


@pytest.mark.parametrize(
    ("content", "match"),
    [(None, "not found"), ("{not json", "not readable JSON"), ('{"labels": ["a", "b"]}', "lacks"), ("[]", "object")],
)
def test_bad_sidecar_is_refused(tmp_path: Path, content: str | None, match: str) -> None:
    path = _copy_model(tmp_path)
    sidecar = tmp_path / "emotion.json"
    if content is None:
        sidecar.unlink()
    else:
        sidecar.write_text(content)
    with pytest.raises(SidecarError, match=match):
        EmotionModel.load(path)


def test_sessions_are_shared_across_loads() -> None:
    a = EmotionModel.load(MODEL_DIR / "emotion.onnx")
    b = EmotionModel.load(MODEL_DIR / "emotion.onnx")
    assert a._session is b._session


def test_runtime_imports_no_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['torchaudio'] = None; sys.modules['speechbrain'] = None\n"
        "import emotion_runtime, connectors.sdk, connectors.gateway, connectors.gateway.call\n"
        "from emotion_runtime import EmotionModel, EmotionStream\n"
        "m = EmotionModel.load('models/emotune-ser-v1/emotion.onnx')\n"
        "s = EmotionStream(m, encoding='mulaw', sample_rate=8000)\n"
        "print(sum(len(s.push(bytes([0x7f]) * 160)) for _ in range(200)))\n"
        "assert not any(k.startswith(('torch', 'speechbrain', 'emotion_models', 'export_onnx')) and sys.modules[k] is not None for k in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"  # mu-law 0x7f is digital silence: nothing to label


def test_streaming_config_is_honoured(model: EmotionModel) -> None:
    stream = EmotionStream(model, StreamingConfig(window_s=1.0, hop_s=0.5, min_voiced_ratio=0.0), sample_rate=16000)
    events = [e for f in _frames(_voice_like(3.0, 16000), 16000, "pcm16") for e in stream.push(f)]
    assert len(events) >= 4
    assert all(e.end_s - e.start_s == pytest.approx(1.0, abs=0.02) for e in events)


def test_heap_trimmer_trims_at_most_once_per_interval() -> None:
    from emotion_runtime.memory import HeapTrimmer

    trimmer = HeapTrimmer(interval_s=0.2)
    if not trimmer.enabled:
        pytest.skip("no glibc malloc_trim on this platform")
    assert trimmer.maybe_trim() is False  # not due yet
    time.sleep(0.25)
    assert trimmer.maybe_trim() is True
    assert trimmer.maybe_trim() is False and trimmer.trims == 1
    assert HeapTrimmer(interval_s=0).maybe_trim() is False  # 0 switches it off
