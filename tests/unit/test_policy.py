"""Authorisation against the premises: suppliers, networks and the DCC operator."""

from __future__ import annotations

import pytest

from twin.services.duis import FUEL, lookup
from twin.services.identity import Identity
from twin.services.policy import PolicyError, authorise

OCTOPUS_IS = Identity("octopus-is", "IS", 1)
BG_GS = Identity("bg-gs", "GS", 2)
LONDON_ED = Identity("ukpn-london-ed", "ED", 12)
LONDON_GT = Identity("cadent-gt", "GT", 12)


def check(identity: Identity, srv_id: str, *, hub_supplier: int = 1, hub_gas_supplier: int = 2, hub_area: int = 12,
          has_gas: bool = True) -> None:
    authorise(identity, lookup(srv_id), fuel=FUEL[srv_id], hub_supplier=hub_supplier,
              hub_gas_supplier=hub_gas_supplier, hub_area=hub_area, has_gas=has_gas)


def denied(field: str, identity: Identity, srv_id: str, **hub) -> PolicyError:
    with pytest.raises(PolicyError) as err:
        check(identity, srv_id, **hub)
    assert (err.value.code, err.value.field) == ("PERMISSION_DENIED", field)
    return err.value


def test_supplier_may_address_its_own_premises():
    check(OCTOPUS_IS, "4.1.1")
    check(OCTOPUS_IS, "7.1")
    check(BG_GS, "4.1.1")
    check(BG_GS, "8.14.1", has_gas=True)


@pytest.mark.parametrize("srv_id", ["4.1.1", "1.1.1", "7.1", "11.3"])
def test_supplier_may_not_address_another_suppliers_premises(srv_id):
    denied("target", OCTOPUS_IS, srv_id, hub_supplier=4)


def test_gas_supplier_needs_to_supply_the_gas():
    denied("target", BG_GS, "4.1.1", hub_gas_supplier=5)
    # Supplying the electricity is not enough for a GS user on an "either" SR.
    denied("target", BG_GS, "4.1.1", hub_supplier=2, hub_gas_supplier=5)


def test_gas_supplier_on_premises_without_gas_is_denied():
    err = denied("target", BG_GS, "2.2", hub_gas_supplier=2, has_gas=False)
    assert "gas" in err.message


def test_non_meter_srs_accept_a_supplier_of_either_fuel():
    check(OCTOPUS_IS, "8.14.2", hub_supplier=1, hub_gas_supplier=7)
    check(Identity("bg-is", "IS", 2), "8.14.2", hub_supplier=9, hub_gas_supplier=2)
    denied("target", Identity("bg-is", "IS", 2), "8.14.2", hub_supplier=9, hub_gas_supplier=2, has_gas=False)


def test_gas_supplier_may_not_send_electricity_only_disable_supply():
    denied("target", BG_GS, "7.2")


def test_distributor_inside_its_area_is_allowed():
    check(LONDON_ED, "4.1.1", hub_area=12)
    check(LONDON_ED, "12.1", hub_area=12)


def test_distributor_outside_its_area_is_denied():
    denied("target", LONDON_ED, "4.1.1", hub_area=19)


def test_distributor_may_not_send_supplier_only_srs():
    denied("srv", LONDON_ED, "7.2")


def test_gas_transporter_needs_gas_in_its_area():
    check(LONDON_GT, "4.8.1")
    denied("target", LONDON_GT, "4.8.1", has_gas=False)
    denied("target", LONDON_GT, "4.8.1", hub_area=10)


def test_other_user_may_address_any_premises_for_eligible_srs():
    check(Identity("ou-1", "OU", 0), "4.17", hub_supplier=9, hub_area=20, has_gas=False)
    denied("srv", Identity("ou-1", "OU", 0), "4.1.1")


@pytest.mark.parametrize("srv_id", ["4.1.1", "7.1", "12.1"])
def test_operator_is_denied(srv_id):
    denied("srv", Identity("operator", "OPERATOR", 0), srv_id)


def test_policy_error_rejects_unknown_codes_and_fuels():
    with pytest.raises(ValueError):
        PolicyError("NOT_FOUND", "x")
    with pytest.raises(ValueError):
        authorise(OCTOPUS_IS, lookup("4.1.1"), fuel="water", hub_supplier=1, hub_gas_supplier=0, hub_area=12,
                  has_gas=False)
