"""Data preparation: every supported corpus layout -> one common manifest.

Common manifest columns: ``path,label,speaker,corpus,duration`` (+ ``original_label``).
``label`` is already one of the training classes (after the label map); clips whose label maps
to nothing are dropped and counted.

Supported layouts (``DataSource.kind`` in ``emotune/config.py``):

* ``ravdess`` / ``emodb``: a folder with our prepared ``manifest.csv`` (``path,speaker,label,...``);
  without one, the original layout is parsed (same as ``ravdess_original`` / EmoDB's ``wav/``).
* ``ravdess_original``: ``Actor_XX/MM-VC-EE-II-SS-RR-AA.wav`` (emotion code EE, actor AA; only
  the speech channel VC=01 is used, song is skipped).
* ``emodb`` original: ``wav/03a01Fa.wav`` (speaker 03, text a01, emotion letter F, version a).
* ``crema_d``: ``AudioWAV/1001_DFA_ANG_XX.wav`` (speaker, sentence, emotion, level).
* ``iemocap``: ``SessionN/dialog/EmoEvaluation/*.txt`` label lines and
  ``SessionN/sentences/wav/<dialog>/<utterance>.wav``.
* ``csv``: an operator's ``path,label[,speaker]`` file; relative paths are relative to the CSV.

Every problem (missing file, unknown label, unreadable audio, too few examples of a class) is
collected and raised as one :class:`emotune.errors.DataError` before any training starts.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import soundfile as sf

from emotion_models.labels import DEFAULT_LABEL_MAP, apply_label_map
from emotune.errors import DataError

__all__ = [
    "SourceSpec",
    "RawClip",
    "ManifestRow",
    "SUPPORTED_KINDS",
    "CORPUS_LABELS",
    "read_source",
    "build_manifest",
    "write_manifest",
    "read_manifest",
    "summarise",
]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
MIN_DURATION_S = 0.3

RAVDESS_EMOTIONS = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}  # fmt: skip
EMODB_EMOTIONS = {
    "W": "angry", "L": "boredom", "E": "disgust", "A": "fearful",
    "F": "happy", "T": "sad", "N": "neutral",
}  # fmt: skip
CREMA_EMOTIONS = {
    "ANG": "angry", "DIS": "disgust", "FEA": "fearful",
    "HAP": "happy", "NEU": "neutral", "SAD": "sad",
}  # fmt: skip
IEMOCAP_EMOTIONS = {
    "neu": "neutral", "hap": "happy", "exc": "excited", "sad": "sad", "ang": "angry",
    "fru": "frustrated", "sur": "surprised", "fea": "fearful", "dis": "disgust",
    "oth": "other", "xxx": "no_agreement",
}  # fmt: skip

# The label vocabulary of each known corpus: anything else in its files is a broken manifest.
CORPUS_LABELS: dict[str, frozenset[str]] = {
    "ravdess": frozenset(RAVDESS_EMOTIONS.values()),
    "emodb": frozenset(EMODB_EMOTIONS.values()),
    "crema_d": frozenset(CREMA_EMOTIONS.values()),
    "iemocap": frozenset(IEMOCAP_EMOTIONS.values()),
}
SUPPORTED_KINDS = ("ravdess", "emodb", "crema_d", "iemocap", "ravdess_original", "csv")


@dataclass(frozen=True)
class SourceSpec:
    """One corpus to read (mirrors ``emotune.config.DataSource``)."""

    kind: str
    path: Path
    label_map: Mapping[str, str | None] | None = None

    @classmethod
    def from_any(cls, source: Any) -> SourceSpec:
        """Accept a SourceSpec, a ``DataSource`` pydantic model or a plain dict."""
        if isinstance(source, SourceSpec):
            return source
        if isinstance(source, Mapping):
            data = dict(source)
        elif hasattr(source, "model_dump"):
            data = source.model_dump()
        else:
            raise DataError(f"cannot read data source {source!r}: expected kind/path/label_map")
        if "kind" not in data or "path" not in data:
            raise DataError(f"data source {data!r} needs 'kind' and 'path'")
        return cls(kind=str(data["kind"]), path=Path(data["path"]), label_map=data.get("label_map"))


@dataclass(frozen=True)
class RawClip:
    """A clip as the corpus describes it (label in our vocabulary, before the label map)."""

    path: Path
    label: str
    speaker: str
    corpus: str


@dataclass(frozen=True)
class ManifestRow:
    path: str
    label: str
    speaker: str
    corpus: str
    duration: float
    original_label: str


def _audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def _require_dir(path: Path, kind: str) -> None:
    if not path.is_dir():
        raise DataError(f"{kind} data folder not found: {path}")


def _read_prepared_manifest(root: Path, corpus: str) -> list[RawClip]:
    clips = []
    with (root / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"path", "label", "speaker"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{root / 'manifest.csv'}: missing column(s) {', '.join(sorted(missing))}")
        for row in reader:
            clips.append(RawClip(root / row["path"], row["label"].strip().lower(), row["speaker"], corpus))
    return clips


@dataclass(frozen=True)
class _FileNameLayout:
    """A corpus in its download layout whose file names encode speaker and emotion."""

    corpus: str
    title: str
    speaker_prefix: str
    pattern: re.Pattern[str]  # named groups: speaker, emotion
    emotions: Mapping[str, str]
    example: str

    def keep(self, match: re.Match[str]) -> bool:
        # RAVDESS ships song next to speech (vocal channel 02); we train on speech only.
        return match.groupdict().get("channel", "01") == "01"

    def read(self, root: Path) -> list[RawClip]:
        clips = []
        for path in _audio_files(root):
            match = self.pattern.match(path.stem)
            if not match or not self.keep(match):
                continue  # README files, hidden files, song, ...
            emotion = match["emotion"]
            if emotion not in self.emotions:
                raise DataError(f"{path}: unknown {self.title} emotion code {emotion}")
            speaker = f"{self.speaker_prefix}_{match['speaker']}"
            clips.append(RawClip(path, self.emotions[emotion], speaker, self.corpus))
        if not clips:
            raise DataError(f"no {self.title} files (e.g. {self.example}) found under {root}")
        return clips


_RAVDESS_ORIGINAL = _FileNameLayout(
    "ravdess", "RAVDESS", "ravdess",
    re.compile(r"^\d\d-(?P<channel>\d\d)-(?P<emotion>\d\d)-\d\d-\d\d-\d\d-(?P<speaker>\d\d)$"),
    RAVDESS_EMOTIONS, "03-01-05-01-01-01-12.wav",
)
_EMODB_ORIGINAL = _FileNameLayout(
    "emodb", "EmoDB", "emodb",
    re.compile(r"^(?P<speaker>\d\d)[a-z]\d\d(?P<emotion>[A-Z])[a-z]$"),
    EMODB_EMOTIONS, "03a01Fa.wav",
)
_CREMA_D = _FileNameLayout(
    "crema_d", "CREMA-D", "crema",
    re.compile(r"^(?P<speaker>\d{4})_[A-Z]{3}_(?P<emotion>[A-Z]{3})_[A-Z]{1,2}$"),
    CREMA_EMOTIONS, "1001_DFA_ANG_XX.wav",
)


# "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]"
_IEMOCAP_LINE = re.compile(r"^\[[\d.]+ - [\d.]+\]\t(Ses(\d\d)[FM]_\S+_([FM])\d+)\t(\w+)\t")


def _read_iemocap(root: Path) -> list[RawClip]:
    clips = []
    label_files = sorted(root.glob("Session*/dialog/EmoEvaluation/*.txt"))
    if not label_files:
        raise DataError(f"no IEMOCAP label files (SessionN/dialog/EmoEvaluation/*.txt) under {root}")
    for label_file in label_files:
        session_dir = label_file.parents[2]
        for line in label_file.read_text(encoding="utf-8", errors="replace").splitlines():
            match = _IEMOCAP_LINE.match(line)
            if not match:
                continue
            utterance, session, gender, code = match.groups()
            if code not in IEMOCAP_EMOTIONS:
                raise DataError(f"{label_file}: unknown IEMOCAP emotion code {code!r} for {utterance}")
            dialog = utterance.rsplit("_", 1)[0]
            wav = session_dir / "sentences" / "wav" / dialog / f"{utterance}.wav"
            # Each session has one female and one male actor; the utterance id names who speaks.
            clips.append(RawClip(wav, IEMOCAP_EMOTIONS[code], f"iemocap_{session}{gender}", "iemocap"))
    return clips


def _read_csv(csv_path: Path) -> list[RawClip]:
    if not csv_path.is_file():
        raise DataError(f"manifest CSV not found: {csv_path}")
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        missing = {"path", "label"} - set(fields)
        if missing:
            raise DataError(
                f"{csv_path}: missing column(s) {', '.join(sorted(missing))}; "
                "expected a header 'path,label[,speaker]'"
            )
        clips = []
        for line_no, row in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
            if not row.get("path") or not row.get("label"):
                raise DataError(f"{csv_path}:{line_no}: empty path or label")
            path = Path(row["path"])
            if not path.is_absolute():
                path = csv_path.parent / path
            # Without a speaker column every file counts as its own speaker (split is then not
            # speaker-independent; the fine-tune report says so).
            speaker = row.get("speaker") or f"file:{path.name}"
            clips.append(RawClip(path, row["label"].lower(), speaker, "csv"))
    if not clips:
        raise DataError(f"{csv_path}: no rows")
    return clips


def read_source(source: SourceSpec | Mapping[str, Any] | Any) -> list[RawClip]:
    """All clips a source lists, labels in our vocabulary but not yet mapped to classes."""
    spec = SourceSpec.from_any(source)
    kind, path = spec.kind, Path(spec.path)
    if kind not in SUPPORTED_KINDS:
        raise DataError(f"unknown data source kind {kind!r}; supported: {', '.join(SUPPORTED_KINDS)}")
    if kind == "csv":
        return _read_csv(path)
    _require_dir(path, kind)
    if kind in ("ravdess", "emodb") and (path / "manifest.csv").is_file():
        return _read_prepared_manifest(path, kind)
    if kind in ("ravdess", "ravdess_original"):
        return _RAVDESS_ORIGINAL.read(path)
    if kind == "emodb":
        return _EMODB_ORIGINAL.read(path)
    if kind == "crema_d":
        return _CREMA_D.read(path)
    return _read_iemocap(path)


def _examples(items: Sequence[object], limit: int = 3) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def build_manifest(
    sources: Iterable[SourceSpec | Mapping[str, Any] | Any],
    classes: Sequence[str],
    min_examples_per_class: int = 5,
    check_audio: bool = True,
) -> list[ManifestRow]:
    """Read, map and validate every source; raise one DataError listing all problems."""
    classes = list(classes)
    rows: list[ManifestRow] = []
    problems: list[str] = []
    for source in sources:
        spec = SourceSpec.from_any(source)
        label_map = {**DEFAULT_LABEL_MAP, **{k.lower(): v for k, v in (spec.label_map or {}).items()}}
        clips = read_source(spec)
        corpus_vocab = CORPUS_LABELS.get("ravdess" if spec.kind == "ravdess_original" else spec.kind)
        unknown: dict[str, list[str]] = {}
        missing: list[str] = []
        for clip in clips:
            known = (
                clip.label in corpus_vocab
                if corpus_vocab is not None
                # An operator's CSV must name only classes or labels its label_map handles.
                else clip.label in classes or clip.label in label_map
            )
            if not known:
                unknown.setdefault(clip.label, []).append(clip.path.name)
                continue
            target = apply_label_map(clip.label, label_map, classes)
            if target is None:
                continue
            if not clip.path.is_file():
                missing.append(str(clip.path))
                continue
            rows.append(ManifestRow(str(clip.path), target, clip.speaker, clip.corpus, -1.0, clip.label))
        for label, files in sorted(unknown.items()):
            hint = f"known: {', '.join(sorted(corpus_vocab))}" if corpus_vocab else (
                f"classes are {', '.join(classes)}; map it in label_map (null drops it)"
            )
            problems.append(f"{spec.kind} {spec.path}: unknown label {label!r} in {_examples(files)} ({hint})")
        if missing:
            problems.append(f"{spec.kind} {spec.path}: {len(missing)} missing audio file(s): {_examples(missing)}")
    if check_audio:
        rows, audio_problems = _with_durations(rows)
        problems.extend(audio_problems)
    counts = Counter(r.label for r in rows)
    too_few = [f"{c}: {counts.get(c, 0)}" for c in classes if counts.get(c, 0) < min_examples_per_class]
    if too_few:
        problems.append(
            f"too few examples per class (need >= {min_examples_per_class}): {', '.join(too_few)}"
        )
    if problems:
        raise DataError("unusable training data:\n" + "\n".join(f"  - {p}" for p in problems))
    return rows


def _with_durations(rows: list[ManifestRow]) -> tuple[list[ManifestRow], list[str]]:
    unreadable: list[str] = []
    too_short: list[str] = []
    out = []
    for row in rows:
        try:
            duration = float(sf.info(row.path).duration)
        except (RuntimeError, sf.LibsndfileError) as exc:
            unreadable.append(f"{row.path} ({exc})")
            continue
        if duration < MIN_DURATION_S:
            too_short.append(row.path)
            continue
        out.append(ManifestRow(row.path, row.label, row.speaker, row.corpus, round(duration, 3), row.original_label))
    problems = []
    if unreadable:
        problems.append(f"{len(unreadable)} unreadable audio file(s): {_examples(unreadable)}")
    if too_short:
        problems.append(f"{len(too_short)} clip(s) shorter than {MIN_DURATION_S} s: {_examples(too_short)}")
    return out, problems


MANIFEST_FIELDS = ["path", "label", "speaker", "corpus", "duration", "original_label"]


def write_manifest(rows: Iterable[ManifestRow], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))
    return path


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Read a common manifest written by :func:`write_manifest`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest not found: {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(MANIFEST_FIELDS[:5]) - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        return [
            ManifestRow(
                r["path"], r["label"], r["speaker"], r["corpus"], float(r["duration"]),
                r.get("original_label") or r["label"],
            )
            for r in reader
        ]  # fmt: skip


def summarise(rows: Sequence[ManifestRow]) -> dict[str, Any]:
    """Counts per corpus and class, speakers, hours (for reports and logs)."""
    return {
        "clips": len(rows),
        "hours": round(sum(r.duration for r in rows) / 3600, 3),
        "speakers": len({r.speaker for r in rows}),
        "per_class": dict(sorted(Counter(r.label for r in rows).items())),
        "per_corpus": dict(sorted(Counter(r.corpus for r in rows).items())),
    }
