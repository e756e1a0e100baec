"""Kokoro's peak memory per sentence: onnxruntime's CPU arena off (the first build) vs on and shrunk
after every run (as shipped), on the same sentences at the same speeds.

    nice -n 10 .venv/bin/python -m benchmarks.bench_tts_memory   # writes benchmarks/results/bench_tts_memory.json

The sentences are those of ``bench_tts``'s replies (the contact-center bot's first ten responses in
their four tones, slots filled), each synthesised uncached at its tone's speed and voice blend, plus
one long sentence (~330 phoneme tokens: cut into pieces of at most ``CHUNK_TOKENS``). Each mode runs
in a fresh process (RSS is per process). Before every sentence the kernel's peak-RSS counter is reset
(``/proc/self/clear_refs``, 5), so ``peak_mb`` is that sentence's own high-water mark; ``after_mb`` is
the RSS once it returned. Times are wall seconds per sentence (upper bounds on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

OUT = REPO_ROOT / "benchmarks" / "results" / "bench_tts_memory.json"
LONG = ("I'm sorry, no colleague is available on this line right now, but I can still help you with "
        "order status, refunds, cancellations, complaints and billing, and if you would rather wait, "
        "I can note your number so that a colleague calls you back as soon as one is free, usually "
        "within the hour on weekdays and within a day at the weekend.")  # fmt: skip

__all__ = ["main"]


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _measure(arena: bool, replies: int) -> dict[str, Any]:
    """One mode, in this process: every sentence uncached, its own peak RSS."""
    from benchmarks.bench_tts import DOMAIN, fill_slots
    from connectors.speech.kokoro import KokoroSynthesizer, domain_replies, split_sentences
    from emotune.config import EmotuneConfig, TtsConfig

    policy = EmotuneConfig().tone_policy
    every = [(filled, tone) for text, tone in domain_replies(DOMAIN) if (filled := fill_slots(text))]
    step = max(1, len(every) // max(1, replies))
    step -= 1 if step > 1 and step % 2 == 0 else 0  # bench_tts's selection
    chosen = every[::step][:replies]
    with tempfile.TemporaryDirectory(prefix="bench-tts-memory-") as cache_dir:
        before = _status_mb("VmRSS")
        voice = KokoroSynthesizer(TtsConfig(engine="kokoro", cache_dir=Path(cache_dir), cache_max_mb=0),
                                  memory_arena=arena)  # fmt: skip
        loaded = _status_mb("VmRSS")
        work = [(sentence, tone) for text, tone in chosen for sentence in split_sentences(text)]
        work.append((LONG, "standard"))
        rows: list[dict[str, Any]] = []
        for sentence, tone in work:
            prosody = policy.prosody[tone]
            blend, speed = voice.blend_for(prosody), float(prosody.rate)
            Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
            started = time.perf_counter()
            audio = voice.render_sentence(sentence, blend, speed)
            rows.append({"text": sentence, "tone": tone, "speed": speed,
                         "tokens": len(voice.tokens(voice.phonemes(sentence))),
                         "audio_s": round(audio.size / 24000, 2), "wall_s": round(time.perf_counter() - started, 2),
                         "peak_mb": _status_mb("VmHWM"), "after_mb": _status_mb("VmRSS")})  # fmt: skip
            print(f"  arena={arena!s:5} {tone:8s} {rows[-1]['tokens']:3d} tokens {rows[-1]['audio_s']:5.2f} s "
                  f"peak {rows[-1]['peak_mb']:7.1f} MB after {rows[-1]['after_mb']:6.1f} MB", flush=True)  # fmt: skip
    peaks = [float(r["peak_mb"]) for r in rows]
    walls = [float(r["wall_s"]) for r in rows]
    return {"memory_arena": arena, "rss_before_load_mb": before, "rss_loaded_mb": loaded,
            "peak_mb": {"max": max(peaks), "p50": statistics.median(peaks)},
            "after_mb_max": max(r["after_mb"] for r in rows), "rss_end_mb": _status_mb("VmRSS"),
            "wall_s": {"sum": round(sum(walls), 1), "p50": statistics.median(walls)},
            "sentences": len(rows), "rows": rows}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replies", type=int, default=40, help="bench_tts's replies (their sentences)")
    parser.add_argument("--output", type=Path, default=OUT)
    parser.add_argument("--mode", choices=["arena", "no-arena"], help=argparse.SUPPRESS)  # one child process
    args = parser.parse_args(argv)
    if args.mode:
        print("RESULT " + json.dumps(_measure(args.mode == "arena", args.replies)), flush=True)
        return 0
    report: dict[str, Any] = {
        "what": "Kokoro peak RSS per sentence (uncached), onnxruntime CPU arena off vs on + shrunk after each run",
        "command": "python -m benchmarks.bench_tts_memory " + " ".join(argv if argv is not None else sys.argv[1:]),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_start": [round(x, 2) for x in os.getloadavg()]},
        "modes": {},
    }  # fmt: skip
    for mode in ("no-arena", "arena"):
        child = subprocess.run([sys.executable, "-m", "benchmarks.bench_tts_memory", "--mode", mode,
                                "--replies", str(args.replies)], cwd=REPO_ROOT, capture_output=True, text=True,
                               check=True)  # fmt: skip
        sys.stdout.write("".join(line + "\n" for line in child.stdout.splitlines() if not line.startswith("RESULT ")))
        result = next(line for line in child.stdout.splitlines() if line.startswith("RESULT "))
        report["modes"][mode] = json.loads(result[len("RESULT ") :])
    report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for mode, result in report["modes"].items():
        print(f"{mode:9s} peak max {result['peak_mb']['max']:.0f} MB p50 {result['peak_mb']['p50']:.0f} MB, "
              f"loaded {result['rss_loaded_mb']:.0f} MB, after max {result['after_mb_max']:.0f} MB, "
              f"{result['wall_s']['sum']:.0f} s for {result['sentences']} sentences")  # fmt: skip
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
