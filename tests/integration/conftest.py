"""Integration tests share one local Ray (`ray_session`, tests/conftest.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests.support import run_dir

__all__ = ["run_dir"]  # the suites' old import path (from tests.integration.conftest import run_dir)


@pytest.fixture(autouse=True)
def _ray_only_through_ray_session(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that starts Ray without asking for `ray_session` fails: pytest-xdist runs it outside
    the one worker that holds the Ray tests (tests/conftest.py), so it would be a second Ray on
    the machine at the same time."""
    yield
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized() and "ray_session" not in request.fixturenames:
        from tests import conftest

        if not conftest.RAY_STARTED:
            pytest.fail(f"{request.node.nodeid} started Ray: ask for the ray_session fixture")
