"""Order and account numbers from what the caller said or keyed.

Speech recognisers write digits as words ("four eight two one oh seven", "double five", in Korean
Sino-Korean digit syllables "사 팔 이 일 공 칠" or "사팔이일공칠번"), keypads arrive as text too
("482107#", "4-8-2-1-0-7"): :func:`digits_in` turns any of them into the digit string.
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
_KOREAN_DIGITS = {"공": "0", "영": "0", "일": "1", "이": "2", "삼": "3", "사": "4", "오": "5", "육": "6", "륙": "6",
                  "칠": "7", "팔": "8", "구": "9"}  # fmt: skip
# What follows a number said in Korean ("...번이요", "...입니다"), longest first.
_KOREAN_ENDINGS = ("번입니다", "번이에요", "번이요", "번요", "입니다", "이에요", "예요", "이요", "번", "요")
_TOKEN = re.compile(r"\d+|[a-z]+|[\uac00-\ud7a3]+")


def digits_in(text: str | None) -> str:
    """Every digit the caller gave, in order ('' when there is none). Other words are ignored."""
    tokens = _TOKEN.findall((text or "").lower())
    korean = [_korean_digits(token) for token in tokens]
    for position, said in enumerate(korean):
        # One syllable alone is a word ("이 번호", "...107이요"), not a digit, unless it stands in a
        # row of spaced Korean digits ("사 팔 이").
        neighbours = korean[max(position - 1, 0) : position] + korean[position + 1 : position + 2]
        if said is not None and (len(said) > 1 or any(n is not None for n in neighbours)):
            tokens[position] = said
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


def _korean_digits(token: str) -> str | None:
    """'사팔이일공칠번' -> '482107'; None unless the word is digit syllables (+ an ending)."""
    if not "\uac00" <= token[0] <= "\ud7a3":
        return None
    for ending in _KOREAN_ENDINGS:
        if token.endswith(ending) and len(token) > len(ending):
            token = token[: -len(ending)]
            break
    if not all(syllable in _KOREAN_DIGITS for syllable in token):
        return None
    return "".join(_KOREAN_DIGITS[syllable] for syllable in token)


def _no_digit_next(tokens: list[str], index: int) -> bool:
    # A lone "o" that is not followed by another digit is a word, not a zero.
    return index >= len(tokens) or not (tokens[index].isdigit() or tokens[index] in _UNITS)


def spoken_digits(number: str) -> str:
    """'482107' -> '4 8 2 1 0 7': text-to-speech reads each digit, as a person would."""
    return " ".join(number)


def number_kind(digits: str) -> str | None:
    """'order' (6 digits), 'account' (8 digits) or None."""
    return {ORDER_DIGITS: "order", ACCOUNT_DIGITS: "account"}.get(len(digits))
