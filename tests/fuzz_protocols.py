"""Long fuzz run of the protocol cores, plus their cost per message on this machine.

    .venv/bin/python tests/fuzz_protocols.py                      # 5,000 examples per property
    .venv/bin/python tests/fuzz_protocols.py --examples 50000 --report results/protocols/fuzz.json

Measures (single thread, wall clock, best of 3 runs):
* inbound throughput of a realistic call per protocol (20 ms frames): frames/s, µs per frame and
  how many times faster than real time one core runs;
* outbound cost of framing bot speech (Twilio: PCM16 -> mu-law -> base64 JSON);
* the slowest adversarial input (max-size JSON, deep nesting, huge numbers): proves no input
  makes a core hang;
then runs the hypothesis properties of tests/test_protocol_properties.py with many examples.
Prints a table and writes a JSON report.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.devtools.audiohook_client import AudioHookClient  # noqa: E402
from connectors.devtools.emotune_ws_client import EmotuneWsClient  # noqa: E402
from connectors.devtools.twilio_client import TwilioStreamClient  # noqa: E402
from connectors.protocols import (  # noqa: E402
    AudioHookServer,
    CallProtocol,
    EmotuneWsServer,
    TwilioMediaStream,
    pcm16_to_mulaw,
)


def tone(seconds: float, rate: int) -> bytes:
    n = int(seconds * rate)
    return struct.pack(f"<{n}h", *(int(6000 * math.sin(2 * math.pi * 220 * i / rate)) for i in range(n)))


def best_of(runs: int, work: Callable[[], float]) -> float:
    return min(work() for _ in range(runs))


def inbound_twilio(seconds: float) -> tuple[int, float]:
    client = TwilioStreamClient()
    frames = client.media_frames(pcm16_to_mulaw(tone(seconds, 8000)))

    def run() -> float:
        core = TwilioMediaStream()
        core.receive_text(TwilioStreamClient().start())
        start = time.perf_counter()
        for frame in frames:
            core.receive_text(frame)
        return time.perf_counter() - start

    return len(frames), best_of(3, run)


def inbound_audiohook(seconds: float) -> tuple[int, float]:
    client = AudioHookClient(session_id="30b0e395-84d3-4570-ac13-9a62d8f514c0")
    open_message = client.open()
    caller = pcm16_to_mulaw(tone(seconds, 8000))
    frames = [client.audio(caller[i : i + 160], caller[i : i + 160]) for i in range(0, len(caller), 160)]

    def run() -> float:
        core = AudioHookServer()
        core.receive_text(open_message)
        start = time.perf_counter()
        for frame in frames:
            core.receive_bytes(frame)
        return time.perf_counter() - start

    return len(frames), best_of(3, run)


def inbound_emotune(seconds: float) -> tuple[int, float]:
    client = EmotuneWsClient()
    frames = client.audio_frames(tone(seconds, 16000))

    def run() -> float:
        core = EmotuneWsServer()
        core.receive_text(client.start())
        start = time.perf_counter()
        for frame in frames:
            core.receive_bytes(frame)
        return time.perf_counter() - start

    return len(frames), best_of(3, run)


def outbound_twilio(seconds: float) -> tuple[int, float]:
    speech = tone(seconds, 8000)
    core = TwilioMediaStream()
    core.receive_text(TwilioStreamClient().start())
    count = len(core.send_audio(speech, encoding="pcm16", sample_rate=8000))

    def run() -> float:
        start = time.perf_counter()
        core.send_audio(speech, encoding="pcm16", sample_rate=8000)
        return time.perf_counter() - start

    return count, best_of(3, run)


ADVERSARIAL = {
    "65k chars of nested arrays": "[" * 32_000 + "]" * 32_000,
    "65k chars of one string": json.dumps({"event": "media", "x": "a" * 65_000}),
    "huge integer": '{"event": "media", "sequenceNumber": ' + "9" * 4_000 + "}",
    "65k of spaces": " " * 65_530,
    "too long (rejected unread)": "x" * 1_000_000,
}


def slowest_adversarial() -> dict[str, float]:
    results = {}
    factories: list[Callable[[], CallProtocol]] = [TwilioMediaStream, AudioHookServer, EmotuneWsServer]
    for name, text in ADVERSARIAL.items():
        worst = 0.0
        for factory in factories:
            core = factory()
            start = time.perf_counter()
            core.receive_text(text)
            worst = max(worst, time.perf_counter() - start)
        results[name] = worst * 1000
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=5000, help="hypothesis examples per property")
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="seconds of call audio per throughput run"
    )
    parser.add_argument("--report", type=Path, default=ROOT / "results" / "protocols" / "fuzz_report.json")
    parser.add_argument("--skip-fuzz", action="store_true", help="measure throughput only")
    args = parser.parse_args()

    report: dict[str, object] = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "audio_seconds": args.seconds,
    }
    rows = []
    print(f"[1/3] throughput over {args.seconds:.0f} s of call audio (best of 3)...", flush=True)
    for name, measure in [
        ("twilio inbound media (JSON+base64)", inbound_twilio),
        ("audiohook inbound stereo PCMU (split)", inbound_audiohook),
        ("emotune-ws inbound PCM16 16 kHz", inbound_emotune),
        ("twilio outbound PCM16->mu-law->JSON", outbound_twilio),
    ]:
        frames, elapsed = measure(args.seconds)
        rows.append(
            {
                "path": name,
                "frames": frames,
                "seconds": elapsed,
                "frames_per_s": frames / elapsed,
                "us_per_frame": 1e6 * elapsed / frames,
                "x_realtime": args.seconds / elapsed,
            }
        )
        print(
            f"      {name:40s} {frames / elapsed:12,.0f} frames/s  {1e6 * elapsed / frames:7.1f} µs/frame  "
            f"{args.seconds / elapsed:9,.0f}x real time",
            flush=True,
        )
    report["throughput"] = rows

    print("[2/3] adversarial inputs (worst core, ms)...", flush=True)
    adversarial = slowest_adversarial()
    for name, ms in adversarial.items():
        print(f"      {name:40s} {ms:8.2f} ms", flush=True)
    report["adversarial_ms"] = adversarial

    if not args.skip_fuzz:
        print(
            f"[3/3] hypothesis properties with {args.examples} examples each (this takes a while)...",
            flush=True,
        )
        start = time.perf_counter()
        env = {**os.environ, "EMOTUNE_FUZZ_EXAMPLES": str(args.examples)}
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                str(ROOT / "tests" / "test_protocol_properties.py"),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        summary = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
        print(f"      {summary}  ({time.perf_counter() - start:.0f} s)", flush=True)
        if result.returncode != 0:
            print(result.stdout[-4000:], result.stderr[-2000:], sep="\n")
        report["fuzz"] = {
            "examples_per_property": args.examples,
            "passed": result.returncode == 0,
            "summary": summary,
        }

    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"report: {args.report}")
    fuzz = report.get("fuzz")
    return 0 if not isinstance(fuzz, dict) or fuzz["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
