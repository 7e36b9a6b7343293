from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import ray

from twin.engine.runtime import start_ray


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole session, CPUs pinned (start-up costs seconds)."""
    start_ray(num_cpus=2)
    yield
    ray.shutdown()


def run_dir(tag: object) -> Path:
    """A fresh run directory (journal, manifest) for a supervisor under test."""
    return Path(tempfile.mkdtemp(prefix=f"twin-test-{tag}-"))
