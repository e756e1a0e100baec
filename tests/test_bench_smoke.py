"""The runtime benchmark runs end to end (figures are checked for shape, never for speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
