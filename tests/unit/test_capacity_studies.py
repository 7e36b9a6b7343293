"""The shipped capacity scenarios show their effect in the tick summaries' capacity figures, at
20,000 hubs in process, against the same scenario without the event they are about; and the
study helpers (twin.studies.capacity, sweep files) compute what they say."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.model.capacity import LINK_NAMES
from twin.model.catalog import MessageType, TrafficClass
from twin.model.config import TwinInputError
from twin.model.fleet import LocalFleet
from twin.model.ops.progress import OperationState
from twin.studies.capacity import CSPS, breaking_points, capacity_figures
from twin.studies.scenario import load_scenario
from twin.studies.sweep import baseline_doc, load_sweep

ROOT = Path(__file__).resolve().parents[2]
HUBS = 20_000


def run(doc: dict, tmp_path: Path, name: str) -> tuple[LocalFleet, list]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    sc = load_scenario(path, hubs=HUBS)
    f = LocalFleet(sc.config, splits=2)
    for cmd in sc.commands:
        f.accept(cmd)
    return f, f.run(sc.ticks)


def shipped(name: str) -> dict:
    return yaml.safe_load((ROOT / "scenarios" / name).read_text())


def test_the_mhhs_scenario_loads_every_link_more_than_the_same_run_without_it(tmp_path):
    doc = shipped("mhhs-migration.yaml")
    f, with_mhhs = run(doc, tmp_path, "with")
    _, without = run(baseline_doc(doc, "events[0].share"), tmp_path, "without")
    op = next(iter(f.planner.ops.values()))
    p = op.progress()
    assert op.state == OperationState.DONE and p.waves_done == 9 and p.migrated == p.targeted > 0
    assert sum(int(s.messages[:, MessageType.SETTLEMENT_READ].sum()) for s in with_mhhs) > p.migrated  # days of reads
    assert sum(int(s.messages[:, MessageType.SETTLEMENT_READ].sum()) for s in without) == 0
    # The same traffic besides, plus the settlement reads: more work on every busy link, and a
    # higher peak on the busiest one.
    u_with = np.array([s.capacity.link_utilisation for s in with_mhhs])
    u_without = np.array([s.capacity.link_utilisation for s in without])
    busy = [LINK_NAMES.index(n) for n in ("NORTH/LRR", "CENTRAL/G2", "CENTRAL/G3", "SOUTH/G2", "SOUTH/G3")]
    assert (u_with[:, busy].sum(axis=0) > u_without[:, busy].sum(axis=0)).all()
    assert u_with.max() > u_without.max()
    figs = capacity_figures(with_mhhs)
    assert max(v["peak_utilisation"] for v in figs["links"].values()) == pytest.approx(u_with.max(), abs=1e-4)


def test_the_gb_storm_delays_alerts_and_on_demand_reads(tmp_path):
    doc = shipped("storm-gb-wide.yaml")
    f, storm = run(doc, tmp_path, "storm")
    calm = copy.deepcopy(doc)
    calm["events"] = []
    _, quiet = run(calm, tmp_path, "calm")
    s, q = capacity_figures(storm), capacity_figures(quiet)
    assert sum(q["alerts"]["delayed"].values()) == 0
    assert all(s["alerts"]["delayed"][c] > 0 for c in CSPS)  # every CSP's alerts wait
    assert sum(s["alerts"]["failed"].values()) > 0  # some past the 300 s retry window
    for c in CSPS:  # reads wait behind the alerts in every CSP's worst half-hour
        assert s["service"][c]["worst_tick_p99_s"] > q["service"][c]["worst_tick_p99_s"]
    reads = next(op for op in f.planner.ops.values() if op.cmd.kind == "on_demand_reads").progress()
    # Reads to premises still off supply fail (their hubs are unpowered); the rest are answered.
    assert reads.answered > 0 and reads.failed > 0 and reads.answered + reads.failed == reads.planned


def test_the_supplier_failures_burst_security_traffic(tmp_path):
    doc = shipped("supplier-failure-switching-backlog.yaml")
    f, burst = run(doc, tmp_path, "burst")
    _, before = run({**doc, "events": doc["events"][:1]}, tmp_path, "churn-only")  # normal churn only
    sec = int(TrafficClass.SECURITY)
    msgs = sum(int(s.capacity.messages[:, sec].sum()) for s in burst)
    assert msgs > 2 * sum(int(s.capacity.messages[:, sec].sum()) for s in before)
    worst = max(float(s.capacity.latency_p99[:, sec].max()) for s in burst)
    assert worst > max(float(s.capacity.latency_p99[:, sec].max()) for s in before)
    assert max(s.capacity.link_utilisation.max() for s in burst) > max(s.capacity.link_utilisation.max()
                                                                       for s in before)
    solr = [op.progress() for op in f.planner.ops.values() if op.cmd.kind == "supplier_failure"]
    assert len(solr) == 2 and all(p.moved > 0 for p in solr)


def test_a_breaking_point_is_interpolated_where_the_share_within_target_crosses():
    shares = [{"North": 1.0, "Central": 0.995, "South": 0.98},
              {"North": 1.0, "Central": 0.995, "South": 0.97},
              {"North": 0.999, "Central": 0.985, "South": 0.9}]
    # Values given out of order are sorted with their shares: 0.0 -> shares[1], 0.5 -> shares[0].
    got = breaking_points([0.5, 0.0, 1.0], [shares[0], shares[1], shares[2]], quantile=0.99)
    assert got["North"] == {"value": None, "status": "within", "bracket": None}
    assert got["Central"]["status"] == "crossed" and got["Central"]["bracket"] == [0.5, 1.0]
    assert got["Central"]["value"] == pytest.approx(0.75)  # 0.995 -> 0.985 crosses 0.99 halfway
    assert got["South"] == {"value": 0.0, "status": "below_range", "bracket": None}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.9, max_value=1.0), min_size=2, max_size=8, unique=True))
def test_a_crossing_lies_in_its_bracket_where_the_interpolated_share_is_the_quantile(ys):
    ys = sorted(ys, reverse=True)  # a share falling as the swept value grows
    xs = [float(i) for i in range(len(ys))]
    e = breaking_points(xs, [{c: y for c in CSPS} for y in ys], quantile=0.95)["North"]
    if ys[0] < 0.95:
        assert e["status"] == "below_range"
    elif ys[-1] >= 0.95:
        assert e["status"] == "within"
    else:
        lo, hi = e["bracket"]
        assert hi == lo + 1 and ys[int(lo)] >= 0.95 > ys[int(hi)]
        assert lo <= e["value"] <= hi
        y = ys[int(lo)] + (ys[int(hi)] - ys[int(lo)]) * (e["value"] - lo)
        assert y == pytest.approx(0.95, abs=1e-6)


def test_the_shipped_sweep_file_reads():
    spec = load_sweep(ROOT / "sweeps" / "mhhs-breaking-point.yaml")
    assert spec.scenario == (ROOT / "scenarios" / "mhhs-migration.yaml").resolve()
    assert spec.param == "events[0].share" and spec.values == [0.125, 0.25, 0.5, 0.75, 1.0]
    assert (spec.klass, spec.quantile, spec.over) == (TrafficClass.ON_DEMAND, 0.99, "half-hour")


@pytest.mark.parametrize(("change", "name"), [
    ({"values": [0.5]}, "values"), ({"param": None}, "param"), ({"scenario": 3}, "scenario"),
    ({"hubs": 0}, "hubs"), ({"seed": "x"}, "seed"), ({"breaking_point": {"class": "urgent"}}, "breaking_point.class"),
    ({"breaking_point": {"quantile": 1.5}}, "breaking_point.quantile"),
    ({"breaking_point": {"over": "week"}}, "breaking_point.over"), ({"sweep": 1}, "sweep"),
])
def test_a_bad_sweep_file_is_refused_naming_the_key(tmp_path, change, name):
    doc = yaml.safe_load((ROOT / "sweeps" / "mhhs-breaking-point.yaml").read_text())
    doc.update(change)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(TwinInputError) as e:
        load_sweep(path)
    assert e.value.field == name
