from __future__ import annotations

import pytest
import ray

from twin.engine.runtime import start_ray


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole session, CPUs pinned (start-up costs seconds)."""
    start_ray(num_cpus=2)
    yield
    ray.shutdown()
