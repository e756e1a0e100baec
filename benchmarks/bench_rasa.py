"""Measure the bots: training time, server start-up, and REST turn latency per emotion.

Run from the repo root with the toolkit venv::

    .venv/bin/python -m benchmarks.bench_rasa              # both bots, CI config, cached models
    .venv/bin/python -m benchmarks.bench_rasa --config both --cold  # retrain from scratch

Prints a table and writes a JSON report (default ``results/rasa_benchmark.json``). Every timed turn
goes through the real Rasa server and the action server (slot extraction runs on every message).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from connectors.devtools.rasa_stack import BOTS, RasaStack  # noqa: E402

__all__ = ["main"]

TONE_FOR = {"neutral": "standard", "angry": "calm", "sad": "warm", "happy": "upbeat"}
TEXT_FOR = {"contact_center": "where is my parcel", "in_car": "play some music"}


def _metadata(label: str) -> dict[str, Any]:
    return {
        "emotion": {"label": label, "confidence": 0.8, "arousal": 0.5, "valence": 0.0},
        "tone": TONE_FOR[label],
        # A streak that is never reached, so every timed turn is a normal reply.
        "escalation": {"negative_emotions": ["angry"], "streak_turns": 20, "min_confidence": 0.5},
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _bench_bot(bot: str, ci: bool, cold: bool, turns: int) -> dict[str, Any]:
    stack = RasaStack(bot, ci=ci)
    if cold:
        # Rasa caches trained components in <bot>/.rasa: without clearing it, "training" reuses them.
        shutil.rmtree(stack.bot_dir / ".rasa", ignore_errors=True)
    started = time.monotonic()
    stack.train(force=cold)
    train_s = stack.last_train_seconds
    result: dict[str, Any] = {
        "bot": bot,
        "config": stack.config_file.name,
        "train_seconds": None if train_s is None else round(train_s, 1),
        "train_cached": train_s is None,
        "train_wall_seconds": round(time.monotonic() - started, 1),
    }
    started = time.monotonic()
    with stack:
        result["start_seconds"] = round(time.monotonic() - started, 1)
        stack.send("warm-up", TEXT_FOR[bot], _metadata("neutral"))
        latencies: dict[str, list[float]] = {label: [] for label in TONE_FOR}
        replies: dict[str, str] = {}
        for turn in range(turns):
            for label in TONE_FOR:
                t0 = time.perf_counter()
                messages = stack.send(f"bench-{label}-{turn // 10}", TEXT_FOR[bot], _metadata(label))
                latencies[label].append((time.perf_counter() - t0) * 1000)
                replies[label] = " ".join(m["text"] for m in messages if "text" in m)
        every = [v for values in latencies.values() for v in values]
        result["turns"] = len(every)
        result["latency_ms"] = {
            "p50": round(statistics.median(every), 1),
            "p95": round(_percentile(every, 0.95), 1),
            "max": round(max(every), 1),
            "per_emotion_p50": {k: round(statistics.median(v), 1) for k, v in latencies.items()},
        }
        result["distinct_replies"] = len(set(replies.values()))
        result["replies"] = replies
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bots", nargs="+", choices=BOTS, default=list(BOTS))
    parser.add_argument("--config", choices=("ci", "full", "both"), default="ci")
    parser.add_argument("--cold", action="store_true", help="clear Rasa's cache and retrain")
    parser.add_argument("--turns", type=int, default=25, help="timed turns per emotion (default 25)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "results" / "rasa_benchmark.json")
    args = parser.parse_args(argv)
    if args.turns < 1:
        parser.error("--turns must be at least 1")
    variants = {"ci": [True], "full": [False], "both": [True, False]}[args.config]
    runs = []
    for bot in args.bots:
        for ci in variants:
            print(f"benchmarking {bot} ({'ci' if ci else 'full'}) ...", file=sys.stderr, flush=True)
            runs.append(_bench_bot(bot, ci, args.cold, args.turns))
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "cold": args.cold,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    header = f"{'bot':<15}{'config':<15}{'train s':>9}{'start s':>9}{'p50 ms':>9}{'p95 ms':>9}{'replies':>9}"
    print(header)
    for run in runs:
        train = "cached" if run["train_cached"] else f"{run['train_seconds']:.1f}"
        print(
            f"{run['bot']:<15}{run['config']:<15}{train:>9}{run['start_seconds']:>9.1f}"
            f"{run['latency_ms']['p50']:>9.1f}{run['latency_ms']['p95']:>9.1f}{run['distinct_replies']:>7}/4"
        )
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
