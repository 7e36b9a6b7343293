"""Capacity: can the network cope? Headroom per link, latency against the Target Response Times,
the share within target, backlog and the oldest queued message, alerts under load, the North base
stations and the central DSP stage (WatchFleet's TickSummary.capacity, one NetworkCapacity a tick)."""

from __future__ import annotations

import itertools
from typing import Any

import plotly.graph_objects as go
from dash import Input, Output, State, html
from dash.exceptions import PreventUpdate

from dashboard import figures as F
from dashboard.components import data_attrs, frame_tick, graph, kpi, pulse, pulse_id, upto
from twin.util import units
from twin.util.units import ALERT_OUTCOMES, format_seconds

PATH = "/capacity"
TITLE = "Capacity"
WINDOW = 48  # ticks the series and the window totals cover: one simulated day
TICK_MS = 30 * 60 * 1000  # a tick is one half-hour settlement period
CLASSES = ("alert", "critical", "on-demand", "scheduled", "firmware", "security")  # the API's traffic_class names
TECH_ORDER = ("LRR", "G2", "G3", "G4", "VWAN")
CLASS_DASH = {"alert": "solid", "critical": "dot", "on-demand": "dash", "scheduled": "longdash", "firmware": "dashdot",
              "security": "longdashdot"}
# Headroom bands by utilisation (offered load / capacity). A queue with random arrivals waits about
# rho / (1 - rho) service times: 2x at 70%, 9x at 90%, and past 100% the queue grows without
# bound. The band edges are an operator's rule of thumb [U], not a published DCC figure.
BANDS = ((0.7, "#1b7f3b", "under 70%"), (0.9, "#e6a100", "70-90%"), (1.0, "#d62728", "90-100%"),
         (float("inf"), "#7f0000", "over 100%: a queue grows"))
NO_CAPACITY = ("The API's tick summaries carry no capacity figures: the capacity model is off for this run "
               "(params.capacity.enabled), or the API serving this dashboard predates it.")
# The latency axis' ticks, seconds: the units an operator thinks in.
LATENCY_TICKS = ((0.01, "10 ms"), (0.1, "0.1 s"), (1, "1 s"), (10, "10 s"), (60, "1 min"), (600, "10 min"),
                 (3_600, "1 h"), (21_600, "6 h"), (86_400, "1 d"), (604_800, "1 week"))


# plotly_white's look in a few properties: the full template is ~7 kB of JSON, and this page's
# figures are redrawn every tick (DESIGN.md: an update under 100 kB whatever the fleet size).
_GRID = dict(gridcolor="#ebf0f8", linecolor="#ebf0f8", zerolinecolor="#ebf0f8", automargin=True)
SLIM_TEMPLATE = go.layout.Template(layout=dict(plot_bgcolor="#fff", paper_bgcolor="#fff", font=dict(color="#2a3f5f"),
                                               xaxis=_GRID, yaxis=_GRID, hoverlabel=dict(align="left")))


def _layout(title: str, height: int) -> dict[str, Any]:
    return F.base_layout(title, height) | {"template": SLIM_TEMPLATE}


# -- small readers of a tick record's capacity (dashboard.feed.capacity_record) -------------------
def link_label(link: dict[str, Any]) -> str:
    return units.link_label(link["csp"], link["technology"])


def _link_key(link: dict[str, Any]) -> tuple[int, int, str]:
    csp = F.CSPS.index(link["csp"]) if link["csp"] in F.CSPS else len(F.CSPS)
    tech = TECH_ORDER.index(link["technology"]) if link["technology"] in TECH_ORDER else len(TECH_ORDER)
    return csp, tech, link["technology"]


def links(cap: dict[str, Any]) -> list[dict[str, Any]]:
    """The tick's links in a fixed order (CSP, then technology), so live bars never jump."""
    return sorted(cap.get("links", []), key=_link_key)


def service(cap: dict[str, Any], csp: str, klass: str) -> dict[str, Any] | None:
    return next((c for c in cap.get("classes", []) if c["csp"] == csp and c["traffic_class"] == klass), None)


def band(utilisation: float) -> tuple[str, str]:
    """(colour, label) of the headroom band a utilisation falls in."""
    return next((colour, label) for edge, colour, label in BANDS if utilisation < edge)


def _capacity_ticks(ticks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in ticks if r.get("capacity")]


# -- figures (pure: records in, figures out) ----------------------------------------------------
def headroom_figure(cap: dict[str, Any], window: list[dict[str, Any]]) -> go.Figure:
    """A bar per link: this tick's utilisation, coloured by headroom band, with the peak over
    `window` (tick records) as a marker and the capacity line at 100%."""
    rows = links(cap)
    names = [link_label(link) for link in rows]
    util = [100 * link["utilisation"] for link in rows]
    peak: dict[str, float] = {}
    for r in _capacity_ticks(window):
        for link in r["capacity"]["links"]:
            name = link_label(link)
            peak[name] = max(peak.get(name, 0.0), 100 * link["utilisation"])
    fig = go.Figure()
    fig.add_trace(go.Bar(
        x=util, y=names, orientation="h", name="this half-hour", showlegend=False,
        marker_color=[band(u / 100)[0] for u in util], text=[f"{u:.0f}%" for u in util],
        # Inside the bar's end where it fits, so the label never sits on the peak marker beyond it.
        textposition=["inside" if u >= 12 else "outside" for u in util], insidetextanchor="end",
        insidetextfont=dict(color="#fff"), cliponaxis=False,
        customdata=[[link["capacity_per_s"], link["backlog"], band(link["utilisation"])[1]] for link in rows],
        hovertemplate="%{y}: %{x:.1f}% of capacity<br>capacity %{customdata[0]:,.3f} messages/s"
                      "<br>queued %{customdata[1]:,} messages<br>band %{customdata[2]}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[peak.get(n, 0.0) for n in names], y=names, mode="markers",
                             name=f"peak, last {_span(window)}",
                             showlegend=False,
                             marker=dict(symbol="diamond", size=9, color="#1d2630"),
                             hovertemplate=f"%{{y}}: peak %{{x:.1f}}% in the last {_span(window)}<extra></extra>"))
    top = max([110.0, *util, *peak.values()]) * 1.12
    fig.add_vline(x=100, line=dict(color="#7f0000", dash="dash", width=1.5))
    fig.add_annotation(x=100, y=1.0, yref="paper", text="capacity", showarrow=False, xanchor="left", yanchor="bottom",
                       font=dict(size=11, color="#7f0000"))
    fig.update_layout(**_layout("Link utilisation this half-hour (offered load / capacity)", 60 + 30 * len(rows)),
                      bargap=0.25)
    fig.update_layout(margin=dict(l=90, r=20, t=36, b=44))
    fig.update_xaxes(title_text="% of the link's capacity", range=[0, top], ticksuffix="%")
    fig.update_yaxes(autorange="reversed")
    return fig


def band_key(window: list[dict[str, Any]]) -> html.Div:
    """The colour key of the headroom bands and the peak marker (over `window`, tick records)."""
    return html.Div(className="small band-key", children=[
        *(html.Span([html.Span(className="swatch", style={"background": colour}), label]) for _, colour, label in BANDS),
        html.Span(f"◆ peak in the last {_span(window)}")])


def latency_figure(cap: dict[str, Any]) -> go.Figure:
    """Per class (x) and CSP (offset, coloured): the p99 latency as a marker, a bar down to p50 and
    the p95 as an open marker, on a log axis in seconds, with each class's Target Response Time as
    a dash. A class a CSP sent nothing in this tick has no point."""
    fig = go.Figure()
    targets: dict[str, float] = {}
    for j, csp in enumerate(F.CSPS):
        xs, p50, p95, p99, hover = [], [], [], [], []
        for i, klass in enumerate(CLASSES):
            sv = service(cap, csp, klass)
            if sv is None:
                continue
            targets[klass] = sv["target_response_s"]
            if not sv["messages"]:
                continue
            xs.append(i + (j - 1) * 0.22)
            p50.append(sv["latency_p50_s"])
            p95.append(sv["latency_p95_s"])
            p99.append(sv["latency_p99_s"])
            hover.append(f"{csp} {klass}: p50 {format_seconds(sv['latency_p50_s'])} · p95 {format_seconds(sv['latency_p95_s'])}"
                         f" · p99 {format_seconds(sv['latency_p99_s'])}<br>target {format_seconds(sv['target_response_s'])}"
                         f" · {sv['messages']:,} messages · {100 * sv['within_target']:.1f}% within target")
        if not xs:
            continue  # no message of any class in this region: no point, no legend entry
        colour = F.CSP_COLOURS[csp]
        # p95 first, so the p99 marker (the figure held against the target) is drawn on top.
        fig.add_trace(go.Scatter(x=xs, y=p95, mode="markers", name=f"{csp} p95", legendgroup=csp, showlegend=False,
                                 hoverinfo="skip", marker=dict(color="#fff", size=11, line=dict(color=colour, width=2))))
        fig.add_trace(go.Scatter(
            x=xs, y=p99, mode="markers", name=f"{csp} p99", legendgroup=csp, text=hover, hoverinfo="text",
            marker=dict(color=colour, size=7),
            error_y=dict(type="data", symmetric=False, array=[0.0] * len(xs),
                         arrayminus=[a - b for a, b in zip(p99, p50, strict=True)], color=colour, thickness=2,
                         width=0)))
    known = [i for i, k in enumerate(CLASSES) if k in targets]
    fig.add_trace(go.Scatter(x=known, y=[targets[CLASSES[i]] for i in known], mode="markers",
                             name="Target Response Time", hovertemplate="target %{y:,.0f} s<extra></extra>",
                             marker=dict(symbol="line-ew", size=46, line=dict(color="#b00020", width=2.5))))
    fig.update_layout(**_layout("Latency this half-hour by class: ● p99 inside ○ p95, bar down to p50", 360))
    fig.update_layout(legend=dict(orientation="h", y=-0.22, x=0), margin=dict(l=60, r=10, t=36, b=80))
    fig.update_xaxes(tickvals=list(range(len(CLASSES))),
                     ticktext=[f"{k}<br>target {format_seconds(targets[k])}" if k in targets else k for k in CLASSES],
                     range=[-0.5, len(CLASSES) - 0.5], showgrid=False)
    fig.update_yaxes(type="log", title_text="latency (log scale)", tickvals=[v for v, _ in LATENCY_TICKS],
                     ticktext=[t for _, t in LATENCY_TICKS])
    return fig


def within_table(cap: dict[str, Any]) -> html.Table:
    """Share of the tick's messages answered within target, per CSP (rows) and class."""
    def cell(csp: str, klass: str) -> html.Td:
        sv = service(cap, csp, klass)
        if sv is None or not sv["messages"]:
            return html.Td("-", className="num muted-cell", title="no messages this half-hour")
        share = sv["within_target"]
        cls = "cap-ok" if share >= 0.99 else "cap-warn" if share >= 0.95 else "cap-bad"
        return html.Td(f"{100 * share:.1f}%", className=f"num {cls}",
                       title=f"of {sv['messages']:,} messages (target {format_seconds(sv['target_response_s'])})",
                       id=f"cap-within-{csp.lower()}-{klass}", **data_attrs(value=f"{share:.6f}"))
    return html.Table(className="table", children=[
        html.Thead(html.Tr([html.Th("CSP region"), *(html.Th(k, className="num") for k in CLASSES)])),
        html.Tbody([html.Tr([html.Td(c), *(cell(c, k) for k in CLASSES)]) for c in F.CSPS])])


def _series(window: list[dict[str, Any]], field: str, scale: float = 1.0) -> dict[tuple[str, str], list[float]]:
    """(CSP, class) -> the field over the window's ticks, for the pairs not zero throughout."""
    out: dict[tuple[str, str], list[float]] = {}
    for csp in F.CSPS:
        for klass in CLASSES:
            ys = []
            for r in window:
                sv = service(r["capacity"], csp, klass)
                ys.append(sv[field] / scale if sv else 0.0)
            if any(ys):
                out[(csp, klass)] = ys
    return out


def queue_figure(window: list[dict[str, Any]], *, field: str, title: str, y_title: str, scale: float = 1.0
                 ) -> go.Figure:
    """One line per (CSP, class) with anything queued in the window: colour by CSP, dash by class.
    Evenly spaced ticks travel as x0 and dx, not a date per point (the update stays small)."""
    fig = go.Figure()
    ticks = [r["tick"] for r in window]
    even = all(b - a == 1 for a, b in itertools.pairwise(ticks))
    xs: dict[str, Any] = ({"x0": window[0]["time"], "dx": TICK_MS} if even else {"x": [r["time"] for r in window]})
    for (csp, klass), ys in _series(window, field, scale).items():
        fig.add_trace(go.Scatter(y=ys, mode="lines", name=f"{csp} {klass}", **xs,
                                 line=dict(color=F.CSP_COLOURS[csp], dash=CLASS_DASH.get(klass, "solid"))))
    fig.update_layout(**_layout(title, 300))
    fig.update_xaxes(type="date")
    fig.update_yaxes(title_text=y_title, rangemode="tozero")
    return fig


def backlog_panel(window: list[dict[str, Any]]) -> Any:
    if not _series(window, "backlog"):
        return html.Div(f"Nothing queued at the end of any half-hour in the last {_span(window)}: every link served "
                        "what it was offered.", className="muted", id="cap-backlog-none")
    return graph("cap-backlog-fig", queue_figure(window, field="backlog", title="Backlog at the end of each half-hour",
                                                 y_title="messages queued"))


def age_panel(window: list[dict[str, Any]]) -> Any:
    if not _series(window, "oldest_age_s"):
        return html.Div(f"No message waited past the end of its half-hour in the last {_span(window)}.",
                        className="muted", id="cap-age-none")
    return graph("cap-age-fig", queue_figure(window, field="oldest_age_s", title="Age of the oldest queued message",
                                             y_title="hours", scale=3600.0))


def _span(window: list[dict[str, Any]]) -> str:
    hours = len(window) / 2
    return f"{hours:g} h" if hours <= 48 else f"{hours / 24:g} d"


def alerts_panel(window: list[dict[str, Any]]) -> Any:
    """Alerts delayed, throttled (SECMP0062), failed, redelivered and expired per CSP over the
    window, and the failed-alert queue now; a sentence when none was."""
    totals = {c: dict.fromkeys(ALERT_OUTCOMES, 0) for c in F.CSPS}
    for r in window:
        for a in r["capacity"].get("alerts", []):
            if a["csp"] in totals:
                for k in ALERT_OUTCOMES:
                    totals[a["csp"]][k] += a[k]
    queue = {a["csp"]: a["failed_queue"] for a in window[-1]["capacity"].get("alerts", [])}
    if not any(v for t in totals.values() for v in t.values()) and not any(queue.values()):
        return html.Div(f"No device alert was delayed, throttled, failed or expired in the last {_span(window)}.",
                        className="muted", id="cap-alerts-none")
    return html.Table(className="table", id="cap-alerts-table", children=[
        html.Thead(html.Tr([html.Th(f"last {_span(window)}"), *(html.Th(k, className="num") for k in ALERT_OUTCOMES),
                            html.Th("in the failed queue now", className="num")])),
        html.Tbody([html.Tr([html.Td(c), *(html.Td(f"{totals[c][k]:,}", className="num") for k in ALERT_OUTCOMES),
                             html.Td(f"{queue.get(c, 0):,}", className="num")]) for c in F.CSPS])])


def kpis(cur: dict[str, Any]) -> list[Any]:
    cap = cur.get("capacity") or {}
    rows = links(cap)
    if not rows:
        return [kpi("Capacity", "-", "no capacity figures")]
    busiest = max(rows, key=lambda link: link["utilisation"])
    worst = max((service(cap, c, "on-demand") or {"latency_p99_s": 0.0, "messages": 0, "csp": c} for c in F.CSPS),
                key=lambda sv: sv["latency_p99_s"] if sv["messages"] else -1.0)
    target = worst.get("target_response_s", 0.0)
    shares = [(sv["within_target"], c) for c in F.CSPS if (sv := service(cap, c, "on-demand")) and sv["messages"]]
    low, low_csp = min(shares) if shares else (1.0, "")
    queued = sum(sv["backlog"] for sv in cap.get("classes", []))
    oldest = max((sv["oldest_age_s"] for sv in cap.get("classes", [])), default=0.0)
    failed_queue = sum(a["failed_queue"] for a in cap.get("alerts", []))
    return [
        html.Div(kpi("Busiest link", f"{100 * busiest['utilisation']:.0f}%",
                     f"{link_label(busiest)} · " + (f"headroom {100 * (1 - busiest['utilisation']):.0f}%"
                                                   if busiest["utilisation"] <= 1 else
                                                   f"{100 * (busiest['utilisation'] - 1):.0f}% over capacity")),
                 id="cap-kpi-busiest", **data_attrs(link=link_label(busiest), value=f"{busiest['utilisation']:.6f}")),
        html.Div(kpi("On-demand p99", format_seconds(worst["latency_p99_s"]) if worst["messages"] else "-",
                     f"{worst['csp']} · target {format_seconds(target)}" if worst["messages"] else "no on-demand requests"),
                 id="cap-kpi-p99", className="over" if worst["messages"] and worst["latency_p99_s"] > target else "",
                 **data_attrs(csp=worst["csp"], value=f"{worst['latency_p99_s']:.6f}")),
        html.Div(kpi("On-demand within target", f"{100 * low:.1f}%",
                     # Naming the lowest CSP only where the figure shown tells them apart.
                     "no on-demand requests" if not shares else "every CSP" if len({f"{100 * v:.1f}" for v, _ in shares}) == 1
                     else f"lowest: {low_csp}"),
                 id="cap-kpi-within", **data_attrs(value=f"{low:.6f}")),
        html.Div(kpi("Queued", f"{queued:,}", f"oldest {format_seconds(oldest)}" if oldest else "nothing waiting"),
                 id="cap-kpi-queued", **data_attrs(value=str(queued))),
        html.Div(kpi("DSP utilisation", f"{100 * cap.get('dsp_utilisation', 0.0):.0f}%", "central DCC stage"),
                 id="cap-kpi-dsp", **data_attrs(value=f"{cap.get('dsp_utilisation', 0.0):.6f}")),
        html.Div(kpi("Busiest North base station", f"{100 * cap.get('base_station_peak_utilisation', 0.0):.0f}%",
                     f"{cap.get('base_stations_congested', 0):,} congested"
                     + (f" · {cap.get('base_station_backlog', 0):,} queued" if cap.get("base_station_backlog") else "")),
                 id="cap-kpi-bs", **data_attrs(value=str(cap.get("base_stations_congested", 0)))),
        html.Div(kpi("Failed-alert queue", f"{failed_queue:,}", "alerts awaiting redelivery (held 2 days)"),
                 id="cap-kpi-failed", **data_attrs(value=str(failed_queue))),
    ]


def content(feed, tick: int | None = None) -> tuple[str, list[Any]]:
    """(message, panels) for `tick` (a page frame's; the newest when None or no longer held by
    the feed). The panels' contents in PANELS order (kpis, headroom, latency, within, alerts, backlog,
    age); the message, when there is nothing to draw, says why (and the panels are hidden)."""
    cur = feed.current() if tick is None else feed.at(tick)
    if not cur:
        return "Waiting for the fleet…", [[], "", "", "", "", "", ""]
    cap = cur.get("capacity")
    if not cap:
        return NO_CAPACITY, [[], "", "", "", "", "", ""]
    window = _capacity_ticks(upto(feed.ticks_since(-1, WINDOW), cur["tick"]))
    return "", [kpis(cur), [graph("cap-links-fig", headroom_figure(cap, window)), band_key(window)],
                graph("cap-latency-fig", latency_figure(cap)), within_table(cap), alerts_panel(window),
                backlog_panel(window), age_panel(window)]


PANELS = ("cap-kpis", "cap-links", "cap-latency", "cap-within", "cap-alerts", "cap-backlog", "cap-age")
HIDDEN = {"display": "none"}


def layout(feed, actions=None) -> html.Div:
    tick = feed.last_tick()
    message, (kp, links_, latency, within, alerts, backlog, age) = content(feed, tick)
    return html.Div([
        *pulse("cap", tick),
        html.Div(kp, id="cap-kpis", className="kpis", **data_attrs(tick=str(tick))),
        html.Div(html.Div(message, id="cap-message", className="muted"), id="cap-message-panel", className="panel",
                 style={} if message else HIDDEN),
        html.Div(id="cap-body", style=HIDDEN if message else {}, children=[
            html.Div(className="row", children=[
                html.Div(className="panel col", children=[html.H3("Headroom per link"),
                                                          html.Div(links_, id="cap-links")]),
                html.Div(className="panel col", children=[html.H3("Latency against the Target Response Time"),
                                                          html.Div(latency, id="cap-latency")]),
            ]),
            html.Div(className="row", children=[
                html.Div(className="panel col", children=[html.H3("Share answered within target, this half-hour"),
                                                          html.Div(within, id="cap-within")]),
                html.Div(className="panel col", children=[html.H3("Device alerts under load"),
                                                          html.Div(alerts, id="cap-alerts")]),
            ]),
            html.Div(className="row", children=[
                html.Div(className="panel col", children=[html.H3("Backlog per CSP and class"),
                                                          html.Div(backlog, id="cap-backlog")]),
                html.Div(className="panel col", children=[html.H3("Oldest queued message"),
                                                          html.Div(age, id="cap-age")]),
            ]),
        ]),
    ])


def register(app, feed, actions) -> None:
    @app.callback(*(Output(p, "children") for p in PANELS), Output("cap-message", "children"),
                  Output("cap-message-panel", "style"), Output("cap-body", "style"), Output("cap-kpis", "data-tick"),
                  Output("cap-seen", "data"), Input(pulse_id("cap"), "data"), State("cap-seen", "data"))
    def update(frame, seen):
        tick = frame_tick(frame)
        if tick == seen:
            raise PreventUpdate
        message, panels = content(feed, tick)
        return (*panels, message, {} if message else HIDDEN, HIDDEN if message else {}, str(tick), tick)
