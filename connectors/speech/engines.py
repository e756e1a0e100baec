"""Name -> factory tables for the pluggable speech engines (ASR, TTS).

The operator picks an engine by name in ``config.yml``. Another engine (a cloud ASR or TTS client)
comes from an installed package that declares its factory as an entry point, found by name with
no code change::

    [project.entry-points."emotune.asr_engines"]
    acme-cloud = "acme_emotune:make_recognizer"   # factory(AsrConfig) -> SpeechRecognizer

or, when embedding, from ``register_engine`` called before the config is loaded. Either way the
config validation knows the name, so ``emotune config check`` still refuses typos.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, Protocol, TypeVar

from emotune.config import ENGINE_ENTRY_POINTS, allow_engine, plugin_engines
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
        factory = self._factories.get(config.engine) or self._load_plugin(config.engine)
        return factory(config)

    def _load_plugin(self, name: str) -> Callable[[ConfigT], EngineT]:
        field = f"{self.section}.engine"
        found = [e for e in entry_points(group=ENGINE_ENTRY_POINTS[self.section]) if e.name == name]
        if not found:
            known = ", ".join(sorted(set(self.names()) | plugin_engines(self.section)))
            raise ConfigError(field, [f"no engine {name!r} is registered or installed (known: {known})"])
        try:
            factory = found[0].load()
        except Exception as exc:  # noqa: BLE001 - any import failure of a third-party plugin
            raise ConfigError(field, [f"engine {name!r} ({found[0].value}) cannot be loaded: {exc}"]) from exc
        if not callable(factory):
            raise ConfigError(field, [f"engine {name!r} ({found[0].value}) is not a factory function"])
        self._factories[name] = factory
        return factory  # type: ignore[no-any-return]
