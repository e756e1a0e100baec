"""The v2 evaluation: leave one corpus out (4 languages), both call conditions, clean and telephone.

    .venv/bin/python -m emotion_models.experiments_v2 --cache results/cache/smart-turn \\
        --hparams emotion_models/hparams/head_smart_turn.yaml --adaptation none call_mean speaker_share \\
        --out results/v2/smart-turn

For every adaptation mode and every held-out corpus (RAVDESS, EmoDB, TurEV, korean_operator) a head
is trained on the other corpora plus BAVED (arousal) and scored per 2-s window on the held-out one:
UA, per-class recall (angry above all), ECE, on clean and 8 kHz mu-law audio, in the *mixed* call
condition (each speaker's clips of all emotions, shuffled) and the *single* one (each speaker's clips of
one emotion: what per-call adaptation must not erase). Also the held-out-speaker table (RAVDESS actors
19-24, EmoDB 03 and 16). Writes ``loco.json`` with every number and ``summary.json`` with the table.
Modes are compared by the LOCO mean over both conditions and channels, never by in-corpus accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from emotion_models.corpora import CLASS_CORPORA
from emotion_models.train_head import load_recipe, load_training_data, run

__all__ = ["HELD_OUT_SPEAKERS", "loco", "loco_row", "main", "summarise"]

HELD_OUT_SPEAKERS = ["ravdess_19", "ravdess_20", "ravdess_21", "ravdess_22", "ravdess_23", "ravdess_24", "emodb_03", "emodb_16"]
CELLS = ("clean/mixed", "clean/single", "telephone/mixed", "telephone/single")


def _public(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if not k.startswith("_") and k != "history"}


def loco(hparams: dict[str, Any], cache: Path, corpora: list[str]) -> dict[str, Any]:
    data = load_training_data(cache)
    meta = data.meta
    folds: dict[str, Any] = {}
    for corpus in corpora:
        if corpus not in set(meta.corpus.tolist()):
            continue
        started = time.monotonic()
        test = meta.corpus == corpus
        result = run(hparams, data, np.flatnonzero(~test), np.flatnonzero(test & meta.original))  # copies train only
        folds[corpus] = {**_public(result), "train_s": round(time.monotonic() - started, 1)}
        cells = folds[corpus]["test"]
        print(
            f"[loco] {hparams['adaptation']} -> {corpus}: "
            + ", ".join(f"{c} UA {cells[c]['ua']:.3f} angry {cells[c]['recall'].get('angry', 0):.2f}" for c in CELLS),
            file=sys.stderr,
            flush=True,
        )
    held = np.isin(meta.speaker, HELD_OUT_SPEAKERS)
    speakers = run(hparams, data, np.flatnonzero(~held), np.flatnonzero(held & meta.original))
    return {"folds": folds, "held_out_speakers": _public(speakers)}


def loco_row(folds: dict[str, Any]) -> dict[str, Any]:
    """One variant's LOCO figures from its per-fold ``test`` cells: mean UA per cell, worst angry
    recall, per-corpus UA and angry recall, mean ECE."""
    cell_means = {cell: round(float(np.mean([f["test"][cell]["ua"] for f in folds.values()])), 4) for cell in CELLS}
    return {
        "loco_mean_ua": round(float(np.mean(list(cell_means.values()))), 4),
        "loco_ua": cell_means,
        "loco_worst_angry_recall": {
            cell: round(float(min(f["test"][cell]["recall"].get("angry", 0.0) for f in folds.values())), 4)
            for cell in CELLS
        },
        "loco_per_corpus_ua": {corpus: {cell: f["test"][cell]["ua"] for cell in CELLS} for corpus, f in folds.items()},
        "loco_per_corpus_angry": {
            corpus: {cell: f["test"][cell]["recall"].get("angry", 0.0) for cell in CELLS} for corpus, f in folds.items()
        },
        "loco_mean_ece": round(float(np.mean([f["test"][c]["ece"] for f in folds.values() for c in CELLS])), 4),
    }


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """The table: LOCO mean UA per cell, worst angry recall, mean ECE; held-out speakers."""
    rows: dict[str, dict[str, Any]] = {}
    for mode, entry in results.items():
        folds = entry["folds"]
        held = entry["held_out_speakers"]["test"]
        rows[mode] = {
            **loco_row(folds),
            "escalation_telephone_single_calls": {
                corpus: f["test"]["telephone/single"].get("escalation") for corpus, f in folds.items()
            },
            "held_out_speakers_ua": {cell: held[cell]["ua"] for cell in CELLS},
            "held_out_speakers_ece": {cell: held[cell]["ece"] for cell in CELLS},
        }
    best = max(rows, key=lambda m: float(rows[m]["loco_mean_ua"])) if rows else None
    return {"modes": rows, "chosen_by_loco_mean": best}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--hparams", type=Path)
    parser.add_argument("--merge", type=Path, nargs="*", default=None,
                        help="combine the loco.json of runs made in parallel (one mode each) into --out")
    parser.add_argument("--adaptation", nargs="+", default=["none", "call_mean", "speaker_share"])
    parser.add_argument("--corpora", nargs="+", default=list(CLASS_CORPORA))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", nargs="*", default=[], help="hparam overrides key=value (YAML values)")
    args = parser.parse_args(argv)
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    args.out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        merged: dict[str, Any] = {}
        for folder in args.merge:
            merged.update(json.loads((folder / "loco.json").read_text()))
        (args.out / "loco.json").write_text(json.dumps(merged, indent=1) + "\n")
        first = json.loads((args.merge[0] / "summary.json").read_text())
        summary = {**summarise(merged), "hparams": first.get("hparams"), "overrides": first.get("overrides"),
                   "merged_from": [str(f) for f in args.merge]}  # fmt: skip
        (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        print(json.dumps(summary["modes"], indent=1))
        return 0
    if args.cache is None or args.hparams is None:
        parser.error("--cache and --hparams are required (unless --merge)")
    results = {}
    for mode in args.adaptation:
        hparams = load_recipe(args.hparams, {**overrides, "adaptation": mode, "progress": False})
        results[mode] = loco(hparams, args.cache, args.corpora)
        (args.out / "loco.json").write_text(json.dumps(results, indent=1) + "\n")
    summary = summarise(results)
    summary["hparams"] = str(args.hparams)
    summary["overrides"] = overrides
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
