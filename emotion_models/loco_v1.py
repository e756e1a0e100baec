"""v1 (EmotionNet on fbank) by leave one corpus out, scored on the v2 protocol's windows.

    .venv/bin/python -m emotion_models.loco_v1 --data ../shared/data --epochs 10 --threads 1 \\
        --out emotion_models/results/v1_loco

For each class corpus (RAVDESS, EmoDB, TurEV, korean_operator) the v1 recipe
(``hparams/ecapa_small.yaml``: augmentation, 1-3 s crops, corpus x class balanced sampling, aux heads;
``train.fit``) trains on the three others (15% of their speakers as development, which picks the
epoch) and is scored on every window of the held-out corpus. The windows are those of
:mod:`emotion_models.encoder_cache` (each speaker's clips of one label joined with 0.25 s gaps, 2 s every
1 s; a stream under 2 s but over 1 s padded with silence; telephone = the whole stream through 8 kHz
mu-law), each window's fbank as the runtime cuts it from the stream's rows. UA, per-class recall, ECE
(v1's softmax: the runtime applies no temperature to v1). v1 keeps no per-call state, so the v2 table's
*mixed* and *single* call conditions are the same numbers by construction; both are written so the
summary has the v2 cells. BAVED (arousal only) is not used: the v1 recipe needs a class per clip.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emotion_models.augment import telephone
from emotion_models.corpora import CLASS_CORPORA, CLASSES, Utterance, read_corpora
from emotion_models.data import Clip, speaker_independent_split
from emotion_models.encoder_cache import HOP_S, SAMPLE_RATE, WINDOW_S, Stream, build_streams
from emotion_models.evaluate import metrics
from emotion_models.experiments_v2 import loco_row
from emotion_models.features_torch import TorchFbank
from emotion_models.model import EmotionNet, load_checkpoint, save_checkpoint
from emotion_models.train import LICENCE_NOTE, fit, load_hparams
from emotion_models.train_head import CHANNELS, CONDITIONS, expected_calibration_error
from emotion_runtime.features import DEFAULT_SPEC

__all__ = ["CELLS", "Windows", "clips_of", "evaluate_windows", "main", "summarise_loco", "window_probs", "windows_of"]

CELLS = tuple(f"{channel}/{condition}" for channel in CHANNELS for condition in ("mixed", "single"))
WINDOW = int(WINDOW_S * SAMPLE_RATE)
HOP = int(HOP_S * SAMPLE_RATE)
DEFAULT_HPARAMS = Path(__file__).parent / "hparams" / "ecapa_small.yaml"


@dataclass
class Windows:
    """The 2-s windows of labelled streams: window ``i`` is ``streams[stream[i]].wav[start[i]:start[i] + WINDOW]``."""

    streams: list[Stream]
    stream: np.ndarray  # [N] index into streams
    start: np.ndarray  # [N] first sample
    position: np.ndarray  # [N] window index inside its stream
    label: np.ndarray  # [N] class index
    speaker: np.ndarray  # [N] str
    corpus: np.ndarray  # [N] str

    def key(self, i: int) -> tuple[str, str, int, int]:
        """(corpus, speaker, class, position): the same window in an encoder cache."""
        return str(self.corpus[i]), str(self.speaker[i]), int(self.label[i]), int(self.position[i])


def windows_of(utterances: Sequence[Utterance]) -> Windows:
    """The windows of :mod:`emotion_models.encoder_cache` for the labelled utterances (same streams,
    same count: a stream under 1 s gives none, one of 1-2 s is padded to one window)."""
    streams: list[Stream] = []
    rows: list[tuple[int, int, int]] = []
    for stream in build_streams([u for u in utterances if u.label]):
        wav = stream.wav
        if len(wav) < WINDOW:
            if len(wav) < WINDOW // 2:
                continue
            wav = np.pad(wav, (0, WINDOW - len(wav)))
        index = len(streams)
        streams.append(Stream(wav, stream.label, stream.arousal, stream.speaker, stream.corpus))
        rows.extend((index, start, position) for position, start in enumerate(range(0, len(wav) - WINDOW + 1, HOP)))
    table = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    return Windows(
        streams,
        table[:, 0],
        table[:, 1],
        table[:, 2],
        np.asarray([CLASSES.index(str(streams[s].label)) for s in table[:, 0]], dtype=np.int64),
        np.asarray([streams[s].speaker for s in table[:, 0]]),
        np.asarray([streams[s].corpus for s in table[:, 0]]),
    )


def channel_wav(wav: np.ndarray, channel: str) -> np.ndarray:
    """The stream as heard on ``channel`` (telephone: the whole stream through it, as the cache does)."""
    if channel == "clean":
        return wav
    return telephone(torch.from_numpy(wav)[None])[0, : len(wav)].numpy().astype(np.float32)


@torch.inference_mode()
def window_probs(model: EmotionNet, windows: Windows, rows: np.ndarray, channel: str, batch: int = 64) -> np.ndarray:
    """Softmax [len(rows), C] of ``model`` on each window's fbank (rows cut from the stream's own frames)."""
    model.eval()
    fbank = TorchFbank()
    out = np.zeros((len(rows), len(CLASSES)), dtype=np.float32)
    for stream in np.unique(windows.stream[rows]):
        members = np.flatnonzero(windows.stream[rows] == stream)
        wav = torch.from_numpy(channel_wav(windows.streams[int(stream)].wav, channel))
        for first in range(0, len(members), batch):
            part = members[first : first + batch]
            chunks = torch.stack([wav[int(s) : int(s) + WINDOW] for s in windows.start[rows[part]]])
            logits, _, _ = model(fbank(chunks))
            out[part] = torch.softmax(logits, dim=1).numpy()
    return out


def evaluate_windows(model: EmotionNet, windows: Windows, rows: np.ndarray) -> dict[str, Any]:
    """UA, recall, confusion and ECE per channel; v1 has no per-call state, so mixed == single."""
    results: dict[str, Any] = {}
    for channel in CHANNELS:
        probs = window_probs(model, windows, rows, channel)
        entry = metrics(windows.label[rows].tolist(), probs.argmax(axis=1).tolist(), CLASSES)
        entry.update(ua=round(entry["ua"], 4), wa=round(entry["wa"], 4),
                     ece=round(expected_calibration_error(probs, windows.label[rows]), 4))  # fmt: skip
        for condition in CONDITIONS:
            results[f"{channel}/{condition}"] = entry
    return results


def summarise_loco(folds: dict[str, dict[str, Any]], mode: str = "none") -> dict[str, Any]:
    """The v2 table's row (``experiments_v2.loco_row``) for these folds, in the v2 summary's shape."""
    return {"modes": {mode: {**loco_row(folds), "folds": sorted(folds)}}, "chosen_by_loco_mean": mode}


def clips_of(utterances: Sequence[Utterance]) -> list[Clip]:
    """The labelled utterances as the v1 recipe's clips (already 16 kHz and silence-trimmed)."""
    return [Clip(u.wav, str(u.label), u.speaker, u.corpus, u.path) for u in utterances if u.label]


def recipe(hparams_path: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """The v1 hparams with the corpus folders unused (clips come from :mod:`emotion_models.corpora`)."""
    return load_hparams(hparams_path, {"data_folder_ravdess": "unused", "data_folder_emodb": "unused", **overrides})


def train_fold(
    hparams: dict[str, Any], clips: Sequence[Clip], test_corpus: str
) -> tuple[EmotionNet, dict[str, Any], list[Clip]]:
    """Train on every corpus but ``test_corpus`` (development speakers from the training corpora)."""
    source = [c for c in clips if c.corpus != test_corpus]
    train, dev = speaker_independent_split(source, float(hparams["split"].get("dev_fraction", 0.15)), int(hparams["seed"]))
    model: EmotionNet = hparams["model"]
    training = fit(model, train, dev, hparams, progress=False)
    training["dev_speakers"] = sorted({c.speaker for c in dev})
    training["train_clips"] = len(train)
    return model, training, train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--hparams", type=Path, default=DEFAULT_HPARAMS)
    parser.add_argument("--corpora", nargs="+", default=list(CLASS_CORPORA))
    parser.add_argument("--epochs", type=int, default=None, help="override number_of_epochs (the recipe: 40)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="no training: score this checkpoint on the windows of --corpora it was not trained on")
    args = parser.parse_args(argv)
    if args.checkpoint is not None:
        return _zero_shot(args, argv)
    overrides: dict[str, Any] = {"threads": args.threads, "progressbar": False, "output_folder": str(args.out)}
    if args.epochs:
        overrides["number_of_epochs"] = args.epochs
    torch.set_num_threads(args.threads)
    utterances = read_corpora(args.data, CLASS_CORPORA)
    clips, windows = clips_of(utterances), windows_of(utterances)
    print(f"[loco_v1] {len(clips)} clips, {len(windows.stream)} windows", file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    folds: dict[str, Any] = {}
    for corpus in args.corpora:
        started = time.monotonic()
        hparams = recipe(args.hparams, overrides)
        model, training, train = train_fold(hparams, clips, corpus)
        rows = np.flatnonzero(windows.corpus == corpus)
        test = evaluate_windows(model, windows, rows)
        training.pop("history", None)
        folds[corpus] = {"training": training, "test_windows": int(len(rows)), "test": test,
                         "train_s": round(time.monotonic() - started, 1)}  # fmt: skip
        save_checkpoint(args.out / corpus / "model.ckpt", model, {
            "labels": list(CLASSES), "fbank": DEFAULT_SPEC.to_dict(), "sample_rate": DEFAULT_SPEC.sample_rate,
            "training_data": sorted({c.corpus for c in train}), "licence": LICENCE_NOTE,
        })  # fmt: skip
        print(f"[loco_v1] -> {corpus}: " + ", ".join(
            f"{ch} UA {test[f'{ch}/mixed']['ua']:.3f} angry {test[f'{ch}/mixed']['recall'].get('angry', 0):.2f}"
            for ch in CHANNELS) + f" ({folds[corpus]['train_s']:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
        (args.out / "loco.json").write_text(json.dumps({"none": {"folds": folds}}, indent=1) + "\n")
    summary = {**summarise_loco(folds), "hparams": str(args.hparams), "overrides": {k: v for k, v in overrides.items() if k != "output_folder"},
               "command": " ".join(["python -m emotion_models.loco_v1", *(argv if argv is not None else sys.argv[1:])])}  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary["modes"], indent=1))
    return 0


def _zero_shot(args: argparse.Namespace, argv: list[str] | None) -> int:
    """An existing model (e.g. the shipped v1) on every window of the corpora it never heard."""
    torch.set_num_threads(args.threads)
    model, meta = load_checkpoint(args.checkpoint)
    heard = {str(c).split()[0].lower() for c in meta.get("training_data", [])}
    corpora = [c for c in args.corpora if c not in heard]
    windows = windows_of(read_corpora(args.data, corpora))
    folds = {c: {"test": evaluate_windows(model, windows, np.flatnonzero(windows.corpus == c)),
                 "test_windows": int((windows.corpus == c).sum())} for c in corpora}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {**summarise_loco(folds), "checkpoint": str(args.checkpoint), "training_data": meta.get("training_data"),
               "per_corpus": folds, "note": "one model, never trained on these corpora (not a LOCO mean over all four)",
               "command": " ".join(["python -m emotion_models.loco_v1", *(argv if argv is not None else sys.argv[1:])])}  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary["modes"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
