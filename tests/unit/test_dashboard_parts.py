"""Dashboard parts that need no browser: forms from the proto, map geometry, progress, layering."""

from __future__ import annotations

import subprocess
import sys

import pytest
from google.longrunning import operations_pb2

from dashboard import forms, geo
from dashboard.components import progress_fraction, progress_text
from dashboard.feed import FleetFeed, operation_record
from dashboard.figures import map_style
from twin.generated.fleet.v1 import fleet_pb2


def test_every_operator_event_has_a_form_built_from_the_proto():
    oneof = fleet_pb2.CreateEventRequest.DESCRIPTOR.oneofs_by_name["event"]
    assert tuple(f.name for f in oneof.fields) == forms.EVENTS and len(forms.EVENTS) == 12
    for event in forms.EVENTS:
        specs = forms.fields(event)
        msg = next(f.message_type for f in oneof.fields if f.name == event)
        assert [s.name for s in specs] == [f.name for f in msg.fields]
    rollout = {s.name: s for s in forms.fields("firmware_rollout")}
    assert rollout["waves"].repeated and rollout["waves"].kind == "number"
    assert rollout["halt_failure_rate"].optional and not rollout["target_version"].optional
    assert rollout["allow_downgrade"].kind == "bool" and rollout["concurrency_per_csp"].kind == "integer"
    mhhs = {s.name: s for s in forms.fields("mhhs_migration")}
    assert mhhs["waves"].kind == "integer" and mhhs["waves"].optional and mhhs["suppliers"].repeated
    reads = {s.name: s for s in forms.fields("on_demand_reads")}
    assert not reads["duration_min"].optional and reads["areas"].repeated and reads["interval_min"].optional
    with pytest.raises(ValueError):
        forms.fields("meteor_strike")


def test_form_values_become_the_request_or_name_the_bad_fields():
    req, errors = forms.build_request("firmware_rollout", {
        "device": "ESME", "manufacturer": "Kaifa", "model": "MA120", "target_version": "9.9.9",
        "waves": "0.1, 0.5,1", "regions": ["North", "South"], "concurrency_per_csp": "40", "allow_downgrade": ["yes"],
        "halt_failure_rate": ""}, at="6h")
    assert errors == {}
    r = req.firmware_rollout
    assert req.at == "6h" and list(r.waves) == [0.1, 0.5, 1.0] and list(r.regions) == ["North", "South"]
    assert r.concurrency_per_csp == 40 and r.allow_downgrade and not r.HasField("halt_failure_rate")
    req, errors = forms.build_request("power_outage", {"area": "12", "duration_min": "an hour", "fraction": "nan"})
    assert req is None and set(errors) == {"duration_min", "fraction"}
    req, errors = forms.build_request("base_station_failure", {"cells": "3, x", "duration_min": "30"})
    assert req is None and "cells" in errors
    req, errors = forms.build_request("swap_programme", {"region": "South", "installs_per_day": "1.5"})
    assert req is None and errors == {"installs_per_day": "must be a whole number, got '1.5'"}


def test_map_geometry_ships_with_the_dashboard_and_covers_great_britain():
    areas = geo.areas()
    assert [a.id for a in areas] == list(range(10, 24))
    # GB is about 230,000 km^2 of land; the licence areas also take in estuaries and sea lochs.
    assert 225_000 < sum(a.km2 for a in areas) < 250_000
    london = next(a for a in areas if a.id == 12)
    assert 500 < london.km2 < 900 and london.csp == "South"
    assert all(-8.7 < x < 1.8 for x in areas[0].lon if x is not None)
    lon, lat = geo.outline()
    assert len(lon) == len(lat) > 1000


def test_map_colours_follow_the_values():
    rows = [{"area_id": i, "hubs": 1000, "dcc_hubs": 1000, "reachable": 1000 - d, "dark": d, "meters": 1500,
             "alerts": 0} for i, d in zip(range(10, 24), [0] * 13 + [400], strict=True)]
    colours, texts, (lo, hi) = map_style(rows, "dark")
    assert hi == 40.0 and lo == 0.0
    assert colours[-1] != colours[0] and len(set(colours[:-1])) == 1
    assert "dark 400" in texts[-1]


def test_an_operation_record_reads_the_typed_metadata_and_the_bar_its_percent_done():
    md = fleet_pb2.OperationMetadata(
        kind="firmware_rollout", state=fleet_pb2.OPERATION_STATE_PAUSED, percent_done=30.0,
        allowed_actions=[fleet_pb2.OPERATION_ACTION_RESUME, fleet_pb2.OPERATION_ACTION_CANCEL],
        firmware_rollout=fleet_pb2.FirmwareRolloutProgress(
            targeted=200, activated=50, failed=10, waves=[fleet_pb2.WaveProgress(index=0, passed=40, failed=10)]))
    op = operations_pb2.Operation(name="operations/firmware-rollout-1")
    op.metadata.Pack(md)
    rec = operation_record(op)
    assert rec["state"] == "PAUSED" and rec["actions"] == ["resume", "cancel"]
    assert rec["progress"]["targeted"] == 200 and rec["progress"]["waves"][0]["failed"] == 10
    assert progress_fraction(rec) == 0.3
    assert progress_text(rec) == ("targeted 200 · distributed 0 · activated 50 · failed 10 · bricked 0 · "
                                  "pending no wan 0")
    assert progress_fraction({"percent_done": 100.0}) == 1.0 and progress_fraction({}) == 0.0


def test_the_dashboard_is_a_client_of_the_api_and_never_of_ray():
    """Loaded, the dashboard has nothing of Ray, the engine, the services or the model (it labels
    and validates through the API: GetFleetCatalog, the server's field errors)."""
    code = ("import sys, dashboard.server, dashboard.pages, dashboard.__main__; "
            "bad = [m for m in sys.modules if m == 'ray' or m.startswith(('ray.', 'twin.engine', 'twin.services', "
            "'twin.model'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_switching_page_lists_prepayment_off_supply_per_supplier_worst_first_from_the_feed_record():
    from datetime import UTC, datetime

    from dashboard.feed import latest_record
    from dashboard.pages.switching import prepay_table
    from twin.model.summary import TickSummary
    from twin.services.convert import summary_message

    s = TickSummary(tick=3)
    s.prepay_supplier[[1, 8]] = [500, 400]
    s.credit_ec_supplier[[1, 8]] = [20, 30]
    s.credit_off_supplier[[1, 8]] = [5, 40]
    latest = latest_record(summary_message(s, datetime(2026, 6, 1, tzinfo=UTC)))
    assert latest["prepayment"]["off_supply"] == 45
    rows = prepay_table(latest).children[1].children
    texts = [[td.children for td in tr.children] for tr in rows]
    assert texts == [["Utilita", "400", "30", "40", "10.0%"], ["Octopus Energy", "500", "20", "5", "1.0%"],
                     ["All suppliers", "900", "50", "45", "5.0%"]]


def _op(name: str, kind: str, state: int) -> operations_pb2.Operation:
    op = operations_pb2.Operation(name=name)
    op.metadata.Pack(fleet_pb2.OperationMetadata(kind=kind, state=state))
    return op


def test_the_feed_keeps_operations_from_the_ticks_newer_than_its_listing():
    feed = FleetFeed("127.0.0.1:9", token="t")  # never started: no connection is made
    try:
        feed._listed_after = 5
        running, done = fleet_pb2.OPERATION_STATE_RUNNING, fleet_pb2.OPERATION_STATE_DONE
        feed._on_summary(fleet_pb2.TickSummary(tick=5, operations=[_op("operations/power-outage-1", "power_outage",
                                                                        running)]))
        assert feed.operations() == []  # the listing already showed tick 5
        feed._on_summary(fleet_pb2.TickSummary(tick=6, operations=[
            _op("operations/power-outage-1", "power_outage", done),
            _op("operations/service-request-2", "service_request", done)]))
        assert [(o["name"], o["state"]) for o in feed.operations()] == [("operations/power-outage-1", "DONE")]
    finally:
        feed.client.channel.close()


def test_the_cluster_panel_reads_getcluster_a_dead_node_and_its_recoveries():
    from dash import html

    from dashboard.feed import cluster_record
    from dashboard.pages.scenario import NO_RECOVERIES, cluster_panel

    def walk(node):  # every component of a panel, depth first
        yield node
        kids = getattr(node, "children", None)
        for k in kids if isinstance(kids, list | tuple) else [kids] if kids is not None else []:
            yield from walk(k)

    def text(parts, tag=None):
        return [c.children for p in parts for c in walk(p) if isinstance(c, tag or html.Td) and isinstance(c.children, str)]

    place = fleet_pb2.ShardPlacement
    msg = fleet_pb2.Cluster(nodes=[
        fleet_pb2.ClusterNode(node_id="aa", ip_address="10.0.0.1", alive=True, cpu_count=8, memory_bytes=16 * 2**30,
                              shards=[place(shard=0, hubs=10, pid=7, responding=True)]),
        fleet_pb2.ClusterNode(node_id="bb", ip_address="10.0.0.3", alive=False,
                              shards=[place(shard=1, hubs=10, pid=8), place(shard=2, hubs=10, pid=9)])])
    quiet = cluster_record(msg)
    parts = cluster_panel(quiet)
    assert text(parts, html.Div)[0] == "1 of 2 nodes alive"
    assert text(parts)[:5] == ["10.0.0.1", "8", "16.0 GiB", "1 (0)", "10.0.0.3"]
    assert "2 (1, 2), 2 not answering" in text(parts)
    assert NO_RECOVERIES in text(parts, html.P)
    rec = fleet_pb2.ShardRecovery(shard=2, tick=40, replayed_ticks=1, checkpoint_tick=-1, node_ip_address="10.0.0.4",
                                  attempts=2)
    rec.duration.FromMilliseconds(2500)
    rec.time.FromJsonString("2026-11-01T20:30:00Z")
    msg.recoveries.append(rec)
    msg.recovery_count = 12
    cells = text(cluster_panel(cluster_record(msg)))
    assert cells[-7:] == ["2026-11-01 20:30 · tick 40", "", "2", "10.0.0.4", "the seed (rebuilt)", "1 tick",
                          "2.5 (2 attempts)"]
    assert "Shard recoveries: 12 (the newest 1)" in text(cluster_panel(cluster_record(msg)), html.H4)
    assert cluster_panel({})[0].children == "Waiting for the API's view of the cluster…"


# -- charts leave out all-zero series (issue 14: alert kinds at zero throughout in the legend) --
def _tick(t: int, alerts: dict[str, int]) -> dict:
    return {"tick": t, "time": f"2026-11-01T{t // 2:02d}:{30 * (t % 2):02d}:00+00:00", "alerts": alerts,
            "peak_alerts_per_s": 0.0}


def test_a_live_chart_draws_only_the_series_that_are_not_zero_and_says_so_when_none_is():
    from dashboard import figures as F
    from dashboard.pages.alerts import RATES

    ticks = [_tick(t, {"POWER_OUTAGE": 5 * t, "LOW_BATTERY": 0}) for t in range(4)]
    fig = F.series(ticks, "Alerts per tick by kind", RATES)
    assert [tr.name for tr in fig.data] == ["power outage"]
    assert list(fig.data[0].y) == [0, 5, 10, 15] and fig.layout.meta == {"lines": ["power outage"]}
    quiet = [_tick(t, {}) for t in range(6)]
    fig = F.series(quiet, "Alerts per tick by kind", RATES, empty="No device alert in the last {span}.")
    assert not fig.data
    assert [a.text for a in fig.layout.annotations] == ["No device alert in the last 3 h."]


def test_a_live_chart_is_redrawn_when_a_kind_first_shows_and_extended_otherwise():
    from dashboard import figures as F
    from dashboard.pages.alerts import RATES

    window = [_tick(t, {"POWER_OUTAGE": 3}) for t in range(3)]
    fig, ext, names = F.live_update(window, window[-1:], ["power outage"], "t", RATES)
    assert fig is None and names == ["power outage"]
    assert ext == ({"x": [[window[-1]["time"]]], "y": [[3]]}, [0], F.LIVE_POINTS)
    window.append(_tick(3, {"POWER_OUTAGE": 3, "POWER_RESTORED": 7}))
    fig, ext, names = F.live_update(window, window[-1:], ["power outage"], "t", RATES)
    assert ext is None and names == ["power outage", "power restored"]
    assert [tr.name for tr in fig.data] == names and list(fig.data[1].y) == [0, 0, 0, 7]


def test_the_technology_mix_leaves_out_technologies_no_region_has_hubs_on():
    from dashboard import figures as F

    by_wan = {"North": {"long-range radio": 40, "4G": 0, "none": 0}, "Central": {"3G": 12, "4G": 5, "none": 0},
              "South": {"3G": 0, "VWAN": 0}}
    fig = F.technology_mix(by_wan)
    assert [tr.name for tr in fig.data] == ["long-range radio", "3G", "4G"]
    assert F.technology_mix_y(by_wan) == [[40, 0, 0], [0, 12, 0], [0, 5, 0]]


def test_the_wave_failure_chart_leaves_out_rollouts_with_no_failure_and_says_so():
    from dashboard.pages.firmware import wave_failures, waves_panel

    def rollout(name: str, failed: int) -> dict:
        return {"name": f"operations/{name}", "kind": "firmware_rollout",
                "progress": {"waves": [{"index": 0, "failed": failed, "passed": 100 - failed}]}}

    fig = wave_failures([rollout("firmware-rollout-1", 0), rollout("firmware-rollout-2", 25)])
    assert [(tr.name, list(tr.y)) for tr in fig.data] == [("firmware-rollout-2", [25.0])]
    assert wave_failures([rollout("firmware-rollout-1", 0)]) is None
    text = waves_panel([rollout("firmware-rollout-1", 0)]).children[1].children
    assert text == "No device has failed in a finished wave (firmware-rollout-1): every rate is 0%."
