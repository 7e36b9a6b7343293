"""Forms for every operator event, generated from the API's own message definitions, so a new
event in the proto gets a form without touching the dashboard. Input is parsed here only as far
as types go (a number must be a number); the meaning is checked by the server, whose error text
the page shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from dashboard.reference import Reference
from twin.generated.fleet.v1 import fleet_pb2
from twin.util.grammar import GrammarError, parse_decimal, parse_number, shown

_EVENT_ONEOF = fleet_pb2.CreateEventRequest.DESCRIPTOR.oneofs_by_name["event"]
EVENTS: tuple[str, ...] = tuple(f.name for f in _EVENT_ONEOF.fields)
HELP: dict[str, str] = {
    "waves": "cumulative shares, e.g. 0.01, 0.1, 0.5, 1",
    "from_versions": "comma-separated; empty: every device of the model (refused if any runs a newer version)",
    "cells": "base station ids, comma-separated",
    "hub": "device id or hub index",
    "at": "empty: next tick; '30m', '6h', '1d12h' or an ISO time with its zone, e.g. 2026-11-02T06:00+00:00",
}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str  # text, number, integer, bool
    repeated: bool
    optional: bool  # proto3 optional: empty means the server's default
    choices: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")


def _kind(f: FieldDescriptor) -> str:
    if f.type == FieldDescriptor.TYPE_BOOL:
        return "bool"
    if f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return "number"
    if f.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32,
                  FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64):
        return "integer"
    return "text"


def fields(event: str, reference: Reference | None = None) -> list[FieldSpec]:
    """The form fields of an event type, in the proto's order; where the API takes a name from a
    fixed vocabulary, the choices `reference` (the API's catalog) offers."""
    if event not in EVENTS:
        raise ValueError(f"unknown event type {event!r}")
    choices = (reference or Reference()).choices()
    msg = next(f.message_type for f in _EVENT_ONEOF.fields if f.name == event)
    out = []
    for f in msg.fields:
        repeated = f.is_repeated
        optional = f.has_presence and not repeated
        out.append(FieldSpec(f.name, _kind(f), repeated, optional, choices.get(f.name, ())))
    return out


def _scalar(spec: FieldSpec, text: str) -> Any:
    """One form value by its field's grammar (twin.util.grammar: ASCII digits only, no 'nan',
    'inf' or underscores); ValueError with the text the form shows under the field."""
    if spec.kind == "integer":
        try:
            return parse_decimal(text, signed=True)
        except GrammarError:
            raise ValueError(f"must be a whole number, got {shown(text)}") from None
    if spec.kind == "number":
        try:
            return parse_number(text)
        except GrammarError:
            raise ValueError(f"must be a finite number, got {shown(text)}") from None
    return text


def build_request(event: str, values: dict[str, Any], at: str = "") -> tuple[fleet_pb2.CreateEventRequest | None,
                                                                              dict[str, str]]:
    """A CreateEventRequest from form values, or the fields that do not parse (nothing is sent then)."""
    errors: dict[str, str] = {}
    body: dict[str, Any] = {}
    for spec in fields(event):
        raw = values.get(spec.name)
        if spec.kind == "bool":
            body[spec.name] = bool(raw)
            continue
        if isinstance(raw, list):  # multi-select dropdowns
            items = [str(x).strip() for x in raw if str(x).strip()]
        else:
            text = "" if raw is None else str(raw).strip()
            items = [t.strip() for t in text.split(",") if t.strip()] if spec.repeated else ([text] if text else [])
        if not items:
            continue  # empty: the server's default (or its error, if the field is required)
        try:
            parsed = [_scalar(spec, t) for t in items]
        except ValueError as e:
            errors[spec.name] = str(e)
            continue
        body[spec.name] = parsed if spec.repeated else parsed[0]
    if errors:
        return None, errors
    msg_cls = getattr(fleet_pb2, type(getattr(fleet_pb2.CreateEventRequest(), event)).__name__)
    try:
        msg = msg_cls(**body)
    except (TypeError, ValueError) as e:
        return None, {"form": str(e)}
    return fleet_pb2.CreateEventRequest(at=(at or "").strip(), **{event: msg}), {}
