"""Shared fixtures and the suite's tiers. A test's directory is its tier: `unit` (no Ray, fast),
`integration` (one shared local Ray, gRPC on port 0), `e2e` (a browser or several processes); the
marker of that name is applied here, so `-m unit` and `-m 'not e2e'` select by tier."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from twin.model.config import FleetConfig
from twin.model.params import EventParams, IncidentParams, ModelParams

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "integration", "e2e")
RAY_STARTED = False  # set by ray_session: the Ray of this test process is the suite's


def quiet_params(**incident_overrides: Any) -> ModelParams:
    """Model parameters with background incidents switched off (or set as given)."""
    ip = replace(IncidentParams(), power_outages_per_year=0.0, hub_faults_per_year=0.0,
                 hardware_failures_per_year=0.0)
    return ModelParams(incidents=replace(ip, **incident_overrides))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier (its folder under tests/); a test outside the three tiers, or a
    unit test that asks for Ray, is a collection error rather than a silently mis-sorted test.

    Under pytest-xdist (`-n`, `--dist loadgroup`, the default run) the integration tests that use
    Ray are one group, run in turn on one worker: one local Ray at a time, since they size their
    fleets for the machine's two CPUs (two Rays on it time out). The end-to-end tier is one group
    too (its processes, browsers and clusters one at a time). The other tests spread over the
    other workers meanwhile."""
    for item in items:
        rel = Path(str(item.path)).resolve().relative_to(TESTS)
        tier = rel.parts[0] if len(rel.parts) > 1 else ""
        if tier not in TIERS:
            raise pytest.UsageError(f"{rel}: a test belongs in tests/unit, tests/integration or tests/e2e")
        if tier == "unit" and "ray_session" in getattr(item, "fixturenames", ()):
            raise pytest.UsageError(f"{item.nodeid}: unit tests never start Ray (move it to tests/integration)")
        item.add_marker(getattr(pytest.mark, tier))
        if tier == "e2e" or "ray_session" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group(tier))


@pytest.fixture
def small_config() -> FleetConfig:
    # 20 blocks of 1,024 hubs, the last one partial: enough blocks to split 7 ways.
    return FleetConfig(hubs=20_000, seed=11, block_size=1024)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for the whole session, CPUs pinned (start-up costs seconds)."""
    import ray

    from twin.engine.runtime import start_ray

    global RAY_STARTED
    start_ray(num_cpus=2)
    RAY_STARTED = True
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def live_api(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The one live stack (tests/support.py `Api`) the API suites share: built once per session.
    Tests that change the clock or the fleet irreversibly build their own and say why."""
    from tests.support import Api

    # Its shards reserve no Ray CPU: it lives for the whole session, and a fleet that held the two
    # CPUs would leave every later test's fleet waiting for them.
    # Firmware installs on it never fail: which draw a test's SR 11.1 gets depends on how many
    # operations ran before it, so in random order the model's 0.5% transfer and 1% activation
    # failure chances would make an install test fail now and then. The failure paths are tested
    # on their own fleets (tests/unit/test_events.py, test_event_interactions.py).
    events = replace(EventParams(), transfer_failure=0.0, default_activation_failure=0.0, default_activation_brick=0.0)
    config = FleetConfig(hubs=20_000, seed=9, block_size=1024, params=ModelParams(events=events))
    a = Api(tmp_path_factory.mktemp("live-api"), config=config, cpus_per_shard=0.0)
    yield a
    a.close()
