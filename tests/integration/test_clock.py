"""Clock control: pause, resume, step, speed, run until. The clock's pace is checked against its
schedule on a fake monotonic clock, never against the wall clock."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from tests.integration.conftest import run_dir
from twin.engine.clock import Clock
from twin.engine.supervisor import FleetSupervisor
from twin.model.config import FleetConfig
from twin.model.params import TICK_SECONDS

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture
def sup():
    """A fleet per test: each test leaves the clock in a state of its own (running, paused, at a
    speed), so none may inherit another's."""
    s = FleetSupervisor(FleetConfig(hubs=2_048, seed=3, block_size=1024), shards=1, cpus_per_shard=0.0,
                        run_dir=run_dir("clock"))
    yield s
    s.shutdown()


class FakeTime:
    """The `time` module as the clock's thread sees it, with a monotonic clock the test moves; every
    other name is the real module's."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds

    def __getattr__(self, name: str):
        return getattr(time, name)


@pytest.fixture
def fake_time(monkeypatch) -> FakeTime:
    fake = FakeTime()
    # The module whose code runs the clock's loop reads `time.monotonic()` at each turn.
    monkeypatch.setattr(sys.modules[Clock.__module__], "time", fake)
    return fake


def wait_for(pred, timeout=120.0):
    """Until `pred()` holds; the timeout only bounds a failing test, it is never what is checked."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def on_schedule(sup, fake: FakeTime) -> bool:
    """The running clock's thread is waiting for a tick still in the (fake) future: until the fake
    clock moves, it takes no tick."""
    due = sup.wall_clock.next_due
    return due is not None and due > fake.monotonic()


def settle(sup, fake: FakeTime, seconds: float, expect_tick: int) -> None:
    """Move the fake clock on and wake the clock's thread; it must reach `expect_tick` and stop
    there. Time moves only once the thread has set its schedule after the last tick (moving it
    while a tick is finishing would count the move into that tick's schedule)."""
    running = sup.clock_state == "running"
    if running:
        assert wait_for(lambda: on_schedule(sup, fake))
    fake.advance(seconds)
    sup.wall_clock.wake()
    assert wait_for(lambda: sup.tick >= expect_tick), (sup.tick, expect_tick)
    if running:
        assert wait_for(lambda: on_schedule(sup, fake))  # waiting again, for a tick not yet due
    else:
        time.sleep(0.3)  # a paused clock's thread has no schedule: a stray tick would start within this
    assert sup.tick == expect_tick


def test_pause_stops_ticks_and_step_advances_exactly_n(sup):
    sup.start_clock(speed=None)  # flat out
    assert wait_for(lambda: sup.tick > 5)
    sup.pause()
    assert wait_for(lambda: not sup.wall_clock.ticking)  # a tick in flight finishes; no other starts
    frozen = sup.tick
    time.sleep(0.5)
    assert sup.tick == frozen
    assert sup.clock_state == "paused"
    out = sup.step(7)
    assert [s.tick for s in out] == list(range(frozen, frozen + 7))
    assert sup.tick == frozen + 7
    time.sleep(0.3)
    assert sup.tick == frozen + 7


@pytest.mark.parametrize("ticks_per_s", [4, 16])  # powers of two: the schedule's sums are exact
def test_the_clock_ticks_on_its_schedule_at_any_speed(sup, fake_time, ticks_per_s):
    sup.start_clock(speed=TICK_SECONDS * ticks_per_s)
    start = sup.tick
    assert wait_for(lambda: sup.tick == start + 1)  # the first tick is due at once
    settle(sup, fake_time, 0.0, start + 1)
    settle(sup, fake_time, 1.0, start + 1 + ticks_per_s)  # one second: `ticks_per_s` more
    settle(sup, fake_time, 0.5, start + 1 + ticks_per_s * 3 // 2)


def test_a_stalled_clock_catches_up_at_most_a_second_of_schedule(sup, fake_time):
    sup.start_clock(speed=TICK_SECONDS * 4)  # a tick every 0.25 s
    start = sup.tick
    assert wait_for(lambda: sup.tick == start + 1)
    # 100 s late (a slow tick, a suspended machine): the overdue tick, then the schedule restarts
    # one second behind now, so five more, not four hundred.
    settle(sup, fake_time, 100.0, start + 1 + 1 + 5)


def test_a_paused_clock_takes_no_ticks_and_resumes_on_a_fresh_schedule(sup, fake_time):
    sup.start_clock(speed=TICK_SECONDS * 4)
    start = sup.tick
    assert wait_for(lambda: sup.tick == start + 1)
    sup.pause()
    settle(sup, fake_time, 10.0, start + 1)
    assert sup.clock_state == "paused"
    sup.resume()  # due at once, then every 0.25 s from now: the pause is not made up
    settle(sup, fake_time, 0.0, start + 2)
    settle(sup, fake_time, 0.5, start + 4)


def test_run_clock_until_stops_by_itself(sup):
    target = sup.tick + 12
    sup.start_clock(speed=None, running=False)
    sup.run_clock_until(target)
    sup.resume()
    assert wait_for(lambda: sup.clock_state == "paused")
    assert sup.tick == target


def test_bad_speed_is_rejected(sup):
    with pytest.raises(ValueError):
        sup.set_speed(0)
    with pytest.raises(ValueError):
        sup.step(-1)
