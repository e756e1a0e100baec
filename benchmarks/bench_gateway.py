"""Gateway load run: N concurrent real-time Twilio callers through one gateway process with a real
Rasa in the loop. Bounded: every call is the bundled sample call (6 turns, ~14 s of speech), so a
run stops by itself (defaults: 5 then 20 callers, 3 waves each, about 15 minutes; --quick: 3
callers, 2 turns, 1 wave).

Reports: calls held in real time (the caller never fell > 100 ms behind its 20 ms frame clock),
the time to the first reply **at the client** (from the caller's last voiced frame of a turn to the
first bot audio frame it received: what the caller hears), the gateway's own
turn latency (caller turn end -> first bot audio, from its log) p50/p95/p99 and the part the gateway adds
(that minus Rasa's time), where a turn's time goes (its end to its words: ``turn_words_wait_s``; Rasa:
``turn_rasa_s``; how many turns used the words recognised early in their last pause), label latency (from the gateway's /metrics histogram), gateway RSS over
time (gateway process; also with its ASR worker processes), RSS after each of --rounds waves
of calls (growth after the first wave would be a leak), and caller turns that got neither a reply nor an explicit error (must be 0).

    .venv/bin/python -m benchmarks.bench_gateway            # 5 and 20 callers
    .venv/bin/python -m benchmarks.bench_gateway --quick    # smoke, < 90 s

``--spread-s S`` starts each wave's callers evenly over S seconds instead of all at once: still
simultaneous calls (they overlap for all but S seconds), but their turns no longer end at the same
instant, as independent callers' turns do not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from websockets.asyncio.client import ClientConnection

from connectors.devtools.caller import CallerTurn, TwilioCaller
from connectors.devtools.rasa_stack import RasaStack, free_port
from connectors.tools.demo import load_sample_call
from connectors.tools.report import read_call_log
from emotune.config import PROJECT_ROOT

__all__ = ["histogram_quantile", "main", "metric", "percentiles", "rss_mb", "run_level", "tree_rss_mb", "wait_healthy"]

RESULTS = PROJECT_ROOT / "benchmarks" / "results"
LATE_LIMIT_S = 0.1  # a caller more than this behind its frame clock is not "held in real time"


class _TimedCaller(TwilioCaller):
    """The real Twilio caller, also recording how far behind its real-time frame clock it fell."""

    max_lag_s = 0.0

    async def _send_frame(self, ws: ClientConnection, frame: bytes, deadline: float) -> float:
        self.max_lag_s = max(self.max_lag_s, time.monotonic() - (deadline + 0.02))
        return await super()._send_frame(ws, frame, deadline)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tree_rss_mb(pid: int) -> float:
    """RSS of the gateway plus its children (the ASR worker processes)."""
    total = 0.0
    for current in _tree_pids(pid):
        try:
            total += rss_mb(current)
        except OSError:
            continue  # a process that just exited
    return total


def _tree_pids(pid: int) -> list[int]:
    """``pid`` and every process below it (a process that just exited is skipped)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
        found.append(current)
    return found


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def cpu_by_part(gateway_pid: int, rasa_pids: list[int]) -> dict[str, float]:
    """CPU seconds used so far by each part of the bench: the gateway's own process, its ASR worker
    processes, Rasa with its action server, and this process (the simulated callers)."""
    workers = [p for p in _tree_pids(gateway_pid) if p != gateway_pid]
    own = os.times()
    return {"gateway": cpu_s(gateway_pid), "asr_workers": sum(map(cpu_s, workers)),
            "rasa_and_actions": sum(cpu_s(p) for root in rasa_pids for p in _tree_pids(root)),
            "callers_client": own.user + own.system}


def percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "n": 0}
    array = np.asarray(values)
    return {f"p{q}": round(float(np.percentile(array, q)), 4) for q in (50, 95, 99)} | {"n": len(values)}


def histogram_quantile(metrics_text: str, name: str, q: float) -> float | None:
    """Prometheus-style quantile from cumulative buckets (linear inside the bucket)."""
    buckets: list[tuple[float, float]] = []
    for line in metrics_text.splitlines():
        if line.startswith(f"{name}_bucket"):
            bound_text = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if bound_text == "+Inf" else float(bound_text), float(line.rsplit(" ", 1)[1])))
    if not buckets or buckets[-1][1] == 0:
        return None
    target = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= target:
            if bound == float("inf"):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (target - lower_count) / max(count - lower_count, 1e-9)
        lower_bound, lower_count = bound, count
    return None


def metric(metrics_text: str, name: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def wait_healthy(port: int, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(600):
            if process.poll() is not None:
                raise RuntimeError(f"gateway exited with {process.returncode}")
            try:
                if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("gateway did not become healthy in 60 s")


def _analyse_logs(paths: list[Path]) -> dict[str, Any]:
    """Per-call logs -> latencies and the fate of every caller turn."""
    response_s: list[float] = []
    gateway_added_s: list[float] = []
    words_wait_s: list[float] = []  # the turn's end to its words (early transcript or recognised then)
    rasa_s: list[float] = []
    asr_queued_s: list[float] = []  # submission to a worker taking the turn (early or at its end)
    asr_batches: list[int] = []  # turns decoded together with each turn
    early_used = 0
    counts = dict.fromkeys(("turns", "bot_audio", "handed_off", "fallback_or_failed", "shed_busy_reply",
                            "skipped_no_words", "dropped", "unanswered"), 0)
    for path in filter(Path.is_file, paths):
        log = read_call_log(path)
        for index, record in enumerate(log):
            kind = record["type"]
            if kind in ("turn_dropped", "turn_skipped"):
                counts["dropped" if kind == "turn_dropped" else "skipped_no_words"] += 1
                continue
            early_used += kind == "early_transcript_used"
            if kind not in ("turn", "turn_shed"):
                continue
            counts["turns"] += 1
            if kind == "turn" and "words_wait_s" in record:
                words_wait_s.append(float(record["words_wait_s"]))
                rasa_s.append(float(record["rasa_s"]))
                if "asr_batch" in record:
                    asr_batches.append(int(record["asr_batch"]))
                    asr_queued_s.append(float(record["asr_queued_s"]))
            later = []  # what happened to this turn: records up to the next caller turn
            for following in log[index + 1 :]:
                if following["type"] in ("turn", "turn_shed", "turn_skipped", "turn_dropped"):
                    break
                later.append(following)
            failed = bool(record.get("fallback")) or any(r["type"] == "turn_failed" for r in later)
            handed_off = any(r["type"] == "escalation" for r in later)  # the call went to a human
            explicit_error = kind == "turn_shed" or failed or handed_off
            counts["shed_busy_reply"] += kind == "turn_shed"
            counts["fallback_or_failed"] += kind == "turn" and failed  # Rasa fallback or a failed turn
            counts["handed_off"] += kind == "turn" and handed_off  # sustained anger, or repeated fallbacks
            audio = next((r for r in later if r["type"] == "bot_audio"), None)
            if audio is not None:
                counts["bot_audio"] += 1
                response_s.append(float(audio["response_s"]))
                if kind == "turn":
                    gateway_added_s.append(float(audio["response_s"]) - float(record["rasa_s"]))
            elif not explicit_error:
                counts["unanswered"] += 1
    # What the issue counts: caller turns that got neither a reply nor an explicit error. A turn
    # dropped because the call ended is logged, but the caller heard nothing: it counts here.
    counts["unanswered"] += counts["dropped"]
    return {"counts": counts, "response_s": response_s, "gateway_added_s": gateway_added_s,
            "words_wait_s": words_wait_s, "rasa_s": rasa_s, "early_transcripts_used": early_used,
            "asr_queued_s": asr_queued_s, "asr_batches": asr_batches}


async def _after(delay_s: float, caller: _TimedCaller) -> Any:
    await asyncio.sleep(delay_s)
    return await caller.run()


async def run_level(
    callers: int, turns: list[CallerTurn], rasa_url: str, workdir: Path, rounds: int = 1, spread_s: float = 0.0,
    rasa_pids: list[int] | None = None,
) -> dict[str, Any]:
    """``rounds`` consecutive waves of ``callers`` calls on one gateway process: RSS after each
    wave shows whether memory grows with calls served (a leak) or plateaus after warm-up.
    ``spread_s``: caller i of a wave starts i x spread_s / callers seconds after the first (0: all at
    once, so every caller's k-th turn ends at the same instant: the worst case). ``rasa_pids``: the
    dialogue processes, so that the CPU the calls cost is split by part."""
    port = free_port()
    log_dir = workdir / f"logs-{callers}"
    config_file = workdir / f"config-{callers}.yml"
    config_file.write_text(
        f"gateway: {{port: {port}, max_calls: {callers + 5}}}\nrasa: {{url: '{rasa_url}', replicas: []}}\n"
    )
    process = subprocess.Popen(
        # Unsigned Twilio callers on loopback (--insecure-dev, as the end-to-end tests): what is
        # measured is the call path; the signature check is one HMAC per connection.
        [sys.executable, "-m", "connectors.gateway", "--config", str(config_file), "--log-dir", str(log_dir),
         "--log-level", "WARNING", "--insecure-dev"],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    rss: list[tuple[float, float]] = []
    rss_total: list[float] = []  # with the ASR worker processes
    try:
        await wait_healthy(port, process)
        started = time.monotonic()
        cpu_before = cpu_by_part(process.pid, rasa_pids or [])
        rss.append((0.0, rss_mb(process.pid)))
        rss_total.append(tree_rss_mb(process.pid))
        stop_sampling = asyncio.Event()

        async def sample_rss() -> None:
            while not stop_sampling.is_set():
                await asyncio.sleep(1.0)
                rss.append((round(time.monotonic() - started, 1), rss_mb(process.pid)))
                rss_total.append(tree_rss_mb(process.pid))

        sampler = asyncio.create_task(sample_rss())
        calls: list[_TimedCaller] = []
        results: list[Any] = []
        rss_after_round: list[float] = []
        for wave in range(rounds):
            batch = [
                _TimedCaller(f"ws://127.0.0.1:{port}/twilio", turns, speed=1.0,
                             call_sid=f"CAbench{callers:03d}r{wave:02d}x{i:03d}")
                for i in range(callers)
            ]
            print(f"[{callers} callers] round {wave + 1}/{rounds}: placing calls ...", flush=True)
            starts = [i * spread_s / callers for i in range(callers)]
            results += await asyncio.gather(*(_after(t, c) for t, c in zip(starts, batch, strict=True)), return_exceptions=True)
            calls += batch
            await asyncio.sleep(2.0)  # calls closed, per-call state released
            rss_after_round.append(round(rss_mb(process.pid), 1))
            print(f"[{callers} callers] round {wave + 1}: RSS {rss_after_round[-1]} MB", flush=True)
        wall_s = time.monotonic() - started
        cpu_after = cpu_by_part(process.pid, rasa_pids or [])
        stop_sampling.set()
        await sampler
        async with httpx.AsyncClient() as http:
            metrics_text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    analysis = _analyse_logs([log_dir / f"{call.client.call_sid}.jsonl" for call in calls])
    counts = analysis["counts"]
    unanswered = counts["unanswered"]
    failed_calls = [repr(r) for r in results if isinstance(r, BaseException)]
    held = sum(1 for c, r in zip(calls, results, strict=True) if not isinstance(r, BaseException)
               and c.max_lag_s <= LATE_LIMIT_S)
    rss_values = [v for _, v in rss]
    waits = [w for r in results if not isinstance(r, BaseException) for w in r.reply_waits_s]
    report: dict[str, Any] = {
        "callers": callers,
        "rounds": rounds,
        "arrivals": ({"spread_s": spread_s, "rule": "caller i starts i x spread_s / callers after the first"} if spread_s
                     else {"spread_s": 0.0, "rule": "all callers at once: their turns end at the same instants"}),
        "calls": len(calls),
        "wall_s": round(wall_s, 1),
        "calls_completed": len(calls) - len(failed_calls),
        "calls_held_in_real_time": held,
        "max_caller_lag_s": round(max(c.max_lag_s for c in calls), 4),
        "turns": counts,
        "turns_unanswered": unanswered,
        # What the caller hears, measured at the client: from its last voiced frame of a turn to the
        # first bot audio frame received (end-pointing silence, ASR, Rasa, TTS and the wire included).
        "time_to_first_reply_s": percentiles(waits),
        "turn_latency_s": percentiles(analysis["response_s"]),
        "turn_latency_added_by_gateway_s": percentiles(analysis["gateway_added_s"]),
        # Where a turn's latency goes: waiting for its words (recognition), then Rasa.
        "turn_words_wait_s": percentiles(analysis["words_wait_s"]),
        "turn_rasa_s": percentiles(analysis["rasa_s"]),
        "early_transcripts_used": analysis["early_transcripts_used"],
        # How recognition served the turns: the wait for a worker, and how many turns shared its batch.
        "asr_queued_s": percentiles(analysis["asr_queued_s"]),
        "asr_batch_sizes": {str(size): analysis["asr_batches"].count(size)
                            for size in sorted(set(analysis["asr_batches"]))},
        "label_latency_s": {
            "p50": histogram_quantile(metrics_text, "emotune_label_latency_seconds", 0.5),
            "p95": histogram_quantile(metrics_text, "emotune_label_latency_seconds", 0.95),
            "p99": histogram_quantile(metrics_text, "emotune_label_latency_seconds", 0.99),
            "mean": metric(metrics_text, "emotune_label_latency_seconds_sum")
            / max(metric(metrics_text, "emotune_label_latency_seconds_count"), 1),
            "n": metric(metrics_text, "emotune_label_latency_seconds_count"),
        },
        "rasa_fallbacks": metric(metrics_text, "emotune_rasa_fallbacks_total"),
        "rss_mb": {"start": round(rss_values[0], 1), "peak": round(max(rss_values), 1),
                   "end": round(rss_values[-1], 1), "growth": round(rss_values[-1] - rss_values[0], 1),
                   "after_each_round": rss_after_round,
                   "growth_after_first_round": round(rss_after_round[-1] - rss_after_round[0], 1)},
        "rss_with_asr_workers_mb": {"start": round(rss_total[0], 1), "peak": round(max(rss_total), 1),
                                    "end": round(rss_total[-1], 1)},
        "rss_samples": rss,
        # Where the machine's CPU went while the calls ran (ASR workers rebuilt mid-run lose their share).
        "cpu_s": {**{part: round(cpu_after[part] - cpu_before[part], 1) for part in cpu_after},
                  "cores_busy": round((sum(cpu_after.values()) - sum(cpu_before.values())) / wall_s, 2),
                  "cores": os.cpu_count()},
        "failed_calls": failed_calls,
    }
    print(f"[{callers} callers x {rounds}] {held}/{len(calls)} held in real time, turns {counts}, "
          f"time to first reply at the client {report['time_to_first_reply_s']}, "
          f"turn latency p50/p95/p99 {report['turn_latency_s']}, gateway-added {report['turn_latency_added_by_gateway_s']}, "
          f"label p95 {report['label_latency_s']['p95']}, RSS {report['rss_mb']}, "
          f"unanswered turns {unanswered}", flush=True)
    return report


def _plot(levels: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rss_axis, latency_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for level in levels:
        times, values = zip(*level["rss_samples"], strict=True)
        rss_axis.plot(times, values, label=f"{level['callers']} callers")
    rss_axis.set_xlabel("seconds")
    rss_axis.set_ylabel("gateway RSS (MB)")
    rss_axis.legend()
    names = [str(level["callers"]) for level in levels]
    # What the caller feels (time to the first reply at the client), then the part spent waiting for words.
    bars = [("time_to_first_reply_s", "p50", "first reply at the client p50"),
            ("time_to_first_reply_s", "p95", "first reply at the client p95"),
            ("turn_words_wait_s", "p95", "turn end -> its words p95")]  # fmt: skip
    for k, (key, quantile, label) in enumerate(bars):
        heights = [(level.get(key) or {}).get(quantile) or 0.0 for level in levels]
        latency_axis.bar(np.arange(len(levels)) + (k - 1) * 0.27, heights, width=0.27, label=label)
    for target, style in ((1.0, ":"), (1.5, "--")):
        latency_axis.axhline(target, color="grey", linestyle=style, linewidth=1)
    latency_axis.set_xticks(range(len(levels)), names)
    latency_axis.set_xlabel("concurrent callers")
    latency_axis.set_ylabel("seconds (targets at 10 callers: p50 1.0, p95 1.5)")
    latency_axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    turns = load_sample_call().turns
    if args.quick:
        turns = turns[:2]
    levels = [3] if args.quick else args.callers
    if args.quick:
        args.rounds = 1
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp, RasaStack("contact_center", ci=True) as rasa:
        reports = [await run_level(n, turns, rasa.url, Path(tmp), rounds=args.rounds, spread_s=args.spread_s,
                                   rasa_pids=rasa.pids) for n in levels]
    return {
        # Config overrides from the environment are part of what was run.
        "command": " ".join([*(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("EMOTUNE_")),
                             "python -m benchmarks.bench_gateway", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "turns_per_call": len(turns),
        "levels": reports,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--callers", type=int, nargs="+", default=[5, 20], help="concurrent callers per level")
    parser.add_argument("--quick", action="store_true", help="3 callers x 2 turns, < 90 s")
    parser.add_argument("--rounds", type=int, default=3,
                        help="consecutive waves of calls per level on one gateway (RSS growth check)")
    parser.add_argument("--spread-s", type=float, default=0.0,
                        help="spread each wave's call starts evenly over this many seconds (default 0: all at once)")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_gateway.json")
    parser.add_argument("--replot", type=Path, default=None,
                        help="only redraw the PNG of an existing result JSON (nothing is run)")
    args = parser.parse_args(argv)
    if args.replot is not None:
        _plot(json.loads(args.replot.read_text())["levels"], args.replot.with_suffix(".png"))
        return 0
    if any(n < 1 for n in args.callers) or args.rounds < 1:
        parser.error("--callers and --rounds must be >= 1")
    if args.spread_s < 0:
        parser.error("--spread-s must be >= 0")
    report = asyncio.run(_main(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    _plot(report["levels"], args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 1 if any(level["turns_unanswered"] for level in report["levels"]) else 0


if __name__ == "__main__":
    sys.exit(main())
