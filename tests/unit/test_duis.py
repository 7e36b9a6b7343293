"""The DUIS catalogue, and role eligibility as authorise applies it, checked against the raw matrix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import twin.services
from twin.services.duis import FUEL, IMPLEMENTED, ROLES, UnknownSrv, catalogue, lookup
from twin.services.identity import Identity
from twin.services.policy import PolicyError, authorise

MATRIX = Path(twin.services.__file__).parent / "data" / "duis-request-matrix.json"


def raw_matrix() -> dict[str, dict]:
    with MATRIX.open(encoding="utf-8") as f:
        return {row["Service Reference Variant"]: row for row in json.load(f)}


def test_catalogue_holds_the_whole_matrix():
    raw = raw_matrix()
    cat = catalogue()
    assert len(cat) == len(raw) == 129
    assert sum(s.critical for s in cat.values()) == 37
    for srv_id, row in raw.items():
        assert cat[srv_id].roles == frozenset(row["Eligible User Roles"])
        assert cat[srv_id].critical == (row["Critical"] == "Yes")
        assert cat[srv_id].name == row["Service Request Name"]


def test_implemented_srvs_exist_with_the_right_critical_flag():
    raw = raw_matrix()
    assert set(IMPLEMENTED) <= set(raw)
    assert set(FUEL) == set(IMPLEMENTED)
    assert set(FUEL.values()) <= {"electricity", "gas", "either", "none"}
    for srv_id in ("1.1.1", "7.1", "7.2", "11.3"):
        assert lookup(srv_id).critical
    for srv_id in ("4.1.1", "6.23", "2.2", "11.1", "11.2", "12.1"):
        assert not lookup(srv_id).critical
    assert lookup("11.1").non_device and lookup("4.6.1").dcc_scheduled
    assert lookup("6.23").future_dated == "DSP & Device"


def test_unknown_srv_is_named_in_the_error():
    with pytest.raises(UnknownSrv, match=r"99\.9"):
        lookup("99.9")
    with pytest.raises(ValueError, match=r"4\.17\.1"):
        lookup("4.17.1")  # the matrix spells it "4.17"


def _premises_supplied_by(role: str) -> tuple[Identity, dict]:
    """A user of `role` and a gas + electricity premises it supplies or serves."""
    party = 12 if role in ("ED", "GT") else 0 if role == "OU" else 3
    hub = {"hub_supplier": 3, "hub_gas_supplier": 3, "hub_area": 12, "has_gas": True}
    return Identity(f"user-{role.lower()}", role, party), hub


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("srv_id", IMPLEMENTED)
def test_authorise_admits_exactly_the_roles_in_the_matrix(srv_id, role):
    identity, hub = _premises_supplied_by(role)
    fuel = FUEL[srv_id]
    eligible = role in raw_matrix()[srv_id]["Eligible User Roles"]
    # The twin makes some SRs single-fuel (7.2 is electricity-only), which shuts out the other fuel's supplier
    # on the target even though the matrix lists the role.
    wrong_fuel = fuel in ("electricity", "gas") and role in ("IS", "ES", "GS", "RSA") and (role == "GS") != (
        fuel == "gas")
    if not eligible:
        with pytest.raises(PolicyError) as err:
            authorise(identity, lookup(srv_id), fuel=fuel, **hub)
        assert (err.value.code, err.value.field) == ("PERMISSION_DENIED", "srv")
    elif wrong_fuel:
        with pytest.raises(PolicyError) as err:
            authorise(identity, lookup(srv_id), fuel=fuel, **hub)
        assert (err.value.code, err.value.field) == ("PERMISSION_DENIED", "target")
    else:
        authorise(identity, lookup(srv_id), fuel=fuel, **hub)


@pytest.mark.parametrize("srv_id", IMPLEMENTED)
def test_operator_may_send_no_service_request(srv_id):
    with pytest.raises(PolicyError) as err:
        authorise(Identity("operator", "OPERATOR", 0), lookup(srv_id), fuel=FUEL[srv_id], hub_supplier=1,
                  hub_gas_supplier=1, hub_area=12, has_gas=True)
    assert err.value.field == "srv"
