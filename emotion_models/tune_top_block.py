"""A partly tuned encoder: Whisper base's last block trained together with the v2 head, per LOCO fold.

Every v2 row so far keeps the pretrained encoder frozen. This is the "partly tuned" variant the
issue allows, sized to what two cores can train: the encoder's blocks 1-5 stay frozen and cached; the
last block (attention + FFN, 3.1 M weights) and its final layer norm are trained with the head.

    # 1. the cache: the usual pooled states of every layer + block 5's output at full frame rate
    .venv/bin/python -m emotion_models.tune_top_block cache --data ../shared/data --out results/cache/whisper-base-top \\
        --channels clean     # and a second process with --channels telephone
    # 2. per held-out corpus: the frozen-encoder head (stage 1, the LOCO row of the frozen encoder), then
    #    the last block + that head fine-tuned together (stage 2); both scored on the same windows
    .venv/bin/python -m emotion_models.tune_top_block loco --cache results/cache/whisper-base-top \\
        --hparams emotion_models/hparams/tune_top_block.yaml --corpora korean_operator --out results/v2/top/korean

Stage 2 starts from stage 1's head, so the two rows differ only by the tuned block. The epoch is chosen
on development speakers of the training corpora, as in :mod:`emotion_models.train_head`; the test corpus
chooses nothing. Training draws are the recipe's (corpus x class balanced, both channels).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import speechbrain as sb
import torch
from torch import nn

from emotion_models.corpora import read_corpora
from emotion_models.encoder_cache import LayerCollector, build_streams, encode_windows
from emotion_models.encoders.whisper_encoder import load_whisper_encoder
from emotion_models.experiments_v2 import loco_row
from emotion_models.head import EmotionHead
from emotion_models.train_head import (
    CHANNELS,
    CONDITIONS,
    HeadBrain,
    TrainingData,
    _balanced_weights,
    _dev_speakers,
    _Draws,
    channel_condition_offsets,
    dev_speaker_temperature,
    evaluate,
    labelled_dev_rows,
    load_recipe,
    load_training_data,
    run,
)
from emotion_runtime import weights
from emotion_runtime.encoder import ENCODER_UNIT_VARIANCE, EncoderSession

__all__ = ["TopBlock", "block_inputs_path", "load_block_inputs", "main", "tune_fold"]

KEPT_LAYER = 5  # block 5's output: the input of the tuned block 6 (Whisper base has 6)
POOL = 10


def block_inputs_path(cache: Path, channel: str) -> Path:
    return cache / f"{channel}_layer{KEPT_LAYER}.npy"


def load_block_inputs(cache: Path) -> dict[str, np.ndarray]:
    """[N, T, D] float16 per channel, memory-mapped (aligned with the cache's windows)."""
    return {channel: np.load(block_inputs_path(cache, channel), mmap_mode="r") for channel in CHANNELS}


class TopBlock(nn.Module):
    """Whisper's last encoder block + final layer norm, then the cache's mean pooling:
    ``[B, T, D]`` (block 5's output) -> ``[B, T // pool, D]`` (the last layer's pooled state)."""

    def __init__(self, block: nn.Module, final_norm: nn.Module, pool: int = POOL) -> None:
        super().__init__()
        self.block, self.final_norm, self.pool = block, final_norm, pool

    @classmethod
    def pretrained(cls, pool: int = POOL) -> TopBlock:
        encoder = load_whisper_encoder()
        return cls(copy.deepcopy(encoder.blocks[-1]), copy.deepcopy(encoder.ln_post), pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.final_norm(self.block(x))
        batch, frames, dim = y.shape
        blocks = frames // self.pool
        return y[:, : blocks * self.pool].reshape(batch, blocks, self.pool, dim).mean(dim=2)


class _TunedDraws(_Draws):
    """The recipe's draws plus the window's block input on the same channel."""

    def __init__(self, data: TrainingData, offsets: dict[tuple[str, str], np.ndarray], rows: np.ndarray,
                 inputs: dict[str, np.ndarray]) -> None:  # fmt: skip
        super().__init__(data, offsets, rows)
        self.inputs = inputs

    def __getitem__(self, item: int) -> tuple[torch.Tensor, ...]:
        row, rest = divmod(item, len(CHANNELS) * len(CONDITIONS))
        channel = CHANNELS[rest // len(CONDITIONS)]
        block_input = torch.from_numpy(np.asarray(self.inputs[channel][int(self.rows[row])], dtype=np.float32))
        return (*super().__getitem__(item), block_input)


class TopBlockBrain(HeadBrain):
    """HeadBrain whose last encoder layer is recomputed by the trained block; the block learns at
    ``block_lr_scale`` times the head's rate and its best-epoch state is kept with the head's."""

    def compute_forward(self, batch: Sequence[torch.Tensor], stage: sb.Stage) -> tuple[torch.Tensor, torch.Tensor]:
        top = self.modules.top(batch[-1].to(self.device))  # the block's input, after _Draws' items
        states = torch.cat([batch[0][:, :-1].to(self.device), top[:, None]], dim=1)
        return super().compute_forward([states, *batch[1:-1]], stage)

    def on_stage_start(self, stage: sb.Stage, epoch: int | None = None) -> None:
        super().on_stage_start(stage, epoch)
        if stage == sb.Stage.TRAIN and self.optimizer is not None:
            self.optimizer.param_groups[0]["lr"] *= self.hparams.block_lr_scale

    def on_stage_end(self, stage: sb.Stage, stage_loss: float, epoch: int | None = None) -> None:
        super().on_stage_end(stage, stage_loss, epoch)
        if stage != sb.Stage.TRAIN and self.hparams.best.get("epoch") == epoch:
            self.hparams.best["top"] = copy.deepcopy(self.modules.top.state_dict())


@torch.inference_mode()
def _recompute_top(data: TrainingData, inputs: dict[str, np.ndarray], top: TopBlock, rows: np.ndarray) -> TrainingData:
    """A copy of ``data`` whose last layer is recomputed by ``top`` on ``rows`` (the others unchanged)."""
    top.eval()
    windows = {}
    for channel in CHANNELS:
        ws = copy.copy(data.windows[channel])
        states = ws.states.copy()
        for start in range(0, len(rows), 128):
            chunk = rows[start : start + 128]
            x = torch.from_numpy(np.asarray(inputs[channel][chunk], dtype=np.float32))
            states[chunk, -1] = top(x).numpy().astype(np.float16)
        ws.states = states
        windows[channel] = ws
    return TrainingData(windows)


def tune_fold(
    hparams: dict[str, Any], data: TrainingData, inputs: dict[str, np.ndarray], train_rows: np.ndarray,
    test_rows: np.ndarray, frozen: dict[str, Any],
) -> dict[str, Any]:
    """Stage 2 of one fold: the last block + ``frozen``'s head trained together; scored like stage 1."""
    torch.manual_seed(int(hparams["seed"]))
    torch.set_num_threads(int(hparams.get("threads", 1)))
    meta = data.meta
    spec = frozen["_spec"]
    head: EmotionHead = copy.deepcopy(frozen["_head"])
    top = TopBlock.pretrained()
    dev_speakers = _dev_speakers(meta, train_rows, hparams["dev_share"], hparams["seed"])
    fit_rows = train_rows[~np.isin(meta.speaker[train_rows], dev_speakers)]
    pooled = {channel: data.windows[channel].pooled for channel in CHANNELS}
    offsets = channel_condition_offsets(spec, pooled, meta, train_rows, hparams["seed"])
    per_row = _balanced_weights(meta, fit_rows)
    cells = len(CHANNELS) * len(CONDITIONS)
    sampler = torch.utils.data.WeightedRandomSampler(
        np.repeat(per_row / cells, cells).tolist(), num_samples=int(hparams["tune_draws_per_epoch"]), replacement=True,
        generator=torch.Generator().manual_seed(int(hparams["seed"])),
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(
        _TunedDraws(data, offsets, fit_rows, inputs), batch_size=int(hparams["tune_batch_size"]), sampler=sampler
    )
    dev_rows = labelled_dev_rows(meta, train_rows, dev_speakers)
    dev_loader = torch.utils.data.DataLoader(_TunedDraws(data, offsets, dev_rows, inputs), batch_size=128)
    state: dict[str, Any] = {"history": [], "best": {}}
    lr = float(hparams["tune_lr"])

    def optimiser(_: Any) -> torch.optim.Optimizer:
        groups = [{"params": top.parameters()}, {"params": head.parameters()}]
        return torch.optim.AdamW(groups, lr=lr, weight_decay=hparams["weight_decay"])

    brain = TopBlockBrain(
        modules={"head": head, "top": top}, opt_class=optimiser,
        hparams={**hparams, "lr": lr, "number_of_epochs": hparams["tune_epochs"], **state},
        run_opts={"device": "cpu", "noprogressbar": True},
    )  # fmt: skip
    started = time.monotonic()
    brain.fit(sb.utils.epoch_loop.EpochCounter(int(hparams["tune_epochs"])), loader, dev_loader)
    head.load_state_dict(state["best"]["state"])
    top.load_state_dict(state["best"]["top"])
    head.eval()
    tuned = _recompute_top(data, inputs, top, np.union1d(dev_rows, test_rows))
    temperature = dev_speaker_temperature(head, spec, tuned, train_rows, dev_speakers, int(hparams["seed"]))
    return {
        "best_epoch": state["best"]["epoch"],
        "dev_ua": round(float(state["best"]["dev_ua"]), 4),
        "temperature": round(temperature, 3),
        "history": state["history"],
        "tune_s": round(time.monotonic() - started, 1),
        "test": evaluate(head, tuned, spec, test_rows, temperature),
    }


def _public(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if not k.startswith("_")}


def _cache(args: argparse.Namespace) -> int:
    streams = build_streams(read_corpora(args.data))
    encoder = EncoderSession.load(weights.verified_path("whisper-base/encoder.onnx"), intra_op_threads=args.threads)
    for channel in args.channels:
        kept = LayerCollector(KEPT_LAYER)
        windows = encode_windows(streams, encoder, channel, ENCODER_UNIT_VARIANCE["whisper-base"], POOL, collect=kept)
        args.out.mkdir(parents=True, exist_ok=True)
        np.save(block_inputs_path(args.out, channel), np.stack(kept.frames))
        windows.save(args.out / f"{channel}.npz")
        print(f"wrote {args.out / channel}.npz and its block inputs", file=sys.stderr)
    return 0


def _loco(args: argparse.Namespace) -> int:
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    hparams = load_recipe(args.hparams, {**overrides, "progress": True})
    data = load_training_data(args.cache)
    inputs = load_block_inputs(args.cache)
    meta = data.meta
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"hparams": str(args.hparams), "overrides": overrides, "folds": {}}
    for corpus in args.corpora:
        test = meta.corpus == corpus
        train_rows, test_rows = np.flatnonzero(~test), np.flatnonzero(test & meta.original)
        started = time.monotonic()
        frozen = run(hparams, data, train_rows, test_rows)
        entry = {"frozen": {**_public(frozen), "train_s": round(time.monotonic() - started, 1)}}
        entry["tuned"] = tune_fold(hparams, data, inputs, train_rows, test_rows, frozen)
        results["folds"][corpus] = entry
        for name in ("frozen", "tuned"):
            cell = entry[name]["test"]["telephone/single"]
            print(f"[top] {corpus} {name}: telephone UA {cell['ua']:.3f} angry {cell['recall']['angry']:.3f}", file=sys.stderr)
        (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


def _merge(args: argparse.Namespace) -> int:
    """The LOCO rows of both stages from the per-process results (one row per stage, the same folds)."""
    parts = [json.loads((folder / "results.json").read_text()) for folder in args.parts]
    folds = {corpus: entry for part in parts for corpus, entry in part["folds"].items()}
    report = {
        "what": "Whisper base: frozen encoder + head (stage 1) vs the last block + head tuned (stage 2), per LOCO fold",
        "commands": args.commands,
        "hparams": parts[0]["hparams"],
        "overrides": parts[0].get("overrides", {}),
        "rows": {stage: loco_row({c: e[stage] for c, e in folds.items()}) for stage in ("frozen", "tuned")},
        "stage_seconds": {c: {"frozen": e["frozen"]["train_s"], "tuned": e["tuned"]["tune_s"]} for c, e in folds.items()},
        "dev_ua": {c: {"frozen": e["frozen"]["dev_ua"], "tuned": e["tuned"]["dev_ua"]} for c, e in folds.items()},
        "folds": folds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["rows"], indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cache = sub.add_parser("cache", help="encode every window once: pooled states + block 5's full output")
    cache.add_argument("--data", type=Path, default=Path("../shared/data"))
    cache.add_argument("--out", type=Path, required=True)
    cache.add_argument("--channels", nargs="+", default=list(CHANNELS), choices=CHANNELS)
    cache.add_argument("--threads", type=int, default=1)
    loco = sub.add_parser("loco", help="per held-out corpus: frozen head, then the last block + head tuned")
    loco.add_argument("--cache", type=Path, required=True)
    loco.add_argument("--hparams", type=Path, required=True)
    loco.add_argument("--corpora", nargs="+", required=True)
    loco.add_argument("--out", type=Path, required=True)
    loco.add_argument("--set", nargs="*", default=[], help="hparam overrides key=value (YAML values)")
    merge = sub.add_parser("merge", help="one JSON with both stages' LOCO rows from the loco runs' folders")
    merge.add_argument("parts", type=Path, nargs="+")
    merge.add_argument("--commands", nargs="+", default=[], help="the commands that made the parts (recorded)")
    merge.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    return {"cache": _cache, "loco": _loco, "merge": _merge}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
