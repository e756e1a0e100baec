"""The v2 emotion head on a frozen pretrained encoder: layer weighting, attentive pooling, two targets.

    states [B, L+1, P, D] (encoder states, pooled to P frames)   offset [B, L+1, D] (per-call adaptation)
      -> (states - offset) / global_std          per layer and dimension (std fitted on training data)
      -> softmax-weighted sum over the L+1 layers (learned: middle layers carry the most emotion)
      -> Linear(D, H) + GELU + dropout per frame
      -> attentive statistics pooling over the P frames (weighted mean and std)
      -> logits [B, C]   and   arousal [B] in 0..1 (sigmoid)

Exported to ONNX as one small graph (``head.onnx``) taking ``states`` and ``offset``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emotion_models.probe import ProbeHead
from emotune.errors import ModelError

__all__ = ["AnyHead", "HeadConfig", "EmotionHead", "HeadEnsemble", "save_head", "load_head"]


@dataclass
class HeadConfig:
    layers: int  # L+1 encoder states
    dim: int  # D
    n_classes: int = 4
    hidden: int = 128
    attention: int = 64
    dropout: float = 0.3


class EmotionHead(nn.Module):
    def __init__(self, config: HeadConfig, global_std: np.ndarray | None = None) -> None:
        super().__init__()
        self.config = config
        std = np.ones((config.layers, config.dim), np.float32) if global_std is None else global_std
        self.register_buffer("inv_std", torch.from_numpy(1.0 / np.maximum(std.astype(np.float32), 1e-4)))
        self.layer_logits = nn.Parameter(torch.zeros(config.layers))
        self.project = nn.Sequential(nn.Linear(config.dim, config.hidden), nn.GELU(), nn.Dropout(config.dropout))
        self.attend = nn.Sequential(nn.Linear(config.hidden, config.attention), nn.Tanh(), nn.Linear(config.attention, 1))
        self.classify = nn.Sequential(
            nn.Linear(2 * config.hidden, config.hidden), nn.GELU(), nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.n_classes),
        )  # fmt: skip
        self.arousal = nn.Linear(2 * config.hidden, 1)

    def layer_weights(self) -> torch.Tensor:
        return torch.softmax(self.layer_logits, dim=0)

    def embed(self, states: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        inv_std: torch.Tensor = self.inv_std  # type: ignore[assignment]
        x = (states - offset[:, :, None, :]) * inv_std[None, :, None, :]
        x = torch.einsum("l,blpd->bpd", self.layer_weights(), x)
        h = self.project(x)
        a = torch.softmax(self.attend(h), dim=1)
        mean = (a * h).sum(dim=1)
        std = torch.sqrt(((a * (h - mean[:, None]) ** 2).sum(dim=1)).clamp_min(1e-6))
        return torch.cat([mean, std], dim=1)

    def outputs(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits and arousal from the pooled embedding ``z`` of :meth:`embed`."""
        return self.classify(z), torch.sigmoid(self.arousal(z)).squeeze(-1)

    def forward(self, states: torch.Tensor, offset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.outputs(self.embed(states, offset))


def save_head(head: EmotionHead | ProbeHead, path: Path, extra: dict[str, Any] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    kind = "linear_probe" if isinstance(head, ProbeHead) else "head"
    torch.save({"kind": kind, "config": asdict(head.config), "state": head.state_dict(), "extra": extra or {}}, tmp)
    tmp.replace(path)


def load_head(path: Path) -> tuple[EmotionHead, dict[str, Any]]:
    """The trainable head of a v2 model folder; a linear-probe checkpoint is refused (it is fitted, not
    trained further: fine-tune from the model it was fitted on)."""
    data = torch.load(path, map_location="cpu", weights_only=False)
    if data.get("kind", "head") != "head":
        fitted_on = (data.get("extra") or {}).get("base_model", "its base model")
        raise ModelError(f"{path} holds a {data['kind']}, not a trainable head: fine-tune from {fitted_on} instead")
    head = EmotionHead(HeadConfig(**data["config"]))
    head.load_state_dict(data["state"])
    head.eval()
    return head, data.get("extra", {})


class HeadEnsemble(nn.Module):
    """Heads trained alike from different initialisations; logits and arousal averaged (one graph,
    the same inputs and outputs as one head)."""

    def __init__(self, members: list[EmotionHead]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)  # registered: state_dict, eval(), export
        self._heads = list(members)  # the same modules, typed

    def layer_weights(self) -> torch.Tensor:
        return torch.stack([m.layer_weights() for m in self._heads]).mean(dim=0)

    def forward(self, states: torch.Tensor, offset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = [m(states, offset) for m in self._heads]
        return torch.stack([o[0] for o in outputs]).mean(dim=0), torch.stack([o[1] for o in outputs]).mean(dim=0)


AnyHead = EmotionHead | HeadEnsemble | ProbeHead  # what evaluation and export take: same inputs, same outputs
