"""Where people see the network's capacity: the dashboard's Capacity page figures, the run report's
capacity section and JSON figures, the `twin run` capacity block and the `twin up` status figure.
Every figure is fed by a real model run (LocalFleet): a plain day, and a day in which South's 3G
link has 30% of its designed capacity and a storm cuts power to most of Southern England, so
queues grow, latencies pass their targets and alerts fail."""

from __future__ import annotations

import io
import json

import numpy as np
import plotly.utils
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from dashboard.feed import FleetFeed
from dashboard.pages import capacity as page
from tests.capacity_proto import capacity_message
from twin.model.capacity import LINK_NAMES, link_index
from twin.model.catalog import Csp, TrafficClass
from twin.model.config import FleetConfig
from twin.model.fleet import LocalFleet
from twin.model.params import ModelParams
from twin.reporting.capacity import capacity_series, capacity_summary, print_capacity, status_figure
from twin.reporting.html import build_figures, write_html
from twin.reporting.summary import run_summary
from twin.services.convert import summary_message
from twin.studies.scenario import series

TICKS = 48
SOUTH, NORTH = int(Csp.SOUTH), int(Csp.NORTH)
ON_DEMAND = int(TrafficClass.ON_DEMAND)
SOUTH_3G = link_index("SOUTH/G3")
# The links in the page's fixed order (CSP, then technology) as the page labels them.
LINK_LABELS = ["North LRR", "North VWAN", "Central 2G", "Central 3G", "Central 4G", "Central VWAN", "South 2G",
               "South 3G", "South 4G", "South VWAN"]


class Run:
    def __init__(self, params: dict, events: list[dict]):
        self.config = FleetConfig(hubs=20_000, seed=4, params=ModelParams.from_dict(params))
        fleet = LocalFleet(self.config)
        for e in events:
            fleet.submit(e)
        self.summaries = [fleet.step() for _ in range(TICKS)]
        self.cap = self.config.params.capacity
        self.reports = [s.capacity for s in self.summaries]

    def feed(self, *, with_capacity: bool = True) -> FleetFeed:
        """The dashboard's own feed, fed each tick as WatchFleet would (never started: no connection)."""
        feed = FleetFeed("127.0.0.1:9", token="t")
        for s in self.summaries:
            msg = summary_message(s, self.config.time_of(s.tick + 1))
            msg.ClearField("capacity")
            if with_capacity:
                msg.capacity.CopyFrom(capacity_message(s.capacity, self.cap))
            feed._on_summary(msg)
        return feed

    def report(self) -> dict:
        summary = run_summary(config=self.config.to_dict(), summaries=self.summaries, shards=1, state_bytes=1,
                              build_s=1.0, run_s=1.0, state_hash="x")
        return {"scenario": {"name": "capacity"}, "summary": summary, "config": {"hubs": self.config.hubs},
                "series": series(self.config, self.summaries), "operations": []}


@pytest.fixture(scope="module")
def storm() -> Run:
    return Run({"capacity": {"link_capacity_factor": {"SOUTH/G3": 0.3}}},
               [{"type": "power_outage", "area": "Southern England", "fraction": 0.8, "duration_min": 120, "at": "10h"}])


@pytest.fixture(scope="module")
def plain() -> Run:
    return Run({}, [])


@pytest.fixture
def storm_feed(storm):
    feed = storm.feed()
    yield feed
    feed.client.channel.close()


# -- the dashboard's Capacity page ------------------------------------------------------------------
def test_headroom_bars_show_each_links_utilisation_coloured_by_band_with_the_days_peak(storm, storm_feed):
    cur, window = storm_feed.current(), storm_feed.ticks_since(-1, page.WINDOW)
    last = storm.reports[-1]
    fig = page.headroom_figure(cur["capacity"], window)
    bars, peaks = fig.data[0], fig.data[1]
    assert list(bars.y) == LINK_LABELS
    want = [100 * round(float(last.link_utilisation[link_index(n.split()[0].upper() + "/" + _tech(n))]), 4)
            for n in LINK_LABELS]
    assert list(bars.x) == pytest.approx(want)
    south = LINK_LABELS.index("South 3G")
    assert bars.x[south] > 100 and bars.marker.color[south] == "#7f0000"  # over capacity: a queue grows
    assert list(bars.marker.color) == [page.band(x / 100)[0] for x in bars.x]
    day_peak = 100 * max(round(float(r.link_utilisation[SOUTH_3G]), 4) for r in storm.reports)
    assert peaks.x[south] == pytest.approx(day_peak) and day_peak > bars.x[south]
    assert fig.layout.xaxis.range[1] > day_peak  # the peak marker is on the chart


def _tech(label: str) -> str:
    return {"LRR": "LRR", "2G": "G2", "3G": "G3", "4G": "G4", "VWAN": "VWAN"}[label.split()[1]]


def test_latency_chart_puts_each_csps_percentiles_against_the_class_target_on_a_log_axis(storm, storm_feed):
    last = storm.reports[-1]
    fig = page.latency_figure(storm_feed.current()["capacity"])
    assert fig.layout.yaxis.type == "log" and "1 min" in fig.layout.yaxis.ticktext  # units on the axis
    p99 = {t.name: t for t in fig.data}
    south = p99["South p99"]
    sent = [k for k in TrafficClass if last.messages[SOUTH, k] > 0]
    assert list(south.y) == pytest.approx([round(float(last.latency_p99[SOUTH, k]), 2) for k in sent])
    # The bar runs down to p50.
    assert list(np.subtract(south.y, south.error_y.arrayminus)) == pytest.approx(
        [round(float(last.latency_p50[SOUTH, k]), 2) for k in sent])
    target = p99["Target Response Time"]
    assert list(target.y) == [300.0, 30.0, 30.0, 5_600.0, 86_400.0, 3_600.0]
    on_demand = sent.index(TrafficClass.ON_DEMAND)
    assert south.y[on_demand] > 30.0 > p99["North p99"].y[list(page.CLASSES).index("on-demand")]


def test_within_target_cells_and_kpis_read_the_ticks_figures(storm, storm_feed):
    last = storm.reports[-1]
    cap = storm_feed.current()["capacity"]
    table = page.within_table(cap)
    cells = {td.id: td for tr in table.children[1].children for td in tr.children if getattr(td, "id", None)}
    south = cells["cap-within-south-on-demand"]
    assert float(getattr(south, "data-value")) == pytest.approx(round(float(last.within_target[SOUTH, ON_DEMAND]), 4))
    assert "cap-bad" in south.className and "cap-ok" in cells["cap-within-north-on-demand"].className
    kpis = {k.id: k for k in page.kpis(storm_feed.current())}
    busiest = kpis["cap-kpi-busiest"]
    assert getattr(busiest, "data-link") == "South 3G"
    assert float(getattr(busiest, "data-value")) == pytest.approx(round(float(last.link_utilisation[SOUTH_3G]), 4))
    p99 = kpis["cap-kpi-p99"]
    worst = int(np.argmax(np.where(last.messages[:, ON_DEMAND] > 0, last.latency_p99[:, ON_DEMAND], -1)))
    assert getattr(p99, "data-csp") == Csp(worst).name.title() and p99.className == "over"
    assert int(getattr(kpis["cap-kpi-queued"], "data-value")) == int(last.backlog.sum())
    assert int(getattr(kpis["cap-kpi-failed"], "data-value")) == int(last.failed_queue.sum())


def test_backlog_age_and_alerts_over_the_day_come_from_the_ticks(storm, storm_feed):
    window = storm_feed.ticks_since(-1, page.WINDOW)
    backlog = page.backlog_panel(window).figure
    lines = {t.name: t for t in backlog.data}
    sched = int(TrafficClass.SCHEDULED)
    assert list(lines["South scheduled"].y) == [int(r.backlog[SOUTH, sched]) for r in storm.reports]
    assert not any(name.startswith("North") for name in lines)  # North queued nothing all day
    # Evenly spaced ticks travel as a start and a step, not a date per point.
    assert lines["South scheduled"].x0 == window[0]["time"] and lines["South scheduled"].dx == page.TICK_MS
    age = {t.name: t for t in page.age_panel(window).figure.data}
    oldest = max(round(float(r.oldest_age_s[SOUTH, sched])) for r in storm.reports)  # whole seconds on the wire
    assert max(age["South scheduled"].y) == pytest.approx(oldest / 3600)
    table = page.alerts_panel(window)
    rows = {tr.children[0].children: [td.children for td in tr.children[1:]] for tr in table.children[1].children}
    assert rows["South"] == [f"{sum(int(getattr(r, 'alerts_' + k)[SOUTH]) for r in storm.reports):,}"
                             for k in page.ALERT_OUTCOMES] + [f"{int(storm.reports[-1].failed_queue[SOUTH]):,}"]
    assert rows["South"][2] != "0"  # alerts failed after their 300 s retry window


def test_a_plain_day_is_said_in_words_not_drawn_as_empty_charts(plain):
    feed = plain.feed()
    try:
        window = feed.ticks_since(-1, page.WINDOW)
        assert page.backlog_panel(window).id == "cap-backlog-none"
        assert page.age_panel(window).id == "cap-age-none"
        assert page.alerts_panel(window).id == "cap-alerts-none"
        assert "24 h" in page.backlog_panel(window).children
        # Headroom and latency always have something to say.
        fig = page.headroom_figure(feed.current()["capacity"], window)
        assert all(0 <= x < 100 for x in fig.data[0].x)
    finally:
        feed.client.channel.close()


def test_without_capacity_figures_the_page_says_why(plain):
    feed = plain.feed(with_capacity=False)
    try:
        assert feed.current()["capacity"] is None
        message, panels = page.content(feed)
        assert "capacity model is off" in message and panels[1:] == ["", "", "", "", "", ""]
    finally:
        feed.client.channel.close()


def test_a_live_update_of_the_page_is_small(storm_feed):
    update = json.dumps(page.content(storm_feed), cls=plotly.utils.PlotlyJSONEncoder)
    assert len(update) < 50_000  # shared/DESIGN.md: under 100 KB whatever the fleet size


# -- the run report and the terminal ---------------------------------------------------------------
def test_run_figures_hold_the_peaks_and_worst_service_of_the_run(storm):
    cap = storm.report()["summary"]["capacity"]
    json.dumps(cap)  # JSON-ready
    util = np.array([r.link_utilisation for r in storm.reports])
    assert cap["peak_link"] == "South 3G"
    assert cap["peak_link_utilisation"]["South 3G"] == round(float(util[:, SOUTH_3G].max()), 4) > 1
    assert set(cap["peak_link_utilisation"]) == set(LINK_LABELS)
    sent = [r for r in storm.reports if r.messages[SOUTH, ON_DEMAND] > 0]
    assert cap["worst_p99_s"]["South"]["on-demand"] == round(max(float(r.latency_p99[SOUTH, ON_DEMAND]) for r in sent), 2)
    assert cap["worst_p99_s"]["South"]["on-demand"] > cap["target_response_s"]["on-demand"] == 30.0
    assert cap["min_within_target"]["South"]["on-demand"] == round(
        min(float(r.within_target[SOUTH, ON_DEMAND]) for r in sent), 4)
    assert cap["alerts"]["failed"]["South"] == sum(int(r.alerts_failed[SOUTH]) for r in storm.reports) > 0
    assert cap["alerts"]["failed"]["North"] == 0
    assert cap["alerts"]["failed_queue_end"]["South"] == int(storm.reports[-1].failed_queue[SOUTH])
    assert cap["peak_backlog"]["South"] == max(int(r.backlog[SOUTH].sum()) for r in storm.reports)


def test_a_plain_day_keeps_every_link_under_capacity_and_reads_within_target(plain):
    cap = capacity_summary(plain.summaries, plain.cap)
    assert all(v < 1 for v in cap["peak_link_utilisation"].values())
    assert all(cap["worst_p99_s"][c]["on-demand"] < 30 for c in ("North", "Central", "South"))
    assert all(v == 0 for k in ("delayed", "throttled", "failed", "expired") for v in cap["alerts"][k].values())


def test_the_terminal_block_marks_what_passed_its_target(storm):
    out = io.StringIO()
    print_capacity(storm.report()["summary"]["capacity"], Console(file=out, width=200))
    text = out.getvalue()
    row = next(line for line in text.splitlines() if "p99 on-demand latency (target 30 s)" in line)
    cells = [c.strip() for c in row.split("│")[2:5]]
    assert cells[2].endswith("OVER")  # South
    assert "South 3G" in text and "over capacity: a queue grew" in text


def test_the_status_figure_names_the_busiest_link_and_the_worst_on_demand_p99(storm, plain):
    last = storm.reports[-1]
    text = status_figure(last, storm.cap)
    assert text.startswith(f"busiest South 3G {last.link_utilisation[SOUTH_3G]:.0%}  on-demand p99 ")
    assert text.endswith("!")  # past the 30 s target
    calm = status_figure(plain.reports[5], plain.cap)
    busiest = LINK_NAMES[int(np.argmax(plain.reports[5].link_utilisation))]
    assert calm.startswith("busiest ") and not calm.endswith("!") and busiest.split("/")[0].title() in calm
    assert status_figure(None, plain.cap) == ""


def test_the_html_report_has_a_capacity_section(storm, plain, tmp_path):
    figures = dict(build_figures(storm.report()))
    util = figures["Link utilisation per half-hour (offered load / capacity)"]
    assert [t.name for t in util.data] == [*LINK_LABELS, "capacity"] and list(util.data[-1].y) == [100.0, 100.0]
    south = next(t for t in util.data if t.name == "South 3G")
    assert max(south.y) == pytest.approx(100 * round(float(max(r.link_utilisation[SOUTH_3G] for r in storm.reports)), 4))
    p99 = figures["p99 on-demand latency per CSP (Target Response Time 30 s)"]
    assert p99.layout.yaxis.type == "log" and list(p99.data[-1].y) == [30.0, 30.0]
    assert "p99 alert latency per CSP (Target Response Time 300 s)" in figures
    assert "Backlog per CSP (messages queued at the end of each half-hour)" in figures
    path = tmp_path / "storm.html"
    write_html(storm.report(), path)
    page_html = path.read_text(encoding="utf-8")
    assert "Network capacity and service levels" in page_html
    peak = storm.report()["summary"]["capacity"]["peak_link_utilisation"]["South 3G"]
    assert f"<th>South 3G</th><td class=num>{100 * peak:.0f}%</td>" in page_html
    # A plain day: what is all zero is a sentence, not an empty chart.
    plain_figures = dict(build_figures(plain.report()))
    assert not any(t.startswith(("Backlog", "Device alerts under load", "Share answered")) for t in plain_figures)
    write_html(plain.report(), path)
    page_html = path.read_text(encoding="utf-8")
    assert "No message was queued at the end of any half-hour" in page_html
    assert "No device alert was delayed, throttled (SECMP0062), failed or expired in the run." in page_html


def test_with_the_capacity_model_off_nothing_capacity_is_shown():
    run = Run({"capacity": {"enabled": False}}, [])
    assert capacity_series(run.summaries, run.cap) == {} and capacity_summary(run.summaries, run.cap) == {}
    assert not any("latency" in t or "utilisation" in t for t, _ in build_figures(run.report()))
    out = io.StringIO()
    print_capacity(run.report()["summary"]["capacity"], Console(file=out))
    assert out.getvalue() == ""
    assert status_figure(run.summaries[-1].capacity, run.cap) == ""


@settings(max_examples=60, deadline=None)
@given(order=st.permutations(range(len(LINK_LABELS))),
       utilisation=st.lists(st.floats(0.0, 5.0, allow_nan=False), min_size=len(LINK_LABELS), max_size=len(LINK_LABELS)))
def test_headroom_bars_keep_their_order_and_band_whatever_order_the_links_arrive_in(order, utilisation):
    names = [(n.split()[0], _tech(n)) for n in LINK_LABELS]
    links = [{"csp": csp, "technology": tech, "capacity_per_s": 1.0, "utilisation": u, "backlog": 0}
             for (csp, tech), u in zip(names, utilisation, strict=True)]
    cap = {"links": [links[i] for i in order], "classes": [], "alerts": []}
    fig = page.headroom_figure(cap, [{"tick": 0, "capacity": cap}])
    bars = fig.data[0]
    assert list(bars.y) == LINK_LABELS  # live bars never jump
    assert list(bars.x) == pytest.approx([100 * u for u in utilisation])
    for u, colour in zip(utilisation, bars.marker.color, strict=True):
        want = "#1b7f3b" if u < 0.7 else "#e6a100" if u < 0.9 else "#d62728" if u < 1.0 else "#7f0000"
        assert colour == want
    assert fig.layout.xaxis.range[1] > max(100.0, *bars.x)  # every bar and the capacity line are on the chart
