"""Threshold Anomaly Detection: rolling per-(user, SRV) windows, per-user overrides, quarantine handling."""

from __future__ import annotations

import pytest

from twin.services.anomaly import AnomalyDetector, QuarantineFull


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def detector(clock: FakeClock, **kw) -> AnomalyDetector:
    kw = {"window_s": 60.0, "default_threshold": 3} | kw
    return AnomalyDetector(clock=clock, wall_clock=lambda: 1.7e9, **kw)


def test_threshold_window_and_expiry():
    clock = FakeClock()
    d = detector(clock)
    for _ in range(3):
        assert d.admit("octopus-is", "4.1.1", {}) is None
        clock.t += 1.0
    entry = d.admit("octopus-is", "4.1.1", {"target": "h1"})
    assert entry is not None
    assert (entry.id, entry.user_id, entry.srv, entry.request) == ("q-000001", "octopus-is", "4.1.1", {"target": "h1"})
    assert (entry.count, entry.threshold, entry.quarantined_at) == (4, 3, 1.7e9)
    # Counts are per user and per SRV.
    assert d.admit("bg-gs", "4.1.1", {}) is None
    assert d.admit("octopus-is", "4.8.1", {}) is None
    # The first request (t=1000) leaves the window at t=1060; the other two are still in it.
    clock.t = 1060.0
    assert d.admit("octopus-is", "4.1.1", {}) is None
    assert d.admit("octopus-is", "4.1.1", {}) is not None
    clock.t = 1200.0
    assert all(d.admit("octopus-is", "4.1.1", {}) is None for _ in range(3))


def test_per_srv_and_per_user_thresholds():
    clock = FakeClock()
    d = detector(clock, thresholds={"11.2": 1}, user_thresholds={("big-is", "11.2"): 5})
    assert d.threshold("small-is", "4.1.1") == 3
    assert d.admit("small-is", "11.2", {}) is None
    assert d.admit("small-is", "11.2", {}) is not None
    assert all(d.admit("big-is", "11.2", {}) is None for _ in range(5))
    assert d.admit("big-is", "11.2", {}).threshold == 5


def test_list_release_delete():
    clock = FakeClock()
    d = detector(clock, default_threshold=0)
    a = d.admit("u1", "2.2", {"n": 1})
    b = d.admit("u2", "2.2", {"n": 2})
    c = d.admit("u1", "2.2", {"n": 3})
    assert d.list() == [a, b, c]
    assert d.list("u1") == [a, c]
    assert d.release(a.id) == a
    assert d.delete(b.id) == b
    assert d.list() == [c]
    for gone in (a.id, b.id, "q-999999"):
        with pytest.raises(KeyError):
            d.release(gone)
        with pytest.raises(KeyError):
            d.delete(gone)


def test_quarantine_is_bounded():
    d = AnomalyDetector(default_threshold=0, clock=FakeClock(), max_entries=2)
    d.admit("u", "2.2", {})
    d.admit("u", "2.2", {})
    with pytest.raises(QuarantineFull):
        d.admit("u", "2.2", {})
    d.delete("q-000001")
    assert d.admit("u", "2.2", {}).id == "q-000003"


def test_window_deque_stays_bounded_under_a_flood():
    d = detector(FakeClock())
    for _ in range(50):
        d.admit("u", "4.17", {})
    assert len(d._windows["u", "4.17"]) == 3
    assert len(d.list()) == 47


def test_leases_share_the_window_and_unused_ones_come_back():
    clock = FakeClock()
    d = detector(clock, default_threshold=10)
    assert d.lease("u", "4.1.1", 4, 1.0) == 4  # another API process answers these four itself
    assert d.lease("u", "4.1.1", 100, 1.0) == 3  # at most half of what is left at once
    assert [d.admit("u", "4.1.1", {}) for _ in range(3)] == [None] * 3
    assert d.lease("u", "4.1.1", 1, 1.0) == 0
    assert d.admit("u", "4.1.1", lambda: {"n": 11}) is not None  # the window is full: quarantined
    d.unlease("u", "4.1.1", 5)  # five of the seven leased were not used
    assert [d.admit("u", "4.1.1", {}) for _ in range(5)] == [None] * 5
    assert d.admit("u", "4.1.1", {}) is not None
    assert d.lease("other", "4.1.1", 5, 1.0) == 5  # per user
    d.unlease("nobody", "4.1.1", 5)  # nothing to hand back: no error


def test_leased_admissions_never_let_a_user_past_its_threshold_in_a_window():
    clock = FakeClock()
    d = detector(clock, default_threshold=8)
    t0 = clock.t
    assert d.lease("u", "4.1.1", 4, 1.0) == 4
    clock.t = t0 + 0.99  # the other process uses all four just before the hold ends
    answered = [t0 + 0.99] * 4
    clock.t = t0 + 60.5  # a window after the grant, but not after the last use
    while d.admit("u", "4.1.1", {}) is None:
        answered.append(clock.t)
    # Within the 60 s ending now, the four leased count still: no more than 8 in any window.
    assert sum(1 for a in answered if a > clock.t - 60.0) <= 8
    clock.t = t0 + 61.0
    assert d.admit("u", "4.1.1", {}) is None  # the hold has left the window
def test_a_quarantine_copy_is_made_only_when_quarantining():
    made = []

    def copy() -> dict:
        made.append(1)
        return {"target": "h"}

    d = detector(FakeClock(), default_threshold=1)
    assert d.admit("u", "4.1.1", copy) is None and made == []
    entry = d.admit("u", "4.1.1", copy)
    assert entry is not None and entry.request == {"target": "h"} and made == [1]
