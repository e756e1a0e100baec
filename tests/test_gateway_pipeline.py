"""Pipeline parts without servers: end-pointing on real speech, wire codecs, call logs and reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from connectors.gateway.call_log import CallLog
from connectors.gateway.turn_taking import TurnSegmenter
from connectors.tools.demo import load_sample_call
from connectors.tools.report import read_call_log, render_report, write_report
from emotion_runtime.audio import decode as decode_audio
from emotion_runtime.audio import encode as encode_audio
from emotune.errors import AudioError, DataError


def test_segmenter_finds_each_turn_of_the_sample_call() -> None:
    sample = load_sample_call()
    audio = np.concatenate([np.zeros(8000, dtype=np.float32)] + [
        np.concatenate([t.audio, np.zeros(16000, dtype=np.float32)]) for t in sample.turns
    ])  # fmt: skip
    segmenter = TurnSegmenter(threshold_db=-40.0, end_silence_s=0.6)
    events = []
    for i in range(0, audio.shape[0], 160 * 3):  # 30 ms chunks: not aligned with 20 ms frames
        events += segmenter.push(audio[i : i + 480])
    events += segmenter.flush()
    turns = [e for e in events if e.kind == "turn"]
    onsets = [e for e in events if e.kind == "onset"]
    assert len(turns) == len(sample.turns) == len(onsets)
    expected_start = 0.5
    for turn, spoken in zip(turns, sample.turns, strict=True):
        duration = spoken.audio.shape[0] / 16000
        # A turn starts up to the 0.8 s pre-roll early (soft onsets) and ends 0.6 s after the
        # speech (the end-pointing delay): it never cuts the caller's words.
        assert expected_start - 0.85 <= turn.start_s <= expected_start + 0.25
        turn_end = expected_start + duration
        assert turn_end + 0.3 <= turn.end_s <= turn_end + 0.9
        expected_start += duration + 1.0


def test_segmenter_ignores_clicks_and_cuts_very_long_turns() -> None:
    segmenter = TurnSegmenter(max_turn_s=2.0)
    click = np.concatenate([np.full(160, 0.5, dtype=np.float32), np.zeros(16000, dtype=np.float32)])
    assert [e.kind for e in segmenter.push(click)] == []
    rng = np.random.default_rng(0)
    talk = (0.1 * rng.standard_normal(16000 * 5)).astype(np.float32)
    turns = [e for e in segmenter.push(talk) if e.kind == "turn"]
    assert len(turns) == 2 and all(t.end_s - t.start_s <= 2.01 for t in turns)
    with pytest.raises(ValueError):
        TurnSegmenter(end_silence_s=0.0)


def test_wire_codecs_round_trip_and_reject_torn_frames() -> None:
    tone = (0.5 * np.sin(np.linspace(0, 200 * np.pi, 1600))).astype(np.float32)
    for encoding, tolerance in (("pcm16", 1e-4), ("mulaw", 0.02)):
        back = decode_audio(encode_audio(tone, encoding), encoding)  # type: ignore[arg-type]
        assert np.max(np.abs(back - tone)) < tolerance
    with pytest.raises(AudioError, match="whole"):
        decode_audio(b"\x00\x01\x02", "pcm16")


def _log(tmp_path: Path) -> Path:
    log = CallLog(tmp_path, "CA/../weird id")
    log.write("call_started", t=0.0, call_id="CA1", protocol="twilio")
    for t, label in ((1.0, "neutral"), (2.0, "angry"), (3.0, "angry")):
        log.write("emotion", t=t, party="caller", event={"label": label, "confidence": 0.8, "end_s": t,
                                                         "probabilities": {label: 0.8, "sad": 0.2}})  # fmt: skip
    log.write("turn", t=3.5, turn=1, start_s=1.0, end_s=3.0, caller_text="where <b>is</b> it",
              emotion={"label": "angry", "confidence": 0.8, "intensity": "high"}, requested_tone="calm",
              bot_text="Sorry.", tone="calm", fallback=False)  # fmt: skip
    log.write("escalation", t=4.0, reason="sustained_anger", summary="Caller sounded angry.")
    log.write("call_ended", t=5.0, reason="stream stopped", duration_s=5.0)
    log.close().result()
    assert log.path is not None and log.path.parent == tmp_path  # no path traversal from call ids
    return log.path


def test_call_report_embeds_the_plot_and_escapes_text(tmp_path: Path) -> None:
    report = write_report(_log(tmp_path), tmp_path / "out")
    html = report.read_text()
    assert "data:image/png;base64," in html
    assert "where &lt;b&gt;is&lt;/b&gt; it" in html and "<b>is</b>" not in html
    assert "sustained_anger" in html and "angry (0.80, high)" in html
    again = render_report(read_call_log(_log(tmp_path / "again")))
    assert again.split("<h2>Turns</h2>")[1].split("</table>")[0].count("<tr>") == 2  # header + 1 turn


def test_call_report_rejects_bad_logs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        read_call_log(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"type": "call_started"}) + "\n{not json\n")
    with pytest.raises(DataError, match=":2: not JSON"):
        read_call_log(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="empty"):
        read_call_log(empty)
