"""Clock control: pause, resume, step, speed, run until."""

from __future__ import annotations

import time

import pytest

from tests.integration.conftest import run_dir
from twin.engine.supervisor import FleetSupervisor
from twin.model.config import FleetConfig

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture(scope="module")
def sup():
    s = FleetSupervisor(FleetConfig(hubs=5_000, seed=3, block_size=1024), shards=2, run_dir=run_dir(2))
    yield s
    s.shutdown()


def wait_for(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_pause_stops_ticks_and_step_advances_exactly_n(sup):
    sup.start_clock(speed=None)  # flat out
    assert wait_for(lambda: sup.tick > 5)
    sup.pause()
    time.sleep(0.2)  # a tick in flight may finish
    frozen = sup.tick
    time.sleep(0.5)
    assert sup.tick == frozen
    assert sup.clock_state == "paused"
    out = sup.step(7)
    assert [s.tick for s in out] == list(range(frozen, frozen + 7))
    assert sup.tick == frozen + 7
    time.sleep(0.3)
    assert sup.tick == frozen + 7


def test_speed_multiple_is_honoured_roughly(sup):
    counts = {}
    for speed in (9_000.0, 36_000.0):  # 5 and 20 ticks per wall second
        sup.set_speed(speed)
        sup.resume()
        time.sleep(0.3)
        t0, k0 = time.monotonic(), sup.tick
        time.sleep(2.0)
        counts[speed] = (sup.tick - k0) / (time.monotonic() - t0)
        sup.pause()
    # Compare the two rates in one run rather than to wall-clock targets (shared, noisy machines).
    ratio = counts[36_000.0] / counts[9_000.0]
    assert 2.5 < ratio < 5.5, counts
    assert counts[9_000.0] < 8, counts


def test_run_clock_until_stops_by_itself(sup):
    target = sup.tick + 12
    sup.set_speed(None)
    sup.run_clock_until(target)
    sup.resume()
    assert wait_for(lambda: sup.clock_state == "paused")
    assert sup.tick == target


def test_bad_speed_is_rejected(sup):
    with pytest.raises(ValueError):
        sup.set_speed(0)
    with pytest.raises(ValueError):
        sup.step(-1)
