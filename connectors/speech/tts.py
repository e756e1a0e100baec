"""Speech synthesis behind one small interface, speaking in the tone the dialogue chose.

A tone maps to a :class:`emotune.config.Prosody` (rate, pitch in semitones, volume in dB) in the
operator's ``tone_policy.prosody``. :func:`ssml_for` renders it as SSML ``<prosody>`` for engines
that take SSML (cloud TTS, espeak-ng). ``kokoro`` is the neural voice (Kokoro-82M, 24 kHz, English;
:mod:`connectors.speech.kokoro`: tone as speed, voice blend and pauses, replies cached on disk). The
built-in default engine is Debian's ``espeak-ng``, run as a subprocess (offline, 22.05 kHz); its
volume attribute is unreliable, so volume is applied as an exact gain on the samples instead. The gateway resamples the result to what the protocol needs
(8 kHz mu-law for Twilio) with :meth:`Speech.at_rate`.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from xml.sax.saxutils import escape

import numpy as np

from connectors.speech.engines import EngineRegistry
from emotion_runtime.audio import pcm16_decode, pcm16_samples, resample
from emotune.config import Prosody, TtsConfig
from emotune.errors import AudioError, NotBuiltError

__all__ = [
    "Speech",
    "SpeechSynthesizer",
    "EspeakSynthesizer",
    "NoSynthesizer",
    "ssml_for",
    "register_engine",
    "create_synthesizer",
]

_MAX_TEXT_CHARS = 2000  # a bot turn, not a book: longer text is a bug upstream
_SYNTH_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Speech:
    """Synthesised mono audio, float32 in [-1, 1]."""

    samples: np.ndarray
    sample_rate: int
    text: str
    compute_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return self.samples.shape[0] / self.sample_rate if self.sample_rate else 0.0

    def at_rate(self, sample_rate: int) -> Speech:
        """The same speech resampled (telephony needs 8 kHz, our protocol 16 kHz)."""
        if sample_rate == self.sample_rate:
            return self
        # The runtime's polyphase resampler: cheap for 22050 -> 8000 (441:160) too.
        converted = resample(self.samples, self.sample_rate, sample_rate)
        return Speech(converted, sample_rate, self.text, self.compute_s)

    def pcm16(self) -> np.ndarray:
        return pcm16_samples(self.samples)


def _percent(factor: float) -> str:
    return f"{round(factor * 100)}%"


def ssml_for(text: str, prosody: Prosody) -> str:
    """SSML for ``text`` spoken with ``prosody`` (rate %, pitch in semitones, volume in dB)."""
    if not text.strip():
        raise AudioError("nothing to synthesise: empty text")
    pitch = f"{prosody.pitch_semitones:+g}st"
    volume = f"{prosody.volume_db:+g}dB"
    return (
        f'<speak><prosody rate="{_percent(prosody.rate)}" pitch="{pitch}" volume="{volume}">'
        f"{escape(text.strip())}</prosody></speak>"
    )


@runtime_checkable
class SpeechSynthesizer(Protocol):
    """Text + prosody -> audio."""

    name: str

    def synthesize(self, text: str, prosody: Prosody) -> Speech:
        """Speak ``text`` with ``prosody``; raises AudioError for empty/oversized text."""
        ...


def _check_text(text: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise AudioError("nothing to synthesise: empty text")
    if len(text) > _MAX_TEXT_CHARS:
        raise AudioError(f"text too long to synthesise ({len(text)} > {_MAX_TEXT_CHARS} characters)")
    return text


def _parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """PCM16 mono WAV bytes -> float32 samples. espeak-ng writes a streaming header with a bogus
    data length when its output is a pipe, so the data chunk is read to the end of the bytes."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioError("TTS engine did not return WAV audio")
    pos, sample_rate, bits = 12, 0, 0
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if chunk == b"fmt ":
            channels = int.from_bytes(data[body + 2 : body + 4], "little")
            sample_rate = int.from_bytes(data[body + 4 : body + 8], "little")
            bits = int.from_bytes(data[body + 14 : body + 16], "little")
            if channels != 1 or bits != 16:
                raise AudioError(f"expected mono 16-bit WAV from TTS, got {channels} ch / {bits} bit")
        elif chunk == b"data":
            payload = data[body:]
            payload = payload[: len(payload) - len(payload) % 2]
            pcm = pcm16_decode(payload)
            if not sample_rate:
                raise AudioError("TTS WAV has no fmt chunk before its data")
            return pcm, sample_rate
        pos = body + size + (size % 2)
    raise AudioError("TTS WAV has no data chunk")


class EspeakSynthesizer:
    """Debian ``espeak-ng`` as a subprocess, fed SSML."""

    name = "espeak-ng"

    def __init__(self, voice: str = "en-us", binary: str = "espeak-ng") -> None:
        path = shutil.which(binary)
        if path is None:
            raise NotBuiltError(
                f"TTS engine {binary!r} not found on PATH: install it with "
                "`apt-get install -y espeak-ng` (or set tts.engine: none)"
            )
        self._binary = path
        self.voice = voice

    def synthesize(self, text: str, prosody: Prosody) -> Speech:
        _check_text(text)
        started = time.perf_counter()
        # Volume goes in as an exact gain below; espeak-ng honours rate and pitch from the SSML.
        ssml = ssml_for(text, prosody.model_copy(update={"volume_db": 0.0}))
        try:
            result = subprocess.run(
                [self._binary, "-m", "-v", self.voice, "--stdout", ssml],
                capture_output=True,
                timeout=_SYNTH_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise AudioError(f"espeak-ng took longer than {_SYNTH_TIMEOUT_S:.0f} s") from exc
        if result.returncode != 0:
            message = result.stderr.decode(errors="replace").strip()
            raise AudioError(f"espeak-ng failed (exit {result.returncode}): {message}")
        samples, sample_rate = _parse_wav(result.stdout)
        if samples.size == 0:
            raise AudioError(f"espeak-ng produced no audio (voice {self.voice!r} unknown?)")
        samples = np.clip(samples * (10.0 ** (prosody.volume_db / 20.0)), -1.0, 1.0).astype(np.float32)
        return Speech(samples, sample_rate, text, time.perf_counter() - started)


class NoSynthesizer:
    """For platforms that speak the bot's text themselves: returns silence-free empty audio."""

    name = "none"

    def synthesize(self, text: str, prosody: Prosody) -> Speech:
        _check_text(text)
        return Speech(np.zeros(0, dtype=np.float32), 16000, text)


_ENGINES: EngineRegistry[TtsConfig, SpeechSynthesizer] = EngineRegistry(
    "tts",
    {
        "espeak-ng": lambda cfg: EspeakSynthesizer(cfg.voice),
        "kokoro": lambda cfg: _kokoro(cfg),
        "none": lambda cfg: NoSynthesizer(),
    },
)


def _kokoro(config: TtsConfig) -> SpeechSynthesizer:
    # Imported on use: the neural voice loads onnxruntime and 92 MB of weights; espeak-ng setups skip it.
    from connectors.speech.kokoro import create_kokoro

    return create_kokoro(config)


def register_engine(name: str, factory: Callable[[TtsConfig], SpeechSynthesizer]) -> None:
    """Make another engine (e.g. a cloud TTS client taking :func:`ssml_for`) available to
    :func:`create_synthesizer` and to config validation (``tts.engine``). Call it before loading the config."""
    _ENGINES.register(name, factory)


def create_synthesizer(config: TtsConfig) -> SpeechSynthesizer:
    """The synthesiser the operator's config asks for."""
    return _ENGINES.create(config)
