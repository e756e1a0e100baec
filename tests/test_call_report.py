"""`emotune report`: recorded calls and gateway call logs -> emotion timeline (PNG + HTML)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from connectors.tools.report import main, read_call_log, records_from_audio, speaker_summary
from emotune.config import PROJECT_ROOT

SAMPLE = PROJECT_ROOT / "samples" / "demo_call.flac"


def test_report_of_a_recorded_call(tmp_path: Path) -> None:
    assert main([str(SAMPLE), "--out", str(tmp_path)]) == 0
    html = (tmp_path / "demo_call.html").read_text()
    assert "data:image/png;base64," in html and "Per-speaker summary" in html
    assert (tmp_path / "demo_call.png").stat().st_size > 10_000
    records = read_call_log(tmp_path / "demo_call.jsonl")
    labels = [r["event"]["label"] for r in records if r["type"] == "emotion"]
    # The sample goes from neutral to angry: the report must show both phases in that order.
    assert labels[0] == "neutral" and "angry" in labels[len(labels) // 2 :]


def test_stereo_recording_gives_per_speaker_summaries(tmp_path: Path) -> None:
    caller, rate = sf.read(SAMPLE, dtype="float32")
    agent = np.roll(caller, rate * 3) * 0.5
    stereo = tmp_path / "call.wav"
    sf.write(stereo, np.stack([caller, agent], axis=1)[: rate * 12], 44100)  # an odd rate on purpose
    records = records_from_audio(stereo)
    summary = speaker_summary(records)
    assert set(summary) == {"caller", "agent"}
    assert all(entry["windows"] >= 3 for entry in summary.values())


def test_escalation_point_is_marked_when_anger_is_sustained(tmp_path: Path) -> None:
    from emotune.config import load_config

    cfg = load_config(PROJECT_ROOT / "config.yml", escalation={"streak_turns": 2, "min_confidence": 0.4})
    records = records_from_audio(SAMPLE, cfg)
    points = [r for r in records if r["type"] == "escalation"]
    assert len(points) == 1 and points[0]["t"] > 5.0


def test_report_of_a_gateway_log_and_bad_inputs(tmp_path: Path) -> None:
    log = tmp_path / "CA1.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in [
        {"type": "call_started", "call_id": "CA1", "protocol": "twilio", "t": 0},
        {"type": "emotion", "party": "caller", "t": 2.0, "event": {"label": "angry", "confidence": 0.8,
         "probabilities": {"neutral": 0.1, "happy": 0.05, "sad": 0.05, "angry": 0.8}, "end_s": 2.0}},
        {"type": "call_ended", "t": 3.0, "duration_s": 3.0, "reason": "stop"},
    ]))
    assert main([str(log), "--out", str(tmp_path / "out")]) == 0
    assert "angry 100%" in (tmp_path / "out" / "CA1.html").read_text()
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"not audio")
    result = subprocess.run([sys.executable, "-m", "emotune", "report", str(broken)], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "broken.flac" in result.stderr
