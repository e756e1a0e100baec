"""Measures the 2-s smart-turn encoder against the original 8-s graph; writes ``encoder_report.json``.

    .venv/bin/python -m export_onnx.smart_turn_report SRC ENCODER [--data ../shared/data/ravdess] [--out JSON]

1. parity: with the uncut positional table and an 8-s input, the encoder's hidden states against the
   original graph's own internal tensors (the original copied with those tensors as extra outputs);
2. alignment: 2 s of real speech placed where smart-turn places it (at the end of an 8-s buffer of
   silence), the 8-s model's states on the last 100 positions against the 2-s cut with the first or
   the last 100 positional rows, fed (a) the same mel frames and (b) a mel computed on the 2 s alone,
   with and without smart-turn's waveform normalisation; and the price of keeping 1 or 2 s of the
   silence as context (300 / 400 frames); cosines per frame and of the mean-pooled states;
3. cost, each model in a fresh process, 1 onnxruntime thread: wall and CPU ms per call (medians of 50,
   3 rounds) and the session's RSS. The machines are shared: the report records the load average.

The reference log-mel here is torch's STFT with a Slaney filterbank (the Whisper recipe; it matches
pipecat's numpy front end to 1e-5), kept apart from the runtime's numpy one on purpose.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from export_onnx.smart_turn_encoder import INPUT_NAME, WINDOW_FRAMES, build_encoder, tap_original

SAMPLE_RATE = 16000
SOURCE_SECONDS = 8
WINDOW_SAMPLES = WINDOW_FRAMES * 160


def whisper_log_mel(audio: np.ndarray, *, normalize_waveform: bool) -> np.ndarray:
    """[80, len/160] Whisper log-mel; ``normalize_waveform`` = smart-turn's zero-mean unit-variance step."""
    import torch
    import torchaudio

    x = torch.from_numpy(np.asarray(audio, dtype=np.float32))
    if normalize_waveform:
        x = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)
    spec = torch.stft(
        x.double(), 400, 160, window=torch.hann_window(400, dtype=torch.float64), return_complex=True
    )
    power = spec[:, :-1].abs() ** 2
    bank = torchaudio.functional.melscale_fbanks(
        201, 0.0, 8000.0, 80, SAMPLE_RATE, norm="slaney", mel_scale="slaney"
    )
    log_spec = torch.log10(torch.clamp(bank.double().T @ power, min=1e-10))
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).float().numpy()


def _session(model: onnx.ModelProto | Path) -> Any:
    from emotion_runtime.files import open_session

    if isinstance(model, Path):
        return open_session(model, 1)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save(model, path)
        return open_session(path, 1)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame cosine of [..., frames, dim] arrays."""
    num = (a * b).sum(-1)
    return num / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)


def _speech_crops(data: Path, count: int) -> list[tuple[str, np.ndarray]]:
    """The loudest 2 s of ``count`` clips spread over the manifest (every speaker, every emotion)."""
    import soundfile as sf

    paths = sorted(data.glob("Actor_*/*.flac"))
    picked = paths[:: max(1, len(paths) // count)][:count]
    crops = []
    for path in picked:
        audio, rate = sf.read(path, dtype="float32")
        if rate != SAMPLE_RATE or audio.ndim != 1 or len(audio) < WINDOW_SAMPLES:
            continue
        energy = np.convolve(audio.astype(np.float64) ** 2, np.ones(WINDOW_SAMPLES), mode="valid")
        start = int(np.argmax(energy[::160])) * 160
        crops.append((str(path.relative_to(data)), audio[start : start + WINDOW_SAMPLES]))
    return crops


def parity(source: onnx.ModelProto, seed: int = 0) -> dict[str, Any]:
    """Uncut encoder vs the original's internal tensors, on random and on speech-like 8-s inputs."""
    tapped, names = tap_original(source)
    original, plain, full = _session(tapped), _session(source), _session(build_encoder(source, frames=800))
    rng = np.random.default_rng(seed)
    worst = 0.0
    equal = True
    for _ in range(3):
        mel = rng.uniform(-1.0, 1.5, (1, 80, 800)).astype(np.float32)
        ours = full.run(None, {INPUT_NAME: mel})[0]
        theirs = original.run(None, {"input_features": mel})
        untapped = plain.run(None, {"input_features": mel})[0]
        equal &= bool(np.array_equal(theirs[0], untapped))  # tapping did not change the original
        for k in range(len(names)):
            equal &= bool(np.array_equal(ours[k], theirs[1 + k]))
            worst = max(worst, float(np.abs(ours[k] - theirs[1 + k]).max()))
    return {"tensors": list(names), "inputs": 3, "bit_exact": equal, "max_abs_diff": worst}


def _similarity(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Per-frame and mean-pooled cosines of (ours, target) pairs of [states, frames, dim]."""
    frame = np.stack([_cosines(a, b) for a, b in pairs])  # [clips, states, frames]
    pooled = np.stack([_cosines(a.mean(1), b.mean(1)) for a, b in pairs])  # [clips, states]

    def r(values: np.ndarray) -> list[float]:
        return [round(float(v), 4) for v in values]

    return {
        "frame_cosine_mean": r(frame.mean(axis=(0, 2))),
        "frame_cosine_p5": r(np.percentile(frame.transpose(1, 0, 2).reshape(frame.shape[1], -1), 5, axis=1)),
        "frame_cosine_worst": r(frame.min(axis=(0, 2))),
        "pooled_cosine_mean": r(pooled.mean(axis=0)),
        "pooled_cosine_worst": r(pooled.min(axis=0)),
    }


def alignment(source: onnx.ModelProto, crops: list[tuple[str, np.ndarray]]) -> dict[str, Any]:
    """Cosines per state (index 0..L) between cut variants and the 8-s model on the same speech."""
    full = _session(build_encoder(source, frames=800))
    cuts = {p: _session(build_encoder(source, positions=p)) for p in ("last", "first")}  # type: ignore[arg-type]
    longer = {f: _session(build_encoder(source, frames=f)) for f in (300, 400)}
    seq = WINDOW_FRAMES // 2
    pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}

    def add(key: str, ours: np.ndarray, target: np.ndarray) -> None:
        pairs.setdefault(key, []).append((ours[:, 0, -seq:], target))

    for _name, speech in crops:
        buffer = np.zeros(SOURCE_SECONDS * SAMPLE_RATE, dtype=np.float32)
        buffer[-WINDOW_SAMPLES:] = speech  # smart-turn: keep the end, pad silence at the start
        mel8 = whisper_log_mel(buffer, normalize_waveform=True)
        target = full.run(None, {INPUT_NAME: mel8[None]})[0][:, 0, -seq:]
        inputs = {
            "same_mel_frames": mel8[:, -WINDOW_FRAMES:],
            "own_mel_waveform_normalized": whisper_log_mel(speech, normalize_waveform=True),
            "own_mel_plain": whisper_log_mel(speech, normalize_waveform=False),
        }
        for p, sess in cuts.items():
            for f, mel in inputs.items():
                add(f"{p}_rows/{f}", sess.run(None, {INPUT_NAME: mel[None]})[0], target)
        for frames, sess in longer.items():  # the cost of keeping some of the silence as context
            add(
                f"last_rows_{frames}_frames_silence_context",
                sess.run(None, {INPUT_NAME: mel8[None, :, -frames:]})[0],
                target,
            )
        # Whisper's own placement (speech first, silence after) against the first rows, for contrast.
        buffer = np.zeros_like(buffer)
        buffer[:WINDOW_SAMPLES] = speech
        mel8 = whisper_log_mel(buffer, normalize_waveform=True)
        target = full.run(None, {INPUT_NAME: mel8[None]})[0][:, 0, :seq]
        add(
            "speech_first_placement_first_rows/same_mel_frames",
            cuts["first"].run(None, {INPUT_NAME: mel8[None, :, :WINDOW_FRAMES]})[0],
            target,
        )
    return {key: _similarity(value) for key, value in pairs.items()}


_TIMING = """
import json, sys, time
import numpy as np
import onnx
from onnx import TensorProto, helper
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS'):
            return int(line.split()[1]) / 1024
from pathlib import Path
import onnxruntime as ort
from emotion_runtime.files import open_session
path, shape, name = json.loads(sys.argv[1])
res = {"imports_rss_mb": round(rss(), 1)}
# A trivial session first: onnxruntime's environment (thread pools, kernel registry) is paid once per
# process, by whichever session comes first; the runtime already holds one for its emotion head.
io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in "xy"]
tiny = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "t", io[:1], io[1:]))
warm = ort.InferenceSession(tiny.SerializeToString(), providers=["CPUExecutionProvider"])
warm.run(None, {"x": np.zeros(1, np.float32)})
res["onnxruntime_environment_rss_mb"] = round(rss() - res["imports_rss_mb"], 1)
before = rss()
sess = open_session(Path(path), 1)
x = np.random.default_rng(0).uniform(-1, 1.5, shape).astype(np.float32)
for _ in range(5):
    sess.run(None, {name: x})
# Wall time and this thread's CPU time (with 1 intra-op thread onnxruntime computes on the caller's
# thread): on a shared machine the CPU time is the steadier figure.
rounds, cpu_rounds = [], []
for _ in range(3):
    times, cpu = [], []
    for _ in range(50):
        t, c = time.perf_counter(), time.thread_time()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - t) * 1000); cpu.append((time.thread_time() - c) * 1000)
    rounds.append(round(float(np.median(times)), 2)); cpu_rounds.append(round(float(np.median(cpu)), 2))
    time.sleep(1.0)
res.update({"ms_median_of_50_best_round": min(rounds), "ms_median_of_50_per_round": rounds,
            "cpu_ms_median_of_50_best_round": min(cpu_rounds), "cpu_ms_median_of_50_per_round": cpu_rounds,
            "session_rss_mb": round(rss() - before, 1), "process_rss_mb": round(rss(), 1)})
print(json.dumps(res))
"""


def _timing_and_rss(encoder: Path, source: Path) -> dict[str, Any]:
    """Each model in a fresh process (1 onnxruntime thread), so RSS is that session's own."""
    import tempfile

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [("encoder_2s", encoder, [1, 80, 200], INPUT_NAME)]
        for frames in (300, 400):
            path = Path(tmp) / f"encoder_{frames}.onnx"
            onnx.save(build_encoder(onnx.load(source), frames=frames), path)
            jobs.append((f"encoder_{frames}_frames", path, [1, 80, frames], INPUT_NAME))
        jobs.append(("original_8s", source, [1, 80, 800], "input_features"))
        for key, path, shape, name in jobs:
            spec = json.dumps([str(path), shape, name])
            out = subprocess.run(
                [sys.executable, "-c", _TIMING, spec], check=True, capture_output=True, text=True
            ).stdout
            results[key] = json.loads(out.strip().splitlines()[-1])
    return results


def run(src: Path, encoder: Path, data: Path | None, clips: int) -> dict[str, Any]:
    source = onnx.load(src)
    report: dict[str, Any] = {
        "encoder": str(encoder),
        "encoder_sha256": hashlib.sha256(encoder.read_bytes()).hexdigest(),
        "source": "pipecat-ai==1.14.0 pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
        "source_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
        "contract": {
            "input": {"name": "mel", "dtype": "float32", "shape": [1, 80, 200]},
            "output": {"name": "hidden_states", "dtype": "float32", "shape": [5, 1, 100, 384]},
            "features": "Whisper log-mel, 16 kHz, n_fft 400, hop 160, 80 Slaney mels: log10, clamp at max-8, (x+4)/4",
            "states": "0: conv stem + positional embedding; 1..4: transformer blocks; 4 has the final layer norm",
            "positional_rows": "300:400 of 400 (the last 100)",
        },
        "machine": {"cpu": platform.processor() or platform.machine(), "onnxruntime_threads": 1},
        "parity_uncut_8s": parity(source),
    }
    if data is not None and data.is_dir():
        crops = _speech_crops(data, clips)
        report["alignment"] = {
            "data": f"{data.name}: loudest 2 s of {len(crops)} clips spread over all actors and emotions",
            "target": "8-s model, speech at the end of the buffer (smart-turn's placement), last 100 positions",
            "results": alignment(source, crops),
        }
    else:
        report["alignment"] = {"skipped": f"no speech data at {data}"}
    t0 = time.perf_counter()
    report["cost"] = _timing_and_rss(encoder, src)
    report["cost"]["measured_in_s"] = round(time.perf_counter() - t0, 1)
    # The build machines are shared: the load says how much the times were disturbed.
    report["cost"]["load_average_1min"] = round(os.getloadavg()[0], 2)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export_onnx.smart_turn_report")
    parser.add_argument("src", type=Path)
    parser.add_argument("encoder", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ravdess"))
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--out", type=Path, default=None, help="default: encoder_report.json beside ENCODER")
    args = parser.parse_args(argv)
    report = run(args.src, args.encoder, args.data, args.clips)
    out = args.out or args.encoder.with_name("encoder_report.json")
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
