"""Diagnostic: does the head's arousal output carry across corpora better than its angry class?

Leave one corpus out, as ``experiments_v2`` (same recipe, adaptation ``none``, one seed): per held-out
corpus and channel, over every labelled original window, the area under the ROC curve (AUC: 0.5 is
chance, below 0.5 is ranked the wrong way round) of

* ``p_angry``: the angry probability, angry windows against all others and against neutral + sad;
* ``arousal``: the arousal output, the same two comparisons, and high (angry, happy) against low;
* ``arousal x angry share``: arousal times p(angry) / (p(angry) + p(happy)), angry against all others;

and the mean arousal per class. It answers whether escalation could lean on arousal where the class
does not transfer (written for issue 17; nothing in the runtime uses it).

    .venv/bin/python -m emotion_models.arousal_transfer --cache results/cache/smart-turn \\
        --hparams emotion_models/hparams/head_smart_turn.yaml \\
        --out emotion_models/results/v2/smart_turn_arousal_transfer.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from emotion_models.corpora import CLASSES
from emotion_models.train_head import CHANNELS, load_recipe, load_training_data, offsets_for, predict, run

__all__ = ["auc", "main", "scores"]

CORPORA = ("ravdess", "emodb", "turev", "korean_operator")


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        raise ValueError("AUC needs positives and negatives")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = np.asarray(score)[order]
    # average ranks of tied scores
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    for start, count in zip(first, counts, strict=True):
        ranks[order[start : start + count]] = start + (count + 1) / 2
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def scores(probs: np.ndarray, arousal: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The AUCs and class means above for one held-out corpus and channel."""
    angry, happy, neutral, sad = (CLASSES.index(c) for c in ("angry", "happy", "neutral", "sad"))
    is_angry = labels == angry
    calm = np.isin(labels, [angry, neutral, sad])
    share = probs[:, angry] / np.maximum(probs[:, angry] + probs[:, happy], 1e-9)
    return {
        "windows": int(len(labels)),
        "auc_p_angry_angry_vs_rest": round(auc(probs[:, angry], is_angry), 3),
        "auc_p_angry_angry_vs_neutral_sad": round(auc(probs[calm, angry], is_angry[calm]), 3),
        "auc_arousal_angry_vs_rest": round(auc(arousal, is_angry), 3),
        "auc_arousal_angry_vs_neutral_sad": round(auc(arousal[calm], is_angry[calm]), 3),
        "auc_arousal_high_vs_low": round(auc(arousal, np.isin(labels, [angry, happy])), 3),
        "auc_arousal_x_angry_share_angry_vs_rest": round(auc(arousal * share, is_angry), 3),
        "angry_recall": round(float((probs[is_angry].argmax(axis=1) == angry).mean()), 3),
        "mean_arousal": {c: round(float(arousal[labels == i].mean()), 3) for i, c in enumerate(CLASSES)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--hparams", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    started = time.monotonic()
    data = load_training_data(args.cache)
    meta = data.meta
    hparams = load_recipe(args.hparams, {"adaptation": "none", "progress": False, "threads": args.threads})
    folds: dict[str, Any] = {}
    for corpus in CORPORA:
        held_out = meta.corpus == corpus
        rows = np.flatnonzero(held_out & meta.original & (meta.label >= 0))
        trained = run(hparams, data, np.flatnonzero(~held_out), None)
        head, spec, temperature = trained["_head"], trained["_spec"], trained["temperature"]
        folds[corpus] = {}
        for channel in CHANNELS:
            windows = data.windows[channel]
            offsets = offsets_for(spec, windows.pooled, [np.array([row]) for row in rows])[rows]  # none: global mean
            probs, arousal = predict(head, windows.states[rows], offsets, temperature)
            folds[corpus][channel] = scores(probs, arousal, meta.label[rows])
        print(f"[arousal_transfer] {corpus}: {json.dumps(folds[corpus])}", file=sys.stderr, flush=True)
    report = {
        "what": (__doc__ or "").split("\n\n")[1].replace("\n", " "),
        "command": "python -m emotion_models.arousal_transfer " + " ".join(argv if argv is not None else sys.argv[1:]),
        "hparams": str(args.hparams),
        "folds": folds,
        "seconds": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
