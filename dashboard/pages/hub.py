"""Hub: look one hub up by its device id (or index): its meters, state and recent events."""

from __future__ import annotations

from typing import Any

import grpc
from dash import Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from dashboard.errors import error_box
from twin.generated.fleet.v1 import fleet_pb2

PATH = "/hub"
TITLE = "Hub"


def _kv(rows: list[tuple[str, Any]]) -> html.Table:
    return html.Table(className="table kv", children=[html.Tbody([
        html.Tr([html.Th(k), html.Td(v, id=f"hub-{k.lower().replace(' ', '-')}")]) for k, v in rows])])


def hub_view(hub: fleet_pb2.Hub, events: list[fleet_pb2.HubEvent], now_tick: int) -> html.Div:
    devices = [hub.comms_hub, *hub.meters] + ([hub.ppmid] if hub.ppmid.device_id else [])
    state = "reachable" if hub.reachable else ("dark: " + ", ".join(hub.dark_reasons) if hub.dcc_connected
                                               else "not on the DCC")
    return html.Div([
        html.Div(className="row", children=[
            html.Div(className="panel col", children=[html.H3(hub.name, className="mono"), _kv([
                ("State", state), ("Region", hub.region), ("Area", f"{hub.area_name} ({hub.area_id})"),
                ("SMETS", hub.smets), ("Variant", hub.variant), ("WAN", hub.wan), ("Supplier", hub.supplier),
                ("Gas supplier", hub.gas_supplier or "-"), ("Payment", hub.payment),
                ("Last contact", f"tick {hub.last_contact_tick} ({max(now_tick - hub.last_contact_tick, 0)} ticks ago)"
                 if hub.last_contact_tick >= 0 else "never"),
                ("HH days lost", hub.hh_days_lost),
                ("GSME battery", f"{hub.gsme_battery_pct:.0f}%" if hub.gas_supplier else "-")])]),
            html.Div(className="panel col", children=[
                html.H3("Devices"),
                html.Table(className="table", id="hub-devices", children=[
                    html.Thead(html.Tr([html.Th(h) for h in ("Type", "Device id", "Manufacturer", "Model", "Firmware")])),
                    html.Tbody([html.Tr([html.Td(d.type), html.Td(d.device_id, className="mono"), html.Td(d.manufacturer),
                                         html.Td(d.model), html.Td(d.firmware)]) for d in devices])]),
                html.H3("Registers"),
                _kv([(k, f"{v:,.1f} kWh") for k, v in sorted(hub.registers_kwh.items())]),
                html.H3("Recent events"),
                html.Table(className="table", id="hub-events", children=[
                    html.Thead(html.Tr([html.Th(h) for h in ("Time (UTC)", "Tick", "Event", "Code")])),
                    html.Tbody([html.Tr([html.Td(e.time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")), html.Td(e.tick),
                                         html.Td(e.kind), html.Td(e.code, className="mono")]) for e in events]
                               or [html.Tr([html.Td("no alerts from this hub in the retained history", colSpan=4)])])]),
            ]),
        ]),
    ])


def examples(actions) -> Any:
    """A few dark hubs to start from (one small page of the API's hub listing)."""
    c = actions.client()
    try:
        hubs = c.list_hubs("reachable=false AND smets=SMETS2", page_size=6).hubs
    except grpc.RpcError:
        return None
    if not hubs:
        return None
    return html.Div(className="small", children=["Dark hubs now: ", *[
        html.Span([dcc.Link(h.name.removeprefix("hubs/"), href=f"/hub?id={h.name.removeprefix('hubs/')}",
                            className="mono"), f" ({', '.join(h.dark_reasons)})  "]) for h in hubs]])


def layout(feed, actions=None) -> html.Div:
    return html.Div([
        html.Div(className="panel", children=[
            html.H3("Look up a hub"),
            html.Div(className="form-row", children=[
                dcc.Input(id="hub-id", type="text", placeholder="device id (00-DB-12-…) or hub index", debounce=True,
                          className="input-wide"),
                html.Button("Look up", id="hub-go", n_clicks=0, className="btn")]),
            html.Div(examples(actions) if actions is not None else None, id="hub-examples"),
            html.Div(id="hub-error")]),
        dcc.Loading(html.Div(id="hub-view")),
    ])


def register(app, feed, actions) -> None:
    @app.callback(Output("hub-id", "value"), Input("url", "search"))
    def from_url(search):
        """/hub?id=... (the links above, or from elsewhere) fills in the box, which looks it up."""
        from urllib.parse import parse_qs

        value = parse_qs((search or "").lstrip("?")).get("id", [""])[0]
        if not value:
            raise PreventUpdate
        return value

    @app.callback(Output("hub-view", "children"), Output("hub-error", "children"),
                  Input("hub-go", "n_clicks"), Input("hub-id", "value"), State("hub-id", "value"),
                  prevent_initial_call=True)
    def lookup(_n, _v, text):
        text = (text or "").strip()
        if not text:
            return None, error_box("Enter a device id or a hub index.")
        name = text if text.startswith("hubs/") else f"hubs/{text}"
        c = actions.client()
        try:
            hub = c.get_hub(name)
            events = c.fleet.ListHubEvents(fleet_pb2.ListHubEventsRequest(parent=hub.name, page_size=20),
                                           **c._kw()).events
        except grpc.RpcError as e:
            return None, error_box(e)
        return hub_view(hub, list(events), feed.clock().get("tick", 0)), None
