"""Whisper's audio encoder rebuilt in PyTorch from CTranslate2's ``model.bin``, returning every layer.

Architecture (Whisper, "base": D = 512, 8 heads, 6 blocks, FFN 2048): ``conv1`` (k3, pad 1) + GELU,
``conv2`` (k3, stride 2, pad 1) + GELU, plus the sinusoidal positional embedding rows ``[0, T/2)``,
then pre-LN transformer blocks (``x + attn(ln(x))``, ``x + fc2(gelu(fc1(ln(x))))``) and a final
layer norm. ``forward(mel [1, 80, T]) -> hidden_states [L+1, 1, T/2, D]``: index 0 after the conv
stem + positional embedding, index ``i`` the output of block ``i``, and the last index with the final
layer norm applied (Whisper's encoder output). A variant with only the first ``K < L`` blocks
returns ``K + 1`` states and applies no final layer norm (it belongs after block ``L``).

Weights are read from the verified ``models/encoders/whisper-base/model.bin`` (float16 there; we
run float32).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from emotion_models.encoders.ct2_reader import CT2Model, read_model_bin
from emotion_runtime import weights

__all__ = ["WhisperEncoder", "load_whisper_encoder", "MAX_FRAMES"]

MAX_FRAMES = 3000  # Whisper's 30 s of mel rows: 1500 positional embeddings after the stride-2 conv


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.heads = heads
        self.attn_ln = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)  # CTranslate2 fuses q, k, v (k has a zero bias)
        self.out = nn.Linear(dim, dim)
        self.ffn_ln = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn)
        self.fc2 = nn.Linear(ffn, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames, dim = x.shape
        head_dim = dim // self.heads
        qkv = self.qkv(self.attn_ln(x)).reshape(batch, frames, 3, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(head_dim))
        attended = torch.matmul(scores.softmax(dim=-1), v).transpose(1, 2).reshape(batch, frames, dim)
        x = x + self.out(attended)
        return x + self.fc2(F.gelu(self.fc1(self.ffn_ln(x))))


class WhisperEncoder(nn.Module):
    """``forward(mel [1, 80, T], T even) -> hidden_states [L+1, 1, T/2, D]`` (see the module doc)."""

    positions: torch.Tensor

    def __init__(
        self, n_mels: int = 80, dim: int = 512, heads: int = 8, layers: int = 6, ffn: int = 2048,
        max_positions: int = MAX_FRAMES // 2, final_layer_norm: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(max_positions, dim))
        self.blocks = nn.ModuleList(_Block(dim, heads, ffn) for _ in range(layers))
        self.final_layer_norm = final_layer_norm
        self.ln_post = nn.LayerNorm(dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # [B, T/2, D]
        x = x + self.positions[: x.shape[1]]
        states = [x]
        for block in self.blocks:
            x = block(x)
            states.append(x)
        if self.final_layer_norm:
            states[-1] = self.ln_post(x)
        return torch.stack(states)


def _tensor(model: CT2Model, name: str) -> torch.Tensor:
    return torch.from_numpy(np.asarray(model[name], dtype=np.float32).copy())


def _count_layers(model: CT2Model) -> int:
    count = 0
    while f"encoder/layer_{count}/ffn/linear_0/weight" in model:
        count += 1
    return count


def load_whisper_encoder(model_bin: str | Path | None = None, *, layers: int | None = None) -> WhisperEncoder:
    """A float32 :class:`WhisperEncoder` with the weights of ``model_bin`` (default: the verified
    ``models/encoders/whisper-base/model.bin``), in eval mode; ``layers`` keeps the first blocks."""
    path = weights.verify(model_bin) if model_bin else weights.verified_path("whisper-base/model.bin")
    ct2 = read_model_bin(path)
    total = _count_layers(ct2)
    keep = total if layers is None else layers
    if not 1 <= keep <= total:
        raise ValueError(f"layers must be in 1..{total}, got {layers}")
    conv1 = ct2["encoder/conv1/weight"]
    dim, n_mels = int(conv1.shape[0]), int(conv1.shape[1])
    heads = int(np.asarray(ct2["encoder/num_heads"]))
    ffn = int(ct2["encoder/layer_0/ffn/linear_0/weight"].shape[0])
    positions = ct2["encoder/position_encodings/encodings"]
    encoder = WhisperEncoder(n_mels, dim, heads, keep, ffn, int(positions.shape[0]), final_layer_norm=keep == total)
    state = {
        "conv1.weight": _tensor(ct2, "encoder/conv1/weight"),
        "conv1.bias": _tensor(ct2, "encoder/conv1/bias"),
        "conv2.weight": _tensor(ct2, "encoder/conv2/weight"),
        "conv2.bias": _tensor(ct2, "encoder/conv2/bias"),
        "positions": _tensor(ct2, "encoder/position_encodings/encodings"),
        "ln_post.weight": _tensor(ct2, "encoder/layer_norm/gamma"),
        "ln_post.bias": _tensor(ct2, "encoder/layer_norm/beta"),
    }
    ours = {
        "attn_ln.weight": "self_attention/layer_norm/gamma",
        "attn_ln.bias": "self_attention/layer_norm/beta",
        "qkv.weight": "self_attention/linear_0/weight",
        "qkv.bias": "self_attention/linear_0/bias",
        "out.weight": "self_attention/linear_1/weight",
        "out.bias": "self_attention/linear_1/bias",
        "ffn_ln.weight": "ffn/layer_norm/gamma",
        "ffn_ln.bias": "ffn/layer_norm/beta",
        "fc1.weight": "ffn/linear_0/weight",
        "fc1.bias": "ffn/linear_0/bias",
        "fc2.weight": "ffn/linear_1/weight",
        "fc2.bias": "ffn/linear_1/bias",
    }
    for i in range(keep):
        for mine, theirs in ours.items():
            state[f"blocks.{i}.{mine}"] = _tensor(ct2, f"encoder/layer_{i}/{theirs}")
    encoder.load_state_dict(state, strict=True)
    return encoder.eval()
