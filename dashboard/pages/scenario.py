"""Scenario: clock control, where the run lives (nodes, shards per node, shard recoveries), a form
for every operator event, and the Operations with their progress, pause, resume and cancel. Every
action goes through the gRPC API as the signed-in operator; what the server rejects is shown with
its own error text."""

from __future__ import annotations

import json
from typing import Any

import grpc
from dash import ALL, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from dashboard import forms
from dashboard.components import data_attrs, frame_tick, ops_table, pulse, pulse_id, tick_label
from dashboard.errors import error_box
from dashboard.reference import Reference
from twin.generated.fleet.v1 import fleet_pb2
from twin.util.grammar import GrammarError, parse_number

PATH = "/scenario"
TITLE = "Scenario"


def field_input(event: str, spec: forms.FieldSpec, area_labels: dict[str, str]) -> html.Div:
    fid = {"type": "ev-field", "event": event, "name": spec.name}
    if spec.kind == "bool":
        control: Any = dcc.Checklist(id=fid, options=[{"label": " yes", "value": "yes"}], value=[])
    elif spec.choices:
        labels = area_labels if spec.name in ("area", "areas") else {}
        control = dcc.Dropdown(id=fid, options=[{"label": labels.get(c, c) or "(none)", "value": c} for c in spec.choices],
                               multi=spec.repeated, clearable=True, placeholder="default" if spec.optional else "choose…")
    else:
        control = dcc.Input(id=fid, type="text", debounce=False, className="input",
                            placeholder=forms.HELP.get(spec.name, "default" if spec.optional else ""),
                            # HTML's inputmode=decimal (a keypad with a point); Dash's stub lists an older vocabulary.
                            inputMode="decimal" if spec.kind in ("number", "integer") and not spec.repeated  # type: ignore[arg-type]
                            else "text")
    return html.Div(className="field", children=[html.Label(spec.label, className="label"),
                                                 control])


def event_form(event: str, reference: Reference) -> list[Any]:
    """The form of one event type, its choices from the API's catalog."""
    return [field_input(event, spec, reference.area_labels()) for spec in forms.fields(event, reference)]


def clock_panel(cur: dict[str, Any], clock: dict[str, Any]) -> list[Any]:
    """The newest tick (`cur`, named as the header names it: one tick on the page) and the clock's
    state and speed."""
    state = clock.get("state", "?")
    speed = clock.get("speed", 0)
    return [html.Span(f"{tick_label(cur) if cur else 'no tick yet'} · ", id="sc-clock-text",
                      **data_attrs(tick=str(cur.get("tick", -1)))),
            html.Strong(state, id="sc-clock-state", className=f"state state-{state}"),
            html.Span(f" · {'flat out' if not speed else f'{speed:g}x real time'}")]


NO_RECOVERIES = "No shard recoveries: every shard has run without a break since the API started."
RECOVERIES_SHOWN = 10


def _when(iso: str) -> str:
    return iso[:16].replace("T", " ") if iso else ""


def cluster_panel(cluster: dict[str, Any]) -> list[Any]:
    """The nodes (alive or dead, CPUs, memory, shards on each), and the newest shard recoveries
    (when, shard, node, the checkpoint restored, ticks replayed, seconds) or a plain sentence when
    there were none. `cluster` is FleetFeed.cluster()'s record ({} before the first answer)."""
    if not cluster:
        return [html.Div("Waiting for the API's view of the cluster…", className="muted")]
    nodes = cluster["nodes"]
    alive = sum(n["alive"] for n in nodes)
    rows = []
    for n in nodes:
        shards = n["shards"]
        quiet = sum(not p["responding"] for p in shards)
        state = "alive" if n["alive"] else "dead"
        rows.append(html.Tr(className="node-row", **data_attrs(ip=n["ip"], alive=str(n["alive"]).lower(),
                                                               shards=str(len(shards))), children=[
            html.Td(n["ip"], className="mono"), html.Td(html.Strong(state, className=f"state state-{state}")),
            html.Td(f"{n['cpus']:g}"), html.Td(f"{n['memory_bytes'] / 2**30:.1f} GiB"),
            html.Td(f"{len(shards)}" + (f" ({', '.join(str(p['shard']) for p in shards)})" if shards else "")
                    + (f", {quiet} not answering" if quiet else ""))]))
    head = f"{alive} of {len(nodes)} node{'s' if len(nodes) != 1 else ''} alive"
    if cluster["unplaced"]:
        head += f"; {len(cluster['unplaced'])} shard(s) starting, on no node yet"
    out: list[Any] = [
        html.Div(head, id="sc-cluster-head", **data_attrs(alive=str(alive), nodes=str(len(nodes)))),
        html.Table(className="table", id="sc-nodes", children=[
            html.Thead(html.Tr([html.Th(h) for h in ("Node", "State", "CPUs", "Memory", "Shards")])),
            html.Tbody(rows)])]
    recs = cluster["recoveries"][:RECOVERIES_SHOWN]
    count = cluster["recovery_count"]
    if not recs:
        out.append(html.P(NO_RECOVERIES, id="sc-recoveries", className="muted", **data_attrs(count="0")))
        return out
    out.append(html.H4(f"Shard recoveries: {count}" + (f" (the newest {len(recs)})" if count > len(recs) else "")))
    out.append(html.Table(className="table", id="sc-recoveries", **data_attrs(count=str(count)), children=[
        html.Thead(html.Tr([html.Th(h) for h in ("When (simulated)", "Completed (UTC)", "Shard", "Node",
                                                 "Restored from", "Replayed", "Seconds")])),
        html.Tbody([html.Tr(className="recovery-row", **data_attrs(shard=str(r["shard"]), replayed=str(r["replayed_ticks"])),
                            children=[
            html.Td(f"{_when(r['time'])} · tick {r['tick']}"), html.Td(_when(r["complete_time"])),
            html.Td(str(r["shard"])), html.Td(r["node_ip"] or "?", className="mono"),
            html.Td(f"checkpoint of {_when(r['checkpoint_time'])}" if r["checkpoint_tick"] >= 0 else "the seed (rebuilt)"),
            html.Td(f"{r['replayed_ticks']} tick{'s' if r['replayed_ticks'] != 1 else ''}"),
            html.Td(f"{r['seconds']:.1f}" + (f" ({r['attempts']} attempts)" if r["attempts"] > 1 else ""))])
            for r in recs])]))
    return out


def layout(feed, actions=None) -> html.Div:
    return html.Div([
        *pulse("sc", feed.last_tick()),
        dcc.Store(id="sc-ops-sig"),
        html.Div(className="panel", children=[
            html.H3("Clock"),
            html.Div(clock_panel(feed.current(), feed.clock()), id="sc-clock", className="clock-line"),
            html.Div(className="form-row", children=[
                html.Button("Pause", id="sc-pause", n_clicks=0, className="btn"),
                html.Button("Resume", id="sc-resume", n_clicks=0, className="btn"),
                html.Button("Step 1 tick", id="sc-step1", n_clicks=0, className="btn"),
                html.Button("Step 1 day", id="sc-step48", n_clicks=0, className="btn"),
                dcc.Input(id="sc-speed", type="text", placeholder="speed x, 0 = flat out", className="input"),
                html.Button("Set speed", id="sc-set-speed", n_clicks=0, className="btn")]),
            html.Div(id="sc-clock-msg")]),
        html.Div(className="panel", children=[
            html.H3("Cluster"),
            dcc.Store(id="sc-cluster-sig"),
            html.Div(cluster_panel(feed.cluster()), id="sc-cluster")]),
        html.Div(className="panel", children=[
            html.H3("Inject an operator event"),
            html.Div(className="form-row", children=[
                html.Label("Event", className="label"),
                dcc.Dropdown(id="ev-type", options=[{"label": e.replace("_", " "), "value": e} for e in forms.EVENTS],
                             value="power_outage", clearable=False, className="dropdown-wide"),
                html.Label("At", className="label"),
                dcc.Input(id="ev-at", type="text", placeholder=forms.HELP["at"], className="input-wide")]),
            html.Div(event_form("power_outage", feed.reference()), id="ev-form", className="form-grid"),
            html.Button("Inject", id="ev-submit", n_clicks=0, className="btn btn-primary"),
            html.Div(id="ev-result")]),
        html.Div(className="panel", children=[
            html.H3("Operations"), html.Div(ops_table(feed.operations(), controls=True), id="sc-ops"),
            html.Div(id="sc-op-msg")]),
    ])


def register(app, feed, actions) -> None:
    @app.callback(Output("ev-form", "children"), Input("ev-type", "value"), prevent_initial_call=True)
    def choose(event):
        return event_form(event, feed.reference())

    @app.callback(Output("ev-result", "children"),
                  Input("ev-submit", "n_clicks"),
                  State("ev-type", "value"), State("ev-at", "value"),
                  State({"type": "ev-field", "event": ALL, "name": ALL}, "value"),
                  State({"type": "ev-field", "event": ALL, "name": ALL}, "id"),
                  prevent_initial_call=True)
    def inject(n, event, at, values, ids):
        if not n:
            raise PreventUpdate
        given = {}
        for i, v in zip(ids, values, strict=True):
            if i["event"] == event:
                given[i["name"]] = v
        req, errors = forms.build_request(event, given, at or "")
        if req is None:
            return error_box("Not sent: fix these fields.", errors)
        c = actions.client()
        try:
            op = c.fleet.CreateEvent(req, **c._kw())
        except grpc.RpcError as e:
            return error_box(e)
        feed.update_operation(op)
        feed.refresh()
        md = c.progress(op)
        state = fleet_pb2.OperationState.Name(md.state).removeprefix("OPERATION_STATE_").lower()
        return html.Div(className="ok", role="status", children=[
            html.Strong("Accepted: "), html.Span(op.name, className="mono", id="ev-op-name"),
            html.Span(f" ({md.kind}, {state}, from tick {md.start_tick})")])

    @app.callback(Output("sc-clock-msg", "children"),
                  Input("sc-pause", "n_clicks"), Input("sc-resume", "n_clicks"), Input("sc-step1", "n_clicks"),
                  Input("sc-step48", "n_clicks"), Input("sc-set-speed", "n_clicks"), State("sc-speed", "value"),
                  prevent_initial_call=True)
    def clock_action(_a, _b, _c, _d, _e, speed):

        c = actions.client()
        which = ctx.triggered_id
        try:
            if which == "sc-pause":
                c.fleet.UpdateClock(fleet_pb2.UpdateClockRequest(state=fleet_pb2.CLOCK_STATE_PAUSED), **c._kw())
            elif which == "sc-resume":
                c.fleet.UpdateClock(fleet_pb2.UpdateClockRequest(state=fleet_pb2.CLOCK_STATE_RUNNING, speed=-1), **c._kw())
            elif which in ("sc-step1", "sc-step48"):
                c.fleet.StepClock(fleet_pb2.StepClockRequest(count=1 if which == "sc-step1" else 48),
                                  metadata=c.metadata, timeout=120)
            elif which == "sc-set-speed":
                try:
                    value = parse_number(speed or "")
                except GrammarError:
                    return error_box("Speed: a number of simulated seconds per second (0 = flat out).")
                if value < 0:
                    return error_box("Speed: must not be negative.")
                c.fleet.UpdateClock(fleet_pb2.UpdateClockRequest(
                    state=fleet_pb2.CLOCK_STATE_UNSPECIFIED if value else fleet_pb2.CLOCK_STATE_RUNNING, speed=value),
                    **c._kw())
        except grpc.RpcError as e:
            return error_box(e)
        feed.refresh()
        return None

    @app.callback(Output("sc-op-msg", "children"),
                  Input({"type": "op-action", "op": ALL, "action": ALL}, "n_clicks"), prevent_initial_call=True)
    def op_action(clicks):
        trig = ctx.triggered_id
        if not trig or not any(clicks) or not ctx.triggered[0]["value"]:
            raise PreventUpdate  # the buttons were redrawn, not clicked
        from google.longrunning import operations_pb2


        c = actions.client()
        try:
            if trig["action"] == "pause":
                op = c.fleet.PauseOperation(fleet_pb2.PauseOperationRequest(name=trig["op"]), **c._kw())
            elif trig["action"] == "resume":
                op = c.fleet.ResumeOperation(fleet_pb2.ResumeOperationRequest(name=trig["op"]), **c._kw())
            else:
                c.operations.CancelOperation(operations_pb2.CancelOperationRequest(name=trig["op"]), **c._kw())
                op = c.get_operation(trig["op"])
        except grpc.RpcError as e:
            return error_box(e)
        feed.update_operation(op)
        return html.Div(f"{trig['action'].title()} sent for {trig['op']}.", className="ok", role="status")

    @app.callback(Output("sc-cluster", "children"), Output("sc-cluster-sig", "data"), Input(pulse_id("sc"), "data"),
                  State("sc-cluster-sig", "data"))
    def cluster(_n, sig):
        """Redrawn only when the feed's view changed (a few times a minute at most)."""
        view = feed.cluster()
        new_sig = json.dumps(view, sort_keys=True)
        if new_sig == sig:
            raise PreventUpdate
        return cluster_panel(view), new_sig

    @app.callback(Output("sc-clock", "children"), Output("sc-ops", "children"), Output("sc-ops-sig", "data"),
                  Output("sc-seen", "data"), Input(pulse_id("sc"), "data"), State("sc-ops-sig", "data"),
                  State("sc-seen", "data"))
    def refresh(frame, sig, seen):
        ops = feed.operations()
        # percent_done too: a power outage's moves every tick while its counts stand still.
        new_sig = json.dumps([[o["name"], o["state"], o["progress"], o.get("percent_done")] for o in ops],
                             sort_keys=True)
        clock, cur = feed.clock(), feed.at(frame_tick(frame))
        # The clock line changes with the tick, and also when it is paused, resumed or sped up.
        clock_sig = json.dumps([cur.get("tick"), clock.get("state"), clock.get("speed")])
        if new_sig == sig and clock_sig == seen:
            raise PreventUpdate
        # Redraw the table only when an operation changed, so a button is never swapped mid-click.
        return (clock_panel(cur, clock) if clock_sig != seen else no_update,
                ops_table(ops, controls=True) if new_sig != sig else no_update, new_sig, clock_sig)
