"""Firmware: rollouts with live progress, failure rate per wave, and version distributions."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from dash import Input, Output, State, html
from dash.exceptions import PreventUpdate

from dashboard import figures as F
from dashboard.components import frame_tick, graph, ops_table, pulse, pulse_id
from dashboard.reference import Reference

PATH = "/firmware"
TITLE = "Firmware"
KINDS = ("firmware_rollout",)
DEVICES = {"ch_firmware": "Comms hubs", "esme_firmware": "Electricity meters", "gsme_firmware": "Gas meters"}


NO_ROLLOUTS = "No firmware rollout yet: inject one on the Scenario page."
NO_WAVES = "No rollout has finished a wave yet: the failure rate of each wave shows here once one has."
NO_VERSIONS = "Counting the fleet's firmware versions…"
BAR_PX = 18  # height per bar of the versions chart: every version's label gets a line of its own


def _wave_rates(o: dict[str, Any]) -> tuple[list[str], list[float]]:
    """A rollout's finished waves ("wave N") and their failure rates, %."""
    xs, ys = [], []
    for w in o["progress"].get("waves", []):
        failed, passed = w["failed"], w["passed"]
        if failed + passed:
            xs.append(f"wave {w['index'] + 1}")
            ys.append(100.0 * failed / (failed + passed))
    return xs, ys


def wave_failures(ops: list[dict[str, Any]]) -> go.Figure | None:
    """Failure rate per wave of each rollout: failed / (passed + failed) as waves finish, one
    trace per rollout with a failed device in a finished wave (a rollout at 0% throughout is left
    out of the chart and its legend); None when there is no such rollout (the page says so in
    words, not empty axes: `waves_panel`)."""
    fig = go.Figure()
    for o in ops:
        if o["kind"] != "firmware_rollout":
            continue
        xs, ys = _wave_rates(o)
        if any(ys):
            fig.add_trace(go.Bar(x=xs, y=ys, name=o["name"].removeprefix("operations/")))
    if not fig.data:
        return None
    fig.update_layout(**F.base_layout("Failure rate per wave, % of devices whose transfer is over", 300),
                      barmode="group", showlegend=True)
    fig.update_yaxes(title_text="% failed", rangemode="tozero")
    return fig


def waves_panel(ops: list[dict[str, Any]]) -> Any:
    fig = wave_failures(ops)
    if fig is None:
        finished = [o["name"].removeprefix("operations/") for o in ops
                    if o["kind"] == "firmware_rollout" and _wave_rates(o)[0]]
        text = (NO_WAVES if not finished else
                f"No device has failed in a finished wave ({', '.join(finished)}): every rate is 0%.")
        return html.Div([html.H3("Failure rate per wave"), html.Div(text, className="muted", id="fw-no-waves")])
    return graph("fw-waves", fig)


def versions_figure(versions: dict[str, list[dict[str, Any]]], reference: Reference) -> go.Figure | None:
    """Devices by model and version, one bar group per device type: the 12 largest groups, each
    model's versions in the version order the API's catalog gives (1.9 before 1.12). Every bar
    has its label (the chart grows with them); None before the first count."""
    fig = go.Figure()
    bars = 0
    for key, label in DEVICES.items():
        device = key.removesuffix("_firmware").upper()
        # A version no device runs now has no bar; a device type with none, no legend entry.
        rows = [r for r in versions.get(key, []) if r["version"] != "none" and r["hubs"]][:12]

        def order(r: dict[str, Any], device: str = device) -> tuple[str, int, str]:
            return reference.version_order(device, r["version"])

        if not rows:
            continue
        rows.sort(key=order)
        bars += len(rows)
        fig.add_trace(go.Bar(y=[r["version"] for r in rows], x=[r["hubs"] for r in rows], orientation="h", name=label))
    if not bars:
        return None
    fig.update_layout(**F.base_layout("Firmware versions in the fleet", 90 + BAR_PX * bars))
    # A category axis labels every other bar when it thinks them crowded: one a line, each labelled.
    fig.update_yaxes(autorange="reversed", automargin=True, type="category", dtick=1, tickfont=dict(size=11))
    fig.update_xaxes(title_text="devices")
    return fig


def versions_panel(versions: dict[str, list[dict[str, Any]]], reference: Reference) -> Any:
    fig = versions_figure(versions, reference)
    if fig is None:
        return html.Div(NO_VERSIONS, className="muted", id="fw-no-versions")
    return graph("fw-versions", fig)


def layout(feed, actions=None) -> html.Div:
    ops = feed.operations()
    return html.Div([
        *pulse("fw", feed.last_tick()),
        html.Div(className="panel", children=[html.H3("Rollouts"),
                                              html.Div(ops_table(ops, KINDS, empty=NO_ROLLOUTS), id="fw-ops")]),
        html.Div(className="row", children=[
            html.Div(className="panel col", id="fw-waves-box", children=waves_panel(ops)),
            html.Div(className="panel col", id="fw-versions-box",
                     children=versions_panel(feed.versions(), feed.reference())),
        ]),
    ])


def register(app, feed, actions) -> None:
    @app.callback(Output("fw-ops", "children"), Output("fw-waves-box", "children"),
                  Output("fw-versions-box", "children"), Output("fw-seen", "data"),
                  Input(pulse_id("fw"), "data"), State("fw-seen", "data"))
    def update(frame, seen):
        tick = frame_tick(frame)
        if tick == seen:
            raise PreventUpdate
        ops, versions = feed.operations(), feed.versions()
        # Until the first count arrives, look again each pulse (even with the clock paused).
        return (ops_table(ops, KINDS, empty=NO_ROLLOUTS), waves_panel(ops), versions_panel(versions, feed.reference()),
                tick if versions else None)
