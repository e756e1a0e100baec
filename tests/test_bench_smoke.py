"""The runtime benchmark runs end to end (figures are checked for shape, never for speed)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emotune.config import PROJECT_ROOT


def test_bench_runtime_quick_writes_report_and_plot(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_runtime.py", "--quick", "--seconds", "2", "--output", str(tmp_path)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "bench_runtime.json").read_text())
    assert (tmp_path / "bench_runtime.png").stat().st_size > 10_000
    rows = [r for r in report["results"] if "error" not in r]
    assert len(rows) == len(report["results"]) >= 3
    for row in rows:
        assert set(row["label_latency_ms"]) == {"p50", "p95", "p99", "max"}
        assert row["cpu_ms_per_stream_second"] > 0
        assert row["peak_rss_mb"] > 0
    assert {r["streams"] for r in rows} >= {1, 10}
    assert "machine" in report and report["machine"]["cores_used"] == 1


def test_bench_gateway_emotion_writes_report_and_plot(tmp_path: Path) -> None:
    """Real gateway process, real emotune-ws callers: the report's shape (no speed asserted)."""
    out = tmp_path / "bench_gateway_emotion.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_gateway_emotion", "--callers", "3", "--seconds", "3",
         "--warmup", "1", "--gateway-core", "-1", "--client-core", "-1", "--out", str(out)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 10_000
    (level,) = report["levels"]
    assert level["callers"] == 3 and level["events"] >= 1 and level["caller_errors"] == 0
    assert set(level["latency_s"]) >= {"p50", "p95", "p99", "max"}
    assert level["gateway_tracebacks"] == 0 and level["event_loop_lag_p99_s"] is not None


def test_bench_gateway_splits_cpu_between_a_process_and_its_children() -> None:
    """cpu_by_part counts a parent's own CPU as the gateway's and its children's as the workers'."""
    from benchmarks.bench_gateway import cpu_by_part

    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\n"
    # The parent burns, starts a child that burns, then waits for stdin so both are still there when read.
    parent = subprocess.Popen(
        [sys.executable, "-c", burn + "import subprocess, sys\n"
         f"child = subprocess.Popen([sys.executable, '-c', {burn + 'import sys; sys.stdin.read()'!r}])\n"
         "sys.stdin.read()\n"],
        stdin=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            parts = cpu_by_part(parent.pid, [])
            if parts["gateway"] >= 0.4 and parts["asr_workers"] >= 0.4:
                break
            time.sleep(0.1)
        assert parts["gateway"] >= 0.4 and parts["asr_workers"] >= 0.4, parts
        assert parts["rasa_and_actions"] == 0.0
    finally:
        assert parent.stdin is not None
        parent.stdin.close()  # the child, holding the same pipe, sees its end and exits too
        parent.kill()
        parent.wait()


def test_bench_asr_development_split_shares_no_clip_with_the_test_sets() -> None:
    """Settings are chosen on --split dev: its clips must be none of the test sets' (skipped without ../shared)."""
    from benchmarks.bench_asr import DATA, korean_rows, ravdess_clips

    if not (DATA / "ravdess").is_dir() or not (DATA / "korean_operator" / "manifest.csv").is_file():
        pytest.skip("../shared/data is not here")
    test_clips, dev_clips = set(ravdess_clips(48)), set(ravdess_clips(48, dev=True))
    assert len(test_clips) == len(dev_clips) == 48 and not test_clips & dev_clips
    assert {p.parent.name for p in dev_clips} == {f"Actor_{a:02d}" for a in range(1, 7)}
    test_rows = {row["path"] for row in korean_rows(25)}
    dev_rows = {row["path"] for row in korean_rows(25, dev=True)}
    assert len(test_rows) == 25 and len(dev_rows) == 75 and not test_rows & dev_rows
