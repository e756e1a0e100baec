"""The v2 recipe: a SpeechBrain ``Brain`` training :class:`EmotionHead` on cached encoder states.

    .venv/bin/python -m emotion_models.train_head emotion_models/hparams/head_smart_turn.yaml \\
        --cache results/cache/smart-turn --test_corpora korean_operator --output_folder results/v2/st_ko

Inputs are the windows of :mod:`emotion_models.encoder_cache` on two channels (clean and 8 kHz
mu-law telephone; every training draw picks one). Every draw also picks a call condition for the
per-call adaptation statistics (:mod:`emotion_runtime.adaptation`): *single* (the window's call is
its speaker's clips of one emotion, the natural case: a caller keeps one emotion) or *mixed* (all of
the speaker's clips, shuffled in runs of three windows: an acted corpus, or a caller whose mood
turns). Offsets are causal, exactly as the runtime computes them window by window.

Draws are balanced per corpus, then per class inside a corpus, so 1,400 RAVDESS clips do not drown
100 Korean ones; BAVED (arousal only) trains the arousal output and never the classes.
Model selection: the epoch with the best UA on development speakers held out of the training
corpora (never on the test corpus); then a temperature is fitted on the same development windows.

``corpus_adversary_weight`` > 0 adds a corpus classifier on the head's pooled embedding behind a
gradient reversal (domain-adversarial training): the head is pushed to an embedding from which the
corpus (language, studio, actors) cannot be told, which is what a corpus never heard needs. The
classifier exists only in training; the exported head is unchanged. ``mixup_alpha`` > 0 mixes each
draw's pooled embedding with a random partner's (manifold mixup, shares from Beta(alpha, alpha)) and
trains on both targets in proportion.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import speechbrain as sb
import torch
import torch.nn.functional as F
from hyperpyyaml import load_hyperpyyaml

from emotion_models.corpora import CLASSES
from emotion_models.encoder_cache import WindowSet, load_window_set
from emotion_models.evaluate import metrics
from emotion_models.head import AnyHead, EmotionHead, HeadConfig
from emotion_runtime.adaptation import (
    ADAPTATION_MODES,
    AdaptationSpec,
    CallAdaptation,
    causal_offsets,
    gated_offsets,
    speaker_share_weights,
)
from emotune.errors import ConfigError, DataError
from emotune.escalation import Reading, StreakCounter, StreakRule

__all__ = [
    "CONDITIONS",
    "TEMPERATURE_SOURCES",
    "HeadBrain",
    "TrainingData",
    "call_orders",
    "channel_condition_offsets",
    "dev_speaker_temperature",
    "expected_calibration_error",
    "fit_adaptation",
    "labelled_dev_rows",
    "load_training_data",
    "predict",
    "run",
]

CONDITIONS = ("single", "mixed")
CHANNELS = ("clean", "telephone")
# Where the temperature is fitted: the training corpora's development speakers (in-corpus confidence),
# or each training corpus predicted by a head trained without it (confidence on an unheard corpus).
TEMPERATURE_SOURCES = ("dev_speakers", "held_out_corpora")


@dataclass
class TrainingData:
    """Both channels of one encoder's cache (same windows, same order)."""

    windows: dict[str, WindowSet]

    @property
    def meta(self) -> WindowSet:
        return self.windows["clean"]


def load_training_data(cache: Path) -> TrainingData:
    windows = {}
    for channel in CHANNELS:
        path = cache / f"{channel}.npz"
        if not path.is_file():
            raise DataError(f"encoder cache {path} is missing: run python -m emotion_models.encoder_cache first")
        windows[channel] = load_window_set(path)
    a, b = windows["clean"], windows["telephone"]
    if not (np.array_equal(a.stream, b.stream) and np.array_equal(a.position, b.position)):
        raise DataError(f"{cache}: clean and telephone caches hold different windows; rebuild both")
    return TrainingData(windows)


def call_orders(meta: WindowSet, indices: np.ndarray, condition: str, seed: int = 0) -> list[np.ndarray]:
    """The simulated calls over ``indices``: each an index array in the order the runtime would see it."""
    calls: list[np.ndarray] = []
    chosen = np.zeros(len(meta.stream), dtype=bool)
    chosen[indices] = True
    if condition == "single":
        for stream in np.unique(meta.stream[chosen]):
            members = np.flatnonzero(chosen & (meta.stream == stream))
            calls.append(members[np.argsort(meta.position[members], kind="stable")])
        return calls
    if condition != "mixed":
        raise ValueError(f"unknown call condition {condition!r}")
    for speaker in np.unique(meta.speaker[chosen]):
        rng = np.random.default_rng([seed, *speaker.encode()])
        runs: list[np.ndarray] = []
        for stream in np.unique(meta.stream[chosen & (meta.speaker == speaker)]):
            members = np.flatnonzero(chosen & (meta.stream == stream))
            members = members[np.argsort(meta.position[members], kind="stable")]
            runs.extend(np.array_split(members, max(1, math.ceil(len(members) / 3))))
        order = rng.permutation(len(runs))
        calls.append(np.concatenate([runs[i] for i in order]))
    return calls


def offsets_for(
    spec: AdaptationSpec, pooled: np.ndarray, calls: Sequence[np.ndarray], labels: np.ndarray | None = None
) -> np.ndarray:
    """Training offsets of every window of ``calls``; a gated spec is gated by the ``labels`` (which only
    it needs)."""
    if spec.gated and labels is None:
        raise ValueError(f"adaptation {spec.mode!r} is gated by the labels: pass them")
    out = np.zeros(pooled.shape, dtype=np.float16)
    for call in calls:
        if spec.gated:
            assert labels is not None
            out[call] = gated_offsets(spec, pooled[call], labels[call] == spec.neutral_index).astype(np.float16)
        else:
            out[call] = causal_offsets(spec, pooled[call]).astype(np.float16)
    return out


def channel_condition_offsets(
    spec: AdaptationSpec, pooled: Mapping[str, np.ndarray], meta: WindowSet, train_rows: np.ndarray, seed: int
) -> dict[tuple[str, str], np.ndarray]:
    """Training offsets per (channel, call condition), so every trainer draws the same simulated calls."""
    return {
        (channel, condition): offsets_for(spec, pooled[channel], call_orders(meta, train_rows, condition, seed), meta.label)
        for channel in CHANNELS
        for condition in CONDITIONS
    }


def scored_offsets(
    head: AnyHead, spec: AdaptationSpec, states: np.ndarray, pooled: np.ndarray, calls: Sequence[np.ndarray],
    temperature: float = 1.0,
) -> np.ndarray:
    """Offsets as the runtime computes them: a gated spec is gated by the head's own scores, window by
    window (one :class:`CallAdaptation` per call, all calls advanced together one window at a time)."""
    if not spec.gated:
        return offsets_for(spec, pooled, calls)
    out = np.zeros(pooled.shape, dtype=np.float16)
    adaptations = [CallAdaptation(spec) for _ in calls]
    for step in range(max((len(c) for c in calls), default=0)):
        live = [i for i, call in enumerate(calls) if step < len(call)]
        rows = np.asarray([calls[i][step] for i in live])
        offsets = np.stack([adaptations[i].update(pooled[r]) for i, r in zip(live, rows, strict=True)])
        probs, _ = predict(head, states[rows], offsets, temperature)
        for i, p in zip(live, probs, strict=True):
            adaptations[i].heard(p)
        out[rows] = offsets.astype(np.float16)
    return out


def fit_adaptation(mode: str, prior_windows: float, pooled: np.ndarray, meta: WindowSet) -> AdaptationSpec:
    """Global mean and per-dimension weights from the training windows (``pooled`` [N, L+1, D])."""
    global_mean = pooled.mean(axis=0).astype(np.float32)
    if mode == "none":
        weights = np.zeros_like(global_mean)
    elif mode == "call_mean":
        weights = np.ones_like(global_mean)
    elif mode == "speaker_share":
        labelled = meta.label >= 0
        weights = speaker_share_weights(pooled[labelled], meta.speaker[labelled], meta.label[labelled])
    elif mode == "neutral_baseline":
        neutral = CLASSES.index("neutral")
        neutral_mean = pooled[meta.label == neutral].mean(axis=0).astype(np.float32)
        ones = np.ones_like(global_mean)
        return AdaptationSpec(mode, float(prior_windows), global_mean, ones, neutral_mean, neutral_index=neutral)
    else:
        raise ConfigError("adaptation", [f"mode {mode!r} is not one of {', '.join(ADAPTATION_MODES)}"])
    return AdaptationSpec(mode, float(prior_windows), global_mean, weights)


class _Draws(torch.utils.data.Dataset[tuple[torch.Tensor, ...]]):
    """Index = (window, channel, condition); items are ready tensors (states, offset, label, arousal,
    corpus index among all the data's corpora)."""

    def __init__(self, data: TrainingData, offsets: dict[tuple[str, str], np.ndarray], rows: np.ndarray) -> None:
        self.data, self.offsets, self.rows = data, offsets, rows
        self.corpus_index = np.searchsorted(np.unique(data.meta.corpus), data.meta.corpus)

    def __len__(self) -> int:
        return len(self.rows) * len(CHANNELS) * len(CONDITIONS)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, ...]:
        row, rest = divmod(item, len(CHANNELS) * len(CONDITIONS))
        channel, condition = CHANNELS[rest // len(CONDITIONS)], CONDITIONS[rest % len(CONDITIONS)]
        index = int(self.rows[row])
        ws = self.data.windows[channel]
        return (
            torch.from_numpy(ws.states[index].astype(np.float32)),
            torch.from_numpy(self.offsets[(channel, condition)][index].astype(np.float32)),
            torch.tensor(int(ws.label[index])),
            torch.tensor(float(ws.arousal[index])),
            torch.tensor(int(self.corpus_index[index])),
        )


def _balanced_weights(meta: WindowSet, rows: np.ndarray, corpus_shares: Mapping[str, float] | None = None) -> np.ndarray:
    """Each corpus gets an equal share of draws; inside it, each class (or arousal level) too.
    ``corpus_shares`` (hparam, optional): the share of draws of the corpora it names (e.g. an operator's
    corpus up-weighted among the rehearsed base corpora); the other corpora split the rest equally."""
    weights = np.zeros(len(rows))
    corpora = meta.corpus[rows]
    present = np.unique(corpora)
    shares = _corpus_shares(present, corpus_shares) if corpus_shares else dict.fromkeys(present.tolist(), 1.0)
    for corpus in present:
        in_corpus = corpora == corpus
        keys = np.where(meta.label[rows] >= 0, meta.label[rows], np.round(meta.arousal[rows] * 100).astype(int) + 1000)
        groups = np.unique(keys[in_corpus])
        for key in groups:
            members = in_corpus & (keys == key)
            weights[members] = shares[str(corpus)] / (members.sum() * len(groups))
    return weights / weights.sum()


def _corpus_shares(present: np.ndarray, corpus_shares: Mapping[str, float]) -> dict[str, float]:
    named = {str(c): float(v) for c, v in corpus_shares.items() if c in set(present.tolist())}
    problems = [f"{c}: {v} is not a share in (0, 1]" for c, v in named.items() if not 0.0 < v <= 1.0]
    rest = [str(c) for c in present if str(c) not in named]
    remaining = 1.0 - sum(named.values())
    if remaining < -1e-9 or (rest and remaining <= 1e-9):
        problems.append(f"shares {named} leave {remaining:.3f} for the other corpora {rest}")
    if problems:
        raise ConfigError("corpus_shares", problems)
    return {**named, **dict.fromkeys(rest, remaining / max(1, len(rest)))}


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the gradient times ``-weight`` backward (domain-adversarial training)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: float) -> torch.Tensor:  # noqa: ANN401
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN401
        return -ctx.weight * grad, None


def corpus_adversary(hidden: int, corpora: int) -> torch.nn.Module:
    """The training-only corpus classifier on the head's pooled embedding (2 x hidden)."""
    return torch.nn.Sequential(torch.nn.Linear(2 * hidden, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, corpora))


class HeadBrain(sb.Brain):
    """Only the hooks the recipe needs: forward, objectives, LR schedule, best-epoch bookkeeping."""

    def compute_forward(self, batch: Sequence[torch.Tensor], stage: sb.Stage) -> tuple[torch.Tensor, torch.Tensor]:
        states, offset = batch[0].to(self.device), batch[1].to(self.device)
        if stage == sb.Stage.TRAIN and self.hparams.state_noise > 0:
            states = states + self.hparams.state_noise * torch.randn_like(states) / self.modules.head.inv_std[None, :, None]
        z = self.modules.head.embed(states, offset)
        self._corpus_logits, self._mix = None, None
        if stage == sb.Stage.TRAIN and "adversary" in self.modules:
            self._corpus_logits = self.modules.adversary(_ReverseGradient.apply(z, self._adversary_weight))
        alpha = float(getattr(self.hparams, "mixup_alpha", 0.0))
        if stage == sb.Stage.TRAIN and alpha > 0:
            # Manifold mixup of the pooled embeddings: each draw with a random partner of the batch.
            partner = torch.randperm(z.shape[0], device=z.device)
            share = torch.distributions.Beta(alpha, alpha).sample((z.shape[0],)).to(z.device)
            z = share[:, None] * z + (1 - share[:, None]) * z[partner]
            self._mix = (partner, share)
        return self.modules.head.outputs(z)

    def compute_objectives(
        self, predictions: tuple[torch.Tensor, torch.Tensor], batch: Sequence[torch.Tensor], stage: sb.Stage
    ) -> torch.Tensor:
        logits, arousal = predictions
        labels, arousal_target = batch[2].to(self.device), batch[3].to(self.device)
        labelled = labels >= 0
        loss = self._targets_loss(logits, arousal, labels, arousal_target)
        if self._corpus_logits is not None:
            loss = loss + F.cross_entropy(self._corpus_logits, batch[4].to(self.device))
        if stage != sb.Stage.TRAIN:
            self._true.extend(labels[labelled].tolist())
            self._pred.extend(logits[labelled].argmax(dim=1).tolist())
        return loss

    def _targets_loss(
        self, logits: torch.Tensor, arousal: torch.Tensor, labels: torch.Tensor, arousal_target: torch.Tensor
    ) -> torch.Tensor:
        """Class cross-entropy over the draws with a class label (BAVED has none) plus the weighted arousal
        error over the draws with an arousal target, each a mean over those draws. A mixed draw (mixup)
        learns both its parts' targets in proportion to their shares."""
        parts = [(labels, arousal_target, torch.ones(len(labels), device=self.device))]
        if self._mix is not None:
            partner, share = self._mix
            parts = [(labels, arousal_target, share), (labels[partner], arousal_target[partner], 1 - share)]
        labelled = max(1, int((labels >= 0).sum()))
        with_arousal = max(1, int((~torch.isnan(arousal_target)).sum()))
        loss = torch.zeros((), device=self.device)
        for classes, level, weight in parts:
            known = classes >= 0
            if known.any():
                ce = F.cross_entropy(logits[known], classes[known], label_smoothing=self.hparams.label_smoothing,
                                     reduction="none")
                loss = loss + (weight[known] * ce).sum() / labelled
            known = ~torch.isnan(level)
            if known.any():
                mse = (arousal[known] - level[known]) ** 2
                loss = loss + self.hparams.arousal_weight * (weight[known] * mse).sum() / with_arousal
        return loss

    def on_stage_start(self, stage: sb.Stage, epoch: int | None = None) -> None:
        self._true: list[int] = []
        self._pred: list[int] = []
        if stage == sb.Stage.TRAIN and epoch is not None and self.optimizer is not None:
            total = self.hparams.number_of_epochs
            lr = self.hparams.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / max(1, total))))
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            # The reversal grows as the classes are learnt (the usual ramp of domain-adversarial training),
            # from the first epoch: an epoch without it could be the one the development speakers choose.
            progress = epoch / max(1, total)
            self._adversary_weight = float(getattr(self.hparams, "corpus_adversary_weight", 0.0)) * (2 / (1 + math.exp(-10 * progress)) - 1)
            self._epoch_start = time.time()

    def on_stage_end(self, stage: sb.Stage, stage_loss: float, epoch: int | None = None) -> None:
        if stage == sb.Stage.TRAIN:
            self._train_loss = stage_loss
            return
        ua = metrics(self._true, self._pred, CLASSES)["ua"]
        record = {
            "epoch": epoch, "train_loss": round(float(self._train_loss), 4), "dev_loss": round(float(stage_loss), 4),
            "dev_ua": round(ua, 4), "epoch_s": round(time.time() - self._epoch_start, 1),
        }  # fmt: skip
        self.hparams.history.append(record)
        if self.hparams.progress:
            print(f"[train_head] {json.dumps(record)}", file=sys.stderr, flush=True)
        if self.hparams.best.get("dev_ua", -1.0) < ua:
            self.hparams.best.update(dev_ua=ua, epoch=epoch, state=copy.deepcopy(self.modules.head.state_dict()))


@torch.inference_mode()
def predict(
    head: AnyHead, states: np.ndarray, offsets: np.ndarray, temperature: float = 1.0, batch: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities [N, C] (after temperature) and arousal [N]."""
    head.eval()
    probs, arousal = [], []
    for start in range(0, len(states), batch):
        logits, a = head(
            torch.from_numpy(states[start : start + batch].astype(np.float32)),
            torch.from_numpy(offsets[start : start + batch].astype(np.float32)),
        )
        probs.append(torch.softmax(logits / temperature, dim=1).numpy())
        arousal.append(a.numpy())
    return np.concatenate(probs), np.concatenate(arousal)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """ECE over equal-width confidence bins of the top class."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            ece += inside.mean() * abs(float(correct[inside].mean()) - float(confidence[inside].mean()))
    return float(ece)


def _fit_temperature(logit_probs: np.ndarray, labels: np.ndarray) -> float:
    logp = np.log(np.clip(logit_probs, 1e-9, 1.0))
    best, best_nll = 1.0, float("inf")
    for t in np.arange(0.5, 4.01, 0.05):
        scaled = logp / t
        scaled -= scaled.max(axis=1, keepdims=True)
        nll = float(-(scaled[np.arange(len(labels)), labels] - np.log(np.exp(scaled).sum(axis=1))).mean())
        if nll < best_nll:
            best, best_nll = float(t), nll
    return best


def _dev_speakers(meta: WindowSet, train_rows: np.ndarray, share: float, seed: int) -> np.ndarray:
    """About ``share`` of each training corpus's speakers (at least one), never all of them."""
    rng = np.random.default_rng(seed)
    picked = []
    for corpus in np.unique(meta.corpus[train_rows]):
        speakers = np.unique(meta.speaker[train_rows][meta.corpus[train_rows] == corpus])
        if len(speakers) < 3:
            continue
        n = max(1, int(round(share * len(speakers))))
        picked.extend(rng.choice(speakers, size=n, replace=False).tolist())
    return np.asarray(picked)


TURN_WINDOWS = 3  # windows per simulated caller turn (a ~4-s utterance)
ESCALATION_RULES = {
    "strict streak (3 turns each >= 0.5)": StreakRule(("angry",), 3, 0.5, None),
    "accumulated evidence (3 turns >= 0.35, mean >= 0.5)": StreakRule(("angry",), 3, 0.5, 0.35),
}


def single_emotion_calls(meta: WindowSet, rows: np.ndarray, probs: np.ndarray) -> list[tuple[bool, list[Reading]]]:
    """Every single-emotion call of ``rows`` cut into turns of TURN_WINDOWS windows: (is an angry call,
    its turn readings). A turn's reading is the mean of its windows, as the gateway aggregates a turn."""
    angry = CLASSES.index("angry")
    calls: list[tuple[bool, list[Reading]]] = []
    for call in call_orders(meta, rows, "single"):
        positions = np.searchsorted(rows, call)
        turns = [probs[positions[i : i + TURN_WINDOWS]].mean(axis=0) for i in range(0, len(call), TURN_WINDOWS)]
        readings: list[Reading] = [
            (CLASSES[int(t.argmax())], float(t.max()), dict(zip(CLASSES, t.tolist(), strict=True))) for t in turns
        ]
        calls.append((bool(meta.label[call[0]] == angry), readings))
    return calls


def hand_offs(calls: Sequence[tuple[bool, list[Reading]]], rule: StreakRule) -> dict[str, Any]:
    """The share of angry calls ``rule`` hands off, after how many turns, and the share of other calls
    it hands off (false hand-offs)."""
    fired_at: list[int | None] = []
    false_fires, others = 0, 0
    for is_angry, readings in calls:
        counter = StreakCounter(rule)  # fires at the first turn where the run is due, as the gateway does
        first = next((k + 1 for k, reading in enumerate(readings) if counter.observe(*reading)), None)
        if is_angry:
            fired_at.append(first)
        else:
            others += 1
            false_fires += first is not None
    handed = [t for t in fired_at if t is not None]
    return {
        "angry_calls": len(fired_at),
        "angry_calls_handed_off": round(len(handed) / max(1, len(fired_at)), 4),
        "median_turns_to_hand_off": float(np.median(handed)) if handed else None,
        "other_calls": others,
        "false_hand_off_rate": round(false_fires / max(1, others), 4),
    }


def escalation_simulation(meta: WindowSet, rows: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Per rule of ESCALATION_RULES, :func:`hand_offs` on every single-emotion call of the test
    speakers (all speakers and calls of the held-out set, none selected)."""
    calls = single_emotion_calls(meta, rows, probs)
    return {name: hand_offs(calls, rule) for name, rule in ESCALATION_RULES.items()}


def _cell_probs(
    head: AnyHead, spec: AdaptationSpec, data: TrainingData, rows: np.ndarray, *, seed: int = 0,
    temperature: float = 1.0, offsets: dict[tuple[str, str], np.ndarray] | None = None,
) -> Iterator[tuple[str, str, np.ndarray]]:
    """(channel, condition, probabilities of ``rows``) for every cell, the offsets computed as at run
    time (a gated spec is gated by the head's own scores, not labels); ``offsets``: precomputed ones
    for an ungated spec."""
    for channel in CHANNELS:
        ws = data.windows[channel]
        for condition in CONDITIONS:
            if offsets is not None and not spec.gated:
                offset = offsets[(channel, condition)]
            else:
                calls = call_orders(data.meta, rows, condition, seed)
                offset = scored_offsets(head, spec, ws.states, ws.pooled, calls, temperature)
            probs, _ = predict(head, ws.states[rows], offset[rows], temperature)
            yield channel, condition, probs


def evaluate(
    head: AnyHead, data: TrainingData, spec: AdaptationSpec, rows: np.ndarray, temperature: float
) -> dict[str, Any]:
    """UA, recall, ECE per channel x call condition, per 2-s window as the runtime labels a call."""
    meta = data.meta
    rows = rows[meta.label[rows] >= 0]
    results: dict[str, Any] = {}
    for channel, condition, probs in _cell_probs(head, spec, data, rows, temperature=temperature):
        entry = metrics(meta.label[rows].tolist(), probs.argmax(axis=1).tolist(), CLASSES)
        entry["ece"] = round(expected_calibration_error(probs, meta.label[rows]), 4)
        entry["ua"] = round(entry["ua"], 4)
        entry["wa"] = round(entry["wa"], 4)
        if condition == "single":
            entry["escalation"] = escalation_simulation(meta, rows, probs)
        results[f"{channel}/{condition}"] = entry
    return results


def _window_probs(
    head: AnyHead, spec: AdaptationSpec, data: TrainingData, rows: np.ndarray, seed: int,
    offsets: dict[tuple[str, str], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Untempered probabilities and labels of ``rows``, every cell stacked (what a temperature is fitted on)."""
    cells = [probs for _, _, probs in _cell_probs(head, spec, data, rows, seed=seed, offsets=offsets)]
    return np.concatenate(cells), np.tile(data.meta.label[rows], len(cells))


def labelled_dev_rows(meta: WindowSet, train_rows: np.ndarray, dev_speakers: Sequence[str] | np.ndarray) -> np.ndarray:
    """The labelled original windows of ``train_rows`` spoken by ``dev_speakers`` (they choose the epoch and
    the temperature; speed copies of their clips are not trained on either: a dev speaker is out of training)."""
    return train_rows[np.isin(meta.speaker[train_rows], dev_speakers) & (meta.label[train_rows] >= 0) & meta.original[train_rows]]


def dev_speaker_temperature(
    head: AnyHead, spec: AdaptationSpec, data: TrainingData, train_rows: np.ndarray,
    dev_speakers: Sequence[str] | np.ndarray, seed: int, offsets: dict[tuple[str, str], np.ndarray] | None = None,
) -> float:
    """The temperature fitted on the development speakers' labelled windows of ``train_rows`` (both
    channels, both call conditions; never the test set): the recipe's default (``temperature_from:
    dev_speakers``). ``offsets``: the training run's precomputed ones (an ungated spec only)."""
    rows = labelled_dev_rows(data.meta, train_rows, dev_speakers)
    return _fit_temperature(*_window_probs(head, spec, data, rows, seed, offsets))


def _held_out_corpus_probs(
    hparams: dict[str, Any], data: TrainingData, train_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Each training class corpus in turn predicted by a head trained without it (same recipe).

    A temperature fitted on a training corpus's own development speakers learns in-corpus
    confidence; a new customer's callers are another corpus. These probabilities are what the
    recipe does on a corpus it never heard, so the temperature fitted on them is the one for that
    case (the held-out test corpus of a LOCO fold is never among them)."""
    meta = data.meta
    labelled = train_rows[(meta.label[train_rows] >= 0) & meta.original[train_rows]]
    corpora = sorted(set(meta.corpus[labelled].tolist()))
    if len(corpora) < 2:
        raise DataError(f"temperature_from: held_out_corpora needs two class corpora in training, got {corpora}")
    inner_hparams = {**hparams, "temperature_from": "dev_speakers"}
    all_probs, all_labels = [], []
    for corpus in corpora:
        inner = run(inner_hparams, data, train_rows[meta.corpus[train_rows] != corpus], None)
        rows = labelled[meta.corpus[labelled] == corpus]
        probs, labels = _window_probs(inner["_head"], inner["_spec"], data, rows, int(hparams["seed"]))
        all_probs.append(probs)
        all_labels.append(labels)
    return np.concatenate(all_probs), np.concatenate(all_labels), corpora


def run(
    hparams: dict[str, Any],
    data: TrainingData,
    train_rows: np.ndarray,
    test_rows: np.ndarray | None,
    *,
    base: tuple[EmotionHead, AdaptationSpec, float] | None = None,
) -> dict[str, Any]:
    """Train one head; returns the trained head, its adaptation spec, temperature and the results.

    ``base`` (head, adaptation, temperature) fine-tunes an existing head instead: its adaptation
    statistics and normalisation are kept (they describe the encoder over many corpora, which a
    hundred operator clips cannot), and with ``dev_share: 0`` the last epoch is kept.
    """
    temperature_from = hparams.get("temperature_from", "dev_speakers")
    if temperature_from not in TEMPERATURE_SOURCES:
        raise ConfigError("temperature_from", [f"{temperature_from!r} is not one of {', '.join(TEMPERATURE_SOURCES)}"])
    # init_seed: the network's initialisation and draws only (ensemble members share the dev split).
    init_seed = int(hparams.get("init_seed", hparams["seed"]))
    torch.manual_seed(init_seed)
    torch.set_num_threads(int(hparams.get("threads", 2)))
    meta = data.meta
    dev_speakers = _dev_speakers(meta, train_rows, hparams["dev_share"], hparams["seed"]) if hparams["dev_share"] > 0 else np.asarray([])
    fit_rows = train_rows[~np.isin(meta.speaker[train_rows], dev_speakers)]
    pooled = {channel: data.windows[channel].pooled for channel in CHANNELS}
    if base is None:
        spec = fit_adaptation(hparams["adaptation"], hparams["prior_windows"], pooled["clean"][fit_rows], meta.subset(fit_rows))
    else:
        spec = base[1]
    offsets = channel_condition_offsets(spec, pooled, meta, train_rows, hparams["seed"])
    ws = data.windows["clean"]
    if base is None:
        centred = ws.states[fit_rows].astype(np.float32) - offsets[("clean", "mixed")][fit_rows][:, :, None, :]
        head = EmotionHead(
            HeadConfig(layers=ws.states.shape[1], dim=ws.states.shape[3], hidden=hparams["hidden"], dropout=hparams["dropout"]),
            centred.std(axis=(0, 2)),
        )
    else:
        head = copy.deepcopy(base[0])
    draws = _Draws(data, offsets, fit_rows)
    per_row = _balanced_weights(meta, fit_rows, hparams.get("corpus_shares"))
    sampler = torch.utils.data.WeightedRandomSampler(
        np.repeat(per_row / (len(CHANNELS) * len(CONDITIONS)), len(CHANNELS) * len(CONDITIONS)).tolist(),
        num_samples=int(hparams["draws_per_epoch"]),
        replacement=True,
        generator=torch.Generator().manual_seed(init_seed),
    )
    train_loader = torch.utils.data.DataLoader(draws, batch_size=hparams["batch_size"], sampler=sampler)
    labelled_dev = labelled_dev_rows(meta, train_rows, dev_speakers)
    dev_loader = (
        torch.utils.data.DataLoader(_Draws(data, offsets, labelled_dev), batch_size=256) if len(labelled_dev) else None
    )
    state: dict[str, Any] = {"history": [], "best": {}}
    adversary_weight = float(hparams.get("corpus_adversary_weight", 0.0))
    modules: dict[str, torch.nn.Module] = {"head": head}
    if adversary_weight > 0 and len(np.unique(meta.corpus[fit_rows])) > 1:
        modules["adversary"] = corpus_adversary(head.config.hidden, len(np.unique(meta.corpus)))
    brain = HeadBrain(
        modules=modules,
        opt_class=lambda params: torch.optim.AdamW(params, lr=hparams["lr"], weight_decay=hparams["weight_decay"]),
        hparams={**hparams, **state, "corpus_adversary_weight": adversary_weight},
        run_opts={"device": "cpu", "noprogressbar": True},
    )
    counter = sb.utils.epoch_loop.EpochCounter(int(hparams["number_of_epochs"]))
    brain.fit(counter, train_loader, dev_loader)
    if state["best"]:
        head.load_state_dict(state["best"]["state"])
    head.eval()
    temperature = base[2] if base is not None else 1.0
    inner_corpora: list[str] = []
    if base is None and temperature_from == "held_out_corpora":
        probs, labels, inner_corpora = _held_out_corpus_probs(hparams, data, train_rows)
        temperature = _fit_temperature(probs, labels)
    elif len(labelled_dev):
        temperature = dev_speaker_temperature(head, spec, data, train_rows, dev_speakers, int(hparams["seed"]), offsets)
    result: dict[str, Any] = {
        "best_epoch": state["best"].get("epoch", int(hparams["number_of_epochs"])),
        "dev_ua": round(float(state["best"].get("dev_ua", float("nan"))), 4),
        "dev_speakers": sorted(dev_speakers.tolist()),
        "temperature": round(temperature, 3),
        "temperature_from": temperature_from if base is None else "base model",
        **({"temperature_corpora": inner_corpora} if inner_corpora else {}),
        "layer_weights": [round(float(w), 4) for w in head.layer_weights().detach()],
        "history": state["history"],
        "train_windows": int(len(fit_rows)),
    }
    if test_rows is not None and len(test_rows):
        result["test"] = evaluate(head, data, spec, test_rows, temperature)
    result["_head"], result["_spec"] = head, spec
    return result


def load_recipe(path: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"hparams file not found: {path}")
    try:
        hparams: dict[str, Any] = load_hyperpyyaml(path.read_text(encoding="utf-8"), overrides or {})
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(str(path), [str(exc).strip('"')]) from exc
    return hparams


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="train one v2 head on cached encoder states")
    parser.add_argument("hparams", type=Path)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--test_corpora", nargs="*", default=[])
    parser.add_argument("--adaptation", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    overrides = {"adaptation": args.adaptation} if args.adaptation else {}
    hparams = load_recipe(args.hparams, overrides)
    data = load_training_data(args.cache)
    test = np.isin(data.meta.corpus, args.test_corpora)
    result = run(hparams, data, np.flatnonzero(~test), np.flatnonzero(test))
    summary = {k: v for k, v in result.items() if not k.startswith("_")}
    text = json.dumps(summary, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
