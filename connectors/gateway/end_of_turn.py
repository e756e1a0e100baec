"""The end-of-turn decision: has a pause after speech ended the caller's turn? (typed, no I/O)

Between the VAD (speech / silence per frame) and the dialogue. ``turn_taking.end_of_turn``:

* ``silence``: ``end_silence_s`` of silence ends every turn (a finished one waits as long as an
  unfinished one).
* ``smart_turn``: after ``short_silence_s`` of silence the smart-turn v3.2 model
  (:class:`emotion_runtime.end_of_turn.SmartTurnModel`) is asked, once per pause, whether the turn
  is finished. A probability at or above ``end_of_turn_threshold`` ends the turn at once; below it
  the turn waits for more speech, up to ``long_silence_s`` of silence (a caller who paused
  mid-sentence is not cut off). While no answer is there (the model is busy, failed, timed out or
  its request was dropped) the silence rule holds: ``end_silence_s`` ends the turn. Every pause
  therefore ends by ``long_silence_s`` at the latest: no turn is stuck on the model.

:meth:`EndOfTurnRule.decide` is the whole rule; :class:`connectors.gateway.turn_taking.TurnSegmenter`
keeps the per-pause state and calls it on every silent frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from emotune.config import TurnTakingConfig

__all__ = ["Decision", "EndOfTurnRequest", "EndOfTurnRule"]


class Decision(Enum):
    WAIT = "wait"  # the turn goes on (more speech may come)
    ASK = "ask"  # ask the model now (the caller of decide records that it asked)
    END = "end"  # the turn is over


@dataclass(frozen=True)
class EndOfTurnRule:
    mode: str = "silence"  # smart_turn | silence
    threshold: float = 0.5
    short_silence_s: float = 0.2
    end_silence_s: float = 0.6  # the silence rule (and smart_turn's fallback)
    long_silence_s: float = 2.0

    def __post_init__(self) -> None:
        if self.mode not in ("smart_turn", "silence"):
            raise ValueError(f"end_of_turn must be smart_turn or silence, got {self.mode!r}")
        if not 0 < self.short_silence_s <= self.end_silence_s <= self.long_silence_s:
            raise ValueError("need 0 < short_silence_s <= end_silence_s <= long_silence_s")

    @classmethod
    def from_config(cls, tt: TurnTakingConfig) -> EndOfTurnRule:
        return cls(tt.end_of_turn, tt.end_of_turn_threshold, tt.short_silence_s, tt.end_silence_s, tt.long_silence_s)

    @property
    def uses_model(self) -> bool:
        return self.mode == "smart_turn"

    def decide(self, silent_s: float, asked: bool, probability: float | None) -> Decision:
        """``silent_s`` of silence so far in this pause; ``asked``: the model was asked in this pause;
        ``probability``: its answer, None while there is none (pending, failed, dropped)."""
        if self.mode == "silence":
            return Decision.END if silent_s >= self.end_silence_s - 1e-9 else Decision.WAIT
        if silent_s >= self.long_silence_s - 1e-9:
            return Decision.END
        if probability is not None:
            finished = probability >= self.threshold
            return Decision.END if finished and silent_s >= self.short_silence_s - 1e-9 else Decision.WAIT
        if not asked and silent_s >= self.short_silence_s - 1e-9:
            return Decision.ASK
        return Decision.END if silent_s >= self.end_silence_s - 1e-9 else Decision.WAIT


@dataclass(frozen=True)
class EndOfTurnRequest:
    """One pause's question to the model: the turn's audio so far (ending with the pause)."""

    pause: int  # the segmenter's pause number; an answer for an older pause is ignored
    audio: np.ndarray
    sample_rate: int
