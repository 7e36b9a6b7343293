"""Reading the history never hurts the live run, and a clock that fails says so: a reader in
another process holding a DuckDB connection on the history while the clock runs flat out; a
clock whose history cannot be written (a real failure) answering FAILED with the cause, health
NOT_SERVING, and losing no row once it is resumed."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.integration.conftest import run_dir
from twin.engine.history import DIR, query
from twin.engine.supervisor import ClockState, FleetSupervisor
from twin.generated.fleet.v1 import fleet_pb2, fleet_pb2_grpc
from twin.model.config import FleetConfig
from twin.services.identity import UserStore
from twin.services.server import ApiServer

pytestmark = pytest.mark.usefixtures("ray_session")
ROOT = Path(__file__).resolve().parents[2]
CFG = FleetConfig(hubs=8_000, seed=5, block_size=1024)

# What a notebook does: one DuckDB connection, kept open, queried now and then, for 4 s.
READER = """
import json, sys, time
import duckdb
from twin.engine.history import attach_views
con = duckdb.connect()
attach_views(con, sys.argv[1])
seen, end = [], time.monotonic() + 4.0
while time.monotonic() < end:
    seen.append(con.execute("SELECT count(*), coalesce(max(tick), -1) FROM ticks").fetchone())
    time.sleep(0.25)
print(json.dumps(seen))
"""


def _one_row_per_tick(d: Path, ticks: int) -> None:
    _, rows = query(d, "SELECT count(*), count(DISTINCT tick), min(tick), max(tick) FROM ticks")
    assert rows == [(ticks, ticks, 0, ticks - 1)]
    _, rows = query(d, "SELECT count(DISTINCT tick) FROM metrics WHERE metric = 'messages'")
    assert rows == [(ticks,)]


def test_a_reader_holding_the_history_for_4_s_never_stops_the_clock_or_loses_a_row():
    d = run_dir("history-reader")
    sup = FleetSupervisor(CFG, shards=1, run_dir=d, checkpoint_every=12)
    sup.history_db.flush_ticks = 3  # many small segments, so segments are merged under the reader too
    reader = None
    try:
        sup.step(1)  # a first segment for the reader to find
        sup.start_clock(speed=None)
        reader = subprocess.Popen([sys.executable, "-c", READER, str(d)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, cwd=ROOT)
        ticks = []
        while reader.poll() is None:
            ticks.append(sup.tick)
            assert sup.clock_state == ClockState.RUNNING, sup.clock_error
            time.sleep(1.0)
        out, err = reader.communicate()
        assert reader.returncode == 0, err
        seen = json.loads(out)
        sup.pause()
        # The clock advanced between every two looks while the reader held its connection...
        assert all(a < b for a, b in itertools.pairwise(ticks)), ticks
        # ... and the reader saw the history grow, never shrink (no lock, no error).
        counts = [c for c, _ in seen]
        assert counts == sorted(counts) and counts[-1] > counts[0]
        assert sup.history_db.merges > 0
    finally:
        if reader is not None and reader.poll() is None:
            reader.kill()
        sup.shutdown()
    _one_row_per_tick(d, sup.tick)


def _api(sup: FleetSupervisor, tmp: Path) -> tuple[ApiServer, str]:
    users = UserStore()
    _, token, _ = users.issue_user("operator", "OPERATOR", 0, keys_dir=tmp / "keys")
    server = ApiServer(sup, users, port=0)
    server.start()
    return server, token


def _wait(pred, what: str, timeout_s: float = 60.0) -> None:
    end = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_clock_that_fails_answers_failed_and_not_serving_and_resumes_losing_nothing(tmp_path):
    d = run_dir("clock-failure")
    sup = FleetSupervisor(CFG, shards=1, run_dir=d, checkpoint_every=None)
    sup.history_db.flush_ticks = 4
    server, token = _api(sup, tmp_path)
    md = (("authorization", f"Bearer {token}"),)
    ch = grpc.insecure_channel(server.address)
    fleet, health = fleet_pb2_grpc.FleetServiceStub(ch), health_pb2_grpc.HealthStub(ch)

    def status(service: str = "") -> int:
        return health.Check(health_pb2.HealthCheckRequest(service=service)).status

    try:
        sup.step(2)
        assert status() == health_pb2.HealthCheckResponse.SERVING
        # A real failure: the history folder moved away and a file put in its place, so the next
        # batch cannot be written.
        sup.history_db.flush()
        (d / DIR).rename(d / "history-aside")
        (d / DIR).write_text("not a folder")
        sup.start_clock(speed=None)
        _wait(lambda: sup.clock_state == ClockState.FAILED, "the clock to fail")
        stopped_at = sup.tick
        clock = fleet.GetClock(fleet_pb2.GetClockRequest(), metadata=md)
        assert clock.state == fleet_pb2.CLOCK_STATE_FAILED
        assert "history" in clock.error and clock.tick == stopped_at
        _wait(lambda: status() == health_pb2.HealthCheckResponse.NOT_SERVING, "health NOT_SERVING")
        assert status("twin.fleet.v1.FleetService") == health_pb2.HealthCheckResponse.NOT_SERVING
        time.sleep(0.5)
        assert sup.tick == stopped_at  # stopped, and saying so
        # Pausing does not hide the failure; resuming with the cause fixed runs on, nothing lost.
        fleet.UpdateClock(fleet_pb2.UpdateClockRequest(state=fleet_pb2.CLOCK_STATE_PAUSED, speed=-1), metadata=md)
        assert fleet.GetClock(fleet_pb2.GetClockRequest(), metadata=md).state == fleet_pb2.CLOCK_STATE_FAILED
        (d / DIR).unlink()
        (d / "history-aside").rename(d / DIR)
        clock = fleet.UpdateClock(fleet_pb2.UpdateClockRequest(state=fleet_pb2.CLOCK_STATE_RUNNING, speed=-1),
                                  metadata=md)
        assert clock.state == fleet_pb2.CLOCK_STATE_RUNNING and clock.error == ""
        _wait(lambda: sup.tick >= stopped_at + 8, "the clock to run again")
        _wait(lambda: status() == health_pb2.HealthCheckResponse.SERVING, "health SERVING again")
        sup.pause()
        _wait(lambda: sup.clock_state == ClockState.PAUSED, "the clock to pause")
    finally:
        ch.close()
        server.stop(1.0)
        sup.shutdown()
    # The batches that could not be written were kept and written once the folder was back.
    _one_row_per_tick(d, sup.tick)


def test_a_step_that_cannot_write_the_history_is_unavailable_with_the_cause_and_loses_nothing(tmp_path):
    """StepClock ended UNKNOWN with a Python traceback's text when the history could not be
    written; the run's own failure is UNAVAILABLE with the cause, and the ticks it ran stand."""
    d = run_dir("step-failure")
    sup = FleetSupervisor(CFG, shards=1, run_dir=d, checkpoint_every=None)
    sup.history_db.flush_ticks = 2
    server, token = _api(sup, tmp_path)
    md = (("authorization", f"Bearer {token}"),)
    ch = grpc.insecure_channel(server.address)
    fleet = fleet_pb2_grpc.FleetServiceStub(ch)
    try:
        sup.step(2)
        sup.history_db.flush()
        (d / DIR).rename(d / "history-aside")
        (d / DIR).write_text("not a folder")
        with pytest.raises(grpc.RpcError) as e:
            fleet.StepClock(fleet_pb2.StepClockRequest(count=4), metadata=md)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "the run stopped at tick" in e.value.details() and "history" in e.value.details()
        (d / DIR).unlink()
        (d / "history-aside").rename(d / DIR)
        clock = fleet.StepClock(fleet_pb2.StepClockRequest(count=2), metadata=md)
        assert clock.tick == sup.tick
        sup.history_db.flush()
    finally:
        ch.close()
        server.stop(1.0)
        sup.shutdown()
    _one_row_per_tick(d, sup.tick)
