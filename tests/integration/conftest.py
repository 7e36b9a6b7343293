"""Integration tests share one local Ray (`ray_session`, tests/conftest.py)."""

from __future__ import annotations

from tests.support import run_dir

__all__ = ["run_dir"]  # the suites' old import path (from tests.integration.conftest import run_dir)
