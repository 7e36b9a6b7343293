"""Model records to API messages and back: hub records, tick summaries, operations."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from google.longrunning import operations_pb2
from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2

from twin.generated.fleet.v1 import fleet_pb2
from twin.model.capacity import CapacityReport
from twin.model.catalog import (
    AREA_BY_ID,
    CLASS_LABEL,
    N_WAN,
    SUPPLIERS,
    WAN_LABEL,
    AlertKind,
    Csp,
    DeviceType,
    MessageType,
    TrafficClass,
    WanTech,
    models_of,
)
from twin.model.ids import parse_hub_ref
from twin.model.ops.progress import OperationAction, OperationState
from twin.model.params import CapacityParams
from twin.model.summary import DARK_REASONS, TickSummary
from twin.model.timeutil import as_utc, parse_instant
from twin.services.dcc.alerts import ALERT_CODES as ALERT_CODES  # one table, re-exported for the fleet API
from twin.services.errors import invalid, not_found
from twin.util.grammar import GrammarError, shown
from twin.util.rpc_status import pack_any

if TYPE_CHECKING:
    from twin.engine.placement import ClusterView, ShardPlace

CSP_NAMES = [c.name.title() for c in Csp]
TimeOf = Callable[[int], datetime]  # a tick -> simulated time at its start (FleetConfig.time_of)

def region_name(code: int) -> str:
    """A CSP region code (catalog.Csp, 0..2) -> the API's region name: 'North', 'Central' or 'South'."""
    return Csp(int(code)).name.title()


def _supplier_name(code: int) -> str:
    return SUPPLIERS[int(code) - 1].name


def _wan_name(code: int) -> str:
    """A WanTech code -> its label ('3G'); 0 (no technology named) -> ''."""
    return WAN_LABEL[WanTech(int(code))] if code else ""


# Command fields that hold a model code, and the name the API uses for each (the same vocabulary
# as the CreateEventRequest messages).
_NAMED: dict[str, Any] = {
    "region": region_name, "regions": lambda codes: [region_name(c) for c in codes],
    "technology": _wan_name, "prioritise": _wan_name,
    "supplier": _supplier_name, "solr": _supplier_name, "to_supplier": _supplier_name,
    "suppliers": lambda codes: [_supplier_name(c) for c in codes],
    "areas": lambda codes: [AREA_BY_ID[int(c)].name if int(c) in AREA_BY_ID else str(c) for c in codes],
}


def command_view(command: dict[str, Any]) -> dict[str, Any]:
    """An accepted command (the model's `Command.to_dict()`) in the API's names, as clients see it
    (`OperationMetadata.command_json`): regions, suppliers and WAN technologies by name, a
    rollout's device type and model as `device`, `manufacturer` and `model`, a power outage's area
    with its `area_name`. Other fields (numbers, versions, times as ticks) are unchanged."""
    out = {k: (_NAMED[k](v) if k in _NAMED and v is not None else v) for k, v in command.items()
           if k not in ("device_type", "model_code")}
    if "device_type" in command and "model_code" in command:
        device = DeviceType(int(command["device_type"]))
        m = models_of(device)[int(command["model_code"]) - 1]
        out.update(device=device.name, manufacturer=m.manufacturer, model=m.model)
    if command.get("type") == "power_outage" and int(command.get("area", 0)) in AREA_BY_ID:
        out["area_name"] = AREA_BY_ID[int(command["area"])].name
    return out


def ts(when: datetime) -> timestamp_pb2.Timestamp:
    """An aware datetime -> Timestamp (the instant; a naive one is refused, never read as UTC)."""
    t = timestamp_pb2.Timestamp()
    t.FromDatetime(as_utc(when, "time"))
    return t


def hub_index(name: str, seed: int, n_hubs: int, field: str = "name") -> int:
    """'hubs/00-DB-12-...', 'hubs/123', or a bare device id -> hub index (any device behind the hub),
    by the one hub-name grammar (`twin.model.ids.parse_hub_ref`). INVALID_ARGUMENT naming `field`
    if it is not a hub name, NOT_FOUND if it names no hub of this fleet."""
    try:
        hub = parse_hub_ref(name, seed)
    except GrammarError as e:
        raise invalid(field, str(e)) from None
    if not 0 <= hub < n_hubs:
        raise not_found(field, f"no hub {shown(name)} in this fleet")
    return hub


def _device(d: dict[str, Any] | None) -> fleet_pb2.Device | None:
    if not d:
        return None
    return fleet_pb2.Device(type=d["type"], device_id=d["device_id"], manufacturer=d["manufacturer"],
                            model=d["model"], firmware=d["firmware"])


def hub_message(r: dict[str, Any]) -> fleet_pb2.Hub:
    return fleet_pb2.Hub(
        name=f"hubs/{r['device_id']}", index=r["hub"], region=r["region"], area_id=r["area"]["id"],
        area_name=r["area"]["name"], smets=r["smets"], variant=r["variant"], wan=r["wan"],
        dcc_connected=r["dcc_connected"], reachable=r["reachable"], dark_reasons=r["dark_reasons"],
        supplier=r["supplier"], gas_supplier=r["gas_supplier"] or "", payment=r["payment"],
        comms_hub=_device(r["comms_hub"]), meters=[d for d in map(_device, r["meters"]) if d is not None],
        ppmid=_device(r["ppmid"]),
        registers_kwh={k.removesuffix("_kwh"): float(v) for k, v in r["registers"].items()},
        last_contact_tick=r["last_contact_tick"], hh_days_lost=r["hh_days_lost"],
        gsme_battery_pct=float(r.get("gsme_battery_pct", 0.0)),
        prepayment=fleet_pb2.HubPrepayment(**r["prepayment"]) if "prepayment" in r else None)


def summary_message(s: TickSummary, time: datetime, *, capacity: CapacityParams | None = None,
                    time_of: TimeOf | None = None) -> fleet_pb2.TickSummary:
    """A tick summary as WatchFleet sends it; `time` is the end of the tick. With the run's
    `capacity` parameters (they give the Target Response Times) and a summary the capacity model
    reported on, `capacity` is filled (see `capacity_message`); with the run's `time_of`, the
    tick's shard recoveries (`recovery_message`)."""
    csps = []
    for i, name in enumerate(CSP_NAMES):
        csps.append(fleet_pb2.CspTraffic(
            csp=name, messages={m.name: int(s.messages[i, m]) for m in MessageType},
            reachable_hubs=int(s.reachable_hubs[i]), dark_hubs=int(s.dark_hubs[i]),
            alerts={k.name: int(s.alerts[i, k]) for k in AlertKind},
            hubs_by_wan={WAN_LABEL[w]: int(s.hubs_by_wan[i, w]) for w in WanTech}))
    d = s.to_dict()
    return fleet_pb2.TickSummary(
        tick=s.tick, time=ts(time), csps=csps, peak_alerts_per_s=s.peak_alerts_per_s, hh_lost=s.hh_lost,
        hh_at_risk=s.hh_at_risk, dark_by_reason={r: int(s.dark_by_reason[:, i].sum()) for i, r in enumerate(DARK_REASONS)},
        supplier_hubs=d["supplier_hubs"], hubs=d["hubs"], meters=d["meters"],
        areas=[fleet_pb2.AreaState(area_id=a["area_id"], area_name=a["area"], csp=a["csp"], hubs=a["hubs"],
                                   dcc_hubs=a["dcc_hubs"], reachable_hubs=a["reachable_hubs"], dark_hubs=a["dark_hubs"],
                                   meters=a["meters"], alerts=a["alerts"], prepay_off_supply=a["off_supply_for_credit"],
                                   prepay_emergency_credit=a["emergency_credit"]) for a in d["areas"]],
        hh_lost_total=s.totals.get("hh_lost", 0), alerts_total=s.totals.get("alerts", 0),
        prepayment=_prepayment_message(d["prepayment"]), operations=[operation_message(v) for v in s.operations],
        capacity=capacity_message(s.capacity, capacity) if s.capacity is not None and capacity is not None else None,
        recoveries=[recovery_message(r, time_of) for r in s.recoveries] if time_of is not None else [])


def recovery_message(r: Mapping[str, Any], time_of: TimeOf) -> fleet_pb2.ShardRecovery:
    """One shard recovery (a StepPipeline.recoveries record: shard, tick, from_tick, replayed,
    attempts, seconds, node_ip; `wall_time` in Unix seconds when the record has it) as the API
    gives it, with simulated times from the run's `time_of`."""
    msg = fleet_pb2.ShardRecovery(
        shard=int(r["shard"]), tick=int(r["tick"]), time=ts(time_of(int(r["tick"]) + 1)),
        checkpoint_tick=int(r["from_tick"]), replayed_ticks=int(r["replayed"]),
        duration=duration_pb2.Duration(seconds=int(r["seconds"]), nanos=round(r["seconds"] % 1 * 1e9)),
        node_ip_address=str(r.get("node_ip") or ""), attempts=int(r.get("attempts", 1)))
    if r["from_tick"] >= 0:
        msg.checkpoint_time.CopyFrom(ts(time_of(int(r["from_tick"]) + 1)))
    if "wall_time" in r:
        msg.complete_time.CopyFrom(ts(datetime.fromtimestamp(float(r["wall_time"]), UTC)))
    return msg


def _placement_message(p: ShardPlace) -> fleet_pb2.ShardPlacement:
    return fleet_pb2.ShardPlacement(shard=p.index, hubs=p.hubs, pid=p.pid, responding=p.responding)


def cluster_message(view: ClusterView, time_of: TimeOf) -> fleet_pb2.Cluster:
    """GetCluster's answer from the engine's ClusterView (twin.engine.placement): nodes with their
    shards, unplaced shards, recoveries newest first."""
    return fleet_pb2.Cluster(
        nodes=[fleet_pb2.ClusterNode(node_id=n.node_id, ip_address=n.ip, alive=n.alive, cpu_count=n.cpus,
                                     memory_bytes=n.memory_bytes, shards=[_placement_message(p) for p in n.shards])
               for n in view.nodes],
        unplaced_shards=[_placement_message(p) for p in view.unplaced],
        recoveries=[recovery_message(r, time_of) for r in reversed(view.recoveries)],
        recovery_count=view.recovery_count)


def link_names(link: int) -> tuple[str, str]:
    """A link index (twin.model.capacity.LINK_NAMES order) -> (CSP region name "North", WAN
    technology name "LRR")."""
    return CSP_NAMES[link // N_WAN], WanTech(link % N_WAN).name


def link_messages(r: CapacityReport, csp: int | None = None) -> list[tuple[str, str, float, float, int]]:
    """(CSP, technology, capacity per second, utilisation, backlog) of each modelled link (capacity
    above 0), of one CSP region (catalog.Csp code) or all, in link order."""
    out = []
    for i in range(r.link_capacity.size):
        if r.link_capacity[i] <= 0 or (csp is not None and i // N_WAN != csp):
            continue
        region, tech = link_names(i)
        out.append((region, tech, float(r.link_capacity[i]), float(r.link_utilisation[i]), int(r.link_backlog[i])))
    return out


def class_figures(r: CapacityReport, p: CapacityParams, csp: int) -> list[dict[str, Any]]:
    """One CSP region's service to each traffic class in the report's tick, as the fields of
    ClassService (less `csp`): messages, latency percentiles (s), share within the class's
    Target Response Time (`target_response_s`, from `p`), backlog and the oldest queued age (s)."""
    return [{"traffic_class": CLASS_LABEL[k], "messages": int(r.messages[csp, k]),
             "latency_p50_s": float(r.latency_p50[csp, k]), "latency_p95_s": float(r.latency_p95[csp, k]),
             "latency_p99_s": float(r.latency_p99[csp, k]), "within_target": float(r.within_target[csp, k]),
             "target_response_s": float(p.target_response_s[k.name]), "backlog": int(r.backlog[csp, k]),
             "oldest_age_s": float(r.oldest_age_s[csp, k])} for k in TrafficClass]


def alert_figures(r: CapacityReport, csp: int) -> dict[str, int]:
    """One CSP region's device alerts under load in the report's tick (the fields of AlertService
    less `csp`)."""
    return {"delayed": int(r.alerts_delayed[csp]), "throttled": int(r.alerts_throttled[csp]),
            "failed": int(r.alerts_failed[csp]), "redelivered": int(r.alerts_redelivered[csp]),
            "expired": int(r.alerts_expired[csp]), "failed_queue": int(r.failed_queue[csp])}


def capacity_message(r: CapacityReport, p: CapacityParams) -> fleet_pb2.NetworkCapacity:
    """How the network carried a tick (the capacity model's report) as NetworkCapacity: each
    modelled link, each CSP region x traffic class (with its Target Response Time from the run's
    parameters `p`), North base stations, the DSP stage and alerts under load per region. About
    30 numbers per link and class row: a few hundred per tick."""
    return fleet_pb2.NetworkCapacity(
        links=[fleet_pb2.LinkCapacity(csp=c, technology=t, capacity_per_s=cap, utilisation=u, backlog=b)
               for c, t, cap, u, b in link_messages(r)],
        classes=[fleet_pb2.ClassService(csp=name, **f) for i, name in enumerate(CSP_NAMES) for f in class_figures(r, p, i)],
        base_station_peak_utilisation=float(r.bs_peak_utilisation), base_stations_congested=int(r.bs_congested),
        base_station_backlog=int(r.bs_backlog), dsp_utilisation=float(r.dsp_utilisation),
        alerts=[fleet_pb2.AlertService(csp=name, **alert_figures(r, i)) for i, name in enumerate(CSP_NAMES)])


def _prepayment_message(p: dict[str, Any]) -> fleet_pb2.PrepaymentCounts:
    return fleet_pb2.PrepaymentCounts(
        premises=p["premises"], emergency_credit=p["emergency_credit"], off_supply=p["off_supply"], topups=p["topups"],
        suppliers=[fleet_pb2.SupplierPrepayment(supplier=name, **v) for name, v in p["by_supplier"].items()])


# The model's enums -> the API's (the same members, the proto's prefixed names).
OPERATION_STATES = {st: fleet_pb2.OperationState.Value(f"OPERATION_STATE_{st.name}") for st in OperationState}
OPERATION_ACTIONS = {a: fleet_pb2.OperationAction.Value(f"OPERATION_ACTION_{a.name}") for a in OperationAction}


def _fill(msg: Message, record: Any) -> Message:
    """Copy a frozen progress record into its message, field by field (the two are kept one to
    one: same field names, nested records as messages, tuples as repeated fields; None unset)."""
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if value is None:
            continue
        if dataclasses.is_dataclass(value):
            _fill(getattr(msg, f.name), value)
        elif isinstance(value, tuple):
            for item in value:
                _fill(getattr(msg, f.name).add(), item)
        else:
            setattr(msg, f.name, value)
    return msg


def operation_metadata(view: dict[str, Any]) -> fleet_pb2.OperationMetadata:
    """The typed OperationMetadata of an operation view (twin.engine.operations.operation_view):
    the state and allowed controls as enums, the progress in the oneof field named by its kind."""
    md = view["metadata"]
    meta = fleet_pb2.OperationMetadata(
        kind=md["kind"], state=OPERATION_STATES[OperationState(md["state"])], reason=md["reason"],
        start_tick=md["start_tick"], start_time=ts(parse_instant(md["start_time"], "start_time")),
        command_json=json.dumps(command_view(md["command"]), default=str), percent_done=md["percent_done"],
        allowed_actions=[OPERATION_ACTIONS[OperationAction(a)] for a in md["allowed_actions"]])
    _fill(getattr(meta, md["kind"]), md["progress"])
    return meta


def operation_message(view: dict[str, Any]) -> operations_pb2.Operation:
    """An operation view as a google.longrunning.Operation: metadata OperationMetadata, and once
    done an error (google.rpc.Status) or the response EventResult."""
    op = operations_pb2.Operation(name=view["name"], metadata=pack_any(operation_metadata(view)), done=view["done"])
    if "error" in view:
        op.error.CopyFrom(status_pb2.Status(code=view["error"]["code"], message=view["error"]["message"]))
    elif "response" in view:
        op.response.CopyFrom(pack_any(fleet_pb2.EventResult(note=view["response"]["note"])))
    return op
