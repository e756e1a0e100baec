"""Music for the driver's mood, from our own bundled catalogue (``actions/data/music_catalogue.json``).

Each track has a tempo, an energy (0..1), a valence (-1..1) and genre tags (invented data, no
recordings). The driver's emotion sets a target (counter anger with calm, comfort sadness, match
happiness, keep a neutral driver focused); high arousal lowers the target energy; tiredness (the
driver said so, a long drive, or night driving after an hour) raises it to keep them alert, unless
they are angry. Tracks are ranked by distance to the target and the reason goes into the payload.
A requested genre always wins: only that genre's tracks, ranked by the same mood target.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["CATALOGUE_FILE", "Track", "DriveContext", "MoodTarget", "catalogue", "read_context", "mood_target",
           "pick_tracks"]  # fmt: skip

CATALOGUE_FILE = Path(__file__).with_name("data") / "music_catalogue.json"
PLAYLIST_SIZE = 5
LONG_DRIVE_MIN = 180  # minutes of driving after which a driver counts as tired
NIGHT_HOURS = frozenset({22, 23, 0, 1, 2, 3, 4, 5})
NIGHT_DRIVE_MIN = 60
# emotion -> (playlist label, target energy, target valence)
_TARGETS = {
    "angry": ("calm", 0.25, 0.3),
    "sad": ("comfort", 0.35, 0.5),
    "happy": ("upbeat", 0.78, 0.8),
    "neutral": ("focus", 0.5, 0.2),
}
_TIRED = ("energising", 0.8, 0.55)


@dataclass(frozen=True)
class Track:
    id: str
    title: str
    artist: str
    tempo_bpm: int
    energy: float
    valence: float
    genres: tuple[str, ...]

    def as_payload(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "artist": self.artist, "genres": list(self.genres)}


@dataclass(frozen=True)
class DriveContext:
    """Conditions the head unit may send in ``metadata.context`` (docs/in-car.md)."""

    hour: int | None = None
    drive_minutes: float | None = None
    said_tired: bool = False

    @property
    def tired_because(self) -> str | None:
        if self.said_tired:
            return "driver said they are tired"
        if self.drive_minutes is not None and self.drive_minutes >= LONG_DRIVE_MIN:
            return f"driving for {self.drive_minutes:.0f} minutes"
        if self.hour in NIGHT_HOURS and (self.drive_minutes or 0) >= NIGHT_DRIVE_MIN:
            return "night drive"
        return None


@dataclass(frozen=True)
class MoodTarget:
    playlist: str
    energy: float
    valence: float
    reasons: tuple[str, ...]


@lru_cache(maxsize=1)
def catalogue() -> tuple[Track, ...]:
    data = json.loads(CATALOGUE_FILE.read_text(encoding="utf-8"))
    return tuple(
        Track(t["id"], t["title"], t["artist"], int(t["tempo_bpm"]), float(t["energy"]), float(t["valence"]),
              tuple(g.lower() for g in t["genres"]))  # fmt: skip
        for t in data["tracks"]
    )


def read_context(metadata: Mapping[str, Any] | None, said_tired: bool = False) -> DriveContext:
    """``metadata.context = {"local_time": "23:40", "drive_minutes": 95}``; anything malformed is ignored."""
    raw = (metadata or {}).get("context")
    raw = raw if isinstance(raw, Mapping) else {}
    hour = None
    local_time = raw.get("local_time")
    if isinstance(local_time, str) and local_time[:2].isdigit() and 0 <= int(local_time[:2]) <= 23:
        hour = int(local_time[:2])
    minutes = raw.get("drive_minutes")
    valid = isinstance(minutes, int | float) and not isinstance(minutes, bool) and minutes >= 0
    return DriveContext(hour, float(minutes) if valid else None, said_tired)


def mood_target(emotion: str | None, arousal: float | None, context: DriveContext) -> MoodTarget:
    emotion = emotion if emotion in _TARGETS else "neutral"
    playlist, energy, valence = _TARGETS[emotion]
    reasons = [f"driver sounds {emotion}"]
    tired = context.tired_because
    if tired and emotion != "angry":  # an angry driver is calmed first, never wound up
        playlist, energy, valence = _TIRED
        reasons.append(tired)
    elif arousal is not None and arousal >= 0.7 and emotion != "happy":
        energy = max(0.0, energy - 0.1)
        reasons.append(f"high arousal {arousal:.2f}")
    return MoodTarget(playlist, energy, valence, tuple(reasons))


def pick_tracks(target: MoodTarget, genre: str | None = None, size: int = PLAYLIST_SIZE) -> list[Track]:
    """The ``size`` tracks closest to the target; only ``genre``'s tracks when one was asked for."""
    tracks = catalogue()
    if genre:
        wanted = genre.lower().strip()
        tracks = tuple(t for t in tracks if any(wanted in g or g in wanted for g in t.genres))

    def distance(track: Track) -> float:
        return abs(track.energy - target.energy) + 0.5 * abs(track.valence - target.valence)

    return sorted(tracks, key=lambda t: (distance(t), t.id))[:size]
