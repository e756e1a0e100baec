"""Order and account numbers from what the caller said or keyed.

Speech recognisers write digits as words ("four eight two one oh seven", "double five"), keypads
arrive as text too ("482107#", "4-8-2-1-0-7"): :func:`digits_in` turns either into the digit string.
Order numbers have 6 digits, account numbers 8 (docs/contact-center.md).
"""

from __future__ import annotations

import re

__all__ = ["ORDER_DIGITS", "ACCOUNT_DIGITS", "digits_in", "spoken_digits", "number_kind"]

ORDER_DIGITS = 6
ACCOUNT_DIGITS = 8

_UNITS = {"zero": "0", "oh": "0", "o": "0", "nought": "0", "nil": "0", "one": "1", "two": "2", "three": "3",
          "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9"}  # fmt: skip
_TEENS = {"ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14", "fifteen": "15",
          "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19"}  # fmt: skip
_TENS = {"twenty": "2", "thirty": "3", "forty": "4", "fifty": "5", "sixty": "6", "seventy": "7", "eighty": "8",
         "ninety": "9"}  # fmt: skip
_REPEATS = {"double": 2, "triple": 3}
_TOKEN = re.compile(r"\d+|[a-z]+")


def digits_in(text: str | None) -> str:
    """Every digit the caller gave, in order ('' when there is none). Other words are ignored."""
    tokens = _TOKEN.findall((text or "").lower())
    digits: list[str] = []
    repeat = 1
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token in _REPEATS:
            repeat = _REPEATS[token]
            continue
        if token.isdigit():
            digits.append(token[0] * repeat + token[1:])
        elif token in _UNITS and not (token == "o" and not digits and repeat == 1 and _no_digit_next(tokens, index)):
            digits.append(_UNITS[token] * repeat)
        elif token in _TEENS:
            digits.append(_TEENS[token])
        elif token in _TENS:
            unit = tokens[index] if index < len(tokens) else ""
            if unit in _UNITS and _UNITS[unit] != "0":
                digits.append(_TENS[token] + _UNITS[unit])
                index += 1
            else:
                digits.append(_TENS[token] + "0")
        repeat = 1
    return "".join(digits)


def _no_digit_next(tokens: list[str], index: int) -> bool:
    # A lone "o" that is not followed by another digit is a word, not a zero.
    return index >= len(tokens) or not (tokens[index].isdigit() or tokens[index] in _UNITS)


def spoken_digits(number: str) -> str:
    """'482107' -> '4 8 2 1 0 7': text-to-speech reads each digit, as a person would."""
    return " ".join(number)


def number_kind(digits: str) -> str | None:
    """'order' (6 digits), 'account' (8 digits) or None."""
    return {ORDER_DIGITS: "order", ACCOUNT_DIGITS: "account"}.get(len(digits))
