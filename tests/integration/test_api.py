"""The gRPC API over real sockets on localhost, against a real engine on local Ray."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.longrunning import operations_pb2
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import Api
from twin.client import TwinClient
from twin.generated.dcc.v1 import dcc_pb2
from twin.generated.fleet.v1 import fleet_pb2, fleet_pb2_grpc
from twin.model.catalog import AREA_BY_ID, supplier_code
from twin.services import duis
from twin.services.anomaly import AnomalyDetector
from twin.services.errors import bad_request_fields, retry_delay_s
from twin.services.identity import UserStore
from twin.services.server import RETRY_AFTER_S, ApiServer

pytestmark = pytest.mark.usefixtures("ray_session")
ROOT = Path(__file__).resolve().parents[2]
MATRIX = json.loads((ROOT / "twin/services/data/duis-request-matrix.json").read_text())
ROLES = ("IS", "ES", "GS", "ED", "GT", "RSA", "OU")


@pytest.fixture
def api(live_api):
    """The session's live stack (tests/conftest.py), shared with test_api_contracts.py, with its chosen
    premises reachable (tests.support.Api.settle)."""
    live_api.settle()
    return live_api


def params_for(srv: str) -> dict:
    return {"2.2": {"amount_pence": 500}, "1.1.1": {"unit_rate_pence": 26.1},
            "11.1": {"target_version": f"9.{uuid.uuid4().int % 10**6}"}}.get(srv, {})


def expect(code: grpc.StatusCode, fn, *args, **kw) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        fn(*args, **kw)
    assert e.value.code() == code, (e.value.code(), e.value.details())
    return e.value


@pytest.mark.parametrize("srv", duis.IMPLEMENTED)
def test_role_eligibility_matrix_from_the_json(api, srv):
    entry = next(e for e in MATRIX if e["Service Reference Variant"] == srv)
    eligible = set(entry["Eligible User Roles"])
    target = f"hubs/{api.hub2['device_id']}"
    for role in ROLES:
        with api.client(role.lower()) as c:
            try:
                resp = c.submit(srv, target, params_for(srv), sign=entry["Critical"] == "Yes")
                outcome = ("ok", resp.response.status)
                if srv == "11.1":  # leave no distribution waiting on this device
                    api.sup.submit({"type": "operation_control", "action": "cancel",
                                    "operation": resp.response.operation.split("/")[1]})
                    api.sup.step(1)  # the cancel applies at a tick: no image is left waiting for SR 11.3
            except grpc.RpcError as e:
                outcome = (e.code(), bad_request_fields(e))
        if role not in eligible:
            assert outcome == (grpc.StatusCode.PERMISSION_DENIED, ["srv"]), (role, srv, outcome)
        elif srv == "7.2" and role == "GS":
            assert outcome == (grpc.StatusCode.PERMISSION_DENIED, ["target"])  # 7.2 is the electricity supply
        elif srv == "11.3":
            # Activation needs an image distributed by SR 11.1 and still held; none is (the 11.1 case
            # cancels its own), so an eligible role passes eligibility and is refused on the precondition.
            assert outcome == (grpc.StatusCode.FAILED_PRECONDITION, ["target"]), (role, outcome)
        else:
            assert outcome[0] == "ok", (role, srv, outcome)


def test_wrong_premises_no_token_and_bad_signatures_change_nothing(api):
    target = f"hubs/{api.hub['device_id']}"
    journal = (api.sup.run_dir / "journal.jsonl").read_text()
    ops = len(api.sup.operations())
    with api.client("other-is") as c:
        e = expect(grpc.StatusCode.PERMISSION_DENIED, c.submit, "4.1.1", target)
        assert bad_request_fields(e) == ["target"]
    with api.client("far-ed") as c:
        expect(grpc.StatusCode.PERMISSION_DENIED, c.submit, "4.1.1", target)
    with TwinClient(api.server.address, token="") as c:
        expect(grpc.StatusCode.UNAUTHENTICATED, c.submit, "4.1.1", target)
    with TwinClient(api.server.address, token="not-a-token") as c:
        expect(grpc.StatusCode.UNAUTHENTICATED, c.get_hub, target)
    with api.client("is") as c:
        e = expect(grpc.StatusCode.INVALID_ARGUMENT, c.submit, "7.1", target, sign=False)
        assert bad_request_fields(e) == ["signature"]
    # Forged: signed with another user's key.
    with TwinClient(api.server.address, token=api.tokens["is"], private_key=api.keys["other-is"], user_id="is") as c:
        expect(grpc.StatusCode.PERMISSION_DENIED, c.submit, "7.1", target)
    # Tampered: a valid signature over other parameters.
    with api.client("is") as c:
        from twin.services.signing import sign

        req = dcc_pb2.SubmitServiceRequestRequest(srv="1.1.1", target=target, request_id="tamper-1",
                                                  issued_at_ms=int(time.time() * 1000))
        req.parameters.update({"unit_rate_pence": 99.0})
        req.signature = sign(api.keys["is"].read_bytes(), user_id="is", srv="1.1.1", target=target,
                             request_id="tamper-1", issued_at_ms=req.issued_at_ms, payload={"unit_rate_pence": 1.0})
        expect(grpc.StatusCode.PERMISSION_DENIED, c.dcc.SubmitServiceRequest, req, metadata=c.metadata)
        # Replayed: the same signed request again is a retry (AIP-155), answered as the first time
        # and applied once; its signature moved to another request id is refused.
        first = c.submit("7.1", target, request_id="replay-1")
        assert c.submit("7.1", target, request_id="replay-1") == first
        moved = dcc_pb2.SubmitServiceRequestRequest(srv="7.1", target=target, request_id="replay-2",
                                                    issued_at_ms=int(time.time() * 1000))
        moved.signature = sign(api.keys["is"].read_bytes(), user_id="is", srv="7.1", target=target,
                               request_id="replay-1", issued_at_ms=moved.issued_at_ms, payload={})
        expect(grpc.StatusCode.PERMISSION_DENIED, c.dcc.SubmitServiceRequest, moved, metadata=c.metadata)
    lines = (api.sup.run_dir / "journal.jsonl").read_text()
    assert lines.startswith(journal) and lines.count("\n") == journal.count("\n") + 1  # only the valid 7.1
    assert len(api.sup.operations()) == ops + 1


def test_device_changing_requests_apply_at_a_tick(api):
    target = f"hubs/{api.hub['device_id']}"
    with api.client("is") as c:
        first = c.submit("2.2", target, {"amount_pence": 1234})
        assert first.response.status == dcc_pb2.RESPONSE_STATUS_ACKNOWLEDGED  # the clock is paused
        op = first.response.operation
        api.sup.step(2)
        done = c.wait_operation(op, timeout_s=10)
        assert done.done and TwinClient.progress(done).state == fleet_pb2.OPERATION_STATE_DONE
        before = TwinClient.progress(done).service_request.credit_pence
        again = c.submit("2.2", target, {"amount_pence": 1000})
        api.sup.step(2)
        after = TwinClient.progress(c.wait_operation(again.response.operation, timeout_s=10)).service_request.credit_pence
        # 1,000p more, less at most an hour's consumption at the tariff.
        assert 900 <= after - before <= 1000
        e = expect(grpc.StatusCode.INVALID_ARGUMENT, c.submit, "2.2", target, {"amount_pence": -5})
        assert bad_request_fields(e) == ["parameters.amount_pence"]


def test_firmware_by_service_request_distribute_then_signed_activation(api):
    target = f"hubs/{api.hub['device_id']}"
    with api.client("is") as c:
        for bad in ("x.y", "0.0.1"):  # unparseable; below what the meter runs (a downgrade)
            e = expect(grpc.StatusCode.INVALID_ARGUMENT, c.submit, "11.1", target, {"target_version": bad})
            assert bad_request_fields(e) == ["parameters.target_version"], (bad, e.details())
        version = "7.7.7"
        dist = c.submit("11.1", target, {"target_version": version})
        # Planned (budget) 4 ticks after it starts, sent, then the image arrives a tick later.
        api.sup.step(8)
        assert TwinClient.progress(c.get_operation(dist.response.operation)).firmware_rollout.activating == 1
        c.submit("11.3", target)
        api.sup.step(6)
        op = c.get_operation(dist.response.operation)
        assert op.done and TwinClient.progress(op).firmware_rollout.activated == 1
    with api.client("operator") as op_client:
        hub = op_client.get_hub(target)
        assert hub.meters[0].firmware == version


def test_quarantine_then_release_and_delete(api):
    # A second server on the same engine with a tight threshold (Ray has no CPUs for a second fleet).
    srv = ApiServer(api.sup, api.users, port=0, anomaly=AnomalyDetector(default_threshold=3))
    srv.start()

    def client(user):
        return TwinClient(srv.address, token=api.tokens[user], private_key=api.keys[user], user_id=user)

    try:
        target = f"hubs/{api.hub['device_id']}"
        with client("is") as c:
            for _ in range(3):
                c.submit("4.1.1", target)
            e = expect(grpc.StatusCode.RESOURCE_EXHAUSTED, c.submit, "4.1.1", target)
            assert "q-" in e.details()
            expect(grpc.StatusCode.RESOURCE_EXHAUSTED, c.submit, "4.1.1", target)
            listed = c.dcc.ListQuarantinedRequests(dcc_pb2.ListQuarantinedRequestsRequest(), metadata=c.metadata)
            assert len(listed.requests) == 2 and all(r.user_id == "is" for r in listed.requests)
            expect(grpc.StatusCode.PERMISSION_DENIED, c.dcc.ReleaseQuarantinedRequest,
                   dcc_pb2.ReleaseQuarantinedRequestRequest(id=listed.requests[0].id), metadata=c.metadata)
        with client("operator") as op:
            released = op.dcc.ReleaseQuarantinedRequest(
                dcc_pb2.ReleaseQuarantinedRequestRequest(id=listed.requests[0].id), metadata=op.metadata)
            assert released.response.status == dcc_pb2.RESPONSE_STATUS_COMPLETED
            assert "import_register_kwh" in released.response.result
            deleted = op.dcc.DeleteQuarantinedRequest(
                dcc_pb2.DeleteQuarantinedRequestRequest(id=listed.requests[1].id), metadata=op.metadata)
            assert deleted.id == listed.requests[1].id
            left = op.dcc.ListQuarantinedRequests(dcc_pb2.ListQuarantinedRequestsRequest(), metadata=op.metadata)
            assert len(left.requests) == 0
            expect(grpc.StatusCode.NOT_FOUND, op.dcc.DeleteQuarantinedRequest,
                   dcc_pb2.DeleteQuarantinedRequestRequest(id="q-999999"), metadata=op.metadata)
    finally:
        srv.stop(1.0)


def test_malformed_requests_name_the_field_and_the_server_stays_up(api):
    target = f"hubs/{api.hub['device_id']}"
    with api.client("is") as c:
        for srv, tgt, rid, field in [("", target, "a", "srv"), ("99.9", target, "b", "srv"),
                                     ("4.1.1", "hubs/NOT-A-HUB", "c", "target"), ("4.1.1", "", "d", "target"),
                                     ("4.1.1", target, "", "request_id")]:
            req = dcc_pb2.SubmitServiceRequestRequest(srv=srv, target=tgt, request_id=rid)
            e = expect(grpc.StatusCode.INVALID_ARGUMENT, c.dcc.SubmitServiceRequest, req, metadata=c.metadata)
            assert bad_request_fields(e) == [field]
        big = {"blob": "x" * 100_000}
        e = expect(grpc.StatusCode.INVALID_ARGUMENT, c.submit, "4.1.1", target, big)
        assert bad_request_fields(e) == ["parameters"]
        expect(grpc.StatusCode.RESOURCE_EXHAUSTED, c.submit, "4.1.1", target, {"blob": "x" * 5_000_000})
    with api.client("operator") as op:
        e = expect(grpc.StatusCode.INVALID_ARGUMENT, op.list_hubs, "", -1)
        assert bad_request_fields(e) == ["page_size"]
        e = expect(grpc.StatusCode.INVALID_ARGUMENT, op.get_hub, "hubs/12-34")
        assert bad_request_fields(e) == ["name"]
        expect(grpc.StatusCode.NOT_FOUND, op.get_hub, "hubs/99999999")
        assert op.get_hub(target).index == api.hub["hub"]  # still serving


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(srv=st.text(max_size=8), target=st.text(max_size=30), rid=st.text(max_size=12),
       params=st.dictionaries(st.sampled_from(["amount_pence", "unit_rate_pence", "fuel", "target_version", "x"]),
                              st.one_of(st.integers(-10**9, 10**9), st.floats(allow_nan=False, allow_infinity=False),
                                        st.text(max_size=10), st.booleans()), max_size=3),
       signature=st.binary(max_size=70))
def test_generated_requests_never_end_unknown_or_internal(api, srv, target, rid, params, signature):
    with api.client("is") as c:
        req = dcc_pb2.SubmitServiceRequestRequest(srv=srv, target=target, request_id=rid, signature=signature)
        s = struct_pb2.Struct()
        s.update(params)
        req.parameters.CopyFrom(s)
        try:
            c.dcc.SubmitServiceRequest(req, metadata=c.metadata, timeout=30)
        except grpc.RpcError as e:
            assert e.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), e.details()


@pytest.fixture
def own_api(tmp_path):
    """A fleet of its own, fresh for one test: operator events change it for good (a GB-wide churn
    campaign, a supplier failure, 2G switched off in the South), so the shared stack cannot host
    them, and a fresh fleet makes each operation's state at a given tick one known value."""
    # Beside the session's stack on the same two Ray CPUs: its shard reserves none.
    a = Api(tmp_path, shards=1, cpus_per_shard=0.0)
    yield a
    a.close()


def test_every_operator_event_end_to_end_through_the_api(own_api):
    api = own_api
    ev = [
        {"firmware_rollout": fleet_pb2.FirmwareRollout(device="ESME", manufacturer="Kaifa", model="MA120",
                                                       target_version="1.3.0", waves=[1.0], concurrency_per_csp=100)},
        {"supplier_switch": fleet_pb2.SupplierSwitch(hub=f"hubs/{api.hub['device_id']}", fuel="dual",
                                                     to_supplier="Good Energy")},
        {"churn_campaign": fleet_pb2.ChurnCampaign(switches_per_month=200_000, days=0.5)},
        {"supplier_failure": fleet_pb2.SupplierFailure(supplier="Rebel Energy", solr="So Energy", daily_cap=50)},
        {"network_switch_off": fleet_pb2.NetworkSwitchOff(region="South", technology="2G")},
        {"swap_programme": fleet_pb2.SwapProgramme(region="South", installs_per_day=100, prioritise="2G", days=1)},
        {"vwan_fallback": fleet_pb2.VwanFallback(region="South", onboard_per_day=50, days=1)},
        {"power_outage": fleet_pb2.PowerOutage(area="South West England", fraction=0.2, duration_min=40)},
        {"base_station_failure": fleet_pb2.BaseStationFailure(cells=[3, 4], duration_min=30)},
        {"csp_incident": fleet_pb2.CspIncident(region="North", duration_min=30)},
        {"mhhs_migration": fleet_pb2.MhhsMigration(share=0.5, waves=2, spacing_days=0.5, regions=["Central"])},
        {"on_demand_reads": fleet_pb2.OnDemandReads(duration_min=120, interval_min=30, areas=["London", "19"])},
    ]
    # 60 ticks (30 h) after a fresh fleet's tick 2, each operation's one state: the timed events and
    # the one-hub switch have ended; the churn campaign's switches and the failed supplier's
    # transfers (50 a day) are still under way; the rollout still has ESMEs in the South waiting for
    # a WAN (2G is off there), so it is running when it is cancelled.
    # The MHHS migration's second wave, 12 hours after its first, has applied: it is done; so is
    # the two-hour read campaign.
    expected = ["RUNNING", "DONE", "RUNNING", "RUNNING", "DONE", "DONE", "DONE", "DONE", "DONE", "DONE", "DONE",
                "DONE"]
    with api.client("operator") as c:
        names = [c.create_event(**e).name for e in ev]
        rollout = names[0]
        c.fleet.PauseOperation(fleet_pb2.PauseOperationRequest(name=rollout), metadata=c.metadata)
        c.fleet.ResumeOperation(fleet_pb2.ResumeOperationRequest(name=rollout), metadata=c.metadata)
        c.step(60)
        ops = {n: c.get_operation(n) for n in names}
        states = [TwinClient.state_name(ops[n]) for n in names]
        assert states == expected, list(zip(names, states, strict=True))
        mhhs = TwinClient.progress(ops[names[-2]]).mhhs_migration
        assert (mhhs.waves, mhhs.waves_done, mhhs.next_wave_tick) == (2, 2, -1), mhhs
        assert 0 < mhhs.migrated == mhhs.targeted, mhhs
        reads = TwinClient.progress(ops[names[-1]]).on_demand_reads
        assert reads.targeted > 0 and reads.answered + reads.failed == reads.planned > 0, reads
        md = fleet_pb2.OperationMetadata()
        ops[names[-1]].metadata.Unpack(md)
        assert json.loads(md.command_json)["areas"] == ["London", "South East England"]  # named as asked
        before = TwinClient.progress(ops[rollout]).firmware_rollout
        assert before.activated > 0 and before.waiting > 0 and before.cancelled == 0, before
        c.operations.CancelOperation(operations_pb2.CancelOperationRequest(name=rollout), metadata=c.metadata)
        c.step(6)
        after_op = c.get_operation(rollout)
        assert TwinClient.state_name(after_op) == "CANCELLED", after_op
        after = TwinClient.progress(after_op).firmware_rollout
        # The cancel stopped the rollout: nothing more activated, and every ESME left waiting was cancelled.
        assert after.activated == before.activated, (before, after)
        assert after.cancelled >= before.waiting, (before, after)
        south = c.network_state("south")
        assert any(t.technology == "2G" and not t.up for t in south.technologies)
        e = expect(grpc.StatusCode.INVALID_ARGUMENT, c.create_event,
                   power_outage=fleet_pb2.PowerOutage(area="Atlantis", duration_min=5))
        assert bad_request_fields(e) == ["area"]
    with api.client("is") as c:  # DCC users may not run fleet operations
        expect(grpc.StatusCode.PERMISSION_DENIED, c.step, 1)


def test_versions_and_times_are_checked_through_the_api(api):
    # Issue 17 parts 6 and 8: a version that is a downgrade or does not parse, and a time without
    # a zone, are INVALID_ARGUMENT naming the field; one instant written with two offsets is one tick.
    rollout = dict(device="ESME", manufacturer="Honeywell", model="AS302P", waves=[1.0])
    with api.client("operator") as c:
        for version in ("1.9", "1.13", "1.x"):
            e = expect(grpc.StatusCode.INVALID_ARGUMENT, c.create_event,
                       firmware_rollout=fleet_pb2.FirmwareRollout(target_version=version, **rollout))
            assert bad_request_fields(e) == ["target_version"], (version, e.details())
        e = expect(grpc.StatusCode.INVALID_ARGUMENT, c.create_event, at="2027-01-05T06:00",
                   csp_incident=fleet_pb2.CspIncident(region="North", duration_min=30))
        assert bad_request_fields(e) == ["at"]
        ticks = []
        for at in ("2027-01-05T07:00+01:00", "2027-01-05T06:00Z"):
            op = c.create_event(at=at, csp_incident=fleet_pb2.CspIncident(region="North", duration_min=30))
            md = fleet_pb2.OperationMetadata()
            op.metadata.Unpack(md)
            ticks.append((md.start_tick, md.start_time.ToDatetime(tzinfo=UTC)))
            c.operations.CancelOperation(operations_pb2.CancelOperationRequest(name=op.name), metadata=c.metadata)
        assert ticks[0] == ticks[1] and ticks[0][1] == datetime(2027, 1, 5, 6, tzinfo=UTC)


def test_alerts_reach_the_network_operator_of_the_area_only(api):
    area = api.hub["area"]["id"]
    got: dict[str, list] = {"ed": [], "far-ed": []}
    import threading

    def listen(user):
        with api.client(user, timeout_s=60) as c:
            stream = c.alerts(["POWER_OUTAGE"])
            try:
                for a in stream:
                    got[user].append(a)
            except grpc.RpcError:
                pass

    threads = [threading.Thread(target=listen, args=(u,), daemon=True) for u in got]
    for t in threads:
        t.start()
    time.sleep(1.0)
    with api.client("operator") as c:
        c.create_event(power_outage=fleet_pb2.PowerOutage(area=str(area), fraction=0.5, duration_min=60))
        c.step(3)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(got["ed"]) < 50:
        time.sleep(0.2)
    assert len(got["ed"]) >= 50
    assert all(a.area_id == area and a.kind == "POWER_OUTAGE" and a.code == "AD1" for a in got["ed"])
    assert all(a.area_id != area for a in got["far-ed"])


def test_watch_backlog_area_states_and_hub_events(api):
    # An area no other test cuts, so this cut alone decides what is dark there.
    area = next(a for a in sorted(AREA_BY_ID) if a != api.hub["area"]["id"])
    with api.client("operator") as c:
        hub = c.list_hubs(f"area={area} AND reachable=true", page_size=1).hubs[0]
        # Long enough that the whole area is still dark two ticks on.
        c.create_event(power_outage=fleet_pb2.PowerOutage(area=str(area), duration_min=240))
        c.step(2)
        stream = c.fleet.WatchFleet(fleet_pb2.WatchFleetRequest(backlog=3), metadata=c.metadata)
        first = [next(stream) for _ in range(3)]
        stream.cancel()
        ticks = [s.tick for s in first]
        assert ticks == sorted(ticks) and len(set(ticks)) == 3 and ticks[-1] == c.fleet.GetClock(
            fleet_pb2.GetClockRequest(), metadata=c.metadata).tick - 1
        last = first[-1]
        # The areas add up to the fleet, and the whole area is dark in the outage.
        assert len(last.areas) == 14
        assert sum(a.hubs for a in last.areas) == last.hubs == 20_000
        assert sum(a.dark_hubs for a in last.areas) == sum(x.dark_hubs for x in last.csps)
        hit = next(a for a in last.areas if a.area_id == area)
        assert hit.reachable_hubs == 0 and hit.dark_hubs == hit.dcc_hubs > 0
        assert sum(a.alerts for a in first[-2].areas) + sum(a.alerts for a in last.areas) > 0
        assert last.alerts_total >= sum(sum(x.alerts.values()) for s in first for x in s.csps)
        events = c.fleet.ListHubEvents(fleet_pb2.ListHubEventsRequest(parent=hub.name),
                                       metadata=c.metadata).events
        assert [e.kind for e in events][:1] == ["POWER_OUTAGE"] and events[0].code == "AD1"
        e = expect(grpc.StatusCode.INVALID_ARGUMENT, c.fleet.ListHubEvents,
                   fleet_pb2.ListHubEventsRequest(parent="hubs/zz"), metadata=c.metadata)
        assert bad_request_fields(e) == ["parent"]
        e = expect(grpc.StatusCode.INVALID_ARGUMENT, lambda: next(c.fleet.WatchFleet(
            fleet_pb2.WatchFleetRequest(backlog=-1), metadata=c.metadata)))
        assert bad_request_fields(e) == ["backlog"]


def test_health_reflection_and_csp_services(api):
    ch = grpc.insecure_channel(api.server.address)
    resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="twin.dcc.v1.DccService"))
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(ch)
    out = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in out[0].list_services_response.service}
    assert {"twin.fleet.v1.FleetService", "twin.dcc.v1.DccService", "twin.csp.v1.CspService",
            "google.longrunning.Operations"} <= names
    ch.close()
    with api.client("operator") as c:
        from twin.generated.csp.v1 import csp_pb2

        cov = c.csp.GetCoverage(csp_pb2.GetCoverageRequest(hub=f"hubs/{api.hub['device_id']}"), metadata=c.metadata)
        assert cov.technology == api.hub["wan"]
        if api.sup.tick < 5:  # five ticks of load to read, whatever tick the shared fleet is at
            api.sup.step(5 - api.sup.tick)
        load = c.csp.GetLoad(csp_pb2.GetLoadRequest(name="regions/central", ticks=5), metadata=c.metadata)
        assert len(load.ticks) == 5 and sum(t.messages["DAILY_READ"] for t in load.ticks) > 0
        bs = c.csp.ListBaseStations(csp_pb2.ListBaseStationsRequest(parent="regions/north", page_size=10),
                                    metadata=c.metadata)
        assert len(bs.base_stations) == 10 and bs.next_page_token
        more = c.csp.ListBaseStations(csp_pb2.ListBaseStationsRequest(parent="regions/north", page_size=10,
                                                                      page_token=bs.next_page_token), metadata=c.metadata)
        assert min(b.id for b in more.base_stations) > max(b.id for b in bs.base_stations)
        e = expect(grpc.StatusCode.INVALID_ARGUMENT, c.csp.ListBaseStations,
                   csp_pb2.ListBaseStationsRequest(parent="regions/north", page_token="bm90LWEtdG9rZW4="),
                   metadata=c.metadata)
        assert bad_request_fields(e) == ["page_token"]
        expect(grpc.StatusCode.NOT_FOUND, c.csp.GetNetworkState, csp_pb2.GetNetworkStateRequest(name="regions/mars"),
               metadata=c.metadata)


def test_the_fleet_catalog_names_everything_the_api_returns(api):
    """GetFleetCatalog: the same reference data for an operator and a DCC user, none without a
    token, and every name a hub, a tick summary and a firmware count carry is one it lists."""
    from dashboard.reference import Reference

    with api.client("operator") as op, api.client("is") as user:
        cat = op.get_fleet_catalog()
        assert user.get_fleet_catalog().SerializeToString(deterministic=True) == cat.SerializeToString(deterministic=True)
        hub = op.get_hub(f"hubs/{api.hub['device_id']}")
        summary = next(iter(op.watch_fleet(backlog=1)))
        esme = op.fleet.AggregateFleet(fleet_pb2.AggregateFleetRequest(group_by=["esme_firmware"]), **op._kw())
    with api.client("nobody") as c:
        expect(grpc.StatusCode.UNAUTHENTICATED, c.get_fleet_catalog)
    regions = {r.name for r in cat.csp_regions}
    wans = {w.label for w in cat.wan_technologies}
    suppliers = {s.name for s in cat.suppliers}
    assert hub.region in regions and hub.wan in wans and hub.supplier in suppliers
    assert (hub.area_id, hub.area_name) in {(a.id, a.name) for a in cat.areas}
    models = {(d.name, m.manufacturer, m.model): set(m.firmware_versions) for d in cat.device_types for m in d.models}
    for d in [hub.comms_hub, *hub.meters]:
        assert d.firmware in models[(d.type, d.manufacturer, d.model)], d
    assert {c.csp for c in summary.csps} == regions
    assert {w for c in summary.csps for w in c.hubs_by_wan} <= wans
    assert {k for c in summary.csps for k in c.alerts} == {k.name for k in cat.alert_kinds}
    assert set(summary.supplier_hubs) <= suppliers
    assert {(a.area_id, a.area_name, a.csp) for a in summary.areas} <= {(a.id, a.name, a.csp_region) for a in cat.areas}
    ref = Reference.from_catalog(cat)
    labels = [r.labels["esme_firmware"] for r in esme.rows if r.labels["esme_firmware"] != "none"]
    assert labels and all(ref.knows_version("ESME", label) for label in labels)


def test_channelz_counts_calls_for_operators_only(api):
    from grpc_channelz.v1 import channelz_pb2, channelz_pb2_grpc

    def served(c: TwinClient) -> tuple[int, int]:
        stub = channelz_pb2_grpc.ChannelzStub(c.channel)
        data = [s.data for s in stub.GetServers(channelz_pb2.GetServersRequest(), metadata=c.metadata).server]
        return sum(d.calls_succeeded for d in data), sum(d.calls_failed for d in data)

    with api.client("operator") as op, api.client("is") as user:
        ok0, failed0 = served(op)
        for _ in range(3):
            op.get_hub(f"hubs/{api.hub['device_id']}")
        expect(grpc.StatusCode.INVALID_ARGUMENT, user.submit, "4.1.1", "hubs/not-a-hub")
        ok1, failed1 = served(op)
        # Three lookups and the first GetServers succeeded; the bad target failed.
        assert ok1 - ok0 >= 4 and failed1 - failed0 >= 1
        expect(grpc.StatusCode.PERMISSION_DENIED, channelz_pb2_grpc.ChannelzStub(user.channel).GetServers,
               channelz_pb2.GetServersRequest(), metadata=user.metadata)
    expect(grpc.StatusCode.UNAUTHENTICATED, channelz_pb2_grpc.ChannelzStub(grpc.insecure_channel(api.server.address))
           .GetServers, channelz_pb2.GetServersRequest())


def test_plaintext_beyond_loopback_is_refused():
    with pytest.raises(ValueError, match="TLS"):
        ApiServer(None, UserStore(), host="0.0.0.0", port=0)


def test_overload_answers_resource_exhausted(api):
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    srv = ApiServer(api.sup, api.users, port=0, max_in_flight=0, metrics_port=0)
    srv.start()
    try:
        with TwinClient(srv.address, token=api.tokens["operator"]) as c:
            e = expect(grpc.StatusCode.RESOURCE_EXHAUSTED, c.get_hub, f"hubs/{api.hub['device_id']}")
            assert retry_delay_s(e) == RETRY_AFTER_S
            assert "busy" in e.details()
        assert srv.metrics.by_code("GetHub") == {"RESOURCE_EXHAUSTED": 1}
        # The same counters over HTTP, as Prometheus scrapes them (twin up --metrics-port).
        with urlopen(f"http://127.0.0.1:{srv.metrics_port}/metrics", timeout=10) as r:
            samples = [x for f in text_string_to_metric_families(r.read().decode()) for x in f.samples
                       if x.name == "twin_api_calls_total"]
        assert [(x.labels, x.value) for x in samples] == [({"method": "GetHub", "code": "RESOURCE_EXHAUSTED"}, 1.0)]
    finally:
        srv.stop(1.0)


def test_2000_concurrent_get_hub_end_ok_or_resource_exhausted_and_are_counted(api):
    """One client, 2,000 GetHub at once, a server capped at 64 calls waiting or in flight: none
    ends CANCELLED (gRPC core's own queue limit) or UNKNOWN; every refusal carries a RetryInfo;
    the server's counters per code equal what the client saw."""
    srv = ApiServer(api.sup, api.users, port=0, max_in_flight=64)
    srv.start()
    md = (("authorization", f"Bearer {api.tokens['operator']}"),)
    seen: collections.Counter = collections.Counter()
    hints: collections.Counter = collections.Counter()

    async def burst() -> None:
        async with grpc.aio.insecure_channel(srv.address) as ch:
            stub = fleet_pb2_grpc.FleetServiceStub(ch)

            async def one(i: int) -> None:
                try:
                    await stub.GetHub(fleet_pb2.GetHubRequest(name=f"hubs/{i % 20_000}"), metadata=md)
                    seen["OK"] += 1
                except grpc.aio.AioRpcError as e:
                    seen[e.code().name] += 1
                    hints[retry_delay_s(e)] += 1

            await asyncio.gather(*(one(i) for i in range(2000)))

    try:
        asyncio.run(burst())
        assert sum(seen.values()) == 2000
        assert set(seen) <= {"OK", "RESOURCE_EXHAUSTED"}, seen
        assert seen["RESOURCE_EXHAUSTED"] > 0  # the cap engaged
        assert hints == {RETRY_AFTER_S: seen["RESOURCE_EXHAUSTED"]}
        assert srv.metrics.by_code("GetHub") == dict(seen)
    finally:
        srv.stop(1.0)


def test_protos_compile_and_generated_code_matches():
    p = subprocess.run([sys.executable, "protos/generate.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr



def test_reads_of_a_dark_hub_are_answered_on_the_stream_once_it_is_back(api, tmp_path):
    import threading

    hub = api.sup.hub(api.hub["hub"])
    api._user(tmp_path, "reader-is", "IS", supplier_code(hub["supplier"]))
    target = f"hubs/{hub['device_id']}"
    got: list[dcc_pb2.ServiceResponse] = []
    with api.client("operator") as op, api.client("reader-is") as c:
        op.create_event(power_outage=fleet_pb2.PowerOutage(area=hub["area"]["name"], fraction=1.0, duration_min=60))
        api.sup.step(1)
        assert not api.sup.hub(hub["hub"])["reachable"]
        stream = c.responses()

        def follow() -> None:
            with contextlib.suppress(grpc.RpcError):  # cancelled at the end of the test
                got.extend(stream)

        threading.Thread(target=follow, daemon=True).start()
        acks = [c.submit(srv, target).response for srv in ("4.1.1", "4.8.1")]
        assert [a.status for a in acks] == [dcc_pb2.RESPONSE_STATUS_ACKNOWLEDGED] * 2
        for _ in range(6):  # the power is back after two ticks
            api.sup.step(1)
            time.sleep(0.3)
            if len(got) >= 2:
                break
        stream.cancel()
    assert api.sup.hub(hub["hub"])["reachable"]
    by_id = {r.request_id: r for r in got}
    assert set(by_id) == {a.request_id for a in acks}
    assert all(r.status == dcc_pb2.RESPONSE_STATUS_COMPLETED for r in got)
    assert by_id[acks[0].request_id].result["import_register_kwh"] > 0
    assert len(by_id[acks[1].request_id].result["half_hourly_kwh"].values) > 0


def test_list_operations_filters_and_pages(api, tmp_path):
    from google.longrunning import operations_pb2

    hub = api.sup.hub(api.hub["hub"])
    api._user(tmp_path, "pager-is", "IS", supplier_code(hub["supplier"]))
    with api.client("pager-is") as user:
        for _ in range(2):  # two device-changing requests: two operations of kind service_request
            user.submit("2.2", f"hubs/{hub['device_id']}", {"amount_pence": 100})
    with api.client("operator") as c:
        c.create_event(power_outage=fleet_pb2.PowerOutage(area=hub["area"]["name"], fraction=0.1, duration_min=30))

        def names(flt: str, page_size: int) -> list[str]:
            out, token = [], ""
            while True:
                page = c.operations.ListOperations(operations_pb2.ListOperationsRequest(
                    filter=flt, page_size=page_size, page_token=token), metadata=c.metadata)
                out += [o.name for o in page.operations]
                assert len(page.operations) <= page_size
                token = page.next_page_token
                if not token:
                    return out

        # One store: the fleet's operations in the order accepted, then the server's CreateBranch
        # operations (another test on this shared stack may have made one).
        branch_ops = [o.name for o in api.server.fleet.branches.operations()]
        every = [v["name"] for v in api.sup.operations()] + branch_ops
        requests = [v["name"] for v in api.sup.operations() if v["metadata"]["kind"] == "service_request"]
        assert len(requests) >= 2 and len(requests) < len(every)
        assert names("", 3) == every  # pages of three, each once, in order
        assert names("kind!=service_request", 2) == [n for n in every if n not in requests]
        assert names("kind=service_request AND done=true", 1000) == [
            v["name"] for v in api.sup.operations() if v["metadata"]["kind"] == "service_request" and v["done"]]
        for bad in ("colour=red", "kind~service", "done=false OR kind=x"):
            e = expect(grpc.StatusCode.INVALID_ARGUMENT, c.operations.ListOperations,
                       operations_pb2.ListOperationsRequest(filter=bad), metadata=c.metadata)
            assert bad_request_fields(e) == ["filter"]


# -- arbitrary Unicode in every string field of every request ------------------------------------
def _rpcs() -> list[tuple[str, Any]]:
    """(service full name, method descriptor) of every RPC of the DCC, CSP, fleet and Operations
    services, from their descriptors."""
    from google.longrunning import operations_pb2

    from twin.generated.csp.v1 import csp_pb2

    out = []
    for mod, name in ((dcc_pb2, "DccService"), (csp_pb2, "CspService"), (fleet_pb2, "FleetService"),
                      (operations_pb2, "Operations")):
        svc = mod.DESCRIPTOR.services_by_name[name]
        out += [(svc.full_name, m) for m in svc.methods]
    return out


# What a person or a broken client may send: any Unicode but surrogates (which proto3 strings cannot
# carry: gRPC refuses them before the server), control characters and NUL, non-ASCII digits, very long
# text, and each of those behind the prefixes the resource names take, so the grammar behind the
# prefix is reached too.
_NASTY = st.sampled_from(["\x00", "\n", "\u0661\u0662", "\uff11\uff12", "\u00b2", "\u09ea", "1_2", "+12", " 12 ",
                          "\ufb00", "\u017fouth", "\u212aaifa", "nan", "inf", "1e999", "-1", "0x1F", "..", "../x",
                          "a\nb", "\u202e", "\U0001d7d9\U0001d7da"])
# Any run of Unicode digits (decimal, superscript, circled...): what int() and isdigit() misread.
_DIGITS = st.text(alphabet=st.characters(categories=("Nd", "No")), min_size=1, max_size=6)
_SHORT = st.one_of(st.text(max_size=40), _NASTY, _DIGITS)
_TEXT = st.one_of(_SHORT, st.text(min_size=500, max_size=3000),
                  st.tuples(st.sampled_from(["hubs/", "regions/", "branches/", "operations/", "q-"]), _SHORT)
                  .map("".join))
# Codes a client may get for bad input (AIP-193); never UNKNOWN or INTERNAL.
_CLIENT_CODES = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                 grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION,
                 grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.ALREADY_EXISTS,
                 grpc.StatusCode.OUT_OF_RANGE}


def _fill(draw, msg, depth: int = 0) -> None:
    """Every string field of `msg` (and of the messages inside it, two levels down) with drawn text."""
    from google.protobuf.descriptor import FieldDescriptor

    for f in msg.DESCRIPTOR.fields:
        if f.type == FieldDescriptor.TYPE_STRING:
            if f.is_repeated:
                getattr(msg, f.name).extend(draw(st.lists(_TEXT, max_size=3)))
            else:
                setattr(msg, f.name, draw(_TEXT))
        elif f.type == FieldDescriptor.TYPE_MESSAGE and depth < 2 and not f.message_type.GetOptions().map_entry \
                and f.message_type.full_name.startswith("twin.") and draw(st.booleans()):
            _fill(draw, getattr(msg, f.name).add() if f.is_repeated else getattr(msg, f.name), depth + 1)


@pytest.fixture(scope="module")
def fuzz_api(tmp_path_factory):
    """A fleet of its own: arbitrary requests may rewind its clock or add events."""
    # Beside the module's other fleet on the same two Ray CPUs: its shard reserves none.
    a = Api(tmp_path_factory.mktemp("fuzz"), shards=1, cpus_per_shard=0.0)
    yield a
    a.close()


@pytest.mark.parametrize(("service", "method"), _rpcs(), ids=lambda v: getattr(v, "name", v))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_arbitrary_unicode_in_every_string_field_never_ends_unknown_or_internal(fuzz_api, service, method, data):
    from google.protobuf import symbol_database

    req = symbol_database.Default().GetSymbol(method.input_type.full_name)()
    _fill(data.draw, req)
    user = data.draw(st.sampled_from(["operator", "is", "ed"]))
    with fuzz_api.client(user) as c:
        path = f"/{service}/{method.name}"
        try:
            if method.server_streaming:
                call = c.channel.unary_stream(path, request_serializer=type(req).SerializeToString,
                                              response_deserializer=lambda b: b)(req, metadata=c.metadata, timeout=1.5)
                next(iter(call), None)
                call.cancel()
            else:
                c.channel.unary_unary(path, request_serializer=type(req).SerializeToString,
                                      response_deserializer=lambda b: b)(req, metadata=c.metadata, timeout=60)
        except grpc.RpcError as e:
            code = e.code()
            if method.server_streaming:  # a stream that answered nothing within the timeout ends so on our side
                assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (path, req, e.details())
                return
            assert code in _CLIENT_CODES, (path, req, code, e.details())
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                assert bad_request_fields(e), (path, req, e.details())


@pytest.mark.parametrize("body", [
    "\u00b2",  # superscript two: isdigit() is true, int() raises (the call ended UNKNOWN with a ValueError)
    "\u09ea",  # Bengali four, drawn like an 8: int() read it as 4 and served hub 4
    "\u0661\u0662", "\uff11\uff12", "1_2", "+12", "1 2", "12\n", "\u00a012",
    "00-DB-12-4F-0A-91-3C-\ufb00",  # the ff ligature upper-cases to 'FF'
])
def test_hub_names_outside_the_grammar_are_invalid_argument_naming_the_field(api, body):
    with api.client("operator") as op, api.client("is") as user:
        e = expect(grpc.StatusCode.INVALID_ARGUMENT, op.get_hub, f"hubs/{body}")
        assert bad_request_fields(e) == ["name"] and "ValueError" not in e.details()
        e = expect(grpc.StatusCode.INVALID_ARGUMENT, op.fleet.ListHubEvents,
                   fleet_pb2.ListHubEventsRequest(parent=f"hubs/{body}"), metadata=op.metadata)
        assert bad_request_fields(e) == ["parent"]
        e = expect(grpc.StatusCode.INVALID_ARGUMENT, user.dcc.SubmitServiceRequest, dcc_pb2.SubmitServiceRequestRequest(
            srv="4.1.1", target=f"hubs/{body}", request_id=uuid.uuid4().hex), metadata=user.metadata)
        assert bad_request_fields(e) == ["target"]


def test_every_spelling_of_a_device_id_names_the_same_hub(api):
    """Upper or lower-case hex, '-' or ':' or no separator, any device behind the hub: one hub,
    whose name is always given back in the canonical form (upper case, '-')."""
    dev = api.hub["device_id"]
    raw = dev.replace("-", "")
    with api.client("operator") as op:
        for spelling in (dev, dev.lower(), dev.replace("-", ":"), raw, raw.lower(), f"hubs/{dev.lower()}",
                         f"  hubs/{dev}\t", str(api.hub["hub"]), f"hubs/{api.hub['hub']}"):
            hub = op.get_hub(spelling if spelling.strip().startswith("hubs/") else f"hubs/{spelling.strip()}")
            assert (hub.index, hub.name) == (api.hub["hub"], f"hubs/{dev}")
        esme = next(m["device_id"] for m in api.hub["meters"] if m["type"] == "ESME")
        assert op.get_hub(f"hubs/{esme}").index == api.hub["hub"]
        e = expect(grpc.StatusCode.INVALID_ARGUMENT, op.get_hub, f"hubs/{dev[:5]}:{dev[6:]}")  # mixed separators
        assert bad_request_fields(e) == ["name"]


_ASCII_HUB = re.compile(r"(?:hubs/)?(?:[0-9]{1,12}|[0-9A-Fa-f]{2}([-:]?)[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){6})", re.ASCII)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(_DIGITS, _SHORT, st.text(alphabet="0123456789abcdefABCDEF-:\u00b2\u0661\uff11\ufb00\u00a0",
                                               max_size=24)))
def test_get_hub_serves_only_names_in_the_grammar(api, body):
    """A GetHub answers OK only for a name in the hub grammar (ASCII index or EUI-64), and then the
    hub that name spells; anything else is INVALID_ARGUMENT naming `name`, or NOT_FOUND."""
    name = f"hubs/{body}"
    with api.client("operator") as op:
        try:
            hub = op.get_hub(name)
        except grpc.RpcError as e:
            # A name in the grammar that names no hub is NOT_FOUND; any other name is INVALID_ARGUMENT.
            spelled = _ASCII_HUB.fullmatch(name.strip(" \t"))
            want = grpc.StatusCode.NOT_FOUND if spelled else grpc.StatusCode.INVALID_ARGUMENT
            assert e.code() == want, (name, e.code(), e.details())
            assert bad_request_fields(e) == ["name"]
            return
    assert _ASCII_HUB.fullmatch(name.strip(" \t")), name
    if re.fullmatch(r"[0-9]{1,12}", body, re.ASCII):
        assert hub.index == int(body)
