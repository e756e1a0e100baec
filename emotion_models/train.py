"""The training recipe (SpeechBrain ``Brain``), driven by a HyperPyYAML hparams file.

    .venv/bin/python -m emotion_models.train emotion_models/hparams/ecapa_small.yaml \\
        --data_folder_ravdess ../shared/data/ravdess --data_folder_emodb ../shared/data/emodb \\
        --output_folder results/train

:func:`run` is what ``emotune train`` calls. Steps: prepare + validate the manifest (every data
problem is raised as a DataError before training), decode all audio into RAM, split by speakers
(or by corpus), train with augmentation and the arousal/valence auxiliary losses, keep the epoch
with the best development UA, evaluate on the held-out test speakers on clean and on simulated
telephone audio, and write ``model.ckpt``, ``results.json``, confusion-matrix PNGs and the manifest.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import speechbrain as sb
import torch
import torch.nn.functional as F
import yaml
from hyperpyyaml import load_hyperpyyaml

from emotion_models.augment import AugmentConfig, WaveAugmenter, freq_warp, spec_augment
from emotion_models.data import (
    Clip,
    ClipBatch,
    eval_loader,
    load_clips,
    speaker_independent_split,
    split_by_speakers,
    train_loader,
)
from emotion_models.evaluate import evaluate_clips, metrics, plot_confusion
from emotion_models.features_torch import TorchFbank
from emotion_models.model import EmotionNet, save_checkpoint
from emotion_models.prepare import build_manifest, summarise, write_manifest
from emotion_runtime.features import DEFAULT_SPEC
from emotune.errors import ConfigError, DataError

__all__ = ["EmotionBrain", "run", "load_hparams", "fit", "split_clips", "run_on_clips", "LICENCE_NOTE"]

logger = logging.getLogger(__name__)

LICENCE_NOTE = (
    "Weights trained on RAVDESS (CC BY-NC-SA 4.0) and/or EmoDB (research use): non-commercial only. "
    "Fine-tune on your own data for production."
)


class EmotionBrain(sb.Brain):
    """Only the hooks the recipe needs: forward (augment -> fbank -> net), objectives, stage end."""

    def compute_forward(self, batch: ClipBatch, stage: sb.Stage) -> tuple[torch.Tensor, ...]:
        batch = batch.to(self.device)
        wavs = batch.wavs
        if stage == sb.Stage.TRAIN:
            wavs = self.hparams.augmenter(wavs)
        feats = self.modules.fbank(wavs)
        if stage == sb.Stage.TRAIN:
            cfg: AugmentConfig = self.hparams.augmenter.config
            generator = self.hparams.augmenter.generator
            feats = freq_warp(feats, cfg.freq_warp_prob, cfg.freq_warp_max, generator)
            feats = spec_augment(feats, cfg.freq_mask_prob, cfg.freq_mask_width, generator)
        return tuple(self.modules.model(feats))

    def compute_objectives(
        self, predictions: tuple[torch.Tensor, ...], batch: ClipBatch, stage: sb.Stage
    ) -> torch.Tensor:
        logits, arousal, valence = predictions
        batch = batch.to(self.device)
        loss = F.cross_entropy(logits, batch.labels, label_smoothing=self.hparams.label_smoothing)
        # Auxiliary dimensional losses on label-derived targets (NaN = class without a target).
        for weight, output, target in (
            (self.hparams.arousal_weight, arousal, batch.arousal),
            (self.hparams.valence_weight, valence, batch.valence),
        ):
            known = ~torch.isnan(target)
            if weight > 0 and known.any():
                loss = loss + weight * F.mse_loss(output[known], target[known])
        if stage != sb.Stage.TRAIN:
            self._true.extend(batch.labels.tolist())
            self._pred.extend(logits.argmax(dim=1).tolist())
        return loss

    def on_stage_start(self, stage: sb.Stage, epoch: int | None = None) -> None:
        self._true: list[int] = []
        self._pred: list[int] = []
        if stage == sb.Stage.TRAIN and epoch is not None and self.optimizer is not None:
            lr = self._lr_for(epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self._epoch_start = time.time()

    def _lr_for(self, epoch: int) -> float:
        """Linear warm-up, then cosine decay to 5% of the peak (epochs count from 1)."""
        peak, warmup, total = self.hparams.lr, self.hparams.warmup_epochs, self.hparams.number_of_epochs
        if epoch <= warmup:
            return peak * epoch / max(1, warmup)
        progress = (epoch - warmup) / max(1, total - warmup)
        return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))

    def on_stage_end(self, stage: sb.Stage, stage_loss: float, epoch: int | None = None) -> None:
        if stage == sb.Stage.TRAIN:
            self._train_loss = stage_loss
            return
        scores = metrics(self._true, self._pred, self.hparams.classes)
        record = {
            "epoch": epoch,
            "train_loss": round(float(self._train_loss), 4),
            "dev_loss": round(float(stage_loss), 4),
            "dev_ua": round(scores["ua"], 4),
            "dev_wa": round(scores["wa"], 4),
            "lr": self.optimizer.param_groups[0]["lr"] if self.optimizer else None,
            "epoch_s": round(time.time() - self._epoch_start, 1),
        }
        self.hparams.history.append(record)
        logger.info("epoch %s: %s", epoch, record)
        print(f"[train] {json.dumps(record)}", flush=True)
        best = self.hparams.best
        if best.get("dev_ua", -1.0) < scores["ua"]:
            best.update(dev_ua=scores["ua"], epoch=epoch, state=copy.deepcopy(self.modules.model.state_dict()))


def _plain_source(source: Any) -> dict[str, Any]:
    """A DataSource (pydantic) or dict as plain YAML-able values (paths as strings)."""
    data = source.model_dump(mode="json") if hasattr(source, "model_dump") else dict(source)
    data["path"] = str(data["path"])
    return data


def load_hparams(hparams_path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load a HyperPyYAML file with overrides.

    When ``data_sources`` is overridden (a list of ``emotune.config.DataSource`` or dicts), the
    corpus-folder placeholders are filled with "unused" and, unless ``split`` is also given, the
    split becomes a random speaker-independent one (``mode: auto``).
    """
    overrides = dict(overrides or {})
    path = Path(hparams_path)
    if not path.is_file():
        raise DataError(f"hparams file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if "data_sources" in overrides:
        for key in ("data_folder_ravdess", "data_folder_emodb", "data_folder"):
            if f"{key}: !PLACEHOLDER" in text:
                overrides.setdefault(key, "unused")
        # The file's held-out speaker lists name the default corpora's speakers; other data gets
        # a random speaker-independent split unless the caller gives one.
        overrides.setdefault("split", {"mode": "auto", "test_fraction": 0.2, "dev_fraction": 0.15})
        overrides["data_sources"] = [_plain_source(s) for s in overrides["data_sources"]]
    try:
        hparams: dict[str, Any] = load_hyperpyyaml(text, overrides)
    except (ValueError, KeyError, TypeError) as exc:  # unfilled !PLACEHOLDER, unknown override, bad value
        raise ConfigError(str(path), [str(exc).strip('"')]) from exc
    return hparams


def split_clips(clips: Sequence[Clip], split: dict[str, Any], seed: int) -> tuple[list[Clip], list[Clip], list[Clip]]:
    """(train, dev, test) according to the hparams ``split`` section."""
    mode = split.get("mode", "auto")
    if mode == "speakers":
        rest, test = split_by_speakers(clips, split["test_speakers"])
        train, dev = split_by_speakers(rest, split.get("dev_speakers", []))
    elif mode == "cross_corpus":
        source = [c for c in clips if c.corpus in split["train_corpora"]]
        test = [c for c in clips if c.corpus in split["test_corpora"]]
        train, dev = speaker_independent_split(source, split.get("dev_fraction", 0.15), seed)
    elif mode == "auto":
        rest, test = speaker_independent_split(clips, split.get("test_fraction", 0.2), seed)
        train, dev = speaker_independent_split(rest, split.get("dev_fraction", 0.15), seed + 1)
    else:
        raise DataError(f"unknown split mode {mode!r} (speakers, cross_corpus or auto)")
    for name, part in (("training", train), ("development", dev), ("test", test)):
        if not part:
            raise DataError(f"the {mode} split leaves the {name} set empty")
    return train, dev, test


def fit(
    model: EmotionNet, train: Sequence[Clip], dev: Sequence[Clip], hparams: dict[str, Any], progress: bool = True
) -> dict[str, Any]:
    """Train ``model`` in place; it ends with the best-dev-UA weights. Returns history and best epoch."""
    torch.set_num_threads(int(hparams.get("threads", 2)))
    classes = list(hparams["classes"])
    aug_cfg: AugmentConfig = hparams["augment"]
    loader = train_loader(
        train, classes, hparams["batch_size"], (hparams["crop_min_s"], hparams["crop_max_s"]),
        aug_cfg.speed_prob, aug_cfg.speeds, hparams["balanced_sampling"], hparams["seed"],
    )  # fmt: skip
    state: dict[str, Any] = {"history": [], "best": {}}
    brain = EmotionBrain(
        modules={"model": model, "fbank": TorchFbank()},
        opt_class=hparams["opt_class"],
        hparams={
            "augmenter": WaveAugmenter(aug_cfg, seed=hparams["seed"]),
            "classes": classes,
            "label_smoothing": hparams["label_smoothing"],
            "arousal_weight": hparams["arousal_weight"],
            "valence_weight": hparams["valence_weight"],
            "lr": hparams["lr"],
            "warmup_epochs": hparams["warmup_epochs"],
            "number_of_epochs": hparams["number_of_epochs"],
            "history": state["history"],
            "best": state["best"],
        },
        run_opts={"device": "cpu", "noprogressbar": not progress},
    )
    epochs = sb.utils.epoch_loop.EpochCounter(hparams["number_of_epochs"])
    started = time.time()
    brain.fit(epochs, loader, eval_loader(dev, classes))
    model = brain.modules.model
    if state["best"].get("state") is not None:
        model.load_state_dict(state["best"]["state"])
    model.eval()
    return {
        "history": state["history"],
        "best_epoch": state["best"].get("epoch"),
        "best_dev_ua": state["best"].get("dev_ua"),
        "train_seconds": round(time.time() - started, 1),
    }


def _describe_split(clips: Sequence[Clip]) -> dict[str, Any]:
    return {
        "clips": len(clips),
        "speakers": sorted({c.speaker for c in clips}),
        "corpora": sorted({c.corpus for c in clips}),
    }


def run_on_clips(
    hparams: dict[str, Any], clips: Sequence[Clip], output_dir: str | Path, progress: bool = True,
    save: bool = True, extra_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Split, train, evaluate and write the artefacts for already-loaded clips."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    classes = list(hparams["classes"])
    torch.manual_seed(hparams["seed"])
    train, dev, test = split_clips(clips, hparams["split"], hparams["seed"])
    model: EmotionNet = hparams["model"]
    training = fit(model, train, dev, hparams, progress)
    evaluation = evaluate_clips(model, test, classes)
    for channel, entry in evaluation.items():
        plot_confusion(
            entry["confusion"], classes, f"{hparams.get('experiment', 'test')} - {channel}: UA {entry['ua']:.1%}",
            output_dir / f"confusion_{channel}.png",
        )  # fmt: skip
    results = {
        "experiment": hparams.get("experiment", "train"),
        "classes": classes,
        "split": {"mode": hparams["split"].get("mode"), "train": _describe_split(train),
                  "dev": _describe_split(dev), "test": _describe_split(test)},  # fmt: skip
        "model": {"config": dict(vars(model.config)), "parameters": model.n_parameters()},
        "training": training,
        "test": evaluation,
    }
    if save:
        meta = {
            "labels": classes,
            "fbank": DEFAULT_SPEC.to_dict(),
            "sample_rate": DEFAULT_SPEC.sample_rate,
            "training_data": sorted({c.corpus for c in train}),
            "licence": LICENCE_NOTE,
            "arousal_valence": "label-derived auxiliary targets, not annotated ratings",
            "results": {ch: {"ua": e["ua"], "wa": e["wa"]} for ch, e in evaluation.items()},
            **(extra_meta or {}),
        }
        save_checkpoint(output_dir / "model.ckpt", model, meta)
    (output_dir / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    return results


def _print_progress(done: int, total: int) -> None:
    if done == total or done % 200 == 0:
        print(f"[data] decoded {done}/{total} clips", flush=True)


def run(hparams_path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train from an hparams file (+ overrides); returns the results dict also written to results.json."""
    hparams = load_hparams(hparams_path, overrides)
    output_dir = Path(hparams["output_folder"])
    rows = build_manifest(hparams["data_sources"], hparams["classes"], hparams.get("min_examples_per_class", 5))
    write_manifest(rows, output_dir / "manifest.csv")
    print(f"[data] {json.dumps(summarise(rows))}", flush=True)
    clips = load_clips(rows, progress=_print_progress)
    results = run_on_clips(hparams, clips, output_dir, progress=hparams.get("progressbar", True))
    results["data"] = summarise(rows)
    (output_dir / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    return results


def main(argv: list[str] | None = None) -> int:
    hparams_file, _run_opts, overrides = sb.parse_arguments(argv if argv is not None else sys.argv[1:])
    results = run(hparams_file, yaml.safe_load(overrides) if overrides else None)
    for channel, entry in results["test"].items():
        print(f"test {channel}: UA {entry['ua']:.1%}  WA {entry['wa']:.1%}  recall {entry['recall']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
