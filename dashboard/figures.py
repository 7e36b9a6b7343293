"""Plotly figures built from the feed's small records. Pure functions: records in, figures out, so the
pages can build a whole figure on load and send only the changed parts afterwards."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from dashboard import geo
from twin.util.instants import format_instant

# How the dashboard draws the API's names: the order and colour of the three CSP regions and of the
# WAN technologies (GetFleetCatalog's csp_regions and wan_technologies; a unit test holds these to it).
CSPS = ("North", "Central", "South")
CSP_COLOURS = {"North": "#1f77b4", "Central": "#ff7f0e", "South": "#2ca02c"}
WAN_ORDER = ("long-range radio", "2G", "3G", "4G", "VWAN", "none")
WAN_COLOURS = {"long-range radio": "#6a3d9a", "2G": "#e31a1c", "3G": "#fb9a99", "4G": "#1f78b4", "VWAN": "#33a02c",
               "none": "#b2b2b2"}
# Light for little, dark for much (explicit, so no named scale's direction can surprise): the
# colour bar's title, its unit suffix, the number format of its ends, and the scale.
MAP_MODES = {
    "dark": ("Dark hubs, % of DCC hubs", "%", ".2~f", [[0.0, "#fff7bc"], [0.4, "#fe9929"], [1.0, "#99000d"]]),
    "density": ("Hubs per km²", "", ",.1~f", [[0.0, "#eff3ff"], [0.5, "#6baed6"], [1.0, "#08306b"]]),
    "alerts": ("Alerts this tick", "", ",.0f", [[0.0, "#f2f0f7"], [0.5, "#9e9ac8"], [1.0, "#3f007d"]]),
}
LIVE_POINTS = 480  # points a live chart keeps (extendData trims to this)


# The legend beside the plot, top right: below it, a legend sat on the date labels of time axes
# (two lines each) and clipped them; beside it, the margin grows to fit it (autoexpand).
LEGEND = dict(orientation="v", x=1.02, xanchor="left", y=1.0, yanchor="top")


def base_layout(title: str = "", height: int = 300, **kw: Any) -> dict[str, Any]:
    return dict(title=dict(text=title, x=0.01, font=dict(size=14)), height=height, margin=dict(l=50, r=10, t=36, b=36),
                template="plotly_white", legend=LEGEND, uirevision="keep", **kw)


# -- the map ------------------------------------------------------------------------------
def area_values(areas: list[dict[str, Any]], mode: str) -> dict[int, float]:
    shapes = {a.id: a for a in geo.areas()}
    out: dict[int, float] = {}
    for a in areas:
        if mode == "dark":
            out[a["area_id"]] = 100.0 * a["dark"] / a["dcc_hubs"] if a["dcc_hubs"] else 0.0
        elif mode == "density":
            out[a["area_id"]] = a["hubs"] / shapes[a["area_id"]].km2 if a["area_id"] in shapes else 0.0
        else:
            out[a["area_id"]] = float(a["alerts"])
    return out


def map_scale(values: dict[int, float], mode: str) -> tuple[float, float]:
    """The colour range: the areas' own lowest to highest value, so differences show at baseline
    (dark shares of 0.4 to 0.7% on a fixed 0 to 5% scale all drew the same pale yellow). When
    every area has the same value (or there are none) the range is that value to a little above
    it, so every area draws the lightest colour."""
    if not values:
        return 0.0, 1.0
    lo, hi = min(values.values()), max(values.values())
    return (lo, hi) if hi > lo else (lo, lo + max(abs(lo) * 0.01, 1e-6))


def scale_text(mode: str, lo: float, hi: float) -> str:
    """The scale in words, shown under the map: the colour bar's ends are not always ticked."""
    label, unit, fmt, _ = MAP_MODES[mode]
    fmt = fmt.replace("~", "")  # d3's "trim zeros" has no Python equivalent
    return (f"{label}: the colours span the areas' own range, from {lo:{fmt}}{unit} (lightest) to "
            f"{hi:{fmt}}{unit} (darkest).")


def map_title(mode: str, lo: float, hi: float) -> str:
    """The colour bar's title, stating the scale: what is shown and the range the colours span."""
    label, unit, fmt, _ = MAP_MODES[mode]
    fmt = fmt.replace("~", "")
    return f"{label}<br><sup>scaled to the areas: {lo:{fmt}}{unit} to {hi:{fmt}}{unit}</sup>"


def map_style(areas: list[dict[str, Any]], mode: str) -> tuple[list[str], list[str], tuple[float, float]]:
    """Fill colour and hover text of each area (in geo.areas() order), and the colour range."""
    values = area_values(areas, mode)
    lo, hi = map_scale(values, mode)
    scale = MAP_MODES[mode][3]
    by_id = {a["area_id"]: a for a in areas}
    colours, texts = [], []
    for shape in geo.areas():
        v = values.get(shape.id, 0.0)
        colours.append(sample_colorscale(scale, [(v - lo) / (hi - lo) if hi > lo else 0.0])[0])
        a = by_id.get(shape.id)
        if a is None:
            texts.append(f"{shape.name} ({shape.id})<br>no hubs")
            continue
        texts.append(f"<b>{shape.name}</b> ({shape.id}, {shape.dno}, CSP {shape.csp})<br>hubs {a['hubs']:,}"
                     f" · meters {a['meters']:,}<br>reachable {a['reachable']:,} · dark {a['dark']:,}"
                     f" ({100 * a['dark'] / max(a['dcc_hubs'], 1):.2f}%)"
                     f"<br>{a['hubs'] / shape.km2:,.1f} hubs/km² · alerts this tick {a['alerts']:,}")
    return colours, texts, (lo, hi)


def gb_map(areas: list[dict[str, Any]], mode: str = "dark", height: int = 560) -> go.Figure:
    colours, texts, (lo, hi) = map_style(areas, mode)
    values = area_values(areas, mode)
    fig = go.Figure()
    for shape, colour, text in zip(geo.areas(), colours, texts, strict=True):
        # meta: the area's value, so the figure says what each colour stands for (the tests read it).
        fig.add_trace(go.Scatter(x=shape.lon, y=shape.lat, mode="lines", fill="toself", fillcolor=colour,
                                 line=dict(color="#555", width=0.6), name=shape.name, text=text, hoveron="fills",
                                 hoverinfo="text", showlegend=False, meta=values.get(shape.id, 0.0)))
    olon, olat = geo.outline()
    fig.add_trace(go.Scatter(x=olon, y=olat, mode="lines", line=dict(color="#222", width=0.5), hoverinfo="skip",
                             showlegend=False, name="coast"))
    # A hidden marker carries the colour bar.
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip", name="scale",
                             marker=dict(colorscale=MAP_MODES[mode][3], cmin=lo, cmax=hi, color=[lo], showscale=True,
                                         colorbar=colorbar(mode, lo, hi))))
    fig.update_layout(**base_layout("", height), showlegend=False)
    fig.update_xaxes(visible=False, range=[-8.8, 2.0])
    fig.update_yaxes(visible=False, range=[49.8, 61.0], scaleanchor="x", scaleratio=geo.ASPECT)
    fig.update_layout(margin=dict(l=0, r=0, t=10, b=0), plot_bgcolor="#eaf2f8")
    return fig


def colorbar(mode: str, lo: float, hi: float) -> dict[str, Any]:
    """The map's colour bar: its title states the scale, and its ticks carry the unit."""
    return dict(title=dict(text=map_title(mode, lo, hi), side="right"), thickness=12, len=0.6,
                ticksuffix=MAP_MODES[mode][1], tickformat=MAP_MODES[mode][2], nticks=6)


# -- live series -----------------------------------------------------------------------------
def shown_lines(ticks: list[dict[str, Any]], lines: dict[str, Any]) -> list[str]:
    """The names of `lines` (trace name -> function of a tick record) not zero throughout `ticks`,
    in their order: a chart leaves the others out of its plot and legend."""
    return [name for name, fn in lines.items() if any(fn(r) for r in ticks)]


def span_text(ticks: list[dict[str, Any]]) -> str:
    """How long `ticks` (half-hour records) cover, in words: "3 h", "2.5 d"."""
    hours = len(ticks) / 2
    return f"{hours:g} h" if hours <= 48 else f"{hours / 24:g} d"


def empty_note(fig: go.Figure, text: str) -> go.Figure:
    """`text` in the middle of a chart with nothing to draw, its axes hidden (no empty grid)."""
    fig.add_annotation(text=text, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=13, color="#777"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def series(ticks: list[dict[str, Any]], title: str, lines: dict[str, Any], height: int = 260,
           y_title: str = "", empty: str = "") -> go.Figure:
    """A live line chart: `lines` maps a trace name to a function of a tick record. Only the lines
    not zero throughout `ticks` are drawn (`shown_lines`; the figure's meta lists them, in trace
    order); with none, the chart says so in words: `empty` ("{span}" replaced by how long the
    ticks cover), or that every line was zero."""
    fig = go.Figure()
    x = [r["time"] for r in ticks]
    shown = shown_lines(ticks, lines)
    for name in shown:
        fig.add_trace(go.Scatter(x=x, y=[lines[name](r) for r in ticks], mode="lines", name=name,
                                 line=dict(color=CSP_COLOURS.get(name))))
    fig.update_layout(**base_layout(title, height), meta={"lines": shown})
    fig.update_yaxes(title_text=y_title, rangemode="tozero")
    if not shown:
        text = ("Waiting for the fleet…" if not ticks else
                (empty or "Nothing to draw: every series was zero in the last {span}.").replace("{span}",
                                                                                               span_text(ticks)))
        empty_note(fig, text)
    return fig


def extend(ticks: list[dict[str, Any]], lines: dict[str, Any]) -> tuple[dict[str, Any], list[int], int]:
    """extendData for a series() chart: only the new points travel (`lines` the ones it draws)."""
    x = [r["time"] for r in ticks]
    return ({"x": [x] * len(lines), "y": [[fn(r) for r in ticks] for fn in lines.values()]},
            list(range(len(lines))), LIVE_POINTS)


def live_update(window: list[dict[str, Any]], new: list[dict[str, Any]], shown: list[str] | None, title: str,
                lines: dict[str, Any], **kw: Any) -> tuple[go.Figure | None, tuple[Any, ...] | None, list[str]]:
    """What a series() chart's update sends: (the whole figure, None) when the lines to draw over
    `window` (the chart's last LIVE_POINTS ticks) are no longer the `shown` ones (a kind of alert
    seen for the first time, or one gone from the window), else (None, extendData of the `new`
    ticks, or None when nothing is drawn); and the names drawn now (for the page to keep)."""
    names = shown_lines(window, lines)
    if shown is None or names != list(shown):
        return series(window, title, lines, **kw), None, names
    if not names:
        return None, None, names
    return None, extend(new, {n: lines[n] for n in names}), names


def csp_lines(key: str) -> dict[str, Any]:
    return {c: (lambda r, c=c: r[key].get(c, 0)) for c in CSPS}


# -- bars --------------------------------------------------------------------------------------
def technologies_shown(hubs_by_wan: dict[str, dict[str, int]]) -> list[str]:
    """The WAN technologies (WAN_ORDER) some CSP region has hubs on: the others are left out of
    the technology mix and its legend."""
    return [wan for wan in WAN_ORDER if any(hubs_by_wan.get(c, {}).get(wan, 0) for c in CSPS)]


def technology_mix(hubs_by_wan: dict[str, dict[str, int]]) -> go.Figure:
    """Stacked bars of hubs per CSP region (x) by WAN technology, one trace per technology with
    hubs (`technologies_shown`, in that order); in words when there are none yet."""
    fig = go.Figure()
    for wan in technologies_shown(hubs_by_wan):
        fig.add_trace(go.Bar(x=list(CSPS), y=[hubs_by_wan.get(c, {}).get(wan, 0) for c in CSPS], name=wan,
                             marker_color=WAN_COLOURS[wan]))
    fig.update_layout(**base_layout("Hubs by WAN technology per CSP region", 320), barmode="stack")
    fig.update_yaxes(title_text="hubs")
    if not fig.data:
        empty_note(fig, "Waiting for the fleet…")
    return fig


def technology_mix_y(hubs_by_wan: dict[str, dict[str, int]]) -> list[list[int]]:
    """Each drawn trace's y values (the order of `technologies_shown`), for a patch of the figure."""
    return [[hubs_by_wan.get(c, {}).get(wan, 0) for c in CSPS] for wan in technologies_shown(hubs_by_wan)]


def hbar(labels: list[str], values: list[float], title: str, colour: str = "#1f77b4", height: int = 320,
         x_title: str = "") -> go.Figure:
    fig = go.Figure(go.Bar(x=values, y=labels, orientation="h", marker_color=colour))
    fig.update_layout(**base_layout(title, height))
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_xaxes(title_text=x_title)
    return fig


def switch_off_timeline(network: dict[str, Any], now_iso: str) -> go.Figure | None:
    """One bar per region and technology with a switch-off: from its off time to its on time (or
    a year on, for permanent), with a line at the simulated now; None when there is none (the
    page says so in words rather than draw empty axes)."""
    from datetime import datetime, timedelta

    rows = []
    for region, info in network.items():
        for so in info.get("switch_offs", []):
            start = datetime.fromisoformat(so["off_from"])
            end = datetime.fromisoformat(so["on_from"]) if so["on_from"] else start + timedelta(days=365)
            rows.append((f"{region} {so['technology']}", start, end, "off" if not so["on_from"] else "outage"))
    if not rows:
        return None
    fig = go.Figure()
    for label, start, end, kind in rows:
        fig.add_trace(go.Scatter(x=[start, end], y=[label, label], mode="lines", line=dict(width=14,
                      color="#d62728" if kind == "off" else "#ff9896"), name=label, showlegend=False,
                      hovertext=f"{label}: off from {format_instant(start)}" + (
                          f" to {format_instant(end)}" if kind == "outage" else " (permanent)"), hoverinfo="text"))
    layout = base_layout("Switch-offs and network outages", 260)
    fig.update_layout(**layout)
    if now_iso:
        fig.add_vline(x=datetime.fromisoformat(now_iso).timestamp() * 1000, line=dict(color="#333", dash="dot"))
    return fig
