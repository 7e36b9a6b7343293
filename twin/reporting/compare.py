"""The comparison of two runs (twin.engine.compare) as an offline HTML page with the key series of
both overlaid, written beside its JSON."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from twin.engine.compare import KEY_SERIES, write_comparison_json
from twin.engine.history import TICK_KINDS
from twin.reporting.downsample import MAX_POINTS, choose_period, downsample_series
from twin.reporting.html import CSS, _fmt, _how, _new, _rate_label

# How each key series aggregates over a long run's periods (twin.engine.history.TICK_KINDS; the
# cumulative count of periods lost takes the last).
KINDS = {c: TICK_KINDS.get(c, "last") for c, _ in KEY_SERIES}


def shown_series(cmp: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], str]:
    """Both runs' key series as the page draws them, within MAX_POINTS points each, by one
    period for both (twin.reporting.downsample), and the period."""
    period = choose_period(max(len(cmp["series"][k]["time"]) for k in ("a", "b")))
    if period == "half-hour":
        return {k: cmp["series"][k] for k in ("a", "b")}, period
    out = {}
    for k in ("a", "b"):
        agg = downsample_series(cmp["series"][k], kinds=KINDS, period=period)
        days = np.asarray(agg["ticks_per_point"], float) / 48
        out[k] = agg | {c: (np.asarray(agg[c], float) / days).round(1).tolist() for c, how in KINDS.items()
                        if how == "sum"}
    return out, period


def _title(col: str, label: str, period: str) -> str:
    if period == "half-hour":
        return label
    if KINDS[col] == "sum":
        return label.replace("per half-hour", _rate_label(period))
    return _how(label, period, KINDS[col])


def write_comparison_html(cmp: dict[str, Any], path: Path) -> None:
    """One offline page: the verdict, final figures side by side, and the overlaid series."""
    a, b = cmp["a"]["name"], cmp["b"]["name"]
    title = f"{a} vs {b}"
    div = cmp["divergence_tick"]
    verdict = ("The runs are identical over their common ticks." if div is None else
               f"The runs first differ at tick {div} ({html.escape(str(cmp['divergence_time']))} UTC, the end of that "
               f"half-hour) in: {html.escape(', '.join(cmp['changed_at_divergence']) or 'breakdowns only')}.")
    if cmp["fork_tick"] is not None:
        verdict += f" The branch was forked at tick {cmp['fork_tick']}."
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p>{cmp['hubs']:,} hubs, seed {cmp['seed']}; common ticks {cmp['common_ticks'][0]}-"
             f"{cmp['common_ticks'][1]}.</p><p><b>{verdict}</b></p>",
             "<h2>Final figures over the common ticks</h2>", _rows_table(
                 ["figure", a, b, f"{b} - {a}"], [[r["figure"], r["a"], r["b"], r["difference"]] for r in cmp["aggregates"]])]
    if cmp["operations"]:
        parts += ["<h2>Operations at the last common tick</h2>", _rows_table(
            ["operation", "counter", a, b], [[o["operation"], o["counter"], o["a"], o["b"]] for o in cmp["operations"]])]
    shown, period = shown_series(cmp)
    if period != "half-hour":
        parts.append(f"<p>Series by {period} (at most {MAX_POINTS:,} points each): counts as a rate per day, dark "
                     "hubs, alerts per second and periods at risk the highest half-hour of each, reachable hubs the "
                     "lowest. The half-hourly figures: <code>twin history RUN_DIR</code>.</p>")
    for i, (col, label) in enumerate(KEY_SERIES):
        fig = _new(_title(col, label, period))
        if period != "half-hour":
            fig.update_xaxes(title_text=f"time (one point per {period}, UTC)")
        for alias, name, dash in (("a", a, "solid"), ("b", b, "dash")):
            s = shown[alias]
            fig.add_trace(go.Scatter(x=s["time"], y=s[col], mode="lines", name=name, line={"dash": dash}))
        for tick, what in ((cmp["fork_tick"], "fork"), (div, "first difference")):
            if tick is not None and tick in cmp["series"]["a"]["tick"]:
                x = cmp["series"]["a"]["time"][cmp["series"]["a"]["tick"].index(tick)]
                fig.add_shape(type="line", x0=x, x1=x, y0=0, y1=1, yref="paper", line={"dash": "dot", "color": "#888"})
                fig.add_annotation(x=x, y=1, yref="paper", text=what, showarrow=False, yanchor="bottom")
        div_html = pio.to_html(fig, include_plotlyjs=(i == 0), full_html=False, config={"displaylogo": False})
        parts.append(f"<div class=fig>{div_html}</div>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")


def _rows_table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f"<td{' class=num' if isinstance(v, int) else ''}>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_comparison(cmp: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write `cmp` (from twin.engine.compare.compare_runs) as `out_dir/comparison.json` and
    `out_dir/comparison.html`; returns both paths."""
    j, h = write_comparison_json(cmp, out_dir), out_dir / "comparison.html"
    write_comparison_html(cmp, h)
    return j, h


def comparison_page(cmp: dict[str, Any], out_dir: Path) -> Path:
    """`write_comparison`, returning the page's path: the writer the API's CompareBranches is given
    (twin.services.branching.ComparisonWriter)."""
    return write_comparison(cmp, out_dir)[1]
