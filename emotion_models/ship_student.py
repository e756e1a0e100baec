"""Ship the distilled student as a v1 model folder: checkpoint, ONNX + sidecar (parity-checked), results, card.

    .venv/bin/python -m emotion_models.ship_student --loco emotion_models/results/student_loco \\
        --v1-loco emotion_models/results/v1_loco --dest models/emotune-ser-v1-student

The shipped weights are the LOCO fold whose test corpus is ``korean_operator`` (``--fold``): trained on
RAVDESS, EmoDB and TurEV (15% of their speakers pick the epoch) toward a teacher head trained without
korean_operator. So Korean stays out of the shipped model, and that fold's figures are this very model's
on a language it never heard. The graph is v1's (same network, same cost per window); the runtime loads
it as any v1 model (``emotion.onnx`` + ``emotion.json``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from emotion_models.model import load_checkpoint, save_checkpoint
from export_onnx.export import run as export

__all__ = ["LICENCES", "main", "ship"]

LICENCES = {
    "ravdess": "RAVDESS speech (Livingstone & Russo 2018, PLoS ONE 13(5): e0196391), CC BY-NC-SA 4.0",
    "emodb": "Berlin Database of Emotional Speech (Burkhardt et al. 2005), research use",
    "turev": "TurEV-DB (Canpolat, Ormanoglu & Zeyrek, SLTU-CCURL 2020), CC BY-NC-ND 4.0",
    "korean_operator": "emotiontts open DB sample (Selvas AI / KAIST), CC BY-NC-SA 4.0, research use only",
    "baved": "BAVED (github 40uf411), research use (the teacher's arousal output only)",
}
LICENCE_NOTE = (
    "Non-commercial / research use only: trained on RAVDESS (CC BY-NC-SA 4.0), EmoDB (research use) and "
    "TurEV-DB (CC BY-NC-ND 4.0), toward a teacher head also trained on BAVED (research use). "
    "Fine-tune on your own data for production."
)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _card(results: dict[str, Any]) -> str:
    row, v1 = results["modes"]["none"], results.get("v1_same_protocol") or {}
    cells = " / ".join(_pct(row["loco_ua"][c]) for c in ("clean/mixed", "telephone/mixed"))
    per_corpus = ", ".join(f"{c} {_pct(v['clean/mixed'])} (angry {_pct(row['loco_per_corpus_angry'][c]['clean/mixed'])})"
                           for c, v in row["loco_per_corpus_ua"].items())  # fmt: skip
    data = "\n".join(f"- {LICENCES[c]}" for c in results["training_data"])
    v1_line = (f"v1's recipe on the same folds and windows: LOCO mean UA {_pct(v1['loco_mean_ua'])}, worst angry recall "
               f"{_pct(min(v1['loco_worst_angry_recall'].values()))} (`{results['v1_results']}`)." if v1 else "")  # fmt: skip
    return f"""# Model card: emotune-ser-v1-student

The v1 network (`EmotionNet` on the runtime's 64 log-mels, C=96, 2 blocks: the same graph and cost per
window as `emotune-ser-v1`) trained by distillation toward the v2 smart-turn teacher (smart-turn v3.2
encoder + head), `emotion_models/distill.py` + `emotion_models/hparams/student_distill.yaml`. Four classes
**neutral, happy, sad, angry** (in this order) per 2-s window, every second; arousal and valence outputs
as v1 (label-derived). Files: `model.ckpt`, `emotion.onnx` + `emotion.json` (export with PyTorch parity:
`export_report.json`), `results.json` (every figure below).

## Licence: NON-COMMERCIAL weights

Trained on:
{data}

The teacher head was trained on the same corpora plus BAVED (research use; arousal only). The weights
inherit these terms: **non-commercial / research use only** (CC BY-NC-SA share-alike; TurEV-DB's
no-derivatives term applies to its recordings, which are not distributed here). Credit the corpora.
For production fine-tune on your own calls or retrain on data you hold the rights to.

## How it was evaluated

Leave one corpus out over RAVDESS, EmoDB, TurEV and korean_operator: for each held-out corpus a teacher
head and a student trained without it, scored on every 2-s window (1-s hop) of the held-out corpus, clean
and 8 kHz mu-law. These weights are the `{results['fold']}` fold (trained without Korean).

LOCO mean UA **{_pct(row['loco_mean_ua'])}** (clean / telephone {cells}); per held-out corpus, clean: {per_corpus};
worst angry recall {_pct(min(row['loco_worst_angry_recall'].values()))}; mean ECE {row['loco_mean_ece']:.2f}
(no temperature). {v1_line}
One seed per run; epochs cut to fit a shared machine (`results.json` -> `kd`).

## Limits

Acted speech in three languages. Zero-shot on another language it is much weaker (Korean above);
it never heard Korean. No per-call adaptation: the network normalises each window itself.
"""


def ship(loco: Path, fold: str, dest: Path, v1_loco: Path | None = None) -> dict[str, Any]:
    summary = json.loads((loco / "results.json").read_text())
    folds = json.loads((loco / "loco.json").read_text())["none"]["folds"]
    model, meta = load_checkpoint(loco / fold / "model.ckpt")
    training_data = list(meta["training_data"])
    if fold not in summary["modes"]["none"]["folds"] or fold in training_data:
        raise ValueError(f"{loco}: no LOCO fold {fold!r} whose model was trained without it")
    row = summary["modes"]["none"]
    dest.mkdir(parents=True, exist_ok=True)
    meta.pop("model_config", None)
    meta.update(
        training_data=[LICENCES[c] for c in training_data],
        licence=LICENCE_NOTE,
        results_summary={"loco_mean_ua": row["loco_mean_ua"], "loco_mean_ece": row["loco_mean_ece"],
                         "loco_results": "results.json"},  # fmt: skip
    )
    save_checkpoint(dest / "model.ckpt", model, meta)
    report = export(dest / "model.ckpt", dest, quantize=False)
    results: dict[str, Any] = {
        "model": "emotune-ser-v1-student",
        "fold": fold,
        "training_data": training_data,
        **{k: summary[k] for k in ("modes", "chosen_by_loco_mean", "kd", "command")},
        "shipped_fold": folds[fold],
        "teacher_per_fold": {c: f["teacher"]["test"] for c, f in folds.items()},
        "export": {k: report[k] for k in ("parity_max_abs_diff", "fp32_ms_per_2s_window", "fp32_bytes")},
    }
    if v1_loco is not None and (v1_loco / "results.json").is_file():
        results["v1_same_protocol"] = json.loads((v1_loco / "results.json").read_text())["modes"]["none"]
        results["v1_results"] = str(v1_loco / "results.json")
    (dest / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (dest / "MODEL_CARD.md").write_text(_card(results), encoding="utf-8")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loco", type=Path, default=Path("emotion_models/results/student_loco"))
    parser.add_argument("--v1-loco", type=Path, default=Path("emotion_models/results/v1_loco"))
    parser.add_argument("--fold", default="korean_operator")
    parser.add_argument("--dest", type=Path, default=Path("models/emotune-ser-v1-student"))
    args = parser.parse_args(argv)
    results = ship(args.loco, args.fold, args.dest, args.v1_loco)
    print(json.dumps({"dest": str(args.dest), "loco_mean_ua": results["modes"]["none"]["loco_mean_ua"],
                      "export": results["export"]}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
