"""Emotion model variants: accuracy against cost, to choose a profile's default.

For each variant (today's small v1 model; a v1-sized student distilled from the v2 smart-turn teacher,
same network and cost as v1; v2 = smart-turn encoder + head; v2 = Whisper-base encoder + head) this runs the streaming runtime's paced benchmark (``bench_runtime.py``: real-time 8 kHz mu-law
streams of real speech with its pauses, so VAD gating applies; one core; one onnxruntime thread) at
several stream counts, and reads the variant's leave-one-corpus-out accuracy from its
``results.json`` (v1 and the student: ``emotion_models/results/{v1,student}_loco/results.json``, written by
``emotion_models.loco_v1`` and ``emotion_models.distill``). A variant "holds" N streams when real time held at N (late ticks < 5%, lag < 0.5 s).

    .venv/bin/python benchmarks/bench_variants.py            # writes benchmarks/results/bench_variants.json + .png
    .venv/bin/python benchmarks/bench_variants.py --quick    # 1 and 10 streams, 3 s
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_runtime import _cpu_name, _measure  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {
    # "results": the variant's leave-one-corpus-out summary (default: <model>/results.json);
    # "runtime_model": what the runtime loads when it is not the folder itself (a v1 .onnx).
    "v1 (ECAPA-small on fbank)": {"model": None, "path": "fp32", "results": "emotion_models/results/v1_loco/results.json"},
    "v1 student (distilled from v2 smart-turn)": {
        "model": "models/emotune-ser-v1-student", "path": "fp32",
        "runtime_model": "models/emotune-ser-v1-student/emotion.onnx",
        "results": "emotion_models/results/student_loco/results.json",
    },
    "v2 smart-turn + head": {"model": "models/emotune-ser-v2-st", "path": "v2"},
    "v2 Whisper-base + head": {"model": "models/emotune-ser-v2-wb", "path": "v2"},
}


def _accuracy(variant: dict[str, Any]) -> dict[str, Any]:
    """The LOCO row of the variant's results (v2: the mode its sidecar ships; v1: the summary's chosen mode)."""
    model = variant.get("model")
    results = ROOT / (variant.get("results") or f"{model}/results.json")
    name = str(results.relative_to(ROOT)) if results.is_relative_to(ROOT) else str(results)
    if not results.is_file():
        return {"note": f"{name} is not built"}
    summary = json.loads(results.read_text())
    sidecar = ROOT / str(model) / "emotion.json"
    mode = json.loads(sidecar.read_text()).get("adaptation", {}).get("mode") if model and sidecar.is_file() else None
    mode = mode or summary.get("chosen_by_loco_mean")
    row = summary.get("modes", {}).get(mode)
    if not row:
        return {}
    out = {
        "results": name,
        "adaptation": mode,
        "loco_mean_ua": row["loco_mean_ua"],
        "loco_worst_angry_recall": min(row["loco_worst_angry_recall"].values()),
        "loco_mean_ece": row["loco_mean_ece"],
    }
    if "held_out_speakers_ua" in row:
        out["held_out_speakers_ua_clean_mixed"] = row["held_out_speakers_ua"]["clean/mixed"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--counts", type=int, nargs="+", default=None)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--only", nargs="*", default=None, help="variant names to run")
    parser.add_argument("--accuracy-only", action="store_true",
                        help="measure nothing: re-read every row's accuracy from its LOCO summary")
    args = parser.parse_args(argv)
    if args.accuracy_only:
        args.only = []
    seconds = args.seconds or (3.0 if args.quick else 12.0)
    counts = args.counts or ([1, 10] if args.quick else [50, 100, 150, 200, 300])
    core = max(os.sched_getaffinity(0))
    rows: list[dict[str, Any]] = []
    for name, variant in VARIANTS.items():
        if args.only is not None and name not in args.only:
            continue
        model = variant["model"]
        if model and not (ROOT / model / "emotion.json").is_file():
            rows.append({"variant": name, "error": f"{model} is not built"})
            continue
        runs = []
        for n in counts:
            print(f"[variants] {name}: {n} streams x {seconds:g} s ...", flush=True)
            runtime_model = variant.get("runtime_model", model)
            result = _measure(variant["path"], n, seconds, 64, core, str(ROOT / runtime_model) if runtime_model else None)
            runs.append(result)
            print(f"  realtime={result.get('realtime')} cpu_ms/stream-s={result.get('cpu_ms_per_stream_second')} "
                  f"p99={result.get('label_latency_ms', {}).get('p99')} rss={result.get('rss_mb')}", flush=True)  # fmt: skip
            if not result.get("realtime", False):
                break  # more streams will not hold either
        held = [r["streams"] for r in runs if r.get("realtime")]
        accuracy = _accuracy(variant)
        rows.append({
            "variant": name,
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "model": model or "models/emotune-ser-v1/emotion.onnx",
            "largest_held_streams_per_core": max(held) if held else 0,
            "cpu_ms_per_stream_second": min((r["cpu_ms_per_stream_second"] for r in runs if r.get("realtime")), default=None),
            "cpu_ms_per_stream_second_measured": [r.get("cpu_ms_per_stream_second") for r in runs],
            "rss_mb_at_largest_held": next((r["rss_mb"] for r in reversed(runs) if r.get("realtime")), None),
            "accuracy": accuracy,
            "runs": runs,
        })  # fmt: skip
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpu": _cpu_name(), "cores_used": 1, "onnxruntime_threads": 1,
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                    "note": "real time needs a core to itself: with a load average above 2 on 2 cores, "
                            "'realtime' says more about the machine than the model; cpu_ms_per_stream_second holds"},
        "audio": "RAVDESS speech (with its pauses) as 8 kHz mu-law 20 ms frames, real-time paced, VAD gating on",
        "rows": rows,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    out = args.output / "bench_variants.json"
    if args.only is not None and out.is_file():
        # --only re-measures some variants: the other rows stay as they were measured (each keeps its own runs).
        ran = {row["variant"] for row in rows}
        previous = json.loads(out.read_text())
        kept = [row for row in previous.get("rows", []) if row.get("variant") not in ran]
        for row in kept:  # accuracy is read, not measured: always the variant's current summary
            row.setdefault("command", previous.get("command"))
            if row.get("variant") in VARIANTS:
                row["accuracy"] = _accuracy(VARIANTS[row["variant"]])
        rows = [row for name in VARIANTS for row in kept + rows if row["variant"] == name]
        report["rows"] = rows
        if not ran:  # nothing measured: the file's command and machine still describe its rows
            report = {**previous, "rows": rows}
    out.write_text(json.dumps(report, indent=2) + "\n")
    _plot(rows, args.output / "bench_variants.png")
    print(f"[variants] wrote {out}")
    return 0


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for row in rows:
        measured = [c for c in row.get("cpu_ms_per_stream_second_measured", []) if c is not None]
        cost = row.get("cpu_ms_per_stream_second") or (min(measured) if measured else None)
        ua = row.get("accuracy", {}).get("loco_mean_ua")
        if cost is None or ua is None:
            continue
        ax.scatter(cost, ua * 100, s=60)
        ax.annotate(f"{row['variant']}\n(holds {row['largest_held_streams_per_core']}/core)", (cost, ua * 100),
                    textcoords="offset points", xytext=(6, 4), fontsize=8)  # fmt: skip
    ax.set_xlabel("CPU ms per stream-second (1 core, 1 onnxruntime thread)")
    ax.set_ylabel("leave-one-corpus-out mean UA (%)")
    ax.set_title("Emotion variants: accuracy vs cost")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
