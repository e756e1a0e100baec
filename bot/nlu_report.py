"""Turn `rasa test nlu --cross-validation` runs into the committed report of a bot (stdlib only).

    cd bot/contact_center && ../../.venv-rasa/bin/rasa test nlu --nlu data/nlu.yml --config config.yml \\
        --cross-validation --folds 5 --out /tmp/cv
    python bot/nlu_report.py contact_center /tmp/cv

writes ``bot/<bot>/nlu_cross_validation.json`` (Rasa's intent report, test folds; plus Rasa's entity
report under ``entity_report`` when the bot has entities) and ``bot/<bot>/nlu_cross_validation.md``
(per-intent table, worst first, the target and the most frequent confusions, entity F1).

A choice between pipelines is measured the same way: run the cross-validation once per config and
name the others with ``--versus CONFIG=RUN_DIR`` (the Korean bots: kiwi tokenizer vs whitespace +
character n-grams). The report then has a comparison table, and the JSON a ``comparison`` entry:

    PYTHONPATH=$PWD/../.. ../../.venv-rasa/bin/rasa test nlu ... --config config.yml --out /tmp/cv-kiwi
    PYTHONPATH=$PWD/../.. ../../.venv-rasa/bin/rasa test nlu ... --config config.whitespace.yml --out /tmp/cv-ws
    python bot/nlu_report.py ko_contact_center /tmp/cv-kiwi --target 0.85 --versus config.whitespace.yml=/tmp/cv-ws
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
# Rasa names the entity report after the extractor; DIET is the one our pipelines use.
ENTITY_REPORT = "DIETClassifier_report.json"


class RunSummary:
    """The figures of one cross-validation run (one config)."""

    def __init__(self, config: str, run_dir: Path) -> None:
        self.config = config
        self.intent_report: dict[str, Any] = json.loads((run_dir / "intent_report.json").read_text(encoding="utf-8"))
        self.errors: list[dict[str, Any]] = json.loads((run_dir / "intent_errors.json").read_text(encoding="utf-8"))
        entity_file = run_dir / ENTITY_REPORT
        report = json.loads(entity_file.read_text(encoding="utf-8")) if entity_file.is_file() else {}
        # An entity report without entity classes (a bot with none) says nothing.
        classes = [k for k, v in report.items() if isinstance(v, dict) and "f1-score" in v and not k.endswith("avg")]
        self.entity_report: dict[str, Any] | None = report if classes else None

    @property
    def intent_f1(self) -> float:
        return float(self.intent_report["weighted avg"]["f1-score"])

    @property
    def entity_f1(self) -> float | None:
        return None if self.entity_report is None else float(self.entity_report["weighted avg"]["f1-score"])

    def as_comparison(self) -> dict[str, Any]:
        return {
            "intent_f1_weighted": round(self.intent_f1, 4),
            "intent_f1_macro": round(float(self.intent_report["macro avg"]["f1-score"]), 4),
            "intent_accuracy": round(float(self.intent_report.get("accuracy", 0.0)), 4),
            "entity_f1_weighted": None if self.entity_f1 is None else round(self.entity_f1, 4),
            "errors": len(self.errors),
        }


def summarise_run(config: str, run_dir: str | Path) -> RunSummary:
    return RunSummary(config, Path(run_dir))


def _per_class_rows(report: dict[str, Any]) -> list[str]:
    rows = {k: v for k, v in report.items() if isinstance(v, dict) and "f1-score" in v and not k.endswith("avg")}
    return [f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1-score']:.3f} | {row['support']} |"
            for name, row in sorted(rows.items(), key=lambda kv: kv[1]["f1-score"])]  # fmt: skip


def _entity_f1_text(f1: float | None, bot_has_entities: bool) -> str:
    if f1 is not None:
        return f"{f1:.3f}"
    # A run of a bot with entities without an entity report: Rasa dropped every annotation (e.g. not
    # aligned with that pipeline's tokens), so nothing was learned or evaluated.
    return "none learned (no entity report)" if bot_has_entities else "n/a (no entities)"


def write_report(bot: str, chosen: RunSummary, others: list[RunSummary], folds: int, target: float,
                 bot_dir: Path | None = None) -> str:  # fmt: skip
    """Writes the bot's nlu_cross_validation.md/.json (in ``bot/<bot>/`` unless ``bot_dir``); returns the
    one-line summary."""
    target_dir = bot_dir or BOT_DIR / bot
    report = chosen.intent_report
    weighted = chosen.intent_f1
    # Our own components (bot/components/) import by module path: the repo root must be on PYTHONPATH.
    uses_ours = "bot.components." in (target_dir / chosen.config).read_text(encoding="utf-8")
    env = "PYTHONPATH=../.. " if uses_ours else ""
    versus = "".join(f" --versus {run.config}=<out-{Path(run.config).stem}>" for run in others)
    target_arg = f" --target {target:.2f}" if target != TARGET_F1 else ""
    lines = [
        f"# `{bot}` NLU: {folds}-fold cross-validation (production `{chosen.config}`)",
        "",
        f"Command (in `bot/{bot}`, once per config): `{env}rasa test nlu --nlu data/nlu.yml --config <config> "
        f"--cross-validation --folds {folds} --out <out>`, then",
        f"`python bot/nlu_report.py {bot} <out>{target_arg}{versus}`. Test-fold figures; a prediction below the",
        "FallbackClassifier threshold (0.4) counts as `nlu_fallback`, i.e. wrong.",
        "",
        f"**Intent F1 (weighted): {weighted:.3f}** (macro {report['macro avg']['f1-score']:.3f}, accuracy "
        f"{report.get('accuracy', 0):.3f}); target {target:.2f}: **{'met' if weighted >= target else 'missed'}**.",
    ]
    if chosen.entity_report is not None:
        lines += ["", f"**Entity F1 (weighted): {chosen.entity_f1:.3f}** (DIET, the same folds)."]
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
    if others:
        data["comparison"] = {run.config: run.as_comparison() for run in [chosen, *others]}
    (target_dir / "nlu_cross_validation.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (target_dir / "nlu_cross_validation.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n",
                                                         encoding="utf-8")  # fmt: skip
    entity = "" if chosen.entity_f1 is None else f", entity F1 {chosen.entity_f1:.3f}"
    return f"{bot}: weighted intent F1 {weighted:.3f}{entity}"


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
    parser.add_argument("--versus", type=_versus, action="append", default=[], metavar="CONFIG=RUN_DIR",
                        help="another config's run on the same data, for the comparison table")  # fmt: skip
    args = parser.parse_args(argv)
    if not (BOT_DIR / args.bot).is_dir():
        parser.error(f"no bot folder {BOT_DIR / args.bot}")
    chosen = summarise_run(args.config, args.run_dir)
    others = [summarise_run(config, run_dir) for config, run_dir in args.versus]
    print(write_report(args.bot, chosen, others, args.folds, args.target))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
