"""Shared pytest setup for the toolkit venv."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ACTIONS_TESTS = Path(__file__).resolve().parent / "actions"


def _drop_unloaded_lazy_modules() -> None:
    """SpeechBrain registers lazy modules (e.g. its k2 integration) in ``sys.modules`` that raise
    ImportError on attribute access. Once speechbrain is imported, hypothesis's scan of
    ``sys.modules`` trips over them; drop the ones that were never loaded."""
    for name, module in list(sys.modules.items()):
        lazy = type(module).__name__ in ("LazyModule", "DeprecatedModuleRedirect")
        if lazy and not module.__dict__.get("lazy_module"):
            del sys.modules[name]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems() -> None:
    """Before hypothesis's own hook scans sys.modules: a test module that imports training code
    (speechbrain) at collection time must not break the whole run."""
    _drop_unloaded_lazy_modules()


@pytest.fixture(autouse=True)
def _espeak_where_the_config_says_kokoro(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """config.yml ships tts.engine: kokoro, but a sentence Kokoro has not cached costs about a second of
    CPU and the tests' replies are mostly uncached: outside tests marked ``kokoro`` (Kokoro's own, and one
    call through the gateway) the engine named kokoro speaks with espeak-ng, in this process. Every other
    engine a test configures (none, a plugin) is left as configured."""
    if request.node.get_closest_marker("kokoro") or ACTIONS_TESTS in Path(request.node.path).parents:
        return  # tests/actions run in the Rasa venv: none of our toolkit code imports there
    from connectors.speech import tts

    monkeypatch.setitem(tts._ENGINES._factories, "kokoro", lambda cfg: tts.EspeakSynthesizer(cfg.voice))


@pytest.fixture(autouse=True)
def _hide_unloaded_lazy_modules() -> Iterator[None]:
    """The same before every test: a training test may have imported speechbrain since."""
    _drop_unloaded_lazy_modules()
    yield
