"""Call report: a per-call JSON-lines log (from the gateway) -> one self-contained HTML page.

The page has the call's facts, an emotion timeline plot (PNG embedded as base64, so the file can
be mailed or attached to a ticket), the turn-by-turn table (caller words, detected emotion, tone
asked for, bot reply, tone used) and the escalation with its summary.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # reports are written on servers without a display
import matplotlib.pyplot as plt  # noqa: E402

from emotune.errors import DataError  # noqa: E402
from emotune.escalation import StreakCounter, StreakRule  # noqa: E402

__all__ = ["read_call_log", "describe_emotion", "timeline_png", "render_report", "write_report", "records_from_audio", "speaker_summary", "main"]

_COLOURS = {"neutral": "#7f8c8d", "happy": "#f1c40f", "sad": "#2980b9", "angry": "#c0392b"}


def read_call_log(path: Path) -> list[dict[str, Any]]:
    """The records of one call log; DataError names the bad line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"cannot read call log {path}: {exc.strerror or exc}") from exc
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict) or "type" not in record:
            raise DataError(f"{path}:{number}: a record must be an object with a 'type'")
        records.append(record)
    if not records:
        raise DataError(f"call log {path} is empty")
    return records


def timeline_png(records: list[dict[str, Any]]) -> bytes:
    """Per-label probability over call time, with caller turns shaded and the escalation marked."""
    emotions = [r for r in records if r["type"] == "emotion" and r.get("party", "caller") == "caller"]
    turns = [r for r in records if r["type"] == "turn"]
    figure, axis = plt.subplots(figsize=(10, 4.0), dpi=110)
    labels: list[str] = []
    for record in emotions:
        for label in record["event"].get("probabilities", {}):
            if label not in labels:
                labels.append(label)
    times = [float(r["event"].get("end_s", r.get("t", 0.0))) for r in emotions]
    # Break the lines where no window was analysed (silence, bot speech): no invented values.
    gaps = [i for i in range(1, len(times)) if times[i] - times[i - 1] > 1.5]
    for label in labels:
        values = [float(r["event"]["probabilities"].get(label, 0.0)) for r in emotions]
        xs, ys = list(times), values[:]
        for i in reversed(gaps):
            xs.insert(i, float("nan"))
            ys.insert(i, float("nan"))
        axis.plot(xs, ys, marker="o", markersize=3, label=label, color=_COLOURS.get(label))
    for turn in turns:
        axis.axvspan(float(turn["start_s"]), float(turn["end_s"]), color="#bdc3c7", alpha=0.3, lw=0)
        axis.text(float(turn["start_s"]), 1.02, f"T{turn['turn']}:{turn['tone']}", fontsize=7, va="bottom")
    for record in records:
        if record["type"] in ("escalation", "transfer_requested"):
            axis.axvline(float(record.get("t", 0.0)), color="black", ls="--", lw=1)
            axis.text(float(record.get("t", 0.0)), 0.5, " hand-off", rotation=90, fontsize=8)
            break
    axis.set_ylim(0, 1.12)
    axis.set_xlabel("call time (s)")
    axis.set_ylabel("smoothed probability")
    axis.set_title("Caller emotion over the call (grey: caller turns; label: tone of the bot's reply)")
    if labels:
        axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=8, ncol=len(labels), frameon=False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def describe_emotion(emotion: dict[str, Any] | None, missing: str) -> str:
    """``angry (0.81, high)`` for a turn's emotion event, ``missing`` when the model had none yet."""
    if not emotion:
        return missing
    return f"{emotion.get('label')} ({float(emotion.get('confidence', 0)):.2f}, {emotion.get('intensity')})"


def _cell(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def render_report(records: list[dict[str, Any]], title: str = "Emotune call report") -> str:
    started = next((r for r in records if r["type"] == "call_started"), {})
    ended = next((r for r in records if r["type"] == "call_ended"), {})
    turns = [r for r in records if r["type"] == "turn"]
    escalation = next((r for r in records if r["type"] == "escalation"), None)
    transfer = next((r for r in records if r["type"] == "transfer_requested"), None)
    barge_ins = sum(1 for r in records if r["type"] == "barge_in")
    png = base64.b64encode(timeline_png(records)).decode("ascii")
    # Each turn's bot audio is the next bot_audio record before the following turn.
    response: dict[int, float] = {}
    current: int | None = None
    for record in records:
        if record["type"] == "turn":
            current = int(record["turn"])
        elif record["type"] == "bot_audio" and current is not None and current not in response:
            response[current] = float(record.get("response_s", float("nan")))
    rows = []
    for turn in turns:
        detected = describe_emotion(turn.get("emotion"), missing="none yet")
        fallback = " <b>(fallback: Rasa unavailable)</b>" if turn.get("fallback") else ""
        rows.append(
            "<tr>"
            f"<td>{_cell(turn['turn'])}</td><td>{float(turn['start_s']):.1f}-{float(turn['end_s']):.1f}</td>"
            f"<td>{_cell(turn['caller_text'])}</td><td>{_cell(detected)}</td>"
            f"<td>{_cell(turn.get('requested_tone'))}</td><td>{_cell(turn['bot_text'])}{fallback}</td>"
            f"<td>{_cell(turn['tone'])}</td>"
            f"<td>{response.get(int(turn['turn']), float('nan')):.2f}</td></tr>"
        )
    handoff_html = "<p>No hand-off.</p>"
    if escalation is not None and escalation.get("source") == "audio":
        handoff_html = (
            f"<p><b>Escalation point</b> at {float(escalation.get('t', 0)):.1f} s: "
            f"{_cell(escalation.get('summary'))}</p>"
        )
    elif escalation is not None:
        handoff_html = (
            f"<p><b>Hand-off</b> at {float(escalation.get('t', 0)):.1f} s, reason "
            f"<code>{_cell(escalation.get('reason'))}</code>: {_cell(escalation.get('summary'))}</p>"
        )
        if transfer is not None:
            handoff_html += (
                f"<p>Transfer to <code>{_cell(transfer.get('target'))}</code> with TwiML "
                f"<code>{_cell(transfer.get('twiml'))}</code></p>"
            )
    facts = (
        f"call <code>{_cell(started.get('call_id'))}</code> via {_cell(started.get('protocol'))}, "
        f"{float(ended.get('duration_s', 0)):.1f} s, {len(turns)} turns, {barge_ins} barge-in(s), "
        f"ended: {_cell(ended.get('reason', 'unknown'))}"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_cell(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;width:100%}}
td,th{{border:1px solid #ccc;padding:4px 6px;font-size:14px;vertical-align:top}}th{{background:#eee}}</style>
</head><body>
<h1>{_cell(title)}</h1>
<p>{facts}</p>
<img alt="emotion timeline" style="max-width:100%" src="data:image/png;base64,{png}">
<h2>Turns</h2>
<table><tr><th>#</th><th>time (s)</th><th>caller said (ASR)</th><th>detected emotion</th>
<th>tone asked</th><th>bot reply</th><th>tone used</th><th>response (s)</th></tr>
{"".join(rows)}
</table>
<h2>Per-speaker summary</h2>
{_summary_html(records)}
<h2>Escalation</h2>
{handoff_html}
<p style="color:#666;font-size:12px">Response: from the end of the caller's turn (after the
end-pointer's silence) to the first bot audio sent (ASR + Rasa + TTS), wall-clock.
Emotion labels are the model's estimates, not ground truth.
Generated by Emotune from the call log; no audio is stored in this report.</p>
</body></html>
"""


def write_report(log_path: Path, out_dir: Path, title: str = "Emotune call report") -> Path:
    """Render ``log_path`` into ``out_dir/<log stem>.html``; returns the HTML path."""
    records = read_call_log(log_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{log_path.stem}.html"
    target.write_text(render_report(records, title), encoding="utf-8")
    return target


def speaker_summary(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per party: labelled seconds, share of each label, mean arousal/valence, peak anger."""
    summary: dict[str, dict[str, Any]] = {}
    for record in records:
        if record["type"] != "emotion":
            continue
        party = str(record.get("party", "caller"))
        event = record["event"]
        entry = summary.setdefault(party, {"windows": 0, "labels": {}, "arousal": [], "valence": [], "peak_angry": 0.0})
        entry["windows"] += 1
        entry["labels"][event["label"]] = entry["labels"].get(event["label"], 0) + 1
        entry["arousal"].append(float(event.get("arousal", 0.0)))
        entry["valence"].append(float(event.get("valence", 0.0)))
        entry["peak_angry"] = max(entry["peak_angry"], float(event.get("probabilities", {}).get("angry", 0.0)))
    for entry in summary.values():
        n = entry["windows"]
        entry["label_share"] = {k: round(v / n, 3) for k, v in sorted(entry.pop("labels").items())}
        entry["mean_arousal"] = round(sum(entry["arousal"]) / n, 3)
        entry["mean_valence"] = round(sum(entry["valence"]) / n, 3)
        del entry["arousal"], entry["valence"]
    return summary


def _summary_html(records: list[dict[str, Any]]) -> str:
    summary = speaker_summary(records)
    if not summary:
        return "<p>No emotion was labelled (no voiced audio analysed).</p>"
    rows = "".join(
        f"<tr><td>{_cell(party)}</td><td>{entry['windows']}</td>"
        f"<td>{_cell(', '.join(f'{k} {v:.0%}' for k, v in entry['label_share'].items()))}</td>"
        f"<td>{entry['mean_arousal']:.2f}</td><td>{entry['mean_valence']:.2f}</td><td>{entry['peak_angry']:.2f}</td></tr>"
        for party, entry in summary.items()
    )
    return (
        "<table><tr><th>speaker</th><th>labelled windows</th><th>label share</th><th>mean arousal</th>"
        f"<th>mean valence</th><th>peak anger</th></tr>{rows}</table>"
    )


def records_from_audio(path: Path, config: Any = None) -> list[dict[str, Any]]:
    """Label a recorded call (any sample rate; stereo = caller left, agent right) into the same
    records the gateway logs, plus escalation points where anger was sustained."""
    import soundfile as sf

    from emotion_runtime import EmotionModel, EmotionStream
    from emotion_runtime.audio import resample
    from emotune.config import load_config

    cfg = config or load_config(None)
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as exc:
        raise DataError(f"cannot read call audio {path}: {exc}") from exc
    model = EmotionModel.load(cfg.model_path(), cfg.sidecar_path(), intra_op_threads=cfg.model.intra_op_threads)
    parties = ["caller", "agent"] if audio.shape[1] >= 2 else ["caller"]
    records: list[dict[str, Any]] = [
        {"type": "call_started", "call_id": path.stem, "protocol": f"recording ({rate} Hz, {audio.shape[1]} ch)", "t": 0.0}
    ]
    rule = cfg.escalation
    for channel, party in enumerate(parties):
        signal = resample(audio[:, channel], rate, 16000)
        stream = EmotionStream(model, cfg.streaming, cfg.smoothing, sample_rate=16000, labels=cfg.model.labels)
        streak, escalated = StreakCounter(StreakRule(tuple(rule.negative_emotions), rule.streak_turns,
                                                     rule.min_confidence, rule.floor_confidence)), False
        for window in stream.feed_samples(signal):
            prediction = model.predict(window.feats[None], [stream.call_state])
            event = stream.complete(window, prediction.probabilities[0], float(prediction.arousal[0]),
                                    float(prediction.valence[0]))
            records.append({"type": "emotion", "party": party, "t": event.end_s, "event": event.to_dict()})
            if streak.observe(event.label, event.confidence) and party == "caller" and not escalated:
                escalated = True
                records.append({
                    "type": "escalation", "source": "audio", "t": event.end_s, "reason": "sustained_anger",
                    "summary": f"{streak.streak} consecutive {event.label} windows (>= {rule.min_confidence:.2f})",
                })  # fmt: skip
    duration = float(audio.shape[0] / rate) if rate else 0.0
    records.append({"type": "call_ended", "t": duration, "duration_s": round(duration, 2), "reason": "end of recording"})
    return records


def main(argv: list[str] | None = None) -> int:
    """``emotune report CALL``: CALL is a gateway call log (.jsonl) or a recorded call (audio)."""
    import argparse

    from emotune.config import load_config

    parser = argparse.ArgumentParser(prog="emotune report", description=main.__doc__)
    parser.add_argument("call", type=Path)
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--config", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.call.suffix == ".jsonl":
        records = read_call_log(args.call)
    else:
        records = records_from_audio(args.call, load_config(args.config) if args.config else None)
        args.out.mkdir(parents=True, exist_ok=True)
        log = args.out / f"{args.call.stem}.jsonl"
        log.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"{args.call.stem}.html"
    target.write_text(render_report(records, f"Emotune call report: {args.call.name}"), encoding="utf-8")
    (args.out / f"{args.call.stem}.png").write_bytes(timeline_png(records))
    print(json.dumps({"html": str(target), "png": str(args.out / f"{args.call.stem}.png"),
                      "speakers": speaker_summary(records)}, indent=2))
    return 0
