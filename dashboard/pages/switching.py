"""Switching: supplier shares, churn campaigns and single switches, Supplier of Last Resort progress."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, Patch, State, html
from dash.exceptions import PreventUpdate

from dashboard import figures as F
from dashboard.components import frame_tick, graph, ops_table, pulse, pulse_id

PATH = "/switching"
TITLE = "Switching"
CAMPAIGNS = ("churn_campaign", "supplier_switch")
SOLR = ("supplier_failure",)
NO_SOLR = "No supplier has failed: no customers to move to a Supplier of Last Resort."
NO_CAMPAIGNS = "No churn campaign or single switch yet: inject one on the Scenario page."


def shares(supplier_hubs: dict[str, int]) -> tuple[list[str], list[float]]:
    total = sum(supplier_hubs.values()) or 1
    items = sorted(supplier_hubs.items(), key=lambda kv: -kv[1])
    return [k for k, _ in items], [100.0 * v / total for _, v in items]


def prepay_table(latest: dict[str, Any]) -> Any:
    """Prepayment premises off supply for credit and on emergency credit, per supplier, worst first."""
    pp = latest.get("prepayment") or {}
    rows = sorted(pp.get("suppliers", {}).items(), key=lambda kv: -kv[1]["off_supply"])
    if not rows:
        return html.Div("No prepayment premises.", className="muted")
    head = ("Supplier", "Prepayment", "Emergency credit", "Off supply", "Off %")

    def cells(name: str, v: dict[str, int]) -> list[Any]:
        return [html.Td(name), html.Td(f"{v['premises']:,}", className="num"),
                html.Td(f"{v['emergency_credit']:,}", className="num"), html.Td(f"{v['off_supply']:,}", className="num"),
                html.Td(f"{100 * v['off_supply'] / max(v['premises'], 1):.1f}%", className="num")]

    total = {k: pp.get(k, 0) for k in ("premises", "emergency_credit", "off_supply")}
    return html.Table(className="table", children=[
        html.Thead(html.Tr([html.Th(h) for h in head])),
        html.Tbody([html.Tr(cells(name, v)) for name, v in rows[:8]] + [html.Tr(cells("All suppliers", total))])])


def layout(feed, actions=None) -> html.Div:
    labels, values = shares(feed.latest().get("supplier_hubs", {}))
    return html.Div([
        *pulse("sw", feed.last_tick()),
        html.Div(className="row", children=[
            html.Div(className="panel col", children=[
                graph("sw-shares", F.hbar(labels, values, "Supplier shares, % of premises (electricity)", "#9467bd",
                                          520, "% of premises")),
                html.H3("Prepayment: off supply for credit"),
                html.Div(prepay_table(feed.latest()), id="sw-prepay")]),
            html.Div(className="panel col", children=[
                html.H3("Supplier of Last Resort"),
                html.Div(ops_table(feed.operations(), SOLR, empty=NO_SOLR), id="sw-solr"),
                html.H3("Campaigns and switches"),
                html.Div(ops_table(feed.operations(), CAMPAIGNS, empty=NO_CAMPAIGNS), id="sw-campaigns")]),
        ]),
    ])


def register(app, feed, actions) -> None:
    @app.callback(Output("sw-shares", "figure"), Output("sw-solr", "children"), Output("sw-campaigns", "children"),
                  Output("sw-prepay", "children"), Output("sw-seen", "data"), Input(pulse_id("sw"), "data"),
                  State("sw-seen", "data"))
    def update(frame, seen) -> tuple[Any, ...]:
        tick = frame_tick(frame)
        if tick == seen:
            raise PreventUpdate
        labels, values = shares(feed.latest().get("supplier_hubs", {}))
        fig = Patch()
        fig["data"][0]["x"] = values
        fig["data"][0]["y"] = labels
        ops = feed.operations()
        return (fig, ops_table(ops, SOLR, empty=NO_SOLR), ops_table(ops, CAMPAIGNS, empty=NO_CAMPAIGNS),
                prepay_table(feed.latest()), tick)
