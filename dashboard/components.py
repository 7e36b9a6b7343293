"""Small building blocks shared by the pages: KPI cards, progress bars, operation rows, formats."""

from __future__ import annotations

from typing import Any

from dash import dcc, html

GRAPH_CONFIG = {"displayModeBar": False}
PULSE_MS = 1000  # live pages refresh at most once a second


def pulse(page: str, seen: int) -> list[Any]:
    """A page's own timer and the last tick it drew (so updates carry only what is new)."""
    return [dcc.Interval(id=f"{page}-pulse", interval=PULSE_MS), dcc.Store(id=f"{page}-seen", data=seen)]


def graph(id_: str, figure: Any, **kw: Any) -> dcc.Graph:
    return dcc.Graph(id=id_, figure=figure, config=GRAPH_CONFIG, **kw)


def num(n: float | int) -> str:
    n = float(n)
    for unit, div in (("bn", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div * 10:
            return f"{n / div:,.1f}{unit}" if abs(n) < div * 100 else f"{n / div:,.0f}{unit}"
    return f"{n:,.0f}"


def kpi(label: str, value: str, note: str = "", kid: str = "") -> html.Div:
    return html.Div(className="kpi", **({"id": kid} if kid else {}), children=[
        html.Div(label, className="kpi-label"), html.Div(value, className="kpi-value"),
        html.Div(note, className="kpi-note")])


def progress_fraction(op: dict[str, Any]) -> float:
    """How far an operation has got, 0..1, from its counters (each kind reports its own)."""
    if op.get("state") == "DONE":
        return 1.0
    p = op.get("progress", {})
    if p.get("targeted"):
        return min(1.0, (p.get("activated", 0) + p.get("failed", 0) + p.get("bricked", 0)) / p["targeted"])
    if p.get("customers"):
        return min(1.0, p.get("moved", 0) / p["customers"])
    if "swapped" in p and (p["swapped"] + p.get("eligible", 0)):
        return min(1.0, p["swapped"] / (p["swapped"] + p.get("eligible", 0)))
    if p.get("switches") and op.get("command", {}).get("switches_per_month"):
        days = float(op["command"].get("days", 0) or 0)
        planned = op["command"]["switches_per_month"] * days / 30.4375
        return min(1.0, p["switches"] / planned) if planned else 0.0
    return 0.0


def progress_bar(fraction: float, label: str = "", bar_id: str | None = None) -> html.Div:
    pct = max(0.0, min(1.0, fraction)) * 100
    return html.Div(className="progress", title=f"{pct:.1f}%", **{"data-value": f"{pct:.3f}"},
                    **({"id": bar_id} if bar_id else {}),
                    children=[html.Div(className="progress-fill", style={"width": f"{pct:.2f}%"}),
                              html.Span(label or f"{pct:.1f}%", className="progress-label")])


def short_op(name: str) -> str:
    return name.removeprefix("operations/")


def _label(kind: str, code: Any) -> str:
    """Names for the codes an accepted command carries (the API returns the command as stored)."""
    from twin.model.catalog import AREA_BY_ID, SUPPLIERS, WAN_LABEL, Csp, WanTech

    try:
        if kind == "region":
            return Csp(int(code)).name.title()
        if kind == "wan":
            return WAN_LABEL[WanTech(int(code))] if code else ""
        if kind == "supplier":
            return SUPPLIERS[int(code) - 1].name
        if kind == "area":
            return f"{AREA_BY_ID[int(code)].name} ({int(code)})"
    except (ValueError, KeyError, IndexError, TypeError):
        pass
    return str(code)


def _model(c: dict[str, Any]) -> str:
    from twin.model.catalog import DeviceType, models_of

    try:
        device = DeviceType(int(c["device_type"]))
        return f"{device.name} {models_of(device)[int(c['model_code']) - 1].label}"
    except (KeyError, ValueError, IndexError, TypeError):
        return ""


def op_summary(op: dict[str, Any]) -> str:
    """One line on what an operation is about, from its command."""
    c = op.get("command", {})
    kind = op.get("kind", "")
    if kind == "firmware_rollout":
        return f"{_model(c)} → {c.get('target_version', '')}"
    if kind == "supplier_failure":
        return f"{_label('supplier', c.get('supplier'))} → SoLR {_label('supplier', c.get('solr'))}"
    if kind in ("network_switch_off", "swap_programme", "vwan_fallback", "csp_incident"):
        parts = [_label("region", c.get("region")), _label("wan", c.get("technology", 0))]
        if c.get("prioritise"):
            parts.append(f"{_label('wan', c['prioritise'])} first")
        return " ".join(p for p in parts if p)
    if kind == "power_outage":
        return f"{_label('area', c.get('area'))} x {c.get('fraction', 1)} for {c.get('duration_min', '')} min"
    if kind == "churn_campaign":
        return f"{c.get('switches_per_month', 0):,} switches/month for {c.get('days', '')} d"
    if kind == "supplier_switch":
        return f"hub {c.get('hub', '')} → {_label('supplier', c.get('to_supplier'))}"
    return ""


def progress_text(op: dict[str, Any]) -> str:
    p = op.get("progress", {})
    keys = [k for k in ("targeted", "distributed", "activated", "failed", "bricked", "pending_no_wan", "customers",
                        "moved", "switches", "swapped", "eligible", "dumb") if k in p]
    return " · ".join(f"{k.replace('_', ' ')} {p[k]:,}" for k in keys)


def ops_table(ops: list[dict[str, Any]], kinds: tuple[str, ...] | None = None, controls: bool = False) -> html.Div:
    rows = [o for o in ops if kinds is None or o["kind"] in kinds]
    if not rows:
        return html.Div("No operations yet.", className="muted")
    head = ["Operation", "Kind", "What", "State", "Progress", "Counters"] + (["Actions"] if controls else [])
    body = []
    for o in reversed(rows):
        oid = short_op(o["name"])
        cells = [html.Td(oid, className="mono"), html.Td(o["kind"]), html.Td(op_summary(o)),
                 html.Td(o["state"], className=f"state state-{o['state'].lower()}", title=o.get("reason") or o["error"]),
                 html.Td(progress_bar(progress_fraction(o), bar_id=f"progress-{oid}")),
                 html.Td(progress_text(o), className="small")]
        if controls:
            live = not o["done"]
            cells.append(html.Td([
                html.Button(a.title(), id={"type": "op-action", "op": o["name"], "action": a}, n_clicks=0,
                            className="btn-small", disabled=not live) for a in ("pause", "resume", "cancel")]))
        body.append(html.Tr(cells, id=f"op-row-{oid}"))
    return html.Table(className="table", children=[html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(body)])
