"""Shared pytest setup for the toolkit venv."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


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
def _hide_unloaded_lazy_modules() -> Iterator[None]:
    """The same before every test: a training test may have imported speechbrain since."""
    _drop_unloaded_lazy_modules()
    yield
