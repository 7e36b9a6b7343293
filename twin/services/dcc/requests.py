"""Service Requests as plain data, and the pure rules of checking and routing them: what a request
may carry, which fuel it acts on, which engine command a device-changing SRV becomes, and the
responses built from the hub's facts. No I/O, no gRPC."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from twin.engine.requests import parse_request_id
from twin.model.catalog import SUPPLIERS
from twin.model.ids import parse_eui64, parse_hub_ref
from twin.model.ops.progress import OperationState
from twin.services.dcc.errors import invalid, not_found
from twin.util.grammar import GrammarError, name_key, shown

# SRVs that change a device: each becomes a `service_request` command applied at a tick.
DEVICE_CHANGES = frozenset({"2.2", "1.1.1", "7.1", "7.2", "8.14.1", "8.14.2", "8.14.3", "8.14.4"})
# SRVs answered from the whole hub record (coverage, devices); the rest need only the premises' facts.
NEEDS_RECORD = frozenset({"12.1", "11.1", "11.2", "8.2"})
MAX_PARAMETERS_BYTES = 64 * 1024
MAX_REQUEST_ID = 100  # characters of an AIP-155 request id
# The longest response deadline a request may give, simulated seconds: an answer the network
# takes longer than this to give would outlive the two days a deferred read is held [U].
MAX_DEADLINE_S = 2 * 86_400.0
ACKNOWLEDGED_DETAIL = "accepted; it applies when the hub is reached, and the response follows on StreamResponses"


# One encoder for every answer kept: json.dumps with arguments builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


@dataclass(frozen=True)
class ServiceRequest:
    """One Service Request as a DCC User sent it, whatever the front door.

    `srv` is the DUIS Service Reference Variant as sent ("4.1.1"); `target` names the premises
    ('hubs/<EUI-64>', 'hubs/<index>' or a bare device id); `request_id` is the caller's AIP-155 id
    or a DUIS RequestID (originator:target:counter); `parameters` the SRV's parameters (None when
    the request carries none); `parameters_bytes` their size on the wire (checked against
    MAX_PARAMETERS_BYTES); `signature` the Ed25519 signature of a critical SRV (b"" if unsigned);
    `issued_at_ms` the signing time, milliseconds since the epoch; `countersigned` that the front
    door has itself verified the sender's signature of this critical command in its own wire format
    (DUIS: the User's signature of the pre-command the twin issued), so `signature` is not
    checked; `deadline_s` how long, in
    simulated seconds, the caller waits for the answer (None: the Target Response Time of the
    request's traffic class; see `DccCore.process`). The deadline is how the caller waits, not
    what it asks: a retry with another deadline is the same request."""

    srv: str
    target: str
    request_id: str
    parameters: dict[str, Any] | None = None
    parameters_bytes: int = 0
    signature: bytes = b""
    issued_at_ms: int = 0
    deadline_s: float | None = None
    countersigned: bool = False

    @property
    def params(self) -> dict[str, Any]:
        return self.parameters or {}

    def quarantine_copy(self) -> dict[str, Any]:
        """What the quarantine keeps of the request (JSON-ready), to rebuild it on release."""
        return {"srv": self.srv, "target": self.target, "request_id": self.request_id,
                "issued_at_ms": self.issued_at_ms, "parameters": self.params, "signature": self.signature.hex(),
                "deadline_s": self.deadline_s}

    @classmethod
    def from_quarantine_copy(cls, copy: dict[str, Any]) -> ServiceRequest:
        """The request a quarantine entry holds (signature and time are not kept for replay: it
        was verified before it was held)."""
        params = copy.get("parameters") or None
        return cls(srv=copy["srv"], target=copy["target"], request_id=copy["request_id"], parameters=params,
                   deadline_s=copy.get("deadline_s"))


class ResponseStatus(Enum):
    COMPLETED = "COMPLETED"  # answered; `result` holds the answer
    ACKNOWLEDGED = "ACKNOWLEDGED"  # accepted; the answer follows on the caller's response log
    FAILED = "FAILED"  # accepted, and then it could not be done (`detail` says why)


@dataclass(frozen=True)
class ServiceResponse:
    """The DCC's response to a Service Request: echoing the request (`request_id`, `srv`,
    `target`), the CSP region that served it (`csp`, "North", "Central" or "South"), the status,
    when (`time`, aware UTC: the end of the tick a reading describes, else the fleet's now), the
    result (plain JSON values), a `detail` for people, the operation applying it (name, '' if
    none), `position` in the user's response log (0 if it was answered at once), and
    `latency_s`, the simulated seconds the network took to answer it (queueing, transfer and
    device time, the capacity model's; None where the model gives none: capacity off, or a
    request answered by an operation at a tick)."""

    request_id: str
    srv: str
    target: str
    csp: str
    status: ResponseStatus
    time: datetime
    result: dict[str, Any] = field(default_factory=dict)
    detail: str = ""
    operation: str = ""
    position: int = 0
    latency_s: float | None = None

    def encode(self) -> bytes:
        """JSON bytes (kept by the request ledger to answer a retry the same)."""
        # Field by field, not dataclasses.asdict: asdict deep-copies the result, which cost more
        # than the rest of a read's answer (the ledger encodes every answer it keeps).
        d = {"request_id": self.request_id, "srv": self.srv, "target": self.target, "csp": self.csp,
             "status": self.status.value, "time": self.time.isoformat(), "result": self.result,
             "detail": self.detail, "operation": self.operation, "position": self.position,
             "latency_s": self.latency_s}
        return _ENCODER.encode(d).encode()

    @classmethod
    def decode(cls, data: bytes) -> ServiceResponse:
        d = json.loads(data)
        d["status"] = ResponseStatus(d["status"])
        d["time"] = datetime.fromisoformat(d["time"])
        return cls(**d)


def response(request: ServiceRequest, csp: str, status: ResponseStatus, when: datetime,
             result: dict[str, Any] | None = None, *, detail: str = "", operation: str = "",
             latency_s: float | None = None) -> ServiceResponse:
    return ServiceResponse(request_id=request.request_id, srv=request.srv, target=request.target, csp=csp,
                           status=status, time=when, result=result or {}, detail=detail, operation=operation,
                           latency_s=latency_s)


def check_deadline(deadline_s: float | None) -> None:
    """A request's response deadline: simulated seconds from 0 to MAX_DEADLINE_S (None: unset).
    INVALID_ARGUMENT naming response_deadline."""
    if deadline_s is not None and not (0.0 <= deadline_s <= MAX_DEADLINE_S):
        raise invalid("response_deadline", f"a duration from 0 to {MAX_DEADLINE_S:,.0f} s of simulated time, "
                                           f"got {deadline_s!r} s")


def operation_response(request: ServiceRequest, csp: str, view: dict[str, Any], when: datetime) -> ServiceResponse:
    """The response to a request applied by an operation that has finished (`view`: the engine's
    operation view): COMPLETED if it ended DONE, else FAILED with its reason; its numeric progress
    as the result."""
    md = view["metadata"]
    status = ResponseStatus.COMPLETED if md["state"] == OperationState.DONE else ResponseStatus.FAILED
    return response(request, csp, status, when, md["progress"].result(), detail=md["reason"], operation=view["name"])


def hub_of(target: str, seed: int, n_hubs: int) -> int:
    """The hub index `target` names (any device behind the hub), by the one hub-name grammar.
    DccError INVALID_ARGUMENT naming target if it is not a hub name, NOT_FOUND if no such hub."""
    try:
        hub = parse_hub_ref(target, seed)
    except GrammarError as e:
        raise invalid("target", str(e)) from None
    if not 0 <= hub < n_hubs:
        raise not_found("target", f"no hub {shown(target)} in this fleet")
    return hub


def check_duis_target(request_id: str, hub: int, seed: int) -> None:
    """A DUIS RequestID names the device the request is for: it must be one at the target premises."""
    duis_id = parse_request_id(request_id)  # already checked by the claim
    if duis_id is None:
        return
    try:
        named, _ = parse_eui64(duis_id.target, seed)
    except ValueError:
        named = -1
    if named != hub:
        raise invalid("request_id", f"its target EUI {duis_id.target} is not a device at the target premises")


def read_fuel(role: str, params: dict[str, Any]) -> str:
    """The fuel a request's `fuel` parameter names ("electricity" or "gas"; a gas supplier's
    default is gas), by the ASCII name grammar; INVALID_ARGUMENT naming parameters.fuel."""
    try:
        fuel = name_key(params.get("fuel", "gas" if role == "GS" else "electricity"), "fuel")
    except GrammarError:
        fuel = ""
    if fuel not in ("electricity", "gas"):
        raise invalid("parameters.fuel", "electricity or gas")
    return fuel


def role_fuel(role: str, fuel: str) -> str:
    """The fuel a role acts on for an SRV that is either fuel: a supplier's own, else the requested one."""
    return {"IS": "electricity", "ES": "electricity", "RSA": "electricity", "GS": "gas"}.get(role, fuel)


def check_params(srv: str, p: dict[str, Any]) -> None:
    """The SRV's own parameters; INVALID_ARGUMENT naming the parameter."""
    if srv == "2.2":
        amount = p.get("amount_pence")
        if not isinstance(amount, int | float) or int(amount) != amount or not 1 <= amount <= 100_000:
            raise invalid("parameters.amount_pence", "a whole number of pence from 1 to 100000")
    if srv == "1.1.1":
        rate = p.get("unit_rate_pence")
        if not isinstance(rate, int | float) or not 0 < rate < 500:
            raise invalid("parameters.unit_rate_pence", "a unit rate in pence per kWh, above 0 and below 500")
    if srv == "11.1" and not isinstance(p.get("target_version"), str):
        raise invalid("parameters.target_version", "the firmware version to distribute")


def coverage(rec: dict[str, Any]) -> dict[str, Any]:
    """The SR 12.1 answer (WAN coverage at the premises) from the hub record."""
    return {"technology": rec["wan"], "available": rec["reachable"] or (
        "network switched off" not in rec["dark_reasons"] and "no WAN coverage" not in rec["dark_reasons"]),
        "mesh": rec["mesh"], "vwan_eligible": rec["vwan_eligible"], "region": rec["region"]}


# DUIS device types of the twin's devices (the comms hub is its Communications Hub Function).
INVENTORY_TYPE = {"CH": "CHF", "ESME": "ESME", "GSME": "GSME", "PPMID": "PPMID"}


def inventory(rec: dict[str, Any]) -> dict[str, Any]:
    """The SR 8.2 answer (the DCC's inventory of the premises' devices) from the hub record: per
    device its id, DUIS device type (CHF, ESME, GSME, PPMID; the Gas Proxy Function is not
    modelled as a device of its own), SMI status ("Commissioned" for a device of a hub the DCC
    serves, "InstalledNotCommissioned" for a SMETS1 hub not migrated [D]), manufacturer, model,
    firmware version, and the CSP region as DUIS names it (North, Central, South; "4G ..." for a
    hub on 4G; "SMETS1" for a SMETS1 hub; DUIS.md)."""
    region = rec["region"]
    if rec["smets"] == "SMETS1":
        csp = "SMETS1"
    elif rec["wan"] == "4G":
        csp = f"4G {region}"
    else:
        csp = region
    status = "Commissioned" if rec["dcc_connected"] else "InstalledNotCommissioned"
    devices = [d for d in [rec["comms_hub"], *rec["meters"], rec["ppmid"]] if d]
    return {"devices": [{"device_id": d["device_id"], "type": INVENTORY_TYPE[d["type"]], "status": status,
                         "manufacturer": d["manufacturer"], "model": d["model"], "firmware_version": d["firmware"],
                         "csp_region": csp} for d in devices]}


def device_list(rec: dict[str, Any]) -> dict[str, Any]:
    """The SR 11.2 answer (the devices and their firmware) from the hub record."""
    devices = [d for d in [rec["comms_hub"], *rec["meters"], rec["ppmid"]] if d]
    return {"devices": [{"device_id": d["device_id"], "type": d["type"], "firmware": d["firmware"]} for d in devices]}


def command_for(srv: str, *, role: str, party_id: int, user_id: str, hub: int, rec: dict[str, Any],
                params: dict[str, Any], request_id: str) -> dict[str, Any] | None:
    """The engine command a device-changing SRV becomes (None for SR 11.3, which activates the
    image an SR 11.1 distributed and so depends on the operations held). INVALID_ARGUMENT naming
    parameters.device for a device the premises does not have."""
    if srv in DEVICE_CHANGES:
        return {"type": "service_request", "srv": srv, "hub": hub, "user_id": user_id,
                "request_id": request_id, "params": {k: v for k, v in params.items() if k != "fuel"}}
    if srv == "6.23":
        return {"type": "supplier_switch", "hub": hub, "fuel": "gas" if role == "GS" else "electricity",
                "to_supplier": SUPPLIERS[party_id - 1].name}
    if srv == "11.1":
        try:  # ASCII only: upper() maps the long s (U+017F) onto 'S'
            device = name_key(params.get("device", "GSME" if role == "GS" else "ESME"), "device").upper()
        except GrammarError as e:
            raise invalid("parameters.device", str(e)) from None
        dev = {"CH": rec["comms_hub"], "ESME": rec["meters"][0],
               "GSME": rec["meters"][1] if len(rec["meters"]) > 1 else None, "PPMID": rec["ppmid"]}.get(device)
        if dev is None:
            raise invalid("parameters.device", f"the premises has no {device}")
        return {"type": "firmware_rollout", "device": device, "manufacturer": dev["manufacturer"],
                "model": dev["model"], "target_version": params["target_version"], "hubs": [hub],
                "waves": [1.0], "hold_activation": True, "allow_downgrade": bool(params.get("allow_downgrade"))}
    return None
