"""Small building blocks shared by the pages: KPI cards, progress bars, operation rows, formats."""

from __future__ import annotations

from typing import Any

from dash import dcc, html

GRAPH_CONFIG: Any = {"displayModeBar": False}  # Plotly config (Dash types it as its own TypedDict)
PULSE_MS = 1000  # live pages refresh at most once a second


def pulse_id(page: str) -> dict[str, str]:
    """The id of a page's frame (see `pulse`); a page's callbacks take `Input(pulse_id(page), "data")`."""
    return {"type": "pulse", "page": f"{page}-pulse"}


def frame_tick(frame: dict[str, int]) -> int:
    """The tick a page's frame names (-1 when the page was built before the first tick)."""
    return int(frame["tick"])


def upto(records: list[dict[str, Any]], tick: int) -> list[dict[str, Any]]:
    """Tick records up to the frame's tick (a tick that arrived since the header's pulse waits
    for the next frame)."""
    return [r for r in records if r["tick"] <= tick]


def pulse(page: str, seen: int) -> list[Any]:
    """A page's frame and the last tick it drew (so updates carry only what is new).

    The frame is a store the shell's one timer writes, in the same callback as the header's clock:
    {"tick": the tick the header names, "n": the pulse count}. A page draws that tick (the feed's
    `at(tick)`), so the header and the page name one tick, also while the clock runs flat out; with
    a timer of its own each page would fire a moment before or after the header, a tick apart."""
    return [dcc.Store(id=pulse_id(page), data={"tick": seen, "n": 0}), dcc.Store(id=f"{page}-seen", data=seen)]


def data_attrs(**values: str) -> dict[str, Any]:
    """HTML data-* attributes, e.g. data_attrs(tick="42") (the browser tests read figures exactly
    from them)."""
    return {f"data-{k}": v for k, v in values.items()}


def graph(id_: str, figure: Any, **kw: Any) -> dcc.Graph:
    return dcc.Graph(id=id_, figure=figure, config=GRAPH_CONFIG, **kw)


def tick_label(cur: dict[str, Any]) -> str:
    """The newest tick as every page names it: the time at its end and its number, e.g.
    "2026-11-04 08:30 UTC · tick 160" (the header and the Scenario page's clock say the same)."""
    return f"{cur['time'][:16].replace('T', ' ')} UTC · tick {cur['tick']}"


def num(n: float | int) -> str:
    n = float(n)
    for unit, div in (("bn", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div * 10:
            return f"{n / div:,.1f}{unit}" if abs(n) < div * 100 else f"{n / div:,.0f}{unit}"
    return f"{n:,.0f}"


def kpi(label: str, value: str, note: str = "", kid: str = "") -> html.Div:
    ident: dict[str, Any] = {"id": kid} if kid else {}
    return html.Div(className="kpi", **ident, children=[
        html.Div(label, className="kpi-label"), html.Div(value, className="kpi-value"),
        html.Div(note, className="kpi-note")])


def progress_fraction(op: dict[str, Any]) -> float:
    """How far an operation has got, 0..1: the API's percent_done (each kind says its own)."""
    return max(0.0, min(1.0, float(op.get("percent_done", 0.0)) / 100))


def progress_bar(fraction: float, label: str = "", bar_id: str | None = None) -> html.Div:
    pct = max(0.0, min(1.0, fraction)) * 100
    attrs: dict[str, Any] = {"data-value": f"{pct:.3f}", **({"id": bar_id} if bar_id else {})}
    return html.Div(className="progress", title=f"{pct:.1f}%", **attrs,
                    children=[html.Div(className="progress-fill", style={"width": f"{pct:.2f}%"}),
                              html.Span(label or f"{pct:.1f}%", className="progress-label")])


def minutes(value: Any) -> str:
    """A duration given in minutes, in the largest units that keep it whole: "90 min", "4 d"."""
    try:
        m = float(value)
    except (TypeError, ValueError):
        return f"{value} min"
    for unit, size in (("d", 1440), ("h", 60)):
        if m >= size and m % size == 0:
            return f"{m / size:g} {unit}"
    return f"{m:g} min"


def short_op(name: str) -> str:
    return name.removeprefix("operations/")


def op_summary(op: dict[str, Any]) -> str:
    """One line on what an operation is about, from its command (which the API gives in its own
    names: regions, suppliers, technologies, the device model, the area's name)."""
    c = op.get("command", {})
    kind = op.get("kind", "")
    if kind == "firmware_rollout":
        model = " ".join(str(c[k]) for k in ("device", "manufacturer", "model") if c.get(k))
        return f"{model} → {c.get('target_version', '')}"
    if kind == "supplier_failure":
        return f"{c.get('supplier', '')} → SoLR {c.get('solr', '')}"
    if kind in ("network_switch_off", "swap_programme", "vwan_fallback", "csp_incident"):
        parts = [str(c.get("region") or ""), str(c.get("technology") or "")]
        if c.get("prioritise"):
            parts.append(f"{c['prioritise']} first")
        return " ".join(p for p in parts if p)
    if kind == "power_outage":
        area = f"{c['area_name']} ({c.get('area')})" if c.get("area_name") else str(c.get("area"))
        return f"{area} x {c.get('fraction', 1)} for {minutes(c.get('duration_min'))}"
    if kind == "churn_campaign":
        return f"{c.get('switches_per_month', 0):,} switches/month for {c.get('days', '')} d"
    if kind == "supplier_switch":
        return f"hub {c.get('hub', '')} → {c.get('to_supplier', '')}"
    if kind == "mhhs_migration":
        where = ", ".join([*(c.get("regions") or []), *(c.get("suppliers") or [])]) or "all"
        return f"{where} x {c.get('share', 1)} in {c.get('waves', '')} waves {c.get('spacing_days', '')} d apart"
    if kind == "on_demand_reads":
        where = ", ".join([*(c.get("regions") or []), *(c.get("areas") or [])]) or "all"
        return (f"{where} x {c.get('share', 1)}: a read every {c.get('interval_min', '')} min for "
                f"{c.get('duration_min', '')} min")
    return ""


# The fields of each kind's progress message (twin.fleet.v1 *Progress) a table row shows, with
# their labels; nested fields as "message.field". Fields that name a tick are shown as "tick N".
HEADLINE: dict[str, tuple[tuple[str, str], ...]] = {
    "firmware_rollout": (("targeted", "targeted"), ("distributed", "distributed"), ("activated", "activated"),
                         ("failed", "failed"), ("bricked", "bricked"), ("pending_no_wan", "pending no wan")),
    "supplier_switch": (("switches", "switches"), ("swaps.dumb", "dumb")),
    "churn_campaign": (("switches", "switches"), ("swaps.dumb", "dumb")),
    "supplier_failure": (("customers", "customers"), ("moved", "moved"), ("swaps.dumb", "dumb")),
    "network_switch_off": (("off_tick", "off at"),),
    "swap_programme": (("done", "swapped"), ("eligible", "eligible")),
    "vwan_fallback": (("done", "onboarded"), ("eligible", "eligible")),
    "power_outage": (("premises_cut", "premises cut"), ("premises_in_area", "in the area"),
                     ("premises_already_unpowered", "already off"), ("end_tick", "restored at")),
    "base_station_failure": (("hubs_affected", "hubs affected"), ("end_tick", "restored at")),
    "csp_incident": (("end_tick", "restored at"),),
    "mhhs_migration": (("migrated", "migrated"), ("targeted", "targeted"), ("waves_done", "waves done")),
    "on_demand_reads": (("answered", "answered"), ("failed", "failed"), ("planned", "planned")),
}
TICK_FIELDS = ("off_tick", "end_tick", "next_wave_tick")


def _headline(op: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The kind's HEADLINE, or for a kind it does not list (one the API added since) every plain
    number of its progress, so no operation's counters are ever blank."""
    kind = op.get("kind", "")
    if kind in HEADLINE:
        return HEADLINE[kind]
    progress = op.get("progress", {})
    return tuple((k, k.replace("_", " ")) for k, v in progress.items()
                 if isinstance(v, int | float) and not isinstance(v, bool))


def progress_text(op: dict[str, Any]) -> str:
    """The headline counts of an operation's progress, e.g. "targeted 1,200 · activated 300", or
    for one that has none "restored at tick 57"."""
    out = []
    for path, label in _headline(op):
        value: Any = op.get("progress", {})
        for part in path.split("."):
            value = value.get(part, 0) if isinstance(value, dict) else 0
        if path in TICK_FIELDS:
            out.append(f"{label} tick {value}")
        else:
            out.append(f"{label} {value:,}")
    return " · ".join(out)


def ops_table(ops: list[dict[str, Any]], kinds: tuple[str, ...] | None = None,
              controls: bool = False, empty: str = "No operations yet.") -> html.Div | html.Table:
    """The operations of `kinds` (all when None), newest first, with their progress and counters;
    `empty` says in words that there are none."""
    rows = [o for o in ops if kinds is None or o["kind"] in kinds]
    if not rows:
        return html.Div(empty, className="muted")
    head = ["Operation", "Kind", "What", "State", "Progress", "Counters"] + (["Actions"] if controls else [])
    body = []
    for o in reversed(rows):
        oid = short_op(o["name"])
        cells = [html.Td(oid, className="mono"), html.Td(o["kind"]), html.Td(op_summary(o)),
                 html.Td(o["state"], className=f"state state-{o['state'].lower()}", title=o.get("reason") or o["error"]),
                 html.Td(progress_bar(progress_fraction(o), bar_id=f"progress-{oid}")),
                 html.Td(progress_text(o), className="small counters")]
        if controls:
            allowed = set(o.get("actions", ()))
            cells.append(html.Td([
                html.Button(a.title(), id={"type": "op-action", "op": o["name"], "action": a}, n_clicks=0,
                            className="btn-small", disabled=a not in allowed) for a in ("pause", "resume", "cancel")]))
        body.append(html.Tr(cells, id=f"op-row-{oid}"))
    return html.Table(className="table", children=[html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(body)])
