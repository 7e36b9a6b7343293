"""An ensemble's figures for people (twin.studies.sweep.run_ensemble's result): the terminal table,
the HTML page (the table, each seed's figures, and plots of the seeds over time), and the spread
of a sweep's points when it ran with seeds."""

from __future__ import annotations

import html
import pathlib
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

CSS = """body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem auto;max-width:1200px;
color:#222;padding:0 1rem}h2{font-size:1.1rem;margin:1.5rem 0 .3rem}table{border-collapse:collapse;margin:.5rem 0;
font-size:.9rem}td,th{border:1px solid #ddd;padding:.2rem .6rem;text-align:left}th{background:#f4f4f4}
.num{text-align:right;font-variant-numeric:tabular-nums}footer{margin-top:2rem;color:#777;font-size:.8rem}"""


def fmt(value: float | None, unit: str = "") -> str:
    """A figure as people read it: shares as percentages, seconds to two places, counts with
    thousands separators (one decimal where a mean is not whole)."""
    if value is None:
        return "-"
    if unit == "share" or unit == "share of capacity":
        return f"{100 * value:.2f}%"
    if unit == "per meter-month":
        return f"{value:,.1f}"
    if unit == "s":
        return f"{value:,.2f} s"
    if unit == "msgs/s":
        return f"{value:,.2f}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _ci(d: Mapping[str, Any]) -> str:
    ci = d.get("ci95")
    return "-" if not ci else f"{fmt(ci[0], d['unit'])} to {fmt(ci[1], d['unit'])}"


def _rows(figures: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, ...]]:
    return [(d["label"], fmt(d["mean"], d["unit"]), fmt(d["std"], d["unit"]), fmt(d["min"], d["unit"]),
             fmt(d["max"], d["unit"]), _ci(d)) for d in figures.values()]


HEAD = ("figure", "mean", "std dev", "min", "max", "95% CI of the mean")


def ci_method(figures: Mapping[str, Mapping[str, Any]]) -> str:
    return next((d["ci_method"] for d in figures.values() if d.get("ci_method")), "")


def _spread_table(title: str, figures: Mapping[str, Mapping[str, Any]]) -> Table:
    """Figures' mean, spread and interval over the seeds, as a terminal table."""
    t = Table(title=title, title_justify="left")
    for i, h in enumerate(HEAD):
        t.add_column(h, justify="left" if i == 0 else "right")
    for row in _rows(figures):
        t.add_row(*row)
    return t


def print_ensemble(result: Mapping[str, Any], console: Console) -> None:
    """The ensemble's figures as a terminal table, then its throughput."""
    seeds = result["seeds"]
    console.print(_spread_table(f"Ensemble of {len(seeds)} seeds ({seeds[0]}..{seeds[-1]}), {result['hubs']:,} hubs, "
                                f"{result['days']:g} days", result["figures"]))
    console.print(f"interval: {ci_method(result['figures'])}", highlight=False)
    tp = result["throughput"]
    console.print(f"{tp['runs']} runs, {tp['hub_days']:,.0f} hub-days in {tp['wall_s']:.1f} s: "
                  f"{tp['hub_days_per_s']:,.0f} hub-days per second", highlight=False)


def print_sweep_spread(result: Mapping[str, Any], console: Console) -> None:
    """A sweep with seeds: per point, each figure's mean, spread and interval over the seeds."""
    for p in [*result["points"], result["baseline"]]:
        value = "baseline" if p["value"] is None else f"{result['param']}={p['value']}"
        console.print(_spread_table(f"{value}, over {len(result['seeds'])} seeds", p["spread"]))
    console.print(f"interval: {ci_method(result['points'][0]['spread'])}", highlight=False)


def spread_table_html(figures: Mapping[str, Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in HEAD)
    body = "".join("<tr><th>" + html.escape(r[0]) + "</th>" + "".join(f"<td class=num>{html.escape(c)}</td>" for c in r[1:])
                   + "</tr>" for r in _rows(figures))
    return f"<table><tr>{head}</tr>{body}</table>"


def write_ensemble_html(result: Mapping[str, Any], path: pathlib.Path) -> None:
    """One offline page: the figures' table, each seed's state hash and figures, and the dark
    hubs and messages of every seed over time (aggregated by day or longer for long runs, see
    twin.reporting.downsample)."""
    import plotly.graph_objects as go
    import plotly.io as pio

    figs = []
    for key, title in (("dark_hubs", "Dark hubs, each seed"), ("messages", "Messages, all CSPs, each seed")):
        fig = go.Figure()
        period = ""
        for run in result["runs"]:
            s = run["series"]  # by period already (twin.studies.sweep._seed_series)
            period = s.get("period") or "half-hour"
            ys = s[key]
            if key == "messages" and period != "half-hour":  # a rate per day, as in the run report
                ys = [v * 48 / n for v, n in zip(ys, s["ticks_per_point"], strict=True)]
            fig.add_trace(go.Scatter(x=s["time"], y=ys, mode="lines", name=f"seed {run['seed']}"))
        how = ("highest half-hour in each " + period if key == "dark_hubs" and period != "half-hour" else
               "per half-hour" if period == "half-hour" else "per day" + ("" if period == "day" else
                                                                          f", mean over each {period}"))
        fig.update_layout(title=f"{title} ({how})", height=380, template="plotly_white", hovermode="x unified")
        fig.update_xaxes(type="date", title_text=f"time (one point per {period})")
        figs.append(fig)
    names = list(result["figures"])
    seed_head = "".join(f"<th>{html.escape(result['figures'][k]['label'])}</th>" for k in names)
    seed_rows = "".join(
        f"<tr><td>{r['seed']}</td><td><code title='{html.escape(str(r['state_hash']))}'>"
        f"{html.escape(str(r['state_hash'])[:12])}…</code></td>"
        + "".join(f"<td class=num>{html.escape(fmt(r['figures'][k], result['figures'][k]['unit']))}</td>" for k in names)
        + "</tr>" for r in result["runs"])
    tp = result["throughput"]
    body = "".join(pio.to_html(f, include_plotlyjs=(i == 0), full_html=False, config={"displaylogo": False})
                   for i, f in enumerate(figs))
    name = html.escape(str(result["name"]))
    path.write_text(
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>Ensemble {name}</title><style>{CSS}</style>"
        f"</head><body><h1>Ensemble: {name}</h1><p>{html.escape(result['scenario'])}</p>"
        f"<p>{html.escape(result.get('description') or '')}</p>"
        f"<p>{len(result['seeds'])} seeds, {result['hubs']:,} hubs, {result['days']:g} days each; "
        f"{tp['runs']} runs, {tp['hub_days']:,.0f} hub-days in {tp['wall_s']:.1f} s: "
        f"<b>{tp['hub_days_per_s']:,.0f} hub-days per second</b>.</p>"
        f"<h2>Figures over the seeds</h2>{spread_table_html(result['figures'])}"
        f"<p>Standard deviation over the seeds (n - 1); interval: {html.escape(ci_method(result['figures']))}, "
        "taking each seed's figure as an independent draw.</p>"
        f"<h2>Each seed</h2><div style='overflow-x:auto'><table><tr><th>seed</th><th>state hash</th>{seed_head}</tr>"
        f"{seed_rows}</table></div>{body}"
        f"<footer>Generated by twin at {html.escape(str(result.get('generated_at', '')))}</footer></body></html>",
        encoding="utf-8")
