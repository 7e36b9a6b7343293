"""Overview: the fleet's headline numbers, messages per CSP, dark hubs, and the map of GB."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, Patch, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from dashboard import figures as F
from dashboard import geo
from dashboard.components import data_attrs, frame_tick, graph, kpi, num, pulse, pulse_id, upto

PATH = "/"
TITLE = "Overview"
MSGS = F.csp_lines("messages")
DARK = F.csp_lines("dark_by_csp")
# The live charts: id -> (title, lines, the words when every line is zero in the window).
CHARTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "ov-msgs": ("Messages per tick by CSP", MSGS, "No message in the last {span}."),
    "ov-dark": ("Dark hubs by CSP at the end of each tick", DARK, "No dark hub in the last {span}."),
}


def kpis(cur: dict[str, Any]) -> list[Any]:
    if not cur:
        return [kpi("Waiting for the first tick", "…")]
    hubs = cur["hubs"] or 1
    return [
        kpi("Hubs", num(cur["hubs"]), kid="kpi-hubs"),
        kpi("Meters", num(cur["meters"]), kid="kpi-meters"),
        kpi("Reachable", num(cur["reachable"]), f"{100 * cur['reachable'] / hubs:.2f}% of hubs", kid="kpi-reachable"),
        html.Div(kpi("Dark", f"{cur['dark']:,}", f"{100 * cur['dark'] / hubs:.3f}% of hubs"), id="kpi-dark",
                 **data_attrs(value=str(cur["dark"]))),
        kpi("HH data at risk", num(cur["hh_at_risk"]), "unread half-hours on dark hubs", kid="kpi-risk"),
        # Cumulative figures say "since the run began"; per-tick ones "this tick" (never one
        # figure of each kind under a single label).
        kpi("HH data lost", num(cur["hh_lost_total"]), f"since the run began · +{cur['hh_lost']:,} this tick",
            kid="kpi-lost"),
        kpi("Messages this tick", num(sum(cur["messages"].values())), "all CSPs", kid="kpi-msgs"),
        kpi("Alerts this tick", num(sum(cur["alerts"].values())), f"peak {cur['peak_alerts_per_s']:,}/s within it",
            kid="kpi-alerts"),
        kpi("Alerts since start", num(cur["alerts_total"]), "cumulative, whole run", kid="kpi-alerts-total"),
    ]


def layout(feed, actions=None) -> html.Div:
    cur, latest = feed.current(), feed.latest()
    ticks = feed.ticks_since(-1, F.LIVE_POINTS)
    return html.Div([
        *pulse("ov", cur.get("tick", -1)),
        html.Div(kpis(cur), id="ov-kpis", className="kpis"),
        html.Div(className="row", children=[
            html.Div(className="panel map-panel", children=[
                html.Div(className="panel-head", children=[
                    html.H3("Great Britain by DNO area"),
                    dcc.RadioItems(id="ov-map-mode", value="dark", inline=True, className="radio",
                                   options=[{"label": " dark share", "value": "dark"},
                                            {"label": " hub density", "value": "density"},
                                            {"label": " alerts", "value": "alerts"}])]),
                graph("ov-map", F.gb_map(latest.get("areas", []), "dark")),
                html.Div(scale_line(latest.get("areas", []), "dark"), id="ov-map-scale", className="small"),
                html.Div(geo.ATTRIBUTION, className="attribution")]),
            html.Div(className="panel col", children=[
                item for id_, (title, lines, empty) in CHARTS.items()
                for item in (graph(id_, F.series(ticks, title, lines, empty=empty)),
                             dcc.Store(id=f"{id_}-shown", data=F.shown_lines(ticks, lines)))
            ]),
        ]),
    ])


def scale_line(areas: list[dict[str, Any]], mode: str) -> str:
    return F.scale_text(mode, *F.map_scale(F.area_values(areas, mode), mode)) if areas else ""


def map_patch(areas: list[dict[str, Any]], mode: str) -> Patch:
    """Only the areas' colours and hover texts (and the colour bar) change: 14 small strings."""
    colours, texts, (lo, hi) = F.map_style(areas, mode)
    values = F.area_values(areas, mode)
    p = Patch()
    for i, (shape, c, t) in enumerate(zip(geo.areas(), colours, texts, strict=True)):
        p["data"][i]["fillcolor"] = c
        p["data"][i]["text"] = t
        p["data"][i]["meta"] = values.get(shape.id, 0.0)
    bar = len(colours) + 1  # after the areas and the coast
    p["data"][bar]["marker"]["cmin"] = lo
    p["data"][bar]["marker"]["cmax"] = hi
    p["data"][bar]["marker"]["color"] = [lo]
    p["data"][bar]["marker"]["colorscale"] = F.MAP_MODES[mode][3]
    p["data"][bar]["marker"]["colorbar"] = F.colorbar(mode, lo, hi)
    return p


def register(app, feed, actions) -> None:
    @app.callback(
        Output("ov-kpis", "children"), Output("ov-map", "figure"), Output("ov-map-scale", "children"),
        *[o for i in CHARTS for o in (Output(i, "figure"), Output(i, "extendData"), Output(f"{i}-shown", "data"))],
        Output("ov-seen", "data"),
        Input(pulse_id("ov"), "data"), Input("ov-map-mode", "value"), State("ov-seen", "data"),
        *[State(f"{i}-shown", "data") for i in CHARTS],
    )
    def update(frame, mode, seen, *shown):
        tick = frame_tick(frame)
        new = upto(feed.ticks_since(-1 if seen is None else seen), tick)
        if not new and ctx.triggered_id != "ov-map-mode":
            raise PreventUpdate
        latest = feed.latest()
        cur = feed.at(tick)
        map_fig = map_patch(latest.get("areas", []), mode or "dark")
        scale = scale_line(latest.get("areas", []), mode or "dark")
        if not new:
            return (no_update, map_fig, scale, *[no_update] * (3 * len(CHARTS)), no_update)
        window = upto(feed.ticks_since(-1, F.LIVE_POINTS), tick)
        charts: list[Any] = []
        for (title, lines, empty), was in zip(CHARTS.values(), shown, strict=True):
            fig, ext, names = F.live_update(window, new, was, title, lines, empty=empty)
            charts += [no_update if fig is None else fig, no_update if ext is None else ext, names]
        return (kpis(cur), map_fig, scale, *charts, new[-1]["tick"])
