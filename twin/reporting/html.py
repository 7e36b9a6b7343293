"""Render a run report dict as one self-contained, offline HTML page with interactive plotly figures.

Written for a person reading it: every label is words (never a report key), every axis has a
title with its unit, a chart with a second axis starts both from zero, a series that is zero
throughout is left out and named in a sentence under its chart, a chart with nothing to draw is a
sentence, runs longer than a few days are drawn by day or longer (twin.reporting.downsample
readable_period), and every operation has its progress plot or a sentence why there is none."""

from __future__ import annotations

import html
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from twin.reporting.downsample import MAX_POINTS, downsample_run_report, period_phrase, readable_period
from twin.util.units import format_seconds

# The summary's and configuration's figures shown, in order, as people read them.
SUMMARY_LABELS = {
    "hubs": "comms hubs", "meters": "meters", "messages_total": "messages in all",
    "messages_per_reachable_meter_month": "messages per reachable meter per month",
    "device_alerts_per_reachable_meter_month": "device alerts per reachable meter per month",
    "peak_alerts_per_s": "peak alert rate, alerts per second",
    "hh_periods_lost": "half-hourly periods lost",
    "hh_periods_at_risk": "half-hourly periods at risk at the end (unread, on dark hubs' meters)",
    "dark_hubs": "dark hubs at the end, by CSP region", "wall_s": "wall-clock time of the run",
    "state_hash": "state hash of the fleet at the end"}
SUMMARY_KEYS = tuple(SUMMARY_LABELS)
CONFIG_LABELS = {"hubs": "comms hubs", "seed": "fleet seed", "shards": "shard actors", "days": "simulated days",
                 "start": "simulated start"}
CONFIG_KEYS = tuple(CONFIG_LABELS)
ALERT_LABELS = {
    "POWER_OUTAGE": "power outage (AD1)", "POWER_RESTORED": "supply outage restored",
    "LOW_BATTERY": "low battery (gas meter)", "FIRMWARE_TRANSFER_OK": "firmware transfer succeeded",
    "FIRMWARE_TRANSFER_FAIL": "firmware transfer failed", "FIRMWARE_ACTIVATED": "firmware activated",
    "EMERGENCY_CREDIT_ACTIVATED": "emergency credit activated",
    "CREDIT_BELOW_DISABLEMENT": "credit below disablement (supply off)",
    "SUPPLY_ARMED": "supply armed (credit topped up)"}
WAN_LABELS = {"none": "no WAN"}
OPERATION_LABELS = {
    "firmware_rollout": "Firmware rollout", "supplier_switch": "Change of supplier",
    "churn_campaign": "Supplier churn campaign", "supplier_failure": "Supplier failure",
    "network_switch_off": "Network switch-off", "swap_programme": "4G comms hub swap programme",
    "vwan_fallback": "VWAN fallback", "power_outage": "Power outage", "base_station_failure": "Base station failure",
    "csp_incident": "CSP incident", "service_request": "Service Request", "mhhs_migration": "MHHS migration",
    "on_demand_reads": "On-demand read campaign"}
# What an operation's counts count (the y axis of its progress plot).
OPERATION_UNITS = {
    "firmware_rollout": "devices", "supplier_switch": "switches", "churn_campaign": "switches",
    "supplier_failure": "customers", "swap_programme": "premises", "vwan_fallback": "premises",
    "power_outage": "premises", "base_station_failure": "hubs", "service_request": "requests",
    "mhhs_migration": "meters (ESMEs)", "on_demand_reads": "reads", "network_switch_off": "hubs",
    "csp_incident": "hubs"}
COUNTER_LABELS = {
    "done": "done (swapped or onboarded)", "eligible": "still eligible", "eligible_priority": "still eligible, priority",
    "pending_no_wan": "waiting, hub has no WAN", "activating_no_wan": "activating, hub has no WAN",
    "left_supplier": "left the rollout's suppliers", "switched_smart": "switched, still smart",
    "dumb": "switched, lost smart function", "premises_in_area": "premises in the area",
    "premises_cut": "premises cut off", "premises_already_unpowered": "premises already unpowered",
    "hubs_affected": "hubs affected", "waves_done": "waves applied", "waves": "waves planned",
    "credit_pence": "credit, pence", "tariff_dp": "tariff, decimal places", "percent_done": "done, %",
    "off_tick": "switched off at tick", "end_tick": "ends at tick", "awaiting_activation": "awaiting activation",
    "target_version": "target version", "current_wave": "current wave",
    "hubs_on_network": "on the network", "hubs_cut_off": "cut off (dark)"}
# Ticks an operation is scheduled at: a time, not a count that progresses.
SCHEDULE_KEYS = {"off_tick": "switch-off", "end_tick": "its end", "next_wave_tick": "next wave"}
# A chart of fewer points than this marks each (a week's run by day is seven points).
MARKED_POINTS = 32
TOP_SUPPLIERS = 8

# The dashboard's colours for the CSP regions (dashboard/figures.py CSP_COLOURS), and a dash per
# WAN technology for the links.
CSP_COLOURS = {"North": "#1f77b4", "Central": "#ff7f0e", "South": "#2ca02c"}
TECH_DASH = {"LRR": "solid", "2G": "dash", "3G": "solid", "4G": "dot", "VWAN": "dashdot"}
ALERT_OUTCOME_LABELS = {"throttled": "throttled (SECMP0062)", "redelivered": "redelivered from the failed queue"}
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


def _human(key: str) -> str:
    """A report key as words: "pending_no_wan" -> "pending no wan" when no label names it."""
    return str(key).replace("_", " ")


def _label(key: str, labels: Mapping[str, str]) -> str:
    return labels.get(key, _human(key))


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "-"}[value]
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        return f"{float(value):,.2f}"
    if isinstance(value, Mapping):
        return " · ".join(f"{_human(k)} {_fmt(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _has(values: Any) -> bool:
    # Not plain truthiness: series may arrive as numpy arrays.
    return values is not None and len(values) > 0


def _zero(values: Any) -> bool:
    """All zero or missing (None: no value that tick)."""
    return not any(v for v in values if v is not None)


def _row(label: str, value: Any) -> str:
    cls = " class=num" if isinstance(value, int | float | np.number) and not isinstance(value, bool) else ""
    return f"<tr><th>{html.escape(label)}</th><td{cls}>{html.escape(_fmt(value))}</td></tr>"


def _table(pairs: Mapping[str, Any], labels: Mapping[str, str], keys: Sequence[str] | None = None) -> str:
    rows = [_row(_label(k, labels), pairs[k]) for k in (keys if keys is not None else pairs) if k in pairs]
    return f"<table>{''.join(rows)}</table>" if rows else ""


def _summary_table(summary: Mapping[str, Any]) -> str:
    """The run's headline figures in words: dark hubs per region with their total, the wall-clock
    time as a duration."""
    shown = {k: summary[k] for k in SUMMARY_KEYS if k in summary}
    if isinstance(shown.get("dark_hubs"), Mapping):
        dark = shown["dark_hubs"]
        shown["dark_hubs"] = (" · ".join(f"{k} {int(v):,}" for k, v in dark.items())
                              + f" ({sum(int(v) for v in dark.values()):,} in all)")
    if isinstance(shown.get("wall_s"), int | float):
        shown["wall_s"] = format_seconds(float(shown["wall_s"]))
    return _table(shown, SUMMARY_LABELS)


@dataclass
class Block:
    """One chart of the page: its title, the figure (None: the note stands for it) and a note in
    words under it; an operation's block has a heading and its metadata table."""

    title: str
    fig: go.Figure | None
    note: str = ""
    metadata: Mapping[str, Any] | None = None


def _lines(fig: go.Figure, x: Sequence[Any], named: Mapping[str, Any], labels: Mapping[str, str] | None = None,
           shape: str = "linear") -> list[str]:
    """A line per series of `named` that is not zero throughout; returns the labels of those left
    out (said in words under the chart: a flat zero line in a legend reads as data)."""
    left_out = []
    marked = len(x) < MARKED_POINTS
    for name, ys in named.items():
        label = _label(name, labels or {})
        if not _has(ys):
            continue
        if _zero(ys):
            left_out.append(label)
            continue
        # SVG, not WebGL (Scattergl): a series holds at most MAX_POINTS points, and a browser
        # gives a page only some 16 WebGL contexts, so a report with more figures drew blank ones.
        fig.add_trace(go.Scatter(x=list(x), y=list(ys), mode="lines+markers" if marked else "lines", name=label,
                                 line={"shape": shape}))
    return left_out


def _left_out(names: Sequence[str], what: str = "") -> str:
    if not names:
        return ""
    return f"Zero throughout the run, so not drawn: {_and(list(names))}{what}."


def _x_title(period: str, dates: bool = True) -> str:
    if not dates:
        return "tick (half-hours from the start of the run)"
    return "time (UTC)" if period == "half-hour" else f"time (one point per {period}, UTC)"


def _new(title: str, ytitle: str = "", period: str = "half-hour", *, dates: bool = True) -> go.Figure:
    """An empty figure titled `title`, its one y axis `ytitle` from zero and its x axis the time
    (UTC), saying the period when aggregated, or the tick when not `dates`. One y axis only: a
    second one on the same plot put its zero level with the first one's millions."""
    fig = go.Figure()
    # A fixed height: with full_html=False the div is otherwise sized 100% of a parent with no height.
    # The legend below the plot: at the right it squeezed the plot and clipped long names.
    fig.update_layout(title=title, height=460, template="plotly_white", hovermode="x unified",
                      margin={"l": 70, "r": 40, "t": 50, "b": 40},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0})
    fig.update_xaxes(title_text=_x_title(period, dates))
    if dates:
        fig.update_xaxes(type="date")
    fig.update_yaxes(rangemode="tozero")
    if ytitle:
        fig.update_yaxes(title_text=ytitle)
    return fig


def _suppliers(named: Mapping[str, Sequence[float]]) -> dict[str, Sequence[float]]:
    sized = {k: v for k, v in named.items() if _has(v)}
    order = sorted(sized, key=lambda k: sized[k][-1], reverse=True)
    top = {k: sized[k] for k in order[:TOP_SUPPLIERS]}
    rest = order[TOP_SUPPLIERS:]
    if rest:
        top[f"the other {len(rest)} suppliers"] = np.sum([np.asarray(sized[k], dtype=float) for k in rest], axis=0).tolist()
    return top


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


def _chart(title: str, ytitle: str, period: str, x: Sequence[Any], named: Mapping[str, Any],
           labels: Mapping[str, str] | None = None, *, empty: str) -> Block | None:
    """A line chart of `named`, its all-zero series named under it; `empty` stands for it when
    every series is zero. None when there is no series at all (a report without it)."""
    if not any(_has(v) for v in named.values()):
        return None
    fig = _new(title, ytitle, period)
    left_out = _lines(fig, x, named, labels)
    if not fig.data:
        return Block(title, None, empty)
    return Block(title, fig, _left_out(left_out))


def _series_blocks(s: Mapping[str, Any]) -> list[Block]:
    x = list(_get(s, "time"))
    if not x:
        return []
    period = str(s.get("period") or "half-hour")
    rate = _rate_label(period)
    blocks = [
        _chart(f"Messages per CSP region {rate}", f"messages {rate}", period, x, _rate(_named(s, "messages_by_csp"), s),
               empty="No message was sent in the run."),
        _chart(_how("Dark hubs", period, "max"), "hubs with no WAN connection", period, x,
               {"all regions": _get(s, "dark_hubs")} | _named(s, "dark_by_csp"),
               empty="No hub was dark at any time in the run."),
        _chart(_how("Hubs by WAN technology", period, "last"), "hubs", period, x, _named(s, "hubs_by_wan"), WAN_LABELS,
               empty="No hub had a WAN technology in the run."),
    ]
    # At risk and lost are different quantities of different sizes: two charts, each from zero,
    # never one axis' zero drawn at the other's millions.
    at_risk = _chart(_how("Half-hourly periods at risk (unread, on dark hubs' meters)", period, "max"),
                     "half-hourly periods", period, x, {"at risk": _get(s, "hh_at_risk")},
                     empty="No half-hourly period was at risk at any time in the run.")
    lost = _get(s, "hh_lost_cum")
    if _has(lost) and _zero(lost):
        if at_risk is not None:
            at_risk.note = " ".join(filter(None, [at_risk.note, "No half-hourly period was lost in the run."]))
        blocks.append(at_risk)
    else:
        blocks += [at_risk, _chart(_how("Half-hourly periods lost since the start of the run", period, "last"),
                                   "half-hourly periods (cumulative)", period, x, {"lost": lost}, empty="")]
    alerts = _rate(_named(s, "alerts"), s)
    if any(_has(v) for v in alerts.values()):
        title = f"Device alerts by kind, {rate}"
        fig = _new(title, f"alerts {rate} (stacked)", period)
        left_out = []
        for kind, ys in alerts.items():
            if _has(ys) and _zero(ys):
                left_out.append(_label(kind, ALERT_LABELS))
            elif _has(ys):
                fig.add_trace(go.Scatter(x=x, y=list(ys), name=_label(kind, ALERT_LABELS), mode="lines",
                                         stackgroup="alerts"))
        blocks.append(Block(title, fig, _left_out(left_out, " alerts")) if fig.data else
                      Block(title, None, "No device alert was raised in the run."))
    blocks.append(_chart(_how("Peak alert rate", period, "max"), "alerts per second", period, x,
                         {"peak alerts per second": _get(s, "peak_alerts_per_s")},
                         empty="No device alert was raised in the run."))
    blocks.append(_chart(_how("Supplier shares", period, "last"), "hubs", period, x,
                         _suppliers(_named(s, "supplier_hubs")), empty="No supplier held a hub in the run."))
    off = _named(s, "prepay_off_supply")
    if off:
        # Aggregated, each supplier's line is its highest half-hour in the period and "all
        # suppliers" the sum of those (an upper bound when suppliers peak at different half-hours).
        total = np.sum([np.asarray(v, dtype=float) for v in off.values()], axis=0).tolist()
        blocks.append(_chart(_how("Prepayment premises off supply for credit", period, "max"), "premises", period, x,
                             {"all suppliers": total} | _suppliers(off)
                             | {"on emergency credit (all suppliers)": _get(s, "prepay_emergency_credit")},
                             empty="No prepayment premises was off supply or on emergency credit in the run."))
    return [b for b in blocks if b is not None and (b.fig is not None or b.note)]


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


def _capacity_blocks(series: Mapping[str, Any]) -> list[Block]:
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
    out: list[Block] = []
    title = ("Link utilisation per half-hour (offered load / capacity)" if period == "half-hour" else
             f"Link utilisation, offered load / capacity ({period_phrase(period, 'max')})")
    fig = _new(title, "% of the link's capacity", period, dates=dates)
    idle = []
    for name, ys in _named(cap, "link_utilisation").items():
        if _zero(ys):
            idle.append(name)
            continue
        # Colour by CSP region, dash by technology: a region's links read as one family.
        csp, tech = name.split(" ", 1)
        fig.add_trace(go.Scatter(x=x, y=[100 * v for v in ys], mode="lines", name=name,
                                 line={"color": CSP_COLOURS.get(csp), "dash": TECH_DASH.get(tech, "solid")}))
    _level(fig, x, 100.0, "capacity")
    out.append(Block(title, fig, f"Carried nothing in the run, so not drawn: {_and(idle)}." if idle else ""))
    targets = _named(cap, "target_response_s")
    for klass, by_csp in _named(cap, "latency_p99_s").items():
        target = targets.get(klass)
        title = (f"p99 {klass} latency per CSP" + (f" (Target Response Time {target:g} s)" if target else "")
                 + ("" if period == "half-hour" else f", the {period}'s worst half-hour p99"))
        fig = _new(title, "p99 latency (log scale)", period, dates=dates)
        silent = []
        for csp, ys in by_csp.items():
            # Seconds on a log axis: a tick in which the class sent nothing has no latency (not 0 s).
            shown = [v if v is not None and v > 0 else None for v in ys]
            if _zero(shown):
                silent.append(csp)
                continue
            fig.add_trace(go.Scatter(x=x, y=shown, mode="lines", name=csp, line={"color": CSP_COLOURS.get(csp)}))
        if target:
            _level(fig, x, target, "target")
        fig.update_yaxes(type="log", rangemode="normal", tickvals=[v for v, _ in LATENCY_TICKS],
                         ticktext=[t for _, t in LATENCY_TICKS])
        out.append(Block(title, fig, f"No {klass} message in the run, so not drawn: {_and(silent)}." if silent else ""))
    title = _how("Share answered within the Target Response Time", period, "min")
    within = _named(cap, "within_target")
    if all(v is None or v >= 1.0 for by_csp in within.values() for ys in by_csp.values() for v in ys):
        out.append(Block(title, None, f"Every {' and '.join(within)} message was answered within its Target "
                                      "Response Time, in every CSP region and every half-hour (100%)."))
    else:
        fig = _new(title, "% of the half-hour's messages" if period == "half-hour" else
                   f"% of the worst half-hour's messages in each {period}", period, dates=dates)
        for klass, by_csp in within.items():
            for csp, ys in by_csp.items():
                fig.add_trace(go.Scatter(x=x, y=[None if v is None else 100 * v for v in ys], mode="lines",
                                         name=f"{csp} {klass}",
                                         line={"color": CSP_COLOURS.get(csp),
                                               "dash": "solid" if klass == "on-demand" else "dot"}))
        fig.update_yaxes(range=[0, 102])
        out.append(Block(title, fig))
    title = ("Backlog per CSP (messages queued at the end of each half-hour)" if period == "half-hour" else
             f"Backlog per CSP (messages queued, {period_phrase(period, 'max')})")
    backlog = _named(cap, "backlog")
    if _all_zero(backlog):
        out.append(Block(title, None, "No message was queued at the end of any half-hour: every link served what it "
                                      "was offered."))
    else:
        # Queue length and the oldest message's age are two charts: two axes on one would draw
        # each one's zero and scale where the other's data is.
        fig = _new(title, "messages queued", period, dates=dates)
        for csp, ys in backlog.items():
            if not _zero(ys):
                fig.add_trace(go.Scatter(x=x, y=list(ys), mode="lines", name=csp, line={"color": CSP_COLOURS.get(csp)}))
        empty = [csp for csp, ys in backlog.items() if _zero(ys)]
        out.append(Block(title, fig, f"Nothing queued at any time in {_and(empty)}." if empty else ""))
        ages = {csp: [v / 3600 for v in ys] for csp, ys in _named(cap, "oldest_age_s").items()}
        if ages and not _all_zero(ages):
            age_title = ("Age of the oldest queued message per CSP" if period == "half-hour" else
                         f"Age of the oldest queued message per CSP ({period_phrase(period, 'max')})")
            fig = _new(age_title, "hours", period, dates=dates)
            for csp, ys in ages.items():
                if not _zero(ys):
                    fig.add_trace(go.Scatter(x=x, y=ys, mode="lines", name=csp, line={"color": CSP_COLOURS.get(csp)}))
            out.append(Block(age_title, fig))
    title = f"Device alerts under load ({_rate_label(period)}, all CSPs)"
    alerts = _named(cap, "alerts")
    queue = alerts.pop("failed_queue", None)
    alerts = _rate(alerts, cap)
    if _all_zero(alerts) and (not _has(queue) or _zero(queue)):
        out.append(Block(title, None, "No device alert was delayed, throttled (SECMP0062), failed or expired in the "
                                      "run."))
    else:
        fig = _new(title, f"alerts {_rate_label(period)}", period, dates=dates)
        left_out = []
        for k, ys in alerts.items():
            if _has(ys) and _zero(ys):
                left_out.append(_label(k, ALERT_OUTCOME_LABELS))
            elif _has(ys):
                fig.add_trace(go.Scatter(x=x, y=list(ys), mode="lines", name=_label(k, ALERT_OUTCOME_LABELS),
                                         line={"color": ALERT_COLOURS.get(k)}))
        out.append(Block(title, fig, _left_out(left_out)) if fig.data else
                   Block(title, None, "No device alert was delayed, throttled (SECMP0062), failed or expired in the "
                                      "run."))
        if _has(queue) and not _zero(queue):
            # A level, not a rate: its own chart rather than a second axis.
            q_title = _how("Alerts waiting in the failed-alert queue", period, "max")
            fig = _new(q_title, "alerts in the queue", period, dates=dates)
            fig.add_trace(go.Scatter(x=x, y=list(queue), mode="lines", name="in the failed-alert queue",
                                     line={"color": "#555"}))
            out.append(Block(q_title, fig))
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


def _tick_time(tick: int, raw: Mapping[str, Any], series: Mapping[str, Any]) -> Any:
    """Where tick `tick` falls on the charts' time axis: its time in the raw (half-hourly) series,
    else the start of the aggregated point holding it; None when it is outside the run."""
    ticks = [int(t) for t in _get(raw, "tick")]
    if ticks and str(raw.get("period") or "half-hour") == "half-hour":
        when = dict(zip(ticks, _get(raw, "time"), strict=False))
        return when.get(int(tick))
    starts = [int(t) for t in _get(series, "tick")]
    i = int(np.searchsorted(starts, int(tick), side="right")) - 1
    if i < 0 or int(tick) >= starts[-1] + int((_get(series, "ticks_per_point") or [1])[-1]):
        return None
    return series["time"][i]


def _op_x(op_ticks: Sequence[int], series: Mapping[str, Any]) -> tuple[list[Any], bool]:
    """The operation's x values and whether they are times."""
    when = dict(zip([int(t) for t in _get(series, "tick")], _get(series, "time"), strict=False))
    ticks = [int(t) for t in op_ticks]
    # Fall back to raw ticks rather than mixing dates and numbers on one axis.
    return ([when[t] for t in ticks], True) if all(t in when for t in ticks) else (ticks, False)


def _op_block(op: Mapping[str, Any], raw: Mapping[str, Any], series: Mapping[str, Any], period: str) -> Block:
    """The progress plot of one operation: its counts over the run as steps (each held until it
    changed, drawn on to the run's end); for one that only applies at a time (a switch-off, an
    incident) the dark hubs per CSP region around it, with that time marked; else a sentence."""
    kind = str(op.get("kind", ""))
    title = f"{OPERATION_LABELS.get(kind, _human(kind).capitalize() or 'Operation')}: {op.get('name', '?')}"
    given = op.get("metadata") or {}
    # Empty text left out; a scheduled tick also as the time it falls at.
    metadata = {k: v for k, v in given.items() if v != ""}
    for k in SCHEDULE_KEYS:
        if isinstance(metadata.get(k), int) and metadata[k] >= 0:
            when = _tick_time(metadata[k], raw, series)
            metadata[k] = f"{metadata[k]:,}" + (f" ({str(when)[:16].replace('T', ' ')} UTC)" if when else
                                                " (after the run's end)")
    op_series = op.get("series") or {}
    counters = {k: v for k, v in op_series.items() if k not in ("tick", "time") and k not in SCHEDULE_KEYS
                and _has(v)}
    if _has(op_series.get("time")):
        x, dates = list(op_series["time"]), True
    else:
        x, dates = _op_x(_get(op_series, "tick"), raw)
    if counters and x:
        end = _get(series, "time")
        if dates and _has(end) and len(str(end[-1])) == len(str(x[-1])) and str(end[-1]) > str(x[-1]):
            # Steps drawn on to the run's end: a count that stopped changing still holds.
            x = [*x, end[-1]]
            counters = {k: [*v, v[-1]] for k, v in counters.items()}
        fig = _new(title, OPERATION_UNITS.get(kind, "count"), period if dates else "half-hour", dates=dates)
        left_out = _lines(fig, x, counters, COUNTER_LABELS, shape="hv")
        if dates and _has(end):
            # The whole run on the x axis, as on the fleet's charts above: one started late shows so.
            fig.update_xaxes(range=[end[0], end[-1]])
        if fig.data:
            return Block(title, fig, _left_out(left_out), metadata)
        return Block(title, None, f"Its counts ({_and(left_out)}) stayed at zero throughout the run.", metadata)
    marks = {label: _tick_time(int(given[k]), raw, series) for k, label in SCHEDULE_KEYS.items()
             if isinstance(given.get(k), int | float) and given[k] >= 0}
    marks = {label: t for label, t in marks.items() if t is not None}
    dark = {"all regions": _get(series, "dark_hubs")} | _named(series, "dark_by_csp")
    xs = list(_get(series, "time"))
    if marks and xs and any(_has(v) for v in dark.values()):
        what = "the switch-off" if kind == "network_switch_off" else "it"
        fig = _new(f"{title}: dark hubs per CSP region around {what}" + (
            "" if period == "half-hour" else f" ({period_phrase(period, 'max')})"),
            "hubs with no WAN connection", period)
        left_out = _lines(fig, xs, dark)
        top = max((max(v for v in t.y if v is not None) for t in fig.data), default=1) or 1
        for label, t in marks.items():
            # A trace, not a shape: it is named in the legend and hovers with its time.
            fig.add_trace(go.Scatter(x=[t, t], y=[0, top], mode="lines", name=label, hoverinfo="name+x",
                                     line={"color": "#b00020", "dash": "dash", "width": 1.5}))
        label = OPERATION_LABELS.get(kind, _human(kind).capitalize())
        marked = _and([m if m.startswith("its") else f"the {m}" for m in marks])
        note = (f"The {label[0].lower() + label[1:] if label[1:2].islower() else label} reports no counts over "
                f"time; what it did shows in the hubs left dark, with {marked} marked. "
                + _left_out(left_out))
        return Block(title, fig, note.strip(), metadata)
    if marks or metadata.get("state"):
        return Block(title, None, "Nothing to draw: the operation reported no counts over the run.", metadata)
    return Block(title, None, "Nothing to draw: no progress was recorded for the operation in the run.", metadata)


def _readable(report: Mapping[str, Any]) -> tuple[dict[str, Any], Mapping[str, Any]]:
    """The report as the charts draw it (per day or longer beyond a few days, readable_period),
    and its series as given (half-hourly unless aggregated already), which place ticks in time."""
    raw = report.get("series") or {}
    if raw.get("period") not in (None, "half-hour"):
        return dict(report), raw
    return downsample_run_report(report, period=readable_period(len(_get(raw, "time")))), raw


def _blocks(report: Mapping[str, Any]) -> list[Block]:
    """Every block in page order: fleet series, the network's capacity, one per operation."""
    shown, raw = _readable(report)
    series = shown.get("series") or {}
    period = str(series.get("period") or "half-hour")
    blocks = _series_blocks(series) + _capacity_blocks(series)
    blocks += [_op_block(op, raw, series, period) for op in shown.get("operations") or []]
    return blocks


def build_figures(report: dict) -> list[tuple[str, go.Figure]]:
    """(title, figure) pairs in page order: fleet series first, the network's capacity, then one
    per operation with something to draw (the page says in words what has none)."""
    return [(b.title, b.fig) for b in _blocks(report) if b.fig is not None]


def write_html(report: dict, path: pathlib.Path) -> None:
    """Write the report as one HTML page that needs no network: plotly.js is inlined once."""
    scenario = report.get("scenario") or {}
    name = html.escape(str(scenario.get("name", "twin run")))
    config = dict(report.get("config") or {})
    if isinstance(config.get("days"), int | float):
        config["days"] = f"{config['days']:g}"
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{name}</title>"
             f"<style>{CSS}</style></head><body><h1>{name}</h1>",
             f"<p>{html.escape(str(scenario.get('description', '')))}</p>",
             "<h2>Summary</h2>", _summary_table(report.get("summary") or {}),
             "<h2>Configuration</h2>", _table(config, CONFIG_LABELS, CONFIG_KEYS)]
    shown, raw = _readable(report)
    series = shown.get("series") or {}
    period = str(series.get("period") or "half-hour")
    days = config.get("days")
    if period != "half-hour":
        run = f"A run of {days} days" if days else "A long run"
        kept = (" and in report.json" if str(raw.get("period") or "half-hour") == "half-hour" else "")
        parts.append(f"<p>{run}: each chart draws one point per {period} "
                     f"(at most {MAX_POINTS:,} points per series): counts are summed over the {period} and drawn "
                     "as a rate per day; peaks, p99 latencies, backlogs and dark hubs are the highest half-hour of "
                     "the period, shares within target the lowest, and "
                     "levels (hubs by WAN, supplier shares, cumulative counts, operations' progress) the last. "
                     f"The half-hourly figures are in the run's history (<code>twin history</code>){kept}.</p>")
    blocks = _series_blocks(series)
    capacity = _capacity_blocks(series)
    cap_summary = (report.get("summary") or {}).get("capacity") or {}
    ops = [_op_block(op, raw, series, period) for op in shown.get("operations") or []]
    first = True
    for i, block in enumerate(blocks + capacity + ops):
        is_op = block.metadata is not None
        if capacity and i == len(blocks):
            parts.append("<h2>Network capacity and service levels</h2>" + _capacity_tables(cap_summary))
        if is_op and i == len(blocks) + len(capacity):
            parts.append("<h2>Operations</h2>")
        if is_op:
            parts.append(f"<h3>{html.escape(block.title)}</h3>")
        if block.fig is not None:
            # Only the first figure carries plotly.js: the page must work offline and inline it just once.
            div = pio.to_html(block.fig, include_plotlyjs=first, full_html=False, config={"displaylogo": False})
            first = False
            parts.append(f"<div class=fig>{div}</div>")
            if block.note:
                parts.append(f"<p class=note>{html.escape(block.note)}</p>")
        elif is_op:
            parts.append(f"<p class=note>{html.escape(block.note)}</p>")
        else:
            parts.append(f"<p><b>{html.escape(block.title)}</b>: {html.escape(block.note)}</p>")
        if is_op and block.metadata:
            parts.append(_table(block.metadata, COUNTER_LABELS))
    parts.append(f"<footer>Generated by twin at {html.escape(str(report.get('generated_at', '')))}</footer>"
                 "</body></html>")
    pathlib.Path(path).write_text("\n".join(parts), encoding="utf-8")
