"""The `twin` command as a user runs it: real processes, real Ray, exit codes and messages."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from datetime import UTC, datetime
from multiprocessing import shared_memory
from pathlib import Path

import pytest

from tests.support import ENV, TWIN, twin
from twin.engine.shared_state import PREFIX, segments_of
from twin.model.config import FleetConfig
from twin.model.fleet import LocalFleet
from twin.reporting.capacity import capacity_summary


def unused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def up(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`twin up` on ports the system picks, with its home and run directory in `tmp_path`."""
    return subprocess.Popen([*TWIN, "up", "--grpc-port", "0", "--dash-port", "0", "--home", str(tmp_path / "home"),
                             "--run-dir", str(tmp_path / "run"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or ENV)


def status_lines(proc: subprocess.Popen[str], n: int, timeout_s: float = 120) -> list[str]:
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(lines) < n:
        line = proc.stdout.readline()
        if not line:
            break
        if "tick" in line:
            lines.append(line)
    assert len(lines) >= n, proc.stderr.read() if proc.poll() is not None else lines
    return lines


def stop(proc: subprocess.Popen[str]) -> str:
    """Ctrl-C, then the exit code must be 0; returns what it printed on stderr."""
    assert proc.stdout is not None and proc.stderr is not None
    try:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        return proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_run_writes_a_summary_whose_hash_matches_the_model(tmp_path):
    out = tmp_path / "summary.json"
    p = twin("run", "--hubs", "20000", "--days", "1", "--seed", "4", "--shards", "2", "--json", str(out),
             "--run-dir", str(tmp_path / "run"))
    assert p.returncode == 0, p.stderr
    r = json.loads(out.read_text())
    assert r["hubs"] == 20_000 and r["ticks"] == 48 and r["shards"] == 2
    local = LocalFleet(FleetConfig(hubs=20_000, seed=4))
    summaries = local.run(48)
    assert r["state_hash"] == local.state_hash()
    assert r["state_hash"] in p.stdout  # the table prints it too
    # The capacity figures are the model's, for 2 shards on Ray as for 1 in process, and printed.
    assert r["capacity"] == json.loads(json.dumps(capacity_summary(summaries, local.config.params.capacity)))
    assert "p99 on-demand latency (target 30 s)" in p.stdout and r["capacity"]["peak_link"] in p.stdout
    for figure in ("messages", "reachable_hubs", "dark_hubs", "hh_periods_lost", "bytes_per_hub",
                   "wall_s", "hub_ticks_per_s"):
        assert figure in r
    # The 2022 calibration: about 48 messages and 76 device alerts per meter per month.
    assert 40 < r["messages_per_reachable_meter_month"] < 56
    assert 64 < r["device_alerts_per_reachable_meter_month"] < 88
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--hubs", "-5"], "--hubs"),
        (["run", "--hubs", "0"], "at least 1"),
        (["run", "--hubs", "abc"], "whole number"),
        (["run", "--hubs", "900B"], "--hubs"),
        (["run", "--hubs", "900M"], "GiB"),
        (["run", "--hubs", "1000", "--days", "0"], "--days"),
        (["run", "--hubs", "1000", "--days", "-1"], "--days"),
        (["run", "--hubs", "1000", "--regions", "Atlantis"], "unknown region 'Atlantis'"),
        (["run", "--hubs", "1000", "--shards", "0"], "--shards"),
        (["run", "--hubs", "1000", "--start", "yesterday"], "--start"),
        (["run", "--hubs", "1000", "--start", "2026-06-01T00:00"], "--start: 2026-06-01T00:00:00 has no time zone"),
        (["up", "--hubs", "1000", "--speed", "-3"], "--speed"),
        (["up", "--hubs", "1000", "--api-processes", "0"], "--api-processes"),
        (["hub", "99999", "--hubs", "1000"], "not in this fleet"),
        (["hub", "00-DB-12-00-00-00-00-01", "--hubs", "1000"], "not in this fleet"),
        (["hub", "not-a-hub", "--hubs", "1000"], "EUI-64"),
        (["bench", "--sizes", "1M,zero"], "whole number"),
        # Checked before a cluster or Ray is contacted (the address is never reached).
        (["submit", "scenarios/storm-outage.yaml", "--address", "http://127.0.0.1:9", "--seed", "abc"], "--seed"),
        (["submit", "scenarios/storm-outage.yaml", "--address", "http://127.0.0.1:9", "--seed", "-3"], "--seed"),
        (["submit", "scenarios/storm-outage.yaml", "--address", "http://127.0.0.1:9", "--days", "-1"], "--days"),
        (["submit", "scenarios/storm-outage.yaml", "--address", "http://127.0.0.1:9", "--days", "soon"], "--days"),
        (["sweep", "scenarios/storm-outage.yaml", "--param", "incidents.outage_alert_backoff_s", "--values", "10,20",
          "--seed", "abc"], "--seed"),
        # A sweep runs each point for its scenario's days: there is no --days to give.
        (["sweep", "scenarios/storm-outage.yaml", "--param", "incidents.outage_alert_backoff_s", "--values", "10,20",
          "--days", "-1"], "--days"),
        (["users", "add", "someone", "--role", "IS", "--party", "one"], "--party"),
    ],
)
def test_bad_input_gets_a_clear_message_and_exit_code_2(args, needle):
    p = twin(*args, timeout=60)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert needle in p.stderr
    assert "Traceback" not in p.stderr + p.stdout


@pytest.mark.parametrize("processes", ["1", "2"])
def test_up_on_a_port_in_use_says_so_and_leaves_nothing_behind(tmp_path, processes):
    # Another twin's segment on the machine (its owner, this process, is alive): not ours to count
    # or to remove.
    foreign = shared_memory.SharedMemory(create=True, size=4096, name=f"{PREFIX}{os.getpid()}-other-{uuid.uuid4().hex[:12]}")
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            p = twin("up", "--hubs", "20000", "--no-dashboard", "--grpc-port", str(port), "--api-processes", processes,
                     "--home", str(tmp_path / "home"), "--run-dir", str(tmp_path / "run"), timeout=120)
        assert p.returncode == 2 and "--grpc-port" in p.stderr and "Traceback" not in p.stderr, p.stderr
        assert segments_of(tmp_path / "run") == []  # this run's segments removed
        assert os.path.exists(f"/dev/shm/{foreign.name}")  # the other twin's left alone
    finally:
        foreign.close()
        foreign.unlink()


def test_a_runs_segments_are_named_after_it(tmp_path):
    """What the test above relies on: while a run serves, its shards' segments carry its tag."""
    proc = up(tmp_path, "--hubs", "20000", "--speed", "max", "--status-every", "0.5", "--no-dashboard")
    try:
        status_lines(proc, 1)
        assert len(segments_of(tmp_path / "run")) >= 1
        assert segments_of(tmp_path / "elsewhere") == []
    finally:
        stop(proc)
    assert segments_of(tmp_path / "run") == []


def test_hub_describes_a_hub_by_index_and_by_device_id():
    p = twin("hub", "1234", "--hubs", "5000", "--seed", "9")
    assert p.returncode == 0, p.stderr
    rec = json.loads(p.stdout)
    assert rec["hub"] == 1234
    again = twin("hub", rec["device_id"], "--hubs", "5000", "--seed", "9")
    assert json.loads(again.stdout) == rec


def test_one_instant_with_two_offsets_is_one_run_printed_in_utc(tmp_path):
    # Issue 17 part 8: the start written at +01:00 and at +00:00 is one instant and one run.
    runs = []
    for i, start in enumerate(("2026-06-01T00:00+01:00", "2026-05-31T23:00+00:00")):
        out = tmp_path / f"s{i}.json"
        p = twin("run", "--hubs", "20000", "--days", "1", "--seed", "4", "--start", start, "--json", str(out),
                 "--run-dir", str(tmp_path / f"run{i}"))
        assert p.returncode == 0, p.stderr
        assert "from 2026-05-31 23:00 UTC" in p.stderr
        runs.append(json.loads(out.read_text()))
    assert runs[0]["state_hash"] == runs[1]["state_hash"]
    assert runs[0]["messages"] == runs[1]["messages"]
    local = LocalFleet(FleetConfig(hubs=20_000, seed=4, start=datetime(2026, 5, 31, 23, tzinfo=UTC)))
    local.run(48)
    assert runs[0]["state_hash"] == local.state_hash()


def test_up_runs_prints_status_and_stops_cleanly_on_ctrl_c(tmp_path):
    proc = up(tmp_path, "--hubs", "20000", "--speed", "max", "--status-every", "0.5",
              "--start", "2026-06-01T00:00+01:00")
    lines = status_lines(proc, 2)
    ticks = [int(line.split("tick")[1].split()[0]) for line in lines]
    assert ticks[1] > ticks[0]  # the clock is moving
    assert all(" busiest " in line and " on-demand p99 " in line for line in lines)  # the capacity figure
    err = stop(proc)
    assert "twin is running: simulated clock from 2026-05-31 23:00 UTC" in err and "Traceback" not in err
    # Nothing after "stopping…" but a clean exit: no finaliser noise (DuckDB's bindings report
    # objects the process left frozen as leaks, a screen of lines that reads like a crash).
    assert err.rstrip().endswith("stopping…") and "nanobind" not in err, err[-2000:]


def test_up_says_on_its_status_line_when_the_clock_failed(tmp_path):
    proc = up(tmp_path, "--hubs", "20000", "--speed", "max", "--status-every", "0.5", "--no-dashboard")
    status_lines(proc, 1)
    # A real failure: the history folder replaced by a file, so the next batch cannot be written.
    history = tmp_path / "run" / "history"
    history.rename(tmp_path / "history-aside")
    history.write_text("not a folder")
    failed = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not failed:
        line = proc.stdout.readline()
        if "CLOCK FAILED" in line:
            failed = line
    assert "CLOCK FAILED:" in failed and "history" in failed, failed
    err = stop(proc)
    assert "the clock stopped at tick" in err and "Traceback" in err  # the cause, logged with its traceback


def test_the_embedded_ray_is_its_own_whatever_ray_address_says(tmp_path):
    """RAY_ADDRESS naming a cluster that is not there (as after a `ray start` long gone): with no
    --address, `twin run` and `twin up` start their own Ray and work."""
    env = {**ENV, "RAY_ADDRESS": f"127.0.0.1:{unused_port()}"}
    p = twin("run", "--hubs", "20k", "--days", "1", "--run-dir", str(tmp_path / "run-1"), "--json",
             str(tmp_path / "s.json"), env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads((tmp_path / "s.json").read_text())["ticks"] == 48
    proc = up(tmp_path, "--hubs", "20000", "--speed", "max", "--status-every", "0.5", "--no-dashboard", env=env)
    status_lines(proc, 1)
    assert "Traceback" not in stop(proc)


@pytest.mark.parametrize(("command", "scheme"), [
    (["run", "--hubs", "20k", "--days", "1"], ""), (["up", "--hubs", "20000"], ""),
    (["sweep", "scenarios/storm-outage.yaml", "--param", "incidents.outage_alert_backoff_s", "--values", "10,20",
      "--hubs", "20000"], "ray://"),
    (["submit", "scenarios/storm-outage.yaml", "--hubs", "20000"], "http://")])
def test_an_unreachable_cluster_address_is_an_error_naming_it(tmp_path, command, scheme):
    address = f"{scheme}127.0.0.1:{unused_port()}"
    home = ["--home", str(tmp_path / "home")] if command[0] == "up" else []
    p = twin(*command, "--address", address, "--run-dir", str(tmp_path / "run"), *home, timeout=60)
    assert p.returncode == 2, (p.returncode, p.stderr[-3000:])
    assert address in p.stderr and "--address" in p.stderr and "Traceback" not in p.stderr


def test_run_a_scenario_writes_its_report(tmp_path):
    out = tmp_path / "run"
    p = twin("run", "scenarios/storm-outage.yaml", "--hubs", "30000", "--days", "1.5", "--run-dir", str(out))
    assert p.returncode == 0, p.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["scenario"]["name"] == "storm-outage"
    assert report["config"]["hubs"] == 30_000
    assert {o["name"] for o in report["operations"]} == {
        "operations/power-outage-1", "operations/base-station-failure-2", "operations/csp-incident-3"}
    assert report["summary"]["peak_alerts_per_s"] > 10
    assert len(report["series"]["tick"]) == 72
    html = (out / "report.html").read_text()
    assert "storm-outage" in html and "<script src=" not in html
    assert (out / "journal.jsonl").read_text().count("\n") == 3


_AS302P = "type: firmware_rollout, device: ESME, manufacturer: Honeywell, model: AS302P"


def test_a_scenario_rollout_that_downgrades_is_refused_naming_the_field(tmp_path):
    path = tmp_path / "down.yaml"
    path.write_text(f"name: x\nfleet: {{hubs: 20000}}\nevents:\n  - {{{_AS302P}, target_version: '1.9'}}\n")
    p = twin("run", str(path), "--run-dir", str(tmp_path / "run"), timeout=120)
    assert p.returncode == 2, p.stderr
    assert "events[0].target_version: 1.9 is below 1.12, 1.14, 1.15" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "run" / "journal.jsonl").exists() or not (tmp_path / "run" / "journal.jsonl").read_text()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("name: x\nevents:\n  - {type: power_outage, area: Atlantis, duration_min: 5}\n", "events[0].area"),
        ("name: x\nevents:\n  - {type: nope}\n", "events[0].type"),
        ("name: x\nfleet: {hubs: -3}\n", "fleet.hubs"),
        ("name: x\nfleet: {colour: red}\n", "fleet.colour"),
        ("name: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "mapping"),
        ("name: x\nevents:\n  - {type: power_outage, area: 12, duration_min: 5, at: yesterday}\n", "events[0].at"),
        ("name: x\nevents:\n  - {type: power_outage, area: 12, duration_min: 5, at: '2026-11-01T06:00'}\n",
         "events[0].at: expected a tick, an offset like '2d6h' or a time: 2026-11-01T06:00:00 has no time zone"),
        ("name: x\nfleet: {start: 2026-11-01T00:00:00}\n", "fleet.start: 2026-11-01T00:00:00 has no time zone"),
        (f"name: x\nevents:\n  - {{{_AS302P}, target_version: 1.x}}\n", "events[0].target_version: '1.x' is not"),
        (f"name: x\nevents:\n  - {{{_AS302P}, target_version: 1.10}}\n", "events[0].target_version: write the version"),
    ],
)
def test_malformed_scenario_files_are_rejected_before_anything_runs(tmp_path, content, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    p = twin("run", str(path), "--run-dir", str(tmp_path / "run"), timeout=60)
    assert p.returncode == 2, p.stderr
    assert needle in p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "run").exists()


def test_up_on_port_0_reports_where_everything_listens_in_its_readiness_file(tmp_path):
    """`twin up --ready-file`: the API's address, each API process's own port (a replica's learnt
    from the replica's readiness file) and the dashboard's URL, every one of them answering; on
    Ctrl-C the children go with it."""
    import urllib.error
    import urllib.request

    import grpc
    import psutil
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from twin.launcher.process import wait_ready

    ready_file = tmp_path / "ready.json"
    proc = up(tmp_path, "--hubs", "20000", "--speed", "max", "--status-every", "3600", "--api-processes", "2",
              "--ready-file", str(ready_file))
    children: list[psutil.Process] = []
    try:
        ready = wait_ready(proc, ready_file, timeout_s=240, name="twin up")
        children = [c for c in psutil.Process(proc.pid).children()
                    if {"twin.services.replica", "dashboard"} & set(c.cmdline())]
        assert ready["run_dir"] == str(tmp_path / "run")
        api_port = int(ready["grpc"].rsplit(":", 1)[1])
        assert api_port != 0 and len(ready["own_ports"]) == 2
        for address in [ready["grpc"], *ready["own_ports"]]:
            with grpc.insecure_channel(address) as ch:
                got = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
            assert got.status == health_pb2.HealthCheckResponse.SERVING, address
        try:
            with urllib.request.urlopen(f"{ready['dashboard']}/healthz", timeout=30) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:  # 503 until the first tick reaches it: it answers all the same
            body = json.loads(e.read())
        assert body["api"].endswith(f":{api_port}")
        assert sorted(c.cmdline()[2] for c in children) == ["dashboard", "twin.services.replica"]
    finally:
        err = stop(proc)
    assert "Traceback" not in err and "own ports: " + ready["own_ports"][0] in err
    assert f"dashboard on {ready['dashboard']}" in err
    assert not ready_file.exists()  # stopped: no longer ready
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
