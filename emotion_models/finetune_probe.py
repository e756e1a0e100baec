"""Simpler heads on an operator's clips against today's head fine-tune, on the same leave-one-speaker-out folds.

    nice .venv/bin/python -m emotion_models.finetune_probe --cache results/cache/smart-turn \\
        --base models/emotune-ser-v2-st --threads 1 --out emotion_models/results/v2/smart_turn_finetune_probe.json

The operator's corpus (``--corpus``, korean_operator here: 5 speakers) is taken from the encoder cache, so
its windows are those ``emotune finetune`` encodes (2 s every 1 s, clean and 8 kHz mu-law). Per fold one
speaker is held out and every variant trains on the other speakers' windows only; each is scored per
2-s window on the held-out speaker, clean and telephone (UA, angry recall), as ``finetune_v2`` scores.
No per-speaker normalisation anywhere (a caller keeps one emotion: subtracting a caller's mean removes it).

Variants:
- ``head_finetune``: today's ``emotune finetune`` (the base head trained further, ``finetune_head.yaml``).
- ``head_finetune_rehearsal``: the same with the base corpora's windows mixed into the draws, the
  operator's corpus at a share of the draws chosen nested.
- ``probe``: multinomial logistic regression (L2, class-balanced) on the frozen encoder's mean-pooled
  states (all layers concatenated, z-scored with the training windows' statistics), both channels.
- ``probe_plus_base``: the same probe with the base corpora's class windows added, the operator's
  corpus up-weighted to a share chosen nested.
- ``probe_penultimate``: the probe on the base head's penultimate features (the classifier's hidden layer).
- ``probe_meanstd``: the probe on each layer's mean and standard deviation over the window's pooled
  encoder frames (10 blocks of 200 ms), all layers concatenated.
- ``probe_layers``: the mean-pooled probe on a layer subset (all, lower, middle, upper; ``LAYER_SUBSETS``)
  chosen nested together with L2.
- ``chosen``: the variant itself chosen nested among the head fine-tune, ``probe_meanstd`` and
  ``probe_layers`` (with their hyper-parameters, one grid), as ``emotune finetune`` would choose it.
- ``ensemble``: the average of the head fine-tune's probabilities (at the base temperature) and the
  ``probe_meanstd`` probe's (softmax), weight on the head from ``ENSEMBLE_WEIGHTS`` chosen nested; the inner folds use
  the probe's L2 chosen for the outer fold (itself chosen on the training speakers only). The report
  also scores both components of the same fits (``components``).

Besides the per-window score, ``--clips DATA_ROOT`` also scores per clip: each window is assigned to
the clip its centre falls in (the cache's streams are the speaker's clips of one label, silence-trimmed
and joined with 0.25-s gaps), the clip's window probabilities are averaged and its top class scored
(``per_clip`` in the report; a separate metric, the per-window score stays the headline).

Every hyper-parameter (L2, the operator's share) is chosen inside the training speakers: an inner
leave-one-speaker-out over them, by mean telephone UA; the held-out speaker never chooses anything.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emotion_models.corpora import CLASSES
from emotion_models.evaluate import metrics
from emotion_models.finetune_v2 import FINETUNE_HPARAMS
from emotion_models.head import EmotionHead, load_head
from emotion_models.probe import (
    L2_GRID,
    LAYER_SUBSETS,
    PROBE_GRID,
    choose_nested,
    class_weights,
    fit_standardised,
    layer_rows,
)
from emotion_models.train_head import (
    CHANNELS,
    TrainingData,
    _cell_probs,
    call_orders,
    load_recipe,
    load_training_data,
    scored_offsets,
)
from emotion_models.train_head import run as train_head
from emotion_runtime.adaptation import AdaptationSpec
from emotion_runtime.encoder_model import load_adaptation, read_v2_sidecar

__all__ = ["ENSEMBLE_WEIGHTS", "LAYER_SUBSETS", "blend", "layer_subset_features", "VARIANTS", "choose_nested", "class_weights", "clip_ids", "clip_score", "layer_rows",
           "main", "mean_std_pooled", "penultimate", "score"]

PROBE_SHARES = (0.5, 0.8)  # the operator's share of the weight when the base corpora are added
REHEARSAL_SHARES = (0.5, 0.8)  # the operator's share of the head's draws
ENSEMBLE_WEIGHTS = (1.0, 0.75, 0.5, 0.25, 0.0)  # the head's weight; ties go to the head alone (today's path)
Base = tuple[EmotionHead, AdaptationSpec, float]
# one variant: (data, features per channel, training rows, operator test rows, hyper-parameters) -> predictions per channel
Scores = dict[str, dict[str, Any]]


def score(labels: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """UA, angry recall and recall per class of one speaker's windows."""
    m = metrics(labels.tolist(), predicted.tolist(), CLASSES)
    return {"ua": round(m["ua"], 4), "angry_recall": round(m["recall"].get("angry", 0.0), 4),
            "recall": {k: round(v, 4) for k, v in m["recall"].items()}}  # fmt: skip


def mean_std_pooled(states: np.ndarray, chunk: int = 512) -> np.ndarray:
    """[N, L+1, P, D] -> [N, (L+1) * 2D] float32: per layer the mean then the std over the P pooled frames."""
    out = np.empty((states.shape[0], states.shape[1] * 2 * states.shape[3]), np.float32)
    for start in range(0, states.shape[0], chunk):
        x = states[start : start + chunk].astype(np.float32)
        out[start : start + chunk] = np.concatenate([x.mean(axis=2), x.std(axis=2)], axis=2).reshape(len(x), -1)
    return out


def clip_ids(stream: np.ndarray, position: np.ndarray, clip_seconds: dict[int, list[float]], gap_s: float = 0.25) -> np.ndarray:
    """Per window, the id of the clip its centre (``position`` + 1 s) falls in: ``clip_seconds[stream]``
    are the stream's trimmed clip durations in order, joined with ``gap_s`` gaps; a centre in a gap goes
    to the clip before it. Ids are ``stream * 1000 + clip index``; -1 for a stream with no durations."""
    out = np.full(len(stream), -1, dtype=np.int64)
    for i, (s, p) in enumerate(zip(stream.tolist(), position.tolist(), strict=True)):
        durations = clip_seconds.get(int(s))
        if not durations:
            continue
        starts = np.concatenate([[0.0], np.cumsum(np.asarray(durations) + gap_s)[:-1]])
        out[i] = int(s) * 1000 + int(np.searchsorted(starts, p + 1.0, side="right") - 1)
    return out


def clip_score(labels: np.ndarray, probs: np.ndarray, clips: np.ndarray) -> dict[str, Any]:
    """``score`` per clip: the mean of each clip's window probabilities, its top class against the
    clip's label (every window of a clip has it)."""
    ids = np.unique(clips)
    mean = np.stack([probs[clips == c].mean(axis=0) for c in ids])
    label = np.array([labels[clips == c][0] for c in ids])
    return {**score(label, mean.argmax(axis=1)), "clips": len(ids)}


def penultimate(head: EmotionHead, spec: AdaptationSpec, data: TrainingData, temperature: float) -> dict[str, np.ndarray]:
    """Per channel, every window's input to the base head's last layer (offsets of single-emotion calls,
    as the runtime computes them; zero for adaptation ``none``)."""
    out = {}
    rows = np.arange(len(data.meta.label))
    calls = call_orders(data.meta, rows, "single")
    for channel in CHANNELS:
        ws = data.windows[channel]
        offsets = scored_offsets(head, spec, ws.states, ws.pooled, calls, temperature)
        feats = []
        with torch.no_grad():
            for start in range(0, len(rows), 256):
                part = slice(start, start + 256)
                z = head.embed(torch.from_numpy(ws.states[part].astype(np.float32)), torch.from_numpy(offsets[part].astype(np.float32)))
                feats.append(head.classify[:-1](z).numpy())
        out[channel] = np.concatenate(feats)
    return out


def _probe_predict(
    feats: dict[str, np.ndarray], data: TrainingData, train: np.ndarray, test: np.ndarray, operator: str,
    l2: float, share: float | None,
) -> dict[str, np.ndarray]:
    """Fit on ``train`` (both channels stacked); per channel the class probabilities of ``test``."""
    meta = data.meta
    labels = np.tile(meta.label[train], len(CHANNELS))
    weights = class_weights(np.tile(meta.corpus[train], len(CHANNELS)), labels, operator, share)
    mean, std, linear = fit_standardised(np.concatenate([feats[c][train] for c in CHANNELS]), labels, weights, l2)
    with torch.no_grad():
        return {c: torch.softmax(linear(torch.from_numpy(((feats[c][test] - mean) / std).astype(np.float32))), dim=1).numpy()
                for c in CHANNELS}  # fmt: skip


class Folds:
    """The operator's speakers, the rows of each, and the base corpora's labelled rows."""

    def __init__(self, data: TrainingData, operator: str) -> None:
        meta = data.meta
        self.data, self.operator = data, operator
        self.speakers = sorted(set(meta.speaker[meta.corpus == operator].tolist()))
        if len(self.speakers) < 3:
            raise SystemExit(f"{operator}: {len(self.speakers)} speakers; nested leave-one-speaker-out needs 3")
        self.base_rows = np.flatnonzero((meta.corpus != operator) & (meta.label >= 0))
        self.base_all_rows = np.flatnonzero(meta.corpus != operator)  # + arousal-only corpora, for the head

    def rows(self, speakers: Sequence[str]) -> np.ndarray:
        meta = self.data.meta
        return np.flatnonzero((meta.corpus == self.operator) & np.isin(meta.speaker, list(speakers)) & (meta.label >= 0))


def _probe_variant(folds: Folds, feats: dict[str, np.ndarray], with_base: bool) -> Callable[[list[str], str], tuple[dict[str, np.ndarray], dict[str, Any]]]:
    grid: list[Any] = [[l2, s] for s in PROBE_SHARES for l2 in sorted(L2_GRID, reverse=True)] if with_base else sorted(L2_GRID, reverse=True)
    meta = folds.data.meta

    def fit(value: Any, train_speakers: list[str], test_speaker: str) -> dict[str, np.ndarray]:
        l2, share = (value if with_base else (value, None))
        train = folds.rows(train_speakers)
        if with_base:
            train = np.concatenate([train, folds.base_rows])
        return _probe_predict(feats, folds.data, train, folds.rows([test_speaker]), folds.operator, l2, share)

    def inner(value: Any, held: str, rest: list[str]) -> float:
        predicted = fit(value, rest, held)["telephone"].argmax(axis=1)
        return float(score(meta.label[folds.rows([held])], predicted)["ua"])

    def outer(train_speakers: list[str], held: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        best, inner_means = choose_nested(train_speakers, grid, inner)
        chosen = {"l2": best[0], "operator_share": best[1]} if with_base else {"l2": best}
        return fit(best, train_speakers, held), {"chosen": chosen, "inner_telephone_ua": inner_means}

    return outer


def layer_subset_features(pooled: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Per ``LAYER_SUBSETS`` name, per channel: the mean-pooled states of those layers, concatenated."""
    n_layers = next(iter(pooled.values())).shape[1]
    return {name: {c: np.ascontiguousarray(pooled[c][:, layer_rows(n_layers, name)].reshape(len(pooled[c]), -1)) for c in CHANNELS}
            for name in LAYER_SUBSETS}  # fmt: skip


def _layers_variant(folds: Folds, pooled: dict[str, np.ndarray]) -> Callable[[list[str], str], tuple[dict[str, np.ndarray], dict[str, Any]]]:
    """The mean-pooled probe on a layer subset; subset and L2 chosen together, nested."""
    n_layers = next(iter(pooled.values())).shape[1]
    subsets = layer_subset_features(pooled)
    grid: list[Any] = [[name, l2] for name in LAYER_SUBSETS for l2 in sorted(L2_GRID, reverse=True)]
    meta = folds.data.meta

    def fit(value: Any, train_speakers: list[str], test_speaker: str) -> dict[str, np.ndarray]:
        return _probe_predict(subsets[value[0]], folds.data, folds.rows(train_speakers), folds.rows([test_speaker]), folds.operator, value[1], None)

    def inner(value: Any, held: str, rest: list[str]) -> float:
        return float(score(meta.label[folds.rows([held])], fit(value, rest, held)["telephone"].argmax(axis=1))["ua"])

    def outer(train_speakers: list[str], held: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        best, inner_means = choose_nested(train_speakers, grid, inner)
        chosen = {"layers": best[0], "layer_indices": layer_rows(n_layers, best[0]), "l2": best[1]}
        return fit(best, train_speakers, held), {"chosen": chosen, "inner_telephone_ua": inner_means}

    return outer


def _head_variant(folds: Folds, base: Base, hparams: dict[str, Any], rehearsal: bool) -> Callable[[list[str], str], tuple[dict[str, np.ndarray], dict[str, Any]]]:
    data, meta = folds.data, folds.data.meta

    def fit(share: float | None, train_speakers: list[str], test_speaker: str) -> dict[str, np.ndarray]:
        train = folds.rows(train_speakers)
        recipe = dict(hparams)
        if rehearsal:
            train = np.concatenate([train, folds.base_all_rows])
            recipe["corpus_shares"] = {folds.operator: share}
        test = folds.rows([test_speaker])
        tuned = train_head(recipe, data, train, None, base=base)
        cells = {c: p for c, p in _predictions(tuned["_head"], tuned["_spec"], data, test, base[2]).items()}
        return cells

    def inner(share: float, held: str, rest: list[str]) -> float:
        return float(score(meta.label[folds.rows([held])], fit(share, rest, held)["telephone"].argmax(axis=1))["ua"])

    def outer(train_speakers: list[str], held: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if not rehearsal:
            return fit(None, train_speakers, held), {"chosen": {}}
        best, inner_means = choose_nested(train_speakers, list(REHEARSAL_SHARES), inner)
        return fit(best, train_speakers, held), {"chosen": {"operator_share": best}, "inner_telephone_ua": inner_means}

    return outer


def blend(head: np.ndarray, probe: np.ndarray, weight: float) -> np.ndarray:
    """``weight`` x the head's probabilities + (1 - ``weight``) x the probe's."""
    return weight * head + (1.0 - weight) * probe


def _ensemble_variant(
    folds: Folds, base: Base, hparams: dict[str, Any], pooled: dict[str, np.ndarray]
) -> Callable[[list[str], str], tuple[dict[str, np.ndarray], dict[str, Any]]]:
    data, meta = folds.data, folds.data.meta
    head_cache: dict[tuple[tuple[str, ...], str], dict[str, np.ndarray]] = {}

    def head(train_speakers: list[str], test_speaker: str) -> dict[str, np.ndarray]:
        key = (tuple(sorted(train_speakers)), test_speaker)
        if key not in head_cache:
            tuned = train_head(dict(hparams), data, folds.rows(train_speakers), None, base=base)
            head_cache[key] = _predictions(tuned["_head"], tuned["_spec"], data, folds.rows([test_speaker]), base[2])
        return head_cache[key]

    probe_outer = _probe_variant(folds, pooled, with_base=False)

    def outer(train_speakers: list[str], held: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        probe_probs, probe_info = probe_outer(train_speakers, held)
        l2 = probe_info["chosen"]["l2"]
        probe_inner = {s: _probe_predict(pooled, data, folds.rows([t for t in train_speakers if t != s]), folds.rows([s]), folds.operator, l2, None)
                       for s in train_speakers}  # fmt: skip

        def inner(weight: float, h: str, rest: list[str]) -> float:
            mixed = blend(head(rest, h)["telephone"], probe_inner[h]["telephone"], weight)
            return float(score(meta.label[folds.rows([h])], mixed.argmax(axis=1))["ua"])

        weight, inner_means = choose_nested(train_speakers, list(ENSEMBLE_WEIGHTS), inner)
        head_probs = head(train_speakers, held)
        mixed = {c: blend(head_probs[c], probe_probs[c], weight) for c in CHANNELS}
        info = {"chosen": {"head_weight": weight, "probe_l2": l2}, "inner_telephone_ua": inner_means,
                "_components": {"head_finetune": head_probs, "probe_meanstd": probe_probs}}  # fmt: skip
        return mixed, info

    return outer


def _chosen_variant(
    folds: Folds, base: Base, hparams: dict[str, Any], pooled: dict[str, np.ndarray], meanstd: dict[str, np.ndarray]
) -> Callable[[list[str], str], tuple[dict[str, np.ndarray], dict[str, Any]]]:
    """The variant itself chosen nested, as its hyper-parameters are: one grid over the head fine-tune,
    ``probe_meanstd`` (L2) and ``probe_layers`` (subset, L2), the best inner leave-one-speaker-out mean wins
    (ties to the earlier: the head fine-tune, today's path, then the simpler probe)."""
    data, meta = folds.data, folds.data.meta
    n_layers = next(iter(pooled.values())).shape[1]
    subsets = layer_subset_features(pooled)
    # The shipped candidate's grid (``PROBE_GRID``: mean + std over all layers, then layer subsets), the head first.
    grid: list[Any] = [["head_finetune"], *(["probe_meanstd", l2] if statistics == "mean_std" else ["probe_layers", subset, l2]
                                            for statistics, subset, l2 in PROBE_GRID)]  # fmt: skip
    head_cache: dict[tuple[tuple[str, ...], str], dict[str, np.ndarray]] = {}

    def fit(value: Any, train_speakers: list[str], test_speaker: str) -> dict[str, np.ndarray]:
        train, test = folds.rows(train_speakers), folds.rows([test_speaker])
        if value[0] == "probe_meanstd":
            return _probe_predict(meanstd, data, train, test, folds.operator, value[1], None)
        if value[0] == "probe_layers":
            return _probe_predict(subsets[value[1]], data, train, test, folds.operator, value[2], None)
        key = (tuple(sorted(train_speakers)), test_speaker)
        if key not in head_cache:
            tuned = train_head(dict(hparams), data, train, None, base=base)
            head_cache[key] = _predictions(tuned["_head"], tuned["_spec"], data, test, base[2])
        return head_cache[key]

    def inner(value: Any, held: str, rest: list[str]) -> float:
        return float(score(meta.label[folds.rows([held])], fit(value, rest, held)["telephone"].argmax(axis=1))["ua"])

    def outer(train_speakers: list[str], held: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        best, inner_means = choose_nested(train_speakers, grid, inner)
        chosen: dict[str, Any] = {"variant": best[0]}
        if best[0] == "probe_meanstd":
            chosen["l2"] = best[1]
        elif best[0] == "probe_layers":
            chosen.update({"layers": best[1], "layer_indices": layer_rows(n_layers, best[1]), "l2": best[2]})
        best_of = {v: max((m for k, m in inner_means.items() if json.loads(k)[0] == v), default=None)
                   for v in ("head_finetune", "probe_meanstd", "probe_layers")}  # fmt: skip
        return fit(best, train_speakers, held), {"chosen": chosen, "inner_best_per_variant": best_of, "inner_telephone_ua": inner_means}

    return outer


def _predictions(head: EmotionHead, spec: AdaptationSpec, data: TrainingData, rows: np.ndarray, temperature: float) -> dict[str, np.ndarray]:
    """Per channel, the class probabilities of every window of ``rows`` in single-emotion calls (``evaluate``'s cells)."""
    return {channel: probs for channel, condition, probs in
            _cell_probs(head, spec, data, rows, temperature=temperature) if condition == "single"}  # fmt: skip


VARIANTS = ("head_finetune", "probe", "probe_penultimate", "probe_plus_base", "head_finetune_rehearsal", "probe_meanstd", "probe_layers", "ensemble",
            "chosen")


def _summary(folds: list[dict[str, Any]], reference: list[dict[str, Any]] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for channel in CHANNELS:
        ua = [f[channel]["ua"] for f in folds]
        out[channel] = {"ua": round(float(np.mean(ua)), 4), "angry_recall": round(float(np.mean([f[channel]["angry_recall"] for f in folds])), 4),
                        "ua_per_fold": ua}  # fmt: skip
        if reference is not None:
            diff = np.asarray(ua) - np.asarray([f[channel]["ua"] for f in reference])
            out[channel]["ua_minus_head_finetune_per_fold"] = [round(float(d), 4) for d in diff]
            out[channel]["ua_minus_head_finetune"] = {
                "mean": round(float(diff.mean()), 4), "sd_over_folds": round(float(diff.std(ddof=1)), 4),
                "folds_better": int((diff > 0).sum()),
            }  # fmt: skip
        if all("per_clip" in f for f in folds):
            clip_ua = [f["per_clip"][channel]["ua"] for f in folds]
            out[channel]["per_clip"] = {"ua": round(float(np.mean(clip_ua)), 4), "ua_per_fold": clip_ua,
                                        "angry_recall": round(float(np.mean([f["per_clip"][channel]["angry_recall"] for f in folds])), 4)}  # fmt: skip
    if all("components" in f for f in folds):
        out["components"] = {k: _summary([f["components"][k] for f in folds], reference) for k in folds[0]["components"]}
    return out


def _write(args: argparse.Namespace, argv: list[str] | None, folds: Folds, results: dict[str, Any], started: float) -> dict[str, Any]:
    reference = results.get("head_finetune", {}).get("folds")
    summary = {name: _summary(r["folds"], reference if name != "head_finetune" else None) for name, r in results.items()}
    command = "python -m emotion_models.finetune_probe " + " ".join(argv if argv is not None else sys.argv[1:])
    report = {
        "command": command, "cache": str(args.cache), "base": str(args.base), "corpus": args.corpus, "speakers": folds.speakers,
        "protocol": (__doc__ or "").split("\n\n")[2].replace("\n", " "),
        "grids": {"l2": list(L2_GRID), "probe_operator_share": list(PROBE_SHARES), "rehearsal_operator_share": list(REHEARSAL_SHARES)},
        "summary": summary, "variants": results, "wall_seconds": round(time.monotonic() - started, 1),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return summary


def _scores(labels: np.ndarray, probs: dict[str, np.ndarray], clips: np.ndarray | None) -> dict[str, Any]:
    """Per channel the per-window score; with ``clips`` also ``per_clip``."""
    out: dict[str, Any] = {c: score(labels, probs[c].argmax(axis=1)) for c in CHANNELS}
    if clips is not None:
        out["per_clip"] = {c: clip_score(labels, probs[c], clips) for c in CHANNELS}
    return out


def _operator_clips(data_root: Path, data: TrainingData, operator: str) -> np.ndarray:
    """Per cache window, its clip id (``clip_ids``; -1 outside the operator's corpus), from the operator's
    clips read as the cache read them (same trimming, same grouping and order as ``build_streams``)."""
    from emotion_models.corpora import read_corpora
    from emotion_models.encoder_cache import SAMPLE_RATE, build_streams

    utterances = [u for u in read_corpora(data_root, [operator]) if u.label]
    meta = data.meta
    rows = np.flatnonzero(meta.corpus == operator)
    by_key: dict[tuple[str, str], list[float]] = {}
    for utt in utterances:
        by_key.setdefault((utt.speaker, str(utt.label)), []).append(len(utt.wav) / SAMPLE_RATE)
    if len(build_streams(utterances)) != len(by_key):
        raise SystemExit(f"{operator}: clip groups do not match the cache's streams")
    durations: dict[int, list[float]] = {}
    for s in np.unique(meta.stream[rows]).tolist():
        first = rows[meta.stream[rows] == s][0]
        durations[int(s)] = by_key[(str(meta.speaker[first]), CLASSES[int(meta.label[first])])]
    out = np.full(len(meta.label), -1, dtype=np.int64)
    out[rows] = clip_ids(meta.stream[rows], meta.position[rows], durations)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--base", type=Path, required=True, help="the v2 model folder the fine-tune starts from")
    parser.add_argument("--corpus", default="korean_operator", help="the operator's corpus in the cache")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clips", type=Path, default=None, help="the data root: also score per clip (window probabilities averaged)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.monotonic()
    data = load_training_data(args.cache)
    folds = Folds(data, args.corpus)
    sidecar = read_v2_sidecar(args.base / "emotion.json")
    head, _ = load_head(args.base / "head.ckpt")
    base: Base = (head, load_adaptation(args.base, sidecar), float(sidecar.get("temperature", 1.0)))
    hparams = load_recipe(FINETUNE_HPARAMS, {"threads": args.threads, "progress": False})
    pooled_layers = {c: data.windows[c].pooled for c in CHANNELS}
    pooled = {c: pooled_layers[c].reshape(len(data.meta.label), -1) for c in CHANNELS}
    clips = _operator_clips(args.clips, data, args.corpus) if args.clips is not None else None
    makers: dict[str, Callable[[], Callable[[list[str], str], tuple[dict[str, np.ndarray], dict[str, Any]]]]] = {
        "head_finetune": lambda: _head_variant(folds, base, hparams, rehearsal=False),
        "head_finetune_rehearsal": lambda: _head_variant(folds, base, hparams, rehearsal=True),
        "probe": lambda: _probe_variant(folds, pooled, with_base=False),
        "probe_plus_base": lambda: _probe_variant(folds, pooled, with_base=True),
        "probe_penultimate": lambda: _probe_variant(folds, penultimate(base[0], base[1], data, base[2]), with_base=False),
        "probe_meanstd": lambda: _probe_variant(folds, {c: mean_std_pooled(data.windows[c].states) for c in CHANNELS}, with_base=False),
        "probe_layers": lambda: _layers_variant(folds, pooled_layers),
        "ensemble": lambda: _ensemble_variant(folds, base, hparams, {c: mean_std_pooled(data.windows[c].states) for c in CHANNELS}),
        "chosen": lambda: _chosen_variant(folds, base, hparams, pooled_layers, {c: mean_std_pooled(data.windows[c].states) for c in CHANNELS}),
    }
    results: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    for name in args.variants:
        variant_started = time.monotonic()
        outer = makers[name]()
        per_fold = []
        for held in folds.speakers:
            train_speakers = [s for s in folds.speakers if s != held]
            probs, info = outer(train_speakers, held)
            labels = data.meta.label[folds.rows([held])]
            held_clips = clips[folds.rows([held])] if clips is not None else None
            components = info.pop("_components", {})
            per_fold.append({"speaker": held, **info, **_scores(labels, probs, held_clips)})
            if components:
                per_fold[-1]["components"] = {k: _scores(labels, v, held_clips) for k, v in components.items()}
            print(f"[finetune_probe] {name} {held}: telephone UA {per_fold[-1]['telephone']['ua']:.3f} {info.get('chosen')}",
                  file=sys.stderr, flush=True)  # fmt: skip
        results[name] = {"folds": per_fold, "seconds": round(time.monotonic() - variant_started, 1)}
        summary = _write(args, argv, folds, results, started)  # after every variant: a long run keeps what it did
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
