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


def outage_table(latest: dict[str, Any]) -> Any:
    """Areas with dark hubs or alerts now, worst first."""
    rows = sorted((a for a in latest.get("areas", []) if a["dark"] or a["alerts"]),
                  key=lambda a: -(a["dark"] / max(a["dcc_hubs"], 1)))
    if not rows:
        return html.Div("No area has dark hubs.", className="muted")
    return html.Table(className="table", children=[
        html.Thead(html.Tr([html.Th(h) for h in ("Area", "CSP", "Dark hubs", "Dark %", "Alerts this tick")])),
        html.Tbody([html.Tr([html.Td(f"{a['area']} ({a['area_id']})"), html.Td(a["csp"]),
                             html.Td(f"{a['dark']:,}", className="num"),
                             html.Td(f"{100 * a['dark'] / max(a['dcc_hubs'], 1):.2f}%", className="num"),
                             html.Td(f"{a['alerts']:,}", className="num")],
                            className="outage" if a["dark"] / max(a["dcc_hubs"], 1) > 0.05 else "")
                    for a in rows[:14]])])


def reasons_figure(latest: dict[str, Any]):
    reasons = {k: v for k, v in latest.get("dark_by_reason", {}).items() if v}
    items = sorted(reasons.items(), key=lambda kv: -kv[1])
    return F.hbar([k for k, _ in items], [v for _, v in items], "Dark hubs by reason", "#d62728", 300)


def layout(feed, actions=None) -> html.Div:
    ticks = feed.ticks_since(-1, F.LIVE_POINTS)
    latest = feed.latest()
    return html.Div([
        *pulse("al", feed.last_tick()),
        html.Div(className="row", children=[
            html.Div(className="panel col", children=[graph("al-rates", F.series(ticks, "Alerts per tick by kind", RATES))]),
            html.Div(className="panel col", children=[graph("al-peak", F.series(ticks, "Peak alerts per second", PEAK))]),
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
