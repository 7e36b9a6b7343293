"""Every operation kind's progress moves while it runs (issue 14's screenshots: a running power
outage at 0% until it ended) and records a history a run report plots (a switch-off had none),
with the in-process model."""

from __future__ import annotations

from pathlib import Path

import pytest

from twin.engine.operations import operation_view
from twin.model.catalog import Csp, WanTech
from twin.model.config import FleetConfig
from twin.model.fleet import LocalFleet
from twin.model.ops.progress import (
    CredentialSwapProgress,
    OperationState,
    SupplierSwitchProgress,
)
from twin.model.params import HALF_HOURS_PER_DAY
from twin.studies.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
CFG = FleetConfig(hubs=4000, seed=5, block_size=512)
SCENARIOS = sorted(p.name for p in (ROOT / "scenarios").glob("*.yaml"))


def _percent(fleet: LocalFleet, op) -> float:
    return operation_view(op, fleet.config)["metadata"]["percent_done"]


@pytest.mark.parametrize("event", [
    {"type": "power_outage", "area": "London", "fraction": 0.5, "duration_min": 120, "restore_spread_min": 60},
    {"type": "base_station_failure", "cells": [12, 13, 14], "duration_min": 120},
    {"type": "csp_incident", "region": "Central", "duration_min": 120},
])
def test_a_timed_operation_says_the_share_of_its_ticks_run(event):
    f = LocalFleet(CFG)
    f.run(2)
    op = f.submit(event)  # starts at tick 2, 120 minutes: 4 ticks, DONE at its end tick 2 + 4 + 1
    assert op.progress().end_tick == 7
    f.run(3)  # ticks 2, 3 and 4 observed: 2 of its 5 ticks behind it
    assert op.state == OperationState.RUNNING and _percent(f, op) == pytest.approx(40.0)
    f.run(1)
    assert _percent(f, op) == pytest.approx(60.0)
    f.run(3)
    assert op.state == OperationState.DONE and _percent(f, op) == 100.0
    # The clock is the planner's, not a count: the report's figures leave it out.
    assert not {"ticks_run", "ticks_total"} & set(op.progress().figures())


def test_a_cancelled_outage_keeps_the_share_it_had_reached():
    f = LocalFleet(CFG)
    op = f.submit({"type": "power_outage", "area": "London", "fraction": 0.5, "duration_min": 120})
    f.run(3)  # ticks 0..2: 2 of 5
    f.submit({"type": "operation_control", "operation": op.name, "action": "cancel"})
    f.run(6)  # the shards keep reporting until the cancel reaches them; the clock stands
    assert op.state == OperationState.CANCELLED
    assert op.progress().fraction(OperationState.CANCELLED) == pytest.approx(0.4)


def test_a_supplier_switch_is_half_done_while_its_credential_swap_waits():
    waiting = SupplierSwitchProgress(switches=1, swaps=CredentialSwapProgress(pending=1))
    assert waiting.fraction(OperationState.RUNNING) == 0.5
    assert SupplierSwitchProgress().fraction(OperationState.RUNNING) == 0.0
    settled = SupplierSwitchProgress(switches=1, swaps=CredentialSwapProgress(dumb=1))
    assert settled.fraction(OperationState.RUNNING) == 1.0


def test_a_switch_off_records_the_hubs_it_will_cut_off_and_those_it_cut_off():
    f = LocalFleet(CFG)
    f.submit({"type": "swap_programme", "region": "South", "installs_per_day": 100_000, "prioritise": "3G"})
    op = f.submit({"type": "network_switch_off", "region": "South", "technology": "3G", "at": 6})
    summaries = f.run(10)
    on = [int(s.hubs_by_wan[Csp.SOUTH, WanTech.G3]) for s in summaries]
    assert on[0] > 0 and on[6] < on[0]  # the swaps move hubs off 3G before it goes
    assert op.state == OperationState.DONE and _percent(f, op) == 100.0
    history = dict(op.history)
    assert history[0] == {"hubs_on_network": on[0]}  # from its acceptance: those it will cut off
    assert history[6] == {"hubs_on_network": on[6], "hubs_cut_off": on[6]}
    assert max(history) == 6  # done at its tick, then observed no more (and retired in time)
    assert op.progress().figures() == {"off_tick": 6, "hubs_on_network": on[6], "hubs_cut_off": on[6]}
    assert op.name not in f.planner.live


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_operation_of_a_shipped_scenario_has_a_series_with_a_figure_that_is_not_zero(name):
    """What twin.studies.scenario.build_report plots per operation: (tick, progress figures) of
    its history. Run long enough for its last event to start and run a day."""
    sc = load_scenario(ROOT / "scenarios" / name, hubs=20_000)
    last = max(c.at for c in sc.commands)
    sc = load_scenario(ROOT / "scenarios" / name, hubs=20_000, days=last // HALF_HOURS_PER_DAY + 1)
    f = LocalFleet(sc.config)
    for cmd in sc.commands:
        f.accept(cmd)
    f.run(sc.ticks)
    assert f.planner.ops
    for op in f.planner.ops.values():
        series = [(t, op.progress(c).figures()) for t, c in op.history]
        assert series, op.name
        assert any(v for _, figures in series for v in figures.values()), op.name
