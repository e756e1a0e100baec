"""Seed ensembles of the v2 head, measured by leave-one-corpus-out.

    .venv/bin/python -m emotion_models.ensemble_v2 --cache results/cache/smart-turn \\
        --hparams emotion_models/hparams/head_smart_turn.yaml --members 3 --set threads=1 number_of_epochs=10 \\
        --out emotion_models/results/v2/smart_turn_ensemble_loco.json

The encoder costs ~20x the head per window, so several heads on the same encoder states are nearly
free at run time; whether they pay is measured here, on corpora none of them heard. Per LOCO fold
(RAVDESS, EmoDB, TurEV, korean_operator), ``--members`` heads are trained with the same recipe, data and
development speakers, differing only in ``init_seed`` (initialisation and draws); member 1 is exactly
the experiments_v2 run. The ensemble (:class:`emotion_models.head.HeadEnsemble`: mean logits) gets its
own temperature on the shared development windows and is scored like one head: UA, recall, ECE per
cell, hand-offs. The JSON holds the single-member and the ensemble rows side by side.
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
from emotion_models.experiments_v2 import loco_row
from emotion_models.head import HeadEnsemble
from emotion_models.train_head import (
    dev_speaker_temperature,
    evaluate,
    load_recipe,
    load_training_data,
    run,
)

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--hparams", type=Path, required=True)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--corpora", nargs="+", default=list(CLASS_CORPORA))
    parser.add_argument("--set", nargs="*", default=[], help="hparam overrides key=value (YAML values)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.members < 2:
        parser.error("--members must be at least 2 (one member is experiments_v2)")
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    hparams = load_recipe(args.hparams, {**overrides, "adaptation": "none", "progress": False})
    data = load_training_data(args.cache)
    meta = data.meta
    single: dict[str, Any] = {}
    ensemble: dict[str, Any] = {}
    for corpus in args.corpora:
        started = time.monotonic()
        test = meta.corpus == corpus
        train_rows, test_rows = np.flatnonzero(~test), np.flatnonzero(test)
        seed = int(hparams["seed"])
        members = [run({**hparams, "init_seed": seed + k}, data, train_rows, test_rows if k == 0 else None)
                   for k in range(args.members)]  # fmt: skip
        spec = members[0]["_spec"]
        heads = HeadEnsemble([m["_head"] for m in members]).eval()
        temperature = dev_speaker_temperature(heads, spec, data, train_rows, members[0]["dev_speakers"], seed)
        single[corpus] = {"test": members[0]["test"], "temperature": members[0]["temperature"]}
        ensemble[corpus] = {"test": evaluate(heads, data, spec, test_rows, temperature), "temperature": round(temperature, 3),
                            "train_s": round(time.monotonic() - started, 1)}  # fmt: skip
        cell = "telephone/single"
        print(f"[ensemble] {corpus}: UA {single[corpus]['test'][cell]['ua']:.3f} -> {ensemble[corpus]['test'][cell]['ua']:.3f}, "
              f"ECE {single[corpus]['test'][cell]['ece']:.3f} -> {ensemble[corpus]['test'][cell]['ece']:.3f} ({cell})",
              file=sys.stderr, flush=True)  # fmt: skip
    summary = {"one head": loco_row(single), f"{args.members} heads (mean logits)": loco_row(ensemble)}
    for name, folds in (("one head", single), (f"{args.members} heads (mean logits)", ensemble)):
        summary[name]["escalation_telephone_single_calls"] = {
            corpus: f["test"]["telephone/single"].get("escalation") for corpus, f in folds.items()
        }
    command = "python -m emotion_models.ensemble_v2 " + " ".join(argv if argv is not None else sys.argv[1:])
    report = {"command": command, "hparams": str(args.hparams), "overrides": overrides, "members": args.members,
              "summary": summary, "folds": {"one head": single, "ensemble": ensemble}}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
