"""Log-mel filterbank features: the one definition shared by training and the runtime.

NumPy only (the streaming runtime never imports torch). Training computes the same features
in torch from :func:`mel_matrix` and :func:`analysis_window`, and a test holds the two equal,
so a model trained on one is fed the other without a mismatch.

Framing has no centre padding: frame ``i`` covers samples ``[i*hop, i*hop + win)``. That is
what makes :class:`StreamingFbank` (frames as audio arrives) equal to :func:`fbank` on the
whole signal, so features are computed once per incoming frame, never again per window.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["FbankSpec", "DEFAULT_SPEC", "mel_matrix", "analysis_window", "fbank", "StreamingFbank"]


@dataclass(frozen=True)
class FbankSpec:
    sample_rate: int = 16000
    win_length: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms
    n_fft: int = 512
    n_mels: int = 64
    f_min: float = 20.0
    f_max: float = 7600.0
    log_floor: float = 1e-6

    def to_dict(self) -> dict[str, float | int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def frames_for(self, n_samples: int) -> int:
        if n_samples < self.win_length:
            return 0
        return 1 + (n_samples - self.win_length) // self.hop_length


DEFAULT_SPEC = FbankSpec()


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_matrix(spec: FbankSpec = DEFAULT_SPEC) -> np.ndarray:
    """Triangular mel filters, shape ``(n_fft // 2 + 1, n_mels)``, float32."""
    n_bins = spec.n_fft // 2 + 1
    bin_hz = np.linspace(0.0, spec.sample_rate / 2, n_bins)
    edges = _mel_to_hz(
        np.linspace(_hz_to_mel(np.array(spec.f_min)), _hz_to_mel(np.array(spec.f_max)), spec.n_mels + 2)
    )
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_hz[:, None] - lower[None, :]) / (centre - lower)[None, :]
    falling = (upper[None, :] - bin_hz[:, None]) / (upper - centre)[None, :]
    weights = np.clip(np.minimum(rising, falling), 0.0, None)
    weights.flags.writeable = False
    return weights.astype(np.float32)


@lru_cache(maxsize=8)
def analysis_window(spec: FbankSpec = DEFAULT_SPEC) -> np.ndarray:
    """Hamming window (symmetric), float32."""
    window = np.hamming(spec.win_length).astype(np.float32)
    window.flags.writeable = False
    return window


def fbank(signal: np.ndarray, spec: FbankSpec = DEFAULT_SPEC) -> np.ndarray:
    """Log-mel features of a mono float signal in [-1, 1]: shape ``(frames, n_mels)``, float32."""
    signal = np.asarray(signal, dtype=np.float32)
    if signal.ndim != 1:
        raise ValueError(f"expected a mono 1-D signal, got shape {signal.shape}")
    n_frames = spec.frames_for(signal.shape[0])
    if n_frames == 0:
        return np.zeros((0, spec.n_mels), dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(signal, spec.win_length)[:: spec.hop_length]
    frames = frames[:n_frames] * analysis_window(spec)
    power = np.abs(np.fft.rfft(frames, n=spec.n_fft, axis=1)) ** 2
    mel = power.astype(np.float32) @ mel_matrix(spec)
    return np.log(mel + spec.log_floor).astype(np.float32)


class StreamingFbank:
    """Computes fbank frames as audio arrives; output equals :func:`fbank` on the whole signal."""

    def __init__(self, spec: FbankSpec = DEFAULT_SPEC) -> None:
        self.spec = spec
        self._pending = np.zeros(0, dtype=np.float32)

    def reset(self) -> None:
        self._pending = np.zeros(0, dtype=np.float32)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Feed 16 kHz float samples; returns the fbank frames now complete (maybe zero rows)."""
        buf = np.concatenate([self._pending, np.asarray(samples, dtype=np.float32)])
        feats = fbank(buf, self.spec)
        consumed = feats.shape[0] * self.spec.hop_length
        self._pending = buf[consumed:]
        return feats
