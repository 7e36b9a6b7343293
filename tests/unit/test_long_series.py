"""Decade-long series stay readable: a report of ten years embeds at most MAX_POINTS points per
series, aggregated by period the way each series' meaning allows (sums keep the totals, peaks the
highest half-hour, shares within target the lowest, levels the last), and the history aggregates
the same way in SQL."""

from __future__ import annotations

import json
import re
from datetime import date

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import decade
from twin.engine import history
from twin.engine.history import HistoryStore, aggregate_metric, aggregate_ticks, query
from twin.model.config import FleetConfig
from twin.model.summary import TickSummary
from twin.reporting.downsample import (
    MAX_POINTS,
    aggregate,
    choose_period,
    downsample_run_report,
    downsample_series,
    period_keys,
    points,
)
from twin.reporting.html import write_html


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-10**12, 10**12), min_size=1, max_size=60), st.data())
def test_each_aggregate_is_that_of_its_group(values, data):
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(values) - 1)), max_size=10)) - {len(values)})
    starts = np.array([0, *cuts], np.int64)
    groups = [values[a:b] for a, b in zip(starts, [*cuts, len(values)], strict=True)]
    assert aggregate(values, starts, "sum") == [sum(g) for g in groups]
    assert aggregate(values, starts, "max") == [max(g) for g in groups]
    assert aggregate(values, starts, "min") == [min(g) for g in groups]
    assert aggregate(values, starts, "last") == [g[-1] for g in groups]
    assert sum(aggregate(values, starts, "sum")) == sum(values)  # nothing lost, nothing twice


def test_the_period_is_the_shortest_that_fits_and_each_tick_belongs_to_its_start():
    assert [choose_period(n) for n in (1, 1_000, 1_001, 48_000, 48_001, 336_000, 336_001)] == [
        "half-hour", "half-hour", "day", "day", "week", "week", "month"]
    assert choose_period(decade.TICKS) == "week"
    # The half-hour that ends at midnight is the last of its day; weeks start on Monday (ISO).
    ends = ["2026-01-04T23:30:00+00:00", "2026-01-05T00:00:00+00:00", "2026-01-05T00:30:00+00:00"]
    assert [str(d) for d in period_keys(ends, "day")] == ["2026-01-04", "2026-01-04", "2026-01-05"]
    assert [str(d) for d in period_keys(ends, "week")] == ["2025-12-29", "2025-12-29", "2026-01-05"]
    assert [str(d) for d in period_keys(ends, "month")] == ["2026-01-01", "2026-01-01", "2026-01-01"]
    agg = downsample_series({"time": ends, "n": [1, 2, 3]}, kinds={"n": "sum"}, period="day")
    assert agg == {"time": ["2026-01-04", "2026-01-05"], "period": "day", "ticks_per_point": [2, 1], "n": [3, 3]}


def _traces(page: str) -> list[dict]:
    """Every plotly trace in a report page (the data arrays of each Plotly.newPlot call)."""
    out = []
    dec = json.JSONDecoder()
    for m in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*', page):
        data, _ = dec.raw_decode(page, m.end())
        out += data
    return out


def _n(values) -> int:
    if isinstance(values, dict):  # plotly's typed-array encoding of a numpy array
        import base64

        return len(base64.b64decode(values["bdata"])) // np.dtype(values["dtype"]).itemsize
    return len(values)


@pytest.fixture(scope="module")
def decade_report() -> dict:
    return decade.report()


def test_a_decade_report_embeds_at_most_max_points_per_series_and_keeps_the_totals(decade_report, tmp_path):
    raw = decade_report["series"]
    short = downsample_run_report(decade_report)
    s = short["series"]
    assert s["period"] == "week" and points(s) <= MAX_POINTS and len(s["time"]) == 523
    assert sum(s["ticks_per_point"]) == decade.TICKS
    # Counts summed: the totals over the decade are the raw totals.
    for c in decade.CSPS:
        assert sum(s["messages_by_csp"][c]) == sum(raw["messages_by_csp"][c])
    for k, v in raw["alerts"].items():
        assert sum(s["alerts"][k]) == sum(v)
    assert sum(s["capacity"]["alerts"]["delayed"]) == sum(raw["capacity"]["alerts"]["delayed"])
    # Peaks the highest half-hour, shares within target the lowest, levels the last.
    assert max(s["dark_hubs"]) == max(raw["dark_hubs"]) and max(s["peak_alerts_per_s"]) == max(raw["peak_alerts_per_s"])
    for link, ys in raw["capacity"]["link_utilisation"].items():
        assert max(s["capacity"]["link_utilisation"][link]) == max(ys)
    cap, raw_cap = s["capacity"], raw["capacity"]
    assert max(cap["latency_p99_s"]["on-demand"]["South"]) == max(raw_cap["latency_p99_s"]["on-demand"]["South"])
    assert min(cap["within_target"]["on-demand"]["South"]) == min(raw_cap["within_target"]["on-demand"]["South"])
    for w, ys in raw["hubs_by_wan"].items():
        assert s["hubs_by_wan"][w][-1] == ys[-1]
    assert s["hh_lost_cum"][-1] == raw["hh_lost_cum"][-1]
    op = short["operations"][0]["series"]
    assert op["swapped"][-1] == decade_report["operations"][0]["series"]["swapped"][-1] and len(op["time"]) <= 60

    path = tmp_path / "report.html"
    write_html(decade_report, path)
    page = path.read_text()
    traces = _traces(page)
    assert len(traces) > 20
    assert max(_n(t["x"]) for t in traces) <= MAX_POINTS
    # SVG traces: a page gets some 16 WebGL contexts, and a report has more figures than that.
    assert {t["type"] for t in traces} == {"scatter"}
    assert "one point per week" in page and "highest half-hour in each week" in page
    assert "worst half-hour p99" in page
    # The same page from the report.json of the run (aggregated already) is the same page.
    again = tmp_path / "again.html"
    write_html(json.loads(json.dumps(short)), again)
    assert len(_traces(again.read_text())) == len(traces)


def _summaries(a: dict, ticks: int):
    """TickSummary per tick of the synthetic decade: what a run's clock records."""
    for t in range(ticks):
        s = TickSummary(t)
        s.messages[:, 0] = a["messages"][t]
        s.dcc_hubs[:] = decade.HUBS // 3
        s.reachable_hubs[:] = decade.HUBS // 3 - a["dark"][t]
        s.alerts[2, 0] = a["outage_alerts"][t]
        s.peak_alerts_per_s = int(a["peak_alerts"][t])
        s.supplier_hubs[1] = 30_000 - t // 100
        yield s


@pytest.mark.parametrize("years", [pytest.param(10, marks=pytest.mark.slow), 1])
def test_the_history_of_a_decade_aggregates_by_week_to_the_raw_totals(tmp_path, monkeypatch, years):
    # Ten years (a year in the default run: 175,296 summaries take half a minute to make and
    # write) through the history store, one segment a year; the long table keeps one breakdown
    # (suppliers) so the decade writes 3 million metric rows, not 30 million.
    monkeypatch.setattr(history, "LONG_BREAKDOWNS", ("supplier_hubs",))
    n = decade.TICKS if years == 10 else 17_520
    a = decade.arrays(n)
    store = HistoryStore(tmp_path, branch="decade", config=FleetConfig(hubs=decade.HUBS, seed=1, start=decade.START),
                         flush_ticks=48 * 366, flush_s=1e9)
    for s in _summaries(a, n):
        store.record(s)
    store.close()
    cols, rows = aggregate_ticks(tmp_path, period="week")
    weeks = [dict(zip(cols, r, strict=True)) for r in rows]
    assert len(weeks) == (523 if years == 10 else 53) <= MAX_POINTS and weeks[0]["period_start"] == date(2025, 12, 29)
    assert sum(w["ticks"] for w in weeks) == n
    assert sum(w["messages"] for w in weeks) == int(a["messages"].sum())
    assert sum(w["messages_south"] for w in weeks) == int(a["messages"][:, 2].sum())
    assert sum(w["alerts"] for w in weeks) == int(a["outage_alerts"].sum())
    assert max(w["dark_hubs"] for w in weeks) == int(a["dark"].sum(axis=1).max())
    assert max(w["peak_alerts_per_s"] for w in weeks) == int(a["peak_alerts"].max())
    assert min(w["reachable_hubs"] for w in weeks) == int((3 * (decade.HUBS // 3) - a["dark"].sum(axis=1)).min())
    # The SQL and the report's numpy aggregate the same: week by week, equal.
    numpy_weeks = downsample_series({"time": decade.times(n), "m": a["messages"].sum(axis=1).tolist(),
                                     "d": a["dark"].sum(axis=1).tolist()},
                                    kinds={"m": "sum", "d": "max"}, period="week")
    assert [w["messages"] for w in weeks] == numpy_weeks["m"] and [w["dark_hubs"] for w in weeks] == numpy_weeks["d"]
    assert [str(w["period_start"]) for w in weeks] == numpy_weeks["time"]
    _, months = aggregate_metric(tmp_path, "supplier_hubs", period="month")
    bgas = [v for _, k, v in months if k == history._LABELS["supplier_hubs"][1]]
    assert len(bgas) == 12 * years and bgas[-1] == 30_000 - (n - 1) // 100
    _, raw = query(tmp_path, "SELECT count(*) FROM ticks")
    assert raw == [(n,)]


def test_a_comparison_of_two_decade_long_branches_embeds_at_most_max_points(tmp_path):
    from twin.reporting.compare import shown_series, write_comparison_html

    a = decade.arrays()
    ends = [t[:19] for t in decade.times()]  # as the history gives them: naive UTC

    def side(extra_dark: int) -> dict:
        dark = a["dark"].sum(axis=1) + extra_dark
        return {"tick": a["t"].tolist(), "time": ends, "messages": a["messages"].sum(axis=1).tolist(),
                "dark_hubs": dark.tolist(), "reachable_hubs": (decade.HUBS - dark).tolist(),
                "alerts": a["outage_alerts"].tolist(), "peak_alerts_per_s": a["peak_alerts"].tolist(),
                "hh_at_risk": (3 * dark).tolist(), "hh_lost_cum": np.cumsum(dark // 1000).tolist()}

    cmp = {"a": {"name": "main"}, "b": {"name": "what-if"}, "hubs": decade.HUBS, "seed": 1,
           "common_ticks": [0, decade.TICKS - 1], "fork_tick": 48 * 365, "divergence_tick": 48 * 365,
           "divergence_time": ends[48 * 365], "changed_at_divergence": ["dark_hubs"], "aggregates": [],
           "operations": [], "series": {"a": side(0), "b": side(100)}}
    shown, period = shown_series(cmp)
    assert period == "week" and points(shown["a"]) <= MAX_POINTS
    assert max(shown["b"]["dark_hubs"]) == max(cmp["series"]["b"]["dark_hubs"])  # the week's highest half-hour
    assert min(shown["a"]["reachable_hubs"]) == min(cmp["series"]["a"]["reachable_hubs"])
    # Messages as a rate per day: each week's rate times its days is its sum, and the sums the total.
    days = np.asarray(shown["a"]["ticks_per_point"]) / 48
    assert np.sum(np.asarray(shown["a"]["messages"]) * days) == pytest.approx(int(a["messages"].sum()), rel=1e-6)
    path = tmp_path / "comparison.html"
    write_comparison_html(cmp, path)
    traces = _traces(path.read_text())
    assert len(traces) == 14 and max(_n(t["x"]) for t in traces) <= MAX_POINTS
