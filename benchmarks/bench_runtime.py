"""Streaming-runtime benchmark: how many real-time telephone streams one core sustains.

For 1, 10, 100, 200, 300 and 500 simultaneous streams of real speech (RAVDESS clips from ../shared when present,
else a generated voice-like signal), each stream receives a 20 ms mu-law 8 kHz frame every 20 ms of
wall time (real pacing, calls starting at random offsets), on ONE core (sched_setaffinity) with one
onnxruntime thread. Reported per stream count: whether real time held, p50/p95/p99 label latency
(from the moment the frame that closes a window is due to the moment its event exists), CPU per
stream, process RSS. The same model run the SpeechBrain/PyTorch way (torch model, torch fbank
recomputed over each 2 s window) runs in a subprocess, side by side.

    .venv/bin/python benchmarks/bench_runtime.py            # full run, a few minutes
    .venv/bin/python benchmarks/bench_runtime.py --quick    # CI smoke: small counts, 3 s
Writes benchmarks/results/bench_runtime.json and .png (or --output DIR).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "data" / "ravdess"
FRAME_S = 0.02
FRAME_8K = 160


def _rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_speech(seconds: float, n_sources: int = 24) -> tuple[list[np.ndarray], str]:
    """Real speech at 8 kHz (one long signal per source actor), or a generated stand-in."""
    from emotion_runtime.audio import resample

    if (SHARED / "manifest.csv").is_file():
        import csv

        import soundfile as sf

        by_actor: dict[str, list[str]] = {}
        with open(SHARED / "manifest.csv") as handle:
            for row in csv.DictReader(handle):
                by_actor.setdefault(row["speaker"], []).append(row["path"])
        sources = []
        for actor in sorted(by_actor)[:n_sources]:
            pieces, total = [], 0.0
            for rel in by_actor[actor]:
                audio, rate = sf.read(SHARED / rel, dtype="float32")
                pieces.append(resample(audio, rate, 8000))
                total += len(audio) / rate
                if total >= seconds:
                    break
            sources.append(np.concatenate(pieces))
        return sources, f"RAVDESS speech ({len(sources)} actors) from {SHARED}"
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 8000)) / 8000
    out = []
    for i in range(n_sources):
        phase = 2 * np.pi * np.cumsum(110 + 10 * i + 20 * np.sin(2 * np.pi * 0.5 * t)) / 8000
        voice = sum(np.sin(k * phase) / k for k in range(1, 6)) * (np.sin(2 * np.pi * 2.5 * t) > 0)
        out.append((0.1 * voice + 0.002 * rng.standard_normal(t.size)).astype(np.float32))
    return out, "generated voice-like signal (../shared not present)"


class _CallAudio:
    """Each stream's 20 ms mu-law frames, served from one encoded copy per source speaker.

    Streams start at different offsets into their source (so calls do not speak in unison) but
    share its bytes: the harness's own audio stays ~3 MB and out of the runtime's RSS figure.
    """

    def __init__(self, sources: list[np.ndarray], n_streams: int, seconds: float, seed: int) -> None:
        from emotion_runtime.audio import mulaw_encode

        n_samples = int(seconds / FRAME_S) * FRAME_8K
        self._encoded = [mulaw_encode(np.resize(source, n_samples + 8000 * 5)) for source in sources]
        rng = np.random.default_rng(seed)
        self._starts = [int(rng.integers(0, 8000 * 5)) for _ in range(n_streams)]
        self.frames_per_stream = int(seconds / FRAME_S)

    def frame(self, stream: int, k: int) -> bytes:
        encoded = self._encoded[stream % len(self._encoded)]
        start = self._starts[stream] + k * FRAME_8K
        return encoded[start : start + FRAME_8K]


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    arr = np.array(values) * 1000
    return {k: round(float(np.percentile(arr, q)), 2) for k, q in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))}


class _PacedRun:
    """Ticks every FRAME_S like a telephony server, counts ticks that start a frame late, and
    computes the figures of the run (shared by both paths so they are measured alike)."""

    def __init__(self, n_streams: int, seconds: float, offsets: np.ndarray) -> None:
        self.n_streams, self.seconds = n_streams, seconds
        self.n_ticks = int(seconds / FRAME_S) + int(offsets.max()) + 1
        self.latencies: list[float] = []
        self.late_ticks = 0
        self.wall0 = self.cpu0 = 0.0

    def ticks(self) -> Iterator[tuple[int, float]]:
        """(tick, when it was due), sleeping until due; a tick that starts late is not skipped."""
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()
        for tick in range(self.n_ticks):
            due = self.wall0 + tick * FRAME_S
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            elif now - due > FRAME_S:
                self.late_ticks += 1
            yield tick, due

    def hopeless(self) -> bool:
        return self.wall0 + self.n_ticks * FRAME_S * 3 < time.perf_counter()

    def result(self, path: str) -> dict[str, Any]:
        wall = time.perf_counter() - self.wall0
        cpu = time.process_time() - self.cpu0
        audio_s = self.n_streams * self.seconds
        lag = wall - self.n_ticks * FRAME_S
        return {
            "path": path,
            "streams": self.n_streams,
            "audio_seconds_per_stream": self.seconds,
            "realtime": bool(lag < 0.5 and self.late_ticks < 0.05 * self.n_ticks),
            "final_lag_s": round(lag, 3),
            "late_tick_share": round(self.late_ticks / self.n_ticks, 4),
            "labels": len(self.latencies),
            "label_latency_ms": _percentiles(self.latencies),
            "cpu_core_share": round(cpu / wall, 3),
            "cpu_ms_per_stream_second": round(cpu / audio_s * 1000, 3),
            "streams_per_core_estimate": int(1000 / (cpu / audio_s * 1000)) if cpu > 0 else None,
            "rss_mb": round(_rss_mb(), 1),
        }


def run_onnx(
    n_streams: int, seconds: float, audio: _CallAudio, variant: str, batch: int, model_path: str | None = None
) -> dict[str, Any]:
    """Real-time paced run of ``n_streams`` through the torch-free runtime (StreamHub).

    ``model_path`` (a v2 model folder or a v1 ``.onnx``) replaces the shipped v1 model."""
    from emotion_runtime import EmotionModel, EmotionStream, StreamHub

    if model_path:
        model = EmotionModel.load(model_path, intra_op_threads=1)
        variant = Path(model_path).name
    else:
        v1 = ROOT / "models" / "emotune-ser-v1"
        model = EmotionModel.load(v1 / ("emotion.int8.onnx" if variant == "int8" else "emotion.onnx"), v1 / "emotion.json", intra_op_threads=1)
    hub = StreamHub(model, max_batch=batch)
    rng = np.random.default_rng(n_streams)
    streams = [EmotionStream(model, encoding="mulaw", sample_rate=8000) for _ in range(n_streams)]
    # Calls start at random offsets within the first second so windows do not all fall due at once.
    offsets = rng.integers(0, int(1 / FRAME_S), size=n_streams)
    run = _PacedRun(n_streams, seconds, offsets)
    for tick, due in run.ticks():
        for i, stream in enumerate(streams):
            k = tick - offsets[i]
            if 0 <= k < audio.frames_per_stream:
                hub.feed(stream, audio.frame(i, k))
        events = hub.flush()
        run.latencies.extend([time.perf_counter() - due] * len(events))
    return run.result(f"onnxruntime {variant} (torch-free runtime, StreamHub batch<={batch})")


def run_torch(n_streams: int, seconds: float, audio: _CallAudio) -> dict[str, Any]:
    """The anchor: SpeechBrain-style PyTorch inference, fbank recomputed over each window."""
    import torch

    from emotion_models.features_torch import TorchFbank
    from emotion_models.model import load_checkpoint
    from emotion_runtime.audio import StreamingResampler, mulaw_decode

    torch.set_num_threads(1)
    model, _ = load_checkpoint(ROOT / "models" / "emotune-ser-v1" / "model.ckpt")
    model.eval()
    fbank = TorchFbank()
    window, hop = 32000, 16000
    rng = np.random.default_rng(n_streams)
    offsets = rng.integers(0, int(1 / FRAME_S), size=n_streams)
    resamplers = [StreamingResampler(8000, 16000) for _ in range(n_streams)]
    buffers = [np.zeros(0, dtype=np.float32) for _ in range(n_streams)]
    since = [0] * n_streams
    run = _PacedRun(n_streams, seconds, offsets)
    with torch.inference_mode():
        for tick, due in run.ticks():
            closed = 0
            for i in range(n_streams):
                k = tick - offsets[i]
                if not 0 <= k < audio.frames_per_stream:
                    continue
                samples = resamplers[i].process(mulaw_decode(audio.frame(i, k)))
                buffers[i] = np.concatenate([buffers[i], samples])[-window:]
                since[i] += samples.size
                if buffers[i].size >= window and since[i] >= hop:
                    since[i] = 0
                    # One call per call's window, as an app calls EncoderClassifier.classify_batch.
                    logits, _, _ = model(fbank(torch.from_numpy(buffers[i])[None]))
                    torch.softmax(logits, dim=1)
                    closed += 1
            run.latencies.extend([time.perf_counter() - due] * closed)
            if run.hopeless():
                break  # hopelessly behind: stop rather than run for minutes
    return run.result("PyTorch (SpeechBrain way: torch model, fbank per window, one call per window, no VAD gating)")


def _child(args: argparse.Namespace) -> int:
    """One measurement in a fresh process (own RSS, own core)."""
    os.sched_setaffinity(0, {args.core})
    # The float sources are dropped once encoded: only the shared mu-law copies stay in memory.
    audio = _CallAudio(load_speech(args.seconds + 5)[0], args.streams, args.seconds, seed=args.streams)
    run = run_torch if args.path == "torch" else partial(run_onnx, variant=args.path, batch=args.batch, model_path=args.model)
    result = run(args.streams, args.seconds, audio)
    result["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    print(json.dumps(result))
    return 0


def _measure(path: str, streams: int, seconds: float, batch: int, core: int, model: str | None = None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", "--path", path, "--streams", str(streams),
           "--seconds", str(seconds), "--batch", str(batch), "--core", str(core), *(["--model", model] if model else [])]
    # One BLAS thread: pinned to one core, OpenBLAS's extra threads only spin against each other.
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    if proc.returncode != 0:
        return {"path": path, "streams": streams, "error": proc.stderr[-800:]}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _plot(results: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 5))
    for label, rows in _by_path(results).items():
        rows = [r for r in rows if "error" not in r and r["label_latency_ms"]["p99"] is not None]
        if not rows:
            continue
        xs = [r["streams"] for r in rows]
        ax1.plot(xs, [r["label_latency_ms"]["p99"] for r in rows], marker="o", label=label)
        ax2.plot(xs, [r["cpu_ms_per_stream_second"] for r in rows], marker="o", label=label)
    ax1.set(xscale="log", yscale="log", xlabel="simultaneous streams (one core)", ylabel="p99 label latency (ms)")
    ax1.axhline(50, color="grey", linestyle=":", label="target 50 ms")
    ax2.set(xscale="log", xlabel="simultaneous streams (one core)", ylabel="CPU ms per stream-second")
    # One shared legend under the plots: the path names are long and would cover the curves.
    handles, labels = ax1.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.suptitle("Emotune streaming runtime vs the PyTorch path (8 kHz mu-law, 2 s window, 1 s hop)")
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _by_path(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in results:
        grouped.setdefault(str(row.get("path")), []).append(row)
    return grouped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI smoke: 1 and 10 streams, 3 s")
    parser.add_argument("--seconds", type=float, default=None, help="audio seconds per stream")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--streams", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--core", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--model", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    counts = [1, 10] if args.quick else [1, 10, 100, 200, 300, 500]
    torch_counts = [1, 10] if args.quick else [1, 10, 50, 100]
    core = max(os.sched_getaffinity(0))
    plan: list[tuple[str, int, int]] = [("fp32", n, 64) for n in counts]
    plan += [("int8", n, 64) for n in ([10] if args.quick else [100, 500])]
    if not args.quick:
        plan += [("fp32", 100, 1)]  # batching on/off at the same load
    results = []
    for path, n, batch in plan:
        print(f"[bench] onnxruntime {path}: {n} streams x {seconds:g} s (batch<={batch}) ...", flush=True)
        results.append(_measure(path, n, seconds, batch, core))
        _print_row(results[-1])
    if _torch_available():
        for n in torch_counts:
            print(f"[bench] PyTorch path: {n} streams x {seconds:g} s ...", flush=True)
            results.append(_measure("torch", n, seconds, 0, core))
            _print_row(results[-1])
            if not results[-1].get("realtime", False):
                break
    _, source = load_speech(1.0, n_sources=1)
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpu": _cpu_name(), "cores_used": 1, "python": platform.python_version(), "platform": platform.platform()},
        "audio": source + ", as 8 kHz mu-law 20 ms frames",
        "window_s": 2.0,
        "hop_s": 1.0,
        "results": results,
        "summary": _summary(results),
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "bench_runtime.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot(results, args.output / "bench_runtime.png")
    print(json.dumps(report["summary"], indent=2))
    print(f"[bench] wrote {args.output / 'bench_runtime.json'} and bench_runtime.png")
    return 0


def _torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None and (ROOT / "models" / "emotune-ser-v1" / "model.ckpt").is_file()


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    def best(prefix: str) -> int | None:
        rows = [r for r in results if str(r.get("path", "")).startswith(prefix) and "error" not in r and r.get("realtime")]
        return max((r["streams"] for r in rows), default=None)

    def estimate(prefix: str) -> int | None:
        # Only rows that held real time: a row that fell behind did not do the work it was given.
        rows = [r for r in results if str(r.get("path", "")).startswith(prefix) and "error" not in r
                and r["streams"] >= 10 and r.get("realtime")]  # fmt: skip
        return max((r["streams_per_core_estimate"] or 0 for r in rows), default=None)

    onnx_est, torch_est = estimate("onnxruntime fp32"), estimate("PyTorch")
    at100 = [r for r in results if str(r.get("path", "")).startswith("onnxruntime fp32 (torch-free runtime, StreamHub batch<=64")
             and r.get("streams") == 100 and "error" not in r]
    return {
        "max_realtime_streams_measured_fp32": best("onnxruntime fp32"),
        "max_realtime_streams_measured_int8": best("onnxruntime int8"),
        "max_realtime_streams_measured_torch": best("PyTorch"),
        "streams_per_core_estimate_fp32": onnx_est,
        "streams_per_core_estimate_torch": torch_est,
        "speedup_vs_torch": round(onnx_est / torch_est, 1) if onnx_est and torch_est else None,
        "p99_label_latency_ms_at_100_fp32": at100[0]["label_latency_ms"]["p99"] if at100 else None,
        "max_rss_mb_fp32": max((r.get("peak_rss_mb", 0) for r in results if str(r.get("path", "")).startswith("onnxruntime")), default=None),
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _print_row(row: dict[str, Any]) -> None:
    if "error" in row:
        print(f"    ERROR: {row['error'][-300:]}")
        return
    lat = row["label_latency_ms"]
    print(f"    realtime={row['realtime']} labels={row['labels']} p50/p95/p99={lat['p50']}/{lat['p95']}/{lat['p99']} ms "
          f"cpu={row['cpu_ms_per_stream_second']} ms/stream-s (~{row['streams_per_core_estimate']} streams/core) "
          f"rss={row['peak_rss_mb']} MB", flush=True)


if __name__ == "__main__":
    sys.exit(main())
