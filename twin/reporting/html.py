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

SUMMARY_KEYS = ("hubs", "meters", "messages_total", "messages_per_reachable_meter_month", "peak_alerts_per_s",
                "hh_periods_lost", "hh_periods_at_risk", "wall_s", "state_hash", "dark_hubs")
CONFIG_KEYS = ("hubs", "seed", "shards", "days")
TOP_SUPPLIERS = 8

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
            fig.add_trace(go.Scattergl(x=list(x), y=list(ys), mode="lines", name=str(name)), **kw)


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


def _series_figures(s: Mapping[str, Any]) -> list[tuple[str, go.Figure]]:
    x = list(_get(s, "time"))
    if not x:
        return []
    figs: list[tuple[str, go.Figure]] = []
    _lines(fig := _new("Messages per CSP per half-hour"), x, _named(s, "messages_by_csp"))
    figs.append(("Messages per CSP per half-hour", fig))
    _lines(fig := _new("Dark hubs"), x, {"total": _get(s, "dark_hubs")} | _named(s, "dark_by_csp"))
    figs.append(("Dark hubs", fig))
    _lines(fig := _new("Hubs by WAN technology"), x, _named(s, "hubs_by_wan"))
    figs.append(("Hubs by WAN technology", fig))

    fig = _new("Half-hourly data", secondary=True)
    _lines(fig, x, {"HH periods at risk": _get(s, "hh_at_risk")}, secondary_y=False)
    _lines(fig, x, {"HH periods lost (cumulative)": _get(s, "hh_lost_cum")}, secondary_y=True)
    fig.update_yaxes(title_text="at risk", secondary_y=False)
    fig.update_yaxes(title_text="lost (cumulative)", secondary_y=True)
    figs.append(("Half-hourly data", fig))

    fig = _new("Alerts", secondary=True)
    # Scattergl has no stackgroup, so the stacked areas use plain Scatter.
    for kind, ys in _named(s, "alerts").items():
        if _has(ys):
            fig.add_trace(go.Scatter(x=x, y=list(ys), name=str(kind), mode="lines", stackgroup="alerts"),
                          secondary_y=False)
    _lines(fig, x, {"peak alerts per second": _get(s, "peak_alerts_per_s")}, secondary_y=True)
    fig.update_yaxes(title_text="alerts per half-hour", secondary_y=False)
    fig.update_yaxes(title_text="peak alerts per second", secondary_y=True)
    figs.append(("Alerts", fig))

    _lines(fig := _new("Supplier shares"), x, _suppliers(_named(s, "supplier_hubs")))
    fig.update_yaxes(title_text="hubs")
    figs.append(("Supplier shares", fig))
    off = _named(s, "prepay_off_supply")
    if off:
        total = np.sum([np.asarray(v, dtype=float) for v in off.values()], axis=0).tolist()
        _lines(fig := _new("Prepayment premises off supply for credit"), x,
               {"all suppliers": total} | _suppliers(off)
               | {"on emergency credit (all)": _get(s, "prepay_emergency_credit")})
        fig.update_yaxes(title_text="premises")
        figs.append(("Prepayment premises off supply for credit", fig))
    # A missing or empty series leaves its figure without traces; such figures are dropped.
    return [(t, f) for t, f in figs if f.data]


def _op_figure(op: Mapping[str, Any], series: Mapping[str, Any]) -> tuple[str, go.Figure] | None:
    op_series = op.get("series") or {}
    counters = {k: v for k, v in op_series.items() if k != "tick" and _has(v)}
    ticks = _get(op_series, "tick")
    if not counters or not _has(ticks):
        return None
    x, dates = _op_x(ticks, series)
    fig = _new(title := f"{op.get('name', '?')} ({op.get('kind', '?')})", dates=dates)
    _lines(fig, x, counters)
    return title, fig


def _figures(report: Mapping[str, Any]) -> list[tuple[str, go.Figure, Mapping[str, Any] | None]]:
    """Figures in page order, each with the operation metadata to show under it (if any)."""
    series = report.get("series") or {}
    out: list[tuple[str, go.Figure, Mapping[str, Any] | None]] = [
        (t, f, None) for t, f in _series_figures(series)]
    for op in report.get("operations") or []:
        if (made := _op_figure(op, series)) is not None:
            out.append((*made, op.get("metadata") or {}))
    return out


def build_figures(report: dict) -> list[tuple[str, go.Figure]]:
    """(title, figure) pairs in page order: fleet series first, then one per operation with data."""
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
    for i, (title, fig, metadata) in enumerate(_figures(report)):
        if metadata is not None:
            parts.append(f"<h2>{html.escape(title)}</h2>")
        # Only the first figure carries plotly.js: the page must work offline and inline it just once.
        div = pio.to_html(fig, include_plotlyjs=(i == 0), full_html=False, config={"displaylogo": False})
        parts.append(f"<div class=fig>{div}</div>")
        if metadata is not None:
            parts.append(_table(metadata))
    parts.append(f"<footer>Generated by twin at {html.escape(str(report.get('generated_at', '')))}</footer>"
                 "</body></html>")
    pathlib.Path(path).write_text("\n".join(parts), encoding="utf-8")
