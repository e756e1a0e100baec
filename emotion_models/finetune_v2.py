"""Fine-tune a v2 model's head on an operator's own labelled calls (``path,label[,speaker]`` CSV).

    .venv/bin/python -m emotion_models.finetune_v2 my_calls.csv models/emotune-ser-v2 results/ft

The encoder stays frozen (it is what makes a hundred clips go far). Two candidates are fitted on the
operator's windows, clean and through the 8 kHz mu-law channel: the shipped head trained further (in
both call conditions, keeping the base model's adaptation statistics) and a linear probe on the
encoder's states (``emotion_models.probe``; only where the base adapts nothing per call, with 3+
speakers; its statistics, layers and L2 chosen by leave-one-speaker-out inside each fold's speakers).
Both train on the clips and on speed-perturbed copies of them (``speed_perturb``, default 0.9x and 1.1x:
tempo and pitch together, a cheap stand-in for more voices than a hundred clips hold); every score is
on the original clips only.
The report compares the base and each candidate on speakers the fitting never heard:
leave-one-speaker-out (one fold per speaker, up to ``max_folds``). The candidate with the better mean
held-out telephone UA ships (ties: the head), refitted on every speaker. Manifests are validated
first (missing files, unknown labels, too few examples of a class: one DataError).

Confidence: a temperature is fitted on the folds' held-out speakers pooled (the base model's was
fitted on its acted training corpora, not on the operator's callers) and scored nested: each fold's
speaker at a temperature fitted on the other folds only. It ships only if that nested ECE is lower
than the base temperature's on the same folds; otherwise the base temperature stays (measured on
korean_operator: speakers from 42% to 92% UA are not calibrated by one fitted temperature).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emotion_models.augment import trim_silence
from emotion_models.corpora import CLASSES, Utterance
from emotion_models.data import load_audio
from emotion_models.encoder_cache import CHANNELS, build_streams, encode_windows, with_speed_copies
from emotion_models.evaluate import metrics
from emotion_models.head import AnyHead, EmotionHead, load_head, save_head
from emotion_models.labels import arousal_target
from emotion_models.prepare import SourceSpec, build_manifest, summarise, write_manifest
from emotion_models.probe import (
    PROBE_GRID,
    ProbeConfig,
    ProbeHead,
    choose_nested,
    class_weights,
    fit_probe,
    layer_rows,
    window_features,
)
from emotion_models.train_head import TrainingData, _fit_temperature, _window_probs, evaluate, load_recipe
from emotion_models.train_head import run as train_head
from emotion_runtime.adaptation import AdaptationSpec
from emotion_runtime.encoder import EncoderSession
from emotion_runtime.encoder_model import load_adaptation, read_v2_sidecar
from emotion_runtime.weights import PROJECT_ROOT
from emotune.config import TrainingConfig, check_speed_perturb
from emotune.errors import DataError

__all__ = ["run", "main", "nested_temperatures", "pooled_temperature", "CANDIDATES", "FINETUNE_HPARAMS", "PROBE_GRID", "ProbeCandidate",
           "SPEED_PERTURB"]  # fmt: skip

FINETUNE_HPARAMS = Path(__file__).parent / "hparams" / "finetune_head.yaml"
CANDIDATES = ("head_finetune", "linear_probe")
CELLS = ("clean/mixed", "clean/single", "telephone/mixed", "telephone/single")
SPEED_PERTURB = tuple(TrainingConfig().speed_perturb)  # the operator config's default, one spelling


def _setting(value: tuple[str, str, float]) -> dict[str, Any]:
    return {"statistics": value[0], "layers": value[1], "l2": value[2]}


def _summary(cells: dict[str, Any]) -> dict[str, Any]:
    keep = ("ua", "recall", "ece", "escalation")  # escalation: the hand-off simulation of single-emotion calls
    return {c: {k: cells[c][k] for k in keep if k in cells[c]} for c in CELLS}


def _hand_offs(folds: list[dict[str, Any]], key: str, cell: str) -> dict[str, Any]:
    """Per escalation rule, the held-out speakers' single-emotion calls pooled over the folds: how many
    angry calls were handed off and how many other calls were (false hand-offs)."""
    rules = folds[0][key][cell].get("escalation", {}) if folds else {}
    out = {}
    for rule in rules:
        sims = [f[key][cell]["escalation"][rule] for f in folds]
        angry, others = sum(s["angry_calls"] for s in sims), sum(s["other_calls"] for s in sims)
        handed = sum(round(s["angry_calls_handed_off"] * s["angry_calls"]) for s in sims)
        false = sum(round(s["false_hand_off_rate"] * s["other_calls"]) for s in sims)
        out[rule] = {"angry_calls": angry, "handed_off": handed, "other_calls": others, "false_hand_offs": false}
    return out


def _mean(folds: list[dict[str, Any]], key: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        c: {
            "ua": round(float(np.mean([f[key][c]["ua"] for f in folds])), 4),
            "angry_recall": round(float(np.mean([f[key][c]["recall"].get("angry", 0.0) for f in folds])), 4),
            "ece": round(float(np.mean([f[key][c]["ece"] for f in folds])), 4),
        }
        for c in CELLS
    }
    for c in CELLS:
        if all("escalation" in f[key][c] for f in folds):
            out[c]["hand_offs"] = _hand_offs(folds, key, c)
    return out


def pooled_temperature(fold_probs: Sequence[np.ndarray], fold_labels: Sequence[np.ndarray]) -> float:
    """The temperature fitted on the untempered held-out probabilities of all ``fold_probs`` together."""
    return _fit_temperature(np.concatenate(fold_probs), np.concatenate(fold_labels))


def nested_temperatures(fold_probs: Sequence[np.ndarray], fold_labels: Sequence[np.ndarray]) -> list[float]:
    """Per fold k, the temperature fitted on every other fold's held-out probabilities, so fold k's
    calibration is measured at a temperature its own speaker did not shape."""
    if len(fold_probs) < 2:
        raise ValueError("nested temperatures need at least two folds")
    return [
        pooled_temperature(
            [p for j, p in enumerate(fold_probs) if j != k], [y for j, y in enumerate(fold_labels) if j != k]
        )
        for k in range(len(fold_probs))
    ]


PROBE_CRITERIA = ("ua", "log_loss")  # how the probe's setting is chosen inside a fold's speakers


class ProbeCandidate:
    """The linear probe (``emotion_models.probe``) on the operator's windows, both channels stacked,
    class-balanced; each hyper-parameter setting chosen by leave-one-speaker-out inside the speakers
    it is given. Features are computed once per (statistics, layers). ``scored``: the windows a score
    may use (the original clips; None: all); a fit uses every window of its speakers (copies too)."""

    def __init__(self, data: TrainingData, spec: AdaptationSpec, scored: np.ndarray | None = None) -> None:
        if spec.mode != "none":
            raise ValueError(f"the linear probe takes constant offsets (adaptation 'none'), not {spec.mode!r}")
        self.data, self.offset = data, spec.global_mean  # the offset the runtime feeds every window under 'none'
        self.scored = np.ones(len(data.meta.label), dtype=bool) if scored is None else scored
        self.layers, self.dim = spec.global_mean.shape
        self._features: dict[tuple[str, tuple[int, ...]], dict[str, np.ndarray]] = {}

    def features(self, statistics: str, layer_indices: Sequence[int]) -> dict[str, np.ndarray]:
        key = (statistics, tuple(layer_indices))
        if key not in self._features:
            self._features[key] = {c: window_features(self.data.windows[c].states, layer_indices, statistics, self.offset) for c in CHANNELS}
        return self._features[key]

    def rows(self, speakers: Sequence[str], scored_only: bool = False) -> np.ndarray:
        meta = self.data.meta
        return np.flatnonzero(np.isin(meta.speaker, list(speakers)) & (meta.label >= 0) & (self.scored | (not scored_only)))

    def fit(self, value: tuple[str, str, float], speakers: Sequence[str]) -> ProbeHead:
        statistics, subset, l2 = value
        config = ProbeConfig(self.layers, self.dim, layer_rows(self.layers, subset), statistics, l2)
        rows, feats = self.rows(speakers), self.features(statistics, config.layer_indices)
        labels = np.tile(self.data.meta.label[rows], len(CHANNELS))
        weights = class_weights(np.full(len(labels), "operator"), labels, "operator", None)
        return fit_probe(np.concatenate([feats[c][rows] for c in CHANNELS]), labels, weights, config)

    def telephone_score(self, probe: ProbeHead, speakers: Sequence[str], criterion: str = "ua") -> float:
        """``speakers``' telephone windows scored by ``criterion`` (higher is better): ``ua``, or
        ``log_loss``: minus the class-balanced mean log-loss, a proper scoring rule (it also rewards
        confidence that matches accuracy, which UA does not see)."""
        rows = self.rows(speakers, scored_only=True)
        labels = self.data.meta.label[rows]
        feats = self.features(probe.config.statistics, probe.config.layer_indices)
        with torch.no_grad():
            logits = probe.classify(torch.from_numpy(feats["telephone"][rows]))
        if criterion == "log_loss":
            nll = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels), reduction="none").numpy()
            return -float(np.mean([nll[labels == c].mean() for c in np.unique(labels)]))
        if criterion != "ua":
            raise ValueError(f"probe criterion {criterion!r} is not one of {', '.join(PROBE_CRITERIA)}")
        return float(metrics(labels.tolist(), logits.argmax(dim=1).numpy().tolist(), CLASSES)["ua"])

    def choose(self, speakers: Sequence[str], criterion: str = "ua") -> tuple[tuple[str, str, float], dict[str, float]]:
        """The setting with the best mean ``criterion`` (:meth:`telephone_score`) over leave-one-out of ``speakers``."""
        return choose_nested(
            list(speakers), PROBE_GRID, lambda v, held, rest: self.telephone_score(self.fit(v, rest), [held], criterion)
        )


# One fold's tuned head, its spec, its held-out speaker's rows and their untempered window probabilities/labels.
HeldOut = tuple[AnyHead, AdaptationSpec, np.ndarray, np.ndarray, np.ndarray]


REFERENCE_TEMPERATURES = {
    "head_finetune": ("base model", "the base model's (fitted on its own training corpora)", "base"),
    "linear_probe": ("probe softmax", "the probe's plain softmax (T = 1; the probe is not tempered by the base model's T)", "plain (T = 1)"),
}


def _calibration(
    folds: list[dict[str, Any]], held_out: list[HeldOut], data: TrainingData, base_temperature: float,
    reference: str = "head_finetune",
) -> dict[str, Any]:
    """The shipped temperature and the ECE per cell at the reference (``base_*``: the base model's T for
    the head, 1 for the probe) and at the nested temperature."""
    kept, kept_text, short = REFERENCE_TEMPERATURES[reference]
    if len(held_out) < 2:
        return {
            "base_temperature": base_temperature, "temperature": base_temperature, "temperature_from": kept, "reference": kept_text,
            "why": "fewer than 2 leave-one-speaker-out folds: no held-out speakers to fit a temperature on",
        }  # fmt: skip
    probs, labels = [h[3] for h in held_out], [h[4] for h in held_out]
    per_fold = []
    for fold, (head, spec, rows, _, _), t in zip(folds, held_out, nested_temperatures(probs, labels), strict=True):
        # evaluate, not tempered probabilities: a score-gated adaptation spec is gated at the temperature.
        cells = evaluate(head, data, spec, rows, round(t, 3))
        per_fold.append({
            "speaker": fold["speaker"], "temperature": round(t, 3),
            "ece_base_temperature": {c: fold["after"][c]["ece"] for c in CELLS},
            "ece_nested_temperature": {c: cells[c]["ece"] for c in CELLS},
            "ua_recall_unchanged": all(
                (cells[c]["ua"], cells[c]["recall"]) == (fold["after"][c]["ua"], fold["after"][c]["recall"]) for c in CELLS
            ),
        })  # fmt: skip
    means = {
        key: {c: round(float(np.mean([f[key][c] for f in per_fold])), 4) for c in CELLS}
        for key in ("ece_base_temperature", "ece_nested_temperature")
    }
    fitted = round(pooled_temperature(probs, labels), 3)
    nested_ece, base_ece = (float(np.mean(list(means[k].values()))) for k in ("ece_nested_temperature", "ece_base_temperature"))
    # The fitted temperature ships only when it calibrates speakers it was not fitted on better.
    better = nested_ece < base_ece
    source = f"the held-out speakers of the {len(held_out)} leave-one-speaker-out folds, pooled"
    return {
        "base_temperature": base_temperature,
        "fitted_temperature": fitted,
        "temperature": fitted if better else base_temperature,
        "temperature_from": source if better else kept,
        "reference": kept_text,
        "why": (f"nested ECE {nested_ece:.3f} at the fitted temperature vs {base_ece:.3f} at the {short} one "
                + ("(lower: the fitted one ships)" if better else f"(not lower: the {short} one stays)")),
        "nested": "fold k's ECE at a temperature fitted on the other folds' held-out speakers only",
        **means,
        "folds": per_fold,
    }  # fmt: skip


def run(
    manifest_csv: str | Path,
    base_model: str | Path,
    output_dir: str | Path,
    epochs: int | None = None,
    *,
    label_map: Mapping[str, str | None] | None = None,
    min_examples_per_class: int = 3,
    max_folds: int = 10,
    threads: int = 2,
    progress: bool = True,
    data_licence: str | None = None,
    candidates: Sequence[str] = CANDIDATES,
    probe_criterion: str = "ua",
    speed_perturb: Sequence[float] = SPEED_PERTURB,
) -> dict[str, Any]:
    """Fine-tune ``base_model`` (a v2 model folder) on ``manifest_csv``; writes a v2 model folder.
    ``data_licence``: the terms of the operator's clips, as they state them (into the model card).
    ``candidates``: what may ship (``CANDIDATES``); the best of them by leave-one-speaker-out does (the
    head fine-tune is always scored, as the reference). ``probe_criterion``: how the probe's setting is chosen
    inside each fold's speakers (``PROBE_CRITERIA``). ``speed_perturb``: playback speeds of the extra
    training copies of every clip (empty: none); held-out speakers are scored on their original clips."""
    if probe_criterion not in PROBE_CRITERIA:
        raise ValueError(f"probe criterion {probe_criterion!r} is not one of {', '.join(PROBE_CRITERIA)}")
    speeds = check_speed_perturb(speed_perturb)
    started = time.monotonic()
    output = Path(output_dir)
    base_dir = Path(base_model)
    sidecar = read_v2_sidecar(base_dir / "emotion.json")
    head, extra = load_head(base_dir / "head.ckpt")
    from export_onnx.head import write_v2_model

    classes = list(sidecar["labels"])
    rows = build_manifest([SourceSpec("csv", Path(manifest_csv), dict(label_map or {}))], classes, min_examples_per_class)
    write_manifest(rows, output / "manifest.csv")
    utterances = [
        Utterance(trim_silence(load_audio(r.path)), r.label, arousal_target(r.label), r.speaker, "operator", "?", r.path)
        for r in rows
    ]
    speakers = sorted({u.speaker for u in utterances})
    encoder_info = sidecar["encoder"]
    encoder = EncoderSession.load(PROJECT_ROOT / encoder_info["path"], encoder_info["sha256"], intra_op_threads=threads)
    streams = with_speed_copies(build_streams(utterances), speeds)
    if progress:
        copies = f" + copies at {', '.join(f'{f:g}x' for f in speeds)} speed (training only)" if speeds else ""
        print(f"[finetune] encoding {len(utterances)} clips of {len(speakers)} speakers{copies}", file=sys.stderr)
    unit_variance = bool(sidecar["features"].get("unit_variance", False))
    data = TrainingData(
        {ch: encode_windows(streams, encoder, ch, unit_variance, int(encoder_info["pool"]), progress) for ch in CHANNELS}
    )
    base = (head, load_adaptation(base_dir, sidecar), float(sidecar.get("temperature", 1.0)))
    hparams = load_recipe(FINETUNE_HPARAMS, {"threads": threads, "progress": False, **({"number_of_epochs": epochs} if epochs else {})})
    meta = data.meta
    original = meta.original
    folds: list[dict[str, Any]] = []
    held_out: list[HeldOut] = []
    speaker_independent = len(speakers) >= 2 and not all(s.startswith("file:") for s in speakers)
    # The probe's features assume one constant offset: a candidate only where the base adapts nothing per
    # call, and only with 3+ speakers (its settings are chosen by leave-one-speaker-out inside each fold's speakers).
    probes = (ProbeCandidate(data, base[1], original)
              if "linear_probe" in candidates and base[1].mode == "none" and speaker_independent and len(speakers) >= 3 else None)  # fmt: skip
    probe_folds: list[dict[str, Any]] = []
    probe_held_out: list[HeldOut] = []
    for held in speakers[:max_folds] if speaker_independent else []:
        test = np.flatnonzero((meta.speaker == held) & original)
        train = np.flatnonzero(meta.speaker != held)
        if not len(test) or len(set(meta.label[train].tolist())) < len(classes):
            continue
        before = evaluate(base[0], data, base[1], test, base[2])
        tuned = train_head(hparams, data, train, test, base=base)
        folds.append({"speaker": held, "before": _summary(before), "after": _summary(tuned["test"])})
        scored = test[meta.label[test] >= 0]
        # seed 0: the call orders evaluate scores, so these are the "after" windows untempered.
        held_out.append((tuned["_head"], tuned["_spec"], scored, *_window_probs(tuned["_head"], tuned["_spec"], data, scored, 0)))
        line = f"[finetune] held-out {held}: UA {before['telephone/single']['ua']:.2f} -> {tuned['test']['telephone/single']['ua']:.2f}"
        if probes is not None:
            setting, inner = probes.choose([s for s in speakers if s != held], probe_criterion)
            probe = probes.fit(setting, [s for s in speakers if s != held])
            probe_cells = evaluate(probe, data, base[1], test, 1.0)
            probe_folds.append({"speaker": held, "before": folds[-1]["before"], "after": _summary(probe_cells),
                                "setting": _setting(setting), "criterion": probe_criterion, f"inner_telephone_{probe_criterion}": inner})  # fmt: skip
            probe_held_out.append((probe, base[1], scored, *_window_probs(probe, base[1], data, scored, 0)))
            line += f" (head fine-tune), {probe_cells['telephone/single']['ua']:.2f} (linear probe, {_setting(setting)})"
        if progress:
            print(line + " (telephone, single-emotion calls)", file=sys.stderr)
    results: dict[str, dict[str, Any]] = {"head_finetune": {"folds": folds, "held_out": held_out, "reference_temperature": base[2]}}
    if probe_folds:
        results["linear_probe"] = {"folds": probe_folds, "held_out": probe_held_out, "reference_temperature": 1.0}
    for name, result in results.items():
        result["calibration"] = _calibration(result["folds"], result["held_out"], data, result["reference_temperature"], name)
    scores = {name: _mean(r["folds"], "after")["telephone/single"]["ua"] if r["folds"] else 0.0 for name, r in results.items()}
    # dict order: a tie keeps the head fine-tune; it is always scored (the reference), it ships if allowed
    chosen = max([n for n in results if n in candidates] or ["head_finetune"], key=lambda name: scores[name])
    calibration = results[chosen]["calibration"]
    if progress:
        if len(results) > 1:
            print(f"[finetune] chosen: {chosen} (held-out telephone UA {', '.join(f'{k} {v:.3f}' for k, v in scores.items())})", file=sys.stderr)
        print(f"[finetune] temperature -> {calibration['temperature']} ({calibration['temperature_from']})", file=sys.stderr)
    sidecar_extra: dict[str, Any] = {}
    final_head: EmotionHead | ProbeHead
    if chosen == "linear_probe" and probes is not None:
        setting, final_inner = probes.choose(speakers, probe_criterion)
        final_probe = probes.fit(setting, speakers)
        final_head, final_spec = final_probe, base[1]
        sidecar_extra["head"] = {**final_probe.describe(), "chosen_by": "leave-one-speaker-out over every operator speaker",
                                 "criterion": probe_criterion, f"inner_telephone_{probe_criterion}": final_inner}  # fmt: skip
        save_head(final_probe, output / "head.ckpt", {**extra, "finetuned_on": str(manifest_csv), "base_model": str(base_dir)})
    else:
        final = train_head(hparams, data, np.arange(len(meta.label)), None, base=base)
        final_head, final_spec = final["_head"], final["_spec"]
        save_head(final["_head"], output / "head.ckpt", {**extra, "finetuned_on": str(manifest_csv)})
    write_v2_model(
        output, final_head, final_spec, encoder=encoder_info["name"], temperature=float(calibration["temperature"]),
        pool=int(encoder_info["pool"]), labels=classes,
        trained_on=[*sidecar.get("trained_on", []), f"fine-tuned on {Path(manifest_csv).name} ({len(utterances)} clips)"],
        example_states=data.windows["clean"].states[original][:16].astype(np.float32), cost=sidecar.get("cost"), extra=sidecar_extra,
    )  # fmt: skip
    shipped_folds = results[chosen]["folds"]
    report = {
        "manifest": str(manifest_csv),
        "data_licence": data_licence,
        "base_model": str(base_dir),
        "model": str(output),
        "data": summarise(rows),
        "speakers": speakers,
        "evaluation": "leave one speaker out: each fold fine-tunes on the other speakers and scores the held-out one, "
        "per 2-s window, clean and 8 kHz mu-law, mixed- and single-emotion calls",
        "chosen": chosen,
        "choice": (
            f"the candidate with the best mean held-out telephone UA over these folds, of {len(results)} "
            f"({', '.join(results)}): the shipped figure is the best of {len(results)} on the same speakers, so it is "
            "optimistic by the choice; a candidate's own settings are chosen inside each fold's training speakers"
            if len(results) > 1 else
            "the head fine-tune, the only candidate" + ("" if probes is not None or "linear_probe" not in candidates else
                                                        " (the linear probe needs adaptation 'none' and 3 or more speakers)")
        ),  # fmt: skip
        "folds": shipped_folds,
        "before": _mean(shipped_folds, "before") if shipped_folds else None,
        "after": _mean(shipped_folds, "after") if shipped_folds else None,
        "candidates": {name: {"after": _mean(r["folds"], "after") if r["folds"] else None, "calibration": r["calibration"],
                              **({"folds": r["folds"]} if name != chosen else {})} for name, r in results.items()},  # fmt: skip
        "speaker_independent_validation": bool(shipped_folds),
        "augmentation": {"speed_perturb": speeds, "windows": {"original": int(original.sum()), "copies": int((~original).sum())},
                         "scored_on": "the original clips only; the copies train"},  # fmt: skip
        "calibration": calibration,
        "adaptation": str((sidecar.get("adaptation") or {}).get("mode", "none")),
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    (output / "finetune_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (output / "MODEL_CARD.md").write_text(_card(base_dir, output, manifest_csv, report), encoding="utf-8")
    return report


def _card(base_dir: Path, output: Path, manifest_csv: str | Path, report: dict[str, Any]) -> str:
    lines = [
        f"# {output.name}: {base_dir.name} with "
        + ("a linear probe fitted" if report.get("chosen") == "linear_probe" else "its head fine-tuned") + f" on {Path(manifest_csv).name}",
        "",
        f"Base: `{base_dir}` (encoder unchanged, frozen). Fine-tuned on {report['data']['clips']} clips of "
        f"{len(report['speakers'])} speakers ({', '.join(report['speakers'])}) with `emotune finetune` "
        f"in {report['wall_seconds']:.0f} s.",
        *_augmentation_card(report.get("augmentation") or {}),
        "",
        "## What it saw",
        f"Everything the base model saw (see its MODEL_CARD.md) plus `{manifest_csv}`: {json.dumps(report['data']['per_class'])}.",
        "The head inherits the terms of both: non-commercial unless every source allows more.",
        f"The fine-tuning data's terms, as stated by whoever ran the fine-tuning: {report['data_licence']}"
        if report.get("data_licence") else
        "The fine-tuning data's terms: **not stated** (`emotune finetune --data-licence \"...\"`); state them "
        "before shipping the model.",
        "",
        "## Speakers it never heard (leave one speaker out; `finetune_report.json`)",
    ]
    if report.get("adaptation", "none") == "none":
        lines += ["", "With per-call adaptation `none` a window's label does not depend on the rest of the call, so "
                  "the mixed- and single-emotion rows are equal by construction."]
    if report.get("after"):
        lines += ["", "| cell | UA before | UA after | angry recall before | after | ECE after (reference T) |", "| --- | --- | --- | --- | --- | --- |"]
        for cell in CELLS:
            b, a = report["before"][cell], report["after"][cell]
            lines.append(f"| {cell} | {b['ua']:.1%} | {a['ua']:.1%} | {b['angry_recall']:.1%} | {a['angry_recall']:.1%} | {a['ece']:.3f} |")
    else:
        lines.append("No speaker column (or one speaker): no speaker-independent evaluation was possible.")
    return "\n".join([*lines, *_candidates_card(report), *_calibration_card(report["calibration"])]) + "\n"


def _augmentation_card(augmentation: dict[str, Any]) -> list[str]:
    if not augmentation.get("speed_perturb"):
        return []
    speeds = ", ".join(f"{f:g}x" for f in augmentation["speed_perturb"])
    return [f"Training windows: the clips and copies of them played at {speeds} speed (tempo and pitch together; "
            f"{augmentation['windows']['copies']} copy windows beside {augmentation['windows']['original']}); every score "
            "below is on the original clips only."]  # fmt: skip


def _candidates_card(report: dict[str, Any]) -> list[str]:
    names = {"head_finetune": "the base head trained further (`hparams/finetune_head.yaml`)",
             "linear_probe": "a linear probe on the frozen encoder's states (`emotion_models/probe.py`)"}  # fmt: skip
    lines = ["", "## What ships", "", f"**{report['chosen']}**: {names.get(report['chosen'], report['chosen'])}; {report['choice']}."]
    if len(report["candidates"]) > 1:
        lines += ["", "| candidate | held-out UA, telephone | angry recall | ECE at its reference T (head: the base T; probe: 1) "
                  "| angry calls handed off (accumulated rule) | false hand-offs |", "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        rule = "accumulated evidence"
        for name, c in report["candidates"].items():
            a = c["after"]["telephone/single"] if c["after"] else None
            if a is None:
                lines.append(f"| {name} | - | - | - | - | - |")
                continue
            ece = c["calibration"].get("ece_base_temperature", {}).get("telephone/single", float("nan"))
            rule, h = next(((k, v) for k, v in a.get("hand_offs", {}).items() if k.startswith("accumulated")), (rule, None))
            handed = f"{h['handed_off']} of {h['angry_calls']} | {h['false_hand_offs']} of {h['other_calls']}" if h else "- | -"
            lines.append(f"| {name} | {a['ua']:.1%} | {a['angry_recall']:.1%} | {ece:.3f} | {handed} |")
        lines += ["", "Hand-offs: each held-out speaker's single-emotion calls (all of one label in a row, telephone) cut "
                  f"into turns of 3 windows, through the rule \"{rule}\" (the gateway's `escalation.floor_confidence`)."]  # fmt: skip
    return lines


def _calibration_card(cal: dict[str, Any]) -> list[str]:
    lines = ["", "## Confidence (temperature T in `emotion.json`)", ""]
    if "folds" not in cal:
        return [*lines, f"T = {cal['temperature']:.2f}, {cal['reference']}, kept: {cal['why']}."]
    unchanged = all(f["ua_recall_unchanged"] for f in cal["folds"])
    lower = sum(cal["ece_nested_temperature"][c] < cal["ece_base_temperature"][c] for c in CELLS)
    shipped = (
        f"T = {cal['temperature']:.2f}, fitted on {cal['temperature_from']} (speakers the fold heads never heard); "
        f"the reference T = {cal['base_temperature']:.2f} is {cal['reference']}."
        if cal["temperature_from"] not in {r[0] for r in REFERENCE_TEMPERATURES.values()} else
        f"T = {cal['temperature']:.2f}, {cal['reference']}, kept: the temperature "
        f"fitted on the held-out speakers pooled (T = {cal['fitted_temperature']:.2f}) calibrated them worse ({cal['why']})."
    )  # fmt: skip
    lines += [
        shipped + " ECE per 2-s window "
        "of each held-out speaker, mean over folds, at the reference T and at a T fitted on the other folds only (nested: "
        "no speaker is scored with a temperature fitted on it). UA and recall "
        + ("are the same at both (T does not move the top class)." if unchanged else "differ between the two: see `finetune_report.json`.")
        + f" The nested ECE is lower than at the reference T in {lower} of {len(CELLS)} cells.",
        "",
        f"| cell | ECE at reference T = {cal['base_temperature']:.2f} | ECE at nested T |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {c} | {cal['ece_base_temperature'][c]:.3f} | {cal['ece_nested_temperature'][c]:.3f} |" for c in CELLS]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest_csv", type=Path)
    parser.add_argument("base_model", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--probe-criterion", choices=PROBE_CRITERIA, default="ua")
    parser.add_argument("--speed-perturb", type=float, nargs="*", default=list(SPEED_PERTURB),
                        help="playback speeds of the extra training copies (none: no copies)")
    args = parser.parse_args(argv)
    if not (args.base_model / "emotion.json").is_file():
        raise DataError(f"{args.base_model} is not a v2 model folder (no emotion.json)")
    report = run(args.manifest_csv, args.base_model, args.output_dir, args.epochs, threads=args.threads,
                 probe_criterion=args.probe_criterion, speed_perturb=args.speed_perturb)
    print(json.dumps({k: report[k] for k in ("before", "after", "wall_seconds")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
