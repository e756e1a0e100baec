"""Fixtures for the custom-action tests (run in the Rasa venv: .venv-rasa/bin/python -m pytest tests/actions).

Trackers are built the way Rasa serialises them for the action server, and the domains are the
real bot/<name>/domain.yml files, so a slot or response renamed in a domain breaks these tests.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# The action server imports `actions` from the repo root; so do the tests.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tracker_fixtures import BOTS, load_domain  # noqa: E402


@pytest.fixture(params=BOTS)
def any_domain(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load_domain(request.param)


@pytest.fixture
def cc_domain() -> dict[str, Any]:
    return load_domain("contact_center")


@pytest.fixture
def car_domain() -> dict[str, Any]:
    return load_domain("in_car")


# Real databases for the backend and contact-center action tests (SQLite file, PostgreSQL server).
from backend_fixtures import backend, dead_backend, pg_server  # noqa: E402, F401
