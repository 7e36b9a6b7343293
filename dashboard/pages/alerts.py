"""Alerts: alert rates by kind, peak alerts per second, and the areas with outages now."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from dashboard import figures as F
from dashboard.components import frame_tick, graph, pulse, pulse_id, upto

PATH = "/alerts"
TITLE = "Alerts"
KINDS = ("POWER_OUTAGE", "POWER_RESTORED", "LOW_BATTERY", "FIRMWARE_TRANSFER_OK", "FIRMWARE_TRANSFER_FAIL",
         "FIRMWARE_ACTIVATED", "EMERGENCY_CREDIT_ACTIVATED", "CREDIT_BELOW_DISABLEMENT", "SUPPLY_ARMED")
RATES = {k.replace("_", " ").lower(): (lambda r, k=k: r["alerts"].get(k, 0)) for k in KINDS}
PEAK = {"peak alerts/s": lambda r: r["peak_alerts_per_s"]}
# The live charts: id -> (title, lines, the words when every line is zero in the window).
CHARTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "al-rates": ("Alerts per tick by kind", RATES, "No device alert in the last {span}."),
    "al-peak": ("Peak alerts per second within each tick", PEAK, "No device alert in the last {span}."),
}


OUTAGE_POINTS = 1.0  # percentage points above the median area's dark share that make an outage


def dark_pct(a: dict[str, Any]) -> float:
    return 100.0 * a["dark"] / a["dcc_hubs"] if a["dcc_hubs"] else 0.0


def outage_areas(areas: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    """The areas with an outage, worst first, and the median area's dark share (%) they are held
    against: an area is out when its share is OUTAGE_POINTS above the median's. Every area has a
    few dark hubs at any time (faults, no coverage), so "any dark hub" listed all 14 of them."""
    shares = sorted(dark_pct(a) for a in areas)
    if not shares:
        return [], 0.0
    mid = len(shares) // 2
    median = shares[mid] if len(shares) % 2 else (shares[mid - 1] + shares[mid]) / 2
    rows = sorted((a for a in areas if dark_pct(a) >= median + OUTAGE_POINTS), key=lambda a: -dark_pct(a))
    return rows, median


def outage_table(latest: dict[str, Any]) -> Any:
    """The areas with an outage now (outage_areas), or the words that none has."""
    areas = latest.get("areas", [])
    if not areas:
        return html.Div("Waiting for the fleet…", className="muted")
    rows, median = outage_areas(areas)
    rule = f"{OUTAGE_POINTS:g} point above the median area's dark share ({median:.2f}%)"
    if not rows:
        return html.Div(f"No area has an outage: none is {rule}.", className="muted", id="al-no-outage")
    return html.Div([
        html.Div(f"Areas {rule} or more, worst first.", className="small"),
        html.Table(className="table", id="al-outage-table", children=[
            html.Thead(html.Tr([html.Th(h) for h in ("Area", "CSP", "Dark hubs", "Dark %", "Alerts this tick")])),
            html.Tbody([html.Tr([html.Td(f"{a['area']} ({a['area_id']})"), html.Td(a["csp"]),
                                 html.Td(f"{a['dark']:,}", className="num"),
                                 html.Td(f"{dark_pct(a):.2f}%", className="num"),
                                 html.Td(f"{a['alerts']:,}", className="num")], className="outage")
                        for a in rows])])])


def reasons_figure(latest: dict[str, Any]):
    reasons = {k: v for k, v in latest.get("dark_by_reason", {}).items() if v}
    items = sorted(reasons.items(), key=lambda kv: -kv[1])
    return F.hbar([k for k, _ in items], [v for _, v in items], "Dark hubs by reason, now", "#d62728", 300, "hubs")


def layout(feed, actions=None) -> html.Div:
    ticks = feed.ticks_since(-1, F.LIVE_POINTS)
    latest = feed.latest()
    return html.Div([
        *pulse("al", feed.last_tick()),
        html.Div(className="row", children=[
            *(html.Div(className="panel col", children=[
                graph(id_, F.series(ticks, title, lines, empty=empty)),
                dcc.Store(id=f"{id_}-shown", data=F.shown_lines(ticks, lines))])
              for id_, (title, lines, empty) in CHARTS.items()),
        ]),
        html.Div(className="row", children=[
            html.Div(className="panel col", children=[html.H3("Outage areas"),
                                                      html.Div(outage_table(latest), id="al-areas")]),
            html.Div(className="panel col", children=[graph("al-reasons", reasons_figure(latest))]),
        ]),
    ])


def register(app, feed, actions) -> None:
    charts = [(Output(i, "figure"), Output(i, "extendData"), Output(f"{i}-shown", "data")) for i in CHARTS]

    @app.callback(*[o for c in charts for o in c], Output("al-areas", "children"), Output("al-reasons", "figure"),
                  Output("al-seen", "data"), Input(pulse_id("al"), "data"), State("al-seen", "data"),
                  *[State(f"{i}-shown", "data") for i in CHARTS])
    def update(frame, seen, *shown):
        tick = frame_tick(frame)
        new = upto(feed.ticks_since(-1 if seen is None else seen), tick)
        if not new:
            raise PreventUpdate
        window = upto(feed.ticks_since(-1, F.LIVE_POINTS), tick)
        out: list[Any] = []
        for (title, lines, empty), was in zip(CHARTS.values(), shown, strict=True):
            fig, ext, names = F.live_update(window, new, was, title, lines, empty=empty)
            out += [no_update if fig is None else fig, no_update if ext is None else ext, names]
        latest = feed.latest()
        return (*out, outage_table(latest), reasons_figure(latest), new[-1]["tick"])
