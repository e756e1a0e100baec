"""What operator fine-tuning buys, measured: a RAVDESS-only model adapted to a few EmoDB speakers.

    nohup .venv/bin/python -m emotion_models.finetune_demo --data ../shared/data \\
        --out results/finetune_demo > results/finetune_demo.log 2>&1 &

1. train the shipped recipe on RAVDESS only (English actors);
2. fine-tune it with :func:`emotion_models.finetune.run` on a CSV of ``--adapt-speakers`` EmoDB
   speakers (German), as an operator would with their own calls;
3. test both models on the EmoDB speakers never used (held out from steps 1 and 2).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

from emotion_models.data import load_clips
from emotion_models.evaluate import evaluate_clips
from emotion_models.experiments import HPARAMS, _overrides
from emotion_models.finetune import run as finetune
from emotion_models.model import load_checkpoint
from emotion_models.prepare import build_manifest
from emotion_models.train import load_hparams, run_on_clips

__all__ = ["main"]


def _scores(results: dict[str, Any]) -> dict[str, float]:
    return {ch: round(e["ua"], 4) for ch, e in results.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("results/finetune_demo"))
    parser.add_argument("--adapt-speakers", nargs="+", default=["emodb_08", "emodb_09", "emodb_10", "emodb_11"])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--ft-epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variance-norm", default="per_bin")
    parser.add_argument("--reuse", action="store_true", help="keep an existing RAVDESS-only checkpoint")
    args = parser.parse_args(argv)

    split = {"mode": "cross_corpus", "train_corpora": ["ravdess"], "test_corpora": ["emodb"], "dev_fraction": 0.15}
    hp = load_hparams(HPARAMS, _overrides(args.data, args.out / "ravdess_only", {
        "split": split, "number_of_epochs": args.epochs, "threads": args.threads,
        "variance_norm": args.variance_norm, "experiment": "ravdess_only"}))  # fmt: skip
    rows = build_manifest(hp["data_sources"], hp["classes"])
    clips = load_clips(rows)
    if not (args.reuse and (args.out / "ravdess_only" / "model.ckpt").is_file()):
        run_on_clips(hp, clips, args.out / "ravdess_only", progress=False)

    adapt_rows = [r for r in rows if r.speaker in args.adapt_speakers]
    unseen = [c for c in clips if c.corpus == "emodb" and c.speaker not in args.adapt_speakers]
    csv_path = args.out / "operator_calls.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "speaker"])
        writer.writerows([str(Path(r.path).resolve()), r.label, r.speaker] for r in adapt_rows)

    base, _ = load_checkpoint(args.out / "ravdess_only" / "model.ckpt")
    before = evaluate_clips(base, unseen, hp["classes"])
    report = finetune(csv_path, args.out / "ravdess_only" / "model.ckpt", args.out / "finetuned",
                      epochs=args.ft_epochs, threads=args.threads, progress=False)  # fmt: skip
    tuned, _ = load_checkpoint(args.out / "finetuned" / "model.ckpt")
    after = evaluate_clips(tuned, unseen, hp["classes"])
    summary = {
        "adapt_speakers": args.adapt_speakers,
        "adapt_clips": len(adapt_rows),
        "unseen_speakers": sorted({c.speaker for c in unseen}),
        "unseen_clips": len(unseen),
        "ua_on_unseen_before": _scores(before),
        "ua_on_unseen_after": _scores(after),
        "finetune_seconds": report["training"]["wall_seconds"],
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"[finetune_demo] {json.dumps(summary)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
