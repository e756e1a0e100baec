"""smart-turn v3.2 cut into the 2-s encoder: contract, determinism, parity with the original graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export_onnx.smart_turn_encoder import (
    INPUT_NAME,
    OUTPUT_NAME,
    SmartTurnGraphError,
    build,
    build_encoder,
    find_taps,
    tap_original,
)

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "models" / "encoders" / "smart-turn-v3.2" / "smart-turn-v3.2-cpu.onnx"

needs_source = pytest.mark.skipif(
    not SOURCE.is_file(),
    reason=f"{SOURCE.relative_to(ROOT)} is not installed (pipecat-ai 1.14.0's smart-turn model; `make weights`)",
)


def _session(model: onnx.ModelProto | Path) -> object:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    data = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def source() -> onnx.ModelProto:
    return onnx.load(SOURCE)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    dst = tmp_path_factory.mktemp("encoder") / "encoder.onnx"
    return dst, build(SOURCE, dst)


@needs_source
def test_contract(built: tuple[Path, str]) -> None:
    path, _ = built
    sess = _session(path)
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()  # type: ignore[attr-defined]
    assert (inp.name, inp.shape, inp.type) == (INPUT_NAME, [1, 80, 200], "tensor(float)")
    assert (out.name, out.shape, out.type) == (OUTPUT_NAME, [5, 1, 100, 384], "tensor(float)")
    mel = np.random.default_rng(0).uniform(-1.0, 1.5, (1, 80, 200)).astype(np.float32)
    (hidden,) = sess.run(None, {INPUT_NAME: mel})  # type: ignore[attr-defined]
    assert hidden.shape == (5, 1, 100, 384) and hidden.dtype == np.float32
    assert np.isfinite(hidden).all()
    # The last state has the final layer norm applied: each frame is normalised before its affine.
    assert not np.allclose(hidden[-2].std(-1), hidden[-1].std(-1))
    # The end-of-turn head is gone.
    nodes = {n.name for n in onnx.load(path).graph.node}
    assert not any("classifier" in n or "pool_attention" in n for n in nodes)
    assert "node_sigmoid" not in nodes


@needs_source
def test_positional_rows_are_the_last_100(source: onnx.ModelProto, built: tuple[Path, str]) -> None:
    taps = find_taps(source)
    table = {i.name: numpy_helper.to_array(i) for i in source.graph.initializer}[taps.positions_initializer]
    cut = {i.name: numpy_helper.to_array(i) for i in onnx.load(built[0]).graph.initializer}
    np.testing.assert_array_equal(cut[taps.positions_initializer], table[-100:])
    first = build_encoder(source, positions="first")
    rows = {i.name: numpy_helper.to_array(i) for i in first.graph.initializer}[taps.positions_initializer]
    np.testing.assert_array_equal(rows, table[:100])


@needs_source
def test_deterministic(built: tuple[Path, str], tmp_path: Path) -> None:
    path, digest = built
    again = tmp_path / "other" / "encoder.onnx"
    assert build(SOURCE, again) == digest
    assert again.read_bytes() == path.read_bytes()


@needs_source
def test_uncut_states_equal_the_original_graph(source: onnx.ModelProto) -> None:
    tapped, names = tap_original(source)
    assert len(names) == 5
    full = _session(build_encoder(source, frames=800))
    original = _session(tapped)
    mel = np.random.default_rng(1).uniform(-1.0, 1.5, (1, 80, 800)).astype(np.float32)
    (ours,) = full.run(None, {INPUT_NAME: mel})  # type: ignore[attr-defined]
    theirs = original.run(None, {"input_features": mel})  # type: ignore[attr-defined]
    assert ours.shape == (5, 1, 400, 384)
    for k in range(5):
        np.testing.assert_array_equal(ours[k], theirs[1 + k], err_msg=names[k])


@needs_source
def test_bad_window_length(source: onnx.ModelProto) -> None:
    for frames in (0, 201, 802):
        with pytest.raises(ValueError, match="frames"):
            build_encoder(source, frames=frames)


def test_graph_without_the_pattern_is_refused() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    with pytest.raises(SmartTurnGraphError, match="positions"):
        find_taps(helper.make_model(graph))
