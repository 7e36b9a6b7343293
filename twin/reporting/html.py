"""Render a run report dict as one self-contained, offline HTML page with interactive plotly figures."""

from __future__ import annotations

import html
import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from twin.reporting.downsample import MAX_POINTS, downsample_run_report, period_phrase
from twin.util.units import format_seconds

SUMMARY_KEYS = ("hubs", "meters", "messages_total", "messages_per_reachable_meter_month",
                "device_alerts_per_reachable_meter_month", "peak_alerts_per_s",
                "hh_periods_lost", "hh_periods_at_risk", "wall_s", "state_hash", "dark_hubs")
CONFIG_KEYS = ("hubs", "seed", "shards", "days")
TOP_SUPPLIERS = 8

# The dashboard's colours for the CSP regions (dashboard/figures.py CSP_COLOURS), and a dash per
# WAN technology for the links.
CSP_COLOURS = {"North": "#1f77b4", "Central": "#ff7f0e", "South": "#2ca02c"}
TECH_DASH = {"LRR": "solid", "2G": "dash", "3G": "solid", "4G": "dot", "VWAN": "dashdot"}
ALERT_COLOURS = {"delayed": "#e6a100", "throttled": "#9467bd", "failed": "#d62728", "redelivered": "#2ca02c",
                 "expired": "#7f0000"}
# A latency axis' ticks, seconds, in the units people think in (plotly's own log ticks are bare
# numbers with unlabelled minor ticks).
LATENCY_TICKS = ((0.01, "10 ms"), (0.1, "0.1 s"), (1, "1 s"), (10, "10 s"), (60, "1 min"), (600, "10 min"),
                 (3_600, "1 h"), (21_600, "6 h"), (86_400, "1 d"), (604_800, "1 week"))

CSS = """body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem auto;max-width:1200px;
color:#222;padding:0 1rem}h1{margin-bottom:.2rem}h2{font-size:1.1rem;margin:1.5rem 0 .3rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}td,th{border:1px solid #ddd;padding:.2rem .6rem;
text-align:left;vertical-align:top}th{background:#f4f4f4}
.num{text-align:right;font-variant-numeric:tabular-nums}
.fig{margin:1rem 0}footer{margin-top:2rem;color:#777;font-size:.8rem}"""


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        return f"{float(value):,.2f}"
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=str)
    return str(value)


def _has(values: Any) -> bool:
    # Not plain truthiness: series may arrive as numpy arrays.
    return values is not None and len(values) > 0


def _table(pairs: Mapping[str, Any], keys: Sequence[str] | None = None) -> str:
    rows = []
    for k in keys if keys is not None else pairs:
        if k in pairs:
            v = pairs[k]
            cls = " class=num" if isinstance(v, int | float | np.number) and not isinstance(v, bool) else ""
            rows.append(f"<tr><th>{html.escape(str(k))}</th><td{cls}>{html.escape(_fmt(v))}</td></tr>")
    return f"<table>{''.join(rows)}</table>" if rows else ""


def _lines(fig: go.Figure, x: Sequence[Any], named: Mapping[str, Any], **kw: Any) -> None:
    for name, ys in named.items():
        if _has(ys):
            # SVG, not WebGL (Scattergl): a series holds at most MAX_POINTS points, and a browser
            # gives a page only some 16 WebGL contexts, so a report with more figures drew blank ones.
            fig.add_trace(go.Scatter(x=list(x), y=list(ys), mode="lines", name=str(name)), **kw)


def _new(title: str, *, secondary: bool = False, dates: bool = True) -> go.Figure:
    fig = make_subplots(specs=[[{"secondary_y": True}]]) if secondary else go.Figure()
    # A fixed height: with full_html=False the div is otherwise sized 100% of a parent with no height.
    fig.update_layout(title=title, height=420, template="plotly_white", hovermode="x unified",
                      margin={"l": 60, "r": 60, "t": 50, "b": 40})
    if dates:
        fig.update_xaxes(type="date")
    return fig


def _suppliers(named: Mapping[str, Sequence[float]]) -> dict[str, Sequence[float]]:
    sized = {k: v for k, v in named.items() if _has(v)}
    order = sorted(sized, key=lambda k: sized[k][-1], reverse=True)
    top = {k: sized[k] for k in order[:TOP_SUPPLIERS]}
    rest = order[TOP_SUPPLIERS:]
    if rest:
        top["others"] = np.sum([np.asarray(sized[k], dtype=float) for k in rest], axis=0).tolist()
    return top


def _op_x(op_ticks: Sequence[int], series: Mapping[str, Any]) -> tuple[list[Any], bool]:
    """The operation's x values and whether they are times."""
    when = dict(zip([int(t) for t in _get(series, "tick")], _get(series, "time"), strict=False))
    ticks = [int(t) for t in op_ticks]
    # Fall back to raw ticks rather than mixing dates and numbers on one axis.
    return ([when[t] for t in ticks], True) if all(t in when for t in ticks) else (ticks, False)


def _get(mapping: Mapping[str, Any], key: str) -> Any:
    value = mapping.get(key)
    return value if _has(value) else []


def _named(mapping: Mapping[str, Any], key: str) -> dict[str, Any]:
    return dict(mapping.get(key) or {})


def _how(title: str, period: str, how: str) -> str:
    """A title with how a point was made when the series is aggregated (twin.reporting.downsample)."""
    phrase = period_phrase(period, how)
    return f"{title} ({phrase})" if phrase else title


def _rate(named: Mapping[str, Any], s: Mapping[str, Any]) -> dict[str, Any]:
    """Counts summed by period (twin.reporting.downsample) as a rate per day, the period's sum
    over its days: weeks cut by the run's start or end and months of 28 to 31 days would
    otherwise read as a fall in traffic. Unchanged at half-hour resolution."""
    if str(s.get("period") or "half-hour") == "half-hour" or not _has(s.get("ticks_per_point")):
        return dict(named)
    days = np.asarray(s["ticks_per_point"], float) / 48
    return {k: (np.asarray(v, float) / days).round(1).tolist() for k, v in named.items() if _has(v)}


def _rate_label(period: str) -> str:
    return "per half-hour" if period == "half-hour" else (
        "per day" if period == "day" else f"per day (mean over each {period})")


def _series_figures(s: Mapping[str, Any]) -> list[tuple[str, go.Figure]]:
    x = list(_get(s, "time"))
    if not x:
        return []
    period = str(s.get("period") or "half-hour")
    figs: list[tuple[str, go.Figure]] = []
    _lines(fig := _new(title := f"Messages per CSP {_rate_label(period)}"), x, _rate(_named(s, "messages_by_csp"), s))
    figs.append((title, fig))
    _lines(fig := _new(title := _how("Dark hubs", period, "max")), x,
           {"total": _get(s, "dark_hubs")} | _named(s, "dark_by_csp"))
    figs.append((title, fig))
    _lines(fig := _new(title := _how("Hubs by WAN technology", period, "last")), x, _named(s, "hubs_by_wan"))
    figs.append((title, fig))

    fig = _new(title := _how("Half-hourly data", period, "max"), secondary=True)
    _lines(fig, x, {"HH periods at risk": _get(s, "hh_at_risk")}, secondary_y=False)
    _lines(fig, x, {"HH periods lost (cumulative)": _get(s, "hh_lost_cum")}, secondary_y=True)
    fig.update_yaxes(title_text=_how("at risk", period, "max"), secondary_y=False)
    fig.update_yaxes(title_text="lost (cumulative)", secondary_y=True)
    figs.append((title, fig))

    fig = _new("Alerts", secondary=True)
    for kind, ys in _rate(_named(s, "alerts"), s).items():
        if _has(ys):
            fig.add_trace(go.Scatter(x=x, y=list(ys), name=str(kind), mode="lines", stackgroup="alerts"),
                          secondary_y=False)
    _lines(fig, x, {"peak alerts per second": _get(s, "peak_alerts_per_s")}, secondary_y=True)
    fig.update_yaxes(title_text=f"alerts {_rate_label(period)}", secondary_y=False, rangemode="tozero")
    # From zero too: plotly otherwise aligns the second axis' grid with odd ticks below zero.
    fig.update_yaxes(title_text=_how("peak alerts per second", period, "max"), secondary_y=True, rangemode="tozero")
    figs.append(("Alerts", fig))

    _lines(fig := _new(title := _how("Supplier shares", period, "last")), x, _suppliers(_named(s, "supplier_hubs")))
    fig.update_yaxes(title_text="hubs")
    figs.append((title, fig))
    off = _named(s, "prepay_off_supply")
    if off:
        # Aggregated, each supplier's line is its highest half-hour in the period and "all
        # suppliers" the sum of those (an upper bound when suppliers peak at different half-hours).
        total = np.sum([np.asarray(v, dtype=float) for v in off.values()], axis=0).tolist()
        _lines(fig := _new(title := _how("Prepayment premises off supply for credit", period, "max")), x,
               {"all suppliers": total} | _suppliers(off)
               | {"on emergency credit (all)": _get(s, "prepay_emergency_credit")})
        fig.update_yaxes(title_text="premises")
        figs.append((title, fig))
    if period != "half-hour":
        for _, f in figs:
            f.update_xaxes(title_text=f"time (one point per {period}, UTC)")
    # A missing or empty series leaves its figure without traces; such figures are dropped.
    return [(t, f) for t, f in figs if f.data]


def _capacity_x(cap: Mapping[str, Any], series: Mapping[str, Any]) -> list[Any]:
    """The capacity series' x values: their own times when aggregated (twin.reporting.downsample),
    else the report's times of their ticks (ticks where one is missing)."""
    if _has(cap.get("time")):
        return list(cap["time"])
    when = dict(zip([int(t) for t in _get(series, "tick")], _get(series, "time"), strict=False))
    ticks = [int(t) for t in _get(cap, "tick")]
    return [when[t] for t in ticks] if all(t in when for t in ticks) else ticks


def _level(fig: go.Figure, x: Sequence[Any], y: float, name: str) -> None:
    """A dashed level across the plot (a trace, not a shape: shapes and annotations on a log axis
    take log10 values, and would stretch the axis)."""
    fig.add_trace(go.Scatter(x=[x[0], x[-1]], y=[y, y], mode="lines", name=name, hoverinfo="name+y",
                             line={"color": "#b00020", "dash": "dash", "width": 1.5}))


def _all_zero(named: Mapping[str, Any]) -> bool:
    return not any(any(v for v in ys) for ys in named.values() if _has(ys))


def _capacity_figures(series: Mapping[str, Any]) -> list[tuple[str, go.Figure | str]]:
    """The capacity section (series["capacity"], twin.reporting.capacity.capacity_series): per
    link utilisation, p99 latency of on-demand reads and alerts per CSP against their Target
    Response Time, the share within it, backlog and alerts under load. A figure that would be all
    zero is a sentence saying so instead (an empty chart reads as missing data)."""
    cap = series.get("capacity") or {}
    x = _capacity_x(cap, series)
    if not x:
        return []
    dates = not isinstance(x[0], int)
    period = str(cap.get("period") or "half-hour")
    out: list[tuple[str, go.Figure | str]] = []
    title = ("Link utilisation per half-hour (offered load / capacity)" if period == "half-hour" else
             f"Link utilisation, offered load / capacity ({period_phrase(period, 'max')})")
    fig = _new(title, dates=dates)
    for name, ys in _named(cap, "link_utilisation").items():
        # Colour by CSP region, dash by technology: a region's links read as one family.
        csp, tech = name.split(" ", 1)
        fig.add_trace(go.Scatter(x=x, y=[100 * v for v in ys], mode="lines", name=name,
                                 line={"color": CSP_COLOURS.get(csp), "dash": TECH_DASH.get(tech, "solid")}))
    _level(fig, x, 100.0, "capacity")
    fig.update_yaxes(title_text="% of the link's capacity", rangemode="tozero")
    out.append((title, fig))
    targets = _named(cap, "target_response_s")
    for klass, by_csp in _named(cap, "latency_p99_s").items():
        target = targets.get(klass)
        title = (f"p99 {klass} latency per CSP" + (f" (Target Response Time {target:g} s)" if target else "")
                 + ("" if period == "half-hour" else f", the {period}'s worst half-hour p99"))
        fig = _new(title, dates=dates)
        for csp, ys in by_csp.items():
            # Seconds on a log axis: a tick in which the class sent nothing has no latency (not 0 s).
            fig.add_trace(go.Scatter(x=x, y=[v if v is not None and v > 0 else None for v in ys], mode="lines",
                                     name=csp,
                                     line={"color": CSP_COLOURS.get(csp)}))
        if target:
            _level(fig, x, target, "target")
        fig.update_yaxes(type="log", title_text="p99 latency (log scale)", tickvals=[v for v, _ in LATENCY_TICKS],
                         ticktext=[t for _, t in LATENCY_TICKS])
        out.append((title, fig))
    title = _how("Share answered within the Target Response Time", period, "min")
    within = _named(cap, "within_target")
    if all(v is None or v >= 1.0 for by_csp in within.values() for ys in by_csp.values() for v in ys):
        out.append((title, f"Every {' and '.join(within)} message was answered within its Target Response Time, "
                           "in every CSP region and every half-hour (100%)."))
    else:
        fig = _new(title, dates=dates)
        for klass, by_csp in within.items():
            for csp, ys in by_csp.items():
                fig.add_trace(go.Scatter(x=x, y=[None if v is None else 100 * v for v in ys], mode="lines",
                                         name=f"{csp} {klass}",
                                         line={"color": CSP_COLOURS.get(csp),
                                               "dash": "solid" if klass == "on-demand" else "dot"}))
        fig.update_yaxes(title_text="% of the half-hour's messages" if period == "half-hour" else
                         f"% of the worst half-hour's messages in each {period}", range=[0, 102])
        out.append((title, fig))
    title = ("Backlog per CSP (messages queued at the end of each half-hour)" if period == "half-hour" else
             f"Backlog per CSP (messages queued, {period_phrase(period, 'max')})")
    backlog = _named(cap, "backlog")
    if _all_zero(backlog):
        out.append((title, "No message was queued at the end of any half-hour: every link served what it was offered."))
    else:
        fig = _new(title, secondary=True, dates=dates)
        for csp, ys in backlog.items():
            fig.add_trace(go.Scatter(x=x, y=list(ys), mode="lines", name=f"{csp} backlog",
                                     line={"color": CSP_COLOURS.get(csp)}), secondary_y=False)
        for csp, ys in _named(cap, "oldest_age_s").items():
            fig.add_trace(go.Scatter(x=x, y=[v / 3600 for v in ys], mode="lines", name=f"{csp} oldest queued",
                                     line={"color": CSP_COLOURS.get(csp), "dash": "dot"}), secondary_y=True)
        fig.update_yaxes(title_text="messages queued", secondary_y=False, rangemode="tozero")
        fig.update_yaxes(title_text="age of the oldest queued message, hours", secondary_y=True, rangemode="tozero")
        out.append((title, fig))
    title = f"Device alerts under load ({_rate_label(period)}, all CSPs)"
    alerts = _named(cap, "alerts")
    levels = {k: v for k, v in alerts.items() if k == "failed_queue"}
    alerts = _rate({k: v for k, v in alerts.items() if k != "failed_queue"}, cap) | levels
    if _all_zero(alerts):
        out.append((title, "No device alert was delayed, throttled (SECMP0062), failed or expired in the run."))
    else:
        fig = _new(title, secondary=True, dates=dates)
        for k, ys in alerts.items():
            if k != "failed_queue" and _has(ys):
                fig.add_trace(go.Scatter(x=x, y=list(ys), mode="lines", name=k,
                                         line={"color": ALERT_COLOURS.get(k)}), secondary_y=False)
        if _has(alerts.get("failed_queue")):
            fig.add_trace(go.Scatter(x=x, y=list(alerts["failed_queue"]), mode="lines", name="in the failed-alert queue",
                                     line={"color": "#555", "dash": "dot"}), secondary_y=True)
        fig.update_yaxes(title_text=f"alerts {_rate_label(period)}", secondary_y=False, rangemode="tozero")
        fig.update_yaxes(title_text=_how("alerts in the failed queue", period, "max"), secondary_y=True,
                         rangemode="tozero")
        out.append((title, fig))
    if period != "half-hour":
        for _, f in out:
            if isinstance(f, go.Figure):
                f.update_xaxes(title_text=f"time (one point per {period}, UTC)")
    return out


def _capacity_tables(cap: Mapping[str, Any]) -> str:
    """The run's capacity figures (summary["capacity"], twin.reporting.capacity.capacity_summary)
    as two tables: link utilisation at its peak, and service per CSP at its worst."""
    if not cap:
        return ""
    peak = cap.get("peak_link_utilisation") or {}
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td class=num>{100 * v:.0f}%</td></tr>"
                   for k, v in sorted(peak.items(), key=lambda kv: -kv[1]))
    rows += (f"<tr><th>central DSP stage</th><td class=num>{100 * cap.get('dsp_peak_utilisation', 0):.0f}%</td></tr>"
             f"<tr><th>busiest North base station</th>"
             f"<td class=num>{100 * cap.get('base_station_peak_utilisation', 0):.0f}%</td></tr>")
    links = f"<table><tr><th>stage</th><th>peak utilisation</th></tr>{rows}</table>"
    csps = list(cap.get("worst_p99_s") or {})
    targets = cap.get("target_response_s") or {}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in csps)
    body = []
    for klass, target in targets.items():
        cells = []
        for c in csps:
            p99, share = cap["worst_p99_s"][c][klass], cap["min_within_target"][c][klass]
            style = " style='color:#b00020;font-weight:600'" if p99 > target else ""
            cells.append(f"<td class=num{style}>{format_seconds(p99)} · {100 * share:.1f}%</td>")
        body.append(f"<tr><th>{html.escape(klass)} (target {format_seconds(target)})</th>{''.join(cells)}</tr>")
    alerts = cap.get("alerts") or {}
    for k in ("delayed", "throttled", "failed", "expired"):
        if k in alerts:
            body.append(f"<tr><th>alerts {k}</th>"
                        + "".join(f"<td class=num>{alerts[k].get(c, 0):,}</td>" for c in csps) + "</tr>")
    body.append("<tr><th>peak backlog, messages</th>"
                + "".join(f"<td class=num>{(cap.get('peak_backlog') or {}).get(c, 0):,}</td>" for c in csps) + "</tr>")
    service = (f"<table><tr><th>worst tick: p99 latency · lowest share within target</th>{head}</tr>"
               f"{''.join(body)}</table>")
    return links + service


def _op_figure(op: Mapping[str, Any], series: Mapping[str, Any],
               period: str = "half-hour") -> tuple[str, go.Figure] | None:
    op_series = op.get("series") or {}
    counters = {k: v for k, v in op_series.items() if k not in ("tick", "time") and _has(v)}
    if not counters:
        return None
    if _has(op_series.get("time")):
        x, dates = list(op_series["time"]), True
    else:
        ticks = _get(op_series, "tick")
        if not _has(ticks):
            return None
        x, dates = _op_x(ticks, series)
    fig = _new(title := f"{op.get('name', '?')} ({op.get('kind', '?')})"
               + ("" if period == "half-hour" else f", {period_phrase(period, 'last')}"), dates=dates)
    _lines(fig, x, counters)
    return title, fig


def _figures(report: Mapping[str, Any]) -> list[tuple[str, go.Figure, Mapping[str, Any] | None]]:
    """Figures in page order, each with the operation metadata to show under it (if any)."""
    report = downsample_run_report(report)
    series = raw = report.get("series") or {}
    period = str(series.get("period") or "half-hour")
    out: list[tuple[str, go.Figure, Mapping[str, Any] | None]] = [
        (t, f, None) for t, f in _series_figures(series)]
    out += [(t, f, None) for t, f in _capacity_figures(series) if isinstance(f, go.Figure)]
    for op in report.get("operations") or []:
        if (made := _op_figure(op, raw, period)) is not None:
            out.append((*made, op.get("metadata") or {}))
    return out


def build_figures(report: dict) -> list[tuple[str, go.Figure]]:
    """(title, figure) pairs in page order: fleet series first, the network's capacity, then one
    per operation with data."""
    return [(title, fig) for title, fig, _ in _figures(report)]


def write_html(report: dict, path: pathlib.Path) -> None:
    """Write the report as one HTML page that needs no network: plotly.js is inlined once."""
    scenario = report.get("scenario") or {}
    name = html.escape(str(scenario.get("name", "twin run")))
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{name}</title>"
             f"<style>{CSS}</style></head><body><h1>{name}</h1>",
             f"<p>{html.escape(str(scenario.get('description', '')))}</p>",
             "<h2>Summary</h2>", _table(report.get("summary") or {}, SUMMARY_KEYS),
             "<h2>Configuration</h2>", _table(report.get("config") or {}, CONFIG_KEYS)]
    # Page order: fleet series, the capacity section (its tables, then each figure or the sentence
    # that stands for an all-zero one), then each operation with its metadata.
    days = (report.get("config") or {}).get("days")
    report = downsample_run_report(report)
    series = raw = report.get("series") or {}
    period = str(series.get("period") or "half-hour")
    if period != "half-hour":
        run = f"A run of {days:,.0f} days" if days else "A long run"
        parts.append(f"<p>{run}: each series is aggregated by {period} "
                     f"(at most {MAX_POINTS:,} points per series): counts are summed over the {period} and drawn "
                     "as a rate per day; peaks, p99 latencies, backlogs and dark hubs are the highest half-hour of "
                     "the period, shares within target the lowest, and "
                     "levels (hubs by WAN, supplier shares, cumulative counts) the last. The half-hourly figures "
                     "are in the run's history (<code>twin history</code>).</p>")
    blocks: list[tuple[str, go.Figure | str, Mapping[str, Any] | None]] = [
        (t, f, None) for t, f in _series_figures(series)]
    capacity = _capacity_figures(series)
    if capacity:
        cap_summary = (report.get("summary") or {}).get("capacity") or {}
        blocks.append(("", "<h2>Network capacity and service levels</h2>" + _capacity_tables(cap_summary), None))
        blocks += [(t, f if isinstance(f, go.Figure) else f"<p><b>{html.escape(t)}</b>: {html.escape(f)}</p>", None)
                   for t, f in capacity]
    for op in report.get("operations") or []:
        if (made := _op_figure(op, raw, period)) is not None:
            blocks.append((*made, op.get("metadata") or {}))
    first = True
    for title, fig, metadata in blocks:
        if isinstance(fig, str):
            parts.append(fig)
            continue
        if metadata is not None:
            parts.append(f"<h2>{html.escape(title)}</h2>")
        # Only the first figure carries plotly.js: the page must work offline and inline it just once.
        div = pio.to_html(fig, include_plotlyjs=first, full_html=False, config={"displaylogo": False})
        first = False
        parts.append(f"<div class=fig>{div}</div>")
        if metadata is not None:
            parts.append(_table(metadata))
    parts.append(f"<footer>Generated by twin at {html.escape(str(report.get('generated_at', '')))}</footer>"
                 "</body></html>")
    pathlib.Path(path).write_text("\n".join(parts), encoding="utf-8")
