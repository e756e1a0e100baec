"""End of turn on real recorded speech: the silence rule vs ``end_of_turn: smart_turn``, its settings
swept, clean, on the telephone line, in babble and pink noise and with hold music.

Does a finished turn end soon after the speech, is a caller who stopped mid-sentence held, and does
noise or music alone open a turn? Every sample goes through the gateway's own
:class:`~connectors.gateway.turn_taking.TurnSegmenter` (silero VAD, the end-of-turn rule, the real
smart-turn v3.2 model answering inline, as the segmenter does outside the gateway's hub).

What a sample is (no hand-picking; every clip of the selection is used):

* clips: RAVDESS (English, acted, one sentence; ``--ravdess-per-actor`` clips per actor, every k-th
  of the actor's sorted clips, all 24 actors) and korean_operator (Korean, read sentences, every
  clip of the manifest); mono, resampled to 16 kHz.
* cuts (:func:`connectors.devtools.turn_samples.speech_cuts`): the speech span runs from the first
  to the last 20-ms frame within 35 dB of the clip's loudest frame.
* **finished**: the clip up to the end of its speech span (its own leading silence kept), then
  2.5 s without speech.
* **unfinished**: the same clip cut at its lowest-energy 20-ms frame (energy smoothed over 60 ms)
  between 35% and 65% of the speech span (mid-utterance, at a word boundary or a stop), then 2.5 s
  without speech.
* conditions: ``clean`` (16 kHz); ``phone`` (8 kHz G.711 mu-law and back, the segmenter at 8 kHz as
  in a Twilio call); ``phone_pink_*`` / ``phone_babble_*``: noise added on the 8-kHz line before the
  codec, over the whole sample (leading silence, speech and the 2.5 s after it), at 10 and 5 dB SNR
  against the clip's speech level (RMS of the samples above 2% of its peak). Pink noise is
  :func:`benchmarks.line_signals.pink_noise`; babble is six RAVDESS talkers at once (clips the
  selection does not use), each time-shifted at random.

Measured per sample and setting: when the turn holding the cut ended, counted from the cut
(``delay_s``); ``split``: a turn ended at a pause inside the speech before the cut (the caller cut
off mid-utterance). Per setting and group: **finished ended early** = ended before ``end_silence_s``
(the silence rule's time), **within 1 s**, mean and p95 delay of finished turns (**lost**: no turn
holds the end of the speech, e.g. its last words were dropped as too short after a turn ended at a
pause: counted as 2.5 s); **unfinished held** = held past ``end_silence_s`` (longer than
the silence rule would; with smart_turn, to ``long_silence_s``), **unfinished ended early** = ended before ``end_silence_s``
(a shorter mid-sentence pause would have been cut there too); **cut inside utterance** = share of
samples (both kinds) with a split.

The sweep: the smart-turn rule over ``THRESHOLDS`` x ``SHORT_PAUSES`` x ``LONG_WAITS``, plus the
silence rule, replayed on each sample's own VAD scores (computed once) with the model's answer for
each (turn start, moment asked) computed once and reused (it depends on nothing else), so every
setting sees exactly what the running segmenter would. The setting is **chosen on RAVDESS actors
01-12** (all telephone conditions pooled) by :func:`choose` and **reported on actors 13-24 and on
Korean**, which the choice never saw. Every answer of the model (turn start, moment asked,
probability) is stored per sample.

Noise or music alone: 60 s each of hold music (:func:`benchmarks.line_signals.hold_music`,
synthesised chords and a melody), pink noise and babble at the level they had at 5 dB SNR (against the
median clip's speech level), on the telephone line, through both rules: how many turns (and barge-in onsets) they open.

    .venv/bin/python -m benchmarks.bench_end_of_turn        # -> benchmarks/results/bench_end_of_turn.json

Skips (exit 0) when ``../shared/data`` is not there.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from benchmarks.line_signals import (
    LINE_RATE,
    babble,
    hold_music,
    mix_at_snr,
    pink_noise,
    speech_level,
    telephone,
)
from connectors.devtools.turn_samples import speech_cuts
from connectors.gateway.end_of_turn import EndOfTurnRule
from connectors.gateway.turn_taking import FrameVad, SegmentEvent, TurnSegmenter
from emotion_runtime.audio import resample
from emotion_runtime.end_of_turn import SmartTurnModel
from emotune.config import PROJECT_ROOT, EmotuneConfig

__all__ = [
    "CONDITIONS", "AnswerCache", "LineCondition", "ReplayVad", "Setting", "choose", "main", "replay", "summarise",
]

DATA = PROJECT_ROOT.parent / "shared" / "data"
OUT = PROJECT_ROOT / "benchmarks" / "results" / "bench_end_of_turn.json"
RATE = 16000
TAIL_S = 2.5
ALONE_S = 60.0
WITHIN_S = 1.0  # issue 13: a turn ends within 1 s of the end of speech
THRESHOLDS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
SHORT_PAUSES = (0.2, 0.3, 0.4)
LONG_WAITS = (0.8, 1.0, 1.5, 2.0)
BABBLE_TALKERS = ("Actor_02", "Actor_05", "Actor_08", "Actor_11", "Actor_16", "Actor_21")
CHOICE_PART = "english_actors_01_12"
MARGIN_S = 0.1  # "a clear margin" on the mean delay after a finished turn


@dataclass(frozen=True)
class LineCondition:
    name: str
    phone: bool
    noise: str | None = None  # pink | babble
    snr_db: float | None = None


CONDITIONS = (
    LineCondition("clean", phone=False),
    LineCondition("phone", phone=True),
    LineCondition("phone_pink_10dB", True, "pink", 10.0),
    LineCondition("phone_pink_5dB", True, "pink", 5.0),
    LineCondition("phone_babble_10dB", True, "babble", 10.0),
    LineCondition("phone_babble_5dB", True, "babble", 5.0),
)


@dataclass(frozen=True)
class Setting:
    """One end-of-turn rule of the sweep (``end_silence_s`` is the config's: the silence rule's time)."""

    mode: str
    threshold: float = 0.5
    short_silence_s: float = 0.2
    long_silence_s: float = 2.0

    @property
    def name(self) -> str:
        if self.mode == "silence":
            return "silence"
        return f"smart_turn t={self.threshold:g} short={self.short_silence_s:g} long={self.long_silence_s:g}"

    def rule(self, end_silence_s: float) -> EndOfTurnRule:
        if self.mode == "silence":
            return EndOfTurnRule("silence", end_silence_s=end_silence_s, short_silence_s=min(0.2, end_silence_s),
                                 long_silence_s=end_silence_s)
        return EndOfTurnRule("smart_turn", self.threshold, self.short_silence_s, end_silence_s, self.long_silence_s)


def sweep_settings() -> list[Setting]:
    grid = itertools.product(THRESHOLDS, SHORT_PAUSES, LONG_WAITS)
    return [Setting("silence")] + [Setting("smart_turn", t, s, w) for t, s, w in grid]


# --- the line (its signals: benchmarks.line_signals) ---------------------------------------------

def line_audio(audio: np.ndarray, cut: int, condition: LineCondition, noises: dict[str, np.ndarray],
               rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A sample (16-kHz clip up to ``cut``, then ``TAIL_S`` without speech) as the segmenter receives it."""
    x = np.concatenate([audio[:cut], np.zeros(int(TAIL_S * RATE), dtype=np.float32)])
    if not condition.phone:
        return x, RATE
    line = resample(x, RATE, LINE_RATE)
    if condition.noise is not None and condition.snr_db is not None:
        track = noises[condition.noise]
        start = int(rng.integers(0, track.shape[0] - line.shape[0]))
        line = mix_at_snr(line, track[start:], speech_level(line[: cut * LINE_RATE // RATE]), condition.snr_db)
    return telephone(line), LINE_RATE


# --- replaying the segmenter on stored VAD scores, with the model's answers cached ---------------

class ReplayVad:
    """A VAD that hands back scores computed earlier by the real one (same frames, same levels)."""

    def __init__(self, vad: FrameVad, scores: np.ndarray) -> None:
        self.sample_rate, self.frame_samples = vad.sample_rate, vad.frame_samples
        self.start_level, self.hold_level = vad.start_level, vad.hold_level
        self._scores, self._next = scores, 0

    def levels(self, frames: np.ndarray) -> np.ndarray:
        out = self._scores[self._next : self._next + frames.shape[0]]
        if out.shape[0] != frames.shape[0]:
            raise ValueError("more frames than the scores recorded")
        self._next += frames.shape[0]
        return out


class AnswerCache:
    """The real model for one sample: each distinct question (the turn's audio so far, identified by
    where it starts and the frame that asked) is scored once; ``answers`` keeps them all."""

    def __init__(self, model: Callable[[np.ndarray, int], float]) -> None:
        self._model = model
        self.segmenter: TurnSegmenter | None = None
        self.answers: dict[tuple[int, int], float] = {}  # (turn start frame, frame asked) -> P(finished)

    def probability(self, audio: np.ndarray, sample_rate: int) -> float:
        assert self.segmenter is not None
        asked = self.segmenter.frames_seen
        key = (asked - audio.shape[0] // self.segmenter.vad.frame_samples, asked)
        if key not in self.answers:
            self.answers[key] = self._model(audio, sample_rate)
        return self.answers[key]


def vad_scores(config: EmotuneConfig, x: np.ndarray, rate: int) -> tuple[FrameVad, np.ndarray]:
    """The real VAD of ``TurnSegmenter.from_config`` over the whole sample: (that VAD, its scores)."""
    segmenter = TurnSegmenter.from_config(config, rate)
    frames = segmenter.take_frames(x)
    return segmenter.vad, np.asarray(segmenter.vad.levels(frames))


def replay(config: EmotuneConfig, x: np.ndarray, rate: int, vad: FrameVad, scores: np.ndarray,
           rule: EndOfTurnRule, cache: AnswerCache) -> list[SegmentEvent]:
    """The segmenter ``from_config`` builds, with ``rule`` and the cached model, over the stored scores."""
    segmenter = TurnSegmenter.from_config(config, rate)  # config: end_of_turn silence (no model load)
    segmenter.vad = ReplayVad(vad, scores)
    segmenter.rule = rule
    if rule.uses_model:
        cache.segmenter = segmenter
        segmenter.end_of_turn_model = cache  # type: ignore[assignment]
    return segmenter.push(x) + segmenter.flush()


def outcome(events: Iterable[SegmentEvent], cut_s: float, scores: np.ndarray, frame_s: float,
            start_level: float) -> dict[str, Any]:
    """When the turn holding the end of the speech ended, counted from the cut (``delay_s``; negative when
    the VAD heard the clip's last, soft sound as no speech and the turn ended before the cut), and
    whether a turn ended at a pause inside the speech (``split``). ``delay_s`` None: no turn holds the
    end of the speech (the VAD heard none of it, or the last words, after a turn ended at a pause,
    were dropped as too short to be a turn)."""
    ends = [e.end_s for e in events if e.kind == "turn"]
    holding = [e for e in ends if e > cut_s - 0.05]
    if holding:
        return {"delay_s": round(holding[0] - cut_s, 3), "split": any(e <= cut_s - 0.05 for e in ends)}
    speech = np.flatnonzero(np.asarray(scores) >= start_level) * frame_s
    if ends and not np.any(speech[speech < cut_s] >= ends[-1]):
        return {"delay_s": round(ends[-1] - cut_s, 3), "split": len(ends) > 1}
    return {"delay_s": None, "split": bool(ends)}


# --- summaries and the choice ---------------------------------------------------------------------

def _share(count: int, n: int) -> float | None:
    return round(count / n, 3) if n else None


def summarise(finished: Sequence[dict[str, Any]], unfinished: Sequence[dict[str, Any]], setting: Setting,
              end_silence_s: float) -> dict[str, Any]:
    """Outcomes (``delay_s``, ``split``) of finished and unfinished samples -> the sweep's measures.
    A finished sample whose end no turn holds (``delay_s`` None, ``finished_lost``) counts as 2.5 s late."""
    fin = [TAIL_S if r["delay_s"] is None else r["delay_s"] for r in finished]
    unf = [r["delay_s"] for r in unfinished]
    both = len(finished) + len(unfinished)
    return {
        "setting": setting.name,
        "finished": len(fin),
        "finished_ended_early": _share(sum(d < end_silence_s - 0.01 for d in fin), len(fin)),
        "finished_within_1s": _share(sum(d <= WITHIN_S for d in fin), len(fin)),
        "finished_lost": _share(sum(r["delay_s"] is None for r in finished), len(fin)),
        "finished_delay_s_mean": round(statistics.fmean(fin), 3) if fin else None,
        "finished_delay_s_p95": round(float(np.percentile(fin, 95)), 3) if fin else None,
        "unfinished": len(unf),
        "unfinished_held": _share(sum(d is None or d > end_silence_s + 0.1 for d in unf), len(unf)),
        "unfinished_ended_early": _share(sum(d is not None and d < end_silence_s - 0.01 for d in unf), len(unf)),
        "cut_inside_utterance": _share(sum(r["split"] for r in [*finished, *unfinished]), both),
    }


def choose(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The rule fixed before the sweep ran: among smart_turn settings that cut no more samples inside
    the utterance than the silence rule and end at least as many finished turns within 1 s, the
    lowest mean delay after a finished turn (ties: more unfinished held, then the setting's name)."""
    silence = next(r for r in rows if r["setting"] == "silence")
    fair = [r for r in rows if r["setting"] != "silence"
            and r["cut_inside_utterance"] <= silence["cut_inside_utterance"]
            and r["finished_within_1s"] >= silence["finished_within_1s"]]
    if not fair:
        return {"setting": None, "why": "no smart_turn setting cuts as few utterances and ends as many "
                "finished turns within 1 s as the silence rule"}
    best = min(fair, key=lambda r: (r["finished_delay_s_mean"], -r["unfinished_held"], r["setting"]))
    return {"setting": best["setting"], "eligible": len(fair), "on_choice_part": best, "silence": silence}


# --- data -----------------------------------------------------------------------------------------

def _load(path: Path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    return resample(audio.mean(axis=1), rate, RATE)


def _clips(ravdess_per_actor: int, korean_limit: int | None) -> tuple[dict[str, list[Path]], list[np.ndarray]]:
    """Per part the clips used, and the babble talkers (8 kHz, clips the parts do not use)."""
    parts: dict[str, list[Path]] = {CHOICE_PART: [], "english_actors_13_24": [], "korean": []}
    talkers: list[np.ndarray] = []
    with (DATA / "ravdess" / "manifest.csv").open() as handle:
        by_actor: dict[str, list[str]] = {}
        for row in csv.DictReader(handle):
            by_actor.setdefault(row["speaker"], []).append(row["path"])
    for speaker in sorted(by_actor):
        paths = sorted(by_actor[speaker])
        step = max(1, len(paths) // ravdess_per_actor)
        chosen = paths[::step][:ravdess_per_actor]
        actor = Path(chosen[0]).parent.name  # Actor_01 .. Actor_24
        part = CHOICE_PART if int(actor.split("_")[1]) <= 12 else "english_actors_13_24"
        parts[part] += [DATA / "ravdess" / p for p in chosen]
        if actor in BABBLE_TALKERS:
            unused = [p for p in paths if p not in chosen][:: max(1, step)]
            talkers.append(resample(np.concatenate([_load(DATA / "ravdess" / p) for p in unused]), RATE, LINE_RATE))
    with (DATA / "korean_operator" / "manifest.csv").open() as handle:
        korean = sorted(row["path"] for row in csv.DictReader(handle))
    parts["korean"] = [DATA / "korean_operator" / p for p in korean[:korean_limit]]
    return parts, talkers


def _alone(config: EmotuneConfig, audio: np.ndarray, model: SmartTurnModel) -> dict[str, Any]:
    """Noise or music with no speech, on the telephone line, through both rules."""
    x = telephone(audio)
    out: dict[str, Any] = {}
    for mode in ("silence", "smart_turn"):
        segmenter = TurnSegmenter.from_config(config, LINE_RATE)
        if mode == "smart_turn":
            segmenter.rule = Setting("smart_turn").rule(config.turn_taking.end_silence_s)
            segmenter.end_of_turn_model = model
        events = [e for i in range(0, x.shape[0], LINE_RATE // 50) for e in segmenter.push(x[i : i + LINE_RATE // 50])]
        events += segmenter.flush()
        out[mode] = {"turns": sum(e.kind == "turn" for e in events), "onsets": sum(e.kind == "onset" for e in events),
                     "turn_seconds": round(sum(e.end_s - e.start_s for e in events if e.kind == "turn"), 2)}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ravdess-per-actor", type=int, default=5)
    parser.add_argument("--korean", type=int, default=None, help="korean_operator clips (default: all)")
    parser.add_argument("--conditions", nargs="*", default=[c.name for c in CONDITIONS])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if not (DATA / "ravdess" / "manifest.csv").is_file() or not (DATA / "korean_operator" / "manifest.csv").is_file():
        print(f"skipped: {DATA} (RAVDESS, korean_operator) is not there")
        return 0
    # The caller-level gate (turn_taking.background_speech_db) is off here: this compares end-of-turn
    # rules on the VAD alone; benchmarks/bench_background_speech.py measures the gate on these samples.
    config = EmotuneConfig(turn_taking={"end_of_turn": "silence", "background_speech_db": None})
    tt = config.turn_taking
    end_s = tt.end_silence_s
    model = SmartTurnModel.load()
    settings = sweep_settings()
    default = Setting("smart_turn", tt.end_of_turn_threshold, tt.short_silence_s, tt.long_silence_s)
    conditions = [c for c in CONDITIONS if c.name in args.conditions]
    started, load_before = time.time(), os.getloadavg()
    parts, talkers = _clips(args.ravdess_per_actor, args.korean)
    noises = {"pink": pink_noise(int(120 * LINE_RATE), np.random.default_rng(7)).astype(np.float32),
              "babble": babble(talkers, int(120.0 * LINE_RATE), np.random.default_rng(8))}
    # outcomes[part][condition][setting][kind] -> list of per-sample outcomes
    outcomes: dict[str, dict[str, dict[str, dict[str, list[dict[str, Any]]]]]] = {}
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {}
    levels: list[float] = []
    model_calls = 0
    for part_index, (part, paths) in enumerate(parts.items()):
        outcomes[part], samples[part] = {}, {}
        for ci, condition in enumerate(conditions):
            per_setting: dict[str, dict[str, list[dict[str, Any]]]] = {
                s.name: {"finished": [], "unfinished": []} for s in settings}
            rows = []
            for pi, path in enumerate(paths):
                audio = _load(path)
                levels.append(speech_level(resample(audio, RATE, LINE_RATE)))
                for ki, (kind, cut) in enumerate(zip(("finished", "unfinished"), speech_cuts(audio, RATE), strict=True)):
                    rng = np.random.default_rng([11, part_index, ci, pi, ki])
                    x, rate = line_audio(audio, cut, condition, noises, rng)
                    vad, scores = vad_scores(config, x, rate)
                    cache = AnswerCache(model.probability)
                    cut_s, frame_s = cut / RATE, vad.frame_samples / rate
                    for setting in settings:
                        events = replay(config, x, rate, vad, scores, setting.rule(end_s), cache)
                        per_setting[setting.name][kind].append(outcome(events, cut_s, scores, frame_s, vad.start_level))
                    model_calls += len(cache.answers)
                    rows.append({
                        "clip": path.relative_to(DATA).as_posix(), "kind": kind, "cut_s": round(cut_s, 3),
                        "silence": per_setting["silence"][kind][-1], "smart_turn_default": per_setting[default.name][kind][-1],
                        "answers": [[round(a * frame_s, 3), round(b * frame_s, 3), round(p, 4)]
                                    for (a, b), p in sorted(cache.answers.items())],
                    })
            outcomes[part][condition.name] = per_setting
            samples[part][condition.name] = rows
            quick = summarise(per_setting[default.name]["finished"], per_setting[default.name]["unfinished"], default, end_s)
            print(part, condition.name, json.dumps(quick), f"{time.time() - started:.0f}s", flush=True)

    phone_names = [c.name for c in conditions if c.phone]

    def pooled(part: str, names: Sequence[str], setting: Setting) -> dict[str, Any]:
        fin = [r for n in names for r in outcomes[part][n][setting.name]["finished"]]
        unf = [r for n in names for r in outcomes[part][n][setting.name]["unfinished"]]
        return summarise(fin, unf, setting, end_s)

    sweep = {part: [pooled(part, phone_names, s) for s in settings] for part in parts}
    choice = choose(sweep[CHOICE_PART])
    chosen = next((s for s in settings if s.name == choice["setting"]), None)
    shown = [Setting("silence"), default] + ([chosen] if chosen and chosen != default else [])
    by_condition = {part: {c.name: {s.name: pooled(part, [c.name], s) for s in shown} for c in conditions} for part in parts}
    held_out = {}
    for part in parts:
        if part == CHOICE_PART or chosen is None:
            continue
        silence_row, chosen_row = pooled(part, phone_names, Setting("silence")), pooled(part, phone_names, chosen)
        held_out[part] = {
            "silence": silence_row, "chosen": chosen_row,
            "mean_delay_gain_s": round(silence_row["finished_delay_s_mean"] - chosen_row["finished_delay_s_mean"], 3),
            "beats_silence_clearly": (silence_row["finished_delay_s_mean"] - chosen_row["finished_delay_s_mean"] >= MARGIN_S
                                      and chosen_row["cut_inside_utterance"] <= silence_row["cut_inside_utterance"]),
        }
    speech_rms = float(np.median(levels))
    alone_level = speech_rms * 10 ** (-5 / 20)
    n_alone = int(ALONE_S * LINE_RATE)
    alone = {
        "hold_music": _alone(config, 0.1 * hold_music(ALONE_S), model),
        "pink": _alone(config, alone_level * noises["pink"][:n_alone], model),
        "babble": _alone(config, alone_level * noises["babble"][:n_alone], model),
    }
    report = {
        "what": "end of turn through TurnSegmenter (silero VAD) on real speech: the silence rule vs smart-turn v3.2, "
        "settings swept; finished = whole utterance, unfinished = cut mid-way at the lowest-energy frame, then 2.5 s "
        "without speech; clean, 8 kHz mu-law, pink/babble noise on the line at 10 and 5 dB SNR; noise and hold music alone",
        "command": "python -m benchmarks.bench_end_of_turn " + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": {k: getattr(tt, k) for k in ("end_silence_s", "end_of_turn_threshold", "short_silence_s",
                                               "long_silence_s", "speech_threshold", "silence_threshold",
                                               "min_speech_s", "preroll_s")},
        "sweep_grid": {"thresholds": THRESHOLDS, "short_silence_s": SHORT_PAUSES, "long_silence_s": LONG_WAITS},
        "parts": {part: len(paths) for part, paths in parts.items()},
        "choice": {
            "rule": choose.__doc__.split("\n\n")[0].replace("\n", " ").strip() if choose.__doc__ else "",
            "chosen_on": CHOICE_PART + ", telephone conditions pooled (" + ", ".join(phone_names) + ")",
            **choice,
        },
        "held_out": held_out,
        "held_out_rule": f"beats the silence rule clearly: mean delay after a finished turn at least {MARGIN_S} s "
        "lower and no more samples cut inside the utterance, on telephone conditions pooled",
        "by_condition": by_condition,
        "sweep_telephone_pooled": sweep,
        "alone": {"seconds": ALONE_S, "hold_music_rms": 0.1, "noise_rms": round(alone_level, 4),
                  "noise_level": "the median clip's speech level (line, RMS above 2% of peak) minus 5 dB", **alone},
        "model_calls": model_calls,
        "seconds": round(time.time() - started, 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "note": "shared with other jobs (model training); no timing is reported, accuracy does not depend on load"},
        "samples_note": "per sample: outcome with the silence rule and smart_turn's config defaults; answers = "
        "[turn start s, asked at s, P(finished)] for every question any swept setting put to the model",
        "samples": samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({"choice": choice.get("setting"), "held_out": held_out}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
