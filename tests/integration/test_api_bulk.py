"""SubmitServiceRequests (bulk submission on one bidirectional stream) over a real socket, against
the live engine: each request checked as SubmitServiceRequest checks it, each answered with its
own status in order, a refused one changing nothing and never ending the stream."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twin.client import TwinClient
from twin.generated.dcc.v1 import dcc_pb2
from twin.services import duis
from twin.services.anomaly import AnomalyDetector
from twin.services.dcc_servicer import MAX_BATCH
from twin.services.errors import bad_request_fields
from twin.services.server import ApiServer

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture
def api(live_api):
    live_api.settle()
    return live_api


@pytest.fixture
def strict(api) -> Iterator[ApiServer]:
    """A second server on the same engine whose anomaly detection holds every SR 1.1.1 (threshold
    0), so a valid, signed critical command (a tariff update) is quarantined."""
    srv = ApiServer(api.sup, api.users, port=0, anomaly=AnomalyDetector(default_threshold=10_000,
                                                                       thresholds={"1.1.1": 0}))
    srv.start()
    yield srv
    srv.stop(1.0)


def _client(api, server: ApiServer, user: str) -> TwinClient:
    return TwinClient(server.address, token=api.tokens[user], private_key=api.keys[user], user_id=user)


def _fields(result: dcc_pb2.ServiceRequestResult) -> list[str]:
    out = []
    for d in result.status.details:
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            d.Unpack(br)
            out += [v.field for v in br.field_violations]
    return out


def _quota(result: dcc_pb2.ServiceRequestResult) -> list[str]:
    out = []
    for d in result.status.details:
        if d.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            qf = error_details_pb2.QuotaFailure()
            d.Unpack(qf)
            out += [v.subject for v in qf.violations]
    return out


def _foreign_target(api) -> str:
    """A premises the chosen premises' supplier does not supply (either fuel)."""
    recs, _ = api.sup.list_hubs({"reachable": True}, 0, 2000)
    other = next(r for r in recs if api.hub["supplier"] not in (r["supplier"], r["gas_supplier"]))
    return f"hubs/{other['device_id']}"


def _not_for(role: str) -> str:
    """An SRV the twin implements that `role` is not eligible for (the DUIS matrix)."""
    return next(s for s in duis.IMPLEMENTED if role not in duis.lookup(s).roles)


def test_a_mixed_stream_answers_each_request_in_order_and_changes_nothing_for_the_bad_ones(api, strict):
    target = f"hubs/{api.hub['device_id']}"
    journal = (api.sup.run_dir / "journal.jsonl").read_text()
    ops = len(api.sup.operations())
    # The premises' gas supplier (it supplies both fuels there): eligible for the tariff update,
    # not for SR 7.1 (the import supplier's).
    with _client(api, strict, "gs") as c:
        first_id = uuid.uuid4().hex
        topup_id = uuid.uuid4().hex
        batch = [
            c.service_request("4.1.1", target, request_id=first_id),                     # 0 OK
            c.service_request("4.1.1", "hubs/00-DB-12-not-a-hub"),                       # 1 bad target
            c.service_request("4.1.1", _foreign_target(api)),                            # 2 not its premises
            c.service_request(_not_for("GS"), target),                                   # 3 not eligible
            c.service_request("1.1.1", target, {"unit_rate_pence": 20.5}),               # 4 quarantined
            c.service_request("4.6.1", target, request_id=first_id),                     # 5 id reused
            c.service_request("4.1.1", "hubs/\u202e\U0001f4a5\x00\uff21\u0301"),         # 6 Unicode garbage
            c.service_request("\uff14.\uff11.\uff11", target),                           # 7 full-width SRV
            c.service_request("2.2", target, {"amount_pence": 250}, request_id=topup_id),  # 8 applies
            c.service_request("4.1.1", target, request_id=first_id),                     # 9 retry of 0
            c.service_request("1.1.1", target, {"unit_rate_pence": 20.5}, sign=False),   # 10 unsigned
        ]
        results = list(c.submit_many(batch, batch_size=len(batch)))
        codes = [r.status.code for r in results]
        assert codes == [code_pb2.OK, code_pb2.INVALID_ARGUMENT, code_pb2.PERMISSION_DENIED,
                         code_pb2.PERMISSION_DENIED, code_pb2.RESOURCE_EXHAUSTED, code_pb2.ALREADY_EXISTS,
                         code_pb2.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT, code_pb2.OK, code_pb2.OK,
                         code_pb2.INVALID_ARGUMENT], [(r.status.code, r.status.message) for r in results]
        assert [_fields(r) for r in results] == [
            [], ["requests[1].target"], ["requests[2].target"], ["requests[3].srv"], [],
            ["requests[5].request_id"], ["requests[6].target"], ["requests[7].srv"], [], [],
            ["requests[10].signature"]]
        assert results[0].response.status == dcc_pb2.RESPONSE_STATUS_COMPLETED
        assert "import_register_kwh" in results[0].response.result
        assert results[9].response == results[0].response  # the retry gets the first answer
        held = _quota(results[4])
        assert len(held) == 1 and held[0].startswith("q-")
        assert results[8].response.status == dcc_pb2.RESPONSE_STATUS_ACKNOWLEDGED  # the clock is paused
        assert all(not r.HasField("response") for i, r in enumerate(results) if i not in (0, 8, 9))

        # The same top-up again on a later batch of another stream: a retry, applied once.
        again = list(c.submit_many([c.service_request("2.2", target, {"amount_pence": 250}, request_id=topup_id)]))
        assert again[0].status.code == code_pb2.OK
        assert again[0].response.operation == results[8].response.operation
        listed = c.dcc.ListQuarantinedRequests(dcc_pb2.ListQuarantinedRequestsRequest(), metadata=c.metadata)
        assert [q.id for q in listed.requests] == held
    # Only the top-up was journaled and made an operation; the held 1.1.1 waits unapplied.
    lines = (api.sup.run_dir / "journal.jsonl").read_text()
    assert lines.startswith(journal) and lines.count("\n") == journal.count("\n") + 1
    assert len(api.sup.operations()) == ops + 1
    with _client(api, strict, "operator") as op:
        op.dcc.DeleteQuarantinedRequest(dcc_pb2.DeleteQuarantinedRequestRequest(id=held[0]), metadata=op.metadata)
    api.sup.step(2)  # the top-up applies; the premises stays as other tests expect it


def test_many_batches_on_one_stream_come_back_in_order(api):
    target = f"hubs/{api.hub['device_id']}"
    with api.client("is") as c:
        ids = [uuid.uuid4().hex for _ in range(2500)]
        reqs = [c.service_request("4.1.1", target if i % 500 else "hubs/x", request_id=rid, sign=False)
                for i, rid in enumerate(ids)]
        results = list(c.submit_many(reqs, batch_size=300))
    assert len(results) == len(reqs)
    assert [r.response.request_id for r in results if r.status.code == code_pb2.OK] == \
        [rid for i, rid in enumerate(ids) if i % 500]
    # i is the place in its batch of 300.
    assert [_fields(r) for r in results if r.status.code != code_pb2.OK] == \
        [[f"requests[{i % 300}].target"] for i in range(0, 2500, 500)]


def test_stream_level_faults_end_the_stream(api):
    target = f"hubs/{api.hub['device_id']}"
    with api.client("operator") as c:
        with pytest.raises(grpc.RpcError) as e:
            list(c.submit_many([c.service_request("4.1.1", target, sign=False)]))
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with TwinClient(api.server.address, token="not-a-token") as c:
        with pytest.raises(grpc.RpcError) as e:
            list(c.submit_many([c.service_request("4.1.1", target)]))
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with api.client("is") as c:
        too_many = dcc_pb2.SubmitServiceRequestsRequest(requests=[
            dcc_pb2.SubmitServiceRequestRequest(srv="4.1.1", target=target, request_id=f"big-{i}")
            for i in range(MAX_BATCH + 1)])
        with pytest.raises(grpc.RpcError) as e:
            list(c.dcc.SubmitServiceRequests(iter([too_many]), metadata=c.metadata, timeout=60))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_fields(e.value) == ["requests"]


_TARGETS = st.sampled_from(["good", "foreign", "hubs/", "hubs/99999999", "hubs/\u00b2", "\U0001f4a5", "hubs/12 3"])
_SRVS = st.sampled_from(["4.1.1", "4.6.1", "4.17", "4.8.1", "12.1", "11.2", "99.9", "", "\u0664.1.1"])
_PARAMS = st.sampled_from([None, {"fuel": "gas"}, {"fuel": "water"}, {"fuel": "\u0261as"}])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=st.lists(st.tuples(_SRVS, _TARGETS, _PARAMS), min_size=1, max_size=12))
def test_each_request_of_a_batch_gets_what_the_unary_call_gets(api, drawn):
    """Property: for any mix of reads (good, foreign, malformed), a request's bulk status is the
    status the unary call gives the same request (code, and the field, indexed in the batch)."""
    names = {"good": f"hubs/{api.hub['device_id']}", "foreign": _foreign_target(api)}
    with api.client("is") as c:
        reqs = [c.service_request(srv, names.get(t, t), p, sign=False) for srv, t, p in drawn]
        unary = []
        for r in reqs:
            single = dcc_pb2.SubmitServiceRequestRequest()
            single.CopyFrom(r)
            single.request_id = uuid.uuid4().hex  # its own id: the bulk one must be the first use of its id
            try:
                c.dcc.SubmitServiceRequest(single, metadata=c.metadata, timeout=30)
                unary.append((grpc.StatusCode.OK.value[0], []))
            except grpc.RpcError as e:
                unary.append((e.code().value[0], bad_request_fields(e)))
        bulk = [(r.status.code, [f.split(".", 1)[1] for f in _fields(r)])
                for r in c.submit_many(reqs, batch_size=len(reqs))]
        assert bulk == unary
