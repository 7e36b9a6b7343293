"""Operations retire: per-tick cost follows the work in flight, never every operation accepted.

A single-hub operation (a device-changing Service Request, a change of supplier, an SR 11.1 image)
lives only on the shard that holds its hub, and only until its result is reported; a cancelled or
finished operation leaves nothing behind on any shard; the fleet half still shows its final state."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.unit.test_events import quiet_fleet
from twin.model.catalog import DeviceType, Flag, Smets, Status, WanTech, models_of
from twin.model.fleet import LocalFleet
from twin.model.ops.runtime import LAG
from twin.model.params import HALF_HOURS_PER_DAY

HUBS, SEED = 12_000, 41
DEADLINE_DAYS = 0.1  # five ticks: requests to unreachable hubs fail soon


def _hub_pools() -> dict[str, list[int]]:
    """Hub ids by what a request to them does, from the fleet as generated (quiet: nothing changes
    them before the requests but the requests themselves, each to its own hub)."""
    st = quiet_fleet(hubs=HUBS, seed=SEED).states[0]
    c, n = st.cols, st.n_hubs
    reachable = (c["fault"][:n] == 0) & (c["smets"][:n] != Smets.SMETS1_NOT_ENROLLED) & (c["wan"][:n] != WanTech.NONE)
    prepay = (c["flags"][:n] & Flag.PREPAY) != 0
    return {"prepay": np.flatnonzero(reachable & prepay).tolist(),
            "credit": np.flatnonzero(reachable & ~prepay).tolist(),
            "unreachable": np.flatnonzero(c["smets"][:n] == Smets.SMETS1_NOT_ENROLLED).tolist()}


# (SRV, pool, parameters, final state): applied, refused (not prepayment), or failed at the deadline.
KINDS: list[tuple[str, str, dict[str, Any], str]] = [
    ("2.2", "prepay", {"amount_pence": 500}, "DONE"),
    ("1.1.1", "credit", {"unit_rate_pence": 26.1}, "DONE"),
    ("7.2", "credit", {}, "DONE"),
    ("2.2", "credit", {"amount_pence": 500}, "FAILED"),
    ("7.1", "prepay", {}, "DONE"),
    ("8.14.3", "unreachable", {}, "DONE"),  # on site: needs no WAN
    ("7.2", "unreachable", {}, "FAILED"),
]


def _requests(n: int) -> list[tuple[dict[str, Any], str]]:
    """n requests cycling through KINDS, each to a different hub spread over the fleet."""
    pools = _hub_pools()
    used: dict[str, int] = {}
    out = []
    for i in range(n):
        srv, pool, params, final = KINDS[i % len(KINDS)]
        k = used.get(pool, 0)
        used[pool] = k + 1
        hubs = pools[pool]
        hub = hubs[(k * 7919) % len(hubs)]  # stride through the pool: both halves of the fleet
        out.append(({"type": "service_request", "srv": srv, "hub": hub, "user_id": "test", "request_id": f"r-{i}",
                     "params": params, "deadline_days": DEADLINE_DAYS}, final))
    return out


def _held(f: LocalFleet) -> list[int]:
    return [len(ops.ops) for ops in f.ops]


def _run_requests(n: int, splits: int) -> tuple[LocalFleet, list[str], list[tuple[int, list[int], int]]]:
    """Submit n requests, one per tick; then run until all are settled. Returns the fleet, the
    operation names and (pending requests, ops held per shard, report entries) after each tick."""
    f = quiet_fleet(hubs=HUBS, seed=SEED, splits=splits)
    f.run(2)
    names: list[str] = []
    trace = []
    reqs = _requests(n)
    for ev, _ in reqs:
        names.append(f.submit(dict(ev)).name)
        s = f.step()
        for st, ops in zip(f.states, f.ops, strict=True):
            for op in ops.ops.values():
                # Only a request still waiting for its hub is held, and only where the hub is.
                assert st.holds(np.array([op.cmd.hub]))[0] and op.result["pending"] == 1
        pending = sum(1 for name in names if not f.planner.ops[name].done)
        trace.append((pending, _held(f), len(s.ops)))
    for s in f.run(round(DEADLINE_DAYS * HALF_HOURS_PER_DAY) + LAG + 2):
        trace.append((0, _held(f), len(s.ops)))
    return f, names, trace


@pytest.mark.parametrize("n", [7, 42])
def test_finished_service_requests_leave_nothing_per_tick_whatever_their_number(n):
    f, names, trace = _run_requests(n, splits=2)
    # Held ops never exceed the requests still waiting for their hub (the unreachable ones, until
    # their deadline), and a tick reports only those and the one just sent, however many were
    # sent before.
    before = 0
    for pending, held, entries in trace:
        assert sum(held) <= pending and entries <= before + 1
        before = pending
    assert max(sum(h) for _, h, _ in trace) <= 1 + round(DEADLINE_DAYS * HALF_HOURS_PER_DAY) // len(KINDS)
    # Settled: nothing held on any shard, nothing in the tick's report, nothing left to observe.
    assert trace[-1] == (0, [0, 0], 0)
    assert f.planner.live == {}
    # The fleet half still shows each request's final state and counters.
    for name, (ev, final) in zip(names, _requests(n), strict=True):
        op = f.planner.ops[name]
        assert op.state == final, (name, ev, op.counters)
        assert op.done and op.counters["pending"] == 0
        assert op.counters["applied"] + op.counters["failed"] == 1
        assert op.counters["applied"] == (final == "DONE")
        if final == "FAILED":
            # The two kinds that fail, each for its one reason (KINDS).
            why = ("the premises is not on prepayment" if ev["srv"] == "2.2"
                   else "the hub was not reachable before the deadline")
            assert op.reason == why, (name, ev, op.reason)
    # The requests changed what they should: every applied 7.2 cut the supply.
    for ev, final in _requests(n):
        if ev["srv"] == "7.2" and final == "DONE":
            st = next(st for st in f.states if st.holds(np.array([ev["hub"]]))[0])
            assert st.cols["status"][st.local(np.array([ev["hub"]]))[0]] & Status.SUPPLY_OFF


def test_service_requests_give_identical_results_for_one_and_several_splits():
    runs = []
    for splits in (1, 2, 7):
        f, names, _ = _run_requests(21, splits=splits)
        runs.append((f.state_hash(), {n: (f.planner.ops[n].state, f.planner.ops[n].counters,
                                          f.planner.ops[n].history) for n in names}))
    assert runs[0] == runs[1] == runs[2]


def test_a_change_of_supplier_lives_only_on_its_hubs_shard_until_settled():
    f = quiet_fleet(hubs=HUBS, seed=SEED, splits=2)
    hub = _hub_pools()["credit"][-1]  # in the second half of the fleet
    holder = 1
    assert f.states[holder].holds(np.array([hub]))[0]
    op = f.submit({"type": "supplier_switch", "hub": hub, "to_supplier": "Octopus Energy"})
    s = f.step()
    # Reachable: switched and its credential swap done in the start tick, then dropped everywhere.
    assert _held(f) == [0, 0] and s.ops[op.name]["switches"] == 1
    f.run(LAG + 1)
    assert op.state == "DONE" and op.counters["switched_smart"] == 1 and op.counters["pending"] == 0
    assert f.planner.live == {}


def test_an_image_for_one_hub_lives_only_on_its_shard_until_activated():
    f = quiet_fleet(hubs=HUBS, seed=SEED, splits=2)
    esme = models_of(DeviceType.ESME)
    # A credit premises in the first half of the fleet whose meter takes a SMETS2 version (99.0.0).
    hub = next(h for h in _hub_pools()["credit"] if esme[int(f.states[0].cols["esme_model"][h]) - 1].smets == "SMETS2")
    assert f.states[0].holds(np.array([hub]))[0]
    model = esme[int(f.states[0].cols["esme_model"][hub]) - 1]
    op = f.submit({"type": "firmware_rollout", "device": "ESME", "manufacturer": model.manufacturer,
                   "model": model.model, "target_version": "99.0.0", "hubs": [hub], "waves": [1.0],
                   "hold_activation": True, "failure_prob": 0.0, "brick_prob": 0.0})
    f.run(HALF_HOURS_PER_DAY)
    # Distributed, waiting for the signed activation: held by its hub's shard only.
    assert _held(f) == [1, 0] and op.counters["activating"] == 1 and not op.done
    f.submit({"type": "operation_control", "operation": op.name, "action": "activate"})
    f.run(4 * LAG)
    assert op.state == "DONE" and op.counters["activated"] == 1
    assert _held(f) == [0, 0] and f.planner.live == {}


def test_an_operation_cancelled_before_its_start_never_runs_and_leaves_nothing():
    f = quiet_fleet(hubs=HUBS, seed=SEED, splits=2)
    plain = quiet_fleet(hubs=HUBS, seed=SEED, splits=2)
    rollout = f.submit({"type": "firmware_rollout", "device": "ESME", "manufacturer": "EDMI", "model": "ES-10A",
                        "target_version": "5.9.0", "waves": [1.0], "at": "6h"})
    f.submit({"type": "operation_control", "operation": rollout.name, "action": "cancel"})
    f.run(12 + 2 * LAG)
    plain.run(12 + 2 * LAG)
    assert rollout.state == "CANCELLED" and rollout.reason == "cancelled before it started"
    # Its start was never sent: nothing targeted or sent, nothing held, nothing changed.
    assert rollout.counters.get("targeted", 0) == rollout.counters.get("activated", 0) == 0
    assert _held(f) == [0, 0] and f.planner.live == {}
    assert f.state_hash() == plain.state_hash()
