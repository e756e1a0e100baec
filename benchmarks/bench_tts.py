"""The bot's voice: intelligibility on the phone line and synthesis cost per reply, Kokoro vs espeak-ng.

Run from the repo root with the toolkit venv (on a shared machine, niced)::

    nice -n 10 .venv/bin/python -m benchmarks.bench_tts      # writes benchmarks/results/bench_tts.json

The replies are the contact-center bot's responses (``bot/contact_center/domain.yml``, every
variant, each spoken in the tone it is written for; slots filled with fixed example values), every
k-th of those that fill (k odd, so the four tone variants of a response rotate; with 96 fillable
replies and ``--replies 40``, k = 1: the first ten responses in all four tones). Each is synthesised by each engine, sent through the phone
line the gateway uses (24 / 22.05 kHz -> 8 kHz G.711 mu-law -> 16 kHz) and recognised by our Whisper
recogniser (base, int8, beam 1, one worker, as the gateway runs it); WER as in ``bench_asr``.

Cost per reply: wall time, CPU time (this process and its children: espeak-ng is a subprocess)
and real-time factor (CPU / audio seconds), uncached (an empty cache folder) and cached (the same
reply again: read from the disk cache). Kokoro runs ``--threads`` onnxruntime threads (1 as
shipped). Memory: this process's RSS before loading Kokoro, after loading it, and its peak after
every reply; the Whisper worker is another process and not in these figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.bench_asr import phone_line, wer_counts  # noqa: E402
from connectors.speech.asr import create_recognizer  # noqa: E402
from connectors.speech.kokoro import KokoroSynthesizer, domain_replies  # noqa: E402
from connectors.speech.tts import EspeakSynthesizer, SpeechSynthesizer  # noqa: E402
from emotune.config import AsrConfig, EmotuneConfig, TtsConfig  # noqa: E402

__all__ = ["main", "SLOT_VALUES", "fill_slots"]

DOMAIN = REPO_ROOT / "bot" / "contact_center" / "domain.yml"
OUT = REPO_ROOT / "benchmarks" / "results" / "bench_tts.json"
# What the actions put in the templates' slots (one fixed example each).
SLOT_VALUES = {"kind": "order number", "heard": "4 7 1 1", "digits": "6", "where": "in your confirmation email"}
_SLOT = re.compile(r"\{(\w+)\}")


def fill_slots(text: str) -> str | None:
    """The template with example values; None when it has a slot we have no value for."""
    if any(name not in SLOT_VALUES for name in _SLOT.findall(text)):
        return None
    return _SLOT.sub(lambda m: SLOT_VALUES[m.group(1)], text)


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _timed(engine: SpeechSynthesizer, text: str, prosody: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), _cpu_s()
    speech = engine.synthesize(text, prosody)
    return speech, time.perf_counter() - wall, _cpu_s() - cpu


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(values: list[float], digits: int = 1) -> dict[str, float]:
    return {"p50": round(statistics.median(values), digits), "p95": round(_pct(values, 0.95), digits),
            "mean": round(statistics.fmean(values), digits)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replies", type=int, default=40, help="responses taken evenly from the domain")
    parser.add_argument("--threads", type=int, default=1, help="Kokoro onnxruntime threads")
    parser.add_argument("--output", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    command = "python -m benchmarks.bench_tts " + " ".join(argv if argv is not None else sys.argv[1:])

    policy = EmotuneConfig().tone_policy
    every = [(filled, tone) for text, tone in domain_replies(DOMAIN) if (filled := fill_slots(text))]
    step = max(1, len(every) // max(1, args.replies))
    step -= 1 if step > 1 and step % 2 == 0 else 0  # odd: the four tone variants of a response rotate
    replies = every[::step][: args.replies]

    rss_before = _rss_mb()
    with tempfile.TemporaryDirectory(prefix="bench-tts-cache-") as cache_dir:
        load_started = time.perf_counter()
        kokoro = KokoroSynthesizer(TtsConfig(engine="kokoro", threads=args.threads, cache_dir=Path(cache_dir),
                                             cache_max_mb=1024))  # fmt: skip
        load_s = time.perf_counter() - load_started
        rss_loaded = _rss_mb()
        engines: list[tuple[str, SpeechSynthesizer]] = [("kokoro", kokoro), ("espeak-ng", EspeakSynthesizer("en-us"))]
        recognizer = create_recognizer(AsrConfig(engine="whisper", workers=1))
        report: dict[str, Any] = {
            "what": "bot replies synthesised, sent through the 8 kHz mu-law line, recognised by Whisper base",
            "command": command,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "load_average": [round(x, 2) for x in os.getloadavg()]},
            "note": "a 2-vCPU machine shared with other jobs: times are upper bounds",
            "replies": len(replies), "of_replies": len(every), "slot_values": SLOT_VALUES,
            "kokoro": {"voice": kokoro.config.kokoro_voice, "soft_voice": kokoro.config.soft_voice,
                       "bright_voice": kokoro.config.bright_voice, "threads": args.threads,
                       "engine_version": kokoro.engine_version, "load_s": round(load_s, 2)},
            "memory_mb": {"rss_before_kokoro": rss_before, "rss_after_kokoro_load": rss_loaded},
            "engines": {},
        }  # fmt: skip
        try:
            recognizer.transcribe(np.zeros(16000, dtype=np.float32))  # warm-up: worker up, model loaded
            for name, engine in engines:
                rng = np.random.default_rng(args.seed)
                rows, edits, words = [], 0, 0
                by_tone: dict[str, list[int]] = {}
                for text, tone in replies:
                    prosody = policy.prosody[tone]
                    made_before = getattr(engine, "sentences_synthesized", 0)
                    speech, wall, cpu = _timed(engine, text, prosody)
                    # Kokoro caches sentences: one already rendered for an earlier reply is reused.
                    made = getattr(engine, "sentences_synthesized", 0) - made_before
                    _again, cached_wall, cached_cpu = _timed(engine, text, prosody)
                    line = phone_line(speech.at_rate(16000).samples, None, rng)
                    heard = recognizer.transcribe(line).text
                    e, w = wer_counts(text, heard)
                    edits, words = edits + e, words + w
                    tone_counts = by_tone.setdefault(tone, [0, 0])
                    tone_counts[0] += e
                    tone_counts[1] += w
                    rows.append({"tone": tone, "text": text, "heard": heard, "word_errors": e, "words": w,
                                 "audio_s": round(speech.duration_s, 2), "sample_rate": speech.sample_rate,
                                 "sentences_synthesized": made if name == "kokoro" else None,
                                 "uncached_ms": round(wall * 1000, 1), "uncached_cpu_ms": round(cpu * 1000, 1),
                                 "cached_ms": round(cached_wall * 1000, 2),
                                 "cached_cpu_ms": round(cached_cpu * 1000, 2),
                                 "rss_mb": _rss_mb(), "rss_peak_mb": _rss_mb("VmHWM")})  # fmt: skip
                    print(f"  {name:9s} {tone:8s} WER {e}/{w} {wall * 1000:7.0f} ms ({speech.duration_s:4.1f} s audio) "
                          f"cached {cached_wall * 1000:6.1f} ms | {heard}", flush=True)  # fmt: skip
                audio = sum(r["audio_s"] for r in rows)
                report["engines"][name] = {
                    "wer": round(edits / max(1, words), 4),
                    "wer_by_tone": {t: round(c[0] / max(1, c[1]), 4) for t, c in sorted(by_tone.items())},
                    "uncached_ms": _summary([r["uncached_ms"] for r in rows]),
                    "uncached_cpu_ms": _summary([r["uncached_cpu_ms"] for r in rows]),
                    "cached_ms": _summary([r["cached_ms"] for r in rows], 2),
                    "cached_cpu_ms": _summary([r["cached_cpu_ms"] for r in rows], 2),
                    "rtf_cpu": round(sum(r["uncached_cpu_ms"] for r in rows) / 1000 / max(audio, 1e-9), 3),
                    "rtf_wall": round(sum(r["uncached_ms"] for r in rows) / 1000 / max(audio, 1e-9), 3),
                    "audio_s_total": round(audio, 1),
                    "rows": rows,
                }
            report["memory_mb"]["rss_end"] = _rss_mb()
            report["memory_mb"]["rss_peak"] = _rss_mb("VmHWM")
            report["memory_mb"]["kokoro_added"] = round(report["memory_mb"]["rss_peak"] - rss_before, 1)
            report["kokoro"]["cache"] = {"hits": kokoro.cache.hits, "misses": kokoro.cache.misses,
                                         "sentences_synthesized": kokoro.sentences_synthesized,
                                         "bytes_on_disk": kokoro.cache.size_bytes()}  # fmt: skip
        finally:
            recognizer.close()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for name, result in report["engines"].items():
        print(f"{name:9s} WER {result['wer']:.1%} uncached p50 {result['uncached_ms']['p50']:.0f} ms "
              f"RTF(cpu) {result['rtf_cpu']:.2f} cached p50 {result['cached_ms']['p50']:.1f} ms")  # fmt: skip
    print(f"memory: {report['memory_mb']}\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
