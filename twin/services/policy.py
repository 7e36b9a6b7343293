"""Who may send which Service Request to which premises: pure authorisation checks, no I/O."""

from __future__ import annotations

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
    """Raise PolicyError unless `identity` may send `srv` to this premises; `fuel` is duis.FUEL[srv.srv]."""
    if fuel not in FUELS:
        raise ValueError(f"unknown fuel {fuel!r}; expected one of {sorted(FUELS)}")
    if identity.role == OPERATOR or identity.role not in srv.roles:
        raise PolicyError("PERMISSION_DENIED", f"role {identity.role} may not send SR {srv.srv} ({srv.name})",
                          field="srv")
    why = _target_refusal(identity, fuel, hub_supplier, hub_gas_supplier, hub_area, has_gas)
    if why is not None:
        raise PolicyError("PERMISSION_DENIED", f"{identity.user_id} ({identity.role}) may not address this premises: "
                          f"{why}", field="target")
