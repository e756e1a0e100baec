"""Encoder states of 2-s windows, computed once per corpus and channel and cached on disk.

The pretrained encoder is frozen, so a head trains on cached encoder outputs: each corpus is
encoded once per channel (clean, 8 kHz mu-law telephone) instead of once per epoch.

What a window is: for every speaker and label (or BAVED arousal level) the speaker's clips are
silence-trimmed and joined with 0.25 s gaps into one stream; the stream is cut into 2-s windows
every second, as the runtime labels a call. So a window never mixes two labels, and short clips
(TurEV words of ~0.6 s) fill a window together, as consecutive words of one caller would. Each
window runs through the same ``encoder.onnx`` and the same numpy Whisper log-mel as the runtime
(``emotion_runtime``); states are mean-pooled over blocks of ``pool`` encoder frames (100 frames
-> 10 at ``pool=10``, 200 ms each) and stored as float16.

``--speed-perturb 0.9 1.1`` adds copies of every stream played at those speeds (tempo and pitch
together), after the originals; ``WindowSet.speed`` marks them, and every score uses the originals only
(``WindowSet.original``): the copies train.

    .venv/bin/python -m emotion_models.encoder_cache --encoder models/encoders/smart-turn-v3.2/encoder.onnx \\
        --data ../shared/data --out results/cache/smart-turn
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from emotion_models.augment import speed_perturb, telephone
from emotion_models.corpora import CLASSES, Utterance, read_corpora
from emotion_runtime.encoder import (
    ENCODER_UNIT_VARIANCE,
    EncoderSession,
    encoder_rows,
    pool_states,
    stream_windows,
)
from emotune.config import check_speed_perturb

__all__ = ["LayerCollector", "WindowSet", "build_streams", "encode_windows", "load_window_set", "main", "with_speed_copies"]

SAMPLE_RATE = 16000
GAP_S = 0.25
WINDOW_S = 2.0
HOP_S = 1.0
CHANNELS = ("clean", "telephone")


@dataclass
class Stream:
    """One speaker's clips of one label, joined."""

    wav: np.ndarray
    label: str | None
    arousal: float | None
    speaker: str
    corpus: str
    speed: float = 1.0  # playback speed of a training copy; 1.0 = the clips as recorded


@dataclass
class WindowSet:
    """Cached windows of one encoder and channel (arrays aligned on the first axis)."""

    states: np.ndarray  # [N, L+1, P, D] float16
    label: np.ndarray  # [N] class index, -1 = no class (arousal-only corpus)
    arousal: np.ndarray  # [N] target 0..1, NaN = none
    speaker: np.ndarray  # [N] str
    corpus: np.ndarray  # [N] str
    stream: np.ndarray  # [N] index of the (speaker, label) stream
    position: np.ndarray  # [N] window index inside its stream
    speed: np.ndarray | None = None  # [N] float32 playback speed of a training copy, 1.0 = original (None: all original)

    def __post_init__(self) -> None:
        if self.speed is None:
            self.speed = np.ones(len(self.label), dtype=np.float32)

    @property
    def original(self) -> np.ndarray:
        """[N] bool: windows of the clips as recorded (what every score uses; speed copies only train)."""
        assert self.speed is not None
        return self.speed == 1.0

    def subset(self, mask: np.ndarray) -> WindowSet:
        return WindowSet(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))

    @property
    def pooled(self) -> np.ndarray:
        """[N, L+1, D] float32: each window's mean state per layer (what per-call adaptation tracks)."""
        return self.states.astype(np.float32).mean(axis=2)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **{f: getattr(self, f) for f in self.__dataclass_fields__})
        tmp.replace(path)


@dataclass
class LayerCollector:
    """One encoder layer's states at full frame rate, collected window by window by :func:`encode_windows`."""

    layer: int  # index into the encoder's hidden states (0 = the embeddings)
    frames: list[np.ndarray] = field(default_factory=list)  # per window [T, D] float16, unpooled


def load_window_set(path: Path) -> WindowSet:
    with np.load(path, allow_pickle=False) as data:
        return WindowSet(*(data.get(f) for f in WindowSet.__dataclass_fields__))  # pre-speed caches: all original


def with_speed_copies(streams: Sequence[Stream], speeds: Sequence[float]) -> list[Stream]:
    """``streams`` then, per speed other than 1.0, a copy of each played at that speed (their stream
    indices follow the originals', so a copy is its own call)."""
    copies = [replace(st, wav=speed_perturb(st.wav, f), speed=f) for f in check_speed_perturb(speeds) for st in streams]
    return [*streams, *copies]


def build_streams(utterances: Sequence[Utterance]) -> list[Stream]:
    groups: dict[tuple[str, str, str | None, float | None], list[Utterance]] = defaultdict(list)
    for utt in utterances:
        groups[(utt.corpus, utt.speaker, utt.label, None if utt.label else utt.arousal)].append(utt)
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32)
    streams = []
    for (corpus, speaker, label, _), members in sorted(groups.items(), key=lambda kv: str(kv[0])):
        parts: list[np.ndarray] = []
        for utt in members:
            parts.extend([utt.wav, gap])
        streams.append(Stream(np.concatenate(parts), label, members[0].arousal, speaker, corpus))
    return streams


def _windows(wav: np.ndarray, unit_variance: bool) -> list[np.ndarray]:
    """The stream's log10 mel rows computed once, cut into 2-s windows every second (the runtime's way)."""
    size = int(WINDOW_S * SAMPLE_RATE)
    if len(wav) < size:
        if len(wav) < int(WINDOW_S * SAMPLE_RATE) // 2:
            return []  # under 1 s of speech: the runtime would not label it either
        wav = np.pad(wav, (0, size - len(wav)))  # the pause after a short utterance
    return stream_windows(encoder_rows(wav), unit_variance, int(WINDOW_S * 100), int(HOP_S * 100))


def encode_windows(
    streams: Sequence[Stream], encoder: EncoderSession, channel: str, unit_variance: bool, pool: int = 10, progress: bool = True,
    collect: LayerCollector | None = None,
) -> WindowSet:
    """Every window of ``streams`` on ``channel``; with ``collect``, its layer's states at full frame
    rate ([T, D] float16, unpooled) are appended to ``collect.frames`` window by window (the input of
    encoder blocks tuned on top of it: :mod:`emotion_models.tune_top_block`)."""
    states, labels, arousal, speakers, corpora, stream_ids, positions, speeds = [], [], [], [], [], [], [], []
    total = sum(max(1, int(len(s.wav) / SAMPLE_RATE - WINDOW_S + HOP_S)) for s in streams)
    done, started = 0, time.monotonic()
    for index, stream in enumerate(streams):
        wav = stream.wav
        if channel == "telephone":
            wav = telephone(torch.from_numpy(wav)[None]).numpy()[0].astype(np.float32)
        windows = _windows(wav, unit_variance)
        if not windows:
            continue
        for position, mel in enumerate(windows):
            hidden = encoder.run(mel)
            states.append(pool_states(hidden, pool).astype(np.float16))
            if collect is not None:
                collect.frames.append(hidden[collect.layer, 0].astype(np.float16))
            labels.append(CLASSES.index(stream.label) if stream.label else -1)
            arousal.append(np.nan if stream.arousal is None else stream.arousal)
            speakers.append(stream.speaker)
            corpora.append(stream.corpus)
            stream_ids.append(index)
            positions.append(position)
            speeds.append(stream.speed)
        done += len(windows)
        if progress and (index % 20 == 0 or index == len(streams) - 1):
            rate = done / max(time.monotonic() - started, 1e-6)
            print(
                f"  [{channel}] {done}/{total} windows, {rate:.1f}/s, eta {(total - done) / max(rate, 1e-6):.0f} s",
                file=sys.stderr,
                flush=True,
            )
    return WindowSet(
        np.stack(states),
        np.asarray(labels, dtype=np.int64),
        np.asarray(arousal, dtype=np.float32),
        np.asarray(speakers),
        np.asarray(corpora),
        np.asarray(stream_ids, dtype=np.int64),
        np.asarray(positions, dtype=np.int64),
        np.asarray(speeds, dtype=np.float32),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--channels", nargs="+", default=list(CHANNELS), choices=CHANNELS)
    parser.add_argument("--corpora", nargs="+", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--speed-perturb", type=float, nargs="*", default=[],
                        help="also encode copies of every stream at these playback speeds (training only)")
    parser.add_argument("--unit-variance", action=argparse.BooleanOptionalAction, default=None,
                        help="zero-mean unit-variance waveform per window (default: what the encoder was trained with)")
    args = parser.parse_args(argv)
    if args.unit_variance is None:
        args.unit_variance = ENCODER_UNIT_VARIANCE[args.encoder.parent.name]
    utterances = read_corpora(args.data, args.corpora) if args.corpora else read_corpora(args.data)
    streams = with_speed_copies(build_streams(utterances), args.speed_perturb)
    print(f"{len(utterances)} clips, {len(streams)} streams (speed copies included)", file=sys.stderr)
    encoder = EncoderSession.load(args.encoder, intra_op_threads=args.threads)
    for channel in args.channels:
        target = args.out / f"{channel}.npz"
        if target.is_file():
            print(f"{target} exists, kept", file=sys.stderr)
            continue
        encode_windows(streams, encoder, channel, args.unit_variance, pool=args.pool).save(target)
        print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
