"""Nothing grows with the length of a run (issue 16, item 7): the planner holds the operations in
flight plus those finished within the retention, a progress series is bounded, the controls log
holds the ticks in flight, and an SR 11.1 costs the hubs it names, not its shard."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import quiet_params
from twin.engine.controls_log import ControlsLog
from twin.engine.journal import Journal
from twin.engine.operations import OperationRetired, OperationsStore
from twin.model.catalog import Csp, DeviceType, WanTech
from twin.model.config import FleetConfig, TwinInputError
from twin.model.fleet import LocalFleet
from twin.model.ops.base import MAX_HISTORY, Control
from twin.model.ops.commands import FirmwareRollout
from twin.model.ops.rollout import select_devices
from twin.model.ops.runtime import OPERATION_RETENTION_DAYS, retention_ticks
from twin.model.ops.snapshot import planner_chunks, planner_from_bytes
from twin.model.params import HALF_HOURS_PER_DAY

CFG = FleetConfig(hubs=4_096, seed=5, block_size=1024, params=quiet_params())
RETENTION = retention_ticks(OPERATION_RETENTION_DAYS)
# The planner tests below hold finished operations for a day instead of the default week (a run's
# setting, as the engine's OperationsStore sets it): the same retiring in a seventh of the ticks.
# The default is checked by test_retention_is_a_week_of_ticks.
WINDOW = HALF_HOURS_PER_DAY


def _sr(fleet: LocalFleet, hub: int, srv: str = "8.14.1") -> str:
    """A device-changing Service Request applied on site (8.14.x needs no WAN): done in a tick."""
    op = fleet.submit({"type": "service_request", "srv": srv, "hub": hub})
    assert op is not None
    return op.name


def test_retention_is_a_week_of_ticks():
    assert OPERATION_RETENTION_DAYS == 7.0 and RETENTION == 7 * HALF_HOURS_PER_DAY
    assert retention_ticks(None) is None
    with pytest.raises(ValueError, match="zero or more days"):
        retention_ticks(-1)


def test_the_planner_holds_the_retention_window_of_finished_requests_not_every_one():
    f = LocalFleet(CFG)
    f.planner.retention = WINDOW
    per_tick, ticks = 3, WINDOW * 3
    names = []
    for t in range(ticks):
        names += [_sr(f, (7 * t + k) % CFG.hubs) for k in range(per_tick)]
        f.step()
    p = f.planner
    # Accepted: 3 a tick for three retention windows. Held: those that finished within the last
    # window (an SR finishes the tick after it starts, and leaves `live` the tick after that).
    assert p.seq == per_tick * ticks
    assert len(p.ops) <= per_tick * (WINDOW + 3)
    assert len(p.ops) >= per_tick * WINDOW
    assert len(p.live) <= per_tick * 3
    assert len(p.retiring) <= per_tick * (WINDOW + 1)
    assert p.retired == per_tick * ticks - len(p.ops)
    assert names[0] not in p.ops and names[-1] in p.ops
    assert p.was_retired(names[0]) and not p.was_retired(names[-1]) and not p.was_retired("service-request-99999")


def test_the_planner_snapshot_stays_flat_while_requests_keep_coming():
    f = LocalFleet(CFG)
    f.planner.retention = WINDOW
    sizes = []
    for t in range(WINDOW * 4):
        _sr(f, (11 * t) % CFG.hubs)
        f.step()
        if t % WINDOW == WINDOW - 1:
            sizes.append(sum(len(c) for c in planner_chunks(f.planner, (t, 0), {})))
    # Once a retention window has passed, every window's snapshot is the same size give or take
    # the digits of growing numbers (names, ticks): not one more operation per window.
    assert max(sizes[1:]) - min(sizes[1:]) < 0.02 * sizes[1]
    # ... and it reads back as the same planner, retention state included.
    planner, _, _ = planner_from_bytes(b"".join(planner_chunks(f.planner, (0, 0), {})), CFG)
    assert list(planner.ops) == list(f.planner.ops) and list(planner.retiring) == list(f.planner.retiring)
    assert planner.retired == f.planner.retired and planner.retention == WINDOW


def test_no_retention_keeps_every_operation():
    f = LocalFleet(CFG)
    f.planner.retention = None
    for t in range(RETENTION + 20):
        _sr(f, t)
        f.step()
    assert len(f.planner.ops) == RETENTION + 20 and not f.planner.retiring and f.planner.retired == 0


def test_retiring_operations_changes_no_state():
    """Behaviour unchanged: the same state whether finished operations are retired or kept."""
    runs = []
    for retention in (None, 3):
        f = LocalFleet(CFG)
        f.planner.retention = retention
        f.submit({"type": "network_switch_off", "region": "South", "technology": "3G", "at": 2})
        for t in range(60):
            _sr(f, (13 * t) % CFG.hubs, "2.2" if t % 2 else "8.14.1")
            f.step()
        runs.append((f.state_hash(), f.planner.network.to_array().tolist()))
    assert runs[0] == runs[1]


def test_a_cancel_before_start_keeps_what_retired_operations_fixed_in_the_network():
    f = LocalFleet(CFG)
    f.planner.retention = 2
    f.submit({"type": "network_switch_off", "region": "South", "technology": "3G", "at": 1})
    f.run(8)
    assert not f.planner.ops  # the switch-off has finished and been retired
    late = f.submit({"type": "network_switch_off", "region": "Central", "technology": "2G", "at": 20})
    assert late is not None
    f.submit({"type": "operation_control", "operation": late.name, "action": "cancel"})
    up = f.planner.network.up(30)
    assert not up[Csp.SOUTH, WanTech.G3]  # the retired switch-off still holds
    assert up[Csp.CENTRAL, WanTech.G2]  # the cancelled one never happens


def test_a_retired_operation_reads_not_found_saying_why(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    try:
        store = OperationsStore(CFG, journal=journal, census=lambda c: {}, refuses_commands=lambda: None,
                                retention_days=0.5)
        f = LocalFleet(CFG)  # steps the store's planner, as the step pipeline would
        f.planner = store.planner
        view = store.submit({"type": "network_switch_off", "region": "North", "technology": "2G", "at": 0})
        assert store.operation(view["name"])["name"] == view["name"]
        for _ in range(30):
            f.step()
        with pytest.raises(OperationRetired, match=r"kept for 0.5 days of simulated time after they end"):
            store.operation(view["name"])
        with pytest.raises(TwinInputError, match="no operation named") as e:
            store.operation("operations/network-switch-off-77")
        assert not isinstance(e.value, OperationRetired)
        assert store.held_operations() == 0
    finally:
        journal.close()


def test_a_progress_series_is_bounded_and_evenly_spaced():
    from twin.model.ops.base import FleetOp

    cmd = FirmwareRollout(at=10, device_type=int(DeviceType.ESME), model_code=1, target_version="2.0")
    op = FleetOp("firmware-rollout-1", cmd, CFG)
    for t in range(10, 10 + 5 * MAX_HISTORY + 3):
        op.observe(t, {"n": t}, None)  # type: ignore[arg-type]
    ticks = [t for t, _ in op.history]
    assert len(ticks) <= MAX_HISTORY + 1
    assert ticks[0] == 10 and ticks[-1] == 10 + 5 * MAX_HISTORY + 2  # the first and the newest
    steps = set(np.diff(ticks[:-1]).tolist())
    assert steps == {op.history_stride} and op.history_stride == 8


def test_a_progress_series_keeps_changes_only():
    from twin.model.ops.base import FleetOp

    cmd = FirmwareRollout(at=0, device_type=int(DeviceType.ESME), model_code=1, target_version="2.0", hubs=(3,))
    op = FleetOp("firmware-rollout-1", cmd, CFG)
    for t in range(1000):  # an SR 11.1 waiting for a dark hub: the same report every tick
        op.observe(t, {"pending_no_wan": 1 if t < 900 else 0}, None)  # type: ignore[arg-type]
    assert op.history == [(0, {"pending_no_wan": 1}), (900, {"pending_no_wan": 0})]


# -- the controls log ------------------------------------------------------------------------------

def _ctl(t: int) -> list[Control]:
    return [Control(f"op-{t}", "budget", {"blocks": np.arange(t % 5, dtype=np.int64), "n": t})]


def test_the_controls_log_spills_all_but_the_ticks_in_flight_and_replays_them_in_order(tmp_path):
    log = ControlsLog(spill=tmp_path / "controls.spill", keep=4)
    with_controls = {t for t in range(200) if t % 3 == 0}
    for t in range(200):
        log.record(t, _ctl(t) if t in with_controls else [])
        assert len(log) <= 2  # ticks t-4..t, a third of them with controls
    assert log.spilled_ticks == len([t for t in with_controls if t < 195])
    got = list(log.replay(0, 200))
    assert [t for t, _ in got] == list(range(200))
    for t, controls in got:
        if t in with_controls:
            assert controls is not None and controls[0].op == f"op-{t}" and controls[0].data["n"] == t
            np.testing.assert_array_equal(controls[0].data["blocks"], np.arange(t % 5))
        else:
            assert controls is None
    log.reset({})
    assert log.spilled_ticks == 0 and not (tmp_path / "controls.spill").exists() and list(log.replay(0, 3)) == [
        (0, None), (1, None), (2, None)]


def test_with_checkpoints_the_controls_log_keeps_only_ticks_after_the_checkpoint():
    log = ControlsLog(spill=None, keep=4)
    for t in range(30):
        log.record(t, _ctl(t))
        if t % 10 == 9:
            assert sorted(log.after(t - 2)) == [t - 1, t]
            log.cut(t)
            assert len(log) == 0
    assert len(log) <= 10 and log.spilled_ticks == 0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=60), st.integers(0, 6), st.integers(0, 59))
def test_the_controls_log_replays_exactly_what_was_recorded(tmp_path_factory, has, keep, first):
    log = ControlsLog(spill=tmp_path_factory.mktemp("spill") / "c.spill", keep=keep)
    for t, h in enumerate(has):
        log.record(t, _ctl(t) if h else [])
    got = [(t, None if c is None else c[0].op) for t, c in log.replay(first, len(has))]
    assert got == [(t, f"op-{t}" if has[t] else None) for t in range(first, len(has))]


# -- an SR 11.1 costs the hubs it names ------------------------------------------------------------

class _Counting(np.ndarray):
    """A column that counts the elements each read of it touches."""

    touched = 0

    def __getitem__(self, key):
        out = super().__getitem__(key)
        _Counting.touched = max(_Counting.touched, int(np.size(out)))
        return out


def test_an_sr_11_1_reads_only_the_hubs_it_names():
    f = LocalFleet(FleetConfig(hubs=20_000, seed=5, block_size=1024, params=quiet_params()))
    hs = f.states[0]
    full = FirmwareRollout(at=0, device_type=int(DeviceType.ESME), model_code=1, target_version="9.9")
    every = select_devices(hs, full, f.planner.versions, None)  # this shard holds hubs 0..N-1 at rows 0..N-1
    other = int(np.setdiff1d(np.arange(hs.n_hubs), every)[0])
    named = tuple(sorted({int(every[0]), int(every[every.size // 2]), other}))
    cmd = FirmwareRollout(at=0, device_type=int(DeviceType.ESME), model_code=1, target_version="9.9", hubs=named)
    expected = np.intersect1d(select_devices(hs, full, f.planner.versions, None), np.asarray(named))
    cols = hs.cols
    try:
        hs.cols = {k: v.view(_Counting) for k, v in cols.items()}
        _Counting.touched = 0
        rows = select_devices(hs, cmd, f.planner.versions, None)
        assert _Counting.touched <= len(named)
    finally:
        hs.cols = cols
    np.testing.assert_array_equal(rows, expected)
    assert expected.size == 2  # the two that match, not the one that does not
