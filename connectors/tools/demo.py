"""The demo call: real Rasa + action server + gateway, and a caller that gets angrier.

``python -m connectors.tools.demo [--profile NAME]`` (``make demo [PROFILE=ko_contact_center]`` /
``emotune demo``):

1. starts the profile's Rasa bot (``rasa.bot``) and its action server (``RasaStack``; trains if needed),
2. starts the gateway on a free loopback port,
3. plays the bundled sample call in the profile's language (``samples/demo_call.flac``: one RAVDESS
   actor; ``samples/demo_call_ko.flac``: one korean_operator speaker; neutral then angry) through the
   Twilio Media Streams protocol with :class:`TwilioCaller`,
4. prints the turn-by-turn timeline as it happens (caller words, emotion, bot reply, tone),
5. writes an HTML call report with the emotion timeline into ``reports/``,
6. stops everything it started.

It needs nothing from ``../shared``: the clips are committed. ``build_sample_call`` and
``build_korean_sample_call`` rebuild them from the corpora (how the committed samples were made).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf
from pydantic import SecretStr

from connectors.devtools.caller import CallerTurn, TwilioCaller
from connectors.gateway import Gateway
from connectors.protocols.twilio import compute_twilio_signature
from connectors.speech.asr import whisper_language
from connectors.tools.report import describe_emotion, write_report
from emotion_runtime.audio import energy_db, resample
from emotune.config import PROFILES, PROJECT_ROOT, EmotuneConfig, load_config
from emotune.errors import ConfigError, DataError, EmotuneError

__all__ = [
    "SAMPLE_AUDIO",
    "SAMPLE_MANIFEST",
    "KOREAN_SAMPLE_AUDIO",
    "SAMPLE_CALLS",
    "SampleCall",
    "load_sample_call",
    "sample_for",
    "build_sample_call",
    "build_korean_sample_call",
    "run_demo",
    "main",
]

SAMPLES_DIR = PROJECT_ROOT / "samples"
SAMPLE_AUDIO = SAMPLES_DIR / "demo_call.flac"
SAMPLE_MANIFEST = SAMPLES_DIR / "demo_call.json"
KOREAN_SAMPLE_AUDIO = SAMPLES_DIR / "demo_call_ko.flac"
SAMPLE_CALLS = {"en": SAMPLE_AUDIO, "ko": KOREAN_SAMPLE_AUDIO}  # the caller's language -> its sample call
SAMPLE_RATE = 16000

# RAVDESS names: modality-channel-emotion-intensity-statement-repetition-actor (emotion 01 neutral,
# 05 angry; intensity 01 normal, 02 strong; statement 01 "Kids are talking by the door",
# 02 "Dogs are sitting by the door").
_STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
# (emotion, intensity, statement, repetition). Actor 19 is held out from the shipped model's training.
# Of this actor's angry clips at normal intensity only 03-01-05-01-01-01 is labelled angry by the
# model (the other three come out neutral/sad); they are left out so the escalation path is shown.
_SCRIPT = (
    ("01", "01", "01", "1"),
    ("01", "01", "02", "1"),
    ("05", "01", "01", "1"),
    ("05", "02", "01", "1"),
    ("05", "02", "02", "1"),
    ("05", "02", "01", "2"),
)
_EMOTIONS = {"01": "neutral", "05": "angry"}
_INTENSITIES = {"01": "normal", "02": "strong"}
_RAVDESS_NOTE = ("The RAVDESS sentences are not contact-center requests, so the bot answers with its "
                 "out-of-scope replies; their tone still follows the caller's emotion.")

# korean_operator (emotiontts open DB sample, CC BY-NC-SA 4.0): the clips are taken by a fixed rule,
# never by how the model scores them: the alphabetically first speaker, its first neutral clips
# then its first angry clips in manifest order.
_KOREAN_SCRIPT = (("neutral", 2), ("angry", 4))
_KOREAN_NOTE = ("The korean_operator sentences are read news and trivia, not contact-center requests, "
                "so the bot answers with its out-of-scope replies; their tone still follows the caller's "
                "emotion. The Korean emotion model was fine-tuned on all 100 korean_operator clips, these "
                "six included: the demo shows the mechanics, not accuracy on a stranger.")


@dataclass(frozen=True)
class _Clip:
    """One source clip of a sample call and what the corpus says about it."""

    path: Path
    emotion: str
    text: str
    source: str
    intensity: str = "normal"


@dataclass(frozen=True)
class SampleCall:
    turns: list[CallerTurn]
    description: str
    manifest: dict[str, Any]


def _frame_db(audio: np.ndarray) -> np.ndarray:
    frame = SAMPLE_RATE // 50
    n = audio.shape[0] // frame
    return energy_db(audio[: n * frame].reshape(n, frame))


def _trim_and_level(audio: np.ndarray, margin_s: float = 0.15) -> np.ndarray:
    """Cut a studio clip's leading/trailing silence and bring it to a phone-line level.

    Studio levels span ~30 dB between a neutral and a strong angry clip (RAVDESS neutral peaks
    at -30 dBFS, below any telephony VAD). A phone's AGC narrows that: each clip's speech level
    (95th percentile frame energy) goes to -20 dBFS plus a quarter of its original distance from
    -25 dBFS, so angry clips stay louder than neutral ones, as on a real line.
    """
    energy = _frame_db(audio)
    speech_db = float(np.percentile(energy, 95))
    voiced = np.flatnonzero(energy > speech_db - 30.0)
    if voiced.size == 0 or speech_db < -90:
        raise DataError("clip has no speech")
    frame = SAMPLE_RATE // 50
    margin = int(margin_s * SAMPLE_RATE)
    clip = audio[max(0, voiced[0] * frame - margin) : min(audio.shape[0], (voiced[-1] + 1) * frame + margin)]
    target_db = float(np.clip(-20.0 + 0.25 * (speech_db + 25.0), -28.0, -12.0))
    gained = clip * (10.0 ** ((target_db - speech_db) / 20.0))
    return np.asarray(np.clip(gained, -0.99, 0.99), dtype=np.float32)


def _assemble_call(clips: Sequence[_Clip], out_audio: Path, speaker: str, licence: str, note: str,
                   gap_s: float = 1.0) -> Path:
    """Trim and level each clip, join them with silence between, and write the audio + its manifest."""
    turns, pieces, cursor = [], [], 0.0
    gap = np.zeros(int(gap_s * SAMPLE_RATE), dtype=np.float32)
    for item in clips:
        try:
            audio, rate = sf.read(str(item.path), dtype="float32")
        except (OSError, RuntimeError) as exc:
            raise DataError(f"cannot read clip {item.path}: {exc}") from exc
        if audio.ndim > 1:
            audio = audio.mean(axis=1)
        clip = _trim_and_level(resample(audio, rate, SAMPLE_RATE))
        turns.append(
            {
                "start_s": round(cursor, 3),
                "end_s": round(cursor + clip.shape[0] / SAMPLE_RATE, 3),
                "acted_emotion": item.emotion,
                "acted_intensity": item.intensity,
                "text": item.text,
                "source": item.source,
            }
        )
        pieces += [clip, gap]
        cursor += (clip.shape[0] + gap.shape[0]) / SAMPLE_RATE
    out_audio.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(out_audio), np.concatenate(pieces), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    manifest = {"audio": out_audio.name, "sample_rate": SAMPLE_RATE, "speaker": speaker, "licence": licence,
                "note": note, "turns": turns}
    out_audio.with_suffix(".json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                              encoding="utf-8")
    return out_audio


def build_sample_call(ravdess_dir: Path, actor: int, out_audio: Path = SAMPLE_AUDIO, gap_s: float = 1.0) -> Path:
    """Concatenate one actor's neutral then angry clips (with silence between) into the sample call."""
    clips = []
    for emotion, intensity, statement, repetition in _SCRIPT:
        name = f"03-01-{emotion}-{intensity}-{statement}-0{repetition}-{actor:02d}.flac"
        clips.append(_Clip(ravdess_dir / f"Actor_{actor:02d}" / name, _EMOTIONS[emotion], _STATEMENTS[statement],
                           f"RAVDESS Actor_{actor:02d}/{name}", _INTENSITIES[intensity]))
    return _assemble_call(clips, out_audio, f"RAVDESS actor {actor:02d}",
                          "CC BY-NC-SA 4.0 (Livingstone & Russo 2018), see ATTRIBUTION.md", _RAVDESS_NOTE, gap_s)


def build_korean_sample_call(korean_dir: Path, out_audio: Path = KOREAN_SAMPLE_AUDIO, gap_s: float = 1.0) -> Path:
    """The Korean sample call from a korean_operator folder, by the fixed rule of ``_KOREAN_SCRIPT``:
    the alphabetically first speaker, its first neutral clips then its first angry ones (manifest order)."""
    manifest = korean_dir / "manifest.csv"
    try:
        with manifest.open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise DataError(f"cannot read {manifest}: {exc}") from exc
    missing = {"path", "speaker", "label", "text"} - set(rows[0] if rows else {})
    if missing:
        raise DataError(f"{manifest}: no rows or missing columns {sorted(missing)}")
    speaker = min(row["speaker"] for row in rows)
    clips = []
    for label, count in _KOREAN_SCRIPT:
        chosen = [row for row in rows if row["speaker"] == speaker and row["label"] == label][:count]
        if len(chosen) < count:
            raise DataError(f"{manifest}: speaker {speaker} has {len(chosen)} {label} clips, {count} needed")
        clips += [_Clip(korean_dir / row["path"], label, row["text"], f"korean_operator/{row['path']}")
                  for row in chosen]
    return _assemble_call(clips, out_audio, f"korean_operator speaker {speaker}",
                          "CC BY-NC-SA 4.0, research use only (emotiontts open DB sample, Selvas AI / KAIST), "
                          "see ATTRIBUTION.md", _KOREAN_NOTE, gap_s)


def sample_for(config: EmotuneConfig) -> Path:
    """The committed sample call in the language of the config's callers (``asr.language``)."""
    language = whisper_language(config.asr.language) or "en"
    if language not in SAMPLE_CALLS:
        raise ConfigError("demo", [f"asr.language {config.asr.language!r}: no sample call in that language "
                                   f"(have: {', '.join(sorted(SAMPLE_CALLS))})"])
    return SAMPLE_CALLS[language]


def load_sample_call(audio_path: Path = SAMPLE_AUDIO) -> SampleCall:
    """The committed sample call, cut into the caller's turns by its manifest."""
    manifest_path = audio_path.with_suffix(".json")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        audio, rate = sf.read(str(audio_path), dtype="float32")
    except (OSError, RuntimeError, json.JSONDecodeError) as exc:
        raise DataError(f"sample call {audio_path} / {manifest_path.name} unreadable: {exc}") from exc
    turns = []
    for entry in manifest["turns"]:
        clip = audio[int(entry["start_s"] * rate) : int(entry["end_s"] * rate)]
        turns.append(CallerTurn(clip, rate, label=entry["acted_emotion"], text=entry["text"]))
    return SampleCall(turns, f"{manifest['speaker']}, acted speech ({manifest['licence']})", manifest)


def _note(sample: SampleCall) -> str:
    return str(sample.manifest.get("note", _RAVDESS_NOTE))


def _print_turn(record: dict[str, Any], acted: dict[int, str]) -> None:
    detected = describe_emotion(record.get("emotion"), missing="no label yet")
    fallback = "  [FALLBACK: Rasa unavailable]" if record.get("fallback") else ""
    print(
        f"[{record['t']:6.1f}s] turn {record['turn']}  caller (acted {acted.get(record['turn'], '?')}): "
        f"\"{record['caller_text']}\"\n"
        f"          model heard: {detected} -> tone asked: {record['requested_tone']}\n"
        f"          bot [{record['tone']}]: {record['bot_text']}{fallback}",
        flush=True,
    )


async def run_demo(
    config: EmotuneConfig,
    speed: float = 1.0,
    ci_bot: bool = False,
    reports_dir: Path = PROJECT_ROOT / "reports",
    audio_path: Path | None = None,
) -> dict[str, Any]:
    from connectors.devtools.rasa_stack import RasaStack

    sample = load_sample_call(audio_path or sample_for(config))
    acted = {i + 1: t.label for i, t in enumerate(sample.turns)}
    print(f"Profile {config.profile}: bot {config.rasa.bot}, emotion model {config.model.path}, "
          f"recogniser {config.asr.engine} ({config.asr.language}), voice {config.tts.engine} {config.tts.voice}.",
          flush=True)
    print(f"Sample call: {len(sample.turns)} caller turns, {sample.description}.", flush=True)
    print(f"Emotion labels below are the model's estimates on this audio; the acted label is shown "
          f"for comparison. {_note(sample)}", flush=True)
    print("Starting Rasa + action server (trains the bot on first use)...", flush=True)
    stack = await asyncio.to_thread(RasaStack(config.rasa.bot, ci=ci_bot).start)
    gateway: Gateway | None = None
    try:
        # Credentials as in production (the gateway fails closed): a throwaway Twilio auth token for
        # this run, the caller signs the URL like Twilio does. The demo shows the turns' words, so
        # the call file keeps them (gateway.log_transcripts; off by default).
        twilio_token = secrets.token_urlsafe(24)
        config.gateway.twilio.auth_token = SecretStr(twilio_token)
        config.gateway.log_transcripts = True
        gateway = Gateway(config, log_dir=reports_dir / "calls", rasa_url=stack.url)
        await gateway.start(port=0)
        config.gateway.public_url = f"ws://127.0.0.1:{gateway.port}"
        url = f"ws://127.0.0.1:{gateway.port}/twilio"
        print(f"Gateway on {url}; calling (speed x{speed:g})...\n", flush=True)
        call_sid = "CA" + time.strftime("%Y%m%d%H%M%S") + "0" * 18
        subscription = gateway.feed.subscribe(call_sid)

        async def print_feed() -> None:
            while True:
                record = await subscription.queue.get()
                if record["type"] == "turn":
                    _print_turn(record, acted)
                elif record["type"] == "bot_audio":
                    print(f"          (bot speech {record['duration_s']:.1f} s, first audio "
                          f"{record['response_s']:.2f} s after the caller's turn ended)", flush=True)
                elif record["type"] == "turn_other_language":
                    print(f"[{record['t']:6.1f}s] turn {record['turn']}  caller spoke {record['language']}: "
                          f"\"{record['caller_text']}\"\n          bot [{record['tone']}]: {record['bot_text']}", flush=True)
                elif record["type"] == "barge_in":
                    print(f"[{record['t']:6.1f}s] caller barged in: bot audio cleared", flush=True)
                elif record["type"] == "escalation":
                    print(f"[{record['t']:6.1f}s] ESCALATION ({record['reason']}): {record['summary']}", flush=True)
                elif record["type"] == "transfer_requested":
                    print(f"[{record['t']:6.1f}s] transfer to {record['target']}: {record['twiml']}", flush=True)

        printer = asyncio.create_task(print_feed())
        # As Twilio does: fetch the voice webhook's TwiML (signed), then open the stream it names with
        # the per-call token it carries, the upgrade signed too.
        voice = f"/twilio/voice?CallSid={call_sid}"
        async with httpx.AsyncClient() as http:
            twiml = (await http.get(f"http://127.0.0.1:{gateway.port}{voice}", headers={
                "X-Twilio-Signature": compute_twilio_signature(twilio_token, f"http://127.0.0.1:{gateway.port}{voice}")
            })).text
        parameter = re.search(r'<Parameter name="([^"]+)" value="([^"]+)"', twiml)
        if parameter is None:
            raise EmotuneError(f"the gateway's TwiML carries no stream token: {twiml[:200]}")
        signature = {"X-Twilio-Signature": compute_twilio_signature(twilio_token, url)}
        caller = TwilioCaller(url, sample.turns, speed=speed, call_sid=call_sid, headers=signature,
                              custom_parameters={parameter.group(1): parameter.group(2)})
        result = await caller.run()
        await asyncio.sleep(0.5)
        printer.cancel()
        gateway.feed.unsubscribe(subscription)
        log_path = (reports_dir / "calls" / f"{call_sid}.jsonl")
        report = write_report(log_path, reports_dir, title=f"Emotune demo call ({config.profile})")
        print(
            f"\nCall over: {result.duration_s:.1f} s, bot spoke {result.bot_audio_s:.1f} s, "
            f"{len(result.marks_echoed)} marks played, {result.clears} clear(s).\n"
            f"Call log: {log_path}\nReport:   {report}",
            flush=True,
        )
        return {"log": str(log_path), "report": str(report), "caller": result}
    finally:
        if gateway is not None:
            await gateway.stop()
        await asyncio.to_thread(stack.stop)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="emotune demo", description="Play the sample call through the system.")
    parser.add_argument("--config", type=Path, default=PROJECT_ROOT / "config.yml")
    parser.add_argument("--profile", choices=PROFILES, default=None,
                        help="deployment profile (default: the config's profile or EMOTUNE_PROFILE)")
    parser.add_argument("--fast", action="store_true", help="stream the call 4x faster than real time")
    parser.add_argument("--speed", type=float, default=None, help="streaming speed factor (1 = real time)")
    parser.add_argument("--ci-bot", action="store_true", help="use the quickly trained CI bot model")
    parser.add_argument("--reports", type=Path, default=PROJECT_ROOT / "reports")
    parser.add_argument("--build-sample", type=Path, metavar="RAVDESS_DIR",
                        help="rebuild samples/demo_call.* from a RAVDESS folder and exit")
    parser.add_argument("--actor", type=int, default=19, help="RAVDESS actor for --build-sample")
    parser.add_argument("--build-korean-sample", type=Path, metavar="KOREAN_OPERATOR_DIR",
                        help="rebuild samples/demo_call_ko.* from a korean_operator folder and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.build_sample is not None:
            print(f"wrote {build_sample_call(args.build_sample, args.actor)}")
            return 0
        if args.build_korean_sample is not None:
            print(f"wrote {build_korean_sample_call(args.build_korean_sample)}")
            return 0
        overrides = {"profile": args.profile} if args.profile else {}
        config = load_config(args.config if args.config.is_file() else None, **overrides)
        speed = args.speed if args.speed is not None else (4.0 if args.fast else 1.0)
        asyncio.run(run_demo(config, speed=speed, ci_bot=args.ci_bot, reports_dir=args.reports))
    except EmotuneError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
