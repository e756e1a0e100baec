"""The multilingual training corpora, read from their prepared ``manifest.csv`` files.

Five corpora, four languages with the four classes and one with arousal only:

* ``ravdess`` (English), ``emodb`` (German), ``turev`` (Turkish), ``korean_operator`` (Korean):
  class labels; RAVDESS/TurEV ``calm`` counts as ``neutral``; other classes are dropped.
* ``baved`` (Arabic): arousal level only (``low`` / ``neutral`` / ``high``), never a class.

Every clip becomes an :class:`Utterance` (16 kHz mono float32, silence-trimmed). Corpora that are
absent are skipped, so the recipe runs on whatever subset a machine has.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotion_models.augment import trim_silence
from emotion_models.data import load_audio
from emotion_models.labels import arousal_target
from emotune.errors import DataError

__all__ = [
    "CLASS_CORPORA",
    "AROUSAL_CORPORA",
    "BAVED_AROUSAL",
    "Utterance",
    "read_corpus",
    "read_corpora",
]

CLASSES = ("neutral", "happy", "sad", "angry")
CLASS_CORPORA = ("ravdess", "emodb", "turev", "korean_operator")
AROUSAL_CORPORA = ("baved",)
# BAVED's three arousal levels on the scale of the label-derived targets (sad 0.15 ... angry 0.9).
BAVED_AROUSAL = {"low": 0.15, "neutral": 0.45, "high": 0.85}
_LABEL_MAP = {"calm": "neutral"}
_LANGUAGE = {"ravdess": "en", "emodb": "de", "turev": "tr", "korean_operator": "ko", "baved": "ar"}


@dataclass
class Utterance:
    """One clip: class label or None (arousal-only corpora), arousal target or None."""

    wav: np.ndarray
    label: str | None
    arousal: float | None
    speaker: str
    corpus: str
    language: str
    path: str


def _rows(manifest: Path) -> list[dict[str, str]]:
    try:
        with manifest.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except OSError as exc:
        raise DataError(f"cannot read {manifest}: {exc}") from exc


def read_corpus(root: Path, corpus: str, classes: Sequence[str] = CLASSES) -> list[Utterance]:
    """All usable clips of one corpus folder (``root/manifest.csv``)."""
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise DataError(f"{corpus}: no manifest.csv in {root}")
    utterances = []
    for row in _rows(manifest):
        if corpus in AROUSAL_CORPORA:
            level = row.get("arousal_level", "")
            if level not in BAVED_AROUSAL:
                raise DataError(f"{manifest}: unknown arousal level {level!r} for {row.get('path')}")
            label: str | None = None
            arousal: float | None = BAVED_AROUSAL[level]
        else:
            raw = row.get("label", "").strip().lower()
            label = _LABEL_MAP.get(raw, raw)
            if label not in classes:
                continue
            arousal = arousal_target(label)
        path = root / row["path"]
        wav = trim_silence(load_audio(str(path)))
        utterances.append(
            Utterance(wav, label, arousal, row["speaker"], corpus, _LANGUAGE.get(corpus, "?"), str(path))
        )
    return utterances


def read_corpora(data_root: Path, corpora: Iterable[str] = CLASS_CORPORA + AROUSAL_CORPORA) -> list[Utterance]:
    """Every present corpus under ``data_root`` (``../shared/data``); absent ones are skipped."""
    found: list[Utterance] = []
    for corpus in corpora:
        folder = data_root / corpus
        if (folder / "manifest.csv").is_file():
            found.extend(read_corpus(folder, corpus))
    return found
