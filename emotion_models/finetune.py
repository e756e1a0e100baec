"""Fine-tune a shipped checkpoint on an operator's own labelled calls (``path,label[,speaker]`` CSV).

Acted corpora do not sound like real callers; a few hundred in-domain clips lift accuracy far
more than any recipe change (see ../shared/FACTS.md). Audio of any sample rate (8 kHz telephone
included) is resampled to 16 kHz. Validation holds out whole speakers, so the reported gain is
for unseen callers; without a speaker column every file is its own "speaker" and the report says
the split is not speaker-independent.

    .venv/bin/python -m emotion_models.finetune my_calls.csv models/emotune-ser-v1/model.ckpt out/ --epochs 10
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from emotion_models.augment import AugmentConfig
from emotion_models.data import load_clips, speaker_independent_split
from emotion_models.evaluate import evaluate_clips, plot_confusion
from emotion_models.model import load_checkpoint, save_checkpoint
from emotion_models.prepare import SourceSpec, build_manifest, summarise, write_manifest
from emotion_models.train import fit
from emotune.errors import DataError

__all__ = ["run", "main"]


def run(
    manifest_csv: str | Path,
    base_checkpoint: str | Path,
    output_dir: str | Path,
    epochs: int = 10,
    *,
    lr: float = 5e-4,
    batch_size: int = 16,
    dev_fraction: float = 0.2,
    label_map: Mapping[str, str | None] | None = None,
    min_examples_per_class: int = 3,
    telephone_prob: float = 0.3,
    seed: int = 0,
    threads: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune ``base_checkpoint`` on ``manifest_csv``; writes ``model.ckpt`` + ``finetune_report.json``."""
    if epochs < 1:
        raise DataError(f"epochs must be >= 1, got {epochs}")
    if not 0.0 < dev_fraction < 1.0:
        raise DataError(f"dev_fraction must be between 0 and 1, got {dev_fraction}")
    output_dir = Path(output_dir)
    model, meta = load_checkpoint(base_checkpoint)
    classes: list[str] = list(meta["labels"])
    rows = build_manifest(
        [SourceSpec("csv", Path(manifest_csv), dict(label_map or {}))], classes, min_examples_per_class
    )
    write_manifest(rows, output_dir / "manifest.csv")
    clips = load_clips(rows)
    speaker_independent = not all(c.speaker.startswith("file:") for c in clips)
    train, dev = speaker_independent_split(clips, dev_fraction, seed)
    missing = sorted(set(classes) - {c.label for c in train})
    if missing:
        raise DataError(f"the training part of the split has no examples of: {', '.join(missing)}")

    before = evaluate_clips(model, dev, classes)
    torch.manual_seed(seed)
    hparams: dict[str, Any] = {
        "classes": classes,
        "seed": seed,
        "threads": threads,
        "batch_size": min(batch_size, len(train)),
        "crop_min_s": 1.0,
        "crop_max_s": 3.0,
        "balanced_sampling": True,
        "augment": AugmentConfig(telephone_prob=telephone_prob, noise_prob=0.3, reverb_prob=0.2),
        "opt_class": functools.partial(torch.optim.AdamW, lr=lr, weight_decay=0.01),
        "lr": lr,
        "warmup_epochs": 0,
        "number_of_epochs": epochs,
        "label_smoothing": 0.1,
        "arousal_weight": 0.5,
        "valence_weight": 0.25,
    }
    started = time.time()
    training = fit(model, train, dev, hparams, progress)
    after = evaluate_clips(model, dev, classes)
    plot_confusion(after["clean"]["confusion"], classes, f"fine-tuned, validation: UA {after['clean']['ua']:.1%}",
                   output_dir / "confusion_finetuned.png")  # fmt: skip

    new_meta = {k: v for k, v in meta.items() if k != "model_config"}
    new_meta.update(
        training_data=[*meta.get("training_data", []), f"fine-tuned on {Path(manifest_csv).name}"],
        base_checkpoint=str(base_checkpoint),
        results={"validation_clean_ua": after["clean"]["ua"], "validation_telephone_ua": after["telephone"]["ua"]},
    )
    checkpoint = save_checkpoint(output_dir / "model.ckpt", model, new_meta)
    report = {
        "manifest": str(manifest_csv),
        "base_checkpoint": str(base_checkpoint),
        "checkpoint": str(checkpoint),
        "data": summarise(rows),
        "speaker_independent_validation": speaker_independent,
        "train": {"clips": len(train), "speakers": sorted({c.speaker for c in train})},
        "validation": {"clips": len(dev), "speakers": sorted({c.speaker for c in dev})},
        "note": "the validation set also chose the best epoch, so 'after' is slightly optimistic",
        "before": {ch: {"ua": e["ua"], "wa": e["wa"], "recall": e["recall"]} for ch, e in before.items()},
        "after": {ch: {"ua": e["ua"], "wa": e["wa"], "recall": e["recall"]} for ch, e in after.items()},
        "training": {**training, "wall_seconds": round(time.time() - started, 1)},
    }
    (output_dir / "finetune_report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest_csv", type=Path)
    parser.add_argument("base_checkpoint", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    report = run(args.manifest_csv, args.base_checkpoint, args.output_dir, args.epochs, lr=args.lr, threads=args.threads)
    for stage in ("before", "after"):
        print(f"{stage}: " + ", ".join(f"{ch} UA {e['ua']:.1%}" for ch, e in report[stage].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
