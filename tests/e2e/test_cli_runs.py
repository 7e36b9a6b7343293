"""`twin history`, `twin fork` and `twin compare` on a run directory, as a user runs them: each a
`twin` process of its own (the engine-level claims are in tests/integration/test_timeline.py and
test_branches.py; these are their command-line halves, moved here as whole-process tests)."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_branches import parent_run
from tests.integration.test_timeline import CFG as TIMELINE_CFG
from tests.integration.test_timeline import ROLLOUT as TIMELINE_ROLLOUT
from tests.support import run_dir, twin
from twin.engine.history import query
from twin.engine.supervisor import FleetSupervisor

pytestmark = pytest.mark.usefixtures("ray_session")


def test_history_from_the_command_line_after_a_resume():
    # The run of test_timeline's history test: 30 ticks, stopped, resumed from checkpoint 23 to 40.
    d = run_dir("history-cli")
    sup = FleetSupervisor(TIMELINE_CFG, shards=2, run_dir=d, checkpoint_every=12)
    try:
        sup.submit(dict(TIMELINE_ROLLOUT))
        sup.step(30)
    finally:
        sup.shutdown()
    again = FleetSupervisor(TIMELINE_CFG, shards=2, run_dir=d, checkpoint_every=12, resume=True)
    try:
        assert again.resumed_from == 23
        again.run_until(40)
    finally:
        again.shutdown()
    _, counts = query(d, "SELECT count(*), count(DISTINCT tick), min(tick), max(tick) FROM ticks")
    assert counts == [(40, 40, 0, 39)]

    p = twin("history", str(d), "--sql", "SELECT count(*) AS n, max(tick) AS last FROM ticks", "--format", "json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == [{"n": 40, "last": 39}]
    p = twin("history", str(d), "--limit", "3")
    assert p.returncode == 0 and "39" in p.stdout and "dark_hubs" in p.stdout
    p = twin("history", str(d), "--sql", "SELECT nope FROM ticks")
    assert p.returncode == 2 and "--sql:" in p.stderr and "Traceback" not in p.stderr
    p = twin("history", str(d / "checkpoints"))
    assert p.returncode == 2 and "not a run directory" in p.stderr


@pytest.fixture(scope="module")
def parent():
    """test_branches' parent run: a rollout from the start and an outage accepted at tick 30 for 40."""
    return parent_run("parent-cli")[0]


def test_fork_and_compare_from_the_command_line(parent, tmp_path):
    d = parent
    what_if = tmp_path / "what-if.yaml"
    what_if.write_text("description: the outage a day later\ndrop: [power-outage-2]\nevents:\n"
                       "  - {type: power_outage, area: Yorkshire, fraction: 0.5, duration_min: 90, at: 6h}\n")
    p = twin("fork", str(d), "--at", "34", "--until", "50", "--scenario", str(what_if), "--name", "later")
    assert p.returncode == 0, p.stderr
    b = d / "branches" / "later"
    assert "twin compare" in p.stdout
    p = twin("compare", str(d), str(b))
    assert p.returncode == 0, p.stderr
    assert "first difference at tick 40" in p.stdout and "max dark hubs" in p.stdout
    assert (b / "compare-" f"{d.name}" / "comparison.html").exists()
    p = twin("fork", str(d), "--at", "34", "--until", "20")
    assert p.returncode == 2 and "--until" in p.stderr
