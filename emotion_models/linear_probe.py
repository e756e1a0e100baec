"""A linear probe on cached encoder windows: how much emotion an encoder's states carry across corpora.

    .venv/bin/python -m emotion_models.linear_probe results/cache/smart-turn results/cache/whisper-base \\
        --out emotion_models/results/linear_probe.json

Multinomial logistic regression (L-BFGS, L2, corpus x class balanced) on each window's mean state
(all layers concatenated), per 2-s window, clean channel. Normalisations: ``global`` (z-score with the
training windows' statistics) and ``speaker_mean`` (each speaker's mean over all their windows
subtracted: the acted, every-emotion case); ``corpus`` (each corpus z-scored by the statistics of all its
own windows, no labels: a deployment normalised by many unlabelled calls of its line and language) and
``corpus_neutral_heavy`` (the same statistics from a mix a contact center would record: every neutral
window and a seventh as many of each other class, drawn once with seed 0; labels only build the mix).
Directions: RAVDESS->EmoDB, EmoDB->RAVDESS, and leave one corpus out over the four class corpora. A
diagnostic for choosing encoders and inputs, not a model.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emotion_models.corpora import CLASS_CORPORA, CLASSES
from emotion_models.encoder_cache import WindowSet, load_window_set
from emotion_models.evaluate import metrics

__all__ = ["MODES", "fit_logistic", "probe_cache", "main"]


def _features(ws: WindowSet, mode: str, train: np.ndarray) -> np.ndarray:
    flat = ws.pooled.reshape(len(ws.label), -1).astype(np.float64)
    if mode == "speaker_mean":
        for speaker in np.unique(ws.speaker):
            mine = ws.speaker == speaker
            flat[mine] -= flat[mine].mean(axis=0)
        return (flat / (flat[train].std(axis=0) + 1e-6)).astype(np.float32)
    if mode in ("corpus", "corpus_neutral_heavy"):
        rng = np.random.default_rng(0)
        for corpus in np.unique(ws.corpus):
            mine = np.flatnonzero(ws.corpus == corpus)
            reference = _neutral_heavy(mine, ws.label[mine], rng) if mode == "corpus_neutral_heavy" else mine
            flat[mine] = (flat[mine] - flat[reference].mean(axis=0)) / (flat[reference].std(axis=0) + 1e-6)
    return ((flat - flat[train].mean(axis=0)) / (flat[train].std(axis=0) + 1e-6)).astype(np.float32)


def _neutral_heavy(rows: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``rows`` as a contact center's unlabelled calls would mix them: every neutral window and a seventh as
    many of each other class (about 70% neutral); a corpus without class labels (arousal only) as it is."""
    neutral = rows[labels == CLASSES.index("neutral")]
    if not len(neutral):
        return rows
    others = [rng.choice(rows[labels == c], min(int((labels == c).sum()), max(1, len(neutral) // 7)), replace=False)
              for c in range(len(CLASSES)) if c != CLASSES.index("neutral") and (labels == c).any()]  # fmt: skip
    return np.concatenate([neutral, *others])


def fit_logistic(features: np.ndarray, labels: np.ndarray, weights: np.ndarray, l2: float) -> torch.nn.Linear:
    """Multinomial logistic regression over len(CLASSES) classes: the ``weights``-weighted cross-entropy
    (weights summing to 1) + ``l2`` x the squared weights (not the bias), by L-BFGS (300 iterations)."""
    w = torch.from_numpy(weights / weights.sum()).float()
    x, y = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)), torch.from_numpy(labels)
    linear = torch.nn.Linear(features.shape[1], len(CLASSES))
    optimiser = torch.optim.LBFGS(linear.parameters(), max_iter=300)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = (torch.nn.functional.cross_entropy(linear(x), y, reduction="none") * w).sum() + l2 * (linear.weight**2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return linear


def _fit_and_score(ws: WindowSet, feats: np.ndarray, train: np.ndarray, test: np.ndarray, l2: float) -> dict[str, Any]:
    weights = np.zeros(len(train))
    for corpus in np.unique(ws.corpus[train]):
        for label in range(len(CLASSES)):
            members = (ws.corpus[train] == corpus) & (ws.label[train] == label)
            if members.any():
                weights[members] = 1.0 / members.sum()
    linear = fit_logistic(feats[train], ws.label[train], weights, l2)
    with torch.no_grad():
        predicted = linear(torch.from_numpy(feats[test])).argmax(dim=1).numpy()
    scores = metrics(ws.label[test].tolist(), predicted.tolist(), CLASSES)
    return {"ua": round(scores["ua"], 4), "angry_recall": scores["recall"].get("angry"), "n": scores["n"]}


MODES = ("global", "speaker_mean", "corpus", "corpus_neutral_heavy")


def probe_cache(cache: Path, l2: float = 1e-3, modes: Sequence[str] = MODES[:2]) -> dict[str, Any]:
    ws = load_window_set(cache / "clean.npz")
    labelled = ws.label >= 0
    directions = [("ravdess", ["emodb"]), ("emodb", ["ravdess"])] + [
        (held, [c for c in CLASS_CORPORA if c != held]) for held in CLASS_CORPORA
    ]
    out: dict[str, Any] = {}
    for mode in modes:
        rows = {}
        for held, sources in directions:
            train = np.flatnonzero(labelled & np.isin(ws.corpus, sources))
            test = np.flatnonzero(labelled & (ws.corpus == held))
            if len(train) and len(test):
                name = f"{'+'.join(sources)} -> {held}"
                rows[name] = _fit_and_score(ws, _features(ws, mode, train), train, test, l2)
        loco = [v["ua"] for k, v in rows.items() if k.count("+") == 2]
        out[mode] = {"directions": rows, "loco_mean_ua": round(float(np.mean(loco)), 4) if loco else None}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("caches", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--l2", type=float, default=1e-3)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES[:2]))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    caches: dict[str, Any] = {}
    report = {"command": "python -m emotion_models.linear_probe " + " ".join(map(str, args.caches)) + f" --modes {' '.join(args.modes)}",
              "probe": (__doc__ or "").split("\n\n")[2].replace("\n", " "), "caches": caches}  # fmt: skip
    for cache in args.caches:
        caches[cache.name] = probe_cache(cache, args.l2, args.modes)
        print(cache.name, json.dumps({m: r["loco_mean_ua"] for m, r in caches[cache.name].items()}), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
