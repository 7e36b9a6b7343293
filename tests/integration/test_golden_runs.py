"""Golden runs: a fixed set of runs whose state hashes and summaries were recorded before the
restructuring of issue 12 and must not change while the code is moved around.

Several seeds and splits in the in-process model, every shipped scenario (cut to 20,000 hubs, its
events at their recorded times), and the engine at one and three shards, with an operator event
submitted as the API would and a resume from a checkpoint. A change that alters the model's
behaviour on purpose re-records the file (and says so in its commit):

    TWIN_RECORD_GOLDEN=1 pytest tests/integration/test_golden_runs.py
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from twin.model.config import FleetConfig
from twin.model.fleet import LocalFleet
from twin.model.summary import TickSummary
from twin.studies.scenario import load_scenario

from .conftest import run_dir

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden_runs.json"
RECORD = os.environ.get("TWIN_RECORD_GOLDEN") == "1"
HUBS = 20_000
TICKS = 96  # two days
SCENARIOS = sorted(p.name for p in (ROOT / "scenarios").glob("*.yaml"))


def summaries_digest(summaries: list[TickSummary]) -> str:
    h = hashlib.sha256()
    for s in summaries:
        h.update(json.dumps(s.to_dict(), sort_keys=True, default=str).encode())
    return h.hexdigest()


def check(key: str, value: dict[str, str]) -> None:
    """Compare with the recorded value (or record it, under TWIN_RECORD_GOLDEN=1)."""
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if RECORD:
        golden[key] = value
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(dict(sorted(golden.items())), indent=1) + "\n")
        return
    assert key in golden, f"no golden value for {key}: record with TWIN_RECORD_GOLDEN=1"
    assert value == golden[key]


@pytest.mark.parametrize("seed", [1, 7, 42])
@pytest.mark.parametrize("splits", [1, 3])
def test_model_runs_match_the_recorded_hashes(seed, splits):
    fleet = LocalFleet(FleetConfig(hubs=HUBS, seed=seed, block_size=1024), splits=splits)
    summaries = fleet.run(TICKS)
    # One key per seed: every split must give the same recorded value.
    check(f"model/seed={seed}", {"state": fleet.state_hash(), "summaries": summaries_digest(summaries)})


@pytest.mark.parametrize("name", SCENARIOS)
def test_shipped_scenarios_match_the_recorded_hashes(name):
    sc = load_scenario(ROOT / "scenarios" / name, hubs=HUBS, days=2)
    fleet = LocalFleet(sc.config, splits=2)
    for cmd in sc.commands:
        fleet.accept(cmd)
    summaries = fleet.run(sc.ticks)
    ops = sorted((op.name, getattr(op.state, "name", op.state)) for op in fleet.planner.ops.values())
    check(f"scenario/{name}", {"state": fleet.state_hash(), "summaries": summaries_digest(summaries),
                               "operations": json.dumps(ops)})


EVENTS = [
    {"at": "3h", "type": "power_outage", "area": "Southern England", "fraction": 0.3, "duration_min": 90},
    {"at": "6h", "type": "firmware_rollout", "device": "ESME", "manufacturer": "EDMI", "model": "ES-10A",
     "target_version": "5.3.0", "waves": [0.02, 0.2, 1.0], "min_wave_sample": 20},
]


@pytest.mark.parametrize("shards", [1, 3])
def test_engine_runs_match_the_recorded_hashes(ray_session, shards):
    from twin.engine.supervisor import FleetSupervisor

    config = FleetConfig(hubs=HUBS, seed=5, block_size=1024)
    d = run_dir(f"golden{shards}")
    sup = FleetSupervisor(config, run_dir=d, shards=shards, checkpoint_every=24)
    try:
        for e in EVENTS:
            sup.submit(e)
        summaries = sup.step(60)
    finally:
        sup.shutdown()
    # Resume from the newest checkpoint (tick 47) and run on: the same end state as straight through.
    sup = FleetSupervisor(config, run_dir=d, shards=shards, checkpoint_every=24, resume=True)
    try:
        assert sup.tick == 48
        summaries = summaries[:48] + sup.step(TICKS - 48)
        ops = sorted((v["name"], v["metadata"]["state"]) for v in sup.operations())
        check("engine", {"state": sup.state_hash(), "summaries": summaries_digest(summaries),
                         "operations": json.dumps(ops)})
    finally:
        sup.shutdown()
