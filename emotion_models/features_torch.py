"""The runtime's log-mel features computed in torch, for training on batches.

Built from :func:`emotion_runtime.features.mel_matrix` and :func:`analysis_window`, with the
same framing (no centre padding), so it equals :func:`emotion_runtime.features.fbank` (a test
holds them equal): a model trained on these features reads the runtime's without a mismatch.
"""

from __future__ import annotations

import torch
from torch import nn

from emotion_runtime.features import DEFAULT_SPEC, FbankSpec, analysis_window, mel_matrix

__all__ = ["TorchFbank", "torch_fbank"]


class TorchFbank(nn.Module):
    """``forward(wavs[B, samples]) -> feats[B, frames, n_mels]`` (float32, log-mel)."""

    window: torch.Tensor
    mel: torch.Tensor

    def __init__(self, spec: FbankSpec = DEFAULT_SPEC) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("window", torch.from_numpy(analysis_window(spec).copy()), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel_matrix(spec).copy()), persistent=False)

    def forward(self, wavs: torch.Tensor) -> torch.Tensor:
        if wavs.dim() == 1:
            wavs = wavs.unsqueeze(0)
        if wavs.dim() != 2:
            raise ValueError(f"expected [batch, samples] audio, got shape {tuple(wavs.shape)}")
        spec = self.spec
        if wavs.shape[1] < spec.win_length:
            return wavs.new_zeros((wavs.shape[0], 0, spec.n_mels))
        frames = wavs.unfold(1, spec.win_length, spec.hop_length) * self.window
        power = torch.fft.rfft(frames, n=spec.n_fft, dim=-1).abs().pow(2)
        return torch.log(power @ self.mel + spec.log_floor)


def torch_fbank(wavs: torch.Tensor, spec: FbankSpec = DEFAULT_SPEC) -> torch.Tensor:
    """Functional form of :class:`TorchFbank`."""
    return TorchFbank(spec).to(wavs.device)(wavs)
