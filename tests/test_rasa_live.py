"""The real Rasa server + action server over the REST webhook: tone changes, escalation, faults.

Tests marked ``rasa`` train the bots' CI configs (cached by RasaStack; 1-2 min each on 2 busy cores
the first time) and start real servers (about 20-30 s each). Run only these with ``-m rasa``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.devtools.rasa_stack import REPO_ROOT, RasaStack
from emotune.errors import ConfigError, DialogueError, RasaUnavailableError

RASA_BIN = REPO_ROOT / ".venv-rasa" / "bin" / "rasa"
needs_rasa = pytest.mark.skipif(not RASA_BIN.is_file(), reason="Rasa venv missing: run `make venvs`")

# What the gateway's default tone policy sends for each emotion (emotune.config.TonePolicy).
TONE_FOR = {"neutral": "standard", "angry": "calm", "sad": "warm", "happy": "upbeat"}
AROUSAL_FOR = {"neutral": 0.4, "angry": 0.85, "sad": 0.2, "happy": 0.6}


def metadata(
    label: str,
    *,
    tone: str | None = "auto",
    streak_turns: int = 3,
    arousal: float | None = None,
    confidence: float = 0.9,
    **escalation: Any,
) -> dict[str, Any]:
    """REST metadata exactly as docs/CONTRACTS.md describes it."""
    others = {k: round((1 - confidence) / 3, 3) for k in TONE_FOR if k != label}
    result: dict[str, Any] = {
        "emotion": {
            "label": label,
            "probabilities": {label: confidence, **others},
            "arousal": AROUSAL_FOR[label] if arousal is None else arousal,
            "valence": {"angry": -0.6, "sad": -0.5, "happy": 0.7}.get(label, 0.0),
            "confidence": confidence,
            "intensity": "high",
            "start_s": 0.0,
            "end_s": 2.0,
        },
        "escalation": {
            "negative_emotions": ["angry"],
            "streak_turns": streak_turns,
            "min_confidence": 0.5,
            **escalation,
        },
    }
    if tone == "auto":
        result["tone"] = TONE_FOR[label]
    elif tone is not None:
        result["tone"] = tone
    return result


def parse_reply(messages: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The documented REST shape: text message(s), then one message with the custom payload."""
    texts = [m["text"] for m in messages if "text" in m]
    customs = [m["custom"] for m in messages if "custom" in m]
    assert len(customs) == 1, messages
    return " ".join(texts), customs[0]


def variation_texts(bot: str, response: str) -> dict[str, str]:
    """tone -> text of a domain response (the unconditioned variation is the standard tone)."""
    domain = yaml.safe_load((REPO_ROOT / "bot" / bot / "domain.yml").read_text(encoding="utf-8"))
    texts: dict[str, str] = {}
    for variation in domain["responses"][response]:
        conditions = {c["name"]: c["value"] for c in variation.get("condition", [])}
        if conditions.get("brief_mode") is True:
            continue
        texts[conditions.get("tone", "standard")] = variation["text"]
    return texts


@pytest.fixture(scope="module")
def contact_center() -> Iterator[RasaStack]:
    with RasaStack("contact_center", ci=True) as stack:
        yield stack


@pytest.fixture(scope="module")
def in_car() -> Iterator[RasaStack]:
    with RasaStack("in_car", ci=True) as stack:
        yield stack


# ----------------------------------------------------------------------------- contact center
@pytest.mark.rasa
@needs_rasa
def test_same_text_gets_a_different_reply_per_emotion(contact_center: RasaStack) -> None:
    expected = variation_texts("contact_center", "utter_billing")
    replies: dict[str, str] = {}
    for label, tone in TONE_FOR.items():
        text, custom = parse_reply(
            contact_center.send(f"tone-{label}", "why is my bill so high", metadata(label))
        )
        assert custom == {"tone": tone}
        assert text == expected[tone], f"{label}: got {text!r}"
        replies[label] = text
    assert len(set(replies.values())) == 4, replies


@pytest.mark.rasa
@needs_rasa
def test_reply_shape_is_text_then_custom(contact_center: RasaStack) -> None:
    messages = contact_center.send("shape", "why is my bill so high", metadata("angry"))
    assert [sorted(m) for m in messages] == [["recipient_id", "text"], ["custom", "recipient_id"]]
    assert all(m["recipient_id"] == "shape" for m in messages)


@pytest.mark.rasa
@needs_rasa
def test_gateway_tone_wins_and_builtin_mapping_is_the_fallback(contact_center: RasaStack) -> None:
    texts = variation_texts("contact_center", "utter_ask_order_number")
    # The operator chose "warm" for anger: no retraining, the gateway just sends it.
    text, custom = parse_reply(
        contact_center.send("retuned", "I want a refund", metadata("angry", tone="warm"))
    )
    assert (text, custom["tone"]) == (texts["warm"], "warm")
    # A client that sends only the emotion still gets the built-in mapping (angry -> calm).
    text, custom = parse_reply(
        contact_center.send("no-tone", "I want a refund", metadata("angry", tone=None))
    )
    assert (text, custom["tone"]) == (texts["calm"], "calm")
    # No metadata at all: standard.
    text, custom = parse_reply(contact_center.send("plain", "I want a refund"))
    assert (text, custom["tone"]) == (texts["standard"], "standard")


@pytest.mark.rasa
@needs_rasa
@pytest.mark.parametrize("streak", [2, 3])
def test_handoff_fires_exactly_at_the_configured_streak(contact_center: RasaStack, streak: int) -> None:
    sender = f"streak-{streak}"
    angry = metadata("angry", streak_turns=streak)
    lines = ["where is my parcel", "this is unacceptable", "why is my bill so high", "I want a refund"]
    for turn in range(1, streak):
        _, custom = parse_reply(contact_center.send(sender, lines[turn - 1], angry))
        assert "handoff" not in custom, f"hand-off too early, at turn {turn}"
    text, custom = parse_reply(contact_center.send(sender, lines[streak - 1], angry))
    assert text == variation_texts("contact_center", "utter_handoff")["calm"]
    handoff = custom["handoff"]
    assert handoff["reason"] == "sustained_anger"
    assert [h["label"] for h in handoff["emotion_history"]] == ["angry"] * streak
    assert handoff["summary"]
    # The streak restarts after the hand-off: the next angry turn is answered normally.
    _, custom = parse_reply(contact_center.send(sender, "where is my parcel", angry))
    assert "handoff" not in custom
    assert contact_center.tracker(sender)["slots"]["negative_streak"] == 1.0


@pytest.mark.rasa
@needs_rasa
def test_a_calm_turn_breaks_the_streak(contact_center: RasaStack) -> None:
    sender = "broken-streak"
    for label in ("angry", "neutral", "angry"):
        _, custom = parse_reply(
            contact_center.send(sender, "where is my parcel", metadata(label, streak_turns=2))
        )
        assert "handoff" not in custom


@pytest.mark.rasa
@needs_rasa
def test_caller_asking_for_a_human(contact_center: RasaStack) -> None:
    _, custom = parse_reply(
        contact_center.send("ask-human", "I want to talk to a human", metadata("neutral"))
    )
    assert custom["handoff"]["reason"] == "requested"
    # The operator can switch that off (escalation.on_request: false).
    text, custom = parse_reply(
        contact_center.send("no-human", "I want to talk to a human", metadata("neutral", on_request=False))
    )
    assert "handoff" not in custom
    assert text == variation_texts("contact_center", "utter_handoff_unavailable")["standard"]


@pytest.mark.rasa
@needs_rasa
def test_malformed_metadata_still_gets_an_answer(contact_center: RasaStack) -> None:
    broken = {"emotion": {"label": "angry", "confidence": 17}, "escalation": {"streak_turns": 0}}
    text, custom = parse_reply(contact_center.send("broken", "why is my bill so high", broken))
    assert (text, custom) == (
        variation_texts("contact_center", "utter_billing")["standard"],
        {"tone": "standard"},
    )


# ----------------------------------------------------------------------------- in-car
@pytest.mark.rasa
@needs_rasa
def test_in_car_tones_and_mood_music(in_car: RasaStack) -> None:
    playlists = {"neutral": "focus", "angry": "calm", "sad": "comfort", "happy": "upbeat"}
    replies = set()
    for label, tone in TONE_FOR.items():
        text, custom = parse_reply(
            in_car.send(f"music-{label}", "play some music", metadata(label, arousal=0.3))
        )
        assert custom["tone"] == tone
        assert custom["media"]["playlist"] == playlists[label]
        assert text == variation_texts("in_car", "utter_play_music")[tone].format(playlist=playlists[label])
        replies.add(text)
    assert len(replies) == 4


@pytest.mark.rasa
@needs_rasa
def test_in_car_never_asks_a_highly_aroused_driver(in_car: RasaStack) -> None:
    relaxed, _ = parse_reply(in_car.send("nav-relaxed", "start navigation", metadata("neutral", arousal=0.3)))
    stressed, custom = parse_reply(
        in_car.send("nav-stressed", "start navigation", metadata("angry", arousal=0.9))
    )
    assert relaxed.endswith("?")
    assert "?" not in stressed
    assert custom["tone"] == "calm"


@pytest.mark.rasa
@needs_rasa
@pytest.mark.parametrize("streak", [2, 3])
def test_in_car_deescalates_at_the_configured_streak(in_car: RasaStack, streak: int) -> None:
    sender = f"car-streak-{streak}"
    angry = metadata("angry", streak_turns=streak, arousal=0.5)
    for turn in range(1, streak):
        _, custom = parse_reply(in_car.send(sender, "take me to the airport", angry))
        assert "suggest_break" not in custom, f"de-escalated too early, at turn {turn}"
        assert "handoff" not in custom
    text, custom = parse_reply(in_car.send(sender, "take me to the airport", angry))
    assert custom["media"] == {"action": "play", "playlist": "calm"}
    assert custom["suggest_break"] is True
    assert "handoff" not in custom and "?" not in text


# ----------------------------------------------------------------------------- Rasa's own test stories
@pytest.mark.rasa
@needs_rasa
@pytest.mark.parametrize("bot", ["contact_center", "in_car"])
def test_rasa_test_stories(bot: str, tmp_path: Path) -> None:
    """Every tone variation and the escalation path, as Rasa test stories."""
    stack = RasaStack(bot, ci=True)
    model = stack.train()
    bot_dir = REPO_ROOT / "bot" / bot
    result = subprocess.run(
        [str(RASA_BIN), "test", "core", "--model", str(model), "--stories", "tests/test_stories.yml",
         "--out", str(tmp_path), "--fail-on-prediction-errors"],
        cwd=bot_dir, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    report = json.loads((tmp_path / "story_report.json").read_text(encoding="utf-8"))
    assert report["weighted avg"]["f1-score"] == 1.0
    assert "action_handoff" in report or "action_deescalate" in report


# ----------------------------------------------------------------------------- process handling and errors
@pytest.mark.rasa
@needs_rasa
def test_kill_and_restart_rasa(contact_center: RasaStack) -> None:
    contact_center.kill_rasa()
    with pytest.raises(RasaUnavailableError, match="did not answer"):
        contact_center.send("fault", "hello", timeout_s=5)
    port = contact_center.rasa_port
    contact_center.restart()
    assert contact_center.rasa_port == port  # clients keep their URL
    text, custom = parse_reply(contact_center.send("fault", "hello", metadata("sad")))
    assert custom == {"tone": "warm"}
    assert text == variation_texts("contact_center", "utter_greet")["warm"]


@pytest.mark.rasa
@needs_rasa
def test_training_is_cached_and_keyed_by_project_files(tmp_path: Path) -> None:
    stack = RasaStack("contact_center", ci=True)
    first = stack.train()
    assert stack.train() == first
    assert stack.last_train_seconds is None  # no retraining for unchanged files
    # A copy of the project with one more NLU example gets a different model name.
    shutil.copytree(REPO_ROOT / "bot" / "contact_center", tmp_path / "bot" / "contact_center",
                    ignore=shutil.ignore_patterns("models", ".rasa"))  # fmt: skip
    copy = RasaStack("contact_center", ci=True, repo_root=tmp_path, rasa_venv=REPO_ROOT / ".venv-rasa")
    assert copy.fingerprint() == stack.fingerprint()
    nlu = tmp_path / "bot" / "contact_center" / "data" / "nlu.yml"
    nlu.write_text(nlu.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert copy.fingerprint() != stack.fingerprint()
    assert RasaStack("contact_center", ci=False).model_path != stack.model_path


def _project_copy(tmp_path: Path, bot: str = "contact_center") -> Path:
    """A copy of a bot under tmp_path/bot/<bot>, with a 1-epoch CI config (fast, throw-away models)."""
    target = tmp_path / "bot" / bot
    shutil.copytree(REPO_ROOT / "bot" / bot, target, ignore=shutil.ignore_patterns("models", ".rasa"))
    config = (target / "config.ci.yml").read_text(encoding="utf-8")
    config = config.replace("epochs: 30", "epochs: 1").replace("epochs: 5", "epochs: 1")
    (target / "config.ci.yml").write_text(config, encoding="utf-8")
    return tmp_path


@pytest.mark.rasa
@needs_rasa
def test_concurrent_trainers_share_one_training(tmp_path: Path) -> None:
    import threading

    root = _project_copy(tmp_path)
    stacks = [
        RasaStack("contact_center", ci=True, repo_root=root, rasa_venv=REPO_ROOT / ".venv-rasa")
        for _ in range(2)
    ]
    results: list[Path] = []
    threads = [threading.Thread(target=lambda s=s: results.append(s.train())) for s in stacks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=900)
    assert len(results) == 2 and results[0] == results[1] and results[0].is_file()
    assert sorted(s.last_train_seconds is None for s in stacks) == [False, True]  # one trained, one waited
    assert [p.name for p in results[0].parent.iterdir() if p.name.startswith(".training-")] == []
    for stack in stacks:
        stack.stop()


@pytest.mark.rasa
@needs_rasa
def test_failed_training_reports_the_log_tail(tmp_path: Path) -> None:
    root = _project_copy(tmp_path)
    domain = root / "bot" / "contact_center" / "domain.yml"
    domain.write_text(
        domain.read_text(encoding="utf-8").replace(
            "  - action_handoff\n", "  - action_handoff\n  - [broken\n"
        )
    )
    stack = RasaStack("contact_center", ci=True, repo_root=root, rasa_venv=REPO_ROOT / ".venv-rasa")
    with pytest.raises(
        DialogueError, match=r"(?s)rasa train for 'contact_center' failed \(exit \d+\); log tail:\n.+"
    ):
        stack.train()
    assert not stack.model_path.exists()
    stack.stop()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"bot": "banking"}, ConfigError, "unknown bot"),
        ({"rasa_port": 70000}, ConfigError, "port must be in 1..65535"),
        ({"startup_timeout_s": 0}, ConfigError, "must be positive"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        RasaStack(**kwargs)


def test_missing_rasa_venv_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DialogueError, match="make venvs"):
        RasaStack("in_car", rasa_venv=tmp_path / "nowhere").train()


def test_not_started_stack_has_no_url() -> None:
    with pytest.raises(RasaUnavailableError, match="start"):
        _ = RasaStack("in_car").url


def test_start_failure_shows_the_log_tail(tmp_path: Path) -> None:
    # A Rasa that dies at start-up: the error must carry its exit code and the end of its log.
    stack = RasaStack("contact_center", ci=True, startup_timeout_s=120)
    stack.rasa_venv = tmp_path / "venv"
    (stack.rasa_venv / "bin").mkdir(parents=True)
    fake = stack.rasa_venv / "bin" / "rasa"
    fake.write_text("#!/bin/sh\necho 'boom: cannot load the actions package' >&2\nexit 3\n", encoding="utf-8")
    fake.chmod(0o755)
    with pytest.raises(RasaUnavailableError, match=r"(?s)exited with code 3.*log tail.*boom: cannot load"):
        stack.start_actions()
    assert not stack.running
    stack.stop()


@needs_rasa
def test_port_in_use_is_reported_before_starting() -> None:
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        stack = RasaStack("contact_center", ci=True, actions_port=port)
        with pytest.raises(RasaUnavailableError, match=f"port {port} is already in use"):
            stack.start_actions()
        stack.stop()
