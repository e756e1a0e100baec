"""Assemble a shipped v2 model folder: final head on every corpus, export, results, model card.

    .venv/bin/python -m emotion_models.ship_v2 --encoder smart-turn-v3.2 --cache results/cache/smart-turn \\
        --hparams emotion_models/hparams/head_smart_turn.yaml --loco results/v2/smart-turn \\
        --dest models/emotune-ser-v2-st

The head is trained on the class corpora except korean_operator (the stand-in for an operator's own calls,
added by ``emotune finetune``) and BAVED (development speakers held out for the epoch and
the temperature), exported with its parity check (``export_onnx.head``), and the folder gets the
leave-one-corpus-out results it was chosen by (``results.json``, confusion PNGs) and a model card.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from emotion_models.corpora import CLASSES
from emotion_models.evaluate import plot_confusion
from emotion_models.head import save_head
from emotion_models.train_head import load_recipe, load_training_data, run

__all__ = ["ship", "main"]

CORPORA_CREDIT = {
    "ravdess": "RAVDESS (Livingstone & Russo 2018), CC BY-NC-SA 4.0",
    "emodb": "Berlin Database of Emotional Speech (Burkhardt et al. 2005), research use",
    "turev": "TurEV-DB (Canpolat, Ormanoğlu & Zeyrek 2020), CC BY-NC-ND 4.0",
    "baved": "BAVED (github 40uf411), research use, arousal only",
    "korean_operator": "emotiontts open DB sample (Selvas AI / KAIST), 5 speakers, CC BY-NC-SA 4.0",
}


def _card(dest: Path, sidecar: dict[str, Any], summary: dict[str, Any] | None, corpora: list[str]) -> str:
    mode = sidecar["adaptation"]["mode"]
    lines = [
        f"# {dest.name}: v2 emotion model ({sidecar['encoder']['name']} encoder + trained head)",
        "",
        "What runs: Whisper log-mel (numpy) -> frozen pretrained encoder (`" + sidecar["encoder"]["path"] + "`) ->",
        f"per-call adaptation (`{mode}`, prior {sidecar['adaptation']['prior_windows']} windows) -> head (`head.onnx`).",
        "Classes: " + ", ".join(sidecar["labels"]) + "; arousal 0..1. One label per 2-s window, every second.",
        "",
        "## Licences",
        f"- encoder: {sidecar['licence']['encoder']}",
        f"- head (trained by us): {sidecar['licence']['head']}",
        "- **The head inherits the non-commercial terms of its training data.** Fine-tune on your own calls",
        "  (`emotune finetune --data my_calls.csv`) or retrain on data you may use commercially.",
        "",
        "## Training data",
        *[f"- {CORPORA_CREDIT.get(c, c)}" for c in corpora],
        "",
        "## How it was chosen",
        "By the leave-one-corpus-out mean UA (per 2-s window; clean and 8 kHz mu-law; mixed- and single-emotion",
        "calls), never by in-corpus accuracy. Figures: `results.json` (from `python -m emotion_models.experiments_v2`).",
    ]
    if summary:
        row = summary["modes"].get(mode)
        if row:
            lines += [
                "",
                f"LOCO mean UA {row['loco_mean_ua']:.1%}; per cell {json.dumps(row['loco_ua'])};",
                f"worst angry recall per cell {json.dumps(row['loco_worst_angry_recall'])}; mean ECE {row['loco_mean_ece']}.",
            ]
    lines += [
        "",
        "## Limits",
        "Acted speech in four languages plus Arabic arousal. Zero-shot on a language it never heard it is",
        "much weaker (see `results.json`); a hundred labelled clips of your callers make it good.",
    ]
    return "\n".join(lines) + "\n"


def ship(
    encoder: str, cache: Path, hparams_path: Path, dest: Path, loco: Path | None, adaptation: str | None,
    exclude: list[str] | None = None,
) -> dict[str, Any]:
    from export_onnx.head import write_v2_model

    # --loco: an experiments_v2 output folder (summary.json + loco.json: results and confusion PNGs), or
    # just a committed summary JSON (results only).
    summary_file = loco / "summary.json" if loco is not None and loco.is_dir() else loco
    summary = json.loads(summary_file.read_text()) if summary_file is not None and summary_file.is_file() else None
    mode = adaptation or (summary or {}).get("chosen_by_loco_mean")
    overrides = {"adaptation": mode} if mode else {}
    hparams = load_recipe(hparams_path, overrides)
    data = load_training_data(cache)
    # Corpora kept out of the shipped model: korean_operator stands for an operator's own calls, which a
    # customer adds with `emotune finetune`; a base that had heard them could not show what they add.
    rows = np.flatnonzero(~np.isin(data.meta.corpus, exclude or []))
    result = run(hparams, data, rows, None)
    dest.mkdir(parents=True, exist_ok=True)
    corpora = sorted(set(data.meta.corpus[rows].tolist()))
    save_head(result["_head"], dest / "head.ckpt", {"encoder": encoder, "trained_on": corpora})
    sidecar = write_v2_model(
        dest, result["_head"], result["_spec"], encoder=encoder, temperature=float(result["temperature"]),
        pool=100 // int(data.meta.states.shape[2]), labels=list(CLASSES),
        trained_on=corpora, example_states=data.windows["clean"].states[:16].astype(np.float32),
        extra={"training": {k: v for k, v in result.items() if not k.startswith("_") and k != "history"}},
    )  # fmt: skip
    if summary and summary_file is not None:
        shutil.copy(summary_file, dest / "results.json")
    if summary and loco is not None and (loco / "loco.json").is_file():
        folds = json.loads((loco / "loco.json").read_text())[sidecar["adaptation"]["mode"]]["folds"]
        for corpus, fold in folds.items():
            cell = fold["test"]["telephone/single"]
            plot_confusion(cell["confusion"], CLASSES, f"held-out {corpus}, telephone, single-emotion calls: UA {cell['ua']:.1%}",
                           dest / f"confusion_loco_{corpus}.png")  # fmt: skip
    (dest / "MODEL_CARD.md").write_text(_card(dest, sidecar, summary, corpora), encoding="utf-8")
    return sidecar


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--hparams", type=Path, required=True)
    parser.add_argument("--dest", type=Path, required=True)
    parser.add_argument("--loco", type=Path, default=None)
    parser.add_argument("--adaptation", default=None)
    parser.add_argument("--exclude-corpora", nargs="*", default=["korean_operator"],
                        help="corpora the shipped head never sees (default: korean_operator, the operator's data)")
    args = parser.parse_args(argv)
    ship(args.encoder, args.cache, args.hparams, args.dest, args.loco, args.adaptation, args.exclude_corpora)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
