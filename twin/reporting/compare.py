"""The comparison of two runs (twin.engine.compare) as an offline HTML page with the key series of
both overlaid, written beside its JSON."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from twin.engine.compare import KEY_SERIES, write_comparison_json
from twin.reporting.html import CSS, _fmt, _new


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
    for i, (col, label) in enumerate(KEY_SERIES):
        fig = _new(label)
        for alias, name, dash in (("a", a, "solid"), ("b", b, "dash")):
            s = cmp["series"][alias]
            fig.add_trace(go.Scattergl(x=s["time"], y=s[col], mode="lines", name=name, line={"dash": dash}))
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
