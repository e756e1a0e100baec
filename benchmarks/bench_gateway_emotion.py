"""The gateway's emotion path under load, measured at the client: how many real-time callers one core holds.

Each caller speaks our own protocol (emotune-ws, ``/v1/stream``): it streams the bundled sample
call (real speech, mu-law 8 kHz, 20 ms frames, in real time, each caller at another offset and
starting at another phase of the second) and receives the emotion events the gateway streams back.
The gateway runs as its own process pinned to one core (``taskset -c 0``) with ``asr.engine: none``
and ``tts.engine: none``, so what is measured is the emotion path: websocket, protocol core,
decoding, resampling, features, the shared hub's batched inference off the event loop, events
back. The callers run in this process, pinned to the other core.

Measured per level (a fresh gateway each): at the client, the time from sending the frame that
closes a window to receiving that window's emotion event (p50/p95/p99/max); the gateway's own
event-loop lag (``emotune_event_loop_lag_seconds`` p99); windows dropped as late or over the bound;
gateway CPU and RSS; how far the callers' own clock fell behind (a level where the client could not
keep real time does not count). A level is *held* when p99 < 100 ms, no window was dropped and
the callers kept their 20 ms clock (max lag < 100 ms).

``--soak``: at least 500 calls in waves at one concurrency, a share of them with Rasa in the loop
(text turns to a real Rasa + action server: every turn must get a reply, none may be a fallback),
bounded in time; RSS and counts after each wave; unhandled exceptions in the gateway's log.

    .venv/bin/python -m benchmarks.bench_gateway_emotion                      # sweep, ~5 min
    .venv/bin/python -m benchmarks.bench_gateway_emotion --soak --callers 150 # soak, ~5 min
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
import soundfile as sf
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from benchmarks.bench_gateway import histogram_quantile, percentiles, rss_mb, wait_healthy
from connectors.devtools.emotune_ws_client import BotReply, EmotionMessage, EmotuneWsClient, Ready
from connectors.devtools.rasa_stack import RasaStack, free_port
from connectors.protocols.base import AudioFormat
from emotion_runtime.audio import mulaw_encode, resample
from emotune.config import PROJECT_ROOT, EmotuneConfig

__all__ = ["main", "run_level", "run_soak"]

RESULTS = PROJECT_ROOT / "benchmarks" / "results"
SAMPLE = PROJECT_ROOT / "samples" / "demo_call.flac"
RATE, FRAME = 8000, 160  # mu-law telephony, 20 ms frames
TICK_S = 0.02
HELD_P99_S = 0.1
CLIENT_LAG_LIMIT_S = 0.1
TURN_TEXTS = ("I want to check my order", "this is taking far too long")
BENCH_TOKEN = "bench-gateway-token"  # callers' and /metrics token of the benchmark gateways


def _sample_mulaw() -> bytes:
    audio, rate = sf.read(str(SAMPLE), dtype="float32", always_2d=True)
    return mulaw_encode(resample(audio[:, 0], rate, RATE))


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _counter(metrics_text: str, name: str) -> dict[str, float]:
    """Every labelled value of one counter, e.g. {'late': 0.0, 'overflow': 0.0}."""
    values: dict[str, float] = {}
    for line in metrics_text.splitlines():
        if line.startswith(name + "{"):
            label = line.split('"')[1]
            values[label] = float(line.rsplit(" ", 1)[1])
    return values


class Caller:
    """One emotune-ws caller: frames by the shared clock, events and replies by its own reader."""

    def __init__(self, index: int, audio: bytes, start_tick: int, turn_ticks: tuple[int, ...] = ()) -> None:
        self.index = index
        self.call_id = f"bench-{index:04d}-{os.getpid()}-{time.monotonic_ns() % 10**9}"
        n_frames = len(audio) // FRAME
        offset = (index * 397) % n_frames  # each caller at another place of the sample
        self.frames = [audio[((offset + k) % n_frames) * FRAME : ((offset + k) % n_frames + 1) * FRAME]
                       for k in range(n_frames)]
        self.start_tick = start_tick
        self.turn_ticks = turn_ticks
        self.client = EmotuneWsClient(AudioFormat("mulaw", RATE))
        self.ws: ClientConnection | None = None
        self.sent_at: list[float] = []
        self.latencies: list[tuple[float, float]] = []  # (sent at, latency)
        self.events = 0
        self.turns_sent = 0
        self.replies = 0
        self.fallbacks = 0
        self.errors: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    async def open(self, url: str, window_s: float, hop_s: float, fallback_text: str) -> None:
        self.window_s, self.hop_s, self.fallback_text = window_s, hop_s, fallback_text
        self.ws = await connect(url, max_size=None, open_timeout=30,
                                additional_headers={"Authorization": f"Bearer {BENCH_TOKEN}"})
        await self.ws.send(self.client.start(call_id=self.call_id))
        first = await asyncio.wait_for(self.ws.recv(), 30)
        if not any(isinstance(e, Ready) for e in self.client.receive_text(str(first))):
            raise RuntimeError(f"{self.call_id}: no ready ({first!r})")
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for message in self.ws:
                now = time.monotonic()
                if not isinstance(message, str):
                    continue
                for event in self.client.receive_text(message):
                    if isinstance(event, EmotionMessage):
                        self.events += 1
                        # The window ending at end_s became due at window_s + n * hop_s of the
                        # stream (features trail the input by a few ms, well under half a hop).
                        n = round((float(event.emotion["end_s"]) - self.window_s) / self.hop_s)
                        closing = int(round((self.window_s + n * self.hop_s) * RATE / FRAME)) - 1
                        if 0 <= closing < len(self.sent_at):
                            self.latencies.append((self.sent_at[closing], now - self.sent_at[closing]))
                    elif isinstance(event, BotReply):
                        self.replies += 1
                        self.fallbacks += event.text == self.fallback_text
        except ConnectionClosed:
            pass

    async def send_tick(self, tick: int) -> None:
        """Send this caller's frame for the shared clock's ``tick`` (and a text turn when due)."""
        if self.ws is None or tick < self.start_tick:
            return
        k = tick - self.start_tick
        self.sent_at.append(time.monotonic())
        try:
            await self.ws.send(self.frames[k % len(self.frames)])
            if k in self.turn_ticks:
                self.turns_sent += 1
                await self.ws.send(self.client.text(TURN_TEXTS[self.turns_sent % len(TURN_TEXTS)]))
        except ConnectionClosed as exc:
            self.errors.append(f"closed while sending: {exc}")
            self.ws = None

    async def close(self, reply_wait_s: float) -> None:
        deadline = time.monotonic() + reply_wait_s
        while self.replies < self.turns_sent and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self.ws.send(self.client.end())
            with contextlib.suppress(TimeoutError, ConnectionClosed):
                await asyncio.wait_for(self.ws.wait_closed(), 10)
        if self._reader is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reader, 5)


async def _pace(callers: list[Caller], ticks: int) -> list[float]:
    """The one 20 ms clock of all callers; returns how late each tick started (client lag)."""
    lags: list[float] = []
    start = time.monotonic()
    for tick in range(ticks):
        due = start + tick * TICK_S
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(max(0.0, time.monotonic() - due))
        await asyncio.gather(*(c.send_tick(tick) for c in callers))
    return lags


def _gateway(
    workdir: Path, name: str, max_calls: int, core: int | None, rasa_url: str, model: str | None = None
) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    config = workdir / f"config-{name}.yml"
    config.write_text(
        (f"model: {{path: '{model}'}}\n" if model else "")
        + f"gateway: {{port: {port}, max_calls: {max_calls}}}\n"
        "asr: {engine: none}\ntts: {engine: none}\n"
        f"rasa: {{url: '{rasa_url}', replicas: [], timeout_s: 10, handoff_after_fallbacks: 0}}\n"
    )
    stderr = workdir / f"gateway-{name}.stderr"
    command = [sys.executable, "-m", "connectors.gateway", "--config", str(config),
               "--log-dir", str(workdir / f"logs-{name}"), "--log-level", "WARNING"]
    if core is not None:
        command = ["taskset", "-c", str(core), *command]
    env = {**os.environ, "EMOTUNE_GATEWAY__AUTH_TOKEN": BENCH_TOKEN, "EMOTUNE_GATEWAY__METRICS_TOKEN": BENCH_TOKEN}
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=stderr.open("wb"), env=env)
    return process, port, stderr


async def _calls(
    port: int, callers: list[Caller], seconds: float, window_s: float, hop_s: float, fallback: str
) -> tuple[list[float], float]:
    url = f"ws://127.0.0.1:{port}/v1/stream"
    for start in range(0, len(callers), 25):  # handshakes in small bursts, like real arrivals
        await asyncio.gather(*(c.open(url, window_s, hop_s, fallback) for c in callers[start : start + 25]))
    started = time.monotonic()
    lags = await _pace(callers, int(round(seconds / TICK_S)) + 50)
    await asyncio.gather(*(c.close(reply_wait_s=15.0) for c in callers))
    return lags, started


def _summary(callers: list[Caller], measure_from: float) -> dict[str, Any]:
    latencies = [lat for c in callers for sent, lat in c.latencies if sent >= measure_from]
    stats = percentiles(latencies)
    return {
        "latency_s": stats | {"max": round(max(latencies), 4) if latencies else None},
        "events": sum(c.events for c in callers),
        "turns_sent": sum(c.turns_sent for c in callers),
        "replies": sum(c.replies for c in callers),
        "fallback_replies": sum(c.fallbacks for c in callers),
        "lost_turns": sum(max(0, c.turns_sent - c.replies) for c in callers),
        "caller_errors": sum(len(c.errors) for c in callers),
    }


async def run_level(
    n: int, audio: bytes, workdir: Path, seconds: float, warmup_s: float, gateway_core: int | None,
    model: str | None = None,
) -> dict[str, Any]:
    config = EmotuneConfig()
    window_s, hop_s = config.streaming.window_s, config.streaming.hop_s
    process, port, stderr = _gateway(workdir, f"n{n}", n + 10, gateway_core, "http://127.0.0.1:9", model)
    try:
        await wait_healthy(port, process)
        rss_idle = rss_mb(process.pid)
        callers = [Caller(i, audio, start_tick=(i * 50) // max(n, 1) % 50) for i in range(n)]
        cpu0, wall0 = _cpu_s(process.pid), time.monotonic()
        lags, started = await _calls(port, callers, seconds + warmup_s, window_s, hop_s, config.rasa.fallback_reply)
        cpu_s, wall_s = _cpu_s(process.pid) - cpu0, time.monotonic() - wall0
        rss_end = rss_mb(process.pid)
        async with httpx.AsyncClient() as http:
            metrics_text = (await http.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {BENCH_TOKEN}"})).text
    finally:
        process.terminate()
        process.wait(30)
    summary = _summary(callers, started + warmup_s)
    dropped = _counter(metrics_text, "emotune_emotion_windows_dropped_total")
    lag_p99 = histogram_quantile(metrics_text, "emotune_event_loop_lag_seconds", 0.99)
    client_lag = percentiles(lags) | {"max": round(max(lags), 4)}
    held = (
        summary["latency_s"]["p99"] is not None and summary["latency_s"]["p99"] < HELD_P99_S
        and not any(dropped.values()) and client_lag["max"] < CLIENT_LAG_LIMIT_S and not summary["caller_errors"]
    )
    level = {
        "callers": n,
        "held": bool(held),
        **summary,
        "windows_dropped": dropped,
        "event_loop_lag_p99_s": None if lag_p99 is None else round(lag_p99, 4),
        "event_loop_lag_p999_s": _round(histogram_quantile(metrics_text, "emotune_event_loop_lag_seconds", 0.999)),
        "gateway_cpu_cores": round(cpu_s / wall_s, 3),
        "gateway_rss_mb": {"idle": round(rss_idle, 1), "end": round(rss_end, 1)},
        "client_lag_s": client_lag,
        "gateway_tracebacks": stderr.read_text(errors="replace").count("Traceback"),
        "load_average_1m_after": round(os.getloadavg()[0], 2),  # the machine is shared: how busy it was
    }
    print(f"[{n:4d} callers] held={level['held']} p99={summary['latency_s']['p99']} s "
          f"loop-lag p99={level['event_loop_lag_p99_s']} s cpu={level['gateway_cpu_cores']} "
          f"rss={rss_end:.0f} MB dropped={dropped} client lag max={client_lag['max']} s", flush=True)
    return level


def _command() -> str:
    return " ".join([".venv/bin/python -m benchmarks.bench_gateway_emotion", *sys.argv[1:]])


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


async def run_soak(
    n: int, waves: int, audio: bytes, workdir: Path, call_s: float, rasa_share: float,
    gateway_core: int | None, max_s: float, rasa_root: Path | None = None,
) -> dict[str, Any]:
    config = EmotuneConfig()
    window_s, hop_s = config.streaming.window_s, config.streaming.hop_s
    stack = await asyncio.to_thread(RasaStack("contact_center", ci=True, repo_root=rasa_root).start)
    deadline = time.monotonic() + max_s
    process, port, stderr = _gateway(workdir, "soak", n + 10, gateway_core, stack.url)
    results: list[dict[str, Any]] = []
    try:
        await wait_healthy(port, process)
        rss_start = rss_mb(process.pid)
        turn_ticks = (int(4 / TICK_S), int(9 / TICK_S))  # text turns at 4 s and 9 s of a Rasa call
        rasa_every = max(1, round(1 / rasa_share)) if rasa_share > 0 else 0
        for wave in range(waves):
            if time.monotonic() + call_s + 30 > deadline:
                print(f"soak: time bound reached after {wave} waves", flush=True)
                break
            callers = [
                Caller(wave * n + i, audio, start_tick=(i * 50) // n % 50,
                       turn_ticks=turn_ticks if rasa_every and i % rasa_every == 0 else ())
                for i in range(n)
            ]
            lags, started = await _calls(port, callers, call_s, window_s, hop_s, config.rasa.fallback_reply)
            await asyncio.sleep(2.0)  # calls closed, per-call state released
            entry = {
                "wave": wave + 1,
                "load_average_1m_after": round(os.getloadavg()[0], 2),
                "calls": n,
                "rasa_calls": sum(1 for c in callers if c.turn_ticks),
                **_summary(callers, started + 3.0),
                "client_lag_max_s": round(max(lags), 4),
                "gateway_rss_mb": round(rss_mb(process.pid), 1),
            }
            results.append(entry)
            print(f"soak wave {wave + 1}: p99={entry['latency_s']['p99']} s turns {entry['replies']}/"
                  f"{entry['turns_sent']} fallbacks {entry['fallback_replies']} RSS {entry['gateway_rss_mb']} MB",
                  flush=True)
        async with httpx.AsyncClient() as http:
            metrics_text = (await http.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {BENCH_TOKEN}"})).text
    finally:
        process.terminate()
        process.wait(30)
        await asyncio.to_thread(stack.stop)
    log = stderr.read_text(errors="replace")
    return {
        "concurrency": n,
        "waves": results,
        "calls_total": sum(w["calls"] for w in results),
        "rasa_calls_total": sum(w["rasa_calls"] for w in results),
        "turns_sent": sum(w["turns_sent"] for w in results),
        "lost_turns": sum(w["lost_turns"] for w in results),
        "fallback_replies": sum(w["fallback_replies"] for w in results),
        "gateway_tracebacks": log.count("Traceback"),
        "gateway_error_lines": sum(" ERROR " in line or '"level": "ERROR"' in line for line in log.splitlines()),
        "errors_total": _counter(metrics_text, "emotune_errors_total"),
        "windows_dropped": _counter(metrics_text, "emotune_emotion_windows_dropped_total"),
        "event_loop_lag_p99_s": _round(histogram_quantile(metrics_text, "emotune_event_loop_lag_seconds", 0.99)),
        "gateway_rss_mb": {"start": round(rss_start, 1), "after_each_wave": [w["gateway_rss_mb"] for w in results]},
    }


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    if "levels" in report:
        levels = report["levels"]
        n = [lv["callers"] for lv in levels]
        axes[0].plot(n, [1000 * (lv["latency_s"]["p99"] or 0) for lv in levels], "o-", label="p99 frame->event")
        axes[0].plot(n, [1000 * (lv["event_loop_lag_p99_s"] or 0) for lv in levels], "s-", label="loop lag p99")
        axes[0].axhline(1000 * HELD_P99_S, color="grey", ls="--", lw=0.8)
        axes[0].set(xlabel="real-time callers (gateway on one core)", ylabel="ms", title="emotion path latency")
        axes[0].legend()
        axes[1].plot(n, [lv["gateway_rss_mb"]["end"] for lv in levels], "o-", label="RSS MB")
        axes[1].plot(n, [100 * lv["gateway_cpu_cores"] for lv in levels], "s-", label="CPU % of a core")
        axes[1].set(xlabel="real-time callers", title="gateway process")
        axes[1].legend()
    else:
        waves = report["waves"]
        x = [w["wave"] for w in waves]
        axes[0].plot(x, [1000 * (w["latency_s"]["p99"] or 0) for w in waves], "o-")
        axes[0].set(xlabel="wave", ylabel="ms", title=f"p99 frame->event, {report['concurrency']} callers")
        axes[1].plot(x, [w["gateway_rss_mb"] for w in waves], "o-")
        axes[1].set(xlabel="wave", ylabel="MB", title="gateway RSS after each wave")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    if args.client_core is not None:
        os.sched_setaffinity(0, {args.client_core})
    audio = _sample_mulaw()
    machine = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
               "gateway_core": args.gateway_core, "client_core": args.client_core}
    with tempfile.TemporaryDirectory(prefix="emotune-bench-emotion-") as tmp:
        workdir = Path(tmp)
        if args.soak:
            soak = await run_soak(args.callers[0], args.waves, audio, workdir, args.call_seconds, args.rasa_share,
                                  args.gateway_core, args.max_seconds, args.rasa_root)
            return {"benchmark": "gateway emotion path soak", "command": _command(), "machine": machine,
                    "call_s": args.call_seconds, "rasa_share": args.rasa_share, **soak}
        levels = [await run_level(n, audio, workdir, args.seconds, args.warmup, args.gateway_core, args.model)
                  for n in args.callers]
    held = [lv["callers"] for lv in levels if lv["held"]]
    return {
        "benchmark": "gateway emotion path, real-time emotune-ws callers, measured at the client",
        "command": _command(),
        "machine": machine,
        "model": str(args.model or EmotuneConfig().model.path),
        "seconds_per_level": args.seconds,
        "warmup_s": args.warmup,
        "held_if": f"p99 frame->event < {HELD_P99_S * 1000:.0f} ms, 0 windows dropped, client clock max lag "
                   f"< {CLIENT_LAG_LIMIT_S * 1000:.0f} ms",
        "largest_held_on_one_core": max(held) if held else None,
        "levels": levels,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_gateway_emotion", description=__doc__.split("\n\n")[0])
    parser.add_argument("--callers", default=None, help="comma-separated levels (soak: one concurrency)")
    parser.add_argument("--seconds", type=float, default=25.0, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--gateway-core", type=int, default=0, help="taskset core for the gateway (-1: none)")
    parser.add_argument("--client-core", type=int, default=1, help="core for the callers (-1: none)")
    parser.add_argument("--soak", action="store_true")
    parser.add_argument("--waves", type=int, default=5)
    parser.add_argument("--call-seconds", type=float, default=15.0)
    parser.add_argument("--rasa-share", type=float, default=0.1, help="share of soak calls with Rasa turns")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="soak time bound")
    parser.add_argument("--rasa-root", type=Path, default=None,
                        help="checkout whose bot/ Rasa serves in the soak (default: this one)")
    parser.add_argument("--model", default=None,
                        help="emotion model the gateway loads (default: the code default, v1)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    default = "100" if args.soak else "50,100,150,200,250,300"
    args.callers = [int(x) for x in (args.callers or default).split(",")]
    args.gateway_core = None if args.gateway_core < 0 else args.gateway_core
    args.client_core = None if args.client_core < 0 else args.client_core
    out = args.out or RESULTS / ("soak_gateway_emotion.json" if args.soak else "bench_gateway_emotion.json")
    report = asyncio.run(_main(args))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    _plot(report, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
