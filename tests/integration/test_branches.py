"""What-if branches: a fork with no changes reproduces its parent exactly; a fork with an event
added (or a parent's command left out) is identical to the parent before the fork tick and differs
from the tick the change takes effect; two runs compare side by side (the report; the `twin fork` and
`twin compare` commands are tested as processes in tests/e2e/test_cli_runs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import run_dir
from twin.engine.branches import fork, list_branches, plan_fork
from twin.engine.compare import compare_runs
from twin.engine.history import query
from twin.engine.supervisor import FleetSupervisor
from twin.model.config import FleetConfig, TwinInputError
from twin.reporting.compare import write_comparison

pytestmark = pytest.mark.usefixtures("ray_session")

CFG = FleetConfig(hubs=40_000, seed=37, block_size=1024)
ROLLOUT = {"type": "firmware_rollout", "device": "ESME", "manufacturer": "Kaifa", "model": "MA120",
           "target_version": "1.3.0", "waves": [0.2, 1.0], "concurrency_per_csp": 200}
OUTAGE = {"type": "power_outage", "area": "Yorkshire", "fraction": 0.5, "duration_min": 90}
END = 60


def parent_run(name: str) -> tuple[Path, str]:
    """A run with a rollout from the start and an outage accepted at tick 30 for tick 40, to END:
    its run directory (named `name`) and final state hash."""
    d = run_dir(name)
    sup = FleetSupervisor(CFG, shards=2, run_dir=d, checkpoint_every=12)
    try:
        sup.submit(dict(ROLLOUT))
        sup.run_until(30)
        sup.submit(OUTAGE | {"at": 40})
        sup.run_until(END)
        h = sup.state_hash()
    finally:
        sup.shutdown()
    return d, h


@pytest.fixture(scope="module")
def parent():
    """The parent run of the branches below (`parent_run`)."""
    return parent_run("parent")


def _rows(d, lo=0, hi=10**9):
    return query(d, "SELECT * EXCLUDE (branch) FROM ticks WHERE tick BETWEEN ? AND ? ORDER BY tick", [lo, hi])[1]


def _metrics(d, lo=0, hi=10**9):
    return query(d, "SELECT * EXCLUDE (branch) FROM metrics WHERE tick BETWEEN ? AND ? "
                           "ORDER BY tick, metric, key", [lo, hi])[1]


def test_a_fork_with_no_changes_reproduces_its_parent(parent):
    d, parent_hash = parent
    out = fork(d, at=30, until=END, name="same")
    assert out["base_checkpoint"] == 23 and out["state_hash"] == parent_hash
    b = d / "branches" / "same"
    assert _rows(b) == _rows(d) and _metrics(b) == _metrics(d)
    cmp = compare_runs(d, b)
    assert cmp["divergence_tick"] is None and cmp["fork_tick"] == 30
    assert all(r["difference"] == 0 for r in cmp["aggregates"])
    # Listed among the parent's branches (other tests fork the same parent, in any order).
    assert "same" in [x["name"] for x in list_branches(d)]


def test_a_fork_diverges_only_after_its_fork_tick(parent):
    d, parent_hash = parent
    extra = OUTAGE | {"area": "North Scotland", "at": "2h"}  # two hours after the fork: tick 34
    out = fork(d, at=30, until=END, events=[extra], name="storm")
    assert out["state_hash"] != parent_hash
    b = d / "branches" / "storm"
    assert _rows(b, hi=33) == _rows(d, hi=33) and _metrics(b, hi=33) == _metrics(d, hi=33)
    cmp = compare_runs(d, b)
    assert cmp["divergence_tick"] == 34 and "alerts" in cmp["changed_at_divergence"]
    alerts = next(r for r in cmp["aggregates"] if r["figure"] == "alerts")
    assert alerts["difference"] > 0
    # The branch's journal: the parent's commands, then its own, accepted at the fork point.
    recs = [json.loads(x) for x in (b / "journal.jsonl").read_text().splitlines()]
    assert [r["command"]["type"] for r in recs] == ["firmware_rollout", "power_outage", "power_outage"]
    assert recs[-1]["after_tick"] == 29 and recs[-1]["command"]["at"] == 34
    _, h = write_comparison(cmp, b / "cmp")
    page = h.read_text()
    assert "first differ at tick 34" in page and "plotly" in page and "forked at tick 30" in page


def test_leaving_out_a_parent_command_changes_only_what_follows_it(parent):
    d, parent_hash = parent
    ops = [json.loads(x) for x in (d / "journal.jsonl").read_text().splitlines()]
    outage = f"power-outage-{ops[1]['op_seq']}"
    out = fork(d, at=35, until=END, drop=[f"operations/{outage}"], name="calm")
    # Checkpoint 23 was written before the outage was accepted (tick 30); 35 is after the fork.
    assert out["base_checkpoint"] == 23 and out["state_hash"] != parent_hash
    cmp = compare_runs(d, d / "branches" / "calm")
    assert cmp["divergence_tick"] == 40
    with pytest.raises(TwinInputError, match="took effect at tick 0"):
        plan_fork(d, at=35, drop=["firmware-rollout-1"])
    with pytest.raises(TwinInputError, match="neither an operation"):
        plan_fork(d, at=35, drop=["nothing-9"])
    with pytest.raises(TwinInputError, match="fork_tick"):
        plan_fork(d, at=END + 5)
    with pytest.raises(TwinInputError, match=r"events\[0\]\.area"):
        plan_fork(d, at=35, events=[OUTAGE | {"area": "Atlantis"}])

