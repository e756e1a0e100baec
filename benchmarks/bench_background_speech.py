"""Background speech on the line (babble): does a turn still end soon after the caller stops?

Silero hears background talkers as speech, so with the VAD alone a turn on a babbling line stays open
until the background pauses (``bench_end_of_turn.json``: 5-10% of finished turns ended within 1 s at
10 and 5 dB SNR). :class:`~connectors.gateway.turn_taking.CallerLevel`
(``turn_taking.background_speech_db``, ``noisy_line_db``, ``caller_level_smooth_s``) treats frames well
under the caller's own level as a pause on a noisy line. This sweeps its settings through the gateway's
own :class:`~connectors.gateway.turn_taking.TurnSegmenter` (``from_config``, silero VAD, the silence
rule) on the samples of :mod:`benchmarks.bench_end_of_turn` (same clips, cuts, line conditions, noise
tracks and measures; see there what a sample is), and chooses by a rule fixed before the sweep ran
(:func:`choose`) **on RAVDESS actors 01-12** only, then reports actors 13-24 and korean_operator, which
the choice never saw. The cost it can have: soft speech on a noisy line taken for a pause, a caller
cut off mid-utterance (``cut_inside_utterance``).

Noise or music alone (60 s each, the levels of ``bench_end_of_turn``): turns opened and seconds of the
line the VAD (gated) called speech, i.e. what would get an emotion label.

    .venv/bin/python -m benchmarks.bench_background_speech   # -> benchmarks/results/bench_background_speech.json + .png

Skips (exit 0) when ``../shared/data`` is not there.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import bench_end_of_turn as eot
from benchmarks.line_signals import LINE_RATE, babble, hold_music, pink_noise, speech_level, telephone
from connectors.devtools.turn_samples import speech_cuts
from connectors.gateway.turn_taking import TurnSegmenter
from emotion_runtime.audio import resample
from emotune.config import PROJECT_ROOT, EmotuneConfig

__all__ = ["GateSetting", "choose", "main"]

OUT = PROJECT_ROOT / "benchmarks" / "results" / "bench_background_speech.json"
BELOW_CALLER_DB = (6.0, 7.0, 8.0)
NOISY_LINE_DB = (30.0, 35.0)
SMOOTH_S = (0.25, 0.4)
HINDSIGHT = (False, True)  # turn_taking.background_pause_hindsight
RESUME_DB = (0.0, 3.0)  # turn_taking.caller_resume_db
CUT_ALLOWANCE = 0.01  # the choice may cut at most 1 point more samples inside the utterance than the VAD alone
QUIET_CONDITIONS = ("phone", "phone_pink_10dB", "phone_pink_5dB")
BABBLE_CONDITIONS = ("phone_babble_10dB", "phone_babble_5dB")

# (background_speech_db, noisy_line_db, smooth_s, hindsight, resume_db); None: off
GateSetting = tuple[float, float, float, bool, float] | None


def _name(setting: GateSetting) -> str:
    if setting is None:
        return "off"
    below, noisy, smooth, hindsight, resume = setting
    return (f"below_caller={below:g}dB noisy_line={noisy:g}dB smooth={smooth:g}s" + (" hindsight" if hindsight else "")
            + (f" resume={resume:g}dB" if resume else ""))


def _config(setting: GateSetting) -> EmotuneConfig:
    tt: dict[str, Any] = {"end_of_turn": "silence", "background_speech_db": None}
    if setting is not None:
        tt.update(background_speech_db=setting[0], noisy_line_db=setting[1], caller_level_smooth_s=setting[2],
                  background_pause_hindsight=setting[3], caller_resume_db=setting[4])
    return EmotuneConfig(turn_taking=tt)


def settings() -> list[GateSetting]:
    return [None, *itertools.product(BELOW_CALLER_DB, NOISY_LINE_DB, SMOOTH_S, HINDSIGHT, RESUME_DB)]


def _pooled(rows: dict[str, dict[str, list[dict[str, Any]]]], names: Sequence[str], name: str, end_s: float) -> dict[str, Any]:
    fin = [r for n in names for r in rows[n]["finished"]]
    unf = [r for n in names for r in rows[n]["unfinished"]]
    out = eot.summarise(fin, unf, eot.Setting("silence"), end_s)
    out["setting"] = name
    return out


def choose(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The rule fixed before the sweep ran: among settings that cut at most CUT_ALLOWANCE more samples
    inside the utterance than the VAD alone (telephone conditions pooled) and end as many finished turns
    within 1 s on the lines without babble (to 0.01), the most finished turns ended within 1 s in babble
    (10 and 5 dB pooled); ties: fewer cut, then the name."""
    off = next(r for r in rows if r["setting"] == "off")
    fair = [r for r in rows if r["setting"] != "off"
            and r["telephone"]["cut_inside_utterance"] <= off["telephone"]["cut_inside_utterance"] + CUT_ALLOWANCE
            and r["quiet"]["finished_within_1s"] >= off["quiet"]["finished_within_1s"] - 0.01]
    if not fair:
        return {"setting": None, "why": "no setting keeps the cuts and the quiet lines as they are"}
    best = max(fair, key=lambda r: (r["babble"]["finished_within_1s"], -r["telephone"]["cut_inside_utterance"],
                                    r["setting"]))
    return {"setting": best["setting"], "eligible": len(fair), "on_choice_part": best, "off": off}


def _alone(setting: GateSetting, audio: np.ndarray) -> dict[str, Any]:
    """Noise or music with no speech, on the telephone line: turns opened, seconds called speech."""
    x = telephone(audio)
    segmenter = TurnSegmenter.from_config(_config(setting), LINE_RATE)
    events = [e for i in range(0, x.shape[0], LINE_RATE // 50) for e in segmenter.push(x[i : i + LINE_RATE // 50])]
    events += segmenter.flush()
    seconds = x.shape[0] / LINE_RATE
    return {"turns": sum(e.kind == "turn" for e in events), "onsets": sum(e.kind == "onset" for e in events),
            "turn_seconds": round(sum(e.end_s - e.start_s for e in events if e.kind == "turn"), 2),
            "speech_share": round(segmenter.speech_share(0.0, seconds) or 0.0, 3)}


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = list(report["by_condition"])
    conditions = list(next(iter(report["by_condition"].values())))
    fig, axes = plt.subplots(1, len(parts), figsize=(4.2 * len(parts), 3.6), sharey=True)
    for ax, part in zip(np.atleast_1d(axes), parts, strict=True):
        keys = list(report["by_condition"][part][conditions[0]])
        labels = {"off": "VAD alone", "chosen": "gate, the rule's choice", "shipped": "gate, as shipped"}
        width = 0.8 / len(keys)
        for k, key in enumerate(keys):
            values = [report["by_condition"][part][c][key]["finished_within_1s"] for c in conditions]
            ax.bar(np.arange(len(conditions)) + (k - (len(keys) - 1) / 2) * width, values, width, label=labels[key])
        ax.set_xticks(range(len(conditions)), [c.replace("phone_", "") for c in conditions], rotation=45, ha="right")
        ax.set_title(part.replace("_", " "), fontsize=9)
        ax.set_ylim(0, 1.05)
    np.atleast_1d(axes)[0].set_ylabel("finished turns ended within 1 s")
    np.atleast_1d(axes)[0].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"End of turn on the line, silence rule; rule's choice: {report['choice']['setting']}; "
                 f"shipped: {report['shipped_setting']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ravdess-per-actor", type=int, default=5)
    parser.add_argument("--korean", type=int, default=None, help="korean_operator clips (default: all)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if not (eot.DATA / "ravdess" / "manifest.csv").is_file() or not (eot.DATA / "korean_operator" / "manifest.csv").is_file():
        print(f"skipped: {eot.DATA} (RAVDESS, korean_operator) is not there")
        return 0
    started, load_before = time.time(), os.getloadavg()
    grid = settings()
    configs = {s: _config(s) for s in grid}
    end_s = configs[None].turn_taking.end_silence_s
    rule = eot.Setting("silence").rule(end_s)
    parts, talkers = eot._clips(args.ravdess_per_actor, args.korean)
    noises = {"pink": pink_noise(int(120 * LINE_RATE), np.random.default_rng(7)).astype(np.float32),
              "babble": babble(talkers, int(120.0 * LINE_RATE), np.random.default_rng(8))}
    # outcomes[part][setting name][condition][kind] -> per-sample outcomes
    outcomes: dict[str, dict[str, dict[str, dict[str, list[dict[str, Any]]]]]] = {}
    levels: list[float] = []
    for part_index, (part, paths) in enumerate(parts.items()):
        outcomes[part] = {_name(s): {c.name: {"finished": [], "unfinished": []} for c in eot.CONDITIONS} for s in grid}
        for ci, condition in enumerate(eot.CONDITIONS):
            for pi, path in enumerate(paths):
                audio = eot._load(path)
                levels.append(speech_level(resample(audio, eot.RATE, LINE_RATE)))
                for ki, (kind, cut) in enumerate(zip(("finished", "unfinished"), speech_cuts(audio, eot.RATE), strict=True)):
                    rng = np.random.default_rng([11, part_index, ci, pi, ki])  # bench_end_of_turn's samples
                    x, rate = eot.line_audio(audio, cut, condition, noises, rng)
                    vad, scores = eot.vad_scores(configs[None], x, rate)
                    for s in grid:
                        events = eot.replay(configs[s], x, rate, vad, scores, rule, eot.AnswerCache(lambda a, r: 0.0))
                        result = eot.outcome(events, cut / eot.RATE, scores, vad.frame_samples / rate, vad.start_level)
                        outcomes[part][_name(s)][condition.name][kind].append(result)
            print(part, condition.name, f"{time.time() - started:.0f}s", flush=True)
    phone = [c.name for c in eot.CONDITIONS if c.phone]
    sweep = {part: [{"setting": _name(s),
                     "telephone": _pooled(outcomes[part][_name(s)], phone, _name(s), end_s),
                     "quiet": _pooled(outcomes[part][_name(s)], QUIET_CONDITIONS, _name(s), end_s),
                     "babble": _pooled(outcomes[part][_name(s)], BABBLE_CONDITIONS, _name(s), end_s)} for s in grid]
             for part in parts}
    choice = choose(sweep[eot.CHOICE_PART])
    chosen = next((s for s in grid if _name(s) == choice["setting"]), None)
    shipped = EmotuneConfig(turn_taking={"end_of_turn": "silence"}).turn_taking
    shipped_setting: GateSetting = (None if shipped.background_speech_db is None else
                                    (shipped.background_speech_db, shipped.noisy_line_db, shipped.caller_level_smooth_s,
                                     shipped.background_pause_hindsight, shipped.caller_resume_db))
    # off, the rule's choice and (when the config ships another setting) the shipped one
    compared = {"off": None, "chosen": chosen, **({"shipped": shipped_setting} if _name(shipped_setting) != _name(chosen) else {})}
    by_condition = {part: {c.name: {key: _pooled(outcomes[part][_name(s)], [c.name], _name(s), end_s) for key, s in compared.items()}
                           for c in eot.CONDITIONS} for part in parts}
    speech_rms = float(np.median(levels))
    alone_level = speech_rms * 10 ** (-5 / 20)
    n_alone = int(eot.ALONE_S * LINE_RATE)
    alone = {name: {_name(s): _alone(s, audio) for s in compared.values()}
             for name, audio in (("hold_music", 0.1 * hold_music(eot.ALONE_S)), ("pink", alone_level * noises["pink"][:n_alone]),
                                 ("babble", alone_level * noises["babble"][:n_alone]))}
    report = {
        "what": "end of turn on the line with background speech: TurnSegmenter (from_config, silero, silence rule) "
        "without and with the caller-level gate (turn_taking.background_speech_db), its settings swept; the samples "
        "of bench_end_of_turn (finished = whole utterance, unfinished = cut mid-way, then 2.5 s without speech)",
        "command": "python -m benchmarks.bench_background_speech " + " ".join(argv if argv is not None else sys.argv[1:]),
        "grid": {"background_speech_db": BELOW_CALLER_DB, "noisy_line_db": NOISY_LINE_DB, "caller_level_smooth_s": SMOOTH_S,
                 "background_pause_hindsight": HINDSIGHT, "caller_resume_db": RESUME_DB},
        "parts": {part: len(paths) for part, paths in parts.items()},
        "choice": {"rule": (choose.__doc__ or "").split("\n\n")[0].replace("\n", " ").strip(),
                   "chosen_on": eot.CHOICE_PART, **choice},
        "shipped_setting": _name(shipped_setting),
        "shipped_is_chosen": _name(shipped_setting) == choice["setting"],
        "held_out": {part: {key: next(r for r in sweep[part] if r["setting"] == _name(s)) for key, s in compared.items()}
                     for part in parts if part != eot.CHOICE_PART and chosen is not None},
        "by_condition": by_condition,
        "sweep": sweep,
        "alone": {"seconds": eot.ALONE_S, "noise_rms": round(alone_level, 4), **alone},
        "seconds": round(time.time() - started, 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "note": "no timing is reported; the outcomes do not depend on load"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    _plot(report, args.out.with_suffix(".png"))
    print(json.dumps({"choice": choice.get("setting"), "shipped": report["shipped_setting"],
                      "held_out": {p: {k: {g: v[g]["finished_within_1s"] for g in ("quiet", "babble")} | {
                          "cut": v["telephone"]["cut_inside_utterance"]} for k, v in r.items()}
                          for p, r in report["held_out"].items()}}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
