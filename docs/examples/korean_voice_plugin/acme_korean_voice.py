"""Example TTS plug-in: a licensed Korean voice behind Emotune's TTS engine interface.

A vendor's voice usually comes as a command-line engine or an SDK. This plug-in wraps a command
that reads SSML on stdin and writes a mono WAV on stdout, so the tone's prosody (rate, pitch,
volume from ``tone_policy.prosody``) reaches the vendor voice as SSML ``<prosody>``. Install it
into the toolkit venv (``.venv/bin/pip install ./docs/examples/korean_voice_plugin``), point
``ACME_TTS_COMMAND`` at the vendor's engine and select it in a profile; no Emotune code changes::

    export ACME_TTS_COMMAND="/opt/acme/bin/acme-tts --voice {voice} --ssml --wav"
    # config.yml, profiles.ko_contact_center:  tts: {engine: acme-korean, voice: yuna}

``{voice}`` in the command is replaced by ``tts.voice``. The test suite runs this file with
espeak-ng's ``ko`` voice as the "vendor" command (tests/test_korean_speech.py).
"""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import time

import numpy as np
import soundfile as sf

from connectors.speech.tts import Speech, ssml_for
from emotune.config import Prosody, TtsConfig
from emotune.errors import AudioError, NotBuiltError

__all__ = ["COMMAND_ENV", "AcmeKoreanVoice", "make_synthesizer"]

COMMAND_ENV = "ACME_TTS_COMMAND"
_TIMEOUT_S = 20.0


class AcmeKoreanVoice:
    """The vendor's engine as a subprocess: SSML in, WAV out (implements ``SpeechSynthesizer``)."""

    name = "acme-korean"

    def __init__(self, command: list[str]) -> None:
        self.command = command

    def synthesize(self, text: str, prosody: Prosody) -> Speech:
        started = time.perf_counter()
        ssml = ssml_for(text, prosody)  # refuses empty text with AudioError
        try:
            result = subprocess.run(self.command, input=ssml.encode("utf-8"), capture_output=True,
                                    timeout=_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AudioError(f"{self.name}: the voice command failed to run: {exc}") from exc
        if result.returncode != 0:
            raise AudioError(f"{self.name}: exit {result.returncode}: {result.stderr.decode(errors='replace')[:200]}")
        try:
            samples, rate = sf.read(io.BytesIO(result.stdout), dtype="float32")
        except RuntimeError as exc:  # libsndfile: not audio
            raise AudioError(f"{self.name}: the voice command did not write WAV audio: {exc}") from exc
        if samples.ndim > 1:
            samples = samples.mean(axis=1)
        return Speech(np.ascontiguousarray(samples, dtype=np.float32), int(rate), text, time.perf_counter() - started)


def make_synthesizer(config: TtsConfig) -> AcmeKoreanVoice:
    """The entry point's factory: ``emotune.tts_engines`` -> ``acme-korean``."""
    command = os.environ.get(COMMAND_ENV, "").strip()
    if not command:
        raise NotBuiltError(f"tts.engine acme-korean: set {COMMAND_ENV} to the voice's command line "
                            "(SSML on stdin, WAV on stdout; {voice} is replaced by tts.voice)")
    return AcmeKoreanVoice([part.replace("{voice}", config.voice) for part in shlex.split(command)])
