"""Tone is how, never what: every variation of a response (each tone, and the in-car brief mode)
states the same facts, numbers and commitment.

Checked for every response of both bots, derived and declared:
* the same template slots (``{reference}``, ``{amount}``, ...): the same backend facts are read out;
* the same numbers written in the text ("5 to 7 working days", "30 days", "6-digit");
* every fact listed for the response in ``bot/<bot>/response_facts.yml`` (a new response must be
  listed there, so its author decides what its facts are).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
import yaml
from tracker_fixtures import BOTS, REPO_ROOT, load_domain

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_NUMBER = re.compile(r"(?<![\w{])\d+(?:[.,]\d+)?")
_NUMBER_WORDS = re.compile(r"\b(two|three|four|five|six|seven|eight|nine|ten|twelve|twenty|thirty)\b", re.I)


def facts(bot: str) -> dict[str, list[str]]:
    data = yaml.safe_load((REPO_ROOT / "bot" / bot / "response_facts.yml").read_text(encoding="utf-8"))
    return data["responses"]


def variations(bot: str) -> list[tuple[str, list[dict[str, Any]]]]:
    return sorted(load_domain(bot)["responses"].items())


def _label(variation: dict[str, Any]) -> str:
    conditions = {c["name"]: c["value"] for c in variation.get("condition", [])}
    return ", ".join(f"{k}={v}" for k, v in conditions.items()) or "standard"


@pytest.mark.parametrize("bot", BOTS)
def test_every_response_declares_its_facts(bot: str) -> None:
    declared = facts(bot)
    responses = {name for name, _ in variations(bot)}
    assert responses - set(declared) == set(), "responses without a facts entry"
    assert set(declared) - responses == set(), "facts for responses the domain does not have"


@pytest.mark.parametrize("bot", BOTS)
def test_variations_share_slots_numbers_and_facts(bot: str) -> None:
    declared = facts(bot)
    problems = []
    for name, variants in variations(bot):
        base = variants[0]["text"]
        for variant in variants:
            text = variant["text"]
            where = f"{bot}/{name} [{_label(variant)}]"
            if set(_PLACEHOLDER.findall(text)) != set(_PLACEHOLDER.findall(base)):
                problems.append(f"{where}: slots {sorted(set(_PLACEHOLDER.findall(text)))} "
                                f"!= {sorted(set(_PLACEHOLDER.findall(base)))}")  # fmt: skip
            if Counter(_NUMBER.findall(text)) != Counter(_NUMBER.findall(base)):
                problems.append(f"{where}: numbers {_NUMBER.findall(text)} != {_NUMBER.findall(base)}")
            words = Counter(w.lower() for w in _NUMBER_WORDS.findall(text))
            if words != Counter(w.lower() for w in _NUMBER_WORDS.findall(base)):
                problems.append(f"{where}: number words {dict(words)} differ from the standard variation")
            for fact in declared.get(name, []):
                if fact.lower() not in text.lower():
                    problems.append(f"{where}: missing the fact {fact!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("bot", BOTS)
def test_every_declared_fact_has_its_slots(bot: str) -> None:
    """A fact naming a template slot must be a slot the response really fills."""
    for name, variants in variations(bot):
        slots = set(_PLACEHOLDER.findall(variants[0]["text"]))
        for fact in facts(bot).get(name, []):
            assert set(_PLACEHOLDER.findall(fact)) <= slots, f"{bot}/{name}: fact {fact!r}"
