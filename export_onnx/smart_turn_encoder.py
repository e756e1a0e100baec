"""pipecat's smart-turn v3.2 (Whisper-tiny encoder, 23 languages, int8) cut into a 2-s speech encoder.

    .venv/bin/python -m export_onnx.smart_turn_encoder SRC DST

SRC is ``smart-turn-v3.2-cpu.onnx`` from the ``pipecat-ai`` 1.14.0 wheel (BSD-2-Clause, Daily); DST is
usually ``models/encoders/smart-turn-v3.2/encoder.onnx``. The original maps 8 s of Whisper log-mel
``input_features [B, 80, 800]`` to an end-of-turn probability. This module keeps its encoder, drops the
end-of-turn head (attention pooling + classifier) and exposes every hidden state, by editing the graph
with ``onnx`` (no retraining, no re-quantization: the int8 QDQ weights are kept as they are).

Contract (the Whisper-base encoder follows the same one):

- input ``mel`` float32 ``[1, 80, 200]``: 2 s of Whisper log-mel (log10, clamp at max - 8, (x + 4) / 4);
- output ``hidden_states`` float32 ``[L + 1, 1, 100, 384]``, L = 4: index 0 after the conv stem plus the
  positional embedding, index i the output of transformer block i, the last index with the encoder's
  final layer norm applied.

Cutting 8 s to 2 s needs two edits besides the input shape: the positional-embedding table is sliced to
100 of its 400 rows, and the Reshape constants that spell the sequence length 400 become 100. smart-turn
keeps the END of the audio and pads silence at the start, so its speech sits on the last positions: the
default slice is the last 100 rows (``encoder_report.json`` measures both choices).

Features: smart-turn's own front end normalises the waveform to zero mean and unit variance before the
log-mel (transformers' ``do_normalize``); without that step the last state's cosine to the 8-s model
drops from 0.83 to 0.68 (``encoder_report.json``). Up to the 1e-10 floor, that normalisation is a
constant shift of the normalised log-mel by ``-log10(var(window samples)) / 4``.

Deterministic: the same source bytes give the same output bytes.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "WINDOW_FRAMES",
    "N_MELS",
    "EncoderTaps",
    "SmartTurnGraphError",
    "find_taps",
    "build_encoder",
    "build",
    "tap_original",
]

INPUT_NAME = "mel"
OUTPUT_NAME = "hidden_states"
N_MELS = 80
WINDOW_FRAMES = 200  # 2 s of 10-ms mel frames; the conv stem halves it to 100 encoder positions
SOURCE_INPUT = "input_features"

Positions = Literal["last", "first"]


class SmartTurnGraphError(ValueError):
    """The source graph does not have the structure this cut relies on."""


@dataclass(frozen=True)
class EncoderTaps:
    """Where the encoder's pieces are in the source graph (found by op pattern, not hard-coded)."""

    input_name: str
    positions_initializer: str  # [n_positions, d_model] table added after the conv stem
    n_positions: int
    d_model: int
    hidden: tuple[str, ...]  # L + 1 tensor names: stem + positions, block 1..L, final layer norm
    length_constants: tuple[str, ...]  # int64 initializers equal to [n_positions] used to build shapes


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    table: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            table.setdefault(name, []).append(node)
    return table


def find_taps(model: onnx.ModelProto) -> EncoderTaps:
    """Locate the positional add, the residual stream after every block and the final layer norm.

    The Whisper encoder is pre-norm: ``r0 = stem + positions``; each block is ``h = r + attn(LN(r))``,
    ``r' = h + ffn(LN(h))``; the encoder ends with ``LN(r_L)``. So the residual stream is followed from
    the positional Add through pairs of residual Adds until a tensor is consumed by a LayerNormalization
    only: that layer norm is the final one.
    """
    graph = model.graph
    if len(graph.input) != 1:
        raise SmartTurnGraphError(f"expected one graph input, found {len(graph.input)}")
    inits = {init.name: init for init in graph.initializer}
    users = _consumers(graph)

    position_adds = [
        (node, name)
        for node in graph.node
        if node.op_type == "Add"
        for name in node.input
        if name in inits and len(inits[name].dims) == 2 and inits[name].data_type == TensorProto.FLOAT
    ]
    if len(position_adds) != 1:
        raise SmartTurnGraphError(
            f"expected one Add of a 2-D float table (positions), found {len(position_adds)}"
        )
    pos_node, pos_name = position_adds[0]
    n_positions, d_model = (int(d) for d in inits[pos_name].dims)

    def residual_add(tensor: str) -> str | None:
        adds = [n for n in users.get(tensor, []) if n.op_type == "Add" and tensor in n.input]
        if len(adds) > 1:
            raise SmartTurnGraphError(
                f"tensor {tensor} feeds {len(adds)} Adds; the residual stream is ambiguous"
            )
        return adds[0].output[0] if adds else None

    hidden = [pos_node.output[0]]
    stream = pos_node.output[0]
    while True:
        after_attention = residual_add(stream)
        if after_attention is None:
            break
        after_ffn = residual_add(after_attention)
        if after_ffn is None:
            raise SmartTurnGraphError(f"block after {stream} has an attention residual but no FFN residual")
        hidden.append(after_ffn)
        stream = after_ffn
    final_norms = [n for n in users.get(stream, []) if n.op_type == "LayerNormalization"]
    if len(final_norms) != 1 or len(users[stream]) != 1:
        raise SmartTurnGraphError(
            f"the last block's output {stream} should feed exactly one LayerNormalization"
        )
    hidden[-1] = final_norms[0].output[0]
    if len(hidden) < 2:
        raise SmartTurnGraphError("no transformer block found after the positional embedding")

    length_constants = tuple(
        init.name
        for init in graph.initializer
        if init.data_type == TensorProto.INT64
        and list(init.dims) == [1]
        and int(numpy_helper.to_array(init)[0]) == n_positions
        and all(n.op_type == "Concat" for n in users.get(init.name, []))
    )
    return EncoderTaps(
        input_name=graph.input[0].name,
        positions_initializer=pos_name,
        n_positions=n_positions,
        d_model=d_model,
        hidden=tuple(hidden),
        length_constants=length_constants,
    )


def _keep_only_needed(graph: onnx.GraphProto, outputs: Sequence[str]) -> None:
    """Drop every node and initializer the given outputs do not depend on (the end-of-turn head)."""
    producer = {out: node for node in graph.node for out in node.output}
    needed: set[str] = set()
    stack = list(outputs)
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = producer.get(name)
        if node is not None:
            stack.extend(i for i in node.input if i)
    kept = [n for n in graph.node if any(o in needed for o in n.output)]
    del graph.node[:]
    graph.node.extend(kept)
    used = {i for n in kept for i in n.input}
    inits = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def build_encoder(
    source: onnx.ModelProto,
    *,
    frames: int = WINDOW_FRAMES,
    positions: Positions = "last",
    source_sha256: str = "",
) -> onnx.ModelProto:
    """The encoder graph for ``frames`` mel frames (even, at most the source's 800), all hidden states out.

    ``positions`` picks which rows of the positional table the shorter input uses: ``"last"`` (where
    smart-turn puts speech shorter than 8 s) or ``"first"`` (where Whisper puts it). With ``frames``
    equal to the source's length the table is unchanged and the hidden states equal the source's.
    """
    taps = find_taps(source)
    seq = frames // 2
    if frames % 2 or not 0 < seq <= taps.n_positions:
        raise ValueError(f"frames must be even and in 2..{2 * taps.n_positions}, got {frames}")
    model = copy.deepcopy(source)
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}

    table = numpy_helper.to_array(inits[taps.positions_initializer])
    rows = slice(taps.n_positions - seq, taps.n_positions) if positions == "last" else slice(0, seq)
    inits[taps.positions_initializer].CopyFrom(
        numpy_helper.from_array(np.ascontiguousarray(table[rows]), taps.positions_initializer)
    )
    for name in taps.length_constants:
        inits[name].CopyFrom(numpy_helper.from_array(np.array([seq], dtype=np.int64), name))

    for node in graph.node:
        for k, name in enumerate(node.input):
            if name == taps.input_name:
                node.input[k] = INPUT_NAME
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, N_MELS, frames]))

    axes = "emotune_unsqueeze_axes"
    graph.initializer.append(numpy_helper.from_array(np.array([0], dtype=np.int64), axes))
    stacked = []
    for k, name in enumerate(taps.hidden):
        stacked.append(f"emotune_hidden_{k}")
        graph.node.append(
            helper.make_node("Unsqueeze", [name, axes], [stacked[-1]], name=f"emotune_unsqueeze_{k}")
        )
    graph.node.append(
        helper.make_node("Concat", stacked, [OUTPUT_NAME], axis=0, name="emotune_hidden_states")
    )
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info(
            OUTPUT_NAME, TensorProto.FLOAT, [len(taps.hidden), 1, seq, taps.d_model]
        )
    )
    _keep_only_needed(graph, [OUTPUT_NAME])
    del graph.value_info[:]  # the source's shapes spell 400 positions; inferred again below

    graph.name = "smart_turn_v3_2_encoder"
    model.producer_name = "emotune.export_onnx.smart_turn_encoder"
    model.producer_version = "1"
    model.doc_string = (
        "Encoder of pipecat-ai 1.14.0 smart-turn-v3.2-cpu.onnx (BSD-2-Clause, Daily), end-of-turn head "
        f"removed, cut to {frames} mel frames using positional rows {rows.start}:{rows.stop}."
    )
    meta = {
        "emotune.contract": f"{INPUT_NAME} [1,{N_MELS},{frames}] Whisper log-mel -> "
        f"{OUTPUT_NAME} [{len(taps.hidden)},1,{seq},{taps.d_model}] (0: stem+positions, i: block i, last: final LN)",
        "emotune.source": "pipecat-ai==1.14.0 pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
        "emotune.source_sha256": source_sha256,
        "emotune.positional_rows": f"{rows.start}:{rows.stop}",
        "emotune.licence": "BSD-2-Clause (Copyright (c) 2024-2026, Daily)",
    }
    for key, value in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.checker.check_model(inferred)
    return inferred


def tap_original(source: onnx.ModelProto) -> tuple[onnx.ModelProto, tuple[str, ...]]:
    """A copy of the source graph that also outputs the tensors the encoder exposes (for parity checks)."""
    taps = find_taps(source)
    model = copy.deepcopy(source)
    for name in taps.hidden:
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return model, taps.hidden


def build(src: Path, dst: Path, *, frames: int = WINDOW_FRAMES, positions: Positions = "last") -> str:
    """Read the original, write the encoder to ``dst``; returns the sha256 of what was written."""
    data = src.read_bytes()
    encoder = build_encoder(
        onnx.load_from_string(data),
        frames=frames,
        positions=positions,
        source_sha256=hashlib.sha256(data).hexdigest(),
    )
    out = encoder.SerializeToString(deterministic=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.write_bytes(out)
    tmp.replace(dst)
    return hashlib.sha256(out).hexdigest()


SOURCE_ENTRY = "smart-turn-v3.2/smart-turn-v3.2-cpu.onnx"  # names in emotion_runtime.weights.REGISTRY
ENCODER_ENTRY = "smart-turn-v3.2/encoder.onnx"


def _registered_sha256(name: str) -> str | None:
    from emotion_runtime import weights
    from emotune.errors import ModelFileError

    try:
        return weights.entry(name).sha256
    except ModelFileError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m export_onnx.smart_turn_encoder", description=__doc__.split("\n")[0]
    )
    parser.add_argument("src", type=Path, help="smart-turn-v3.2-cpu.onnx (pipecat-ai 1.14.0)")
    parser.add_argument("dst", type=Path, help="where to write encoder.onnx")
    parser.add_argument(
        "--frames", type=int, default=WINDOW_FRAMES, help="mel frames per window (default 200 = 2 s)"
    )
    parser.add_argument(
        "--positions", choices=("last", "first"), default="last", help="positional rows to keep"
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="skip the sha256 checks against emotion_runtime.weights"
    )
    args = parser.parse_args(argv)
    if not args.src.is_file():
        print(f"error: source model not found: {args.src}", file=sys.stderr)
        return 2
    if not args.no_verify:
        expected = _registered_sha256(SOURCE_ENTRY)
        actual = hashlib.sha256(args.src.read_bytes()).hexdigest()
        if expected is None or actual != expected:
            print(
                f"error: {args.src} has sha256 {actual}, expected {expected} ({SOURCE_ENTRY})",
                file=sys.stderr,
            )
            return 1
    digest = build(args.src, args.dst, frames=args.frames, positions=args.positions)
    print(f"{args.dst}  sha256 {digest}")
    default_build = (args.frames, args.positions) == (WINDOW_FRAMES, "last")
    expected = None if args.no_verify or not default_build else _registered_sha256(ENCODER_ENTRY)
    if expected is not None and digest != expected:
        args.dst.unlink()
        print(
            f"error: the build does not match the registered {ENCODER_ENTRY} (expected {expected}); "
            "removed it. If the builder changed on purpose, update emotion_runtime/weights.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
