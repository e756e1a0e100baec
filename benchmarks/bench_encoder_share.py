"""Would sharing the Whisper encoder between recognition and the emotion model pay? (issue 13, item 1)

Run from the repo root with the toolkit venv::

    .venv/bin/python -m benchmarks.bench_encoder_share    # writes benchmarks/results/bench_encoder_share.json

Sharing could save at most the recogniser's encoder work, so this measures how much of a turn's
recognition that is: for every RAVDESS clip of ``bench_asr`` (actors 19-24, the phone line, clean), the
encoder alone on the input the recogniser builds (the turn + ``asr.context_margin_s`` of silence, CTranslate2
int8, one thread), against the whole recognition of the turn (``WhisperRecognizer.transcribe``, beam 5,
one worker). Both are timed in this process, one after the other, on the same machine. What the emotion
model's Whisper-base encoder costs comes from ``bench_variants.json`` (per stream-second, 2-s windows every
second, all seven layers, fp32 onnxruntime).
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.bench_asr import english_set  # noqa: E402
from benchmarks.line_signals import phone_line  # noqa: E402
from connectors.speech.asr import WhisperRecognizer, create_recognizer, verified_whisper_folder  # noqa: E402
from connectors.speech.asr_worker import encoder_input  # noqa: E402
from emotune.config import AsrConfig  # noqa: E402

__all__ = ["main"]

OUT = REPO_ROOT / "benchmarks" / "results" / "bench_encoder_share.json"
VARIANTS = REPO_ROOT / "benchmarks" / "results" / "bench_variants.json"


def _encoder_seconds(model: Any, audio: np.ndarray, margin_s: float) -> float:
    """The recogniser's encoder input for ``audio`` (:func:`asr_worker.encoder_input`), encoded once; seconds."""
    import ctranslate2

    mel = encoder_input(model.feature_extractor, [audio.astype(np.float32)], margin_s)
    started = time.perf_counter()
    model.model.encode(ctranslate2.StorageView.from_array(mel), to_cpu=True)
    return time.perf_counter() - started


def _emotion_encoder_ms_per_second() -> float | None:
    """The Whisper-base emotion variant's CPU per stream-second (its encoder is ~all of it), if measured."""
    if not VARIANTS.is_file():
        return None
    for row in json.loads(VARIANTS.read_text()).get("rows", []):
        if "whisper" in str(row.get("variant", "")).lower():
            measured = row.get("cpu_ms_per_stream_second") or (row.get("cpu_ms_per_stream_second_measured") or [None])[0]
            return None if measured is None else float(measured)
    return None


def main(argv: list[str] | None = None) -> int:
    from faster_whisper import WhisperModel

    config = AsrConfig(engine="whisper", workers=1, beam_size=5)
    turns = [(text, phone_line(audio, None, np.random.default_rng(0)))
             for corpus, text, audio in english_set(48) if corpus == "ravdess"]  # fmt: skip
    model = WhisperModel(str(verified_whisper_folder(config.model)), device="cpu", compute_type=config.compute_type,
                         cpu_threads=1, local_files_only=True)  # fmt: skip
    _encoder_seconds(model, turns[0][1], config.context_margin_s)  # warm-up
    encoder_s = [_encoder_seconds(model, audio, config.context_margin_s) for _, audio in turns]
    del model
    recognizer = create_recognizer(config)
    assert isinstance(recognizer, WhisperRecognizer)
    try:
        recognizer.transcribe(turns[0][1])
        whole_s = []
        for _, audio in turns:
            started = time.perf_counter()
            recognizer.transcribe(audio)
            whole_s.append(time.perf_counter() - started)
    finally:
        recognizer.close()
    share = [e / w for e, w in zip(encoder_s, whole_s, strict=True)]
    turn_s = [audio.shape[0] / 16000 for _, audio in turns]
    report = {
        "what": "the recogniser's encoder time as a share of a turn's whole recognition (Whisper base, int8, beam 5, one thread)",
        "command": "python -m benchmarks.bench_encoder_share " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform()},
        "turns": len(turns),
        "turn_s_mean": round(statistics.mean(turn_s), 2),
        "encoder_s_p50": round(statistics.median(encoder_s), 4),
        "recognition_s_p50": round(statistics.median(whole_s), 4),
        "encoder_share_p50": round(statistics.median(share), 3),
        "encoder_share_of_total": round(sum(encoder_s) / sum(whole_s), 3),
        "emotion_whisper_base_cpu_ms_per_stream_second": _emotion_encoder_ms_per_second(),
        "per_turn": [{"turn_s": round(t, 2), "encoder_s": round(e, 4), "recognition_s": round(w, 4)}
                     for t, e, w in zip(turn_s, encoder_s, whole_s, strict=True)],  # fmt: skip
    }
    OUT.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"encoder p50 {report['encoder_s_p50']} s of {report['recognition_s_p50']} s "
          f"({report['encoder_share_of_total']:.0%} of all recognition time); wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
