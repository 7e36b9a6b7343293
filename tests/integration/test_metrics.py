"""Prometheus metrics beside the API (`twin up --metrics-port`): a live engine and API server, the
metrics scraped over HTTP and parsed as Prometheus parses them; the clock's lag on a fake clock;
the shipped Grafana dashboard against what the server exports."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import run_dir
from tests.integration.test_clock import FakeTime, on_schedule, wait_for
from twin.engine.clock import Clock
from twin.engine.supervisor import FleetSupervisor
from twin.generated.dcc.v1 import dcc_pb2, dcc_pb2_grpc
from twin.generated.fleet.v1 import fleet_pb2, fleet_pb2_grpc
from twin.model.config import FleetConfig
from twin.model.params import TICK_SECONDS
from twin.services.identity import UserStore
from twin.services.server import ApiServer

pytestmark = pytest.mark.usefixtures("ray_session")
ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "cluster" / "grafana" / "twin.json"


class Stack:
    """A small engine (one shard, no Ray CPU reserved) with an API on port 0 and its metrics on
    port 0, an operator and a network operator (ED) who may stream alerts."""

    def __init__(self, tmp: Path):
        self.sup = FleetSupervisor(FleetConfig(hubs=2_048, seed=5, block_size=1024), shards=1, cpus_per_shard=0.0,
                                   run_dir=run_dir("metrics"))
        self.users = UserStore()
        _, self.operator, _ = self.users.issue_user("operator", "OPERATOR", 0, keys_dir=tmp / "keys")
        _, self.ed, _ = self.users.issue_user("ed", "ED", 10, keys_dir=tmp / "keys")
        self.server = ApiServer(self.sup, self.users, port=0, metrics_port=0)
        self.server.start()
        self.channel = grpc.insecure_channel(self.server.address)
        self.fleet = fleet_pb2_grpc.FleetServiceStub(self.channel)
        self.dcc = dcc_pb2_grpc.DccServiceStub(self.channel)

    @staticmethod
    def auth(token: str) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {token}")]

    def scrape(self) -> dict[str, Any]:
        """{(sample name, sorted label items): value} from /metrics, as Prometheus reads it, and
        the families' names under "families"."""
        with urlopen(f"http://127.0.0.1:{self.server.metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        out: dict[Any, Any] = {"families": set(), "samples": set()}
        for fam in text_string_to_metric_families(text):
            out["families"].add(fam.name)
            for s in fam.samples:
                out["samples"].add(s.name)
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def close(self) -> None:
        self.channel.close()
        self.server.stop(1.0)
        self.sup.shutdown()


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("metrics"))
    yield s
    s.close()


def value(m: dict[str, Any], name: str, **labels: str) -> float | None:
    return m.get((name, tuple(sorted(labels.items()))))


def calls_by_method_and_code(m: dict[str, Any], sample: str = "twin_api_calls_total") -> dict[tuple[str, str], float]:
    out = {}
    for key, n in m.items():
        if isinstance(key, tuple) and key[0] == sample:
            labels = dict(key[1])
            if "le" not in labels:
                out[(labels["method"], labels["code"])] = n
    return out


def test_calls_are_counted_and_timed_by_method_and_code(stack):
    before = stack.scrape()  # (the module's other tests, in any order, make calls of their own)
    stack.fleet.GetClock(fleet_pb2.GetClockRequest(), metadata=stack.auth(stack.operator))
    with pytest.raises(grpc.RpcError) as refused:
        stack.fleet.GetClock(fleet_pb2.GetClockRequest(), metadata=stack.auth("not-a-token"))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as denied:  # a network operator may not drive the fleet
        stack.fleet.GetHub(fleet_pb2.GetHubRequest(name="hubs/0"), metadata=stack.auth(stack.ed))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED

    m = stack.scrape()
    made = {("GetClock", "OK"): 1, ("GetClock", "UNAUTHENTICATED"): 1, ("GetHub", "PERMISSION_DENIED"): 1}
    for sample in ("twin_api_calls_total", "twin_api_call_duration_seconds_count"):
        was, now = calls_by_method_and_code(before, sample), calls_by_method_and_code(m, sample)
        grown = {k: n - was.get(k, 0) for k, n in now.items() if n != was.get(k, 0)}
        assert grown == made, sample
    for method, code in made:
        count = value(m, "twin_api_call_duration_seconds_count", method=method, code=code)
        # Every call fell in a bucket of at most 10 s, and +Inf holds them all.
        assert value(m, "twin_api_call_duration_seconds_bucket", method=method, code=code, le="+Inf") == count
        assert value(m, "twin_api_call_duration_seconds_bucket", method=method, code=code, le="10.0") == count
        assert value(m, "twin_api_call_duration_seconds_sum", method=method, code=code) > 0
    assert value(m, "twin_api_calls_in_flight") == 0


def test_tick_durations_count_every_tick_stepped(stack):
    before = stack.scrape()
    stepped = stack.sup.tick  # the engine has run this many ticks since it started (no rewind here)
    assert value(before, "twin_engine_tick_duration_seconds_count") == stepped
    stack.sup.step(3)
    answer = stack.fleet.StepClock(fleet_pb2.StepClockRequest(count=2), metadata=stack.auth(stack.operator))
    assert answer.tick == stepped + 5
    m = stack.scrape()
    assert value(m, "twin_engine_tick_duration_seconds_count") == stepped + 5
    assert value(m, "twin_engine_tick_duration_seconds_bucket", le="+Inf") == stepped + 5
    assert value(m, "twin_engine_tick_duration_seconds_sum") > value(before, "twin_engine_tick_duration_seconds_sum")
    assert value(m, "twin_engine_tick") == stepped + 5
    # The clock was never started: paused, so never behind and nothing given up.
    assert value(m, "twin_engine_clock_state", state="paused") == 1
    assert value(m, "twin_engine_clock_state", state="running") == 0
    assert value(m, "twin_engine_ticks_behind") == 0
    assert value(m, "twin_engine_clock_slip_seconds_total") == 0


def test_stream_subscribers_count_an_open_stream_and_forget_it_when_it_ends(stack):
    m = stack.scrape()
    assert {k: value(m, "twin_api_stream_subscribers", stream=k) for k in ("WatchFleet", "StreamAlerts",
                                                                           "StreamResponses")} == {
        "WatchFleet": 0, "StreamAlerts": 0, "StreamResponses": 0}
    alerts = stack.dcc.StreamAlerts(dcc_pb2.StreamAlertsRequest(), metadata=stack.auth(stack.ed))
    try:
        assert wait_for(lambda: value(stack.scrape(), "twin_api_stream_subscribers", stream="StreamAlerts") == 1,
                        timeout=30)
        m = stack.scrape()
        # Nothing sent since it began: it is not behind.
        assert value(m, "twin_api_stream_lag_seconds", stream="StreamAlerts") == 0
        assert value(m, "twin_api_stream_subscribers", stream="WatchFleet") == 0
    finally:
        alerts.cancel()
    assert wait_for(lambda: value(stack.scrape(), "twin_api_stream_subscribers", stream="StreamAlerts") == 0,
                    timeout=30)
    # Counted as the client ended it (grpc.aio cancels the handler).
    assert wait_for(lambda: value(stack.scrape(), "twin_api_calls_total", method="StreamAlerts",
                                  code="CANCELLED") == 1, timeout=30)
    # A stream is counted, never timed: its length is its reader's, not a latency.
    assert value(stack.scrape(), "twin_api_call_duration_seconds_count", method="StreamAlerts",
                 code="CANCELLED") is None


def test_the_grafana_dashboard_imports_and_plots_only_what_the_server_exports(stack):
    stack.fleet.GetClock(fleet_pb2.GetClockRequest(), metadata=stack.auth(stack.operator))  # a call timed
    m = stack.scrape()
    dash = json.loads(GRAFANA.read_text(encoding="utf-8"))
    assert isinstance(dash["schemaVersion"], int) and dash["uid"] and dash["title"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = [*dash["panels"], *(p for row in dash["panels"] for p in row.get("panels", []))]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), ids
    plotted = [p for p in panels if p["type"] != "row"]
    assert len(plotted) >= 8
    names: set[str] = set()
    for p in plotted:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
            found = set(re.findall(r"\btwin_[a-z_]+", t["expr"]))
            assert found, (p["title"], t["expr"])
            names |= found
    assert names - m["samples"] == set()
    # Each of the issue's figures has a panel.
    assert {"twin_engine_tick_duration_seconds_bucket", "twin_engine_ticks_behind", "twin_api_calls_total",
            "twin_api_call_duration_seconds_bucket", "twin_api_stream_subscribers",
            "twin_api_stream_lag_seconds"} <= names


@pytest.fixture
def clock_sup():
    s = FleetSupervisor(FleetConfig(hubs=2_048, seed=3, block_size=1024), shards=1, cpus_per_shard=0.0,
                        run_dir=run_dir("metrics-clock"))
    yield s
    s.shutdown()


def test_a_clock_that_cannot_keep_its_pace_says_how_far_behind_it_is(clock_sup, monkeypatch):
    """On a fake monotonic clock (starting at 1000.0): a tick held up for two seconds at four ticks
    a second is 7 ticks behind its schedule (it was due at 1000.25, now is 1002.0); once it ends,
    the schedule restarts a second behind now (1001.0, not 1000.5), and that half second is counted
    as given up."""
    import sys

    fake = FakeTime()
    monkeypatch.setattr(sys.modules[Clock.__module__], "time", fake)
    sup = clock_sup
    sup.start_clock(speed=TICK_SECONDS * 4)  # a tick every 0.25 s
    assert wait_for(lambda: sup.tick == 1) and wait_for(lambda: on_schedule(sup, fake))
    assert sup.tick_timings().behind_ticks == 0.0
    with sup.pipeline.tick_lock:  # the next tick cannot run until this is let go
        fake.advance(2.0)
        sup.wall_clock.wake()
        assert wait_for(lambda: sup.wall_clock.ticking)
        held = sup.tick_timings()
    assert held.behind_ticks == 7.0
    assert held.slipped_s == 0.0
    # Let go: the held tick, then the schedule from a second behind now: 1001.0 .. 1002.0, five more.
    assert wait_for(lambda: on_schedule(sup, fake))
    assert sup.tick == 1 + 1 + 5
    after = sup.tick_timings()
    assert after.slipped_s == 0.5
    assert after.behind_ticks == 0.0  # waiting for a tick due in the (fake) future
    sup.pause()
    assert wait_for(lambda: not sup.wall_clock.ticking)
    assert sup.tick_timings().behind_ticks == 0.0
    assert sup.tick_timings().count == sup.tick


def test_stream_lag_is_how_long_the_oldest_undelivered_item_waited():
    from twin.services.subscribers import Subscribers

    subs = Subscribers()
    with subs.subscribe() as a, subs.subscribe() as b:
        assert subs.open == 2 and subs.lag_s() == 0.0
        now = time.monotonic()
        a.waiting_since, b.waiting_since = now - 1000.0, now - 1.0
        assert subs.lag_s() >= 1000.0  # the slower one's
        a.waiting_since = None  # caught up
        assert 1.0 <= subs.lag_s() < 1000.0
    assert subs.open == 0 and subs.lag_s() == 0.0
