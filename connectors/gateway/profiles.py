"""Per-call profiles: the ``profile`` a call's ``start`` names picks its bot, tone policy and voice.

The gateway runs with one config, whose ``profile`` is the default. Any other profile of the same
file (its ``profiles:`` entries) may be chosen per call on our protocol (docs/protocol.md,
``start.profile``). A call on profile P gets P's :data:`PER_CALL_SECTIONS` (which Rasa bot, tone
policy, escalation rule, turn taking, TTS voice, recogniser) and its busy reply on top of the
gateway's own ``gateway`` section (listener, tokens, limits); the emotion model, its streaming and
smoothing stay the gateway's (one shared hub per process, sized for all calls).

Engines are shared where a profile's section equals the gateway's and built, off the event loop,
at the first call that needs them otherwise (a Rasa client for another bot, a recogniser for
another language); they live until the gateway stops. A config reload rebuilds them lazily.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from connectors.dialogue.rasa_client import RasaClient
from connectors.speech.asr import create_recognizer
from connectors.speech.tts import create_synthesizer
from emotune.config import load_config
from emotune.errors import ConfigError

if TYPE_CHECKING:
    from connectors.gateway.call import CallServices

__all__ = ["PER_CALL_GATEWAY_FIELDS", "PER_CALL_SECTIONS", "CallProfiles", "profile_names"]

logger = logging.getLogger(__name__)

PER_CALL_SECTIONS = ("rasa", "tone_policy", "escalation", "turn_taking", "tts", "asr")
PER_CALL_GATEWAY_FIELDS = ("busy_reply", "handoff_summaries")  # what the gateway itself says, in the profile's language


def profile_names(config_path: Path | None, own: str) -> tuple[str, ...]:
    """The gateway's own profile first (the default), then the other entries of ``profiles:``."""
    names = [own]
    if config_path is not None:
        try:
            data = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(str(config_path), [f"cannot read the profiles: {exc}"]) from exc
        profiles = data.get("profiles") if isinstance(data, dict) else None
        names += [str(name) for name in (profiles or {}) if name != own]
    return tuple(names)


class CallProfiles:
    """The profiles this gateway serves and each one's :class:`CallServices` (built on first use)."""

    def __init__(self, base: CallServices, config_path: Path | None) -> None:
        self.base = base
        self.config_path = config_path
        self.names = profile_names(config_path, base.config.profile)
        self._built: dict[str, CallServices] = {}
        self._engines: list[Any] = []  # what we created (closed at stop)
        self._lock = asyncio.Lock()

    async def services_for(self, name: str) -> CallServices:
        """The services of a call on profile ``name``; ConfigError for a profile not served here."""
        if name == self.base.config.profile:
            return self.base
        if name not in self.names:
            raise ConfigError("profile", [f"{name!r} is not served by this gateway ({', '.join(self.names)})"])
        async with self._lock:
            if name not in self._built:
                self._built[name] = await asyncio.to_thread(self._build, name)
        return self._built[name]

    def _build(self, name: str) -> CallServices:
        base, running = self.base, self.base.config
        loaded = load_config(self.config_path, profile=name)
        gateway = running.gateway.model_copy(update={f: getattr(loaded.gateway, f) for f in PER_CALL_GATEWAY_FIELDS})
        sections = {s: getattr(loaded, s) for s in PER_CALL_SECTIONS}
        config = running.model_copy(update={**sections, "gateway": gateway, "profile": name})
        changes: dict[str, Any] = {"config": config}
        if loaded.rasa != running.rasa:
            changes["rasa"] = self._own(RasaClient(loaded.rasa))
        if loaded.tts != running.tts:
            changes["synthesizer"] = create_synthesizer(loaded.tts)
        if loaded.asr != running.asr:
            changes["recognizer"] = self._own(create_recognizer(loaded.asr))  # waits for its workers
            changes["asr_slots"] = asyncio.Semaphore(loaded.asr.turns_in_flight())
        logger.info("profile %s ready for calls (own engines: %s)", name,
                    ", ".join(k for k in changes if k != "config") or "none")  # fmt: skip
        return dataclasses.replace(base, **changes)

    def _own(self, engine: Any) -> Any:
        self._engines.append(engine)
        return engine

    def reload(self, config_path: Path) -> None:
        """After a config reload: profiles are rebuilt from the new file at their next call."""
        self.config_path = config_path
        self.names = profile_names(config_path, self.base.config.profile)
        self._built.clear()  # calls in progress keep theirs; the engines are closed at stop

    async def close(self) -> None:
        for engine in self._engines:
            if isinstance(engine, RasaClient):
                await engine.close()
            else:
                await asyncio.to_thread(engine.close)
        self._engines.clear()
