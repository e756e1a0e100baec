"""One exception root for the whole toolkit, with a tree that says what went wrong.

Catch :class:`EmotuneError` to catch everything we raise on purpose; catch a subclass to
handle one kind of failure (a bad frame, a missing model file, Rasa down, ...).
"""

from __future__ import annotations

__all__ = [
    "EmotuneError",
    "ConfigError",
    "ModelError",
    "ModelFileError",
    "SidecarError",
    "AudioError",
    "FrameError",
    "SampleRateError",
    "ProtocolError",
    "AuthenticationError",
    "SequenceError",
    "DialogueError",
    "RasaUnavailableError",
    "SpeechEngineError",
    "DataError",
    "NotBuiltError",
]


class EmotuneError(Exception):
    """Root of every error the toolkit raises on purpose."""


class ConfigError(EmotuneError):
    """The operator's config is invalid. ``problems`` holds one line per wrong field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid config {source}: {len(self.problems)} problem(s)\n{lines}")


class ModelError(EmotuneError):
    """The emotion model cannot be used."""


class ModelFileError(ModelError):
    """The model file is missing, unreadable, corrupt or does not match its checksum."""


class SidecarError(ModelError):
    """The model's JSON sidecar is missing or does not describe the model."""


class AudioError(EmotuneError):
    """Audio that cannot be processed as given."""


class FrameError(AudioError):
    """A frame of the wrong size, type or encoding."""


class SampleRateError(AudioError):
    """A sample rate we do not accept."""


class ProtocolError(EmotuneError):
    """A peer broke a telephony or gateway protocol."""


class AuthenticationError(ProtocolError):
    """A peer failed authentication (token, API key or message signature)."""


class SequenceError(ProtocolError):
    """Messages arrived out of order (e.g. a Genesys AudioHook sequence number gap)."""


class DialogueError(EmotuneError):
    """The dialogue engine (Rasa) failed."""


class RasaUnavailableError(DialogueError):
    """Rasa could not be reached or did not answer in time."""


class SpeechEngineError(EmotuneError):
    """A speech recogniser or synthesiser failed on a turn (engine crashed, timed out)."""


class DataError(EmotuneError):
    """Training or fine-tuning data is unusable (bad manifest, missing files, unknown labels)."""


class NotBuiltError(EmotuneError):
    """A feature that is declared but not built yet."""
