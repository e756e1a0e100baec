"""EmotionNet: a lean ECAPA-TDNN-style speech-emotion classifier, and its checkpoint format.

Input is ``feats`` ``[batch, frames, n_mels]``: log-mels exactly as
:func:`emotion_runtime.features.fbank` computes them (64 mels, 10 ms hop). The network
normalises each window itself (mean per mel bin and one variance over the window), so a 1-3 s
streaming window is treated identically in training and at run time and no running statistics
have to be shipped next to the ONNX graph.

Outputs: ``logits [batch, n_classes]``, ``arousal [batch]`` in 0..1 and ``valence [batch]`` in
-1..1. Arousal and valence are auxiliary heads trained on label-derived targets (see
``emotion_models/labels.py``); they are not annotated dimensional ratings.

Written for ONNX export: no lengths input, no data-dependent control flow, every op works on a
dynamic batch and time axis.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emotune.errors import ModelFileError

__all__ = [
    "EmotionNetConfig",
    "EmotionNet",
    "normalise_window",
    "save_checkpoint",
    "load_checkpoint",
    "CHECKPOINT_FORMAT",
]

CHECKPOINT_FORMAT = "emotune-emotionnet-v1"


@dataclass
class EmotionNetConfig:
    """Everything needed to rebuild the network (stored in every checkpoint)."""

    n_mels: int = 64
    n_classes: int = 4
    channels: int = 96
    n_blocks: int = 2
    dilations: list[int] = field(default_factory=lambda: [2, 3, 4])
    res2_scale: int = 4
    se_channels: int = 32
    attention_channels: int = 64
    embedding_dim: int = 128
    dropout: float = 0.2
    # "global": one variance over the window keeps the relative dynamics of the bands (an
    # arousal cue); "per_bin": classic CMVN.
    variance_norm: str = "per_bin"

    def __post_init__(self) -> None:
        if self.n_blocks < 1 or self.n_blocks > len(self.dilations):
            raise ValueError(f"n_blocks must be 1..{len(self.dilations)}, got {self.n_blocks}")
        if self.channels % self.res2_scale:
            raise ValueError("channels must be divisible by res2_scale")
        if self.variance_norm not in ("global", "per_bin"):
            raise ValueError("variance_norm must be 'global' or 'per_bin'")


def normalise_window(feats: torch.Tensor, variance_norm: str = "global", eps: float = 1e-5) -> torch.Tensor:
    """Per-window mean (per mel bin) and variance normalisation over time; ``feats`` is [B, T, F]."""
    centred = feats - feats.mean(dim=1, keepdim=True)
    if variance_norm == "per_bin":
        std = centred.pow(2).mean(dim=1, keepdim=True).add(eps).sqrt()
    else:
        std = centred.pow(2).mean(dim=(1, 2), keepdim=True).add(eps).sqrt()
    return centred / std


class _ConvBnRelu(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)
        self.norm = nn.BatchNorm1d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(torch.relu(self.conv(x)))


class _Res2Conv(nn.Module):
    """Res2Net multi-scale convolution: channel groups convolved in a cascade (cheap wide context)."""

    def __init__(self, channels: int, scale: int, dilation: int) -> None:
        super().__init__()
        self.scale = scale
        width = channels // scale
        self.convs = nn.ModuleList(_ConvBnRelu(width, width, 3, dilation) for _ in range(scale - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chunks = torch.chunk(x, self.scale, dim=1)
        outputs = [chunks[0]]
        previous: torch.Tensor | None = None
        for conv, chunk in zip(self.convs, chunks[1:], strict=True):
            previous = conv(chunk if previous is None else chunk + previous)
            outputs.append(previous)
        return torch.cat(outputs, dim=1)


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int, se_channels: int) -> None:
        super().__init__()
        self.down = nn.Conv1d(channels, se_channels, 1)
        self.up = nn.Conv1d(se_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.up(torch.relu(self.down(x.mean(dim=2, keepdim=True)))))
        return x * gate


class _SERes2Block(nn.Module):
    def __init__(self, channels: int, scale: int, dilation: int, se_channels: int) -> None:
        super().__init__()
        self.pre = _ConvBnRelu(channels, channels, 1)
        self.res2 = _Res2Conv(channels, scale, dilation)
        self.post = _ConvBnRelu(channels, channels, 1)
        self.se = _SqueezeExcite(channels, se_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.se(self.post(self.res2(self.pre(x))))


class _AttentiveStatsPool(nn.Module):
    """Attention-weighted mean and std over time, with global context (as in ECAPA-TDNN)."""

    def __init__(self, channels: int, attention_channels: int) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.Conv1d(channels * 3, attention_channels, 1),
            nn.ReLU(),
            nn.BatchNorm1d(attention_channels),
            nn.Tanh(),
            nn.Conv1d(attention_channels, channels, 1),
        )

    @staticmethod
    def _stats(x: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (x * weights).sum(dim=2)
        var = ((x - mean.unsqueeze(2)).pow(2) * weights).sum(dim=2)
        return mean, var.clamp(min=1e-6).sqrt()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[2]
        uniform = torch.ones_like(x[:, :1, :]) / frames
        mean, std = self._stats(x, uniform)
        context = torch.cat(
            [x, mean.unsqueeze(2).expand_as(x), std.unsqueeze(2).expand_as(x)], dim=1
        )
        weights = torch.softmax(self.attention(context), dim=2)
        mean, std = self._stats(x, weights)
        return torch.cat([mean, std], dim=1)


class EmotionNet(nn.Module):
    """``forward(feats[B, T, n_mels]) -> (logits[B, C], arousal[B], valence[B])``."""

    def __init__(self, config: EmotionNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or EmotionNetConfig()
        cfg = self.config
        self.stem = _ConvBnRelu(cfg.n_mels, cfg.channels, 5)
        self.blocks = nn.ModuleList(
            _SERes2Block(cfg.channels, cfg.res2_scale, cfg.dilations[i], cfg.se_channels)
            for i in range(cfg.n_blocks)
        )
        # Multi-layer feature aggregation: every block's output feeds the pooling.
        mfa_channels = cfg.channels * cfg.n_blocks
        self.aggregate = _ConvBnRelu(mfa_channels, mfa_channels, 1)
        self.pool = _AttentiveStatsPool(mfa_channels, cfg.attention_channels)
        self.embed = nn.Sequential(
            nn.BatchNorm1d(mfa_channels * 2),
            nn.Linear(mfa_channels * 2, cfg.embedding_dim),
            nn.ReLU(),
            nn.BatchNorm1d(cfg.embedding_dim),
            nn.Dropout(cfg.dropout),
        )
        self.classifier = nn.Linear(cfg.embedding_dim, cfg.n_classes)
        self.arousal_head = nn.Linear(cfg.embedding_dim, 1)
        self.valence_head = nn.Linear(cfg.embedding_dim, 1)

    def embedding(self, feats: torch.Tensor) -> torch.Tensor:
        x = normalise_window(feats, self.config.variance_norm).transpose(1, 2)
        x = self.stem(x)
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        x = self.aggregate(torch.cat(outputs, dim=1))
        return self.embed(self.pool(x))

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        emb = self.embedding(feats)
        logits = self.classifier(emb)
        arousal = torch.sigmoid(self.arousal_head(emb)).squeeze(1)
        valence = torch.tanh(self.valence_head(emb)).squeeze(1)
        return logits, arousal, valence

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def save_checkpoint(path: str | Path, model: EmotionNet, meta: dict[str, Any]) -> Path:
    """Write weights + rebuild config + ``meta`` atomically (temp file, then rename).

    ``meta`` should hold at least ``labels`` (class order), ``fbank`` (FbankSpec.to_dict()),
    ``training_data`` and ``licence``; it must contain only plain Python types.
    """
    path = Path(path)
    labels = meta.get("labels")
    if not isinstance(labels, list) or len(labels) != model.config.n_classes:
        raise ValueError(f"meta['labels'] must list the model's {model.config.n_classes} classes")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_config": asdict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta,
    }
    # A reader polling for the file must never see a half-written one.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a model file is meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: str | Path) -> tuple[EmotionNet, dict[str, Any]]:
    """Rebuild the model (in eval mode) and return it with its meta (``meta['model_config']`` added)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise ModelFileError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(f"{path} is not an Emotune EmotionNet checkpoint ({CHECKPOINT_FORMAT})")
    try:
        model = EmotionNet(EmotionNetConfig(**payload["model_config"]))
        model.load_state_dict(payload["state_dict"])
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelFileError(f"checkpoint {path} does not match EmotionNet: {exc}") from exc
    model.eval()
    meta = dict(payload.get("meta", {}))
    meta["model_config"] = dict(payload["model_config"])
    return model, meta
