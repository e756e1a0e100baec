"""Shared pytest setup for the toolkit venv."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _hide_unloaded_lazy_modules() -> Iterator[None]:
    """SpeechBrain registers lazy modules (e.g. its k2 integration) in ``sys.modules`` that raise
    ImportError on attribute access. Once a training test has imported speechbrain, hypothesis's
    scan of ``sys.modules`` trips over them; drop the ones that were never loaded."""
    for name, module in list(sys.modules.items()):
        lazy = type(module).__name__ in ("LazyModule", "DeprecatedModuleRedirect")
        if lazy and not module.__dict__.get("lazy_module"):
            del sys.modules[name]
    yield
