"""A v1-sized student (EmotionNet on fbank) distilled from a v2 teacher, by leave one corpus out.

    .venv/bin/python -m emotion_models.distill emotion_models/hparams/student_distill.yaml \\
        --data ../shared/data --out emotion_models/results/student_loco --threads 1

The teacher is the v2 smart-turn encoder + head; its encoder states of every 2-s window are cached
(:mod:`emotion_models.encoder_cache`), so its soft labels cost one head pass per window. For each held-out
corpus a teacher head is trained by :mod:`emotion_models.train_head` on the other corpora only (+ BAVED,
as for the v2 LOCO rows): the teacher never heard the corpus the student is scored on. The student is
the v1 network with the v1 augmentation and optimiser (``v1_hparams``), trained on the same windows of
the training corpora (window ``i`` here is window ``i`` of the cache: same streams, same positions),
with :class:`DistillBrain`'s loss: ``kd_weight`` x T^2 x KL toward the teacher's tempered distribution +
(1 - ``kd_weight``) x v1's own loss on the hard label. Development speakers (15% of each training corpus,
as for v1) pick the epoch by UA on hard labels. Scored exactly as :mod:`emotion_models.loco_v1`.
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
import speechbrain as sb
import torch
import torch.nn.functional as F
import yaml
from hyperpyyaml import load_hyperpyyaml

from emotion_models.augment import WaveAugmenter
from emotion_models.corpora import CLASS_CORPORA, CLASSES, read_corpora
from emotion_models.data import (
    Clip,
    ClipBatch,
    ClipDataset,
    _targets,
    balanced_weights,
    eval_loader,
    speaker_independent_split,
)
from emotion_models.features_torch import TorchFbank
from emotion_models.loco_v1 import WINDOW, Windows, evaluate_windows, recipe, summarise_loco, windows_of
from emotion_models.model import EmotionNet, save_checkpoint
from emotion_models.train import LICENCE_NOTE, EmotionBrain
from emotion_models.train_head import (
    TrainingData,
    call_orders,
    evaluate,
    load_recipe,
    load_training_data,
    offsets_for,
    predict,
)
from emotion_models.train_head import run as train_head
from emotion_runtime.features import DEFAULT_SPEC
from emotune.errors import DataError

__all__ = ["DistillBatch", "DistillBrain", "align", "distill_loss", "main", "soft_targets", "teacher_probs"]


@dataclass
class DistillBatch(ClipBatch):
    teacher: torch.Tensor  # [B, C] the teacher's distribution for each window

    def to(self, device: str | torch.device) -> DistillBatch:
        base = ClipBatch.to(self, device)
        return DistillBatch(base.wavs, base.labels, base.arousal, base.valence, base.corpora, self.teacher.to(device))


def soft_targets(teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """The teacher's distribution sharpened or softened by ``temperature`` (softmax(log p / T))."""
    return torch.softmax(torch.log(teacher.clamp(min=1e-8)) / temperature, dim=1)


def distill_loss(logits: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 x KL(teacher_T || student_T), averaged over the batch (Hinton et al.'s scaling)."""
    log_student = F.log_softmax(logits / temperature, dim=1)
    return F.kl_div(log_student, soft_targets(teacher, temperature), reduction="batchmean") * temperature**2


class DistillBrain(EmotionBrain):
    """EmotionBrain (forward: augment -> fbank -> net; epoch selection) with the distillation objective."""

    def compute_objectives(
        self, predictions: tuple[torch.Tensor, ...], batch: ClipBatch, stage: sb.Stage
    ) -> torch.Tensor:
        hard = super().compute_objectives(predictions, batch, stage)
        if stage != sb.Stage.TRAIN or not isinstance(batch, DistillBatch):
            return hard  # development: v1's loss, UA on the hard labels
        weight = float(self.hparams.kd_weight)
        kd = distill_loss(predictions[0], batch.teacher.to(self.device), float(self.hparams.kd_temperature))
        return weight * kd + (1.0 - weight) * hard


class _WindowCollate:
    """Training batches: whole 2-s windows (fixed length) with their soft targets."""

    def __init__(self, teacher: np.ndarray, classes: Sequence[str]) -> None:
        self.teacher, self.classes = teacher, list(classes)

    def __call__(self, clips: list[Clip]) -> DistillBatch:
        labels, arousal, valence = _targets(clips, self.classes)
        rows = [int(c.path) for c in clips]
        return DistillBatch(
            torch.from_numpy(np.stack([c.wav for c in clips])), labels, arousal, valence,
            [c.corpus for c in clips], torch.from_numpy(self.teacher[rows]),
        )  # fmt: skip


def window_clips(windows: Windows, rows: np.ndarray) -> list[Clip]:
    """Each window as a Clip (a view of its stream; ``path`` = the window's row)."""
    return [
        Clip(windows.streams[int(windows.stream[r])].wav[int(windows.start[r]) : int(windows.start[r]) + WINDOW],
             CLASSES[int(windows.label[r])], str(windows.speaker[r]), str(windows.corpus[r]), str(int(r)))
        for r in rows
    ]  # fmt: skip


def align(windows: Windows, cache: TrainingData) -> np.ndarray:
    """Row of the cache holding each window (same corpus, speaker, class, position); DataError if any is missing."""
    meta = cache.meta
    where = {
        (str(c), str(s), int(label), int(p)): i
        for i, (c, s, label, p) in enumerate(zip(meta.corpus, meta.speaker, meta.label, meta.position, strict=True))
        if label >= 0
    }
    missing = [windows.key(i) for i in range(len(windows.stream)) if windows.key(i) not in where]
    if missing:
        raise DataError(f"{len(missing)} windows are not in the encoder cache (first: {missing[0]}): rebuild the cache")
    return np.asarray([where[windows.key(i)] for i in range(len(windows.stream))], dtype=np.int64)


def teacher_probs(head: Any, spec: Any, cache: TrainingData, rows: np.ndarray, channels: Sequence[str]) -> np.ndarray:
    """The teacher's untempered distribution on cache ``rows``, averaged over ``channels``."""
    meta = cache.meta
    out = []
    for channel in channels:
        ws = cache.windows[channel]
        offsets = offsets_for(spec, ws.pooled, call_orders(meta, rows, "single"), meta.label)
        probs, _ = predict(head, ws.states[rows], offsets[rows])
        out.append(probs)
    return np.mean(out, axis=0).astype(np.float32)


def fit_student(
    model: EmotionNet, train: Sequence[Clip], dev: Sequence[Clip], teacher: np.ndarray, hparams: dict[str, Any],
    kd: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """Train ``model`` in place (ends with the best-development-UA weights), as ``train.fit`` does for v1."""
    classes = list(hparams["classes"])
    sampler = torch.utils.data.WeightedRandomSampler(
        balanced_weights(train), int(kd["draws_per_epoch"]), replacement=True,
        generator=torch.Generator().manual_seed(int(hparams["seed"])),
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(
        ClipDataset(train), batch_size=hparams["batch_size"], sampler=sampler, collate_fn=_WindowCollate(teacher, classes),
        drop_last=True,
    )  # fmt: skip
    state: dict[str, Any] = {"history": [], "best": {}}
    brain = DistillBrain(
        modules={"model": model, "fbank": TorchFbank()},
        opt_class=hparams["opt_class"],
        hparams={
            "augmenter": WaveAugmenter(hparams["augment"], seed=hparams["seed"]),
            "classes": classes,
            **{k: hparams[k] for k in ("label_smoothing", "arousal_weight", "valence_weight", "lr", "warmup_epochs")},
            "number_of_epochs": int(kd["number_of_epochs"]),
            "kd_weight": kd["kd_weight"],
            "kd_temperature": kd["kd_temperature"],
            **state,
        },
        run_opts={"device": "cpu", "noprogressbar": True},
    )
    started = time.time()
    brain.fit(sb.utils.epoch_loop.EpochCounter(int(kd["number_of_epochs"])), loader, eval_loader(dev, classes))
    if state["best"].get("state") is not None:
        model.load_state_dict(state["best"]["state"])
    model.eval()
    return {"best_epoch": state["best"].get("epoch"), "best_dev_ua": state["best"].get("dev_ua"),
            "train_seconds": round(time.time() - started, 1)}  # fmt: skip


def fold_teacher(
    kd: dict[str, Any], cache: TrainingData, corpus: str, train_cache_rows: np.ndarray, threads: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """A teacher head trained without ``corpus``: its soft labels on ``train_cache_rows`` and its report
    (with its own scores on the held-out corpus). ``kd_weight: 0`` (the control run) trains none."""
    if float(kd["kd_weight"]) == 0.0:
        uniform = np.full((len(train_cache_rows), len(CLASSES)), 1.0 / len(CLASSES), dtype=np.float32)
        return uniform, {"note": "kd_weight 0: hard labels only, no teacher"}
    started = time.monotonic()
    hparams = load_recipe(Path(kd["teacher_hparams"]), {
        "adaptation": kd["teacher_adaptation"], "threads": threads, "progress": False, **(kd.get("teacher_overrides") or {}),
    })  # fmt: skip
    held = cache.meta.corpus == corpus
    teacher = train_head(hparams, cache, np.flatnonzero(~held), None)
    test_rows = np.flatnonzero(held & (cache.meta.label >= 0))
    test = evaluate(teacher["_head"], cache, teacher["_spec"], test_rows, teacher["temperature"])
    soft = teacher_probs(teacher["_head"], teacher["_spec"], cache, train_cache_rows, kd["teacher_channels"])
    report = {**_public(teacher), "train_s": round(time.monotonic() - started, 1),
              "test": {c: {k: e[k] for k in ("ua", "recall", "ece")} for c, e in test.items()}}  # fmt: skip
    return soft, report


def _scatter(values: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, values.shape[1]), dtype=values.dtype)
    out[rows] = values
    return out


def _public(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if not k.startswith("_") and k != "history"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("hparams", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--corpora", nargs="+", default=list(CLASS_CORPORA))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", nargs="*", default=[], help="hparam overrides key=value (YAML values), e.g. kd_weight=0")
    args = parser.parse_args(argv)
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    kd: dict[str, Any] = load_hyperpyyaml(args.hparams.read_text(encoding="utf-8"), overrides)
    torch.set_num_threads(args.threads)
    cache = load_training_data(Path(kd["teacher_cache"]))
    utterances = read_corpora(args.data, CLASS_CORPORA)
    windows = windows_of(utterances)
    cache_rows = align(windows, cache)
    print(f"[distill] {len(windows.stream)} windows, all found in {kd['teacher_cache']}", file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    folds: dict[str, Any] = {}
    for corpus in args.corpora:
        started = time.monotonic()
        train_rows = np.flatnonzero(windows.corpus != corpus)
        soft, teacher_report = fold_teacher(kd, cache, corpus, cache_rows[train_rows], args.threads)
        soft = _scatter(soft, train_rows, len(windows.stream))
        teacher_report["soft_label_accuracy_on_training_windows"] = round(
            float((soft[train_rows].argmax(axis=1) == windows.label[train_rows]).mean()), 4
        )
        hparams = recipe(Path(kd["v1_hparams"]), {"threads": args.threads, "progressbar": False, "output_folder": str(args.out)})
        train, dev = speaker_independent_split(window_clips(windows, train_rows), float(hparams["split"].get("dev_fraction", 0.15)), int(hparams["seed"]))
        model: EmotionNet = hparams["model"]
        training = fit_student(model, train, dev, soft, hparams, kd)
        training.update(dev_speakers=sorted({c.speaker for c in dev}), train_windows=len(train))
        rows = np.flatnonzero(windows.corpus == corpus)
        test = evaluate_windows(model, windows, rows)
        folds[corpus] = {
            "teacher": teacher_report, "training": training, "test_windows": int(len(rows)), "test": test,
            "train_s": round(time.monotonic() - started, 1),
        }  # fmt: skip
        save_checkpoint(args.out / corpus / "model.ckpt", model, {
            "labels": list(CLASSES), "fbank": DEFAULT_SPEC.to_dict(), "sample_rate": DEFAULT_SPEC.sample_rate,
            "training_data": sorted({c.corpus for c in train}), "licence": LICENCE_NOTE,
            "teacher": f"{kd['teacher_hparams']} on {kd['teacher_cache']}, trained without {corpus}",
        })  # fmt: skip
        teacher_ua = teacher_report.get("test", {}).get("clean/single", {}).get("ua", float("nan"))
        print(f"[distill] -> {corpus}: teacher clean UA {teacher_ua:.3f}; student "
              + ", ".join(f"{ch} UA {test[f'{ch}/mixed']['ua']:.3f} angry {test[f'{ch}/mixed']['recall'].get('angry', 0):.2f}"
                          for ch in ("clean", "telephone")) + f" ({folds[corpus]['train_s']:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
        (args.out / "loco.json").write_text(json.dumps({"none": {"folds": folds}}, indent=1) + "\n")
    summary = {**summarise_loco(folds), "hparams": str(args.hparams), "kd": {k: v for k, v in kd.items()},
               "command": " ".join(["python -m emotion_models.distill", *(argv if argv is not None else sys.argv[1:])])}  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    print(json.dumps(summary["modes"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
