"""Whisper's log-mel in torch: the reference :mod:`emotion_runtime.whisper_mel` is tested against.

Built independently of the NumPy version: ``torch.stft`` (centre, reflect padding, periodic Hann)
and torchaudio's Slaney filters (``melscale_fbanks(norm="slaney", mel_scale="slaney")``), so the
parity test checks our framing, filters and log together. Also gives training the same rows as the
runtime on batches: :func:`torch_log_mel_rows` is :func:`emotion_runtime.whisper_mel.log_mel_rows`.
"""

from __future__ import annotations

import torch
import torchaudio.functional as AF

from emotion_runtime.whisper_mel import (
    DYNAMIC_RANGE,
    HOP_LENGTH,
    LEFT_PAD,
    LOG_FLOOR,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
)

__all__ = ["torch_mel_filters", "torch_whisper_log_mel", "torch_log_mel_rows", "torch_normalise_window"]


def torch_mel_filters() -> torch.Tensor:
    """``(201, 80)`` Slaney filters from torchaudio."""
    return AF.melscale_fbanks(
        N_FFT // 2 + 1, 0.0, SAMPLE_RATE / 2, N_MELS, SAMPLE_RATE, norm="slaney", mel_scale="slaney"
    )


def _log10_mel(power: torch.Tensor) -> torch.Tensor:
    """``power[..., 201, frames]`` -> log10 mel ``[..., 80, frames]``."""
    mel = torch.matmul(torch_mel_filters().T.to(power), power)
    return torch.clamp(mel, min=LOG_FLOOR).log10()


def torch_normalise_window(log_mel: torch.Tensor) -> torch.Tensor:
    """Clamp to ``max - 8`` over the whole (last two) axes, then ``(x + 4) / 4``."""
    peak = log_mel.amax(dim=(-2, -1), keepdim=True)
    return (torch.maximum(log_mel, peak - DYNAMIC_RANGE) + 4.0) / 4.0


def torch_whisper_log_mel(audio: torch.Tensor, *, normalise: bool = True) -> torch.Tensor:
    """Whisper's ``log_mel_spectrogram`` without the 30-s padding: ``[..., 80, samples // 160]``."""
    window = torch.hann_window(N_FFT, device=audio.device)
    stft = torch.stft(audio, N_FFT, HOP_LENGTH, window=window, center=True, pad_mode="reflect", return_complex=True)
    log_mel = _log10_mel(stft[..., :-1].abs() ** 2)
    return torch_normalise_window(log_mel) if normalise else log_mel


def torch_log_mel_rows(audio: torch.Tensor) -> torch.Tensor:
    """The streaming rows (left reflect padding of 240, no right padding, no normalisation):
    ``[..., samples // 160, 80]`` (more than 240 samples)."""
    padded = torch.cat([audio[..., 1 : LEFT_PAD + 1].flip(-1), audio], dim=-1)
    window = torch.hann_window(N_FFT, device=audio.device)
    stft = torch.stft(padded, N_FFT, HOP_LENGTH, window=window, center=False, return_complex=True)
    return _log10_mel(stft.abs() ** 2).transpose(-1, -2)
