"""The API's contracts over real sockets: retries applied once (AIP-155, DUIS RequestID), page
tokens bound to their request (AIP-158), every List paginated, operation controls and the error
table of docs/api-errors.md."""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import time
import uuid
from pathlib import Path

import grpc
import pytest
from google.longrunning import operations_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import run_dir
from tests.integration.test_api import expect
from twin.client import TwinClient
from twin.engine.supervisor import FleetSupervisor
from twin.generated.csp.v1 import csp_pb2
from twin.generated.dcc.v1 import dcc_pb2
from twin.generated.fleet.v1 import fleet_pb2
from twin.model.catalog import AlertKind
from twin.model.config import FleetConfig
from twin.model.query import parse_filter
from twin.services.anomaly import AnomalyDetector
from twin.services.errors import bad_request_fields
from twin.services.pagination import page_token
from twin.services.server import MAX_MESSAGE_BYTES, ApiServer

pytestmark = pytest.mark.usefixtures("ray_session")
ORIG = "90-B3-D5-1F-30-01-00-00"  # the sending User's EUI in its DUIS RequestIDs


@pytest.fixture
def api(live_api):
    """The session's live stack (tests/conftest.py), shared with test_api.py, with its chosen
    premises reachable (tests.support.Api.settle)."""
    live_api.settle()
    return live_api


_DUIS_BLOCKS = itertools.count(1)


@pytest.fixture
def duis_base() -> int:
    """The base of a block of 1,000 DUIS RequestID counters for one test, above every counter used
    before it: counters from one originator must strictly increase, and the stack is shared by tests
    that run in any order."""
    return next(_DUIS_BLOCKS) * 1000


def journaled(sup, request_id: str) -> list[dict]:
    recs = [json.loads(line) for line in (sup.run_dir / "journal.jsonl").read_text().splitlines()]
    return [r for r in recs if r.get("request", {}).get("id") == request_id]


def credit(c: TwinClient, op: str) -> int:
    return TwinClient.progress(c.wait_operation(op, timeout_s=10)).service_request.credit_pence


# -- part 3: a retry never applies twice -----------------------------------------------------------
def test_a_retried_top_up_credits_the_meter_once_and_answers_the_same(api, duis_base):
    dev = api.hub["device_id"]
    target = f"hubs/{dev}"
    with api.client("is") as c:
        base = c.submit("2.2", target, {"amount_pence": 1}, request_id=f"{ORIG}:{dev}:{duis_base + 100}")
        api.sup.step(2)
        before = credit(c, base.response.operation)
        ops = len(api.sup.operations())
        rid = f"{ORIG}:{dev}:{duis_base + 101}"
        first = c.submit("2.2", target, {"amount_pence": 1000}, request_id=rid)
        again = c.submit("2.2", target, {"amount_pence": 1000}, request_id=rid)
        assert first.response.status == dcc_pb2.RESPONSE_STATUS_ACKNOWLEDGED  # the clock is paused
        assert again == first
        api.sup.step(2)
        after = credit(c, first.response.operation)
        # One top-up of 1,000p, less at most an hour's consumption; twice would be about 2,000p.
        assert 900 <= after - before <= 1000
        assert len(api.sup.operations()) == ops + 1
        assert len(journaled(api.sup, rid)) == 1
        # Once it has applied, a retry gets its outcome: the same operation, completed.
        late = c.submit("2.2", target, {"amount_pence": 1000}, request_id=rid)
        assert late.response.operation == first.response.operation
        assert late.response.status == dcc_pb2.RESPONSE_STATUS_COMPLETED
        assert late.response.result["credit_pence"] == after
        assert len(api.sup.operations()) == ops + 1


def test_duis_counters_must_increase_and_an_id_is_for_one_request(api, duis_base):
    dev = api.hub["device_id"]
    target = f"hubs/{dev}"
    with api.client("is") as c:
        c.submit("2.2", target, {"amount_pence": 5}, request_id=f"{ORIG}:{dev}:{duis_base + 200}")
        journal = (api.sup.run_dir / "journal.jsonl").read_text()
        e = expect(grpc.StatusCode.FAILED_PRECONDITION, c.submit, "2.2", target, {"amount_pence": 5},
                   request_id=f"{ORIG}:{dev}:{duis_base + 199}")
        assert bad_request_fields(e) == ["request_id"] and f"not above {duis_base + 200}" in e.details()
        e = expect(grpc.StatusCode.ALREADY_EXISTS, c.submit, "2.2", target, {"amount_pence": 6},
                   request_id=f"{ORIG}:{dev}:{duis_base + 200}")
        assert bad_request_fields(e) == ["request_id"]
        other = api.hub2["device_id"]  # a device at another premises
        for bad in ["a:b:c", f"{ORIG}:{dev}:-3", f"{ORIG}:{dev}:\u0662\u0660\u0661", f"{ORIG}:{other}:{duis_base + 201}"]:
            e = expect(grpc.StatusCode.INVALID_ARGUMENT, c.submit, "2.2", target, {"amount_pence": 5}, request_id=bad)
            assert bad_request_fields(e) == ["request_id"]
        # A read's counter counts too: reads and changes share the originator's sequence.
        c.submit("4.1.1", target, request_id=f"{ORIG}:{dev}:{duis_base + 202}")  # 201 was used, though refused
        expect(grpc.StatusCode.FAILED_PRECONDITION, c.submit, "4.1.1", target, request_id=f"{ORIG}:{dev}:{duis_base + 150}")
        assert (api.sup.run_dir / "journal.jsonl").read_text() == journal  # nothing refused was journaled


def test_a_retried_read_gets_the_first_reading(api):
    target = f"hubs/{api.hub['device_id']}"
    with api.client("is") as c:
        rid = str(uuid.uuid4())
        first = c.submit("4.1.1", target, request_id=rid)
        api.sup.step(1)
        fresh = c.submit("4.1.1", target)
        assert fresh.response.time != first.response.time  # a new read describes the newer tick
        assert c.submit("4.1.1", target, request_id=rid) == first


def test_a_refused_request_may_be_retried_with_its_id(api):
    target = f"hubs/{api.hub['device_id']}"
    with api.client("is") as c:
        rid = str(uuid.uuid4())
        expect(grpc.StatusCode.INVALID_ARGUMENT, c.submit, "2.2", target, {"amount_pence": 0}, request_id=rid)
        ok = c.submit("2.2", target, {"amount_pence": 7}, request_id=rid)
        assert ok.response.operation and len(journaled(api.sup, rid)) == 1
        # A signed (critical) request refused after its signature verified: signed again and resent.
        rid = str(uuid.uuid4())
        e = expect(grpc.StatusCode.INVALID_ARGUMENT, c.submit, "1.1.1", target, {"unit_rate_pence": 900},
                   request_id=rid)
        assert bad_request_fields(e) == ["parameters.unit_rate_pence"]
        ok = c.submit("1.1.1", target, {"unit_rate_pence": 24.5}, request_id=rid)
        assert ok.response.operation and len(journaled(api.sup, rid)) == 1


def test_a_retried_quarantined_request_is_held_once(api):
    srv = ApiServer(api.sup, api.users, port=0, anomaly=AnomalyDetector(default_threshold=0))
    srv.start()
    try:
        target = f"hubs/{api.hub['device_id']}"
        with TwinClient(srv.address, token=api.tokens["is"]) as c:
            rid = str(uuid.uuid4())
            first = expect(grpc.StatusCode.RESOURCE_EXHAUSTED, c.submit, "4.1.1", target, request_id=rid)
            again = expect(grpc.StatusCode.RESOURCE_EXHAUSTED, c.submit, "4.1.1", target, request_id=rid)
            held = first.details().split()[2].rstrip(":")
            assert held.startswith("q-") and held in again.details()
            listed = c.dcc.ListQuarantinedRequests(dcc_pb2.ListQuarantinedRequestsRequest(), metadata=c.metadata)
            assert [r.id for r in listed.requests] == [held]
        with TwinClient(srv.address, token=api.tokens["operator"]) as op:
            req = dcc_pb2.ReleaseQuarantinedRequestRequest(id=held)
            released = op.dcc.ReleaseQuarantinedRequest(req, metadata=op.metadata)
            # A retried release answers the same; the request is processed once.
            assert op.dcc.ReleaseQuarantinedRequest(req, metadata=op.metadata) == released
        with TwinClient(srv.address, token=api.tokens["is"]) as c:
            assert c.submit("4.1.1", target, request_id=rid) == released
    finally:
        srv.stop(1.0)


def test_create_event_and_create_branch_take_a_request_id(api):
    with api.client("operator") as c:
        rid = str(uuid.uuid4())
        event = {"power_outage": fleet_pb2.PowerOutage(area="12", fraction=0.01, duration_min=30)}
        ops = len(api.sup.operations())
        first = c.fleet.CreateEvent(fleet_pb2.CreateEventRequest(at="1h", request_id=rid, **event), metadata=c.metadata)
        again = c.fleet.CreateEvent(fleet_pb2.CreateEventRequest(at="1h", request_id=rid, **event), metadata=c.metadata)
        assert again.name == first.name and len(api.sup.operations()) == ops + 1
        assert len(journaled(api.sup, rid)) == 1
        e = expect(grpc.StatusCode.ALREADY_EXISTS, c.fleet.CreateEvent,
                   fleet_pb2.CreateEventRequest(at="2h", request_id=rid, **event), metadata=c.metadata)
        assert bad_request_fields(e) == ["request_id"]


def test_a_retry_after_a_restart_with_resume_gets_the_first_operation(api, tmp_path):
    """The ledger is rebuilt from the journal when a run is resumed (what `twin up --resume` does)."""
    d = run_dir("resume-retry")
    cfg = FleetConfig(hubs=20_000, seed=9, block_size=1024)
    dev = api.hub["device_id"]
    rid = f"{ORIG}:{dev}:7"
    sup = FleetSupervisor(cfg, shards=1, cpus_per_shard=0.0, run_dir=d)
    srv = ApiServer(sup, api.users, port=0)
    srv.start()
    try:
        sup.step(1)
        with TwinClient(srv.address, token=api.tokens["is"]) as c:
            first = c.submit("2.2", f"hubs/{dev}", {"amount_pence": 300}, request_id=rid)
    finally:
        srv.stop(1.0)
        sup.shutdown()
    sup = FleetSupervisor(cfg, shards=1, cpus_per_shard=0.0, run_dir=d, resume=True)
    srv = ApiServer(sup, api.users, port=0)
    srv.start()
    try:
        with TwinClient(srv.address, token=api.tokens["is"]) as c:
            again = c.submit("2.2", f"hubs/{dev}", {"amount_pence": 300}, request_id=rid)
            assert again.response.operation == first.response.operation
            assert again.response.status == dcc_pb2.RESPONSE_STATUS_ACKNOWLEDGED
            e = expect(grpc.StatusCode.FAILED_PRECONDITION, c.submit, "2.2", f"hubs/{dev}", {"amount_pence": 300},
                       request_id=f"{ORIG}:{dev}:6")
            assert bad_request_fields(e) == ["request_id"]
            sup.step(4)
            done = c.submit("2.2", f"hubs/{dev}", {"amount_pence": 300}, request_id=rid)
            assert done.response.status == dcc_pb2.RESPONSE_STATUS_COMPLETED
            assert done.response.operation == first.response.operation
            assert len(journaled(sup, rid)) == 1
            assert [v["name"] for v in sup.operations()] == [first.response.operation]
    finally:
        srv.stop(1.0)
        sup.shutdown()


# -- part 4: page tokens bound to their request, every List paginated ------------------------------
def walk(call, make, page_size: int) -> list:
    """Every item of a list, page by page; asserts pages are not larger than asked."""
    out, token = [], ""
    while True:
        page = call(make(page_size=page_size, page_token=token))
        items = getattr(page, page.DESCRIPTOR.fields[0].name)  # the list is field 1 of every List response
        assert len(items) <= page_size
        out += list(items)
        token = page.next_page_token
        if not token:
            return out


def test_a_page_token_with_another_filter_is_refused(api):
    with api.client("operator") as c:
        north = c.list_hubs("region=North", page_size=5)
        assert north.next_page_token
        e = expect(grpc.StatusCode.INVALID_ARGUMENT, c.list_hubs, "region=South", page_size=5,
                   page_token=north.next_page_token)
        assert bad_request_fields(e) == ["page_token"]
        # The same filter continues where the first page ended; a new page size is allowed.
        nxt = c.list_hubs("region=North", page_size=7, page_token=north.next_page_token)
        both = [h.index for h in north.hubs] + [h.index for h in nxt.hubs]
        recs, _ = api.sup.list_hubs(parse_filter("region=North"), 0, 12)
        assert both == [r["hub"] for r in recs]
        import base64

        for forged in [base64.urlsafe_b64encode(b"h:25").decode(), "h:25", north.next_page_token[:-2]]:
            e = expect(grpc.StatusCode.INVALID_ARGUMENT, c.list_hubs, "region=North", page_token=forged)
            assert bad_request_fields(e) == ["page_token"]


FILTERS = ["", "region=North", "region=South AND wan=3G", "reachable=false", "payment=prepayment AND region=Central"]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(FILTERS[1:]), st.sampled_from(FILTERS), st.integers(200, 1000))
def test_a_full_walk_has_no_skips_or_repeats_and_other_filters_are_refused(api, flt, other, size):
    with api.client("operator") as c:
        walked = [h.index for h in walk(lambda r: c.fleet.ListHubs(r, metadata=c.metadata),
                                        lambda **kw: fleet_pb2.ListHubsRequest(filter=flt, **kw), size)]
        recs, _ = api.sup.list_hubs(parse_filter(flt), 0, api.sup.config.hubs)
        assert walked == [r["hub"] for r in recs]
        token = c.list_hubs(flt, page_size=size).next_page_token
        if token and other != flt:
            e = expect(grpc.StatusCode.INVALID_ARGUMENT, c.list_hubs, other, page_size=size, page_token=token)
            assert bad_request_fields(e) == ["page_token"]


def test_every_list_method_refuses_a_token_of_another_request(api):
    hub = f"hubs/{api.hub['hub']}"
    with api.client("operator") as c:
        md = c.metadata
        c.create_event(power_outage=fleet_pb2.PowerOutage(area=api.hub["area"]["name"], duration_min=60))
        api.sup.step(3)
        cases = [
            (lambda r: c.operations.ListOperations(r, metadata=md),
             lambda **kw: operations_pb2.ListOperationsRequest(filter="done=false", **kw),
             lambda **kw: operations_pb2.ListOperationsRequest(filter="done=true", **kw)),
            (lambda r: c.fleet.ListHubEvents(r, metadata=md),
             lambda **kw: fleet_pb2.ListHubEventsRequest(parent=hub, **kw),
             lambda **kw: fleet_pb2.ListHubEventsRequest(parent="hubs/1", **kw)),
            (lambda r: c.csp.ListBaseStations(r, metadata=md),
             lambda **kw: csp_pb2.ListBaseStationsRequest(parent="regions/north", **kw),
             lambda **kw: fleet_pb2.ListHubsRequest(**kw)),
            (lambda r: c.dcc.ListQuarantinedRequests(r, metadata=md),
             lambda **kw: dcc_pb2.ListQuarantinedRequestsRequest(user_id="is", **kw),
             lambda **kw: dcc_pb2.ListQuarantinedRequestsRequest(user_id="gs", **kw)),
            (lambda r: c.csp.ListSwitchOffs(r, metadata=md),
             lambda **kw: csp_pb2.ListSwitchOffsRequest(parent="regions/north", **kw),
             lambda **kw: csp_pb2.ListSwitchOffsRequest(parent="regions/south", **kw)),
            (lambda r: c.fleet.ListBranches(r, metadata=md),
             lambda **kw: fleet_pb2.ListBranchesRequest(**kw),
             lambda **kw: operations_pb2.ListOperationsRequest(**kw)),
        ]
        for call, make, other in cases:
            # A token the server issued for `make` (built as the server builds it, for lists too
            # short here to need a second page); with `other`'s fields or method it is refused.
            token = page_token(make(), 0)
            bad = other(page_token=token)
            with pytest.raises(grpc.RpcError) as e:
                if isinstance(bad, type(make())):
                    call(bad)
                else:  # another method's request: send the token to this method's own request
                    call(make(page_token=page_token(bad, 0)))
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and bad_request_fields(e.value) == ["page_token"]
            assert len(walk(call, make, 1)) == len(walk(call, make, 1000))  # pages of one walk the same list


def test_hub_events_pages_neither_repeat_nor_skip_while_alerts_arrive(api):
    # A premises of its own, in an area no other test cuts: the shared premises (hub, hub2) are
    # changed by other tests (8.14.x field updates), and cutting their area would leave `hub`
    # unreachable for tests that run after this one.
    recs, _ = api.sup.list_hubs({"reachable": True}, 0, 2000)
    hub = next(r for r in recs if r["area"]["id"] != api.hub["area"]["id"] and r["smets"] == "SMETS2")

    def outage_alerts(c: TwinClient, more_than: int) -> None:
        # Area outages until the premises has sent more than `more_than` alerts. Not every outage
        # makes a new pair of alerts (the fleet is shared, so its tick and state depend on the tests
        # before), hence a bounded loop rather than a fixed count.
        for _ in range(10):
            if len(api.sup.hub_events(hub["hub"], 1000)) > more_than:
                return
            c.create_event(power_outage=fleet_pb2.PowerOutage(area=hub["area"]["name"], duration_min=30))
            api.sup.step(3)
        pytest.fail(f"ten outages of its area gave the premises no more than {more_than} alerts")

    with api.client("operator") as c:
        outage_alerts(c, 2)  # at least three events, so two pages of two
        events = lambda **kw: fleet_pb2.ListHubEventsRequest(parent=f"hubs/{hub['hub']}", **kw)  # noqa: E731
        first = c.fleet.ListHubEvents(events(page_size=2), metadata=c.metadata)
        before = [(e["tick"], e["kind"]) for e in api.sup.hub_events(hub["hub"], 1000)]
        outage_alerts(c, len(before))  # newer alerts arrive between pages
        rest = walk(lambda r: c.fleet.ListHubEvents(r, metadata=c.metadata),
                    lambda **kw: events(**{**kw, "page_token": kw["page_token"] or first.next_page_token}), 2)
        seen = [(e.tick, AlertKind[e.kind]) for e in [*first.events, *rest]]
        assert seen == [(t, AlertKind(k)) for t, k in before] and len(seen) >= 3


def test_the_quarantine_is_listed_page_by_page_and_any_entry_released_or_deleted(api):
    anomaly = AnomalyDetector(default_threshold=0)
    srv = ApiServer(api.sup, api.users, port=0, anomaly=anomaly)
    srv.start()
    target = f"hubs/{api.hub['device_id']}"
    try:
        with TwinClient(srv.address, token=api.tokens["is"]) as c:
            for _ in range(25):
                expect(grpc.StatusCode.RESOURCE_EXHAUSTED, c.submit, "4.1.1", target)
        # The real size at scale, made directly in the detector: 20,000 typical entries (above the
        # ~18,300 that passed the 4 MiB message limit as one list) and a few of the largest
        # parameters a request may carry (64 KiB).
        for i in range(20_000):
            anomaly.admit("is", "4.1.1", {"srv": "4.1.1", "target": target, "request_id": f"bulk-{i}",
                                          "parameters": {"fuel": "electricity"}, "signature": ""})
        for i in range(40):
            anomaly.admit("is", "2.2", {"srv": "2.2", "target": target, "request_id": f"big-{i}",
                                        "parameters": {"amount_pence": 1, "note": "x" * 60_000}, "signature": ""})
        with TwinClient(srv.address, token=api.tokens["operator"]) as op:
            list_ = lambda r: op.dcc.ListQuarantinedRequests(r, metadata=op.metadata)  # noqa: E731
            token, ids, largest = "", [], 0
            while True:
                page = list_(dcc_pb2.ListQuarantinedRequestsRequest(page_size=1000, page_token=token))
                largest = max(largest, page.ByteSize())
                ids += [r.id for r in page.requests]
                token = page.next_page_token
                if not token:
                    break
            assert ids == [e.id for e in anomaly.list()] and len(ids) == 20_065
            assert largest < MAX_MESSAGE_BYTES
            assert len(list_(dcc_pb2.ListQuarantinedRequestsRequest()).requests) == 100  # the default page
            e = expect(grpc.StatusCode.INVALID_ARGUMENT, list_, dcc_pb2.ListQuarantinedRequestsRequest(page_size=-1))
            assert bad_request_fields(e) == ["page_size"]
            # Release the 3rd of the first page and delete the 20th of the second (pages of 10).
            p1 = list_(dcc_pb2.ListQuarantinedRequestsRequest(page_size=10))
            p2 = list_(dcc_pb2.ListQuarantinedRequestsRequest(page_size=10, page_token=p1.next_page_token))
            released = op.dcc.ReleaseQuarantinedRequest(dcc_pb2.ReleaseQuarantinedRequestRequest(id=p1.requests[2].id),
                                                         metadata=op.metadata)
            assert released.response.status == dcc_pb2.RESPONSE_STATUS_COMPLETED
            op.dcc.DeleteQuarantinedRequest(dcc_pb2.DeleteQuarantinedRequestRequest(id=p2.requests[9].id),
                                            metadata=op.metadata)
            # The walk goes on past them with no skip or repeat.
            p3 = list_(dcc_pb2.ListQuarantinedRequestsRequest(page_size=10, page_token=p2.next_page_token))
            assert [r.id for r in p3.requests] == ids[20:30]
            left = {e.id for e in anomaly.list()}
            assert p1.requests[2].id not in left and p2.requests[9].id not in left and len(left) == 20_063
    finally:
        srv.stop(1.0)


# -- part 4: operation controls -------------------------------------------------------------------
def test_controls_on_unknown_and_finished_operations(api):
    with api.client("operator") as c:
        md = c.metadata
        for call, req in [(c.operations.CancelOperation, operations_pb2.CancelOperationRequest(name="operations/nope-1")),
                          (c.fleet.PauseOperation, fleet_pb2.PauseOperationRequest(name="operations/nope-1")),
                          (c.fleet.ResumeOperation, fleet_pb2.ResumeOperationRequest(name="operations/nope-1")),
                          (c.operations.GetOperation, operations_pb2.GetOperationRequest(name="operations/nope-1"))]:
            e = expect(grpc.StatusCode.NOT_FOUND, call, req, metadata=md)
            assert bad_request_fields(e) == ["name"]
        op = c.create_event(at="6h", power_outage=fleet_pb2.PowerOutage(area="12", fraction=0.01, duration_min=30))
        paused = c.fleet.PauseOperation(fleet_pb2.PauseOperationRequest(name=op.name), metadata=md)
        assert TwinClient.progress(paused).state == fleet_pb2.OPERATION_STATE_PAUSED
        # Already in the state asked for: answered unchanged, nothing journaled.
        journal = (api.sup.run_dir / "journal.jsonl").read_text()
        again = c.fleet.PauseOperation(fleet_pb2.PauseOperationRequest(name=op.name), metadata=md)
        assert TwinClient.progress(again).state == fleet_pb2.OPERATION_STATE_PAUSED
        assert (api.sup.run_dir / "journal.jsonl").read_text() == journal
        c.operations.CancelOperation(operations_pb2.CancelOperationRequest(name=op.name), metadata=md)
        assert TwinClient.progress(c.get_operation(op.name)).state == fleet_pb2.OPERATION_STATE_CANCELLED
        c.operations.CancelOperation(operations_pb2.CancelOperationRequest(name=op.name), metadata=md)  # retry: OK
        e = expect(grpc.StatusCode.FAILED_PRECONDITION, c.fleet.ResumeOperation,
                   fleet_pb2.ResumeOperationRequest(name=op.name), metadata=md)
        assert "CANCELLED" in e.details()
        done = c.create_event(power_outage=fleet_pb2.PowerOutage(area="12", fraction=0.01, duration_min=30))
        api.sup.step(6)
        assert TwinClient.progress(c.get_operation(done.name)).state == fleet_pb2.OPERATION_STATE_DONE
        for call, req in [(c.operations.CancelOperation, operations_pb2.CancelOperationRequest(name=done.name)),
                          (c.fleet.PauseOperation, fleet_pb2.PauseOperationRequest(name=done.name))]:
            expect(grpc.StatusCode.FAILED_PRECONDITION, call, req, metadata=md)


# -- part 4: the published error table ------------------------------------------------------------
DOC = Path(__file__).resolve().parents[2] / "docs" / "api-errors.md"


def error_table() -> list[tuple[str, str, str, str]]:
    rows = []
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 4 and cells[0] not in ("RPC", "---"):
            rows.append(tuple(cells))
    return rows


def test_the_error_table_holds_against_a_live_server(api, duis_base):
    """Every row of docs/api-errors.md: its case sent to this server (or the test that covers it
    named), answered with the row's code and BadRequest field."""
    from twin.model.catalog import SUPPLIERS
    from twin.services.signing import sign

    target = f"hubs/{api.hub['device_id']}"
    quarantining = ApiServer(api.sup, api.users, port=0, anomaly=AnomalyDetector(default_threshold=0))
    quarantining.start()
    op_c, is_c = api.client("operator"), api.client("is")
    q_c = TwinClient(quarantining.address, token=api.tokens["is"])
    md, umd = op_c.metadata, is_c.metadata
    F, Op, D, C = op_c.fleet, op_c.operations, is_c.dcc, op_c.csp
    f, o, d, cs = fleet_pb2, operations_pb2, dcc_pb2, csp_pb2
    try:
        # What the cases need: a finished operation, a branch, a failed supplier (far in the future).
        done = op_c.create_event(power_outage=f.PowerOutage(area="12", fraction=0.01, duration_min=30))
        api.sup.step(6)
        assert TwinClient.progress(op_c.get_operation(done.name)).state == fleet_pb2.OPERATION_STATE_DONE
        branch = F.CreateBranch(f.CreateBranchRequest(branch_id="walk", branch=f.Branch(fork_tick=1), until_tick=2),
                                metadata=md)
        op_c.wait_operation(branch.name, timeout_s=120)
        others = [s.name for s in SUPPLIERS if s.name not in (api.hub["supplier"], api.hub["gas_supplier"])]
        failure = f.SupplierFailure(supplier=others[0], solr=others[1])
        failed = op_c.create_event(at="30d", supplier_failure=failure)
        rid = str(uuid.uuid4())
        F.CreateEvent(f.CreateEventRequest(at="30d", request_id=rid, power_outage=f.PowerOutage(
            area="12", duration_min=5)), metadata=md)
        moved = d.SubmitServiceRequestRequest(srv="7.1", target=target, request_id="walk-signed",
                                              issued_at_ms=int(time.time() * 1000))
        moved.signature = sign(api.keys["other-is"].read_bytes(), user_id="is", srv="7.1", target=target,
                               request_id="walk-signed", issued_at_ms=moved.issued_at_ms, payload={})
        dev = api.hub["device_id"]
        is_c.submit("4.1.1", target, request_id=f"{ORIG}:{dev}:{duis_base + 900}")
        is_c.submit("2.2", target, {"amount_pence": 3}, request_id="walk-reused")
        unknown = "operations/nope-1"

        def aborted():
            """The retry comes while the first request waits to be accepted (the planner held);
            leaving the block frees the planner, and the first is accepted then."""
            with concurrent.futures.ThreadPoolExecutor(1) as pool, api.sup._plan_lock:
                pool.submit(is_c.submit, "2.2", target, {"amount_pence": 4}, request_id="walk-busy")
                while api.sup.requests.get("is", "walk-busy") is None:
                    time.sleep(0.01)
                is_c.submit("2.2", target, {"amount_pence": 4}, request_id="walk-busy")

        cases = {
            ("any", "no bearer token, or an unknown one"):
                lambda: TwinClient(api.server.address, token="nope").get_hub(target),
            ("any", "more calls in flight than the server's limit"):
                "tests/integration/test_api.py::test_overload_answers_resource_exhausted",
            ("FleetService.StepClock", "the run itself failed (its run directory could not be written, a shard call failed)"):
                "tests/integration/test_history_live.py::"
                "test_a_step_that_cannot_write_the_history_is_unavailable_with_the_cause_and_loses_nothing",
            ("FleetService.GetClock", "a DCC User, not an operator"):
                lambda: is_c.fleet.GetClock(f.GetClockRequest(), metadata=umd),
            ("FleetService.UpdateClock", "an unknown clock state"):
                lambda: F.UpdateClock(f.UpdateClockRequest(state=7), metadata=md),
            ("FleetService.UpdateClock", "speed not a number"):
                lambda: F.UpdateClock(f.UpdateClockRequest(speed=float("nan")), metadata=md),
            ("FleetService.StepClock", "count outside 1..10000"): lambda: F.StepClock(f.StepClockRequest(count=0), metadata=md),
            ("FleetService.CreateEvent", "no event set"): lambda: F.CreateEvent(f.CreateEventRequest(), metadata=md),
            ("FleetService.CreateEvent", "a bad event field (an unknown area)"):
                lambda: op_c.create_event(power_outage=f.PowerOutage(area="Atlantis", duration_min=5)),
            ("FleetService.CreateEvent", "conflicts with an operation still running (the supplier failed already)"):
                lambda: op_c.create_event(at="31d", supplier_failure=failure),
            ("FleetService.CreateEvent", "the run is rewound behind its head"):
                "tests/integration/test_branches_api.py::test_branches_and_rewind_through_the_api",
            ("FleetService.CreateEvent", "request_id used for a different event"):
                lambda: F.CreateEvent(f.CreateEventRequest(at="30d", request_id=rid, power_outage=f.PowerOutage(
                    area="12", duration_min=6)), metadata=md),
            ("FleetService.PauseOperation", "no such operation"):
                lambda: F.PauseOperation(f.PauseOperationRequest(name=unknown), metadata=md),
            ("FleetService.PauseOperation", "the operation has finished"):
                lambda: F.PauseOperation(f.PauseOperationRequest(name=done.name), metadata=md),
            ("FleetService.ResumeOperation", "no such operation"):
                lambda: F.ResumeOperation(f.ResumeOperationRequest(name=unknown), metadata=md),
            ("FleetService.ResumeOperation", "the operation has finished"):
                lambda: F.ResumeOperation(f.ResumeOperationRequest(name=done.name), metadata=md),
            ("FleetService.AggregateFleet", "an unknown group key"):
                lambda: F.AggregateFleet(f.AggregateFleetRequest(group_by=["colour"]), metadata=md),
            ("FleetService.GetHub", "a malformed hub name"): lambda: op_c.get_hub("hubs/12-34"),
            ("FleetService.GetHub", "no such hub in the fleet"): lambda: op_c.get_hub("hubs/99999999"),
            ("FleetService.ListHubs", "a filter that cannot be read"): lambda: op_c.list_hubs("colour=red"),
            ("FleetService.ListHubs", "a negative page_size"): lambda: op_c.list_hubs("", -1),
            ("FleetService.ListHubs", "a page token of another filter"):
                lambda: op_c.list_hubs("region=South", page_token=op_c.list_hubs("region=North", 5).next_page_token),
            ("FleetService.WatchFleet", "backlog outside 0..2000"):
                lambda: next(F.WatchFleet(f.WatchFleetRequest(backlog=5000), metadata=md)),
            ("FleetService.ListHubEvents", "no such hub"):
                lambda: F.ListHubEvents(f.ListHubEventsRequest(parent="hubs/99999999"), metadata=md),
            ("FleetService.ListHubEvents", "a page token of another hub"):
                lambda: F.ListHubEvents(f.ListHubEventsRequest(parent="hubs/2", page_token=page_token(
                    f.ListHubEventsRequest(parent="hubs/1"), 5, 0)), metadata=md),
            ("FleetService.RewindClock", "a negative tick"): lambda: F.RewindClock(f.RewindClockRequest(tick=-1), metadata=md),
            ("FleetService.RewindClock", "a tick beyond the current one"):
                lambda: F.RewindClock(f.RewindClockRequest(tick=10**6), metadata=md),
            ("FleetService.CreateBranch", "a malformed branch_id"):
                lambda: F.CreateBranch(f.CreateBranchRequest(branch_id="Bad_Id", until_tick=2), metadata=md),
            ("FleetService.CreateBranch", "the branch exists already"):
                lambda: F.CreateBranch(f.CreateBranchRequest(branch_id="walk", branch=f.Branch(fork_tick=1), until_tick=2),
                                       metadata=md),
            ("FleetService.CreateBranch", "no such parent branch"):
                lambda: F.CreateBranch(f.CreateBranchRequest(branch_id="orphan", branch=f.Branch(parent="branches/nope"),
                                                             until_tick=2), metadata=md),
            ("FleetService.CreateBranch", "fork_tick beyond the run's current tick"):
                lambda: F.CreateBranch(f.CreateBranchRequest(branch_id="late", branch=f.Branch(fork_tick=10**6),
                                                             until_tick=10**6), metadata=md),
            ("FleetService.CreateBranch", "until_tick before the fork tick"):
                lambda: F.CreateBranch(f.CreateBranchRequest(branch_id="back", branch=f.Branch(fork_tick=2), until_tick=1),
                                       metadata=md),
            ("FleetService.GetBranch", "a malformed branch name"):
                lambda: F.GetBranch(f.GetBranchRequest(name="walk"), metadata=md),
            ("FleetService.GetBranch", "no such branch"):
                lambda: F.GetBranch(f.GetBranchRequest(name="branches/nope"), metadata=md),
            ("FleetService.ListBranches", "a page token of another method"):
                lambda: F.ListBranches(f.ListBranchesRequest(page_token=page_token(f.ListHubsRequest(), 0)), metadata=md),
            ("FleetService.CompareBranches", "no such branch"):
                lambda: F.CompareBranches(f.CompareBranchesRequest(name="branches/nope"), metadata=md),
            ("FleetService.CompareBranches", "no such other branch"):
                lambda: F.CompareBranches(f.CompareBranchesRequest(name="branches/walk", other="branches/nope"), metadata=md),
            ("Operations.GetOperation", "no such operation"):
                lambda: Op.GetOperation(o.GetOperationRequest(name=unknown), metadata=md),
            ("Operations.ListOperations", "a filter that cannot be read"):
                lambda: Op.ListOperations(o.ListOperationsRequest(filter="colour=red"), metadata=md),
            ("Operations.ListOperations", "a page token of another filter"):
                lambda: Op.ListOperations(o.ListOperationsRequest(filter="done=true", page_token=Op.ListOperations(
                    o.ListOperationsRequest(page_size=1), metadata=md).next_page_token), metadata=md),
            ("Operations.CancelOperation", "no such operation"):
                lambda: Op.CancelOperation(o.CancelOperationRequest(name=unknown), metadata=md),
            ("Operations.CancelOperation", "the operation finished (not cancelled)"):
                lambda: Op.CancelOperation(o.CancelOperationRequest(name=done.name), metadata=md),
            ("Operations.CancelOperation", "a CreateBranch operation (a branch runs to its until_tick)"):
                lambda: Op.CancelOperation(o.CancelOperationRequest(name=branch.name), metadata=md),
            ("Operations.DeleteOperation", "any"):
                lambda: Op.DeleteOperation(o.DeleteOperationRequest(name=done.name), metadata=md),
            ("Operations.WaitOperation", "no such operation"):
                lambda: Op.WaitOperation(o.WaitOperationRequest(name=unknown), metadata=md),
            ("DccService.SubmitServiceRequest", "sent by an operator"): lambda: op_c.submit("4.1.1", target),
            ("DccService.SubmitServiceRequest", "an unknown SRV"): lambda: is_c.submit("99.9", target),
            ("DccService.SubmitServiceRequest", "no request_id"):
                lambda: D.SubmitServiceRequest(d.SubmitServiceRequestRequest(srv="4.1.1", target=target), metadata=umd),
            ("DccService.SubmitServiceRequest", "a request_id with ':' that is not a DUIS RequestID"):
                lambda: is_c.submit("4.1.1", target, request_id="a:b:c"),
            ("DccService.SubmitServiceRequest", "a DUIS RequestID whose target EUI is not a device at the target premises"):
                lambda: is_c.submit("4.1.1", target, request_id=f"{ORIG}:{api.hub2['device_id']}:{duis_base + 901}"),
            ("DccService.SubmitServiceRequest", "a DUIS counter not above the last one from its originator"):
                lambda: is_c.submit("4.1.1", target, request_id=f"{ORIG}:{dev}:{duis_base + 899}"),
            ("DccService.SubmitServiceRequest", "request_id used for a different request"):
                lambda: is_c.submit("2.2", target, {"amount_pence": 4}, request_id="walk-reused"),
            ("DccService.SubmitServiceRequest", "the first request with this request_id is still being processed"): aborted,
            ("DccService.SubmitServiceRequest", "a malformed target"): lambda: is_c.submit("4.1.1", "hubs/not-a-hub"),
            ("DccService.SubmitServiceRequest", "no such premises in the fleet"): lambda: is_c.submit("4.1.1", "hubs/99999999"),
            ("DccService.SubmitServiceRequest", "premises the sender does not supply"):
                lambda: api.client("other-is").submit("4.1.1", target),
            ("DccService.SubmitServiceRequest", "a critical SRV unsigned"): lambda: is_c.submit("7.1", target, sign=False),
            ("DccService.SubmitServiceRequest", "a critical SRV signed with another key"):
                lambda: D.SubmitServiceRequest(moved, metadata=umd),
            ("DccService.SubmitServiceRequest", "a bad parameter (a top-up of 0 pence)"):
                lambda: is_c.submit("2.2", target, {"amount_pence": 0}),
            ("DccService.SubmitServiceRequest", "a negative response_deadline (or nanos outside 0..999,999,999)"):
                lambda: is_c.submit("4.1.1", target, response_deadline_s=-1.0),
            ("DccService.SubmitServiceRequest", "a response_deadline beyond 2 days"):
                lambda: is_c.submit("4.1.1", target, response_deadline_s=2 * 86_400 + 1),
            ("DccService.SubmitServiceRequest", "SR 11.3 with no image distributed"):
                lambda: is_c.submit("11.3", f"hubs/{api.hub2['device_id']}"),
            ("DccService.SubmitServiceRequest", "past the user's threshold: quarantined"): lambda: q_c.submit("4.1.1", target),
            ("DccService.SubmitServiceRequests", "sent by an operator (ends the stream)"):
                "tests/integration/test_api_bulk.py::test_stream_level_faults_end_the_stream",
            ("DccService.SubmitServiceRequests", "a batch of more than 10,000 requests (ends the stream)"):
                "tests/integration/test_api_bulk.py::test_stream_level_faults_end_the_stream",
            ("DccService.StreamAlerts", "an unknown alert kind"): lambda: next(is_c.alerts(["NOPE"])),
            ("DccService.ListQuarantinedRequests", "a user asks for another user's"):
                lambda: D.ListQuarantinedRequests(d.ListQuarantinedRequestsRequest(user_id="gs"), metadata=umd),
            ("DccService.ListQuarantinedRequests", "a negative page_size"):
                lambda: D.ListQuarantinedRequests(d.ListQuarantinedRequestsRequest(page_size=-1), metadata=umd),
            ("DccService.ListQuarantinedRequests", "a page token of another user_id"):
                lambda: op_c.dcc.ListQuarantinedRequests(d.ListQuarantinedRequestsRequest(user_id="gs", page_token=page_token(
                    d.ListQuarantinedRequestsRequest(user_id="is"), 1)), metadata=md),
            ("DccService.ReleaseQuarantinedRequest", "a DCC User, not an operator"):
                lambda: D.ReleaseQuarantinedRequest(d.ReleaseQuarantinedRequestRequest(id="q-000001"), metadata=umd),
            ("DccService.ReleaseQuarantinedRequest", "no such quarantine entry"):
                lambda: op_c.dcc.ReleaseQuarantinedRequest(d.ReleaseQuarantinedRequestRequest(id="q-999999"), metadata=md),
            ("DccService.DeleteQuarantinedRequest", "a DCC User, not an operator"):
                lambda: D.DeleteQuarantinedRequest(d.DeleteQuarantinedRequestRequest(id="q-000001"), metadata=umd),
            ("DccService.DeleteQuarantinedRequest", "no such quarantine entry"):
                lambda: op_c.dcc.DeleteQuarantinedRequest(d.DeleteQuarantinedRequestRequest(id="q-999999"), metadata=md),
            ("CspService.GetNetworkState", "no such region"):
                lambda: C.GetNetworkState(cs.GetNetworkStateRequest(name="regions/atlantis"), metadata=md),
            ("CspService.ListSwitchOffs", "no such region"):
                lambda: C.ListSwitchOffs(cs.ListSwitchOffsRequest(parent="regions/atlantis"), metadata=md),
            ("CspService.ListSwitchOffs", "a page token of another region"):
                lambda: C.ListSwitchOffs(cs.ListSwitchOffsRequest(parent="regions/south", page_token=page_token(
                    cs.ListSwitchOffsRequest(parent="regions/north"), 1)), metadata=md),
            ("CspService.ListBaseStations", "a region without base stations"):
                lambda: C.ListBaseStations(cs.ListBaseStationsRequest(parent="regions/south"), metadata=md),
            ("CspService.ListBaseStations", "a page token of another method"):
                lambda: C.ListBaseStations(cs.ListBaseStationsRequest(parent="regions/north", page_token=page_token(
                    cs.ListSwitchOffsRequest(parent="regions/north"), 1)), metadata=md),
            ("CspService.GetLoad", "a negative number of ticks"):
                lambda: C.GetLoad(cs.GetLoadRequest(name="regions/north", ticks=-1), metadata=md),
            ("CspService.GetCoverage", "no such hub"):
                lambda: C.GetCoverage(cs.GetCoverageRequest(hub="hubs/99999999"), metadata=md),
        }
        rows = error_table()
        assert len(rows) >= 70 and {(r, c) for r, c, _, _ in rows} == set(cases)
        root = DOC.parents[1]
        for rpc, case, code, field in rows:
            how = cases[(rpc, case)]
            if isinstance(how, str):  # covered by the test it names
                path, name = how.split("::")
                assert f"def {name}(" in (root / path).read_text(), how
                continue
            try:
                how()
            except grpc.RpcError as err:
                assert err.code().name == code, (rpc, case, err.code(), err.details())
                assert not field or bad_request_fields(err) == [field], (rpc, case, err.details())
            else:
                pytest.fail(f"{rpc}, {case}: answered OK, expected {code}")
        op_c.operations.CancelOperation(operations_pb2.CancelOperationRequest(name=failed.name), metadata=md)
    finally:
        for c in (op_c, is_c, q_c):
            c.channel.close()
        quarantining.stop(1.0)
