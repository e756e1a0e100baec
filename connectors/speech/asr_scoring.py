"""Scoring a recogniser against reference transcripts: word and character error rates.

Shared by ``benchmarks/bench_asr.py`` (the committed figures) and the tests, so both score the same
way. Text is lower-cased and punctuation dropped before counting. For Korean, words are eojeol
(space-separated) and the character error rate ignores spaces (Korean spacing varies between
writers); :func:`read_numerals_korean` reads Arabic digits as Sino-Korean numerals, because
transcripts such as korean_operator's spell numbers in Hangul ("오월 십칠일") where Whisper writes
digits ("5월 17일"): the same words in another spelling.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalise", "edit_distance", "wer_counts", "char_counts", "char_error_rate", "sino_korean",
           "read_numerals_korean"]

_HANGUL_DIGITS = "영일이삼사오육칠팔구"


def normalise(text: str) -> str:
    kept = "".join(c if (unicodedata.category(c)[0] in "LN" or c.isspace() or c in "'-") else " " for c in text.lower())
    return " ".join(kept.replace("-", " ").split())


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def wer_counts(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edits, reference words) after normalisation."""
    ref, hyp = normalise(reference).split(), normalise(hypothesis).split()
    return edit_distance(ref, hyp), len(ref)


def char_counts(reference: str, hypothesis: str) -> tuple[int, int]:
    """(character edits, reference characters) after normalisation, spaces removed."""
    ref, hyp = normalise(reference).replace(" ", ""), normalise(hypothesis).replace(" ", "")
    return edit_distance(list(ref), list(hyp)), len(ref)


def char_error_rate(reference: str, hypothesis: str) -> float:
    edits, chars = char_counts(reference, hypothesis)
    return edits / max(1, chars)


def _below_ten_thousand(n: int) -> str:
    out = ""
    for value, unit in ((1000, "천"), (100, "백"), (10, "십"), (1, "")):
        digit = n // value % 10
        if digit:
            out += ("" if digit == 1 and unit else _HANGUL_DIGITS[digit]) + unit  # 십, not 일십
    return out


def sino_korean(n: int) -> str:
    """A number as it is read in Sino-Korean (17 -> 십칠, 16000 -> 만육천, 20 -> 이십)."""
    if n < 0:
        raise ValueError(f"no reading for a negative number: {n}")
    if n == 0:
        return _HANGUL_DIGITS[0]
    out = ""
    for value, unit in ((10**12, "조"), (10**8, "억"), (10**4, "만"), (1, "")):
        group = n // value % 10000
        if group:
            out += ("" if group == 1 and unit == "만" else _below_ten_thousand(group)) + unit  # 만, not 일만
    return out


def read_numerals_korean(text: str) -> str:
    """Digits (with thousands commas) in ``text`` replaced by their Sino-Korean reading."""
    return re.sub(r"\d[\d,]*\d|\d", lambda m: sino_korean(int(m.group().replace(",", ""))), text)
