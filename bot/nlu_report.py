"""Turn a `rasa test nlu --cross-validation` run into the committed report of a bot (stdlib only).

    cd bot/contact_center && ../../.venv-rasa/bin/rasa test nlu --nlu data/nlu.yml --config config.yml \\
        --cross-validation --folds 5 --out /tmp/cv
    python bot/nlu_report.py contact_center /tmp/cv

writes ``bot/<bot>/nlu_cross_validation.json`` (Rasa's intent report, test folds) and
``bot/<bot>/nlu_cross_validation.md`` (per-intent table, worst first, the target and the most
frequent confusions).
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

TARGET_F1 = 0.90
BOT_DIR = Path(__file__).resolve().parent


def main(bot: str, run_dir: str, folds: int = 5) -> int:
    out = Path(run_dir)
    report = json.loads((out / "intent_report.json").read_text(encoding="utf-8"))
    errors = json.loads((out / "intent_errors.json").read_text(encoding="utf-8"))
    intents = {k: v for k, v in report.items() if isinstance(v, dict) and "f1-score" in v and not k.endswith("avg")}
    weighted = report["weighted avg"]["f1-score"]
    lines = [
        f"# `{bot}` NLU: {folds}-fold cross-validation (production `config.yml`)",
        "",
        f"Command: `rasa test nlu --nlu data/nlu.yml --config config.yml --cross-validation --folds {folds}`, then",
        f"`python bot/nlu_report.py {bot} <out>`. Test-fold figures; a prediction below the FallbackClassifier",
        "threshold (0.4) counts as `nlu_fallback`, i.e. wrong.",
        "",
        f"**Intent F1 (weighted): {weighted:.3f}** (macro {report['macro avg']['f1-score']:.3f}, accuracy "
        f"{report.get('accuracy', 0):.3f}); target {TARGET_F1:.2f}: **{'met' if weighted >= TARGET_F1 else 'missed'}**.",
        "",
        "| intent | precision | recall | F1 | examples |",
        "|---|---|---|---|---|",
    ]
    for name, row in sorted(intents.items(), key=lambda kv: kv[1]["f1-score"]):
        lines.append(f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1-score']:.3f} | {row['support']} |")
    confusions = collections.Counter((e["intent"], e["intent_prediction"]["name"]) for e in errors)
    lines += ["", f"Most frequent confusions ({len(errors)} errors in all):", ""]
    lines += [f"- {gold} -> {predicted}: {count}" for (gold, predicted), count in confusions.most_common(8)]
    target = BOT_DIR / bot
    (target / "nlu_cross_validation.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (target / "nlu_cross_validation.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"{bot}: weighted intent F1 {weighted:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
