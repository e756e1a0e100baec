"""Emotion label vocabulary, label maps and the label-derived arousal/valence targets.

Arousal and valence are NOT annotated here: none of the shipped corpora has dimensional
ratings for every clip. They are derived from the categorical label (a coarse, honest prior:
angry/happy are high-arousal, sad/neutral low; happy is positive, angry/sad negative, neutral 0)
and serve as auxiliary training targets that push the embedding to order emotions by energy
and polarity, which transfers better across languages than the category boundaries alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = [
    "AROUSAL_TARGET",
    "VALENCE_TARGET",
    "DEFAULT_LABEL_MAP",
    "apply_label_map",
    "arousal_target",
    "valence_target",
]

# Only classes with a defensible prior get a target; others are masked out of the aux losses.
AROUSAL_TARGET: dict[str, float] = {
    "angry": 0.9,
    "happy": 0.75,
    "fearful": 0.8,
    "surprised": 0.8,
    "neutral": 0.3,
    "sad": 0.15,
    "calm": 0.15,
    "boredom": 0.15,
}
VALENCE_TARGET: dict[str, float] = {
    "happy": 0.7,
    "neutral": 0.0,
    "calm": 0.1,
    "angry": -0.6,
    "sad": -0.6,
    "fearful": -0.5,
    "disgust": -0.5,
}

# RAVDESS "calm" is a low-arousal neutral; the core classes have no calm.
DEFAULT_LABEL_MAP: dict[str, str | None] = {"calm": "neutral"}


def apply_label_map(
    label: str, label_map: Mapping[str, str | None], classes: Iterable[str]
) -> str | None:
    """Map a corpus label to one of ``classes``; ``None`` means the clip is dropped.

    A label_map entry wins (``None`` drops explicitly); otherwise the label keeps its name and
    is dropped when it is not a class.
    """
    key = label.strip().lower()
    mapped = label_map.get(key, key)
    if mapped is None:
        return None
    return mapped if mapped in set(classes) else None


def arousal_target(label: str) -> float | None:
    return AROUSAL_TARGET.get(label)


def valence_target(label: str) -> float | None:
    return VALENCE_TARGET.get(label)
