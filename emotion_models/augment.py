"""Augmentation for contact-center and in-car audio, on batches of 16 kHz waveforms (torch).

What a caller's audio goes through that studio-recorded acted corpora never show: the telephone
band and G.711 mu-law (8 kHz, 8 bit), background noise and other voices, car-cabin reverberation,
level differences, and different speaking rates/pitches. Each is simulated here with a
probability from the hparams; :func:`telephone` is also the deterministic channel used to
evaluate "telephone" accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio.functional as AF

__all__ = [
    "AugmentConfig",
    "WaveAugmenter",
    "telephone",
    "speed_perturb",
    "trim_silence",
    "random_crop",
    "spec_augment",
    "freq_warp",
]

SAMPLE_RATE = 16000


@dataclass
class AugmentConfig:
    speed_prob: float = 0.5
    speeds: tuple[float, ...] = (0.9, 1.1)
    gain_db: tuple[float, float] = (-12.0, 6.0)
    telephone_prob: float = 0.4
    noise_prob: float = 0.5
    snr_db: tuple[float, float] = (5.0, 25.0)
    babble_share: float = 0.5  # share of noise events that are other speakers from the batch
    reverb_prob: float = 0.3
    rt60_s: tuple[float, float] = (0.1, 0.5)
    freq_mask_prob: float = 0.5
    freq_mask_width: int = 8
    # Vocal-tract-length-like warp of the mel axis: speakers (and languages) differ in formants.
    freq_warp_prob: float = 0.0
    freq_warp_max: float = 0.1


def telephone(wavs: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Narrow-band telephone channel: 300 Hz high-pass, 8 kHz, G.711 mu-law round trip, back to 16 kHz."""
    x = AF.highpass_biquad(wavs, sample_rate, 300.0)
    x = AF.resample(x, sample_rate, 8000)
    x = AF.mu_law_decoding(AF.mu_law_encoding(x.clamp(-1.0, 1.0), 256), 256)
    return AF.resample(x, 8000, sample_rate)


def speed_perturb(wav: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (tempo and pitch together, like tape speed): linear resampling."""
    if factor == 1.0:
        return wav
    n_out = max(1, int(round(len(wav) / factor)))
    positions = np.linspace(0, len(wav) - 1, n_out)
    return np.interp(positions, np.arange(len(wav)), wav).astype(np.float32)


def trim_silence(wav: np.ndarray, top_db: float = 40.0, margin_s: float = 0.1) -> np.ndarray:
    """Cut leading/trailing frames quieter than peak - ``top_db`` (acted corpora start with ~1 s silence)."""
    frame = 400
    if len(wav) < frame * 2:
        return wav
    n = len(wav) // frame
    energy = (wav[: n * frame].reshape(n, frame) ** 2).mean(axis=1)
    db = 10 * np.log10(energy + 1e-12)
    voiced = np.flatnonzero(db > db.max() - top_db)
    margin = int(margin_s * SAMPLE_RATE)
    start = max(0, voiced[0] * frame - margin)
    end = min(len(wav), (voiced[-1] + 1) * frame + margin)
    return wav[start:end]


def random_crop(wav: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``length``-sample excerpt; shorter clips are looped (no zero padding: the model has no mask)."""
    if len(wav) < length:
        wav = np.tile(wav, int(math.ceil(length / len(wav))))
        return wav[:length]
    start = int(rng.integers(0, len(wav) - length + 1))
    return wav[start : start + length]


def _synthetic_rir(rt60: float, generator: torch.Generator) -> torch.Tensor:
    """Exponentially decaying noise tail: a cheap room/cabin impulse response."""
    length = int(rt60 * SAMPLE_RATE)
    t = torch.arange(length) / SAMPLE_RATE
    decay = torch.exp(-6.9 * t / rt60)  # -60 dB at rt60
    rir = torch.randn(length, generator=generator) * decay
    rir[0] = 1.0  # direct path
    return rir / rir.norm()


def spec_augment(feats: torch.Tensor, prob: float, width: int, generator: torch.Generator) -> torch.Tensor:
    """Mask one random band of mel bins per example (with the window mean, so normalisation is unaffected)."""
    if prob <= 0 or width <= 0:
        return feats
    feats = feats.clone()
    n_mels = feats.shape[2]
    for i in range(feats.shape[0]):
        if torch.rand(1, generator=generator).item() < prob:
            w = int(torch.randint(1, width + 1, (1,), generator=generator))
            f0 = int(torch.randint(0, n_mels - w + 1, (1,), generator=generator))
            feats[i, :, f0 : f0 + w] = feats[i].mean()
    return feats


def freq_warp(feats: torch.Tensor, prob: float, max_warp: float, generator: torch.Generator) -> torch.Tensor:
    """Stretch/compress the mel axis of some examples by up to ``max_warp`` (edge bins repeat)."""
    if prob <= 0 or max_warp <= 0:
        return feats
    feats = feats.clone()
    n_mels = feats.shape[2]
    bins = torch.arange(n_mels, dtype=feats.dtype)
    for i in range(feats.shape[0]):
        if torch.rand(1, generator=generator).item() < prob:
            alpha = 1.0 + (2 * torch.rand(1, generator=generator).item() - 1) * max_warp
            source = (bins / alpha).clamp(0, n_mels - 1)
            low = source.floor().long()
            high = (low + 1).clamp(max=n_mels - 1)
            frac = source - low
            feats[i] = feats[i][:, low] * (1 - frac) + feats[i][:, high] * frac
    return feats


class WaveAugmenter:
    """Applies gain, reverb, noise/babble and the telephone channel to a batch ``[B, samples]``."""

    def __init__(self, config: AugmentConfig | None = None, seed: int = 0) -> None:
        self.config = config or AugmentConfig()
        self.generator = torch.Generator().manual_seed(seed)

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * torch.rand(1, generator=self.generator).item()

    def _chance(self, prob: float) -> bool:
        return prob > 0 and torch.rand(1, generator=self.generator).item() < prob

    def __call__(self, wavs: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        out = wavs.clone()
        batch, n = out.shape
        for i in range(batch):
            x = out[i]
            if self._chance(cfg.reverb_prob):
                rir = _synthetic_rir(self._uniform(*cfg.rt60_s), self.generator)
                x = AF.fftconvolve(x, rir)[:n]
            if self._chance(cfg.noise_prob):
                if batch > 1 and self._chance(cfg.babble_share):
                    noise = out[(i + 1 + int(torch.randint(0, batch - 1, (1,), generator=self.generator))) % batch]
                else:
                    noise = torch.randn(n, generator=self.generator)
                snr = self._uniform(*cfg.snr_db)
                signal_power = x.pow(2).mean().clamp(min=1e-10)
                noise_power = noise.pow(2).mean().clamp(min=1e-10)
                x = x + noise * torch.sqrt(signal_power / (noise_power * 10 ** (snr / 10)))
            x = x * 10 ** (self._uniform(*cfg.gain_db) / 20)
            out[i] = x.clamp(-1.0, 1.0)
        if cfg.telephone_prob > 0:
            chosen = [i for i in range(batch) if self._chance(cfg.telephone_prob)]
            if chosen:
                out[chosen] = telephone(out[chosen])[:, :n]
        return out
