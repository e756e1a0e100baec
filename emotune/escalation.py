"""The escalation streak rule, written once: when consecutive negative emotion readings call for a human.

Standard library only and no imports from the rest of Emotune, because two environments import
it: the toolkit (the AudioHook monitor core, call reports) and the Rasa custom actions in
``actions/``, which run in Rasa's own Python 3.10 venv (the action server has the repository root
on its ``PYTHONPATH``). A reading is *negative* when its label is one of ``negative_emotions`` with
``confidence >= min_confidence``; a streak is the run of negative readings up to the latest one,
and any other reading ends it. :class:`StreakCounter` fires once per streak, when it reaches
``streak_turns``.

Accumulated evidence (``floor_confidence``): one weak turn inside a run of angry turns should not
reset it (measured: a training speaker's four strongly angry turns came out 0.61 / 0.47 / 0.63 /
0.55 and a strict streak never fired). With a floor, a reading keeps the run going while the
probability of the negative emotions is at least ``floor_confidence``, and the rule is *due* when
the run has ``streak_turns`` readings whose negative probability averages ``min_confidence`` or
more. Without a floor (``None``) the rule is the strict streak above.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# (label, confidence) or (label, confidence, probabilities by label)
Reading = tuple[str, float] | tuple[str, float, Mapping[str, float]]

__all__ = ["Reading", "StreakCounter", "StreakRule"]


@dataclass(frozen=True)
class StreakRule:
    """Which readings count as negative, and how many in a row call for a human."""

    negative_emotions: tuple[str, ...] = ("angry",)
    streak_turns: int = 3
    min_confidence: float = 0.5
    floor_confidence: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.streak_turns, bool) or not isinstance(self.streak_turns, int) or self.streak_turns < 1:
            raise ValueError(f"streak_turns must be an integer >= 1, got {self.streak_turns!r}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence!r}")
        if self.floor_confidence is not None and not 0.0 <= self.floor_confidence <= self.min_confidence:
            raise ValueError(f"floor_confidence must be in [0, min_confidence], got {self.floor_confidence!r}")

    def negative_probability(
        self, label: str | None, confidence: float, probabilities: Mapping[str, float] | None = None
    ) -> float:
        """How negative one reading is: the probability mass of the negative emotions when the
        reading has probabilities, else its confidence when its label is negative, else 0."""
        if probabilities:
            return float(sum(float(probabilities.get(e, 0.0)) for e in self.negative_emotions))
        return float(confidence) if label is not None and label in self.negative_emotions else 0.0

    def is_negative(self, label: str | None, confidence: float, probabilities: Mapping[str, float] | None = None) -> bool:
        """Whether one reading keeps a run going (strict rule: is a negative reading)."""
        if self.floor_confidence is None:
            return label is not None and label in self.negative_emotions and confidence >= self.min_confidence
        return self.negative_probability(label, confidence, probabilities) >= self.floor_confidence

    def run(self, readings: Iterable[Reading | None]) -> list[float]:
        """The negative probabilities of the run at the end of ``readings`` (oldest first)."""
        current: list[float] = []
        for reading in readings:
            if reading is not None and self.is_negative(*reading):
                current.append(self.negative_probability(*reading))
            else:
                current = []
        return current

    def streak(self, readings: Iterable[Reading | None]) -> int:
        """Readings in the run at the end of ``readings`` (oldest first; None = no reading)."""
        return len(self.run(readings))

    def due_for(self, run: Sequence[float]) -> bool:
        """Whether a run calls for a human: ``streak_turns`` readings averaging ``min_confidence``."""
        last = list(run)[-self.streak_turns :]
        return len(last) >= self.streak_turns and sum(last) / len(last) >= self.min_confidence - 1e-9

    def due(self, readings: Iterable[Reading | None]) -> bool:
        return self.due_for(self.run(readings))

    def reached(self, streak: int) -> bool:
        return streak >= self.streak_turns


@dataclass
class StreakCounter:
    """The rule applied to readings as they arrive: :meth:`observe` is True once per streak."""

    rule: StreakRule = field(default_factory=StreakRule)
    labels: list[str] = field(default_factory=list)  # the current run's labels, oldest first
    evidence: list[float] = field(default_factory=list)  # their negative probabilities
    _fired: bool = False

    @classmethod
    def of(
        cls, negative_emotions: Sequence[str], streak_turns: int, min_confidence: float, floor_confidence: float | None = None
    ) -> StreakCounter:
        return cls(StreakRule(tuple(negative_emotions), streak_turns, min_confidence, floor_confidence))

    @property
    def streak(self) -> int:
        return len(self.labels)

    def observe(self, label: str, confidence: float, probabilities: Mapping[str, float] | None = None) -> bool:
        """Record one reading; True exactly once per run, when the run becomes due."""
        if self.rule.is_negative(label, confidence, probabilities):
            self.labels.append(label)
            self.evidence.append(self.rule.negative_probability(label, confidence, probabilities))
        else:
            self.labels.clear()
            self.evidence.clear()
            self._fired = False
        if self.rule.due_for(self.evidence) and not self._fired:
            self._fired = True
            return True
        return False
