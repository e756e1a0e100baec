"""Escalation thresholds chosen on scores of corpora the model never heard (nested leave-one-corpus-out).

    .venv/bin/python -m emotion_models.escalation_choice --cache results/cache/smart-turn \\
        --hparams emotion_models/hparams/head_smart_turn.yaml --set threads=1 number_of_epochs=10 \\
        --out emotion_models/results/v2/smart_turn_escalation_choice.json

A hand-off threshold means something only against the scores it is applied to: a temperature fitted
on the training corpora's own speakers leaves the model overconfident on a new language, one fitted
on held-out corpora (``temperature_from: held_out_corpora``) makes it honest but flatter, so the
rule's ``min_confidence`` must be chosen again. Per LOCO fold (RAVDESS, EmoDB, TurEV,
korean_operator): a head trained on the other corpora (the experiments_v2 run), both temperatures,
and the hand-off rates of every rule on a grid (``streak_turns`` 2 and 3, ``min_confidence``,
``floor_confidence``) on every single-emotion call of the held-out corpus (the natural call: a
caller keeps one emotion; turns of 3 windows, as :func:`train_head.escalation_simulation`). A rule
is chosen for fold k on the three other folds only (the most angry calls handed off with at most
``--false-budget`` of the other calls handed off, on average) and scored on fold k: what an operator
should expect on callers of a language none of the corpora speak. The rule to ship is chosen on all
four folds. Writes the JSON (every rate, the choices) and a PNG of the trade-off.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emotion_models.corpora import CLASS_CORPORA
from emotion_models.train_head import (
    TrainingData,
    _cell_probs,
    dev_speaker_temperature,
    expected_calibration_error,
    hand_offs,
    load_recipe,
    load_training_data,
    run,
    single_emotion_calls,
)
from emotune.escalation import StreakRule

__all__ = ["SHIPPED_RULE", "choose", "main", "rule_grid", "rule_name", "tempered"]

TEMPERATURES = ("dev_speakers", "held_out_corpora")
CHANNELS = ("telephone", "clean")
# config.yml's contact-center rule today, chosen on in-corpus scores
SHIPPED_RULE = StreakRule(("angry",), 3, 0.5, 0.35)


def rule_name(rule: StreakRule) -> str:
    floor = "strict" if rule.floor_confidence is None else f"floor {rule.floor_confidence:.2f}"
    return f"{rule.streak_turns} turns, mean >= {rule.min_confidence:.2f}, {floor}"


def rule_grid(streaks: Sequence[int] = (2, 3)) -> list[StreakRule]:
    """Every rule the choice may pick: the strict streak and accumulated evidence with a floor."""
    rules: list[StreakRule] = []
    for streak in streaks:
        for minimum in np.round(np.arange(0.25, 0.701, 0.05), 2):
            floors: list[float | None] = [None, *np.round(np.arange(0.15, minimum + 1e-9, 0.05), 2).tolist()]
            rules.extend(StreakRule(("angry",), streak, float(minimum), floor) for floor in floors)
    return rules


def tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities at temperature 1 -> at ``temperature`` (softmax(log p / T) = softmax(z / T))."""
    scaled = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    out = np.exp(scaled)
    return np.asarray(out / out.sum(axis=1, keepdims=True))


@dataclass
class FoldScores:
    """One LOCO fold: its temperatures and untempered window probabilities of the held-out calls."""

    temperatures: dict[str, float]
    rows: np.ndarray
    probs: dict[str, np.ndarray]  # channel -> [rows, classes], single-emotion call condition
    train_s: float


def fold_scores(hparams: dict[str, Any], data: TrainingData, corpus: str) -> FoldScores:
    """Train the fold's head (temperature from held-out corpora), fit the dev-speaker temperature of the
    same head as the recipe's default does, and score the held-out corpus untempered."""
    started = time.monotonic()
    meta = data.meta
    test = meta.corpus == corpus
    train_rows = np.flatnonzero(~test)
    result = run({**hparams, "temperature_from": "held_out_corpora"}, data, train_rows, None)
    head, spec = result["_head"], result["_spec"]
    dev_temperature = dev_speaker_temperature(head, spec, data, train_rows, result["dev_speakers"], int(hparams["seed"]))
    rows = np.flatnonzero(test & (meta.label >= 0))
    probs = {channel: p for channel, condition, p in _cell_probs(head, spec, data, rows) if condition == "single"}
    return FoldScores(
        {"dev_speakers": dev_temperature, "held_out_corpora": float(result["temperature"])},
        rows, probs, round(time.monotonic() - started, 1),
    )


def fold_rates(data: TrainingData, fold: FoldScores, rules: Sequence[StreakRule]) -> dict[str, Any]:
    """Per temperature and channel: the window ECE and every rule's hand-off rates."""
    out: dict[str, Any] = {}
    labels = data.meta.label[fold.rows]
    for source in TEMPERATURES:
        for channel in CHANNELS:
            probs = tempered(fold.probs[channel], fold.temperatures[source])
            calls = single_emotion_calls(data.meta, fold.rows, probs)
            out[f"{source}/{channel}"] = {
                "ece": round(expected_calibration_error(probs, labels), 4),
                "rules": {rule_name(rule): hand_offs(calls, rule) for rule in rules},
            }
    return out


def _mean_rates(rates: dict[str, Any], key: str, folds: Sequence[str], name: str) -> tuple[float, float]:
    entries = [rates[f][key]["rules"][name] for f in folds]
    return (float(np.mean([e["angry_calls_handed_off"] for e in entries])),
            float(np.mean([e["false_hand_off_rate"] for e in entries])))  # fmt: skip


def choose(rates: dict[str, Any], key: str, folds: Sequence[str], rules: Sequence[StreakRule], budget: float) -> StreakRule:
    """The rule handing off the most angry calls on ``folds`` (mean) with mean false hand-offs <= ``budget``;
    ties go to fewer false hand-offs, then to the higher (more conservative) threshold. With no rule
    inside the budget, the one with the fewest false hand-offs."""

    def score(rule: StreakRule) -> tuple[float, ...]:
        handed, false = _mean_rates(rates, key, folds, rule_name(rule))
        inside = false <= budget + 1e-9
        return (inside, handed if inside else -false, -false, rule.min_confidence, rule.floor_confidence or 1.0)

    return max(rules, key=score)


def nested(rates: dict[str, Any], key: str, rules: Sequence[StreakRule], budget: float, streak: int) -> dict[str, Any]:
    """Each fold scored with the rule chosen on the other folds; the rule chosen on all of them."""
    folds = list(rates)
    candidates = [r for r in rules if r.streak_turns == streak]
    per_fold = {}
    for fold in folds:
        rule = choose(rates, key, [f for f in folds if f != fold], candidates, budget)
        per_fold[fold] = {"rule": rule_name(rule), **rates[fold][key]["rules"][rule_name(rule)]}
    final = choose(rates, key, folds, candidates, budget)
    return {
        "per_held_out_fold": per_fold,
        "mean_angry_calls_handed_off": round(float(np.mean([v["angry_calls_handed_off"] for v in per_fold.values()])), 4),
        "mean_false_hand_off_rate": round(float(np.mean([v["false_hand_off_rate"] for v in per_fold.values()])), 4),
        "rule_chosen_on_all_folds": {
            "rule": rule_name(final), "streak_turns": final.streak_turns, "min_confidence": final.min_confidence,
            "floor_confidence": final.floor_confidence,
        },
    }  # fmt: skip


def fixed(rates: dict[str, Any], key: str, rule: StreakRule) -> dict[str, Any]:
    per_fold = {fold: rates[fold][key]["rules"][rule_name(rule)] for fold in rates}
    return {
        "rule": rule_name(rule),
        "per_held_out_fold": per_fold,
        "mean_angry_calls_handed_off": round(float(np.mean([v["angry_calls_handed_off"] for v in per_fold.values()])), 4),
        "mean_false_hand_off_rate": round(float(np.mean([v["false_hand_off_rate"] for v in per_fold.values()])), 4),
    }


def _keys() -> Iterator[str]:
    for source in TEMPERATURES:
        for channel in CHANNELS:
            yield f"{source}/{channel}"


def plot(rates: dict[str, Any], summary: dict[str, Any], out: Path, rules: Sequence[StreakRule], budget: float) -> None:
    """Mean angry calls handed off against mean false hand-offs over the four folds, every rule of the
    grid (3 turns, telephone), per temperature; the shipped rule and the nested choices marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folds = list(rates)
    fig, ax = plt.subplots(figsize=(7, 5))
    for source, colour in zip(TEMPERATURES, ("tab:orange", "tab:blue"), strict=True):
        key = f"{source}/telephone"
        points = np.array([_mean_rates(rates, key, folds, rule_name(r)) for r in rules if r.streak_turns == 3])
        ax.scatter(points[:, 1], points[:, 0], s=10, alpha=0.35, color=colour, label=f"grid, temperature from {source}")
        shipped = summary[key]["shipped_rule"]
        ax.scatter(shipped["mean_false_hand_off_rate"], shipped["mean_angry_calls_handed_off"], marker="s", s=60,
                   color=colour, edgecolor="black", label=f"today's rule ({source})")  # fmt: skip
        choice = summary[key][f"nested_choice_3_turns_false_budget_{budget:.2f}"]
        ax.scatter(choice["mean_false_hand_off_rate"], choice["mean_angry_calls_handed_off"], marker="*", s=160,
                   color=colour, edgecolor="black", label=f"chosen on the other folds, <= {budget:.0%} false ({source})")  # fmt: skip
    ax.set_xlabel("false hand-offs (share of other single-emotion calls), mean of 4 held-out corpora")
    ax.set_ylabel("angry calls handed off, mean of 4 held-out corpora")
    ax.set_title("Escalation rules on corpora the model never heard (telephone, 3 turns)")
    ax.set_xlim(-0.02, 1.0)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--hparams", type=Path)
    parser.add_argument("--corpora", nargs="+", default=list(CLASS_CORPORA))
    parser.add_argument("--false-budget", type=float, nargs="+", default=[0.05, 0.10],
                        help="largest mean share of non-angry calls a chosen rule may hand off (one choice each)")
    parser.add_argument("--rates-from", type=Path, default=None,
                        help="a JSON this command wrote: choose again from its rates (no training)")
    parser.add_argument("--set", nargs="*", default=[], help="hparam overrides key=value (YAML values)")
    parser.add_argument("--out", type=Path, required=True, help="the JSON; the PNG goes beside it")
    args = parser.parse_args(argv)
    if args.rates_from is None and (args.cache is None or args.hparams is None):
        parser.error("--cache and --hparams are required (unless --rates-from)")
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    rules = rule_grid()
    rates: dict[str, Any] = {}
    folds: dict[str, Any] = {}
    earlier: dict[str, Any] = {}
    if args.rates_from is not None:
        earlier = json.loads(args.rates_from.read_text())
        rates, folds, overrides = earlier["rates"], earlier["folds"], earlier["overrides"]
        args.hparams = Path(earlier["hparams"])
    else:
        hparams = load_recipe(args.hparams, {**overrides, "adaptation": "none", "progress": False})
        data = load_training_data(args.cache)
        for corpus in args.corpora:
            scores = fold_scores(hparams, data, corpus)
            rates[corpus] = fold_rates(data, scores, rules)
            folds[corpus] = {"temperatures": {k: round(v, 3) for k, v in scores.temperatures.items()},
                             "windows": int(len(scores.rows)), "train_s": scores.train_s}  # fmt: skip
            print(f"[escalation] {corpus}: T {folds[corpus]['temperatures']}, {scores.train_s:.0f} s", file=sys.stderr, flush=True)
    summary: dict[str, Any] = {}
    for key in _keys():
        summary[key] = {
            "loco_mean_ece_single_calls": round(float(np.mean([rates[f][key]["ece"] for f in rates])), 4),
            "shipped_rule": fixed(rates, key, SHIPPED_RULE),
            **{f"nested_choice_{streak}_turns_false_budget_{budget:.2f}": nested(rates, key, rules, budget, streak)
               for budget in args.false_budget for streak in (3, 2)},
        }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    png = args.out.with_suffix(".png")
    plot(rates, summary, png, rules, args.false_budget[0])
    command = "python -m emotion_models.escalation_choice " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.rates_from is not None:  # the training command reproduces the file; this one re-chose from it
        command, rechosen_by = earlier["command"], command
    report = {"command": command, **({"rechosen_by": rechosen_by} if args.rates_from is not None else {}), "hparams": str(args.hparams), "overrides": overrides, "false_budgets": args.false_budget,
              "folds": folds, "summary": summary, "plot": str(png), "rates": rates}  # fmt: skip
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({"folds": folds, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
