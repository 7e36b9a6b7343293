"""Alerts: alert rates by kind, peak alerts per second, and the areas with outages now."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, html
from dash.exceptions import PreventUpdate

from dashboard import figures as F
from dashboard.components import graph, pulse

PATH = "/alerts"
TITLE = "Alerts"
KINDS = ("POWER_OUTAGE", "POWER_RESTORED", "LOW_BATTERY", "FIRMWARE_TRANSFER_OK", "FIRMWARE_TRANSFER_FAIL",
         "FIRMWARE_ACTIVATED", "EMERGENCY_CREDIT_ACTIVATED", "CREDIT_BELOW_DISABLEMENT", "SUPPLY_ARMED")
RATES = {k.replace("_", " ").lower(): (lambda r, k=k: r["alerts"].get(k, 0)) for k in KINDS}
PEAK = {"peak alerts/s": lambda r: r["peak_alerts_per_s"]}


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
            html.Div(className="panel col", children=[graph("al-rates", F.series(ticks, "Alerts per tick by kind", RATES))]),
            html.Div(className="panel col", children=[
                graph("al-peak", F.series(ticks, "Peak alerts per second within each tick", PEAK))]),
        ]),
        html.Div(className="row", children=[
            html.Div(className="panel col", children=[html.H3("Outage areas"),
                                                      html.Div(outage_table(latest), id="al-areas")]),
            html.Div(className="panel col", children=[graph("al-reasons", reasons_figure(latest))]),
        ]),
    ])


def register(app, feed, actions) -> None:
    @app.callback(Output("al-rates", "extendData"), Output("al-peak", "extendData"), Output("al-areas", "children"),
                  Output("al-reasons", "figure"), Output("al-seen", "data"),
                  Input("al-pulse", "n_intervals"), State("al-seen", "data"))
    def update(_n, seen):
        new = feed.ticks_since(-1 if seen is None else seen)
        if not new:
            raise PreventUpdate
        latest = feed.latest()
        return F.extend(new, RATES), F.extend(new, PEAK), outage_table(latest), reasons_figure(latest), new[-1]["tick"]
