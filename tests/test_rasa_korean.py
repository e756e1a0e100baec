"""The Korean bots on the real stack: Rasa's own test stories for every form path, and over REST a
Korean task end to end on a real database, tone by register, and the defined answer to text the
Korean tokenizer cannot analyse (emoji only, Latin-only English): the bot asks again in Korean. In the
car, over REST, what the NLU extracts (place, contact, genre) is what the task acts on.

Marked ``rasa`` like tests/test_rasa_live.py: trains the CI configs (cached by RasaStack) and starts
real servers (Rasa loads bot/components/kiwi_tokenizer.py, kiwipiepy runs for real).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_rasa_live import RASA_BIN, metadata, parse_reply, variation_texts

from connectors.devtools.rasa_stack import REPO_ROOT, RasaStack

pytestmark = [pytest.mark.rasa, pytest.mark.skipif(not RASA_BIN.is_file(), reason="Rasa venv missing")]

BACKEND_ENV = "EMOTUNE_BACKEND_URL"
TONE_FOR = {"neutral": "standard", "angry": "calm", "sad": "warm", "happy": "upbeat"}


@pytest.mark.parametrize("bot", ["ko_contact_center", "ko_in_car"])
def test_korean_test_stories(bot: str, tmp_path: Path) -> None:
    """Every tone, every form path (happy, denial, invalid number, emotion change and hand-off mid-form)."""
    model = RasaStack(bot, ci=True).train()
    result = subprocess.run(
        [str(RASA_BIN), "test", "core", "--model", str(model), "--stories", "tests/test_stories.yml",
         "--out", str(tmp_path), "--fail-on-prediction-errors"],
        cwd=REPO_ROOT / "bot" / bot, capture_output=True, text=True, timeout=900,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    report = json.loads((tmp_path / "story_report.json").read_text(encoding="utf-8"))
    assert report["weighted avg"]["f1-score"] == 1.0
    assert "action_handoff" in report or "action_deescalate" in report


@pytest.fixture(scope="module")
def ko_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RasaStack, Path]]:
    db = tmp_path_factory.mktemp("backend") / "shop.sqlite3"  # created and seeded by the action server
    os.environ[BACKEND_ENV] = f"sqlite:///{db}"
    try:
        with RasaStack("ko_contact_center", ci=True) as stack:
            yield stack, db
    finally:
        os.environ.pop(BACKEND_ENV, None)


def test_register_changes_with_the_emotion(ko_stack: tuple[RasaStack, Path]) -> None:
    stack, _ = ko_stack
    expected = variation_texts("ko_contact_center", "utter_billing")
    for label, tone in TONE_FOR.items():
        text, custom = parse_reply(stack.send(f"ko-tone-{label}", "요금이 왜 이렇게 많이 나왔어요", metadata(label)))
        assert (text, custom) == (expected[tone], {"tone": tone})


def test_korean_refund_by_digit_words_writes_and_reads_back(ko_stack: tuple[RasaStack, Path]) -> None:
    stack, db = ko_stack
    sender = "ko-refund"
    text, custom = parse_reply(stack.send(sender, "환불하고 싶어요", metadata("neutral")))
    assert custom["task"] == {"name": "refund", "step": "ask_order_number"} and "6자리 주문 번호" in text
    text, custom = parse_reply(stack.send(sender, "사 팔 이 일 공 칠", metadata("neutral")))
    assert custom["task"]["step"] == "confirm" and "59.99파운드" in text and "5~7영업일" in text
    text, custom = parse_reply(stack.send(sender, "네 그렇게 해 주세요", metadata("neutral")))
    with sqlite3.connect(db) as connection:
        [(reference,)] = connection.execute(
            "SELECT reference FROM tickets WHERE conversation_id = ?", (sender,)
        ).fetchall()
    assert custom["ticket"]["reference"] == reference and f"접수 번호는 {' '.join(reference)}" in text


@pytest.mark.parametrize("said", ["😀😀😀", "where is my parcel", "?!"])
def test_text_the_tokenizer_cannot_analyse_is_asked_again_in_korean(
    ko_stack: tuple[RasaStack, Path], said: str
) -> None:
    stack, _ = ko_stack
    sender = f"ko-bad-{abs(hash(said))}"
    text, custom = parse_reply(stack.send(sender, said, metadata("neutral")))
    assert text == variation_texts("ko_contact_center", "utter_fallback")["standard"]
    assert custom == {"tone": "standard"}
    assert stack.tracker(sender)["latest_message"]["intent"]["name"] == "nlu_fallback"


def test_mixed_korean_and_english_number_is_understood_mid_form(ko_stack: tuple[RasaStack, Path]) -> None:
    stack, _ = ko_stack
    sender = "ko-mixed"
    _, custom = parse_reply(stack.send(sender, "택배 어디쯤 왔어요", metadata("neutral")))
    assert custom["task"]["step"] == "ask_order_number"
    text, custom = parse_reply(stack.send(sender, "제 order number는 482233이에요", metadata("neutral")))
    assert custom["task"] == {"name": "order_status", "outcome": "shipped"}
    assert "주문 4 8 2 2 3 3" in text and re.search(r"\d+월 \d+일 .요일에 도착할 예정", text)


@pytest.fixture(scope="module")
def ko_car_stack() -> Iterator[RasaStack]:
    with RasaStack("ko_in_car", ci=True) as stack:
        yield stack


@pytest.mark.parametrize(
    ("said", "key", "expected"),
    [
        # Particles after the entity ("까지", "한테") are split off by the tokenizer, not part of the value.
        ("강남역까지 안내해 줘", "navigation", {"action": "route", "destination": "강남역"}),
        ("아빠한테 전화 좀 걸어 줘", "call", {"action": "dial", "contact": "아빠"}),
    ],
)
def test_korean_entity_is_what_the_task_acts_on(
    ko_car_stack: RasaStack, said: str, key: str, expected: dict[str, str]
) -> None:
    _, custom = parse_reply(ko_car_stack.send(f"ko-car-{key}", said, metadata("neutral")))
    assert custom[key] == expected


def test_korean_genre_is_mapped_to_the_catalogue_tag(ko_car_stack: RasaStack) -> None:
    _, custom = parse_reply(ko_car_stack.send("ko-car-genre", "재즈 좀 틀어 줘", metadata("neutral")))
    assert custom["media"]["playlist"] == "jazz" and custom["media"]["reason"]["genre_requested"] == "jazz"


def test_korean_destination_form_asks_then_takes_the_answer(ko_car_stack: RasaStack) -> None:
    sender = "ko-car-form"
    text, _ = parse_reply(ko_car_stack.send(sender, "길 안내해 줘", metadata("neutral")))
    assert text == variation_texts("ko_in_car", "utter_ask_destination")["standard"]
    _, custom = parse_reply(ko_car_stack.send(sender, "서울역", metadata("neutral")))
    assert custom["navigation"] == {"action": "route", "destination": "서울역"}
