"""In-memory clip sets, speaker-independent splits and batching for training.

The corpora are small (a few thousand short clips), so every waveform is decoded once,
resampled to 16 kHz, trimmed of leading/trailing silence and kept in RAM; epochs then cost only
the network. Training batches are random 1-3 s crops (one length per batch, so no padding and no
mask are needed: the model normalises and pools over the whole window, as the runtime does).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from emotion_models.augment import SAMPLE_RATE, random_crop, speed_perturb, trim_silence
from emotion_models.labels import arousal_target, valence_target
from emotion_models.prepare import ManifestRow
from emotune.errors import DataError

__all__ = [
    "Clip",
    "ClipBatch",
    "load_audio",
    "load_clips",
    "split_by_speakers",
    "speaker_independent_split",
    "ClipDataset",
    "CropCollate",
    "train_loader",
    "eval_loader",
]


@dataclass
class Clip:
    wav: np.ndarray
    label: str
    speaker: str
    corpus: str
    path: str


@dataclass
class ClipBatch:
    wavs: torch.Tensor  # [B, samples]
    labels: torch.Tensor  # [B] class index
    arousal: torch.Tensor  # [B] target, NaN = no target
    valence: torch.Tensor  # [B] target, NaN = no target
    corpora: list[str]

    def to(self, device: str | torch.device) -> ClipBatch:
        return ClipBatch(
            self.wavs.to(device), self.labels.to(device), self.arousal.to(device),
            self.valence.to(device), self.corpora,
        )  # fmt: skip


def load_audio(path: str) -> np.ndarray:
    """Decode any sample rate / channel count to mono float32 at 16 kHz."""
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise DataError(f"cannot read audio {path}: {exc}") from exc
    mono = data.mean(axis=1)
    if rate != SAMPLE_RATE:
        mono = AF.resample(torch.from_numpy(mono), rate, SAMPLE_RATE).numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)


def load_clips(
    rows: Sequence[ManifestRow], trim: bool = True, progress: Callable[[int, int], None] | None = None
) -> list[Clip]:
    clips = []
    for i, row in enumerate(rows):
        wav = load_audio(row.path)
        if trim:
            wav = trim_silence(wav)
        clips.append(Clip(wav, row.label, row.speaker, row.corpus, row.path))
        if progress is not None:
            progress(i + 1, len(rows))
    return clips


def split_by_speakers(clips: Sequence[Clip], speakers: Sequence[str]) -> tuple[list[Clip], list[Clip]]:
    """(clips of other speakers, clips of ``speakers``)."""
    chosen = set(speakers)
    return [c for c in clips if c.speaker not in chosen], [c for c in clips if c.speaker in chosen]


def speaker_independent_split(
    clips: Sequence[Clip], fraction: float, seed: int = 0
) -> tuple[list[Clip], list[Clip]]:
    """Hold out about ``fraction`` of the speakers (at least one) of every corpus."""
    held: list[str] = []
    rng = random.Random(seed)
    for corpus in sorted({c.corpus for c in clips}):
        speakers = sorted({c.speaker for c in clips if c.corpus == corpus})
        if len(speakers) < 2:
            continue
        rng.shuffle(speakers)
        n = min(len(speakers) - 1, max(1, round(len(speakers) * fraction)))
        held.extend(speakers[:n])
    if not held:
        raise DataError("a speaker-independent split needs at least two speakers")
    return split_by_speakers(clips, held)


class ClipDataset(Dataset[Clip]):
    def __init__(self, clips: Sequence[Clip]) -> None:
        self.clips = list(clips)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> Clip:
        return self.clips[index]


def _targets(clips: Sequence[Clip], classes: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    index = {c: i for i, c in enumerate(classes)}
    labels = torch.tensor([index[c.label] for c in clips], dtype=torch.long)
    arousal = torch.tensor([a if (a := arousal_target(c.label)) is not None else float("nan") for c in clips])
    valence = torch.tensor([v if (v := valence_target(c.label)) is not None else float("nan") for c in clips])
    return labels, arousal, valence


class CropCollate:
    """Training collate: optional speed perturbation, then one random crop length per batch."""

    def __init__(
        self, classes: Sequence[str], crop_s: tuple[float, float], speed_prob: float,
        speeds: Sequence[float], seed: int = 0,
    ) -> None:  # fmt: skip
        self.classes = list(classes)
        self.crop_s = crop_s
        self.speed_prob = speed_prob
        self.speeds = list(speeds)
        self.rng = np.random.default_rng(seed)

    def __call__(self, clips: list[Clip]) -> ClipBatch:
        length = int(self.rng.uniform(*self.crop_s) * SAMPLE_RATE)
        wavs = []
        for clip in clips:
            wav = clip.wav
            if self.speeds and self.rng.random() < self.speed_prob:
                wav = speed_perturb(wav, float(self.rng.choice(self.speeds)))
            wavs.append(random_crop(wav, length, self.rng))
        labels, arousal, valence = _targets(clips, self.classes)
        return ClipBatch(torch.from_numpy(np.stack(wavs)), labels, arousal, valence, [c.corpus for c in clips])


class _WholeClipCollate:
    """Evaluation collate: one whole clip per batch (no crop, no padding)."""

    def __init__(self, classes: Sequence[str], channel: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
        self.classes = list(classes)
        self.channel = channel

    def __call__(self, clips: list[Clip]) -> ClipBatch:
        if len(clips) != 1:
            raise ValueError("evaluation batches hold one clip")
        wav = torch.from_numpy(clips[0].wav).unsqueeze(0)
        if self.channel is not None:
            wav = self.channel(wav)[:, : wav.shape[1]]
        labels, arousal, valence = _targets(clips, self.classes)
        return ClipBatch(wav, labels, arousal, valence, [clips[0].corpus])


def balanced_weights(clips: Sequence[Clip]) -> list[float]:
    """Sampling weights giving every (corpus, class) pair the same share of an epoch."""
    counts = Counter((c.corpus, c.label) for c in clips)
    return [1.0 / counts[(c.corpus, c.label)] for c in clips]


def train_loader(
    clips: Sequence[Clip], classes: Sequence[str], batch_size: int, crop_s: tuple[float, float],
    speed_prob: float, speeds: Sequence[float], balanced: bool, seed: int,
) -> DataLoader[Clip]:  # fmt: skip
    collate = CropCollate(classes, crop_s, speed_prob, speeds, seed)
    generator = torch.Generator().manual_seed(seed)
    if balanced:
        sampler = WeightedRandomSampler(balanced_weights(clips), len(clips), replacement=True, generator=generator)
        return DataLoader(ClipDataset(clips), batch_size=batch_size, sampler=sampler, collate_fn=collate, drop_last=True)
    return DataLoader(
        ClipDataset(clips), batch_size=batch_size, shuffle=True, generator=generator, collate_fn=collate,
        drop_last=len(clips) > batch_size,
    )  # fmt: skip


def eval_loader(
    clips: Sequence[Clip], classes: Sequence[str], channel: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> DataLoader[Clip]:
    return DataLoader(ClipDataset(clips), batch_size=1, shuffle=False, collate_fn=_WholeClipCollate(classes, channel))


def iterate(loader: DataLoader[Clip]) -> Iterator[ClipBatch]:
    yield from loader
