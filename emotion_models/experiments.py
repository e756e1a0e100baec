"""The experiment suite behind the shipped model (reads ../shared data; not needed by tests).

    nohup .venv/bin/python -m emotion_models.experiments --data ../shared/data \\
        --out results/experiments --only si_base xc_base > results/experiments.log 2>&1 &

Each experiment is the default hparams plus overrides. "si_*" = speaker-independent split
(RAVDESS actors 19-24 + EmoDB 03/16 held out); "xc_*" = cross-corpus pair (train RAVDESS ->
test EmoDB, and train EmoDB -> test RAVDESS; the score is the mean UA of the two directions).
Audio is decoded once and shared by every experiment.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from emotion_models.data import load_clips
from emotion_models.prepare import build_manifest, summarise
from emotion_models.train import load_hparams, run_on_clips

__all__ = ["EXPERIMENTS", "CROSS_CORPUS_SPLITS", "main"]

HPARAMS = Path(__file__).parent / "hparams" / "ecapa_small.yaml"

# name -> (what it changes, overrides)
EXPERIMENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "base": ("C=96, 2 blocks, full augmentation, arousal/valence aux, balanced sampling", {}),
    "no_aux": ("no arousal/valence auxiliary losses", {"arousal_weight": 0.0, "valence_weight": 0.0}),
    "no_aug": ("no augmentation except random crops", {"speed_prob": 0.0, "telephone_prob": 0.0,
               "noise_prob": 0.0, "reverb_prob": 0.0, "freq_mask_prob": 0.0}),  # fmt: skip
    "c64": ("smaller: C=64", {"channels": 64}),
    "c128": ("larger: C=128", {"channels": 128}),
    "per_bin_cmvn": ("per-bin variance normalisation instead of one variance per window", {"variance_norm": "per_bin"}),
    "short": ("15 epochs", {"number_of_epochs": 15}),
    "warp": ("+ mel-axis warp +-10% (p=0.5), wider speed range 0.85-1.15 (p=0.7)",
             {"speed_prob": 0.7, "_augment": {"freq_warp_prob": 0.5, "speeds": [0.85, 0.9, 1.1, 1.15]}}),
    "warp_c64_reg": ("warp + C=64, dropout 0.5", {"speed_prob": 0.7, "channels": 64, "dropout": 0.5,
                     "_augment": {"freq_warp_prob": 0.5, "speeds": [0.85, 0.9, 1.1, 1.15]}}),
}

CROSS_CORPUS_SPLITS = {
    "ravdess_to_emodb": {"mode": "cross_corpus", "train_corpora": ["ravdess"], "test_corpora": ["emodb"],
                         "dev_fraction": 0.15},  # fmt: skip
    "emodb_to_ravdess": {"mode": "cross_corpus", "train_corpora": ["emodb"], "test_corpora": ["ravdess"],
                         "dev_fraction": 0.2},  # fmt: skip
}


def _load(data: Path, out: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """hparams + overrides; ``_augment`` sets AugmentConfig fields the yaml does not expose."""
    extra = dict(extra)
    augment_fields = extra.pop("_augment", {})
    hp = load_hparams(HPARAMS, _overrides(data, out, extra))
    hp["augment"] = dataclasses.replace(hp["augment"], **augment_fields)
    return hp


def _overrides(data: Path, out: Path, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "data_folder_ravdess": str(data / "ravdess"),
        "data_folder_emodb": str(data / "emodb"),
        "output_folder": str(out),
        "progressbar": False,
        **extra,
    }


def _summary(results: dict[str, Any]) -> dict[str, Any]:
    test = results["test"]
    return {
        "ua_clean": round(test["clean"]["ua"], 4),
        "wa_clean": round(test["clean"]["wa"], 4),
        "ua_telephone": round(test["telephone"]["ua"], 4),
        "best_epoch": results["training"]["best_epoch"],
        "train_seconds": results["training"]["train_seconds"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder holding ravdess/ and emodb/")
    parser.add_argument("--out", type=Path, default=Path("results/experiments"))
    parser.add_argument("--only", nargs="*", help="run these, e.g. si_base xc_base (default: all)")
    parser.add_argument("--epochs", type=int, help="override epochs of every run")
    parser.add_argument("--xc-epochs", type=int, help="override epochs of cross-corpus runs")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run")
    args = parser.parse_args(argv)

    base = load_hparams(HPARAMS, _overrides(args.data, args.out, {}))
    rows = build_manifest(base["data_sources"], base["classes"])
    print(f"[data] {json.dumps(summarise(rows))}", flush=True)
    clips = load_clips(rows)
    print(f"[data] decoded {len(clips)} clips", flush=True)

    wanted = args.only or [f"{kind}_{name}" for name in EXPERIMENTS for kind in ("si", "xc")]
    summary_path = args.out / f"summary_{'_'.join(wanted) if args.only else 'all'}.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    for run_name in wanted:
        kind, name = run_name.split("_", 1)
        description, extra = EXPERIMENTS[name]
        extra = {**extra, "threads": args.threads}
        if args.epochs:
            extra["number_of_epochs"] = args.epochs
        started = time.time()
        if kind == "si":
            hp = _load(args.data, args.out / run_name, {**extra, "experiment": run_name})
            results = run_on_clips(hp, clips, args.out / run_name, progress=False)
            entry: dict[str, Any] = {"description": description, **_summary(results)}
        else:
            entry = {"description": description}
            uas = []
            for direction, split in CROSS_CORPUS_SPLITS.items():
                over = {**extra, "split": split, "experiment": f"{run_name}_{direction}"}
                if args.xc_epochs:
                    over["number_of_epochs"] = args.xc_epochs
                hp = _load(args.data, args.out / run_name / direction, over)
                results = run_on_clips(hp, clips, args.out / run_name / direction, progress=False, save=False)
                entry[direction] = _summary(results)
                uas.append(results["test"]["clean"]["ua"])
            entry["mean_ua_clean"] = round(sum(uas) / len(uas), 4)
        entry["wall_seconds"] = round(time.time() - started, 1)
        summary[run_name] = entry
        print(f"[experiment] {run_name}: {json.dumps(entry)}", flush=True)
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
