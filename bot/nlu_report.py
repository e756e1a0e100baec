"""Turn `rasa test nlu --cross-validation` runs into the committed report of a bot (stdlib only).

    cd bot/contact_center && ../../.venv-rasa/bin/python ../nlu_cv.py test nlu --nlu data/nlu.yml \\
        --config config.yml --cross-validation --folds 5 --out /tmp/cv
    python bot/nlu_report.py contact_center /tmp/cv

Fold splits differ by ``--seed`` (bot/nlu_cv.py, default 0); a config chosen on one split is checked on
others: run again with ``--seed 1`` etc. into other folders and add each with ``--repeat RUN_DIR``
(the report then has their mean, the figure no choice has seen):

    python bot/nlu_report.py contact_center /tmp/cv --repeat /tmp/cv-s1 --repeat /tmp/cv-s2 --repeat /tmp/cv-s3

``bot/nlu_cv.py`` is `rasa test nlu` with the FallbackClassifier's verdict kept: a message the bot
would answer with "could you rephrase" counts as ``nlu_fallback``, i.e. wrong (plain `rasa test nlu`
undoes it and scores the classifier's top intent instead; a run made that way is reported as such).

writes ``bot/<bot>/nlu_cross_validation.json`` (Rasa's intent report, test folds; plus Rasa's entity
report under ``entity_report`` when the bot has entities) and ``bot/<bot>/nlu_cross_validation.md``
(per-intent table, worst first, the target and the most frequent confusions, entity F1).

A choice between pipelines is measured the same way: run the cross-validation once per config and
name the others with ``--versus CONFIG=RUN_DIR`` (``ko_in_car``: logistic regression + CRF vs DIET + CRF).
The report then has a comparison table, and the JSON a ``comparison`` entry; ``--before CONFIG=RUN_DIR``
adds the previous production config's run on the previous data (CONFIG names its git revision):

    PYTHONPATH=$PWD/../.. ../../.venv-rasa/bin/python ../nlu_cv.py test nlu ... --config config.yml --out /tmp/cv
    PYTHONPATH=$PWD/../.. ../../.venv-rasa/bin/python ../nlu_cv.py test nlu ... --config config.diet.yml --out /tmp/cv-diet
    python bot/nlu_report.py ko_in_car /tmp/cv --target 0.85 --versus config.diet.yml=/tmp/cv-diet \
        --before config.yml@6c8bbe9=/tmp/cv-before
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path
from typing import Any

__all__ = ["TARGET_F1", "RunSummary", "summarise_run", "write_report", "main"]

TARGET_F1 = 0.90
BOT_DIR = Path(__file__).resolve().parent
# Rasa names the entity report after the extractor: the first of these with entity classes is read
# (DIET's, ENTITY_REPORT, when DIET extracts entities; the CRF's when DIET only classifies intents).
ENTITY_EXTRACTORS = ("DIETClassifier", "CRFEntityExtractor")
ENTITY_REPORT = f"{ENTITY_EXTRACTORS[0]}_report.json"


class RunSummary:
    """The figures of one cross-validation run (one config)."""

    def __init__(self, config: str, run_dir: Path) -> None:
        self.config = config
        self.intent_report: dict[str, Any] = json.loads((run_dir / "intent_report.json").read_text(encoding="utf-8"))
        self.errors: list[dict[str, Any]] = json.loads((run_dir / "intent_errors.json").read_text(encoding="utf-8"))
        self.entity_extractor: str | None = None
        self.entity_report: dict[str, Any] | None = None
        for extractor in ENTITY_EXTRACTORS:
            entity_file = run_dir / f"{extractor}_report.json"
            report = json.loads(entity_file.read_text(encoding="utf-8")) if entity_file.is_file() else {}
            # An entity report without entity classes (a bot with none) says nothing.
            if any(isinstance(v, dict) and "f1-score" in v and not k.endswith("avg") for k, v in report.items()):
                self.entity_extractor, self.entity_report = extractor, report
                break
        # Written by bot/nlu_cv.py (the FallbackClassifier's verdict kept); absent for plain `rasa test nlu`.
        fallback_file = run_dir / "fallbacks.json"
        self.fallbacks: list[dict[str, Any]] | None = (
            json.loads(fallback_file.read_text(encoding="utf-8")) if fallback_file.is_file() else None
        )
        run_file = run_dir / "run.json"  # bot/nlu_cv.py: the fold seed
        self.seed: int | None = json.loads(run_file.read_text(encoding="utf-8"))["seed"] if run_file.is_file() else None
        gold = {e["text"]: e["intent"] for e in self.errors if e["intent_prediction"]["name"] == "nlu_fallback"}
        for fallback in self.fallbacks or []:
            if fallback.get("text") in gold:
                fallback["intent"] = gold[fallback["text"]]

    @property
    def macro_f1(self) -> float:
        """Over the intents of the data (a kept ``nlu_fallback`` is a prediction, not a class)."""
        rows = _gold_rows(self.intent_report)
        return sum(float(row["f1-score"]) for row in rows.values()) / max(len(rows), 1)

    @property
    def intent_f1(self) -> float:
        return float(self.intent_report["weighted avg"]["f1-score"])

    @property
    def entity_f1(self) -> float | None:
        return None if self.entity_report is None else float(self.entity_report["weighted avg"]["f1-score"])

    def as_comparison(self) -> dict[str, Any]:
        return {
            "intent_f1_weighted": round(self.intent_f1, 4),
            "intent_f1_macro": round(self.macro_f1, 4),
            "intent_accuracy": round(float(self.intent_report.get("accuracy", 0.0)), 4),
            "entity_f1_weighted": None if self.entity_f1 is None else round(self.entity_f1, 4),
            "errors": len(self.errors),
        }


def summarise_run(config: str, run_dir: str | Path) -> RunSummary:
    return RunSummary(config, Path(run_dir))


def _gold_rows(report: dict[str, Any]) -> dict[str, Any]:
    """Per-class rows of a Rasa report, without the averages and without classes no example has."""
    return {k: v for k, v in report.items()
            if isinstance(v, dict) and "f1-score" in v and not k.endswith("avg") and v.get("support", 1)}  # fmt: skip


def _per_class_rows(report: dict[str, Any]) -> list[str]:
    rows = _gold_rows(report)
    return [f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1-score']:.3f} | {row['support']} |"
            for name, row in sorted(rows.items(), key=lambda kv: kv[1]["f1-score"])]  # fmt: skip


def _entity_f1_text(f1: float | None, bot_has_entities: bool) -> str:
    if f1 is not None:
        return f"{f1:.3f}"
    # A run of a bot with entities without an entity report: Rasa dropped every annotation (e.g. not
    # aligned with that pipeline's tokens), so nothing was learned or evaluated.
    return "none learned (no entity report)" if bot_has_entities else "n/a (no entities)"


def write_report(bot: str, chosen: RunSummary, others: list[RunSummary], folds: int, target: float,
                 bot_dir: Path | None = None, repeats: list[RunSummary] | None = None,
                 before: list[RunSummary] | None = None) -> str:  # fmt: skip
    """Writes the bot's nlu_cross_validation.md/.json (in ``bot/<bot>/`` unless ``bot_dir``); returns the
    one-line summary."""
    target_dir = bot_dir or BOT_DIR / bot
    report = chosen.intent_report
    weighted = chosen.intent_f1
    # Our own components (bot/components/) import by module path: the repo root must be on PYTHONPATH.
    uses_ours = "bot.components." in (target_dir / chosen.config).read_text(encoding="utf-8")
    env = "PYTHONPATH=../.. " if uses_ours else ""
    versus = "".join(f" --versus {run.config}=<out-{Path(run.config).stem}>" for run in others)
    versus += "".join(f" --before {run.config}=<out-before>" for run in before or [])
    target_arg = f" --target {target:.2f}" if target != TARGET_F1 else ""
    target_arg += "".join(f" --repeat <out-seed{run.seed}>" for run in repeats or [])
    runner = "python ../nlu_cv.py test nlu" if chosen.fallbacks is not None else "rasa test nlu"
    seed = f" --seed {chosen.seed}" if chosen.seed else ""
    seeds = ", ".join(str(run.seed) for run in repeats or [])
    other_splits = f" (and `--seed N --out <out-seedN>` for N = {seeds})" if repeats else ""
    lines = [
        f"# `{bot}` NLU: {folds}-fold cross-validation (production `{chosen.config}`)",
        "",
        f"Command (in `bot/{bot}`, once per config): `{env}{runner} --nlu data/nlu.yml --config <config> "
        f"--cross-validation --folds {folds}{seed} --out <out>`{other_splits}, then",
        f"`python bot/nlu_report.py {bot} <out>{target_arg}{versus}`. Test-fold figures.",
        *_fallback_lines(chosen, target_dir / chosen.config),
        "",
        f"**Intent F1 (weighted): {weighted:.3f}** (macro {chosen.macro_f1:.3f}, accuracy "
        f"{report.get('accuracy', 0):.3f}); target {target:.2f}: **{'met' if weighted >= target else 'missed'}**"
        + (" on this split (the choices were made on it; see the other splits below)." if repeats else "."),
    ]
    if chosen.entity_report is not None:
        extractor = "DIET" if chosen.entity_extractor == "DIETClassifier" else chosen.entity_extractor
        lines += ["", f"**Entity F1 (weighted): {chosen.entity_f1:.3f}** ({extractor}, the same folds)."]
    repeats = repeats or []
    if repeats:
        mean = sum(run.intent_f1 for run in repeats) / len(repeats)
        # A bot with entities: their F1 on each split too (and the mean), in the same table.
        entity_head = (" entity F1 (weighted) |", "---|") if chosen.entity_report is not None else ("", "")
        seeds = ", ".join(str(run.seed) for run in repeats)
        lines += [
            "",
            f"The same config and data on other fold splits (`--seed {seeds}`): the pipeline and its thresholds",
            "were chosen on the split above, so these are the check no choice has seen.",
            f"**Their mean intent F1 (weighted): {mean:.3f}**; target {target:.2f}: "
            f"**{'met' if mean >= target else 'missed'}**." + _entity_mean_text(repeats, chosen),
            "",
            "| fold seed | intent F1 (weighted) | accuracy | errors | of which fallbacks |" + entity_head[0],
            "|---|---|---|---|---|" + entity_head[1],
        ]
        lines += [f"| {run.seed} | {run.intent_f1:.3f} | {run.intent_report.get('accuracy', 0):.3f} | {len(run.errors)} | "
                  f"{len(run.fallbacks or [])} |" + _entity_cell(run, chosen) for run in [chosen, *repeats]]  # fmt: skip
    if before:
        lines += [
            "",
            "Before this version: the previous production config on the previous data (the git revision named in",
            f"the config column: `git show REV:bot/{bot}/config.yml` and `REV:bot/{bot}/data/nlu.yml` into files, then",
            "the command above with those as `--config` and `--nlu`), measured the same way and on the same fold seed:",
            "",
            "| config (revision) | intent F1 (weighted) | accuracy | entity F1 (weighted) | errors | of which fallbacks |",
            "|---|---|---|---|---|---|",
        ]
        lines += [f"| `{run.config}` | {run.intent_f1:.3f} | {run.intent_report.get('accuracy', 0):.3f} | "
                  f"{_entity_f1_text(run.entity_f1, chosen.entity_report is not None)} | {len(run.errors)} | "
                  f"{len(run.fallbacks or [])} |" for run in before]  # fmt: skip
    if others:
        lines += [
            "",
            f"Pipelines compared (each its own `rasa test nlu --cross-validation --folds {folds}` run on the same data",
            "and folds' sizes; the production config is the one with the higher intent F1):",
            "",
            "| config | intent F1 (weighted) | intent F1 (macro) | accuracy | entity F1 (weighted) | errors |",
            "|---|---|---|---|---|---|",
        ]
        has_entities = any(run.entity_report is not None for run in [chosen, *others])
        for run in [chosen, *others]:
            row = run.as_comparison()
            mark = " (chosen)" if run is chosen else ""
            lines.append(f"| `{run.config}`{mark} | {row['intent_f1_weighted']:.3f} | {row['intent_f1_macro']:.3f} | "
                         f"{row['intent_accuracy']:.3f} | {_entity_f1_text(run.entity_f1, has_entities)} | {row['errors']} |")  # fmt: skip
    lines += ["", "| intent | precision | recall | F1 | examples |", "|---|---|---|---|---|"]
    lines += _per_class_rows(report)
    if chosen.entity_report is not None:
        lines += ["", "| entity | precision | recall | F1 | examples |", "|---|---|---|---|---|"]
        lines += _per_class_rows(chosen.entity_report)
    confusions = collections.Counter((e["intent"], e["intent_prediction"]["name"]) for e in chosen.errors)
    lines += ["", f"Most frequent confusions ({len(chosen.errors)} errors in all):", ""]
    lines += [f"- {gold} -> {predicted}: {count}" for (gold, predicted), count in confusions.most_common(8)]
    data: dict[str, Any] = dict(report)
    if chosen.entity_report is not None:
        data["entity_report"] = chosen.entity_report
    if repeats:
        data["repeats"] = [{"seed": run.seed, **run.as_comparison()} for run in repeats]
        data["repeats_mean_intent_f1_weighted"] = round(sum(run.intent_f1 for run in repeats) / len(repeats), 4)
        if chosen.entity_report is not None:
            entity_f1s = [run.entity_f1 or 0.0 for run in repeats]
            data["repeats_mean_entity_f1_weighted"] = round(sum(entity_f1s) / len(entity_f1s), 4)
    if before:
        data["before"] = {run.config: {"seed": run.seed, **run.as_comparison()} for run in before}
    if others:
        data["comparison"] = {run.config: run.as_comparison() for run in [chosen, *others]}
    (target_dir / "nlu_cross_validation.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (target_dir / "nlu_cross_validation.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n",
                                                         encoding="utf-8")  # fmt: skip
    entity = "" if chosen.entity_f1 is None else f", entity F1 {chosen.entity_f1:.3f}"
    return f"{bot}: weighted intent F1 {weighted:.3f}{entity}"


def _entity_cell(run: RunSummary, chosen: RunSummary) -> str:
    if chosen.entity_report is None:
        return ""
    return f" {_entity_f1_text(run.entity_f1, True)} |"


def _entity_mean_text(repeats: list[RunSummary], chosen: RunSummary) -> str:
    if chosen.entity_report is None:
        return ""
    mean = sum(run.entity_f1 or 0.0 for run in repeats) / len(repeats)
    return f" Their mean entity F1 (weighted): {mean:.3f}."


def _fallback_thresholds(config: Path) -> str:
    text = config.read_text(encoding="utf-8") if config.is_file() else ""
    _, found, rest = text.partition("name: FallbackClassifier")
    values = dict(line.strip().split(": ", 1) for line in rest.splitlines()[1:3] if ": " in line) if found else {}
    threshold, ambiguity = values.get("threshold", "?"), values.get("ambiguity_threshold", "?")
    return f"confidence below {threshold}, or the two best intents within {ambiguity}"


def _fallback_lines(run: RunSummary, config: Path) -> list[str]:
    rule = _fallback_thresholds(config)
    if run.fallbacks is None:
        return ["Plain `rasa test nlu` undoes the FallbackClassifier: a message the bot would ask to rephrase",
                f"({rule}) is scored by the classifier's best intent, so these figures are optimistic."]  # fmt: skip
    right = sum(1 for f in run.fallbacks if f["diet"] and f["diet"][0]["name"] == f.get("intent"))
    known = sum(1 for f in run.fallbacks if "intent" in f)
    lines = ["The FallbackClassifier's verdict is kept (`bot/nlu_cv.py`): a message the bot would ask to rephrase",
             f"({rule}) is `nlu_fallback`, counted wrong: {len(run.fallbacks)} of the test messages."]  # fmt: skip
    if known:
        lines[-1] = lines[-1][:-1] + f", {right} of which the classifier's best intent had right."
    return lines


def _versus(value: str) -> tuple[str, str]:
    config, sep, run_dir = value.partition("=")
    if not sep or not config or not run_dir:
        raise argparse.ArgumentTypeError(f"--versus takes CONFIG=RUN_DIR, got {value!r}")
    return config, run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bot", help="folder under bot/")
    parser.add_argument("run_dir", help="--out folder of the production config's cross-validation run")
    parser.add_argument("--config", default="config.yml", help="the config that run used")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--target", type=float, default=TARGET_F1, help="intent F1 target (weighted)")
    parser.add_argument("--repeat", action="append", default=[], metavar="RUN_DIR",
                        help="the same config's run on another fold split (bot/nlu_cv.py --seed N)")  # fmt: skip
    parser.add_argument("--before", type=_versus, action="append", default=[], metavar="CONFIG=RUN_DIR",
                        help="the previous production config's run on the previous data (CONFIG names it, "
                             "e.g. config.yml@<revision>)")  # fmt: skip
    parser.add_argument("--versus", type=_versus, action="append", default=[], metavar="CONFIG=RUN_DIR",
                        help="another config's run on the same data, for the comparison table")  # fmt: skip
    args = parser.parse_args(argv)
    if not (BOT_DIR / args.bot).is_dir():
        parser.error(f"no bot folder {BOT_DIR / args.bot}")
    chosen = summarise_run(args.config, args.run_dir)
    others = [summarise_run(config, run_dir) for config, run_dir in args.versus]
    repeats = [summarise_run(args.config, run_dir) for run_dir in args.repeat]
    before = [summarise_run(config, run_dir) for config, run_dir in args.before]
    print(write_report(args.bot, chosen, others, args.folds, args.target, repeats=repeats, before=before))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
