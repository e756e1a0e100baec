"""Fine-tune a v2 model's head on an operator's own labelled calls (``path,label[,speaker]`` CSV).

    .venv/bin/python -m emotion_models.finetune_v2 my_calls.csv models/emotune-ser-v2 results/ft

The encoder stays frozen (it is what makes a hundred clips go far); the shipped head is trained
further on the operator's windows, clean and through the 8 kHz mu-law channel, in both call
conditions, keeping the base model's adaptation statistics. The report compares the base and the
fine-tuned head on speakers the fine-tuning never heard: leave-one-speaker-out (one fold per
speaker, up to ``max_folds``), then the shipped head is fine-tuned on every speaker. Manifests are
validated first (missing files, unknown labels, too few examples of a class: one DataError).

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

from emotion_models.augment import trim_silence
from emotion_models.corpora import Utterance
from emotion_models.data import load_audio
from emotion_models.encoder_cache import CHANNELS, build_streams, encode_windows
from emotion_models.head import EmotionHead, load_head, save_head
from emotion_models.labels import arousal_target
from emotion_models.prepare import SourceSpec, build_manifest, summarise, write_manifest
from emotion_models.train_head import TrainingData, _fit_temperature, _window_probs, evaluate, load_recipe
from emotion_models.train_head import run as train_head
from emotion_runtime.adaptation import AdaptationSpec
from emotion_runtime.encoder import EncoderSession
from emotion_runtime.encoder_model import load_adaptation, read_v2_sidecar
from emotion_runtime.weights import PROJECT_ROOT
from emotune.errors import DataError

__all__ = ["run", "main", "nested_temperatures", "pooled_temperature", "FINETUNE_HPARAMS"]

FINETUNE_HPARAMS = Path(__file__).parent / "hparams" / "finetune_head.yaml"
CELLS = ("clean/mixed", "clean/single", "telephone/mixed", "telephone/single")


def _summary(cells: dict[str, Any]) -> dict[str, Any]:
    return {c: {"ua": cells[c]["ua"], "recall": cells[c]["recall"], "ece": cells[c]["ece"]} for c in CELLS}


def _mean(folds: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return {
        c: {
            "ua": round(float(np.mean([f[key][c]["ua"] for f in folds])), 4),
            "angry_recall": round(float(np.mean([f[key][c]["recall"].get("angry", 0.0) for f in folds])), 4),
            "ece": round(float(np.mean([f[key][c]["ece"] for f in folds])), 4),
        }
        for c in CELLS
    }


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


# One fold's tuned head, its spec, its held-out speaker's rows and their untempered window probabilities/labels.
HeldOut = tuple[EmotionHead, AdaptationSpec, np.ndarray, np.ndarray, np.ndarray]


def _calibration(
    folds: list[dict[str, Any]], held_out: list[HeldOut], data: TrainingData, base_temperature: float
) -> dict[str, Any]:
    """The shipped temperature and the ECE per cell at the base and at the nested temperature."""
    if len(held_out) < 2:
        return {
            "base_temperature": base_temperature, "temperature": base_temperature, "temperature_from": "base model",
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
        "temperature_from": source if better else "base model",
        "why": (f"nested ECE {nested_ece:.3f} at the fitted temperature vs {base_ece:.3f} at the base one "
                + ("(lower: the fitted one ships)" if better else "(not lower: the base one stays)")),
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
) -> dict[str, Any]:
    """Fine-tune ``base_model`` (a v2 model folder) on ``manifest_csv``; writes a v2 model folder.
    ``data_licence``: the terms of the operator's clips, as they state them (into the model card)."""
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
    streams = build_streams(utterances)
    if progress:
        print(f"[finetune] encoding {len(utterances)} clips of {len(speakers)} speakers", file=sys.stderr)
    unit_variance = bool(sidecar["features"].get("unit_variance", False))
    data = TrainingData(
        {ch: encode_windows(streams, encoder, ch, unit_variance, int(encoder_info["pool"]), progress) for ch in CHANNELS}
    )
    base = (head, load_adaptation(base_dir, sidecar), float(sidecar.get("temperature", 1.0)))
    hparams = load_recipe(FINETUNE_HPARAMS, {"threads": threads, "progress": False, **({"number_of_epochs": epochs} if epochs else {})})
    meta = data.meta
    folds = []
    held_out: list[HeldOut] = []
    speaker_independent = len(speakers) >= 2 and not all(s.startswith("file:") for s in speakers)
    for held in speakers[:max_folds] if speaker_independent else []:
        test = np.flatnonzero(meta.speaker == held)
        train = np.flatnonzero(meta.speaker != held)
        if not len(test) or len(set(meta.label[train].tolist())) < len(classes):
            continue
        before = evaluate(base[0], data, base[1], test, base[2])
        tuned = train_head(hparams, data, train, test, base=base)
        folds.append({"speaker": held, "before": _summary(before), "after": _summary(tuned["test"])})
        scored = test[meta.label[test] >= 0]
        # seed 0: the call orders evaluate scores, so these are the "after" windows untempered.
        held_out.append((tuned["_head"], tuned["_spec"], scored, *_window_probs(tuned["_head"], tuned["_spec"], data, scored, 0)))
        if progress:
            print(
                f"[finetune] held-out {held}: UA {before['telephone/single']['ua']:.2f} -> "
                f"{tuned['test']['telephone/single']['ua']:.2f} (telephone, single-emotion calls)",
                file=sys.stderr,
            )
    calibration = _calibration(folds, held_out, data, base[2])
    if progress:
        print(f"[finetune] temperature {base[2]} -> {calibration['temperature']} ({calibration['temperature_from']})", file=sys.stderr)
    final = train_head(hparams, data, np.arange(len(meta.label)), None, base=base)
    save_head(final["_head"], output / "head.ckpt", {**extra, "finetuned_on": str(manifest_csv)})
    write_v2_model(
        output, final["_head"], final["_spec"], encoder=encoder_info["name"], temperature=float(calibration["temperature"]),
        pool=int(encoder_info["pool"]), labels=classes,
        trained_on=[*sidecar.get("trained_on", []), f"fine-tuned on {Path(manifest_csv).name} ({len(utterances)} clips)"],
        example_states=data.windows["clean"].states[:16].astype(np.float32), cost=sidecar.get("cost"),
    )  # fmt: skip
    report = {
        "manifest": str(manifest_csv),
        "data_licence": data_licence,
        "base_model": str(base_dir),
        "model": str(output),
        "data": summarise(rows),
        "speakers": speakers,
        "evaluation": "leave one speaker out: each fold fine-tunes on the other speakers and scores the held-out one, "
        "per 2-s window, clean and 8 kHz mu-law, mixed- and single-emotion calls",
        "folds": folds,
        "before": _mean(folds, "before") if folds else None,
        "after": _mean(folds, "after") if folds else None,
        "speaker_independent_validation": bool(folds),
        "calibration": calibration,
        "adaptation": str((sidecar.get("adaptation") or {}).get("mode", "none")),
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    (output / "finetune_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (output / "MODEL_CARD.md").write_text(_card(base_dir, output, manifest_csv, report), encoding="utf-8")
    return report


def _card(base_dir: Path, output: Path, manifest_csv: str | Path, report: dict[str, Any]) -> str:
    lines = [
        f"# {output.name}: {base_dir.name} with its head fine-tuned on {Path(manifest_csv).name}",
        "",
        f"Base: `{base_dir}` (encoder unchanged, frozen). Fine-tuned on {report['data']['clips']} clips of "
        f"{len(report['speakers'])} speakers ({', '.join(report['speakers'])}) with `emotune finetune` "
        f"in {report['wall_seconds']:.0f} s.",
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
        lines += ["", "| cell | UA before | UA after | angry recall before | after | ECE after (base T) |", "| --- | --- | --- | --- | --- | --- |"]
        for cell in CELLS:
            b, a = report["before"][cell], report["after"][cell]
            lines.append(f"| {cell} | {b['ua']:.1%} | {a['ua']:.1%} | {b['angry_recall']:.1%} | {a['angry_recall']:.1%} | {a['ece']:.3f} |")
    else:
        lines.append("No speaker column (or one speaker): no speaker-independent evaluation was possible.")
    return "\n".join([*lines, *_calibration_card(report["calibration"])]) + "\n"


def _calibration_card(cal: dict[str, Any]) -> list[str]:
    lines = ["", "## Confidence (temperature T in `emotion.json`)", ""]
    if "folds" not in cal:
        return [*lines, f"T = {cal['temperature']:.2f}, the base model's (fitted on its training corpora), kept: {cal['why']}."]
    unchanged = all(f["ua_recall_unchanged"] for f in cal["folds"])
    lower = sum(cal["ece_nested_temperature"][c] < cal["ece_base_temperature"][c] for c in CELLS)
    shipped = (
        f"T = {cal['temperature']:.2f}, fitted on {cal['temperature_from']} (speakers the fold heads never heard); "
        f"the base model's T = {cal['base_temperature']:.2f} was fitted on its own training corpora."
        if cal["temperature_from"] != "base model" else
        f"T = {cal['temperature']:.2f}, the base model's (fitted on its own training corpora), kept: the temperature "
        f"fitted on the held-out speakers pooled (T = {cal['fitted_temperature']:.2f}) calibrated them worse ({cal['why']})."
    )  # fmt: skip
    lines += [
        shipped + " ECE per 2-s window "
        "of each held-out speaker, mean over folds, at the base T and at a T fitted on the other folds only (nested: "
        "no speaker is scored with a temperature fitted on it). UA and recall "
        + ("are the same at both (T does not move the top class)." if unchanged else "differ between the two: see `finetune_report.json`.")
        + f" The nested ECE is lower than at the base T in {lower} of {len(CELLS)} cells.",
        "",
        f"| cell | ECE at base T = {cal['base_temperature']:.2f} | ECE at nested T |",
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
    args = parser.parse_args(argv)
    if not (args.base_model / "emotion.json").is_file():
        raise DataError(f"{args.base_model} is not a v2 model folder (no emotion.json)")
    report = run(args.manifest_csv, args.base_model, args.output_dir, args.epochs, threads=args.threads)
    print(json.dumps({k: report[k] for k in ("before", "after", "wall_seconds")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
