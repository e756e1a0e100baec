"""Assemble the shipped model folder from an experiment run (checkpoint, results.json, plots).

    .venv/bin/python -m emotion_models.ship --run results/experiments/si_per_bin_cmvn \\
        --cross-corpus results/experiments/xc_per_bin_cmvn --experiments results/experiments \\
        --speed results/model_speed.json --window-eval results/shipped_eval.json \\
        --finetune-demo results/finetune_demo/summary.json --dest models/emotune-ser-v1

The checkpoint is re-saved atomically with its final meta (the export engineer polls for it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from emotion_models.evaluate import plot_confusion
from emotion_models.model import load_checkpoint, save_checkpoint
from emotion_models.train import LICENCE_NOTE

__all__ = ["ship", "plot_history", "main"]

TRAINING_DATA = [
    "RAVDESS speech (Livingstone & Russo 2018, CC BY-NC-SA 4.0): actors 01-16 (17-18 development)",
    "EmoDB (Burkhardt et al. 2005, research use): speakers 08-14 (15 development)",
]


def plot_history(history: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, ua_ax) = plt.subplots(1, 2, figsize=(8, 3.2))
    loss_ax.plot(epochs, [h["train_loss"] for h in history], label="train")
    loss_ax.plot(epochs, [h["dev_loss"] for h in history], label="development")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    loss_ax.legend()
    ua_ax.plot(epochs, [h["dev_ua"] for h in history], color="tab:green")
    ua_ax.set_xlabel("epoch")
    ua_ax.set_ylabel("development UA")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _load_summaries(folder: Path) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in sorted(folder.glob("summary_*.json")):
        merged.update(json.loads(path.read_text()))
    return merged


def ship(
    run: Path, cross_corpus: Path, experiments: Path, speed: Path | None, dest: Path, window_eval: Path | None = None,
    finetune_demo: Path | None = None,
) -> dict[str, Any]:
    results = json.loads((run / "results.json").read_text())
    model, meta = load_checkpoint(run / "model.ckpt")
    classes = results["classes"]
    xc = {d: json.loads((cross_corpus / d / "results.json").read_text()) for d in ("ravdess_to_emodb", "emodb_to_ravdess")}
    xc_summary = {
        d: {ch: {"ua": r["test"][ch]["ua"], "wa": r["test"][ch]["wa"], "recall": r["test"][ch]["recall"],
                 "confusion": r["test"][ch]["confusion"]} for ch in ("clean", "telephone")}
        for d, r in xc.items()
    }  # fmt: skip
    xc_mean = sum(v["clean"]["ua"] for v in xc_summary.values()) / 2
    dest.mkdir(parents=True, exist_ok=True)
    for channel, entry in results["test"].items():
        plot_confusion(entry["confusion"], classes,
                       f"held-out speakers, {channel}: UA {entry['ua']:.1%}", dest / f"confusion_{channel}.png")  # fmt: skip
    for direction, entry in xc_summary.items():
        plot_confusion(entry["clean"]["confusion"], classes,
                       f"cross-corpus {direction.replace('_', ' ')}: UA {entry['clean']['ua']:.1%}",
                       dest / f"confusion_{direction}.png")  # fmt: skip
    plot_history(results["training"]["history"], dest / "training_curve.png", f"training of {results['experiment']}")

    shipped = {
        "model": "emotune-ser-v1",
        "classes": classes,
        "architecture": results["model"],
        "recipe": results["experiment"],
        "training_data": TRAINING_DATA,
        "licence": LICENCE_NOTE,
        "arousal_valence": "label-derived auxiliary heads (not trained on annotated ratings)",
        "speaker_independent_test": {
            "speakers": results["split"]["test"]["speakers"],
            "clips": results["split"]["test"]["clips"],
            **{ch: {k: e[k] for k in ("ua", "wa", "recall", "confusion", "per_corpus")} for ch, e in results["test"].items()},
        },
        "cross_corpus_same_recipe": {**xc_summary, "mean_ua_clean": xc_mean,
                                     "note": "separate trainings of the same recipe on one corpus, tested on the other"},
        "training": {k: results["training"][k] for k in ("best_epoch", "best_dev_ua", "train_seconds")},
        "experiments": _load_summaries(experiments),
    }  # fmt: skip
    if window_eval is not None and window_eval.is_file():
        # Streaming view: one label per 2-s window (1-s hop), as the runtime emits them.
        shipped["speaker_independent_test_per_window"] = json.loads(window_eval.read_text())["per_window_2s_hop_1s"]
    if finetune_demo is not None and finetune_demo.is_file():
        shipped["finetune_demo"] = json.loads(finetune_demo.read_text())
    if speed is not None and speed.is_file():
        shipped["speed_per_2s_window"] = json.loads(speed.read_text())
    meta.pop("model_config", None)
    meta.update(
        training_data=TRAINING_DATA,
        licence=LICENCE_NOTE,
        results={"speaker_independent_clean_ua": results["test"]["clean"]["ua"],
                 "speaker_independent_telephone_ua": results["test"]["telephone"]["ua"],
                 "cross_corpus_mean_ua": xc_mean},  # fmt: skip
    )
    (dest / "results.json").write_text(json.dumps(shipped, indent=2), encoding="utf-8")
    save_checkpoint(dest / "model.ckpt", model, meta)
    return shipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--cross-corpus", type=Path, required=True)
    parser.add_argument("--experiments", type=Path, default=Path("results/experiments"))
    parser.add_argument("--speed", type=Path)
    parser.add_argument("--window-eval", type=Path, help="JSON from python -m emotion_models.evaluate")
    parser.add_argument("--finetune-demo", type=Path, help="summary.json from emotion_models.finetune_demo")
    parser.add_argument("--dest", type=Path, default=Path("models/emotune-ser-v1"))
    args = parser.parse_args(argv)
    shipped = ship(args.run, args.cross_corpus, args.experiments, args.speed, args.dest, args.window_eval, args.finetune_demo)
    test = shipped["speaker_independent_test"]
    print(f"held-out speakers: clean UA {test['clean']['ua']:.1%}, telephone UA {test['telephone']['ua']:.1%}; "
          f"cross-corpus mean UA {shipped['cross_corpus_same_recipe']['mean_ua_clean']:.1%}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
