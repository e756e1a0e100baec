"""Two encoders, one call: the smart-turn and Whisper-base heads combined per window, by leave-one-corpus-out.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m emotion_models.encoder_ensemble \\
        --names smart-turn whisper-base --cache results/cache/smart-turn results/cache/whisper-base \\
        --hparams emotion_models/hparams/head_smart_turn.yaml emotion_models/hparams/head_whisper_base.yaml \\
        --set smart-turn:threads=1 smart-turn:number_of_epochs=10 whisper-base:threads=1 \\
        --probs emotion_models/results/v2/encoder_ensemble_loco_probs.npz \\
        --out emotion_models/results/v2/encoder_ensemble_loco.json

The two v2 encoders fail on different corpora under LOCO, so their heads may correct each other. Per
LOCO fold (RAVDESS, EmoDB, TurEV, korean_operator held out; the other three + BAVED in training) each
encoder's head is trained exactly as experiments_v2 trains it (its own recipe, adaptation ``none``, the
seed of the recipe), gets its own temperature on the development speakers, and scores every window of
the held-out corpus in every cell (clean / telephone x mixed / single). The caches must hold the same
windows in the same order (:func:`check_aligned`), so window ``i`` of one encoder is window ``i`` of
the other. Combination rules (:func:`combine`), all fixed before the held-out corpus is scored:

* ``log mean, equal weights`` (the rule declared first): softmax of the mean of the two tempered
  log-probabilities (a normalised geometric mean);
* ``prob mean, equal weights``: the mean of the two tempered probability vectors;
* ``log mean, weight chosen on the other folds``: the smart-turn weight from a grid, chosen for held-out
  corpus k by the LOCO mean UA of the three other folds only (nested), then applied to fold k.

Each combination gets one more temperature on the shared development windows (as ensemble_v2 does for
seed ensembles; it moves no argmax, only ECE). Window probabilities (untempered, per encoder, cell and
fold) are written to ``--probs`` after every fold, so the scoring can be redone (``--resume``) without
training again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emotion_models.corpora import CLASS_CORPORA, CLASSES
from emotion_models.escalation_choice import tempered
from emotion_models.evaluate import metrics
from emotion_models.experiments_v2 import CELLS, loco_row
from emotion_models.train_head import (
    TrainingData,
    _cell_probs,
    _fit_temperature,
    _window_probs,
    escalation_simulation,
    expected_calibration_error,
    labelled_dev_rows,
    load_recipe,
    load_training_data,
    run,
)
from emotune.errors import DataError

__all__ = ["RULES", "check_aligned", "choose_weight", "combine", "main", "score_cells"]

RULES = ("log", "prob")
ALIGNED_FIELDS = ("corpus", "speaker", "stream", "position", "label", "arousal")
WEIGHT_GRID = tuple(round(w, 2) for w in np.arange(0.0, 1.0001, 0.1))


def check_aligned(first: TrainingData, second: TrainingData, names: Sequence[str] = ("first", "second")) -> None:
    """Raise DataError unless both caches hold the same windows in the same order (every channel):
    same count, corpus, speaker, stream, position in the stream, label and arousal target."""
    for channel in first.windows:
        if channel not in second.windows:
            raise DataError(f"encoder caches {names[0]} and {names[1]}: {names[1]} has no {channel!r} channel")
        a, b = first.windows[channel], second.windows[channel]
        if len(a.label) != len(b.label):
            raise DataError(
                f"encoder caches {names[0]} and {names[1]} are not aligned ({channel}): {len(a.label)} vs "
                f"{len(b.label)} windows; build both with encoder_cache over the same corpora"
            )
        for field in ALIGNED_FIELDS:
            x, y = getattr(a, field), getattr(b, field)
            same = (x == y) | (np.isnan(x) & np.isnan(y)) if field == "arousal" else x == y
            if not np.all(same):
                i = int(np.flatnonzero(~np.asarray(same))[0])
                raise DataError(
                    f"encoder caches {names[0]} and {names[1]} are not aligned ({channel}): window {i} has "
                    f"{field} {x[i]!r} vs {y[i]!r} ({int((~np.asarray(same)).sum())} windows differ); "
                    "build both with encoder_cache over the same corpora"
                )


def combine(probs: Sequence[np.ndarray], weights: Sequence[float], rule: str = "log") -> np.ndarray:
    """Per window, the weighted mean of the members' (tempered) probabilities [N, C]: ``log`` =
    softmax(sum_i w_i log p_i) (normalised geometric mean), ``prob`` = sum_i w_i p_i."""
    if rule not in RULES:
        raise ValueError(f"unknown combination rule {rule!r}: one of {', '.join(RULES)}")
    if len(probs) != len(weights) or not probs:
        raise ValueError(f"{len(probs)} members but {len(weights)} weights")
    shapes = {p.shape for p in probs}
    if len(shapes) != 1:
        raise ValueError(f"members' probabilities differ in shape: {sorted(shapes)}")
    w = np.asarray(weights, dtype=np.float64)
    if np.any(w < 0) or not np.isclose(w.sum(), 1.0):
        raise ValueError(f"weights must be >= 0 and sum to 1, got {w.tolist()}")
    if rule == "prob":
        return np.asarray(sum(wi * p.astype(np.float64) for wi, p in zip(w, probs, strict=True)))
    logp = sum(wi * np.log(np.clip(p.astype(np.float64), 1e-12, 1.0)) for wi, p in zip(w, probs, strict=True))
    logp = np.asarray(logp) - np.max(logp, axis=1, keepdims=True)
    out = np.exp(logp)
    return np.asarray(out / out.sum(axis=1, keepdims=True))


def score_cells(data: TrainingData, rows: np.ndarray, probs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """``train_head.evaluate``'s entry per cell from given window probabilities of ``rows`` (labelled)."""
    meta = data.meta
    labels = meta.label[rows]
    out: dict[str, Any] = {}
    for cell in CELLS:
        p = probs[cell]
        entry = metrics(labels.tolist(), p.argmax(axis=1).tolist(), CLASSES)
        entry["ece"] = round(expected_calibration_error(p, labels), 4)
        entry["ua"] = round(entry["ua"], 4)
        entry["wa"] = round(entry["wa"], 4)
        if cell.endswith("/single"):
            entry["escalation"] = escalation_simulation(meta, rows, p)
        out[cell] = entry
    return out


def _mean_ua(data: TrainingData, rows: np.ndarray, probs: Mapping[str, np.ndarray]) -> float:
    labels = data.meta.label[rows]
    return float(np.mean([metrics(labels.tolist(), probs[c].argmax(axis=1).tolist(), CLASSES)["ua"] for c in CELLS]))


def choose_weight(scores: Mapping[str, Mapping[float, float]], held_out: str) -> float:
    """The first member's weight with the best mean of ``scores[fold][weight]`` over every fold but
    ``held_out`` (ties: the weight nearest 0.5, then the smaller)."""
    others = [f for f in scores if f != held_out]
    if not others:
        raise ValueError(f"no fold other than {held_out!r} to choose a weight on")
    grid = sorted(scores[others[0]])
    return max(grid, key=lambda w: (round(float(np.mean([scores[f][w] for f in others])), 6), -abs(w - 0.5), -w))


def _fold_member(hparams: dict[str, Any], data: TrainingData, train_rows: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
    """Train one encoder's fold head; its temperature, dev speakers, untempered test and dev probabilities."""
    started = time.monotonic()
    result = run(hparams, data, train_rows, None)
    head, spec = result["_head"], result["_spec"]
    test = {f"{channel}/{condition}": p for channel, condition, p in _cell_probs(head, spec, data, rows)}
    dev_rows = labelled_dev_rows(data.meta, train_rows, result["dev_speakers"])
    dev_probs, dev_labels = _window_probs(head, spec, data, dev_rows, int(hparams["seed"]))
    return {
        "temperature": float(result["temperature"]), "dev_speakers": result["dev_speakers"],
        "best_epoch": result["best_epoch"], "dev_ua": result["dev_ua"], "test": test,
        "dev": dev_probs, "dev_labels": dev_labels, "train_s": round(time.monotonic() - started, 1),
    }  # fmt: skip


def _save_probs(path: Path, folds: Mapping[str, Mapping[str, Any]]) -> None:
    arrays: dict[str, np.ndarray] = {}
    for corpus, fold in folds.items():
        arrays[f"{corpus}|rows"] = fold["rows"]
        for name, member in fold["members"].items():
            arrays[f"{corpus}|{name}|temperature"] = np.asarray(member["temperature"])
            arrays[f"{corpus}|{name}|dev"] = member["dev"].astype(np.float32)
            arrays[f"{corpus}|{name}|dev_labels"] = member["dev_labels"]
            arrays[f"{corpus}|{name}|meta"] = np.asarray(json.dumps(
                {k: member[k] for k in ("dev_speakers", "best_epoch", "dev_ua", "train_s")}))  # fmt: skip
            for cell, p in member["test"].items():
                arrays[f"{corpus}|{name}|test|{cell}"] = p.astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(path)


def _load_probs(path: Path, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    folds: dict[str, dict[str, Any]] = {}
    with np.load(path, allow_pickle=False) as data:
        keys = list(data.keys())
        for corpus in sorted({k.split("|")[0] for k in keys}):
            members: dict[str, Any] = {}
            for name in names:
                prefix = f"{corpus}|{name}|"
                if f"{prefix}temperature" not in keys:
                    break
                members[name] = {
                    "temperature": float(data[f"{prefix}temperature"]), "dev": data[f"{prefix}dev"],
                    "dev_labels": data[f"{prefix}dev_labels"], **json.loads(str(data[f"{prefix}meta"])),
                    "test": {cell: data[f"{prefix}test|{cell}"] for cell in CELLS},
                }  # fmt: skip
            else:
                folds[corpus] = {"rows": data[f"{corpus}|rows"], "members": members}
    return folds


def _combined_fold(
    fold: Mapping[str, Any], names: Sequence[str], weights: Sequence[float], rule: str
) -> tuple[dict[str, np.ndarray], float, dict[str, np.ndarray]]:
    """Test probabilities of a combination, its dev temperature, and the same before that temperature."""
    members = [fold["members"][n] for n in names]
    dev = combine([tempered(m["dev"], m["temperature"]) for m in members], weights, rule)
    temperature = _fit_temperature(dev, members[0]["dev_labels"])
    raw = {cell: combine([tempered(m["test"][cell], m["temperature"]) for m in members], weights, rule) for cell in CELLS}
    return {cell: tempered(p, temperature) for cell, p in raw.items()}, temperature, raw


def evaluate_folds(data: TrainingData, folds: Mapping[str, Mapping[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """Every variant (each encoder alone, the fixed combinations, the nested weight) per fold and as a LOCO row."""
    variants: dict[str, dict[str, Any]] = {}
    for name in names:
        variants[f"{name} alone"] = {
            corpus: {"test": score_cells(data, fold["rows"], {c: tempered(p, fold["members"][name]["temperature"])
                                                              for c, p in fold["members"][name]["test"].items()}),
                     "temperature": fold["members"][name]["temperature"]}
            for corpus, fold in folds.items()
        }  # fmt: skip
    for rule in RULES:
        key = f"{rule} mean, equal weights"
        variants[key] = {}
        for corpus, fold in folds.items():
            probs, temperature, raw = _combined_fold(fold, names, [0.5, 0.5], rule)
            test = score_cells(data, fold["rows"], probs)
            for cell in CELLS:
                test[cell]["ece_before_ensemble_temperature"] = round(
                    expected_calibration_error(raw[cell], data.meta.label[fold["rows"]]), 4)  # fmt: skip
            variants[key][corpus] = {"test": test, "temperature": round(temperature, 3)}
    # nested: the first encoder's weight chosen on the three other folds' held-out UA (log rule)
    grid_scores = {
        corpus: {w: _mean_ua(data, fold["rows"], _combined_fold(fold, names, [w, 1.0 - w], "log")[2]) for w in WEIGHT_GRID}
        for corpus, fold in folds.items()
    }
    nested: dict[str, Any] = {}
    for corpus, fold in folds.items():
        w = choose_weight(grid_scores, corpus) if len(folds) > 1 else 0.5
        probs, temperature, _ = _combined_fold(fold, names, [w, 1.0 - w], "log")
        nested[corpus] = {"test": score_cells(data, fold["rows"], probs), "temperature": round(temperature, 3),
                          f"weight_{names[0]}": w}  # fmt: skip
    variants[f"log mean, {names[0]} weight chosen on the other folds"] = nested
    summary: dict[str, Any] = {}
    for key, per_fold in variants.items():
        summary[key] = loco_row(per_fold)
        summary[key]["escalation_telephone_single_calls"] = {
            corpus: f["test"]["telephone/single"].get("escalation") for corpus, f in per_fold.items()
        }
    summary[f"log mean, {names[0]} weight chosen on the other folds"]["weights"] = {
        corpus: f[f"weight_{names[0]}"] for corpus, f in nested.items()
    }
    grid = {corpus: {str(w): round(s, 4) for w, s in scores.items()} for corpus, scores in grid_scores.items()}
    return {"summary": summary, "folds": variants, f"loco_mean_ua_by_{names[0]}_weight_log_rule": grid}


def _overrides(items: Sequence[str], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    import yaml

    out: dict[str, dict[str, Any]] = {name: {} for name in names}
    for item in items:
        name, _, setting = item.partition(":")
        if name not in out or "=" not in setting:
            raise SystemExit(f"--set {item!r}: expected NAME:key=value with NAME one of {', '.join(names)}")
        key, value = setting.split("=", 1)
        out[name][key] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--names", nargs=2, default=["smart-turn", "whisper-base"])
    parser.add_argument("--cache", type=Path, nargs=2, required=True)
    parser.add_argument("--hparams", type=Path, nargs=2, required=True)
    parser.add_argument("--set", nargs="*", default=[], help="per-encoder hparam overrides NAME:key=value")
    parser.add_argument("--corpora", nargs="+", default=list(CLASS_CORPORA))
    parser.add_argument("--probs", type=Path, required=True, help="window probabilities, written after every fold")
    parser.add_argument("--resume", action="store_true", help="reuse the folds already in --probs")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    names = list(args.names)
    overrides = _overrides(args.set, names)
    hparams = {n: load_recipe(h, {**overrides[n], "adaptation": "none", "progress": False})
               for n, h in zip(names, args.hparams, strict=True)}  # fmt: skip
    data = {n: load_training_data(c) for n, c in zip(names, args.cache, strict=True)}
    check_aligned(data[names[0]], data[names[1]], [str(c) for c in args.cache])
    meta = data[names[0]].meta
    folds = _load_probs(args.probs, names) if args.resume and args.probs.is_file() else {}
    for corpus in args.corpora:
        if corpus in folds or corpus not in set(meta.corpus.tolist()):
            continue
        test = meta.corpus == corpus
        train_rows, rows = np.flatnonzero(~test), np.flatnonzero(test & (meta.label >= 0))
        members = {n: _fold_member(hparams[n], data[n], train_rows, rows) for n in names}
        if members[names[0]]["dev_speakers"] != members[names[1]]["dev_speakers"]:
            raise DataError(f"{corpus}: the two heads chose different development speakers; the same seed is needed")
        folds[corpus] = {"rows": rows, "members": members}
        _save_probs(args.probs, folds)
        print(f"[encoder_ensemble] {corpus}: " + ", ".join(f"{n} {m['train_s']} s, T {m['temperature']}" for n, m in members.items()),
              file=sys.stderr, flush=True)  # fmt: skip
    folds = {c: folds[c] for c in args.corpora if c in folds}
    report = evaluate_folds(data[names[0]], folds, names)
    command = "python -m emotion_models.encoder_ensemble " + " ".join(argv if argv is not None else sys.argv[1:])
    training = {corpus: {n: {k: m[k] for k in ("temperature", "best_epoch", "dev_ua", "train_s")}
                         for n, m in fold["members"].items()} for corpus, fold in folds.items()}  # fmt: skip
    out = {"command": command, "encoders": names, "hparams": [str(h) for h in args.hparams], "overrides": overrides,
           "adaptation": "none", "folds_done": list(folds), "training": training, **report}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: {m: v[m] for m in ("loco_mean_ua", "loco_worst_angry_recall", "loco_mean_ece")}
                      for k, v in report["summary"].items()}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
