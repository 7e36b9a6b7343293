"""`twin run --resume RUN_DIR` (issue 15): a scenario run whose driver died (SIGKILL of its whole
process group, as when the Ray head it runs on dies) continues from its run directory alone to the
same final state and the same report as a run that never stopped; and a directory it cannot
continue is refused with exit 2 and one line saying why, before Ray starts."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import ENV, TWIN, scenario_state_hash, twin
from twin.cli import main

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "storm-outage.yaml"  # three events: an outage, a base station, a CSP incident
HUBS, DAYS, EVERY = 20_000, 4.0, 12
TICKS = round(DAYS * 48)
# Small checkpoints often enough that one is complete long before the run ends.
FLEET = ["--hubs", str(HUBS), "--days", f"{DAYS:g}", "--shards", "2", "--checkpoint-every", str(EVERY)]
TIMING = {"wall_s", "build_s", "hub_ticks_per_s"}  # a resumed run's differ, as any two runs' do
RESUMED = re.compile(r"resumed at .+ \(tick (\d+)\) from .+; (\d+) ticks to go")


def comparable(run_dir: Path) -> dict[str, Any]:
    """What of a run's report.json two runs of one scenario must agree on: all but timing."""
    r = json.loads((run_dir / "report.json").read_text())
    return {"summary": {k: v for k, v in r["summary"].items() if k not in TIMING}, "series": r["series"],
            "operations": r["operations"], "scenario": r["scenario"], "config": r["config"]}


@pytest.fixture(scope="module")
def fault_free(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("resume") / "storm"
    p = twin("run", str(SCENARIO), *FLEET, "--run-dir", str(d))
    assert p.returncode == 0, p.stderr[-3000:]
    return d


def test_a_run_killed_with_its_process_group_resumes_to_the_fault_free_state_and_report(fault_free, tmp_path):
    d = tmp_path / "storm"  # the same name as the fault-free run's: the report names its run directory
    log = tmp_path / "killed.err"
    with open(log, "wb") as err:
        proc = subprocess.Popen([*TWIN, "run", str(SCENARIO), *FLEET, "--run-dir", str(d)], stdout=subprocess.DEVNULL,
                                stderr=err, env=ENV, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while proc.poll() is None and time.monotonic() < deadline:
                if any((d / "checkpoints").glob("tick-*/COMPLETE")):
                    break
                time.sleep(0.01)
        finally:
            # The driver and every process of its group (the local Ray it started), at once.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]
    assert not (d / "report.json").exists()

    p = twin("run", "--resume", str(d), "--json", str(tmp_path / "summary.json"))
    assert p.returncode == 0, p.stderr[-3000:]
    m = RESUMED.search(p.stderr)
    assert m, p.stderr[-3000:]
    tick, to_go = int(m[1]), int(m[2])
    # From a checkpoint, not the start, and with ticks still to run: the kill came mid-run.
    assert tick % EVERY == 0 and 0 < tick < TICKS and tick + to_go == TICKS
    report = json.loads((d / "report.json").read_text())
    assert report["summary"]["ticks"] == TICKS
    assert report["summary"]["state_hash"] == scenario_state_hash(SCENARIO, hubs=HUBS, days=DAYS)
    assert comparable(d) == comparable(fault_free)
    assert json.loads((tmp_path / "summary.json").read_text())["state_hash"] == report["summary"]["state_hash"]


def test_a_run_stopped_after_its_last_checkpoint_writes_its_report_from_the_run_directory(fault_free, tmp_path):
    # Killed after its last tick's checkpoint but before its report: nothing is left to run, so
    # every tick's figures come back from the run directory.
    d = tmp_path / "storm"
    shutil.copytree(fault_free, d)
    (d / "report.json").unlink()
    (d / "report.html").unlink()
    p = twin("run", "--resume", str(d))
    assert p.returncode == 0, p.stderr[-3000:]
    m = RESUMED.search(p.stderr)
    assert m and (int(m[1]), int(m[2])) == (TICKS, 0), p.stderr[-3000:]
    assert comparable(d) == comparable(fault_free)
    assert (d / "report.html").exists()


@pytest.fixture
def nothing_starts(monkeypatch):
    import twin.engine.runtime

    def never(*a, **k):
        raise AssertionError("a refused resume starts nothing")

    monkeypatch.setattr(twin.engine.runtime, "start_ray", never)


def refusal(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    assert out.err.startswith("twin run: error: ")
    return out.err


def test_a_finished_run_is_refused_naming_its_report(fault_free, capsys, nothing_starts):
    err = refusal(["run", "--resume", str(fault_free)], capsys)
    assert f"the run in {fault_free} already finished: its report, to its last tick ({TICKS - 1}), is " \
           f"{fault_free / 'report.json'}" in " ".join(err.split())


def test_a_directory_that_is_not_a_run_is_refused(tmp_path, capsys, nothing_starts):
    err = refusal(["run", "--resume", str(tmp_path)], capsys)
    assert f"--resume: {tmp_path} is not a twin run directory (no readable manifest.json)" in " ".join(err.split())


def test_a_run_without_the_scenario_record_is_refused_as_an_older_twins(fault_free, tmp_path, capsys, nothing_starts):
    d = tmp_path / "old"
    shutil.copytree(fault_free, d)
    (d / "report.json").unlink()
    (d / "scenario.json").unlink()
    err = " ".join(refusal(["run", "--resume", str(d)], capsys).split())
    assert f"--resume: {d} holds no scenario record (scenario.json): its run was started by an older twin" in err


@pytest.mark.parametrize("extra", [["--hubs", "1000"], ["--seed", "2"], ["--days", "1"], ["--shards", "1"],
                                   ["--run-dir", "elsewhere"], ["--checkpoint-every", "4"], ["--regions", "North"],
                                   ["--start", "2026-01-01T00:00Z"]])
def test_fleet_options_are_refused_with_resume_naming_the_option(extra, tmp_path, capsys, nothing_starts):
    err = refusal(["run", "--resume", str(tmp_path), *extra], capsys)
    assert f"argument {extra[0]}: not allowed with argument --resume" in err


def test_a_scenario_file_is_refused_with_resume(tmp_path, capsys, nothing_starts):
    err = refusal(["run", str(SCENARIO), "--resume", str(tmp_path)], capsys)
    assert "a scenario file: not allowed with argument --resume" in err
