"""The keypad collector (connectors/gateway/keypad.py): keys and times in, events out, no I/O.

A number typed while the bot asks for one is one event; each bad input has its own defined event.
The call-level behaviour (turns, prompts, barge-in, the rate limit) is in test_call_flow.py, the whole
thing with the real bot in test_gateway_keypad.py.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from connectors.gateway.keypad import (
    EmptyEntry,
    EntryAbandoned,
    EntryCleared,
    KeyIgnored,
    KeypadCollector,
    KeypadEvent,
    MenuKey,
    NumberEntered,
    asked_step,
)
from emotune.config import EmotuneConfig, KeypadConfig


def armed(**settings: object) -> KeypadCollector:
    collector = KeypadCollector(KeypadConfig(**settings))  # type: ignore[arg-type]
    collector.arm()
    return collector


def press(collector: KeypadCollector, keys: str, start: float = 0.0, gap: float = 0.3) -> list[KeypadEvent]:
    events: list[KeypadEvent] = []
    for i, key in enumerate(keys):
        events += collector.key(key, start + i * gap)
    return events


def test_a_number_and_the_hash_key_are_one_event() -> None:
    collector = armed()
    assert press(collector, "482233#") == [NumberEntered("482233", "terminator")]
    assert not collector.armed and not collector.collecting  # the bot's next question re-arms it


def test_a_pause_ends_the_number_without_the_hash_key() -> None:
    collector = armed(inter_digit_timeout_s=3.0)
    assert press(collector, "482233") == []
    assert collector.poll(1.5 + 2.9) == []  # last key at 1.5 s
    assert collector.poll(1.5 + 3.0) == [NumberEntered("482233", "timeout")]
    assert collector.poll(10.0) == []


def test_a_pause_mid_number_sends_what_was_typed() -> None:
    """The bot validates the length ("I heard 4 8 2, but order numbers have 6 digits")."""
    collector = armed()
    assert press(collector, "482") == []
    # A late key: the pause ended the number first; the sent number disarmed, so the key is the menu's.
    assert collector.key("2", 0.6 + 3.5) == [NumberEntered("482", "timeout"), MenuKey("2")]
    collector.arm()  # the bot's "I heard 4 8 2, but ..." asks again
    assert press(collector, "482233#", start=20.0) == [NumberEntered("482233", "terminator")]


def test_star_clears_and_the_caller_starts_again() -> None:
    collector = armed()
    assert press(collector, "481*") == [EntryCleared("481")]
    assert collector.armed and collector.digits == ""
    assert press(collector, "482233#", start=2.0) == [NumberEntered("482233", "terminator")]


def test_hash_with_nothing_typed_is_an_empty_entry_and_the_entry_stays_open() -> None:
    collector = armed()
    assert press(collector, "#") == [EmptyEntry()]
    assert collector.armed
    assert press(collector, "55120934#", start=1.0) == [NumberEntered("55120934", "terminator")]


def test_too_many_digits_are_sent_at_once_and_the_rest_ignored_until_a_pause() -> None:
    collector = armed(max_digits=8)
    events = press(collector, "1234567890#")
    assert events == [NumberEntered("123456789", "too_long"), KeyIgnored("0", "too_long"), KeyIgnored("#", "too_long")]
    assert not collector.collecting and not collector.armed
    assert collector.key("0", 5.0) == [MenuKey("0")]  # after the '#', keys are the menu again


def test_keys_after_a_too_long_number_are_ignored_until_the_caller_pauses() -> None:
    collector = armed(max_digits=6, inter_digit_timeout_s=2.0)
    assert press(collector, "1234567") == [NumberEntered("1234567", "too_long")]
    assert collector.key("0", 2.0) == [KeyIgnored("0", "too_long")]
    assert collector.poll(3.9) == [] and collector.collecting
    assert collector.poll(4.0) == [] and not collector.collecting
    assert collector.key("0", 4.1) == [MenuKey("0")]


def test_a_lost_key_abandons_the_number_and_the_caller_types_it_again() -> None:
    collector = armed(inter_digit_timeout_s=3.0)
    assert press(collector, "482") == []
    assert collector.lost(0.7) == [EntryAbandoned("482")]
    assert collector.lost(0.8) == []  # one abandonment per burst
    assert press(collector, "33#", start=0.9, gap=0.1) == [KeyIgnored("3", "abandoned"), KeyIgnored("3", "abandoned"),
                                                            KeyIgnored("#", "abandoned")]  # fmt: skip
    assert collector.armed  # the number is still asked for
    assert press(collector, "482233#", start=10.0) == [NumberEntered("482233", "terminator")]


def test_a_lost_key_abandons_even_before_the_first_digit_arrived() -> None:
    collector = armed()
    assert collector.lost(0.0) == [EntryAbandoned("")]
    assert collector.key("4", 0.5) == [KeyIgnored("4", "abandoned")]
    assert collector.poll(3.5) == [] and collector.armed and not collector.collecting


def test_not_armed_every_key_is_the_menu_and_a_lost_one_is_nothing() -> None:
    collector = KeypadCollector(KeypadConfig())
    assert press(collector, "0#*5") == [MenuKey("0"), MenuKey("#"), MenuKey("*"), MenuKey("5")]
    assert collector.lost(2.0) == [] and collector.poll(100.0) == []


def test_an_entry_under_way_is_finished_after_disarm() -> None:
    collector = armed()
    press(collector, "4822")
    collector.disarm()  # e.g. the answer to a spoken turn arrived meanwhile
    assert press(collector, "33#", start=1.2) == [NumberEntered("482233", "terminator")]


def test_letter_keys_are_ignored_inside_a_number() -> None:
    collector = armed()
    assert press(collector, "48A2233#") == [KeyIgnored("A", "not_a_digit"), NumberEntered("482233", "terminator")]


def test_collect_numbers_false_keeps_every_key_a_menu_key() -> None:
    collector = armed(collect_numbers=False)
    assert not collector.armed
    assert press(collector, "12#") == [MenuKey("1"), MenuKey("2"), MenuKey("#")]


def test_other_terminator_and_clear_keys() -> None:
    collector = armed(terminator="*", clear_key="#")
    assert press(collector, "12#482233*") == [EntryCleared("12"), NumberEntered("482233", "terminator")]


def test_the_step_a_rasa_reply_asks_for() -> None:
    reply = [{"recipient_id": "c", "text": "What's your 6-digit order number?"},
             {"recipient_id": "c", "custom": {"tone": "standard", "task": {"name": "order_status",
                                                                            "step": "ask_order_number"}}}]  # fmt: skip
    assert asked_step(reply) == "ask_order_number"
    assert asked_step([{"text": "hi"}, {"custom": {"tone": "calm"}}, {"custom": "x"}]) is None
    assert "ask_order_number" in KeypadConfig().steps and "ask_account_number" in KeypadConfig().steps


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        ({"terminator": "5"}, "terminator", "not a digit"),
        ({"clear_key": "##"}, "clear_key", "one keypad key"),
        ({"terminator": "*", "clear_key": "*"}, "keypad", "must differ"),
        ({"inter_digit_timeout_s": 0}, "inter_digit_timeout_s", "greater than 0"),
        ({"max_digits": 0}, "max_digits", "greater than or equal to 1"),
        ({"max_digit": 8}, "max_digit", "Extra inputs"),
    ],
)
def test_settings_errors_name_the_field(settings: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(ValidationError) as error:
        EmotuneConfig(turn_taking={"keypad": settings})
    (problem,) = error.value.errors()
    location = ".".join(str(part) for part in problem["loc"])
    assert location.startswith("turn_taking.keypad") and field in location, location
    assert message in problem["msg"], problem["msg"]
