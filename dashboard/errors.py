"""Showing what went wrong: the server's own error text and the field it names."""

from __future__ import annotations

import grpc
from dash import html

from twin.client import field_violations


def error_box(err: grpc.RpcError | str, fields: dict[str, str] | None = None) -> html.Div:
    """An error panel: a gRPC failure (status, message, offending fields) or plain text."""
    if isinstance(err, str):
        items = [html.Li(f"{k}: {v}") for k, v in (fields or {}).items()]
        return html.Div(className="error", role="alert", children=[html.Strong(err), html.Ul(items) if items else None])
    violations = field_violations(err)
    return html.Div(className="error", role="alert", **{"data-code": err.code().name}, children=[
        html.Strong(f"{err.code().name}: {err.details()}"),
        html.Ul([html.Li([html.Span(f, className="mono field"), f": {d}"]) for f, d in violations]) if violations else None,
    ])
