"""The shipped domains keep the tone contract: every response has one variation per tone, each
variation tells the TTS its tone, and the in-car bot never asks a question in brief mode."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest
from tracker_fixtures import BOTS, REPO_ROOT, load_domain

TONES = ("standard", "calm", "warm", "upbeat")


def tone_of(variation: dict[str, Any]) -> str | None:
    for condition in variation.get("condition", []):
        if condition["name"] == "tone":
            return condition["value"]
    return None


def brief(variation: dict[str, Any]) -> bool | None:
    for condition in variation.get("condition", []):
        if condition["name"] == "brief_mode":
            return condition["value"]
    return None


@pytest.mark.parametrize("bot", BOTS)
def test_every_response_has_each_tone_once(bot: str) -> None:
    domain = load_domain(bot)
    assert domain["slots"]["tone"]["values"] == list(TONES)
    for name, variations in domain["responses"].items():
        by_tone: dict[str, list[dict]] = {}
        for variation in variations:
            if brief(variation):
                continue
            tone = tone_of(variation) or "standard"
            by_tone.setdefault(tone, []).append(variation)
            assert variation["custom"]["tone"] == tone, f"{name}: custom.tone does not match its condition"
        assert sorted(by_tone) == sorted(TONES), f"{name} lacks tones {set(TONES) - set(by_tone)}"
        assert all(len(v) == 1 for v in by_tone.values()), (
            f"{name}: one variation per tone keeps replies predictable"
        )
        texts = [v[0]["text"] for v in by_tone.values()]
        assert len(set(texts)) == len(TONES), f"{name}: tones must actually read differently"


@pytest.mark.parametrize("bot", ["in_car", "ko_in_car"])
def test_in_car_brief_mode_never_asks(bot: str) -> None:
    domain = load_domain(bot)
    for name, variations in domain["responses"].items():
        for variation in variations:
            asks = "?" in variation["text"]
            if brief(variation) is True or (asks and brief(variation) is not False and tone_of(variation)):
                assert not asks, f"{name}: a question in brief mode"
            if asks:
                # A question is only allowed when brief mode has its own variation for this response.
                assert any(brief(v) is True for v in variations), f"{name} asks but has no brief variation"
        assert all(len(v["text"].split()) <= 14 for v in variations), f"{name}: too long for a driver"


def _responses_uttered_by_actions() -> set[str]:
    found: set[str] = set()
    functions: set[str] = set()
    for path in Path(REPO_ROOT, "actions").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value.startswith("utter_")
            ):
                found.add(node.value)
            elif isinstance(node, ast.FunctionDef):
                functions.add(node.name)  # e.g. utter_with_payload, named in __all__
    return found - functions


def test_actions_only_utter_responses_a_domain_has() -> None:
    known = set().union(*(load_domain(bot)["responses"] for bot in BOTS))
    missing = _responses_uttered_by_actions() - known
    assert not missing, f"actions utter responses no domain defines: {missing}"


@pytest.mark.parametrize("bot", BOTS)
def test_domain_actions_exist_in_actions_package(bot: str) -> None:
    from rasa_sdk import Action
    from rasa_sdk.utils import all_subclasses

    import actions.contact_center  # noqa: F401  (registers the Action subclasses)
    import actions.deescalate  # noqa: F401
    import actions.handoff  # noqa: F401
    import actions.in_car  # noqa: F401
    import actions.validate_slot_mappings  # noqa: F401

    # The action server registers the concrete subclasses only (inspect.isabstract), as here.
    names = {
        cls().name()
        for cls in all_subclasses(Action)
        if cls.__module__.startswith("actions.") and not inspect.isabstract(cls)
    }
    assert set(load_domain(bot)["actions"]) <= names
