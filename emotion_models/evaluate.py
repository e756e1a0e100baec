"""Metrics (UA, WA, per-class recall, confusion) and evaluation of a model on clips.

UA (unweighted accuracy) = mean per-class recall: the fair figure when classes are unbalanced.
WA (weighted accuracy) = plain accuracy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emotion_models.augment import telephone
from emotion_models.data import Clip, eval_loader
from emotion_models.features_torch import TorchFbank
from emotion_models.model import EmotionNet

__all__ = ["metrics", "predict", "predict_windows", "evaluate_clips", "evaluate_windows", "plot_confusion", "CHANNELS"]

CHANNELS: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {
    "clean": None,
    "telephone": telephone,
}


def metrics(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> dict[str, Any]:
    n = len(classes)
    confusion = np.zeros((n, n), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        confusion[t, p] += 1
    support = confusion.sum(axis=1)
    present = support > 0
    recall = np.divide(np.diag(confusion), support, out=np.zeros(n), where=present)
    total = int(confusion.sum())
    return {
        "ua": float(recall[present].mean()) if present.any() else 0.0,
        "wa": float(np.trace(confusion) / total) if total else 0.0,
        "recall": {c: round(float(r), 4) for c, r, ok in zip(classes, recall, present, strict=True) if ok},
        "confusion": confusion.tolist(),
        "n": total,
    }


@torch.inference_mode()
def predict(
    model: EmotionNet, clips: Sequence[Clip], classes: Sequence[str],
    channel: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[list[int], list[int]]:  # fmt: skip
    model.eval()
    fbank = TorchFbank()
    y_true, y_pred = [], []
    for batch in eval_loader(clips, classes, channel):
        logits, _, _ = model(fbank(batch.wavs))
        y_true.append(int(batch.labels[0]))
        y_pred.append(int(logits.argmax(dim=1)[0]))
    return y_true, y_pred


@torch.inference_mode()
def predict_windows(
    model: EmotionNet, clips: Sequence[Clip], classes: Sequence[str], window_s: float = 2.0, hop_s: float = 1.0,
    channel: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[list[int], list[int]]:  # fmt: skip
    """One prediction per streaming window (as the runtime labels a call), each scored against the clip label."""
    model.eval()
    fbank = TorchFbank()
    window, hop = int(window_s * 16000), int(hop_s * 16000)
    y_true, y_pred = [], []
    for batch in eval_loader(clips, classes, channel):
        wav = batch.wavs
        starts = list(range(0, max(1, wav.shape[1] - window + 1), hop))
        chunks = torch.cat([wav[:, s : s + window] for s in starts]) if wav.shape[1] >= window else wav
        logits, _, _ = model(fbank(chunks))
        y_pred.extend(logits.argmax(dim=1).tolist())
        y_true.extend([int(batch.labels[0])] * logits.shape[0])
    return y_true, y_pred


def evaluate_windows(
    model: EmotionNet, clips: Sequence[Clip], classes: Sequence[str], window_s: float = 2.0, hop_s: float = 1.0
) -> dict[str, dict[str, Any]]:
    """Window-level metrics (2-s windows, 1-s hop by default) on clean and telephone audio."""
    return {
        name: metrics(*predict_windows(model, clips, classes, window_s, hop_s, CHANNELS[name]), classes)
        for name in ("clean", "telephone")
    }


def evaluate_clips(
    model: EmotionNet, clips: Sequence[Clip], classes: Sequence[str], channels: Sequence[str] = ("clean", "telephone")
) -> dict[str, dict[str, Any]]:
    """Metrics per channel, overall and per corpus."""
    results: dict[str, dict[str, Any]] = {}
    for name in channels:
        y_true, y_pred = predict(model, clips, classes, CHANNELS[name])
        entry = metrics(y_true, y_pred, classes)
        per_corpus = {}
        for corpus in sorted({c.corpus for c in clips}):
            idx = [i for i, c in enumerate(clips) if c.corpus == corpus]
            sub = metrics([y_true[i] for i in idx], [y_pred[i] for i in idx], classes)
            per_corpus[corpus] = {"ua": sub["ua"], "wa": sub["wa"], "n": sub["n"]}
        entry["per_corpus"] = per_corpus
        results[name] = entry
    return results


def plot_confusion(confusion: Sequence[Sequence[int]], classes: Sequence[str], title: str, path: str | Path) -> Path:
    """Row-normalised confusion matrix with counts, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(confusion, dtype=float)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{rates[i, j]:.0%}\n({int(matrix[i, j])})", ha="center", va="center",
                    color="white" if rates[i, j] > 0.5 else "black", fontsize=8)  # fmt: skip
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """Evaluate a checkpoint on speakers of the shared corpora, per clip and per streaming window."""
    import argparse
    import json

    from emotion_models.data import load_clips
    from emotion_models.model import load_checkpoint
    from emotion_models.prepare import build_manifest

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="folder holding ravdess/ and emodb/")
    parser.add_argument("--speakers", nargs="+", required=True, help="e.g. ravdess_19 emodb_03")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, meta = load_checkpoint(args.checkpoint)
    classes = meta["labels"]
    sources = [{"kind": "ravdess", "path": args.data / "ravdess"}, {"kind": "emodb", "path": args.data / "emodb"}]
    rows = [r for r in build_manifest(sources, classes) if r.speaker in set(args.speakers)]
    clips = load_clips(rows)
    report: dict[str, Any] = {
        "checkpoint": str(args.checkpoint),
        "speakers": sorted({c.speaker for c in clips}),
        "clips": len(clips),
        "per_clip": {ch: {k: e[k] for k in ("ua", "wa", "recall", "n")} for ch, e in evaluate_clips(model, clips, classes).items()},
        "per_window_2s_hop_1s": {ch: {k: e[k] for k in ("ua", "wa", "recall", "n")}
                                 for ch, e in evaluate_windows(model, clips, classes).items()},  # fmt: skip
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    for level in ("per_clip", "per_window_2s_hop_1s"):
        print(level, {ch: round(e["ua"], 4) for ch, e in report[level].items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
