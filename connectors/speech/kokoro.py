"""The neural voice: Kokoro-82M v1.0 (int8 ONNX, Apache-2.0 weights) on onnxruntime, with a reply cache.

Text -> phonemes -> token ids -> 24 kHz audio:

- **Phonemes** come from espeak-ng's own IPA output (``espeak-ng -q --ipa --tie=^``), run as a
  subprocess (no phonemizer library is linked), and are rewritten into the symbol set Kokoro v1.0
  was trained on (misaki's: one letter per diphthong, ``ʤ``/``ʧ`` for the affricates, American
  r-colouring, no length marks) by :func:`kokoro_phonemes`. espeak-ng drops punctuation, so the
  text is cut at its punctuation first and the marks are put back between the clauses: Kokoro
  reads them (a question rises, a comma pauses).
- **Token ids** come from Kokoro's vocabulary (``config.json`` of kokoro-onnx, pinned and verified
  like every model file); symbols outside it are dropped.
- **Voice**: a style vector per input length (510 x 256 per voice, from kokoro-js); voices blend
  linearly.

Tone: the tone's :class:`~emotune.config.Prosody` is realised as speed (``rate``), a voice blend
(``pitch_semitones`` below zero blends in ``tts.soft_voice``, above zero ``tts.bright_voice``,
``tts.blend_per_semitone`` each, at most half), pauses between sentences (``tts.sentence_pause_s``
divided by rate squared: a calm voice also leaves more room) and an exact gain (``volume_db``).
The words are never changed.

Cache: bot replies are templates, so each sentence's audio is kept on disk keyed by (sentence text,
voice blend, speed, engine version) and only sentences not seen before are synthesised: a template
with a slot re-renders only the sentence holding the slot. Sentences met live are bounded
(``tts.cache_max_mb``, least recently used removed first); the cache is safe to share between
processes (atomic writes). ``python -m connectors.speech.kokoro render --profile contact_center``
(``make tts-cache``, part of ``make setup``) renders every fixed sentence of the profile's bot in the
tone each variant declares, and the gateway's own prompts in every tone, as *pinned* entries that
live sentences (one order number each) never evict.

Streaming: :meth:`KokoroSynthesizer.synthesize_parts` yields the reply sentence by sentence, so the
gateway sends the first sentence while the next is synthesised (what counts is the first audio the
caller hears).

Memory: onnxruntime's CPU arena stays on and is shrunk after every run. Without it every one of the
decoder's ~12 MB-per-5-s activations is a separate ``malloc``; glibc then serves them from its heap
(its mmap threshold adapts upward after the first frees) and the fragmented heap peaked at 1-2 GB
RSS for one 5-10 s sentence. With the arena the peak follows the longest input, so inputs are cut at
``CHUNK_TOKENS`` (at a clause mark when one is near): ``python -m benchmarks.bench_tts_memory``.

Languages without a Kokoro voice (Korean) speak with espeak-ng: :func:`create_kokoro` returns an
:class:`~connectors.speech.tts.EspeakSynthesizer` for them. Missing or altered Kokoro files are
refused when ``tts.engine: kokoro`` is configured (the error names the file and its sha256): an
operator who chose the neural voice is told, rather than served espeak-ng without notice.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from connectors.speech.tts import EspeakSynthesizer, Speech, SpeechSynthesizer
from connectors.speech.tts import _check_text as checked_text  # the one text check of every engine
from emotion_runtime import weights
from emotune.config import EmotuneConfig, Prosody, TtsConfig
from emotune.errors import AudioError, ModelFileError, NotBuiltError

__all__ = [
    "SAMPLE_RATE",
    "MAX_TOKENS",
    "CHUNK_TOKENS",
    "G2P_VERSION",
    "kokoro_phonemes",
    "split_sentences",
    "VoiceBlend",
    "RenderCache",
    "KokoroSynthesizer",
    "create_kokoro",
    "domain_replies",
    "spoken_prompts",
    "main",
]

log = logging.getLogger(__name__)

SAMPLE_RATE = 24000
MAX_TOKENS = 510  # a voice has one style row per input length up to this
# Longest model input: peak memory grows with the audio of one run (~25 MB per second with the
# arena), so a sentence longer than this (~13 s of speech) is synthesised in pieces, cut at a clause.
CHUNK_TOKENS = 200
G2P_VERSION = 1  # bump when the phoneme rewriting changes: cached audio is keyed by it
_MODEL = f"{weights.KOKORO_DIR}/kokoro-v1.0.int8.onnx"
_VOCAB = f"{weights.KOKORO_DIR}/config.json"
_STYLE_SHAPE = (MAX_TOKENS, 256)
_ESPEAK_TIMEOUT_S = 10.0
_MAX_BLEND = 0.5  # the configured voice stays the majority of any tone's blend
_TRIM_PAD_S = 0.04

# espeak-ng IPA (tie '^' between the letters of one phoneme) -> Kokoro's symbols, applied in order.
_TIED_PHONEMES = {"a^ɪ": "I", "a^ʊ": "W", "e^ɪ": "A", "ɔ^ɪ": "Y", "d^ʒ": "ʤ", "t^ʃ": "ʧ", "ə^l": "ᵊl"}
_TIED_BY_DIALECT = {
    "us": {"o^ʊ": "O", "ə^ʊ": "O"},
    "gb": {"ə^ʊ": "Q", "o^ʊ": "Q", "e^ə": "ɛː"},
}
_SYLLABIC = "\u0329"  # combining vertical line below: a syllabic consonant (n̩ -> ᵊn)
_PLAIN_SUBSTITUTIONS = {
    "ɐ": "ə", "r": "ɹ", "x": "k", "ç": "k", "ɬ": "l", "ʲ": "", "\u0303": "", "ʔ": "t", "-": "",
}  # fmt: skip
_US_RHOTIC = (("ɜːɹ", "ɜɹ"), ("ɜː", "ɜɹ"), ("ɚ", "əɹ"), ("ɪə", "iə"))
_CLAUSE_MARKS = ",;:.!?…—"
_CLAUSE_SPLIT = re.compile(rf"([{_CLAUSE_MARKS}]+)(?=\s|$)")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def kokoro_phonemes(ipa: str, dialect: str = "us") -> str:
    """espeak-ng's IPA for one clause (``--tie=^``, lines joined by spaces) in Kokoro's symbols."""
    text = ipa
    for tied, symbol in (*_TIED_BY_DIALECT[dialect].items(), *_TIED_PHONEMES.items()):
        text = text.replace(tied, symbol)
    text = text.replace("^", "")
    text = re.sub(rf"(\S){_SYLLABIC}", r"ᵊ\1", text)  # syllabic n/l: a reduced vowel before it
    for old, new in _PLAIN_SUBSTITUTIONS.items():
        text = text.replace(old, new)
    if dialect == "us":
        for old, new in _US_RHOTIC:
            text = text.replace(old, new)
        text = text.replace("ː", "")  # American Kokoro has no length marks
    # Plain o / e left over (espeak's "oːɹ" in "four") are Kokoro's ɔ / A.
    text = text.replace("o", "ɔ").replace("e", "A")
    return " ".join(text.split())


def split_sentences(text: str) -> list[str]:
    """Sentences at ., !, ?, … followed by a space; each is synthesised (and cached) on its own."""
    return [s for s in (part.strip() for part in _SENTENCE_END.split(" ".join(text.split()))) if s]


def _clauses(sentence: str) -> list[tuple[str, str]]:
    """``[(words, punctuation after them)]``: marks count only before a space or the end, so
    ``$20.50`` or ``e.g`` stay inside their clause."""
    pieces = _CLAUSE_SPLIT.split(sentence)
    out = []
    for index in range(0, len(pieces), 2):
        words = pieces[index].strip()
        mark = pieces[index + 1] if index + 1 < len(pieces) else ""
        if words:
            out.append((words, mark))
        elif mark and out:
            out[-1] = (out[-1][0], out[-1][1] + mark)
    return out


@dataclass(frozen=True)
class VoiceBlend:
    """Kokoro voices and their weights (summing to 1), e.g. ``af_heart:0.7,af_sarah:0.3``."""

    weights: tuple[tuple[str, float], ...]

    @classmethod
    def parse(cls, spec: str) -> VoiceBlend:
        parts: dict[str, float] = {}
        for item in spec.split(","):
            name, _, share = item.strip().partition(":")
            if name not in weights.KOKORO_VOICE_SHA256:
                known = ", ".join(sorted(weights.KOKORO_VOICE_SHA256))
                raise ModelFileError(f"tts: no Kokoro voice {name!r} (known: {known})")
            try:
                value = float(share) if share else 1.0
            except ValueError:
                raise ModelFileError(f"tts: voice weight {share!r} in {spec!r} is not a number") from None
            if value <= 0:
                raise ModelFileError(f"tts: voice weight for {name} must be > 0 in {spec!r}")
            parts[name] = parts.get(name, 0.0) + value
        total = sum(parts.values())
        return cls(tuple(sorted((name, round(share / total, 4)) for name, share in parts.items())))

    def toward(self, voice: str, share: float) -> VoiceBlend:
        """This blend with ``share`` of ``voice`` mixed in (the rest scaled down)."""
        if share <= 0:
            return self
        mixed = {name: w * (1.0 - share) for name, w in self.weights}
        mixed[voice] = mixed.get(voice, 0.0) + share
        return VoiceBlend(tuple(sorted((name, round(w, 4)) for name, w in mixed.items())))

    def spec(self) -> str:
        return ",".join(f"{name}:{w:g}" for name, w in self.weights)


class RenderCache:
    """Rendered audio on disk, one ``.npy`` per key, bounded by size (least recently used removed).

    Keys are sha256 of their parts; a read touches the file (its mtime orders eviction); writes go
    to a temporary file renamed into place, so processes sharing the folder never read half a file.
    Pinned entries (``pinned/``: a bot's fixed sentences, rendered ahead of calls) are outside the
    bound and never evicted: one-off sentences with an order number in them cannot push them out.
    """

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._total: int | None = None  # bytes on disk, counted on the first write

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @staticmethod
    def key(**parts: object) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def _path(self, key: str, pinned: bool = False) -> Path:
        return (self.root / "pinned" if pinned else self.root) / key[:2] / f"{key}.npy"

    def _load(self, path: Path) -> np.ndarray | None:
        try:
            audio = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:  # a damaged entry is a miss, and goes
            log.warning("tts cache: dropping unreadable %s (%s)", path, exc)
            path.unlink(missing_ok=True)
            return None
        return np.asarray(audio)

    def get(self, key: str) -> np.ndarray | None:
        if not self.enabled:
            return None
        audio = self._load(self._path(key, pinned=True))
        if audio is None:
            path = self._path(key)
            audio = self._load(path)
            if audio is not None:
                _touch(path)
        with self._lock:
            if audio is None:
                self.misses += 1
            else:
                self.hits += 1
        return None if audio is None else audio.astype(np.float32, copy=False)

    def put(self, key: str, audio: np.ndarray, pinned: bool = False) -> None:
        if not self.enabled or (audio.nbytes > self.max_bytes and not pinned):
            return
        path = self._path(key, pinned)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                np.save(out, np.ascontiguousarray(audio, dtype=np.float32), allow_pickle=False)
            os.replace(tmp_name, path)
            _touch(path)
        finally:
            Path(tmp_name).unlink(missing_ok=True)
        if pinned:
            self._path(key).unlink(missing_ok=True)  # no second copy under the bound
            return
        with self._lock:
            if self._total is None:
                self._total = sum(size for _, size, _ in self._entries())
            else:
                self._total += path.stat().st_size
            if self._total > self.max_bytes:
                self._evict()

    def pin(self, key: str, audio: np.ndarray) -> None:
        """Keep an entry (met live before the bot's sentences were rendered) out of the bound."""
        if self.enabled and not self._path(key, pinned=True).is_file():
            self.put(key, audio, pinned=True)

    def pinned_bytes(self) -> int:
        return sum(path.stat().st_size for path in (self.root / "pinned").glob("*/*.npy"))

    def _entries(self) -> list[tuple[Path, int, float]]:
        found = []
        for path in self.root.glob("*/*.npy"):
            try:
                stat = path.stat()
            except FileNotFoundError:  # another process evicted it meanwhile
                continue
            found.append((path, stat.st_size, stat.st_mtime))
        return found

    def _evict(self) -> None:
        entries = sorted(self._entries(), key=lambda entry: entry[2])
        total = sum(size for _, size, _ in entries)
        target = int(self.max_bytes * 0.9)  # some headroom, so every write does not scan again
        for path, size, _ in entries:
            if total <= target:
                break
            path.unlink(missing_ok=True)
            total -= size
        self._total = total

    def size_bytes(self) -> int:
        return sum(size for _, size, _ in self._entries())


def _touch(path: Path) -> None:
    # Explicit nanosecond times: the kernel's own file times are coarse (ms), too coarse to order use.
    now = time.time_ns()
    os.utime(path, ns=(now, now))


def _espeak_version(binary: str) -> str:
    result = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=_ESPEAK_TIMEOUT_S)
    return " ".join(result.stdout.split()[:4]) or "unknown"


class KokoroSynthesizer:
    """Kokoro-82M on onnxruntime (CPU), tone as speed + voice blend + pauses, sentences cached."""

    name = "kokoro"

    def __init__(
        self, config: TtsConfig, model_root: Path | None = None, espeak_binary: str = "espeak-ng",
        memory_arena: bool = True,
    ) -> None:
        """``memory_arena=False`` is the old allocation (kept for ``bench_tts_memory``'s comparison)."""
        import onnxruntime as ort  # the toolkit's runtime; imported here so espeak-only setups skip it

        language = config.voice.lower()
        if not language.startswith("en"):
            raise AudioError(f"Kokoro speaks English only (tts.voice {config.voice!r}): use espeak-ng")
        self.dialect = "gb" if language in ("en-gb", "en") else "us"
        self.language = language
        self.config = config
        root = Path(model_root or weights.DEFAULT_ROOT)
        model_path = weights.verified_path(_MODEL, root)
        self.vocab: dict[str, int] = json.loads(weights.verified_path(_VOCAB, root).read_text(encoding="utf-8"))["vocab"]
        self.blend = VoiceBlend.parse(config.kokoro_voice)
        self.soft_voice, self.bright_voice = config.soft_voice, config.bright_voice
        VoiceBlend.parse(f"{self.soft_voice},{self.bright_voice}")  # known voices, checked at start
        self._voice_root = root
        self._voices: dict[str, np.ndarray] = {}
        self._styles: dict[VoiceBlend, np.ndarray] = {}
        self._style_lock = threading.Lock()
        for name in {*dict(self.blend.weights), self.soft_voice, self.bright_voice}:
            self._voice(name)  # every voice a tone can use is verified at start, not on a first call
        binary = shutil.which(espeak_binary)
        if binary is None:
            raise NotBuiltError(f"Kokoro needs {espeak_binary!r} for phonemes: `apt-get install -y espeak-ng`")
        self._espeak = binary
        options = ort.SessionOptions()
        options.intra_op_num_threads = config.threads
        options.inter_op_num_threads = 1
        # The arena, shrunk after every run (module docstring, "Memory"): without it the peak RSS is 4x.
        options.enable_cpu_mem_arena = memory_arena
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self._run_options = ort.RunOptions()
        if memory_arena:
            self._run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        model_item = weights.entry(_MODEL)
        self.engine_version = (
            f"kokoro-v1.0-int8:{model_item.sha256[:16]}:g2p{G2P_VERSION}:{self.dialect}:{_espeak_version(binary)}"
        )
        cache_root = config.cache_dir if config.cache_dir.is_absolute() else weights.PROJECT_ROOT / config.cache_dir
        self.cache = RenderCache(cache_root, int(config.cache_max_mb * 1024 * 1024))
        self.sentences_synthesized = 0

    # --- voices ---------------------------------------------------------------------------

    def _voice(self, name: str) -> np.ndarray:
        if name not in self._voices:
            path = weights.verified_path(f"{weights.KOKORO_VOICE_DIR}/{name}.bin", self._voice_root)
            self._voices[name] = np.fromfile(path, dtype="<f4").reshape(_STYLE_SHAPE)
        return self._voices[name]

    def style(self, blend: VoiceBlend) -> np.ndarray:
        """The blend's style table (510 x 256), computed once."""
        with self._style_lock:
            if blend not in self._styles:
                table = np.zeros(_STYLE_SHAPE, dtype=np.float32)
                for name, share in blend.weights:
                    table += np.float32(share) * self._voice(name)
                self._styles[blend] = table
            return self._styles[blend]

    def blend_for(self, prosody: Prosody) -> VoiceBlend:
        """The tone's voice: softer below zero semitones, brighter above."""
        share = min(_MAX_BLEND, self.config.blend_per_semitone * abs(prosody.pitch_semitones))
        other = self.soft_voice if prosody.pitch_semitones < 0 else self.bright_voice
        return self.blend.toward(other, share)

    # --- text -> tokens -------------------------------------------------------------------

    def _ipa(self, words: str) -> str:
        try:
            result = subprocess.run(
                [self._espeak, "-q", "--ipa", "--tie=^", "-v", self.language],
                input=words, capture_output=True, text=True, timeout=_ESPEAK_TIMEOUT_S, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise AudioError(f"espeak-ng phonemes took longer than {_ESPEAK_TIMEOUT_S:.0f} s") from exc
        if result.returncode != 0:
            raise AudioError(f"espeak-ng phonemes failed (exit {result.returncode}): {result.stderr.strip()}")
        return " ".join(result.stdout.split())

    def phonemes(self, sentence: str) -> str:
        """Kokoro's phoneme string for a sentence, its punctuation kept between the clauses."""
        parts = []
        for words, mark in _clauses(sentence):
            spoken = kokoro_phonemes(self._ipa(words), self.dialect)
            if spoken:
                parts.append(spoken + "".join(c for c in mark if c in self.vocab))
        return " ".join(parts)

    def tokens(self, phonemes: str) -> list[int]:
        return [self.vocab[symbol] for symbol in phonemes if symbol in self.vocab]

    def _chunks(self, phonemes: str, limit: int = CHUNK_TOKENS) -> list[list[int]]:
        """Token lists of at most ``limit``, cut between words: after the last clause mark of the
        piece when it has one in its second half, else before the word that does not fit."""
        space = self.vocab[" "]
        marks = {self.vocab[c] for c in _CLAUSE_MARKS if c in self.vocab}
        chunks: list[list[int]] = []
        current: list[int] = []
        for word in phonemes.split(" "):
            ids = self.tokens(word)[:limit]
            if current and len(current) + 1 + len(ids) > limit:
                cut = max((i for i, t in enumerate(current) if t in marks and i + 1 < len(current)
                           and current[i + 1] == space), default=-1)  # fmt: skip
                if cut >= len(current) // 2:
                    chunks.append(current[: cut + 1])
                    current = current[cut + 2 :]
                if current and len(current) + 1 + len(ids) > limit:
                    chunks.append(current)
                    current = []
            current = [*current, space, *ids] if current else ids
        if current:
            chunks.append(current)
        return [chunk for chunk in chunks if chunk]

    # --- synthesis ------------------------------------------------------------------------

    def _run(self, ids: list[int], style: np.ndarray, speed: float) -> np.ndarray:
        feeds = {
            "tokens": np.array([[0, *ids, 0]], dtype=np.int64),
            "style": style[len(ids) - 1].reshape(1, -1),
            "speed": np.array([speed], dtype=np.float32),
        }
        audio = np.asarray(self._session.run(None, feeds, self._run_options)[0], dtype=np.float32).reshape(-1)
        return _trim(audio)

    def render_sentence(self, sentence: str, blend: VoiceBlend, speed: float, pinned: bool = False) -> np.ndarray:
        """One sentence at 24 kHz, from the cache when it was rendered before; ``pinned`` (a bot's
        fixed sentence, rendered ahead of calls) is kept out of the least-recently-used bound."""
        key = RenderCache.key(text=sentence, voice=blend.spec(), speed=round(speed, 4), engine=self.engine_version)
        cached = self.cache.get(key)
        if cached is not None:
            if pinned:
                self.cache.pin(key, cached)
            return cached
        phonemes = self.phonemes(sentence)
        chunks = self._chunks(phonemes)
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        style = self.style(blend)
        audio = np.concatenate([self._run(ids, style, speed) for ids in chunks])
        self.sentences_synthesized += 1
        self.cache.put(key, audio, pinned=pinned)
        return audio

    @staticmethod
    def speed_for(prosody: Prosody) -> float:
        """The tone's rate as Kokoro's speed, inside its trained range."""
        return float(np.clip(prosody.rate, 0.5, 2.0))

    def synthesize_parts(self, text: str, prosody: Prosody) -> Iterator[Speech]:
        """The reply sentence by sentence, each synthesised (or read from the cache) when asked for;
        a part after the first starts with the pause before it. Joined they are :meth:`synthesize`."""
        sentences = split_sentences(checked_text(text))
        blend, speed = self.blend_for(prosody), self.speed_for(prosody)
        pause = np.zeros(round(self.config.sentence_pause_s / speed**2 * SAMPLE_RATE), dtype=np.float32)
        gain = 10.0 ** (prosody.volume_db / 20.0)
        spoken = 0
        for sentence in sentences:
            started = time.perf_counter()
            audio = self.render_sentence(sentence, blend, speed)
            if not audio.size:
                continue
            if spoken:
                audio = np.concatenate([pause, audio])
            spoken += 1
            samples = np.clip(audio * gain, -1.0, 1.0).astype(np.float32)
            yield Speech(samples, SAMPLE_RATE, sentence, time.perf_counter() - started)
        if not spoken:  # punctuation only: espeak-ng found no words either
            raise AudioError(f"nothing to say in {text[:80]!r}: no words espeak-ng can phonemise")

    def synthesize(self, text: str, prosody: Prosody) -> Speech:
        started = time.perf_counter()
        parts = [part.samples for part in self.synthesize_parts(text, prosody)]
        samples = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return Speech(samples, SAMPLE_RATE, text, time.perf_counter() - started)

    def prerender(self, replies: Iterable[tuple[str, Prosody]]) -> int:
        """Render every fixed sentence (no ``{slot}``) of ``replies`` into the cache, pinned; returns
        how many were synthesised (the rest were cached already)."""
        before = self.sentences_synthesized
        for text, prosody in replies:
            blend, speed = self.blend_for(prosody), self.speed_for(prosody)
            for sentence in split_sentences(text):
                if "{" not in sentence:
                    self.render_sentence(sentence, blend, speed, pinned=True)
        return self.sentences_synthesized - before


def _trim(audio: np.ndarray) -> np.ndarray:
    """Drop the model's leading/trailing near-silence (pauses are ours to place), keep 40 ms."""
    if audio.size == 0:
        return audio
    loud = np.flatnonzero(np.abs(audio) > 0.02 * float(np.max(np.abs(audio))))
    if loud.size == 0:
        return audio
    pad = round(_TRIM_PAD_S * SAMPLE_RATE)
    return audio[max(0, loud[0] - pad) : loud[-1] + pad]


def create_kokoro(config: TtsConfig) -> SpeechSynthesizer:
    """``tts.engine: kokoro``: the neural voice for English, espeak-ng for other languages (no
    Kokoro voice speaks them). Missing or altered Kokoro files raise :class:`ModelFileError`
    naming the file and the sha256 it must have."""
    if not config.voice.lower().startswith("en"):
        log.info("tts: no Kokoro voice for %r; speaking with espeak-ng", config.voice)
        return EspeakSynthesizer(config.voice)
    try:
        return KokoroSynthesizer(config)
    except ModelFileError as exc:
        raise ModelFileError(f"{exc} (tts.engine: kokoro; or choose tts.engine: espeak-ng)") from exc


def domain_replies(domain: Path) -> list[tuple[str, str]]:
    """``[(text, tone)]`` for every response variant of a Rasa domain; the tone is the variant's
    ``custom.tone`` (or its ``tone`` slot condition), ``standard`` otherwise."""
    import yaml

    data = yaml.safe_load(domain.read_text(encoding="utf-8")) or {}
    replies = []
    for variants in (data.get("responses") or {}).values():
        for variant in variants or []:
            text = variant.get("text")
            if not text:
                continue
            tone = (variant.get("custom") or {}).get("tone")
            for condition in variant.get("condition") or []:
                if condition.get("name") == "tone":
                    tone = tone or condition.get("value")
            replies.append((str(text), str(tone or "standard")))
    return replies


def spoken_prompts(config: EmotuneConfig) -> list[str]:
    """What the gateway says itself (not the bot's domain): spoken in the caller's tone, so every
    tone is rendered."""
    turn_taking = config.turn_taking
    texts = [config.gateway.busy_reply, config.rasa.fallback_reply, config.asr.other_language_reply,
             turn_taking.reprompt, turn_taking.goodbye, turn_taking.max_call_message,
             turn_taking.keypad.empty_prompt, turn_taking.keypad.retype_prompt]  # fmt: skip
    return list(dict.fromkeys(text for text in texts if text))


def main(argv: Sequence[str] | None = None) -> int:
    from emotune.config import load_config

    parser = argparse.ArgumentParser(
        prog="python -m connectors.speech.kokoro",
        description="Render a bot's fixed reply sentences (each response variant in its tone) and the "
        "gateway's own prompts (in every tone) into the TTS cache, pinned.",
    )
    parser.add_argument("command", choices=["render"])
    parser.add_argument("domain", type=Path, nargs="*",
                        help="Rasa domain.yml files (default: the profile's bot, bot/<rasa.bot>/domain.yml)")  # fmt: skip
    parser.add_argument("--config", type=Path, default=weights.PROJECT_ROOT / "config.yml")
    parser.add_argument("--profile", help="the config profile whose voice, tones and prompts are rendered")
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1),
                        help="onnxruntime threads while rendering (calls use tts.threads)")  # fmt: skip
    parser.add_argument("--no-prompts", action="store_true", help="the domains' responses only")
    parser.add_argument("--if-configured", action="store_true",
                        help="do nothing unless the profile's tts.engine is kokoro with an English voice (make setup)")  # fmt: skip
    args = parser.parse_args(argv)
    config = load_config(args.config, **({"profile": args.profile} if args.profile else {}))
    label = args.profile or config.profile
    if args.if_configured and (config.tts.engine != "kokoro" or not config.tts.voice.lower().startswith("en")):
        print(f"{label}: tts.engine {config.tts.engine} ({config.tts.voice}): nothing to render")
        return 0
    policy = config.tone_policy
    domains = args.domain or [weights.PROJECT_ROOT / "bot" / config.rasa.bot / "domain.yml"]
    synthesizer = KokoroSynthesizer(config.tts.model_copy(update={"engine": "kokoro", "threads": args.threads}))
    replies = [(text, policy.prosody.get(tone) or policy.prosody[policy.default_tone])
               for domain in domains for text, tone in domain_replies(domain)]  # fmt: skip
    if not args.no_prompts:
        replies += [(text, prosody) for text in spoken_prompts(config) for prosody in policy.prosody.values()]
    started = time.perf_counter()
    made = synthesizer.prerender(replies)
    print(f"{label}: rendered {made} new sentences ({synthesizer.cache.hits} cached) of {len(replies)} replies "
          f"in {time.perf_counter() - started:.1f} s into {synthesizer.cache.root}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
