"""The Dash app: a shell (header with the live clock, navigation) and one module per page."""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from dashboard.components import PULSE_MS, data_attrs, tick_label
from dashboard.pages import PAGES


def clock_text(feed) -> str:
    cur, clock = feed.current(), feed.clock()
    if not cur:
        return "waiting for the fleet…"
    state = clock.get("state", "")
    speed = clock.get("speed", 0.0)
    pace = "" if state != "running" else (" · flat out" if not speed else f" · {speed:g}x real time")
    if state == "failed":
        pace = f" · CLOCK FAILED: {clock.get('error', '')}"
    return f"{tick_label(cur)} · {state}{pace}"


def create_dash(feed, *, actions) -> Dash:
    """`actions` performs operator actions through the API with the caller's identity."""
    app = Dash(__name__, title="twin · GB smart metering fleet", update_title="", suppress_callback_exceptions=True,
               serve_locally=True, assets_folder="assets", compress=False)
    nav = [dcc.Link(p.TITLE, href=p.PATH, className="nav-link", id=f"nav-{p.TITLE.lower()}") for p in PAGES]
    app.layout = html.Div([
        dcc.Location(id="url"),
        dcc.Interval(id="hdr-pulse", interval=PULSE_MS),
        html.Header(className="header", children=[
            html.Div([html.Span("twin", className="brand"), html.Span(" GB smart metering fleet", className="brand-sub")]),
            html.Nav(nav, className="nav"),
            html.Div(clock_text(feed), id="hdr-clock", className="clock", **data_attrs(tick=str(feed.last_tick()))),
        ]),
        html.Main(id="page", className="page"),
    ])

    by_path = {p.PATH: p for p in PAGES}

    @app.callback(Output("page", "children"), Input("url", "pathname"))
    def route(path: str | None) -> Any:
        page = by_path.get(path or "/")
        if page is None:
            return html.Div([html.H2("Not found"), html.P(f"No page at {path}.")], className="panel")
        return page.layout(feed, actions)

    @app.callback(Output("hdr-clock", "children"), Output("hdr-clock", "data-tick"), Input("hdr-pulse", "n_intervals"),
                  State("hdr-clock", "children"))
    def clock(_n: int, shown: str) -> tuple[str, str]:
        text = clock_text(feed)
        if text == shown:
            raise PreventUpdate
        return text, str(feed.last_tick())

    for p in PAGES:
        p.register(app, feed, actions)
    return app
