"""End-of-turn accuracy of ``turn_taking.end_of_turn: smart_turn`` on real recorded speech.

Does the smart-turn stage end a finished turn at the short pause, and hold an unfinished one?
Every sample goes through the gateway's own :class:`~connectors.gateway.turn_taking.TurnSegmenter`
(silero VAD, the end-of-turn rule, the real smart-turn v3.2 model) in 20 ms chunks.

What a sample is (no hand-picking; every clip of the selection is used):

* clips: RAVDESS (English, acted, two sentences; ``--ravdess-per-actor`` clips per actor, every k-th
  of the actor's sorted clips, all 24 actors) and korean_operator (Korean, read sentences, every
  clip of the manifest); mono, resampled to 16 kHz.
* cuts (:func:`connectors.devtools.turn_samples.speech_cuts`): the speech span runs from the first
  to the last 20-ms frame within 35 dB of the clip's loudest frame.
* **finished**: the clip up to the end of its speech span (its own leading silence kept), then
  2.5 s of digital silence.
* **unfinished**: the same clip cut at its lowest-energy 20-ms frame (energy smoothed over 60 ms)
  between 35% and 65% of the speech span, i.e. mid-utterance at a word boundary or a stop, then
  2.5 s of digital silence.
* conditions: ``clean`` (16 kHz) and ``phone`` (8 kHz mu-law and back, the segmenter at 8 kHz as in
  a Twilio call).

Measured per sample: when the turn holding the cut ended, counted from the cut (``delay_s``);
**ended at the short pause** = it ended before ``end_silence_s`` (the silence rule's time), i.e. on
the model's "finished"; **held** = it waited for ``long_silence_s``; ``split`` = a turn ended inside
the speech before the cut (an internal pause the model called finished); and the model's
probability at the cut's pause, for a threshold sweep.

    .venv/bin/python -m benchmarks.bench_end_of_turn        # -> benchmarks/results/bench_end_of_turn.json

Skips (exit 0) when ``../shared/data`` is not there.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from connectors.devtools.turn_samples import speech_cuts
from connectors.gateway.turn_taking import TurnSegmenter
from emotion_runtime.audio import decode, encode, resample
from emotion_runtime.end_of_turn import SmartTurnModel
from emotune.config import PROJECT_ROOT, EmotuneConfig

__all__ = ["main", "run_sample"]

DATA = PROJECT_ROOT.parent / "shared" / "data"
OUT = PROJECT_ROOT / "benchmarks" / "results" / "bench_end_of_turn.json"
RATE = 16000
TAIL_S = 2.5
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def _load(path: Path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    return resample(audio.mean(axis=1), rate, RATE)


class _Recording:
    """The real model, remembering each answer."""

    def __init__(self, model: SmartTurnModel, segmenter: TurnSegmenter) -> None:
        self.model = model
        self.segmenter = segmenter
        self.answers: list[tuple[float, float]] = []  # (stream seconds when asked, probability)

    def probability(self, audio: np.ndarray, sample_rate: int) -> float:
        p = self.model.probability(audio, sample_rate)
        self.answers.append((self.segmenter.frames_seen * self.segmenter.frame_s, p))
        return p


def run_sample(config: EmotuneConfig, audio: np.ndarray, cut: int, phone: bool, model: SmartTurnModel) -> dict[str, Any]:
    x = np.concatenate([audio[:cut], np.zeros(int(TAIL_S * RATE), dtype=np.float32)])
    rate = RATE
    if phone:
        rate = 8000
        x = decode(encode(resample(x, RATE, rate), "mulaw"), "mulaw")
    segmenter = TurnSegmenter.from_config(config, rate)
    recorder = _Recording(model, segmenter)
    segmenter.end_of_turn_model = recorder  # type: ignore[assignment]
    step = rate // 50
    turns = []
    for i in range(0, x.shape[0], step):
        turns += [e for e in segmenter.push(x[i : i + step]) if e.kind == "turn"]
    turns += [e for e in segmenter.flush() if e.kind == "turn"]
    cut_s = cut / RATE
    ends = [t.end_s for t in turns]
    holding = [e for e in ends if e > cut_s - 0.05]
    delay = (holding[0] - cut_s) if holding else None
    at_cut = [p for asked_s, p in recorder.answers if asked_s > cut_s - 0.05]
    return {
        "delay_s": None if delay is None else round(delay, 3),
        "split": any(e <= cut_s - 0.05 for e in ends),
        "probability": round(at_cut[0], 4) if at_cut else None,
        "asked": len(recorder.answers),
    }


def _clips(ravdess_per_actor: int, korean_limit: int | None) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {"english": [], "korean": []}
    with (DATA / "ravdess" / "manifest.csv").open() as handle:
        by_actor: dict[str, list[str]] = {}
        for row in csv.DictReader(handle):
            by_actor.setdefault(row["speaker"], []).append(row["path"])
    for speaker in sorted(by_actor):
        paths = sorted(by_actor[speaker])
        step = max(1, len(paths) // ravdess_per_actor)
        out["english"] += [DATA / "ravdess" / p for p in paths[::step][:ravdess_per_actor]]
    with (DATA / "korean_operator" / "manifest.csv").open() as handle:
        paths = sorted(row["path"] for row in csv.DictReader(handle))
    out["korean"] = [DATA / "korean_operator" / p for p in paths[:korean_limit]]
    return out


def _summary(rows: Sequence[dict[str, Any]], kind: str, tt: Any) -> dict[str, Any]:
    n = len(rows)
    delays = [r["delay_s"] for r in rows if r["delay_s"] is not None]
    short = sum(1 for d in delays if d < tt.end_silence_s - 0.01)
    held = sum(1 for d in delays if d >= tt.long_silence_s - 0.05)
    probs = [r["probability"] for r in rows if r["probability"] is not None]
    out: dict[str, Any] = {
        "samples": n,
        "ended_at_short_pause": round(short / n, 3),
        "held_to_long_silence": round(held / n, 3),
        "split_before_cut": round(sum(r["split"] for r in rows) / n, 3),
        "delay_s_p50": round(statistics.median(delays), 3) if delays else None,
        "delay_s_mean": round(statistics.fmean(delays), 3) if delays else None,
        "probability_p50": round(statistics.median(probs), 3) if probs else None,
    }
    # What another threshold would give at the cut's pause (model verdict only, no VAD effects).
    good = (lambda p, t: p >= t) if kind == "finished" else (lambda p, t: p < t)
    out["correct_by_threshold"] = {f"{t:g}": round(sum(good(p, t) for p in probs) / max(1, len(probs)), 3) for t in THRESHOLDS}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ravdess-per-actor", type=int, default=5)
    parser.add_argument("--korean", type=int, default=None, help="korean_operator clips (default: all)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if not (DATA / "ravdess" / "manifest.csv").is_file() or not (DATA / "korean_operator" / "manifest.csv").is_file():
        print(f"skipped: {DATA} (RAVDESS, korean_operator) is not there")
        return 0
    config = EmotuneConfig(turn_taking={"end_of_turn": "smart_turn"})
    tt = config.turn_taking
    model = SmartTurnModel.load()
    started, load_before = time.time(), os.getloadavg()
    results: dict[str, Any] = {}
    samples: dict[str, Any] = {}
    for language, paths in _clips(args.ravdess_per_actor, args.korean).items():
        for condition in ("clean", "phone"):
            rows: dict[str, list[dict[str, Any]]] = {"finished": [], "unfinished": []}
            for path in paths:
                audio = _load(path)
                end, mid = speech_cuts(audio, RATE)
                for kind, cut in (("finished", end), ("unfinished", mid)):
                    row = run_sample(config, audio, cut, condition == "phone", model)
                    rows[kind].append({"clip": path.relative_to(DATA).as_posix(), "cut_s": round(cut / RATE, 3), **row})
            key = f"{language}/{condition}"
            results[key] = {kind: _summary(r, kind, tt) for kind, r in rows.items()}
            samples[key] = rows
            print(key, json.dumps(results[key]), flush=True)
    report = {
        "what": "smart-turn v3.2 end-of-turn stage through TurnSegmenter (silero VAD) on real speech; "
        "finished = whole utterance + silence, unfinished = cut mid-way at the lowest-energy frame + silence",
        "command": "python -m benchmarks.bench_end_of_turn " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {k: getattr(tt, k) for k in ("end_of_turn_threshold", "short_silence_s", "end_silence_s",
                                                 "long_silence_s", "speech_threshold", "silence_threshold")},
        "silence_rule_baseline": "end_of_turn: silence ends both kinds at end_silence_s: finished 0% at the short "
        "pause, unfinished 0% held",
        "results": results,
        "seconds": round(time.time() - started, 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "samples": samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
