"""Network: technology mix per CSP region, the switch-off timeline, 4G swap progress, and the
countdown for hubs still on a network that is going."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dash import Input, Output, Patch, State, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import figures as F
from dashboard.components import frame_tick, graph, num, ops_table, pulse, pulse_id
from twin.util.instants import format_instant

PATH = "/network"
TITLE = "Network"
SWAP_KINDS = ("swap_programme", "vwan_fallback", "network_switch_off")
NO_PROGRAMMES = "No 4G swap, VWAN fallback or switch-off yet: inject one on the Scenario page."


def countdown(network: dict[str, Any], hubs_by_wan: dict[str, dict[str, int]], now_iso: str) -> html.Div | html.Table:
    """Hubs on a technology with a switch-off date, and the time left (or how long it has been off)."""
    if not now_iso:
        return html.Div("Waiting for the fleet…", className="muted")
    now = datetime.fromisoformat(now_iso)
    rows = []
    for region, info in network.items():
        for t in info.get("technologies", []):
            if not t["off_from"]:
                continue
            off = datetime.fromisoformat(t["off_from"])
            left = off - now
            hubs = hubs_by_wan.get(region, {}).get(t["technology"], t["hubs"])
            if left.total_seconds() > 0:
                d, rem = divmod(int(left.total_seconds()), 86400)
                when = f"off in {d} d {rem // 3600} h"
            else:
                when = "off now"
            rows.append(html.Tr([html.Td(region), html.Td(t["technology"]), html.Td(format_instant(off)),
                                 html.Td(when, className="countdown"), html.Td(f"{hubs:,}", className="num")],
                                className="at-risk" if hubs else ""))
    if not rows:
        return html.Div("No switch-offs scheduled: no hubs at risk.", className="muted")
    return html.Table(className="table", children=[
        html.Thead(html.Tr([html.Th(h) for h in ("Region", "Technology", "Off from", "Countdown", "Hubs still on it")])),
        html.Tbody(rows)])


def timeline_panel(network: dict[str, Any], now_iso: str) -> Any:
    """The switch-off timeline, or the words that nothing is switched off or planned to be."""
    fig = F.switch_off_timeline(network, now_iso)
    if fig is None:
        return html.Div([html.H3("Switch-offs and network outages"),
                         html.Div("No switch-off or network outage is scheduled." if network else "Loading the network "
                                  "plans…", className="muted", id="net-no-switch-offs")])
    return graph("net-timeline", fig)


def layout(feed, actions=None) -> html.Div:
    latest, cur, net = feed.latest(), feed.current(), feed.network()
    return html.Div([
        *pulse("net", cur.get("tick", -1)),
        html.Div(className="row", children=[
            html.Div(className="panel col", children=[
                graph("net-mix", F.technology_mix(latest.get("hubs_by_wan", {}))),
                dcc.Store(id="net-mix-shown", data=F.technologies_shown(latest.get("hubs_by_wan", {})))]),
            html.Div(className="panel col", children=[
                html.H3("At risk: hubs on a network being switched off"),
                html.Div(countdown(net, latest.get("hubs_by_wan", {}), cur.get("time", "")), id="net-countdown")]),
        ]),
        html.Div(className="panel", id="net-timeline-box", children=timeline_panel(net, cur.get("time", ""))),
        html.Div(className="panel", children=[html.H3("4G swap, VWAN and switch-off programmes"),
                                              html.Div(ops_table(feed.operations(), SWAP_KINDS, empty=NO_PROGRAMMES),
                                                       id="net-ops")]),
        html.Div(className="panel", children=[html.H3("Reachable and dark hubs by region, end of the newest tick"),
                                              html.Div(region_table(feed.current()), id="net-regions")]),
    ])


REGION_COLUMNS = ("CSP region", "Reachable hubs", "Dark hubs", "Dark %", "Messages this tick")


def region_table(cur: dict[str, Any]) -> Any:
    """Per CSP region at the end of the newest tick: reachable and dark hubs, the dark share
    (dark / (reachable + dark)), and the tick's messages."""
    if not cur:
        return html.Div("Waiting for the fleet…", className="muted")

    def row(c: str) -> html.Tr:
        reachable, dark = cur.get("reachable_by_csp", {}).get(c, 0), cur["dark_by_csp"].get(c, 0)
        return html.Tr([html.Td(c), html.Td(f"{reachable:,}", className="num"), html.Td(f"{dark:,}", className="num"),
                        html.Td(f"{100 * dark / max(reachable + dark, 1):.2f}%", className="num"),
                        html.Td(num(cur["messages"].get(c, 0)), className="num")])

    return html.Table(className="table", id="net-region-table", children=[
        html.Thead(html.Tr([html.Th(h, className="" if h == "CSP region" else "num") for h in REGION_COLUMNS])),
        html.Tbody([row(c) for c in F.CSPS])])


def register(app, feed, actions) -> None:
    @app.callback(Output("net-mix", "figure"), Output("net-mix-shown", "data"), Output("net-countdown", "children"),
                  Output("net-timeline-box", "children"),
                  Output("net-ops", "children"), Output("net-regions", "children"), Output("net-seen", "data"),
                  Input(pulse_id("net"), "data"), State("net-seen", "data"), State("net-mix-shown", "data"))
    def update(frame, seen, shown):
        cur = feed.at(frame_tick(frame))
        if not cur or cur["tick"] == seen:
            raise PreventUpdate
        latest, net = feed.latest(), feed.network()
        by_wan = latest.get("hubs_by_wan", {})
        techs = F.technologies_shown(by_wan)
        if techs != shown:
            # A technology gained its first hubs or lost its last (3G after a swap programme):
            # the traces change, so the whole figure goes.
            mix: Any = F.technology_mix(by_wan)
        else:
            mix = Patch()
            for i, ys in enumerate(F.technology_mix_y(by_wan)):
                mix["data"][i]["y"] = ys
        return (mix, techs, countdown(net, latest.get("hubs_by_wan", {}), cur["time"]), timeline_panel(net, cur["time"]),
                ops_table(feed.operations(), SWAP_KINDS, empty=NO_PROGRAMMES), region_table(cur), cur["tick"])
