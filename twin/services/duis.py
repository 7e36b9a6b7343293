"""The DUIS Service Request catalogue: the 129 SR variants, their flags and eligible roles."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

ROLES = ("IS", "ES", "GS", "ED", "GT", "RSA", "OU")


class UnknownSrv(ValueError):
    """No Service Request variant of that id in the catalogue."""


@dataclass(frozen=True)
class Srv:
    srv: str  # the Service Reference Variant, e.g. "4.1.1"
    name: str
    critical: bool
    on_demand: bool
    future_dated: str  # "No", "DSP", "Device" or "DSP & Device"
    dcc_scheduled: bool
    non_device: bool
    roles: frozenset[str]


def _yes(value: str) -> bool:
    if value not in ("Yes", "No"):
        raise ValueError(f"expected 'Yes' or 'No' in the DUIS matrix, got {value!r}")
    return value == "Yes"


@cache
def catalogue() -> dict[str, Srv]:
    """All SR variants by id, loaded once from the packaged DUIS request matrix."""
    text = resources.files("twin.services").joinpath("data", "duis-request-matrix.json").read_text("utf-8")
    out: dict[str, Srv] = {}
    for row in json.loads(text):
        srv = Srv(
            srv=row["Service Reference Variant"],
            name=row["Service Request Name"],
            critical=_yes(row["Critical"]),
            on_demand=_yes(row["On Demand"]),
            future_dated=row["Future Dated Response Pattern"],
            dcc_scheduled=_yes(row["DCC Scheduled"]),
            non_device=_yes(row["Non-Device Request"]),
            roles=frozenset(row["Eligible User Roles"]),
        )
        if srv.srv in out:
            raise ValueError(f"duplicate SR variant {srv.srv} in the DUIS matrix")
        out[srv.srv] = srv
    return out


def lookup(srv: str) -> Srv:
    try:
        return catalogue()[srv]
    except KeyError:
        raise UnknownSrv(f"unknown DUIS Service Request variant {srv!r}") from None


# The SR variants the twin can carry out, as spelled in the DUIS matrix.
IMPLEMENTED: tuple[str, ...] = (
    "4.1.1", "4.6.1", "4.8.1", "4.17", "2.2", "1.1.1", "6.23", "7.1", "7.2",
    "11.1", "11.2", "11.3", "8.14.1", "8.14.2", "8.14.3", "8.14.4", "12.1", "8.2",
)  # fmt: skip

# Which fuel's supplier may address a premises with each implemented SR:
# "electricity" / "gas" = only that fuel's supplier, "either" = the sender's own fuel,
# "none" = not tied to one meter, so a supplier of either fuel at the premises may send it.
FUEL: dict[str, str] = {
    "4.1.1": "either",
    "4.6.1": "either",
    "4.8.1": "either",
    "4.17": "either",
    "2.2": "either",  # top-up goes to whichever meter (ESME or GSME) is on prepayment
    "1.1.1": "either",  # the tariff is written to the sender's own meter
    "6.23": "either",  # the gaining supplier swaps credentials on its own fuel's devices
    "7.1": "electricity",  # only IS may send 7.1 in the matrix; the twin's supply switch is the ESME's
    "7.2": "electricity",  # GS may send 7.2 in DUIS (gas valve), but the twin models only the ESME switch
    "11.1": "either",  # firmware goes to the sender's own meter (and the hub it shares)
    "11.2": "either",
    "11.3": "either",
    "8.14.1": "none",  # Comms Hub status updates concern the shared hub, not a meter
    "8.14.2": "none",
    "8.14.3": "none",
    "8.14.4": "none",
    "12.1": "none",  # the WAN matrix is a DCC coverage lookup, not a device command
    "8.2": "none",  # the inventory is the DCC's record of the premises' devices
}
