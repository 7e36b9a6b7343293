"""Firmware: rollouts with live progress, failure rate per wave, and version distributions."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from dash import Input, Output, State, html
from dash.exceptions import PreventUpdate

from dashboard import figures as F
from dashboard.components import graph, ops_table, pulse
from dashboard.reference import Reference

PATH = "/firmware"
TITLE = "Firmware"
KINDS = ("firmware_rollout",)
DEVICES = {"ch_firmware": "Comms hubs", "esme_firmware": "Electricity meters", "gsme_firmware": "Gas meters"}


def wave_failures(ops: list[dict[str, Any]]) -> go.Figure:
    """Failure rate per wave of each rollout: failed / (passed + failed) as waves finish."""
    fig = go.Figure()
    for o in ops:
        if o["kind"] != "firmware_rollout":
            continue
        xs, ys = [], []
        for w in o["progress"].get("waves", []):
            failed, passed = w["failed"], w["passed"]
            if failed + passed:
                xs.append(f"wave {w['index'] + 1}")
                ys.append(100.0 * failed / (failed + passed))
        fig.add_trace(go.Bar(x=xs, y=ys, name=o["name"].removeprefix("operations/")))
    fig.update_layout(**F.base_layout("Failure rate per wave, %", 300), barmode="group")
    if not fig.data:
        fig.add_annotation(text="no rollout has finished a wave yet", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
    return fig


def versions_figure(versions: dict[str, list[dict[str, Any]]], reference: Reference) -> go.Figure:
    """Devices by model and version, one bar group per device type: the 12 largest groups, each
    model's versions in the version order the API's catalog gives (1.9 before 1.12)."""
    fig = go.Figure()
    for key, label in DEVICES.items():
        device = key.removesuffix("_firmware").upper()
        rows = [r for r in versions.get(key, []) if r["version"] != "none"][:12]

        def order(r: dict[str, Any], device: str = device) -> tuple[str, int, str]:
            return reference.version_order(device, r["version"])

        rows.sort(key=order)
        fig.add_trace(go.Bar(y=[r["version"] for r in rows], x=[r["hubs"] for r in rows], orientation="h", name=label))
    fig.update_layout(**F.base_layout("Firmware versions in the fleet (devices)", 520))
    fig.update_yaxes(autorange="reversed", automargin=True)
    return fig


def layout(feed, actions=None) -> html.Div:
    ops = feed.operations()
    return html.Div([
        *pulse("fw", feed.last_tick()),
        html.Div(className="panel", children=[html.H3("Rollouts"), html.Div(ops_table(ops, KINDS), id="fw-ops")]),
        html.Div(className="row", children=[
            html.Div(className="panel col", children=[graph("fw-waves", wave_failures(ops))]),
            html.Div(className="panel col", children=[graph("fw-versions", versions_figure(feed.versions(), feed.reference()))]),
        ]),
    ])


def register(app, feed, actions) -> None:
    @app.callback(Output("fw-ops", "children"), Output("fw-waves", "figure"), Output("fw-versions", "figure"),
                  Output("fw-seen", "data"), Input("fw-pulse", "n_intervals"), State("fw-seen", "data"))
    def update(_n, seen):
        tick = feed.last_tick()
        if tick == seen:
            raise PreventUpdate
        ops = feed.operations()
        return ops_table(ops, KINDS), wave_failures(ops), versions_figure(feed.versions(), feed.reference()), tick
