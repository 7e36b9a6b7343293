"""Who may do what: the one permission table every authorisation path reads, and the pure checks
over it (no I/O, no gRPC).

Two axes, both declared here:
- RPC_RULES: role x RPC. Which callers may call each method of each service (operators only,
  DCC Users only, anyone authenticated). The server's gate applies it to every call, in the
  primary and in an API replica alike; a service or method missing from it cannot be served.
- Service Requests: role x SRV. Eligibility is the DUIS matrix (`duis.Srv.roles`, the SEC's
  Appendix E); SRV_PREMISES says which premises an eligible role may address (the one it
  serves, or for the SR 6.23 credential swap any premises, since the gaining supplier sends it);
  `authorise` applies both.
- Scoped reads: ALERT_SCOPE and NO_PREPAYMENT_ALERTS (which device alerts each role receives,
  applied as a whole-column mask by twin.services.dcc.alerts), `quarantine_scope` (whose
  quarantined requests a caller may list)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from twin.services.duis import Srv
from twin.services.identity import OPERATOR, SUPPLIER_ROLES, Identity

CODES = frozenset({"PERMISSION_DENIED", "INVALID_ARGUMENT", "FAILED_PRECONDITION"})
FUELS = frozenset({"electricity", "gas", "either", "none"})


class PolicyError(Exception):
    """A refused request; `code` names the gRPC status, `field` the request field at fault."""

    def __init__(self, code: str, message: str = "", *, field: str = "") -> None:
        if code not in CODES:
            raise ValueError(f"unknown policy error code {code!r}")
        super().__init__(message or code)
        self.code = code
        self.field = field
        self.message = message or code


class Access(Enum):
    """Who may call an RPC."""

    AUTHENTICATED = "any authenticated caller"
    OPERATOR = "DCC operators only"
    DCC_USER = "DCC Users (a DUIS role) only, never operators"


@dataclass(frozen=True)
class Rule:
    """An RPC's rule: who may call it, why a caller it refuses may not (`refusal`), and the
    request field the refusal names in its BadRequest ('' for none)."""

    access: Access
    refusal: str
    field: str = ""


_OPERATORS = Rule(Access.OPERATOR, "needs an operator identity")
_ANYONE = Rule(Access.AUTHENTICATED, "")

# Keys are a service's full name (the rule of all its methods) or "service/Method" (that method's,
# which wins). Health checking and reflection are open to all and not gated.
RPC_RULES: Mapping[str, Rule] = {
    # Operator tools: clock, events, aggregates, hubs, branches, the tick stream.
    "twin.fleet.v1.FleetService": _OPERATORS,
    # Reference data (names of regions, areas, suppliers, device models): for every signed-in caller.
    "twin.fleet.v1.FleetService/GetFleetCatalog": _ANYONE,
    # Anyone may follow an operation it holds the name of (a DCC User's SR 11.1 returns one).
    "google.longrunning.Operations": _ANYONE,
    "google.longrunning.Operations/ListOperations": _OPERATORS,
    "google.longrunning.Operations/CancelOperation": _OPERATORS,
    # The DCC: Service Requests from DCC Users; each caller's own responses and alerts (the alert
    # mask of twin.services.dcc.alerts narrows them to the caller's premises).
    "twin.dcc.v1.DccService": _ANYONE,
    "twin.dcc.v1.DccService/SubmitServiceRequest": Rule(
        Access.DCC_USER, "operators do not send Service Requests; use a DCC User identity", field="srv"),
    "twin.dcc.v1.DccService/SubmitServiceRequests": Rule(
        Access.DCC_USER, "operators do not send Service Requests; use a DCC User identity"),
    "twin.dcc.v1.DccService/ReleaseQuarantinedRequest": Rule(
        Access.OPERATOR, "only an operator may release a quarantined request"),
    "twin.dcc.v1.DccService/DeleteQuarantinedRequest": Rule(
        Access.OPERATOR, "only an operator may delete a quarantined request"),
    # Network state is public to every DCC User.
    "twin.csp.v1.CspService": _ANYONE,
    # The server's own call and socket counters.
    "grpc.channelz.v1.Channelz": _OPERATORS,
}


def rpc_rule(service: str, method: str) -> Rule:
    """The rule of `service`'s `method` (full service name, method name). Raises KeyError if the
    table has none: a method nobody decided about is not served."""
    rule = RPC_RULES.get(f"{service}/{method}") or RPC_RULES.get(service)
    if rule is None:
        raise KeyError(f"{service}/{method} has no rule in twin.services.policy.RPC_RULES")
    return rule


def permits(identity: Identity, rule: Rule) -> bool:
    if rule.access is Access.OPERATOR:
        return identity.role == OPERATOR
    if rule.access is Access.DCC_USER:
        return identity.role != OPERATOR
    return True


def check_call(identity: Identity, rule: Rule, method: str) -> None:
    """Raise PolicyError PERMISSION_DENIED unless `rule` lets `identity` call `method`."""
    if not permits(identity, rule):
        raise PolicyError("PERMISSION_DENIED", f"{method}: {rule.refusal}", field=rule.field)


# Which device alerts each role receives: those whose alert-log column equals the user's party id
# (its DNO area for a network operator, its supplier code for a supplier), or all (None). A role
# missing here (OU) receives none.
ALERT_SCOPE: Mapping[str, str | None] = {
    OPERATOR: None, "ED": "area", "GT": "area", "IS": "supplier", "ES": "supplier", "RSA": "supplier",
    "GS": "gas_supplier"}
# An ESME's prepayment alerts are the import supplier's business, not the network's or gas's.
NO_PREPAYMENT_ALERTS = frozenset({"ED", "GT", "GS"})


def quarantine_scope(identity: Identity, user_id: str) -> str | None:
    """Whose quarantined requests `identity` may list when it asks for `user_id` ('' for all):
    an operator anyone's (None: every user's, when it names none), a DCC User only its own.
    Raises PolicyError PERMISSION_DENIED naming user_id for another user's."""
    if identity.role == OPERATOR:
        return user_id or None
    if user_id not in ("", identity.user_id):
        raise PolicyError("PERMISSION_DENIED", "users may list only their own quarantined requests", field="user_id")
    return identity.user_id


class Premises(Enum):
    """Which premises an eligible role may address with an SRV."""

    SERVED = "premises the user supplies (for its fuel) or whose network it runs"
    ANY = "any premises"


# SRVs whose premises rule is not SERVED. The SR 6.23 credential swap is sent by the gaining
# supplier, for premises it does not supply yet (DUIS 6.23; the SEC's change of supplier process).
SRV_PREMISES: Mapping[str, Premises] = {"6.23": Premises.ANY}


def _target_refusal(identity: Identity, fuel: str, hub_supplier: int, hub_gas_supplier: int, hub_area: int,
                    has_gas: bool) -> str | None:
    """Why this user may not address this premises, or None if it may."""
    role, party = identity.role, identity.party_id
    if role in SUPPLIER_ROLES:
        supplies_elec = party == hub_supplier  # ES and RSA act on the electricity supply point in this twin
        supplies_gas = has_gas and party == hub_gas_supplier
        if fuel == "none":
            ok = supplies_elec or supplies_gas
        elif role == "GS":
            ok = supplies_gas and fuel != "electricity"
        else:
            ok = supplies_elec and fuel != "gas"
        if ok:
            return None
        if role == "GS" and not has_gas:
            return "premises has no gas meter"
        if fuel in ("electricity", "gas") and (role == "GS") != (fuel == "gas"):
            return f"this SR is {fuel}-only in the twin and {role} does not supply {fuel}"
        return f"supplier {party} does not supply this premises"
    if role == "ED" and hub_area != party:
        return f"premises is in DNO area {hub_area}, not area {party}"
    # The twin has no gas network map, so it puts each gas transporter on the DNO area ids.
    if role == "GT" and (hub_area != party or not has_gas):
        return f"premises is not a gas premises in area {party}"
    return None  # OU may address any premises once eligible for the SR


def authorise(identity: Identity, srv: Srv, *, fuel: str, hub_supplier: int, hub_gas_supplier: int,
              hub_area: int, has_gas: bool) -> None:
    """Raise PolicyError PERMISSION_DENIED unless `identity` may send `srv` to this premises:
    naming `srv` if its role is not eligible (DUIS matrix; operators never are), `target` if the
    premises is not one it may address (SRV_PREMISES). `fuel` is the fuel the request acts on
    (duis.FUEL[srv.srv], or the requested fuel where that is "either")."""
    if fuel not in FUELS:
        raise ValueError(f"unknown fuel {fuel!r}; expected one of {sorted(FUELS)}")
    if identity.role == OPERATOR or identity.role not in srv.roles:
        raise PolicyError("PERMISSION_DENIED", f"role {identity.role} may not send SR {srv.srv} ({srv.name})",
                          field="srv")
    if SRV_PREMISES.get(srv.srv, Premises.SERVED) is Premises.ANY:
        return
    why = _target_refusal(identity, fuel, hub_supplier, hub_gas_supplier, hub_area, has_gas)
    if why is not None:
        raise PolicyError("PERMISSION_DENIED", f"{identity.user_id} ({identity.role}) may not address this premises: "
                          f"{why}", field="target")
