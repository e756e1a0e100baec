"""Name -> factory tables for the pluggable speech engines (ASR, TTS).

The operator picks an engine by name in ``config.yml``; a deployment adds its own (a cloud ASR or
TTS client) by registering a factory before the config is loaded. Registering also tells the
config validation the name, so ``emotune config check`` still refuses typos.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from emotune.config import allow_engine
from emotune.errors import ConfigError

__all__ = ["EngineRegistry"]


class _HasEngine(Protocol):
    @property
    def engine(self) -> str: ...


ConfigT = TypeVar("ConfigT", bound=_HasEngine)
EngineT = TypeVar("EngineT")


class EngineRegistry(Generic[ConfigT, EngineT]):
    """The engines one config section (``asr`` or ``tts``) can name."""

    def __init__(self, section: str, builtins: dict[str, Callable[[ConfigT], EngineT]]) -> None:
        self.section = section
        self._factories = dict(builtins)

    def register(self, name: str, factory: Callable[[ConfigT], EngineT]) -> None:
        allow_engine(self.section, name)
        self._factories[name] = factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def create(self, config: ConfigT) -> EngineT:
        factory = self._factories.get(config.engine)
        if factory is None:
            # Reachable when the name was allowed elsewhere (another registry instance, a test).
            known = ", ".join(self.names())
            raise ConfigError(
                self.section, [f"{self.section}.engine: no factory for {config.engine!r} (known: {known})"]
            )
        return factory(config)
