"""The escalation streak rule, written once: when consecutive negative emotion readings call for a human.

Standard library only and no imports from the rest of Emotune, because two environments import
it: the toolkit (the AudioHook monitor core, call reports) and the Rasa custom actions in
``actions/``, which run in Rasa's own Python 3.10 venv (the action server has the repository root
on its ``PYTHONPATH``). A reading is *negative* when its label is one of ``negative_emotions`` with
``confidence >= min_confidence``; a streak is the run of negative readings up to the latest one,
and any other reading ends it. :class:`StreakCounter` fires once per streak, when it reaches
``streak_turns``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["StreakRule", "StreakCounter"]


@dataclass(frozen=True)
class StreakRule:
    """Which readings count as negative, and how many in a row call for a human."""

    negative_emotions: tuple[str, ...] = ("angry",)
    streak_turns: int = 3
    min_confidence: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.streak_turns, bool) or not isinstance(self.streak_turns, int) or self.streak_turns < 1:
            raise ValueError(f"streak_turns must be an integer >= 1, got {self.streak_turns!r}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence!r}")

    def is_negative(self, label: str | None, confidence: float) -> bool:
        """Whether one reading counts towards the streak."""
        return label is not None and label in self.negative_emotions and confidence >= self.min_confidence

    def streak(self, readings: Iterable[tuple[str, float] | None]) -> int:
        """Consecutive negative readings at the end of ``readings`` (oldest first; None = no reading)."""
        count = 0
        for reading in readings:
            count = count + 1 if reading is not None and self.is_negative(*reading) else 0
        return count

    def reached(self, streak: int) -> bool:
        return streak >= self.streak_turns


@dataclass
class StreakCounter:
    """The rule applied to readings as they arrive: :meth:`observe` is True once per streak."""

    rule: StreakRule = field(default_factory=StreakRule)
    labels: list[str] = field(default_factory=list)  # the current streak's labels, oldest first
    _fired: bool = False

    @classmethod
    def of(cls, negative_emotions: Sequence[str], streak_turns: int, min_confidence: float) -> StreakCounter:
        return cls(StreakRule(tuple(negative_emotions), streak_turns, min_confidence))

    @property
    def streak(self) -> int:
        return len(self.labels)

    def observe(self, label: str, confidence: float) -> bool:
        """Record one reading; True exactly when it completes a streak."""
        if self.rule.is_negative(label, confidence):
            self.labels.append(label)
        else:
            self.labels.clear()
            self._fired = False
        if self.rule.reached(len(self.labels)) and not self._fired:
            self._fired = True
            return True
        return False
