"""Numbers typed on the keypad, collected into one caller turn (I/O-free: keys and times in, events out).

What a contact-center engineer expects of an IVR: while the bot asks for a number, keys are collected
until the terminator (``#``), a pause of ``inter_digit_timeout_s`` or more than ``max_digits``, and the
whole number is ONE turn; ``*`` throws away what was typed. Otherwise a key is a single-key menu choice
(``turn_taking.dtmf``, e.g. 0 for a human). The collector is armed by the dialogue stage when the bot's
reply asks for a number (``custom.task.step`` in ``turn_taking.keypad.steps``) and disarmed by any other
reply; an entry already under way is finished either way. Times are the caller's monotonic seconds,
passed in; :meth:`KeypadCollector.poll` fires the pause.

Bad input, each a defined event:

* the terminator with nothing typed: :class:`EmptyEntry` (the gateway asks for the number on the keypad);
* one digit more than ``max_digits``: :class:`NumberEntered` with ``reason="too_long"`` at once (the bot
  says the length is wrong and asks again), then every key is :class:`KeyIgnored` until a pause or the
  terminator (the rest of that over-long number, the caller's ``#``);
* a pause mid-number: :class:`NumberEntered` with ``reason="timeout"``, whatever its length (the bot
  validates it: "I heard 4 8 2, but order numbers have 6 digits");
* a key lost upstream (the rate limit): :meth:`KeypadCollector.lost` gives :class:`EntryAbandoned` (a
  number with a digit missing may be someone else's: it is never sent), keys are ignored until a pause,
  and the entry stays open for the caller to type it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from emotune.config import KeypadConfig

__all__ = [
    "EmptyEntry",
    "EntryAbandoned",
    "EntryCleared",
    "KeyIgnored",
    "KeypadCollector",
    "KeypadEvent",
    "MenuKey",
    "NumberEntered",
    "asked_step",
]


@dataclass(frozen=True)
class NumberEntered:
    """A whole number: the caller's turn."""

    digits: str
    reason: Literal["terminator", "timeout", "too_long"]


@dataclass(frozen=True)
class MenuKey:
    """A key pressed while no number is asked for: the single-key menu (``turn_taking.dtmf``)."""

    key: str


@dataclass(frozen=True)
class EmptyEntry:
    """The terminator with nothing typed."""


@dataclass(frozen=True)
class EntryCleared:
    """The clear key: the digits typed so far are thrown away, the entry stays open."""

    digits: str


@dataclass(frozen=True)
class EntryAbandoned:
    """A key of the number was lost: the digits so far are thrown away (the caller types it again)."""

    digits: str


@dataclass(frozen=True)
class KeyIgnored:
    """A key after a too-long or abandoned entry (before the caller paused), or a letter key in a number."""

    key: str
    reason: Literal["too_long", "abandoned", "not_a_digit"]


KeypadEvent = NumberEntered | MenuKey | EmptyEntry | EntryCleared | EntryAbandoned | KeyIgnored


def asked_step(messages: list[dict[str, object]]) -> str | None:
    """The ``custom.task.step`` of a Rasa reply (the REST channel's messages), if it has one."""
    for message in messages:
        custom = message.get("custom")
        task = custom.get("task") if isinstance(custom, dict) else None
        step = task.get("step") if isinstance(task, dict) else None
        if isinstance(step, str):
            return step
    return None


class KeypadCollector:
    """One call's keypad: number entry while armed, the single-key menu otherwise."""

    def __init__(self, settings: KeypadConfig) -> None:
        self.settings = settings
        self.armed = False  # the bot is waiting for a number
        self.digits = ""
        self._last_key_at: float | None = None  # of the entry under way, or of the keys being ignored
        self._ignoring: Literal["too_long", "abandoned"] | None = None

    @property
    def collecting(self) -> bool:
        """Digits typed and not yet sent (or keys being ignored): the caller is busy on the keypad."""
        return bool(self.digits) or self._ignoring is not None

    def arm(self) -> None:
        """The bot asks for a number: the next keys are its digits."""
        self.armed = self.settings.collect_numbers

    def disarm(self) -> None:
        """The bot no longer asks; an entry under way is still finished (terminator, pause, length)."""
        self.armed = False

    def key(self, key: str, now: float) -> list[KeypadEvent]:
        events = self.poll(now)
        s = self.settings
        if self._ignoring is not None:
            self._last_key_at = now
            if key == s.terminator:  # the end of the ignored entry: the next key starts afresh
                reason, self._ignoring = self._ignoring, None
                return [*events, KeyIgnored(key, reason)]
            return [*events, KeyIgnored(key, self._ignoring)]
        if not (self.armed or self.digits):
            return [*events, MenuKey(key)]
        if key == s.terminator:
            return [*events, self._send("terminator") if self.digits else EmptyEntry()]
        if key == s.clear_key:
            typed, self.digits, self._last_key_at = self.digits, "", None
            return [*events, EntryCleared(typed)]
        if not key.isdigit():
            return [*events, KeyIgnored(key, "not_a_digit")]  # A-D (and w) mean nothing in a number
        self.digits += key
        self._last_key_at = now
        if len(self.digits) > s.max_digits:
            entered = self._send("too_long")
            self._ignoring, self._last_key_at = "too_long", now
            return [*events, entered]
        return events

    def lost(self, now: float) -> list[KeypadEvent]:
        """A key was dropped before it reached us (the rate limit). While a number is asked for or
        being typed, that number cannot be trusted: abandon it, ignore keys until a pause."""
        events = self.poll(now)
        if self._ignoring is not None:
            self._last_key_at = now
            return events
        if not (self.armed or self.digits):
            return events  # a lost menu key: nothing to protect
        typed, self.digits = self.digits, ""
        self._ignoring, self._last_key_at = "abandoned", now
        return [*events, EntryAbandoned(typed)]

    def poll(self, now: float) -> list[KeypadEvent]:
        """The pause: ends a number under way, or the ignoring after a bad entry."""
        if self._last_key_at is None or now - self._last_key_at < self.settings.inter_digit_timeout_s:
            return []
        self._last_key_at = None
        if self._ignoring is not None:
            self._ignoring = None
            return []
        return [self._send("timeout")] if self.digits else []

    def _send(self, reason: Literal["terminator", "timeout", "too_long"]) -> NumberEntered:
        entered = NumberEntered(self.digits, reason)
        self.digits, self._last_key_at = "", None
        self.armed = False  # the bot's answer re-arms if it asks again
        return entered
