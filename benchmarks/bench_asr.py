"""Speech recognition on the phone line: word error rate and time per turn, Whisper vs pocketsphinx.

Run from the repo root with the toolkit venv::

    .venv/bin/python -m benchmarks.bench_asr            # writes benchmarks/results/bench_asr.json

Every utterance goes through the telephone channel the gateway sees (16 kHz -> 8 kHz G.711 mu-law ->
back to 16 kHz for the recogniser), clean and with pink noise added on the line at 10 and 5 dB SNR
(speech level over noise level). The sets: contact-center requests spoken by espeak-ng (the sentences
pocketsphinx got wrong in issue 13, and more), RAVDESS actors 19-24 (held-out speakers, all emotions),
EmoDB (German; Whisper only, the clips that hold a whole sentence: see :func:`german_set`), and
korean_operator clips (Whisper only: pocketsphinx has no Korean). Each engine runs as the
gateway runs it: one worker process, one thread. WER = (substitutions + deletions + insertions) /
reference words, over the whole set, after lower-casing and dropping punctuation; for Korean the
words are eojeol (space-separated) and the character error rate is reported too (spaces removed:
Korean spacing varies between writers). korean_operator's transcripts spell numbers in Hangul
("오월 십칠일") where Whisper writes digits ("5월 17일"): ``cer_numerals`` reads the hypothesis's
digits as Sino-Korean numerals first (the same words, another spelling); ``cer`` is the raw figure.

Korean recogniser settings (issue 16: what Whisper base can do on a Korean phone line; the
language is always forced, no prompt with domain words)::

    .venv/bin/python -m benchmarks.bench_asr --only korean --korean 25   # updates the whisper_ko* entries

German (EmoDB), the same recogniser with ``asr.language: de-DE``::

    .venv/bin/python -m benchmarks.bench_asr --only german               # updates the whisper_de* entries

Settings are chosen on a development split, never on the sets above: ``--split dev`` measures RAVDESS
actors 1-6 and the korean_operator clips the Korean set leaves out (no espeak-ng sentences, no German:
every whole-sentence EmoDB clip is in the test set) and writes ``bench_asr_dev.json``::

    .venv/bin/python -m benchmarks.bench_asr --split dev                 # the context_margin_s sweep
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.line_signals import phone_line  # noqa: E402
from connectors.speech.asr import SpeechRecognizer, create_recognizer  # noqa: E402
from connectors.speech.asr_scoring import char_counts, read_numerals_korean, wer_counts  # noqa: E402
from connectors.speech.tts import EspeakSynthesizer  # noqa: E402
from emotion_runtime.audio import resample  # noqa: E402
from emotune.config import AsrConfig, Prosody, load_config  # noqa: E402

__all__ = ["main", "KOREAN_SETTINGS", "korean_config", "korean_rows", "ravdess_clips"]

DATA = REPO_ROOT.parent / "shared" / "data"
OUT = REPO_ROOT / "benchmarks" / "results" / "bench_asr.json"
DEV_OUT = REPO_ROOT / "benchmarks" / "results" / "bench_asr_dev.json"
TEST_ACTORS = range(19, 25)
DEV_ACTORS = range(1, 7)  # RAVDESS speakers the test set does not have: settings are tuned here
# Silence appended after a turn (asr.context_margin_s) tried on the development split, beam 5.
MARGINS_S = (1.0, 2.0, 3.0, 4.0, 6.0)
ESPEAK_SENTENCES = [
    "I want a refund for my last order",
    "Where is my parcel, it has not arrived",
    "I would like to cancel my subscription",
    "Can I speak to a human please",
    "My card was charged twice this month",
    "I need to change my delivery address",
    "The app keeps crashing when I log in",
    "Thank you, that is all for today",
]
# What a Korean bot says, spoken by espeak-ng's ko voice: how intelligible the offline Korean voice is
# (to Whisper, a proxy for a listener), as ESPEAK_SENTENCES are for the English voice.
KOREAN_ESPEAK_SENTENCES = [
    "주문하신 상품은 내일 오후에 도착할 예정입니다.",
    "죄송합니다. 잘 듣지 못했습니다. 다시 한 번 말씀해 주시겠어요?",
    "상담원에게 연결해 드리겠습니다.",
    "환불은 영업일 기준 삼일 안에 처리됩니다.",
    "배송지 주소를 변경해 드렸습니다.",
    "카드 결제가 두 번 청구된 것을 확인했습니다.",
    "다른 도움이 필요하시면 말씀해 주세요.",
    "잠시 쉬어 가시는 것도 좋습니다.",
]
RAVDESS_TEXT = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
# EmoDB's ten sentences (Burkhardt et al. 2005), by the text code in its file names (characters 3-5).
EMODB_TEXT = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
PADDED_TAIL_SAMPLES = 160  # a clip ending in 10 ms of exact zeros was padded to 2 s, not cut: the whole sentence
CONDITIONS = [("clean", None), ("pink_10dB", 10.0), ("pink_5dB", 5.0)]
# Whisper settings tried on Korean: name -> AsrConfig fields (language forced to ko in all), and
# "whisper_ko_profile": the ko_contact_center profile's asr section as config.yml ships it (with its
# per-turn identification of English: a Korean turn taken for English counts in other_language_turns).
KOREAN_SETTINGS: dict[str, dict[str, Any]] = {
    "whisper_ko": {"beam_size": 1},
    "whisper_ko_30s": {"beam_size": 1, "context": "30s"},
    "whisper_ko_beam5": {"beam_size": 5},
    "whisper_ko_beam5_vad": {"beam_size": 5, "vad_filter": True},
    "whisper_ko_beam5_fp32": {"beam_size": 5, "compute_type": "float32"},
    "whisper_ko_beam5_30s": {"beam_size": 5, "context": "30s"},
    "whisper_ko_beam5_batch4": {"beam_size": 5, "batch": 4},
    "whisper_ko_beam5_margin2": {"beam_size": 5, "context_margin_s": 2.0},
    "whisper_ko_profile": {},
}
KOREAN_PROFILE = "ko_contact_center"


def load(path: Path) -> np.ndarray:
    audio, rate = sf.read(str(path), dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    return resample(audio, rate, 16000)


def english_set(n_ravdess: int, dev: bool = False) -> list[tuple[str, str, np.ndarray]]:
    """The espeak-ng sentences and every (len // n)-th speech clip of RAVDESS actors 19-24; ``dev``:
    the same stride over actors 1-6 and no espeak-ng sentences."""
    items = []
    if not dev:
        espeak = EspeakSynthesizer("en-us")
        for text in ESPEAK_SENTENCES:
            speech = espeak.synthesize(text, Prosody())
            items.append(("espeak", text, speech.at_rate(16000).samples))
    for path in ravdess_clips(n_ravdess, dev):
        items.append(("ravdess", RAVDESS_TEXT[path.name.split("-")[4]], load(path)))
    return items


def ravdess_clips(n: int, dev: bool = False) -> list[Path]:
    """Every (len // n)-th RAVDESS speech clip of the test actors (19-24) or, ``dev``, of actors 1-6."""
    actors = DEV_ACTORS if dev else TEST_ACTORS
    clips = sorted(p for actor in actors for p in (DATA / "ravdess" / f"Actor_{actor:02d}").glob("03-01-*.flac"))
    return clips[:: max(1, len(clips) // n)][:n]


def german_set(n: int | None) -> list[tuple[str, str, np.ndarray]]:
    """EmoDB clips that hold their whole sentence. The shared copy cut or padded every clip to 2.0 s, and
    a cut clip has lost the end of its sentence, so only the padded ones (ending in exact zeros) are
    scored: 123 of 535 (all ten speakers; 120 of them the four shortest sentences a01, a02, a04, a07);
    every (len // n)-th of them with ``n``."""
    manifest = DATA / "emodb" / "manifest.csv"
    with manifest.open(encoding="utf-8") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: row["path"])
    items = []
    for row in rows:
        audio, rate = sf.read(str(manifest.parent / row["path"]), dtype="float32")
        voiced = np.flatnonzero(audio != 0.0)
        if voiced.size and audio.shape[0] - 1 - voiced[-1] >= PADDED_TAIL_SAMPLES:
            items.append(("emodb", EMODB_TEXT[row["text_id"]], resample(audio, rate, 16000)))
    step = max(1, len(items) // n) if n else 1
    return items[::step][:n] if n else items


def korean_set(n: int, dev: bool = False) -> list[tuple[str, str, np.ndarray]]:
    """Every (100 // n)-th row of korean_operator's manifest (it runs speaker by speaker and emotion by
    emotion in blocks of five sentences, so a stride of 4, n = 25, covers every speaker, every emotion
    and all five of each speaker's sentences), then the Korean bot sentences in espeak-ng's ko voice;
    ``dev``: every row that stride leaves out, and no espeak-ng sentences."""
    manifest = DATA / "korean_operator" / "manifest.csv"
    items = [("korean_operator", row["text"], load(manifest.parent / row["path"])) for row in korean_rows(n, dev)]
    if dev:
        return items
    espeak = EspeakSynthesizer("ko")
    return items + [("espeak_ko", text, espeak.synthesize(text, Prosody()).at_rate(16000).samples)
                    for text in KOREAN_ESPEAK_SENTENCES]


def korean_rows(n: int, dev: bool = False) -> list[dict[str, str]]:
    """korean_operator's manifest rows of the test stride (see :func:`korean_set`) or, ``dev``, the others."""
    with (DATA / "korean_operator" / "manifest.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    test_rows = set(range(0, len(rows), max(1, len(rows) // n))[:n])
    return [row for i, row in enumerate(rows) if (i not in test_rows) == dev]


def korean_config(name: str) -> AsrConfig:
    """The recogniser settings ``name`` of :data:`KOREAN_SETTINGS`, one worker as in the gateway."""
    if name == "whisper_ko_profile":
        return load_config(REPO_ROOT / "config.yml", profile=KOREAN_PROFILE).asr.model_copy(update={"workers": 1})
    fields = {key: value for key, value in KOREAN_SETTINGS[name].items() if key != "batch"}
    return AsrConfig(engine="whisper", language="ko-KR", workers=1, **fields)


def run(engine: SpeechRecognizer, items: list[tuple[str, str, np.ndarray]], seed: int, batch: int = 1) -> dict[str, Any]:
    """Every item through the phone line in each condition. ``batch`` > 1: consecutive items are decoded
    together (``transcribe_batch``), as turns of that many callers ending at once; each turn's time is
    then its batch's."""
    results: dict[str, Any] = {}
    for condition, snr in CONDITIONS:
        rng = np.random.default_rng(seed)
        per_set: dict[str, dict[str, Any]] = {}
        lines = [phone_line(audio, snr, rng) for _corpus, _text, audio in items]
        heard: list[Any] = []
        walls: list[float] = []
        for first in range(0, len(items), batch):
            started = time.perf_counter()
            group = lines[first : first + batch]
            heard += [engine.transcribe(group[0])] if batch == 1 else engine.transcribe_batch(group)  # type: ignore[attr-defined]
            walls += [time.perf_counter() - started] * len(group)
        for (corpus, text, audio), transcript, wall in zip(items, heard, walls, strict=True):
            edits, words = wer_counts(text, transcript.text)
            char_edits, chars = char_counts(text, transcript.text)
            numeral_edits, _ = char_counts(text, read_numerals_korean(transcript.text))
            entry = per_set.setdefault(corpus, {"edits": 0, "words": 0, "char_edits": 0, "chars": 0,
                                                "numeral_char_edits": 0, "other_language_turns": 0,
                                                "compute_s": [], "examples": []})
            entry["other_language_turns"] += int(transcript.other_language)
            entry["edits"] += edits
            entry["words"] += words
            entry["char_edits"] += char_edits
            entry["numeral_char_edits"] += numeral_edits
            entry["chars"] += chars
            entry["compute_s"].append(round(wall, 3))
            entry["examples"].append({"ref": text, "hyp": transcript.text, "audio_s": round(audio.shape[0] / 16000, 2),
                                      "language": transcript.language})
        for entry in per_set.values():
            times = entry["compute_s"]
            entry["batch"] = batch
            entry["wer"] = round(entry["edits"] / max(1, entry["words"]), 4)
            entry["cer"] = round(entry["char_edits"] / max(1, entry["chars"]), 4)
            entry["cer_numerals"] = round(entry["numeral_char_edits"] / max(1, entry["chars"]), 4)
            entry["asr_s_p50"] = round(statistics.median(times), 3)
            entry["asr_s_p95"] = round(sorted(times)[min(len(times) - 1, round(0.95 * (len(times) - 1)))], 3)
        results[condition] = per_set
        summary = ", ".join(f"{k} WER {v['wer']:.1%} CER {v['cer']:.1%} / {v['cer_numerals']:.1%} "
                            f"(p50 {v['asr_s_p50']:.2f} s)" for k, v in per_set.items())
        print(f"  {engine.name:12s} {condition:10s} {summary}", flush=True)
    return results


def plot_margins(report: dict[str, Any], path: Path) -> None:
    """The development sweep: error rate and time per turn against the silence after the turn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(14, 4))
    for prefix, corpus, rate, label in (("whisper_beam5_margin", "ravdess", "wer", "English WER (RAVDESS 1-6)"),
                                        ("whisper_ko_beam5_margin", "korean_operator", "cer", "Korean CER")):
        entries = sorted(((entry["config"]["context_margin_s"], entry) for name, entry in report["engines"].items()
                          if name.startswith(prefix)), key=lambda pair: pair[0])
        if not entries:
            continue
        margins = [margin for margin, _ in entries]
        axis = axes[0] if corpus == "ravdess" else axes[1]
        for condition, _snr in CONDITIONS:
            axis.plot(margins, [100 * e["results"][condition][corpus][rate] for _, e in entries], "o-", label=condition)
        axis.set_title(label)
        axis.set_xlabel("asr.context_margin_s (s)")
        axis.set_ylabel("%")
        axis.legend()
        axes[2].plot(margins, [e["results"]["clean"][corpus]["asr_s_p50"] for _, e in entries], "o-",
                     label=corpus)
    axes[2].set_title("time per turn p50, clean, beam 5, one thread")
    axes[2].set_xlabel("asr.context_margin_s (s)")
    axes[2].set_ylabel("s")
    axes[2].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ravdess", type=int, default=48, help="RAVDESS clips (actors 19-24)")
    parser.add_argument("--korean", type=int, default=25, help="korean_operator clips")
    parser.add_argument("--emodb", type=int, default=None, help="EmoDB whole-sentence clips (default: all 123)")
    parser.add_argument("--only", choices=("english", "german", "korean"), default=None,
                        help="measure one language; the others' entries in --output are kept as they are")
    parser.add_argument("--korean-settings", nargs="+", choices=list(KOREAN_SETTINGS), default=list(KOREAN_SETTINGS),
                        help="which Whisper settings to measure on Korean (default: all)")
    parser.add_argument("--engines", nargs="+", default=None,
                        help="measure only these entries (e.g. whisper_beam5); the others in --output are kept")
    parser.add_argument("--split", choices=("test", "dev"), default="test",
                        help="dev: the development speakers and clips, the settings sweep, bench_asr_dev.json")
    parser.add_argument("--output", type=Path, default=None, help=f"default {OUT.name} ({DEV_OUT.name} for dev)")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    dev = args.split == "dev"
    if dev and args.only == "german":
        parser.error("there is no German development split: every whole-sentence EmoDB clip is in the test set")
    args.output = args.output or (DEV_OUT if dev else OUT)
    command = "python -m benchmarks.bench_asr " + " ".join(argv if argv is not None else sys.argv[1:])
    english = english_set(args.ravdess, dev) if args.only in (None, "english") else []
    german = german_set(args.emodb) if args.only in (None, "german") and not dev else []
    korean = korean_set(args.korean, dev) if args.korean and args.only in (None, "korean") else []
    partial = bool(args.only or args.engines)
    previous = json.loads(args.output.read_text(encoding="utf-8")) if partial and args.output.is_file() else {}
    report: dict[str, Any] = {
        "what": "WER through the 8 kHz mu-law phone line, clean and with pink noise on the line",
        "command": previous.get("command", command) if args.only in ("german", "korean") or args.engines else command,
        "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform()},
        "note": "a 2-vCPU machine shared with other jobs: times are upper bounds",
        "split": ("dev: RAVDESS actors 1-6, the korean_operator rows the test stride leaves out" if dev else
                  "test: espeak-ng sentences, RAVDESS actors 19-24, EmoDB whole sentences, korean_operator stride"),
        "engines": dict(previous.get("engines", {})),
    }
    runs: list[tuple[str, AsrConfig, list[tuple[str, str, np.ndarray]], int]] = [
        ("whisper", AsrConfig(engine="whisper", workers=1, beam_size=1), english, 1),
        ("whisper_30s", AsrConfig(engine="whisper", workers=1, beam_size=1, context="30s"), english, 1),
        ("whisper_beam5", AsrConfig(engine="whisper", workers=1, beam_size=5), english, 1),
        ("whisper_beam5_batch4", AsrConfig(engine="whisper", workers=1, beam_size=5), english, 4),
        ("whisper_beam5_margin2", AsrConfig(engine="whisper", workers=1, beam_size=5, context_margin_s=2.0), english, 1),
        ("pocketsphinx", AsrConfig(engine="pocketsphinx", workers=1), english, 1),
        ("whisper_de", AsrConfig(engine="whisper", language="de-DE", workers=1, beam_size=1), german, 1),
        ("whisper_de_30s", AsrConfig(engine="whisper", language="de-DE", workers=1, beam_size=1, context="30s"),
         german, 1),
        ("whisper_de_beam5", AsrConfig(engine="whisper", language="de-DE", workers=1, beam_size=5), german, 1),
        ("whisper_de_beam5_batch4", AsrConfig(engine="whisper", language="de-DE", workers=1, beam_size=5), german, 4),
        ("whisper_de_beam5_margin2", AsrConfig(engine="whisper", language="de-DE", workers=1, beam_size=5,
                                               context_margin_s=2.0), german, 1),
    ]
    for name in args.korean_settings:
        runs.append((name, korean_config(name), korean, KOREAN_SETTINGS[name].get("batch", 1)))
    if dev:
        runs = [(f"{prefix}{margin:g}", AsrConfig(engine="whisper", language=language, workers=1, beam_size=5,
                                                  context_margin_s=margin), items, 1)
                for prefix, language, items in (("whisper_beam5_margin", "en-US", english),
                                                ("whisper_ko_beam5_margin", "ko-KR", korean))
                for margin in MARGINS_S]
    for name, config, items, batch in runs:
        if not items or (args.engines and name not in args.engines):
            continue
        engine = create_recognizer(config)
        try:
            engine.transcribe(items[0][2])  # warm-up (workers up, model loaded)
            started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            report["engines"][name] = {"config": config.model_dump(), "command": command, "measured_at": started,
                                       "batch": batch, "results": run(engine, items, args.seed, batch)}
        finally:
            engine.close()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    if dev:
        plot_margins(report, args.output.with_suffix(".png"))
        print(f"wrote {args.output.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
