"""The Dash app: a shell (header with the live clock, navigation) and one module per page."""

from __future__ import annotations

from typing import Any

from dash import ALL, Dash, Input, Output, State, dcc, html, no_update

from dashboard.components import PULSE_MS, data_attrs, tick_label
from dashboard.pages import PAGES


def clock_text(feed, cur: dict[str, Any] | None = None) -> str:
    """The header's clock line for the tick of `cur` (the feed's newest when not given)."""
    cur = feed.current() if cur is None else cur
    clock = feed.clock()
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

    # One timer for the header and the page: each pulse the header names the newest tick and
    # hands the same tick to the page's frame (components.pulse), so both draw one tick.
    @app.callback(Output("hdr-clock", "children"), Output("hdr-clock", "data-tick"),
                  Output({"type": "pulse", "page": ALL}, "data"), Input("hdr-pulse", "n_intervals"),
                  State("hdr-clock", "children"), State({"type": "pulse", "page": ALL}, "id"))
    def clock(n: int | None, shown: str, frames: list[Any]) -> tuple[Any, Any, list[dict[str, Any]]]:
        cur = feed.current()
        text = clock_text(feed, cur)
        tick = cur.get("tick", -1)
        each = [{"tick": tick, "n": n or 0}] * len(frames)
        if text == shown:
            return no_update, no_update, each
        return text, str(tick), each

    for p in PAGES:
        p.register(app, feed, actions)
    return app
