"""Long runs stay readable: a report's per-tick series aggregated by day, week or month so that no
series carries more than MAX_POINTS points (a ten-year run has 175,296 half-hours per series; a
browser draws a few thousand points per trace at ease, not that).

Each series is aggregated the way its meaning allows, never averaged where that would hide what
a capacity engineer looks for:

- counts per tick (messages, alerts, delivery outcomes) are **summed**: a day's point is the
  day's messages, and the totals over the run are unchanged;
- peaks and worst cases (peak alerts per second, link utilisation, p99 latency, backlog, dark
  hubs, half-hourly periods at risk, premises off supply) take the **highest** tick of the period,
  and the share within target the **lowest** (a period's p99 is then the worst half-hour's p99,
  labelled so, not a percentile of percentiles);
- slow-moving levels whose composition is the point (hubs by WAN technology, supplier shares,
  a cumulative count, an operation's progress counters) take the **last** tick of the period.

A period is a calendar day, an ISO week (from Monday) or a calendar month, all UTC, of the tick's
start (a report's `time` is the end of each tick, so the half-hour ending at midnight belongs to
the day before). Each point's x is the period's start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MAX_POINTS = 1_000  # per series, after aggregation
PERIODS = ("half-hour", "day", "week", "month")
HOW = ("sum", "max", "min", "last")
TICKS_PER_DAY = 48
# The shortest period a series of N ticks fits in MAX_POINTS with (a month is at most 31 days, a
# week 7): up to 1,000 ticks (about 3 weeks) raw, 1,000 days by day, then weeks, then months.
_SPAN_TICKS = {"half-hour": 1, "day": TICKS_PER_DAY, "week": 7 * TICKS_PER_DAY, "month": 31 * TICKS_PER_DAY}

# How each series of a run report (twin.studies.scenario.series) aggregates; a mapping of series
# (by CSP, by kind, ...) takes its key's way for every member.
REPORT_KINDS: dict[str, str] = {
    "messages_by_csp": "sum", "alerts": "sum",
    "dark_hubs": "max", "dark_by_csp": "max", "hh_at_risk": "max", "peak_alerts_per_s": "max",
    "prepay_off_supply": "max", "prepay_emergency_credit": "max",
    "hubs_by_wan": "last", "supplier_hubs": "last", "hh_lost_cum": "last",
}
# The same for the capacity series (twin.reporting.capacity.capacity_series).
CAPACITY_KINDS: dict[str, str] = {
    "link_utilisation": "max", "latency_p99_s": "max", "within_target": "min", "backlog": "max",
    "backlog_by_class": "max", "oldest_age_s": "max", "dsp_utilisation": "max",
    "base_station_peak_utilisation": "max", "alerts": "sum",
}
CAPACITY_ALERT_LEVELS = ("failed_queue",)  # within capacity "alerts": a level, not a count


# A chart of more half-hours than this reads as a wall of bars: the HTML report draws longer runs
# by day at least (readable_period), while report.json keeps half-hours up to MAX_POINTS.
READABLE_TICKS = 3 * TICKS_PER_DAY


def readable_period(n_ticks: int, max_points: int = MAX_POINTS) -> str:
    """The period a chart draws `n_ticks` half-hours by: half-hours up to three days
    (READABLE_TICKS), else by day, or the shortest longer period (choose_period) that keeps
    within `max_points` points. ValueError for a negative count."""
    if n_ticks < 0:
        raise ValueError(f"n_ticks must be >= 0, got {n_ticks}")
    if n_ticks <= READABLE_TICKS:
        return "half-hour"
    period = choose_period(n_ticks, max_points)
    return "day" if period == "half-hour" else period


def choose_period(n_ticks: int, max_points: int = MAX_POINTS) -> str:
    """The shortest period (PERIODS) that keeps `n_ticks` half-hours within `max_points` points."""
    for period in PERIODS:
        if -(-n_ticks // _SPAN_TICKS[period]) <= max_points:
            return period
    return "month"


def _starts(times: Sequence[str]) -> np.ndarray:
    """Each tick's start (its end, `times`, less one second: the tick ending at midnight belongs
    to the day before), as datetime64[s] UTC. ISO times with or without an offset of +00:00."""
    text = np.array([t[:19] for t in times], dtype="datetime64[s]")
    return text - np.timedelta64(1, "s")


def period_keys(times: Sequence[str], period: str) -> np.ndarray:
    """The start of each tick's period (datetime64[D]: a day, the Monday of its ISO week, or the
    first of its month)."""
    if period not in PERIODS[1:]:
        raise ValueError(f"period must be one of {PERIODS[1:]}, got {period!r}")
    days = _starts(times).astype("datetime64[D]")
    if period == "day":
        return days
    if period == "week":
        n = days.astype(np.int64)  # 1970-01-01 (day 0) was a Thursday: Monday is n % 7 == 4
        return (n - (n - 4) % 7).astype("datetime64[D]")
    return days.astype("datetime64[M]").astype("datetime64[D]")


def aggregate(values: Sequence[float], starts: np.ndarray, how: str) -> list[Any]:
    """`values` (one per tick) reduced over runs of ticks that begin at the indices `starts`
    (ascending, the first 0): "sum", "max", "min" or "last". Whole numbers stay whole; None (no
    value that tick) is left out of max and min and counts as 0 in a sum."""
    if how not in HOW:
        raise ValueError(f"how must be one of {HOW}, got {how!r}")
    raw = list(values)
    if not raw:
        return []
    if how == "last":
        ends = np.append(starts[1:], len(raw)) - 1
        return [raw[i] for i in ends]
    # The values' types, not each value, decide (a decade is 175,000 values a series).
    types = set(map(type, raw))
    ints = all(issubclass(t, int | np.integer) and t is not bool for t in types)
    fill = {"sum": 0.0, "max": -np.inf, "min": np.inf}[how]
    if type(None) in types:
        raw = [fill if v is None else v for v in raw]
    a = np.array(raw, dtype=np.int64 if ints else float)
    ufunc = {"sum": np.add, "max": np.maximum, "min": np.minimum}[how]
    out = ufunc.reduceat(a, starts)
    if ints:
        return out.tolist()
    return [None if not np.isfinite(v) else float(v) for v in out]


def _bounds(keys: np.ndarray) -> np.ndarray:
    """Indices where a new period begins (times ascending: each period is one run of ticks)."""
    return np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])


def _apply(value: Any, starts: np.ndarray, how: str) -> Any:
    if isinstance(value, Mapping):
        return {k: _apply(v, starts, how) for k, v in value.items()}
    return aggregate(value, starts, how)


def downsample_series(series: Mapping[str, Any], *, kinds: Mapping[str, str], period: str | None = None,
                      max_points: int = MAX_POINTS) -> dict[str, Any]:
    """`series` (a `time` list of ISO tick ends and, per name in `kinds`, one value per tick or
    a mapping of such lists) aggregated by `period` (default: `choose_period`), each as its kind
    says (sum, max, min or last). Returns the same shape with `time` the periods' starts (ISO
    dates), `ticks_per_point` (ticks in each point) and `period`. A series not in `kinds` is left
    out. At "half-hour" nothing is aggregated."""
    times = list(series.get("time") or [])
    period = period or choose_period(len(times), max_points)
    if period == "half-hour" or not times:
        return {k: series[k] for k in ("time", *kinds) if k in series} | {
            "period": "half-hour", "ticks_per_point": [1] * len(times)}
    keys = period_keys(times, period)
    starts = _bounds(keys)
    out: dict[str, Any] = {"time": [str(d) for d in keys[starts]], "period": period,
                           "ticks_per_point": np.diff(np.append(starts, len(times))).tolist()}
    for name, how in kinds.items():
        if name in series and series[name] is not None:
            out[name] = _apply(series[name], starts, how)
    return out


def downsample_report(series: Mapping[str, Any], *, max_points: int = MAX_POINTS,
                      period: str | None = None) -> dict[str, Any]:
    """A run report's `series` (twin.studies.scenario.series) within `max_points` points per
    series: each series as REPORT_KINDS says, `tick` the first tick of each point, and the
    capacity series (their own ticks) as CAPACITY_KINDS says, with their own `time`. Unchanged
    (but for `period` = "half-hour") when the run is short enough."""
    if series.get("period") not in (None, "half-hour"):
        return dict(series)  # aggregated already (the report.json of a long run, read back)
    times = list(series.get("time") or [])
    period = period or choose_period(len(times), max_points)
    if period == "half-hour":
        return dict(series) | {"period": "half-hour"}
    out = downsample_series(series, kinds=REPORT_KINDS, period=period)
    ticks = list(series.get("tick") or [])
    starts = _bounds(period_keys(times, period))
    out["tick"] = [ticks[i] for i in starts] if ticks else []
    cap = series.get("capacity") or {}
    if cap and cap.get("tick"):
        when = dict(zip(ticks, times, strict=False))
        cap_ticks = [int(t) for t in cap["tick"]]
        cap_times = [when[t] for t in cap_ticks if t in when]
        if len(cap_times) == len(cap_ticks):
            alerts = cap.get("alerts") or {}
            kinds = dict(CAPACITY_KINDS)
            c = downsample_series({"time": cap_times, **{k: v for k, v in cap.items() if k in kinds}},
                                  kinds={k: v for k, v in kinds.items() if k != "alerts"}, period=period)
            cstarts = _bounds(period_keys(cap_times, period))
            c["alerts"] = {k: aggregate(v, cstarts, "max" if k in CAPACITY_ALERT_LEVELS else "sum")
                           for k, v in alerts.items()}
            c["tick"] = [cap_ticks[i] for i in cstarts]
            c["target_response_s"] = cap.get("target_response_s")
            out["capacity"] = c
    return out


def points(series: Mapping[str, Any]) -> int:
    """The most values any one list in `series` (nested mappings included) holds."""
    best = 0
    for v in series.values():
        if isinstance(v, Mapping):
            best = max(best, points(v))
        elif isinstance(v, list):
            best = max(best, len(v))
    return best


def period_phrase(period: str, how: str) -> str:
    """How a point of `period` was made, for a title: ("day", "max") -> "highest half-hour in
    each day"; "" at half-hour resolution."""
    if period == "half-hour":
        return ""
    return {"sum": f"per {period}", "max": f"highest half-hour in each {period}",
            "min": f"lowest half-hour in each {period}", "last": f"at the end of each {period}"}[how]


def downsample_operation(op_series: Mapping[str, Any], series: Mapping[str, Any], period: str) -> dict[str, Any]:
    """An operation's counters (`tick` and a list per counter, twin.studies.scenario.build_report)
    by `period`, the last value of each (they are running totals), with `time` the periods'
    starts; its ticks are placed in time through the report's raw `series` (tick, time). As it is
    at half-hour resolution or when one of its ticks has no time."""
    out = dict(op_series)
    ticks = [int(t) for t in out.get("tick") or []]
    if period == "half-hour" or not ticks:
        return out
    when = dict(zip([int(t) for t in series.get("tick") or []], series.get("time") or [], strict=False))
    if not all(t in when for t in ticks):
        return out
    counters = {k: v for k, v in out.items() if k != "tick" and v is not None and len(v) > 0}
    agg = downsample_series({"time": [when[t] for t in ticks], **counters}, kinds=dict.fromkeys(counters, "last"),
                            period=period)
    starts = _bounds(period_keys([when[t] for t in ticks], period))
    return {"tick": [ticks[i] for i in starts], "time": agg["time"], **{k: agg[k] for k in counters}}


def downsample_run_report(report: Mapping[str, Any], *, max_points: int = MAX_POINTS,
                          period: str | None = None) -> dict[str, Any]:
    """A run report (twin.studies.scenario.build_report) with its series and its operations'
    series within `max_points` points each (the same report when the run is short enough):
    what report.json carries of a long run. `period` (PERIODS) forces the aggregation, as the
    HTML report does by readable_period. A report aggregated already is returned as it is."""
    raw = report.get("series") or {}
    if raw.get("period") not in (None, "half-hour"):
        return dict(report)  # aggregated already
    series = downsample_report(raw, max_points=max_points, period=period)
    period = series.get("period", "half-hour")
    if period == "half-hour":
        return dict(report)
    ops = [dict(op) | {"series": downsample_operation(op.get("series") or {}, raw, period)}
           for op in report.get("operations") or []]
    return dict(report) | {"series": series, "operations": ops}
