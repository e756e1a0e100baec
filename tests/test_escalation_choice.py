"""Escalation thresholds chosen by nested leave-one-corpus-out: the choice never sees the fold it is scored on."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from emotion_models.escalation_choice import choose, nested, rule_grid, rule_name, tempered
from emotion_models.train_head import hand_offs
from emotune.escalation import StreakRule


def test_tempering_probabilities_equals_tempering_logits() -> None:
    logits = np.random.default_rng(0).normal(size=(5, 4)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    for t in (0.5, 1.0, 2.4):
        expected = np.exp(logits / t) / np.exp(logits / t).sum(axis=1, keepdims=True)
        assert np.allclose(tempered(probs, t), expected, atol=1e-9)


def test_the_grid_holds_only_valid_rules_and_today_s_rule() -> None:
    rules = rule_grid()
    names = {rule_name(r) for r in rules}
    assert len(names) == len(rules)
    assert rule_name(StreakRule(("angry",), 3, 0.5, 0.35)) in names
    assert all(r.floor_confidence is None or r.floor_confidence <= r.min_confidence for r in rules)


def _angry(p: float) -> tuple[str, float, dict[str, float]]:
    other = (1.0 - p) / 3
    probs = {"angry": p, "happy": other, "neutral": other, "sad": other}
    label = max(probs, key=lambda k: probs[k])
    return label, probs[label], probs


def test_hand_offs_count_the_first_due_turn_and_false_hand_offs() -> None:
    rule = StreakRule(("angry",), 3, 0.5, 0.35)
    calls = [
        (True, [_angry(0.6), _angry(0.4), _angry(0.55), _angry(0.9)]),  # due at turn 3 (mean 0.517)
        (True, [_angry(0.6), _angry(0.1), _angry(0.6), _angry(0.6)]),  # the weak turn resets the run: never 3
        (False, [_angry(0.7), _angry(0.7), _angry(0.7)]),  # a calm speaker scored angry: a false hand-off
        (False, [_angry(0.2)] * 5),
    ]
    rates = hand_offs(calls, rule)
    assert rates["angry_calls_handed_off"] == 0.5
    assert rates["median_turns_to_hand_off"] == 3.0
    assert rates["false_hand_off_rate"] == 0.5


def _rates(table: dict[str, dict[str, tuple[float, float]]]) -> dict[str, Any]:
    """fold -> rule name -> (handed off, false rate) in the layout fold_rates writes."""
    return {
        fold: {"k": {"rules": {name: {"angry_calls_handed_off": h, "false_hand_off_rate": f} for name, (h, f) in rules.items()}}}
        for fold, rules in table.items()
    }


def test_choose_takes_the_most_hand_offs_inside_the_false_budget() -> None:
    loose, strict = StreakRule(("angry",), 3, 0.3, 0.2), StreakRule(("angry",), 3, 0.6, None)
    rates = _rates({"a": {rule_name(loose): (0.9, 0.2), rule_name(strict): (0.5, 0.0)}})
    assert choose(rates, "k", ["a"], [loose, strict], budget=0.05) == strict
    assert choose(rates, "k", ["a"], [loose, strict], budget=0.25) == loose


def test_nested_choice_never_sees_the_fold_it_scores() -> None:
    loose, strict = StreakRule(("angry",), 3, 0.3, 0.2), StreakRule(("angry",), 3, 0.6, None)
    # On fold "c" the loose rule is harmless, on "a" and "b" it hands off calm callers.
    rates = _rates({
        "a": {rule_name(loose): (1.0, 0.3), rule_name(strict): (0.5, 0.0)},
        "b": {rule_name(loose): (1.0, 0.3), rule_name(strict): (0.5, 0.0)},
        "c": {rule_name(loose): (1.0, 0.0), rule_name(strict): (0.0, 0.0)},
    })  # fmt: skip
    out = nested(rates, "k", [loose, strict], budget=0.05, streak=3)
    assert out["per_held_out_fold"]["c"]["rule"] == rule_name(strict)  # chosen on a and b only
    assert out["per_held_out_fold"]["c"]["angry_calls_handed_off"] == 0.0
    assert out["mean_angry_calls_handed_off"] == pytest.approx((0.5 + 0.5 + 0.0) / 3, abs=1e-4)
