"""A linear probe on the frozen encoder as a shippable head: its features, its fit, and the nested choice.

    states [B, L+1, P, D]   offset [B, L+1, D]
      -> (states - offset), the chosen layers only
      -> per layer the mean over the P pooled frames (``mean``), or the mean then the std (``mean_std``)
      -> z-scored with the training windows' statistics -> Linear -> logits [B, C]
      -> arousal [B]: the class probabilities' expected arousal (label-derived, as the labels define it)

``ProbeHead`` has ``EmotionHead``'s inputs and outputs, so evaluation, ``head.onnx`` export and the
runtime take either. Training and inference compute the features with the same function
(``probe_features``). ``emotune finetune`` fits it as a candidate beside the head fine-tune.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from emotion_models.corpora import CLASSES
from emotion_models.labels import arousal_target
from emotion_models.linear_probe import fit_logistic

__all__ = ["L2_GRID", "LAYER_SUBSETS", "PROBE_GRID", "STATISTICS", "ProbeConfig", "ProbeHead", "choose_nested", "class_weights",
           "fit_probe", "fit_standardised", "layer_rows", "probe_features", "window_features"]  # fmt: skip

L2_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
LAYER_SUBSETS = ("all", "lower", "middle", "upper")  # of the L+1 hidden states (0 = the embedding output)
STATISTICS = ("mean", "mean_std")

# The linear-probe candidate's hyper-parameters (statistics, layers, L2), in the order ties go: mean + std
# over all layers first, then mean-pooled layer subsets; within each the strongest L2 first.
PROBE_GRID: list[tuple[str, str, float]] = [
    *(("mean_std", "all", l2) for l2 in sorted(L2_GRID, reverse=True)),
    *(("mean", subset, l2) for subset in LAYER_SUBSETS for l2 in sorted(L2_GRID, reverse=True)),
]


def layer_rows(n_layers: int, subset: str) -> list[int]:
    """The hidden-state indices of ``subset`` of ``n_layers`` (L+1) states: all; lower = 0..n/2;
    middle = the central third (at least 3); upper = n/2..n-1."""
    half = n_layers // 2
    if subset == "all":
        return list(range(n_layers))
    if subset == "lower":
        return list(range(0, half + 1))
    if subset == "upper":
        return list(range(half, n_layers))
    if subset == "middle":
        width = max(3, n_layers // 3)
        start = max(0, (n_layers - width) // 2)
        return list(range(start, min(n_layers, start + width)))
    raise ValueError(f"unknown layer subset {subset!r}")


def probe_features(states: torch.Tensor, offset: torch.Tensor, layer_indices: Sequence[int], statistics: str) -> torch.Tensor:
    """[B, L+1, P, D], [B, L+1, D] -> [B, len(layer_indices) * D (x2 for ``mean_std``)], layer-major, float64.

    In float64: near-constant features (std ~1e-6 over the training windows) are divided by that std, so
    float32 rounding (which differs between torch's and onnxruntime's reductions) would reach the logits."""
    x = (states.double() - offset.double()[:, :, None, :])[:, list(layer_indices)]
    mean = x.mean(dim=2)
    if statistics == "mean":
        return mean.reshape(x.shape[0], -1)
    if statistics == "mean_std":
        std = torch.sqrt(((x - mean[:, :, None, :]) ** 2).mean(dim=2))
        return torch.cat([mean, std], dim=2).reshape(x.shape[0], -1)
    raise ValueError(f"unknown statistics {statistics!r}; known: {', '.join(STATISTICS)}")


def window_features(states: np.ndarray, layer_indices: Sequence[int], statistics: str, offset: np.ndarray | None = None,
                    chunk: int = 256) -> np.ndarray:
    """``probe_features`` of cached windows at a constant ``offset`` ([L+1, D]; what the runtime feeds a
    head under adaptation ``none``: the global mean; zero when None), in chunks, as float32 (the fit's
    precision; at inference the graph keeps float64)."""
    parts = []
    shift = torch.zeros(states.shape[1], states.shape[3]) if offset is None else torch.from_numpy(offset.astype(np.float32))
    with torch.no_grad():
        for start in range(0, len(states), chunk):
            x = torch.from_numpy(states[start : start + chunk].astype(np.float32))
            parts.append(probe_features(x, shift.expand(x.shape[0], -1, -1), layer_indices, statistics).float().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


@dataclass
class ProbeConfig:
    layers: int  # L+1 encoder states (the head's input)
    dim: int  # D
    layer_indices: list[int]
    statistics: str
    l2: float
    n_classes: int = len(CLASSES)


class ProbeHead(nn.Module):
    def __init__(self, config: ProbeConfig, feature_mean: np.ndarray, feature_std: np.ndarray, linear: nn.Linear) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("feature_mean", torch.from_numpy(feature_mean.astype(np.float64)))
        self.register_buffer("inv_feature_std", torch.from_numpy((1.0 / feature_std).astype(np.float64)))
        self.register_buffer("class_arousal", torch.tensor([float(arousal_target(c) or 0.0) for c in CLASSES[: config.n_classes]]))
        self.linear = linear

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """float32 logits of ``probe_features`` rows (float64 inside)."""
        mean: torch.Tensor = self.feature_mean  # type: ignore[assignment]
        inv_std: torch.Tensor = self.inv_feature_std  # type: ignore[assignment]
        z = (features.double() - mean) * inv_std
        return torch.nn.functional.linear(z, self.linear.weight.double(), self.linear.bias.double()).float()

    def forward(self, states: torch.Tensor, offset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        arousal: torch.Tensor = self.class_arousal  # type: ignore[assignment]
        logits = self.classify(probe_features(states, offset, self.config.layer_indices, self.config.statistics))
        return logits, torch.softmax(logits, dim=1) @ arousal

    def describe(self) -> dict[str, Any]:
        return {"kind": "linear_probe", **asdict(self.config)}


def class_weights(corpus: np.ndarray, labels: np.ndarray, operator: str, share: float | None) -> np.ndarray:
    """Corpus x class balanced weights summing to 1; ``share``: the operator corpus's part of the total
    (the other corpora split the rest equally); None: every corpus alike."""
    weights = np.zeros(len(labels))
    corpora = np.unique(corpus).tolist()
    others = [c for c in corpora if c != operator]
    if share is None or not others or operator not in corpora:
        parts = dict.fromkeys(corpora, 1.0 / len(corpora))
    else:
        parts = {c: share if c == operator else (1.0 - share) / len(others) for c in corpora}
    for c in corpora:
        in_corpus = corpus == c
        present = np.unique(labels[in_corpus])
        for label in present:
            members = in_corpus & (labels == label)
            weights[members] = parts[c] / (members.sum() * len(present))
    return weights / weights.sum()


def fit_standardised(features: np.ndarray, labels: np.ndarray, weights: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray, nn.Linear]:
    """z-score training ``features`` with their own statistics, then the class-weighted logistic
    regression at ``l2`` (seeded: the same data gives the same fit); returns (mean, std, linear)."""
    x = features.astype(np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    torch.manual_seed(0)
    return mean, std, fit_logistic(((x - mean) / std).astype(np.float32), labels, weights, l2)


def fit_probe(features: np.ndarray, labels: np.ndarray, weights: np.ndarray, config: ProbeConfig) -> ProbeHead:
    """The shippable probe fitted on rows of ``window_features`` (every channel stacked)."""
    probe = ProbeHead(config, *fit_standardised(features, labels, weights, config.l2))
    probe.eval()
    return probe


def choose_nested(
    speakers: Sequence[str], grid: Sequence[Any], inner_score: Callable[[Any, str, list[str]], float]
) -> tuple[Any, dict[str, float]]:
    """The grid value with the best mean ``inner_score(value, held, rest)`` over leave-one-out of
    ``speakers`` (the outer fold's training speakers only); ties go to the earlier (more regularised) value."""
    means = {}
    for value in grid:
        means[json.dumps(value)] = float(np.mean([inner_score(value, s, [t for t in speakers if t != s]) for s in speakers]))
    best = max(grid, key=lambda v: means[json.dumps(v)])  # max keeps the first of equal values
    return best, {k: round(v, 4) for k, v in means.items()}
