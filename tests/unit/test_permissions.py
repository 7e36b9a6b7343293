"""The one permission table (policy.RPC_RULES) and the one pagination helper, without a server."""

from __future__ import annotations

import numpy as np
import pytest
from google.longrunning import operations_pb2
from grpc_channelz.v1 import channelz_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.generated.csp.v1 import csp_pb2
from twin.generated.dcc.v1 import dcc_pb2
from twin.generated.fleet.v1 import fleet_pb2
from twin.services.errors import ApiError
from twin.services.identity import OPERATOR, Identity
from twin.services.pagination import next_page_token, page_of, page_start, slice_page
from twin.services.policy import Access, PolicyError, check_call, quarantine_scope, rpc_rule

SERVED = [fleet_pb2.DESCRIPTOR.services_by_name["FleetService"], dcc_pb2.DESCRIPTOR.services_by_name["DccService"],
          csp_pb2.DESCRIPTOR.services_by_name["CspService"], operations_pb2.DESCRIPTOR.services_by_name["Operations"],
          channelz_pb2.DESCRIPTOR.services_by_name["Channelz"]]
OPERATOR_ID = Identity("operator", OPERATOR, 0)
USERS = [Identity("octopus-is", "IS", 1), Identity("ukpn-london-ed", "ED", 12), Identity("ou-1", "OU", 0)]


def test_every_served_method_has_exactly_one_rule():
    for service in SERVED:
        for m in service.methods:
            assert rpc_rule(service.full_name, m.name).access in Access
    with pytest.raises(KeyError):
        rpc_rule("twin.dcc.v1.DccService2", "SubmitServiceRequest")


@pytest.mark.parametrize("method", [m.name for m in SERVED[0].methods if m.name != "GetFleetCatalog"])
def test_fleet_operations_are_for_operators_only(method):
    rule = rpc_rule("twin.fleet.v1.FleetService", method)
    check_call(OPERATOR_ID, rule, method)
    for user in USERS:
        with pytest.raises(PolicyError) as e:
            check_call(user, rule, method)
        assert e.value.code == "PERMISSION_DENIED" and method in e.value.message


def test_the_fleet_catalog_is_for_every_signed_in_caller():
    # Reference data (names of regions, areas, suppliers, models): the dashboard and DCC Users alike.
    rule = rpc_rule("twin.fleet.v1.FleetService", "GetFleetCatalog")
    for caller in (OPERATOR_ID, *USERS):
        check_call(caller, rule, "GetFleetCatalog")


def test_service_requests_are_for_dcc_users_and_quarantine_control_for_operators():
    submit = rpc_rule("twin.dcc.v1.DccService", "SubmitServiceRequest")
    with pytest.raises(PolicyError) as e:
        check_call(OPERATOR_ID, submit, "SubmitServiceRequest")
    assert e.value.field == "srv"
    for user in USERS:
        check_call(user, submit, "SubmitServiceRequest")
        for method in ("ReleaseQuarantinedRequest", "DeleteQuarantinedRequest"):
            with pytest.raises(PolicyError):
                check_call(user, rpc_rule("twin.dcc.v1.DccService", method), method)
        for method in ("StreamAlerts", "StreamResponses", "ListQuarantinedRequests"):
            check_call(user, rpc_rule("twin.dcc.v1.DccService", method), method)
    for method in ("GetOperation", "WaitOperation"):  # a DCC User follows its SR 11.1's operation
        check_call(USERS[0], rpc_rule("google.longrunning.Operations", method), method)
    for method in ("ListOperations", "CancelOperation"):
        with pytest.raises(PolicyError):
            check_call(USERS[0], rpc_rule("google.longrunning.Operations", method), method)
    with pytest.raises(PolicyError):
        check_call(USERS[0], rpc_rule("grpc.channelz.v1.Channelz", "GetServers"), "GetServers")


def test_quarantine_scope():
    assert quarantine_scope(OPERATOR_ID, "") is None
    assert quarantine_scope(OPERATOR_ID, "octopus-is") == "octopus-is"
    assert quarantine_scope(USERS[0], "") == "octopus-is"
    assert quarantine_scope(USERS[0], "octopus-is") == "octopus-is"
    with pytest.raises(PolicyError) as e:
        quarantine_scope(USERS[0], "ou-1")
    assert (e.value.code, e.value.field) == ("PERMISSION_DENIED", "user_id")


def test_page_size_is_checked_defaulted_and_capped():
    with pytest.raises(ApiError) as e:
        page_of(fleet_pb2.ListHubsRequest(page_size=-1), default_size=50, max_size=1000)
    assert (e.value.code.name, e.value.field) == ("INVALID_ARGUMENT", "page_size")
    assert page_of(fleet_pb2.ListHubsRequest(), default_size=50, max_size=1000).size == 50
    assert page_of(fleet_pb2.ListHubsRequest(page_size=5000), default_size=50, max_size=1000).size == 1000
    assert page_of(fleet_pb2.ListHubsRequest(), default_size=50, max_size=1000).start is None


def test_a_numpy_position_makes_the_same_token():
    req = fleet_pb2.ListHubsRequest(filter="region=North")
    token = next_page_token(req, np.int64(25))
    assert token == next_page_token(req, 25) and page_start(fleet_pb2.ListHubsRequest(
        filter="region=North", page_token=token)) == (25,)
    assert next_page_token(req, None) == ""


@settings(deadline=None)
@given(n=st.integers(0, 60), size=st.integers(1, 25))
def test_slice_pages_walk_a_list_once_in_order(n, size):
    items = list(range(n))
    request = fleet_pb2.ListBranchesRequest(page_size=size)
    got, token, pages = [], "", 0
    while True:
        req = fleet_pb2.ListBranchesRequest(page_size=size, page_token=token)
        page, token = slice_page(request, items, page_of(req, default_size=50, max_size=1000))
        got += page
        pages += 1
        if not token:
            break
    assert got == items
    assert pages == max(1, -(-n // size))


def _sees(role: str, party: int, kind: int, area: int, supplier: int, gas_supplier: int, kinds: set[int]) -> bool:
    """One alert, by the rule as the SEC states it (the reference for the whole-column mask)."""
    from twin.model.catalog import PREPAYMENT_ALERTS

    if kinds and kind not in kinds:
        return False
    if role == OPERATOR:
        return True
    if kind in PREPAYMENT_ALERTS and role not in ("IS", "ES", "RSA"):
        return False
    return {"ED": area, "GT": area, "IS": supplier, "ES": supplier, "RSA": supplier,
            "GS": gas_supplier}.get(role, -1) == party


@settings(deadline=None, max_examples=300)
@given(role=st.sampled_from(["IS", "ES", "GS", "ED", "GT", "RSA", "OU", OPERATOR]), party=st.integers(1, 3),
       rows=st.lists(st.tuples(st.integers(0, 8), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
                     max_size=30),
       kinds=st.sets(st.integers(0, 8), max_size=3))
def test_the_alert_mask_is_the_per_alert_rule(role, party, rows, kinds):
    from twin.services.dcc.alerts import alert_mask

    cols = np.array(rows, np.int64).reshape(-1, 4)
    ev = {"hub": np.arange(len(rows)), "kind": cols[:, 0].astype(np.uint8), "area": cols[:, 1],
          "supplier": cols[:, 2], "gas_supplier": cols[:, 3]}
    ident = Identity("u", role, 0 if role in ("OU", OPERATOR) else party)
    got = alert_mask(ident, kinds, ev).tolist()
    assert got == [_sees(role, ident.party_id, *r, kinds=kinds) for r in rows]
