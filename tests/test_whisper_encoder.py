"""The Whisper-base encoder: our CTranslate2 reader, the torch rebuild and its ONNX export's contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emotion_runtime import weights, whisper_mel
from emotune.errors import ModelFileError

MODEL_BIN = weights.DEFAULT_ROOT / "whisper-base" / "model.bin"
ENCODER = weights.DEFAULT_ROOT / "whisper-base" / "encoder.onnx"

pytestmark = pytest.mark.skipif(
    not (MODEL_BIN.is_file() and ENCODER.is_file()), reason="Whisper-base files not installed (run `make weights`)"
)


def _mel(frames: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(frames * whisper_mel.HOP_LENGTH) / whisper_mel.SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(140 + 30 * np.sin(2 * np.pi * t)) / whisper_mel.SAMPLE_RATE
    audio = 0.1 * sum(np.sin(k * phase) / k for k in range(1, 20)) + 0.003 * rng.standard_normal(t.size)
    return whisper_mel.encoder_input(whisper_mel.log_mel_rows(audio.astype(np.float32)))


@pytest.fixture(scope="module")
def session():  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(weights.verify(ENCODER)), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def torch_encoder():  # type: ignore[no-untyped-def]
    from emotion_models.encoders.whisper_encoder import load_whisper_encoder

    return load_whisper_encoder()


def test_reader_reads_the_whisper_spec() -> None:
    from emotion_models.encoders.ct2_reader import read_model_bin

    model = read_model_bin(MODEL_BIN)
    assert model.spec == "WhisperSpec" and model.binary_version == 6
    assert model["encoder/conv1/weight"].shape == (512, 80, 3)
    assert model["encoder/position_encodings/encodings"].shape == (1500, 512)
    assert "encoder/layer_5/ffn/linear_1/weight" in model and "encoder/layer_6/ffn/linear_1/weight" not in model
    assert model["decoder/projection/weight"] is model["decoder/embeddings/weight"]  # an alias


def test_reader_refuses_a_truncated_file(tmp_path: Path) -> None:
    from emotion_models.encoders.ct2_reader import read_model_bin

    cut = tmp_path / "model.bin"
    with MODEL_BIN.open("rb") as src:
        cut.write_bytes(src.read(3_000_000))
    with pytest.raises(ModelFileError, match="truncated"):
        read_model_bin(cut)


def test_loader_refuses_an_unverified_model_bin(tmp_path: Path) -> None:
    from emotion_models.encoders.whisper_encoder import load_whisper_encoder

    fake = tmp_path / "whisper-base" / "model.bin"
    fake.parent.mkdir()
    fake.write_bytes(b"\0" * 64)
    with pytest.raises(ModelFileError, match=weights.entry("whisper-base/model.bin").sha256):
        load_whisper_encoder(fake)


def test_onnx_contract(session) -> None:  # type: ignore[no-untyped-def]
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    assert inp.name == "mel" and inp.type == "tensor(float)"
    assert inp.shape[:2] == [1, 80] and isinstance(inp.shape[2], str)  # dynamic T
    assert out.name == "hidden_states" and out.type == "tensor(float)"
    assert out.shape[0] == 7 and out.shape[1] == 1 and out.shape[3] == 512
    for frames in (200, 60):
        (hidden,) = session.run(["hidden_states"], {"mel": _mel(frames)})
        assert hidden.shape == (7, 1, frames // 2, 512) and hidden.dtype == np.float32


def test_onnx_matches_torch_on_a_short_input(session, torch_encoder) -> None:  # type: ignore[no-untyped-def]
    import torch

    from emotion_models.encoders.export import PARITY_TOLERANCE, scaled_diffs

    mel = _mel(80, seed=1)
    with torch.no_grad():
        expected = torch_encoder(torch.from_numpy(mel)).numpy()
    (got,) = session.run(["hidden_states"], {"mel": mel})
    assert scaled_diffs(got, expected).max() <= PARITY_TOLERANCE
    assert np.abs(got[:4] - expected[:4]).max() <= 1e-4  # the stem and first blocks: absolute too


def test_last_state_is_the_final_layer_norm(torch_encoder) -> None:  # type: ignore[no-untyped-def]
    import torch

    mel = torch.from_numpy(_mel(40, seed=3))
    with torch.no_grad():
        normed = torch_encoder(mel)
        torch_encoder.final_layer_norm = False
        try:
            raw = torch_encoder(mel)
        finally:
            torch_encoder.final_layer_norm = True
        torch.testing.assert_close(normed[:-1], raw[:-1])
        torch.testing.assert_close(normed[-1], torch_encoder.ln_post(raw[-1]))


def test_final_state_matches_ctranslate2(session) -> None:  # type: ignore[no-untyped-def]
    ctranslate2 = pytest.importorskip("ctranslate2", reason="ctranslate2 is not installed")
    mel = _mel(100, seed=2)
    model = ctranslate2.models.Whisper(str(MODEL_BIN.parent), device="cpu", compute_type="float32", intra_threads=1)
    theirs = np.asarray(model.encode(ctranslate2.StorageView.from_array(mel), to_cpu=True))[0]
    (ours,) = session.run(["hidden_states"], {"mel": mel})
    last = ours[-1, 0]
    cosine = (last * theirs).sum(-1) / (np.linalg.norm(last, axis=-1) * np.linalg.norm(theirs, axis=-1))
    assert cosine.min() > 0.9999


def test_truncated_variant_keeps_the_first_blocks(torch_encoder) -> None:  # type: ignore[no-untyped-def]
    import torch

    from emotion_models.encoders.whisper_encoder import load_whisper_encoder

    small = load_whisper_encoder(layers=2)
    mel = torch.from_numpy(_mel(40))
    with torch.no_grad():
        full, part = torch_encoder(mel), small(mel)
    assert part.shape == (3, 1, 20, 512)
    torch.testing.assert_close(part, full[:3])


def test_tuned_top_block_starts_as_the_encoders_last_layer(session) -> None:  # type: ignore[no-untyped-def]
    """The partly tuned variant recomputes only the last layer from block 5's cached output; untrained, it
    must reproduce what the frozen encoder.onnx gives (the pooled last layer the cache stores)."""
    import torch

    from emotion_models.tune_top_block import KEPT_LAYER, POOL, TopBlock
    from emotion_runtime.encoder import pool_states

    (hidden,) = session.run(["hidden_states"], {"mel": _mel(200)})
    expected = pool_states(hidden, POOL)[-1]
    with torch.inference_mode():
        got = TopBlock.pretrained().eval()(torch.from_numpy(hidden[KEPT_LAYER, :, :, :].astype(np.float32))).numpy()[0]
    assert got.shape == expected.shape == (10, 512)
    assert np.max(np.abs(got - expected)) < 1e-3 * max(1.0, float(np.abs(expected).max()))
