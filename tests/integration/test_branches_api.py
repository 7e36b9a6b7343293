"""Rewind and branches through the gRPC API: CreateBranch as an Operation, Get/List, CompareBranches,
RewindClock; bad input names the field and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from google.longrunning import operations_pb2

from tests.integration.conftest import run_dir
from twin.client import TwinClient
from twin.engine.supervisor import FleetSupervisor
from twin.generated.fleet.v1 import fleet_pb2
from twin.model.config import FleetConfig
from twin.reporting.compare import comparison_page
from twin.services.errors import bad_request_fields
from twin.services.identity import UserStore
from twin.services.server import ApiServer

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Not the session's shared stack: a rewind moves the clock back, and the branches need
    checkpoints every 12 ticks."""
    sup = FleetSupervisor(FleetConfig(hubs=20_000, seed=41, block_size=1024), shards=2, run_dir=run_dir("branch-api"),
                          checkpoint_every=12)
    users = UserStore()
    _, token, _ = users.issue_user("operator", "OPERATOR", 0, keys_dir=tmp_path_factory.mktemp("keys"))
    server = ApiServer(sup, users, port=0, write_comparison=comparison_page)  # as `twin up` serves it
    server.start()
    client = TwinClient(server.address, token=token)
    try:
        yield sup, client
    finally:
        client.channel.close()
        server.stop(1.0)
        sup.shutdown()


def _fields(call) -> tuple[grpc.StatusCode, list[str]]:
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code(), bad_request_fields(e.value)


def test_branches_and_rewind_through_the_api(served):
    sup, c = served
    kw = {"metadata": c.metadata, "timeout": 60}
    c.step(30)
    outage = fleet_pb2.CreateEventRequest(at="1h", power_outage=fleet_pb2.PowerOutage(area="Yorkshire",
                                                                                      duration_min=60))
    req = fleet_pb2.CreateBranchRequest(branch_id="storm", branch=fleet_pb2.Branch(fork_tick=20), events=[outage],
                                        until_tick=30)
    op = c.fleet.CreateBranch(req, **kw)
    assert op.name == "operations/create-branch-storm"
    done = c.wait_operation(op.name, timeout_s=120)
    assert done.done and not done.HasField("error"), done.error
    branch = fleet_pb2.Branch()
    done.response.Unpack(branch)
    md = TwinClient.progress(done)
    assert (md.kind, md.state, md.percent_done) == ("branch_creation", fleet_pb2.OPERATION_STATE_DONE, 100.0)
    assert md.branch_creation.branch == "branches/storm" and md.branch_creation.tick == 30 and not md.allowed_actions
    # One store: the branch's Operation is listed (and filtered) with the fleet's.
    listed_ops = c.operations.ListOperations(operations_pb2.ListOperationsRequest(filter="kind=branch_creation"), **kw)
    assert [o.name for o in listed_ops.operations] == [op.name]
    assert branch.name == "branches/storm" and branch.fork_tick == 20 and branch.head_tick == 30
    assert branch.parent == "" and len(branch.added_events_json) == 1

    listed = c.fleet.ListBranches(fleet_pb2.ListBranchesRequest(), **kw)
    assert [b.name for b in listed.branches] == ["branches/storm"]
    assert c.fleet.GetBranch(fleet_pb2.GetBranchRequest(name="branches/storm"), **kw).fork_tick == 20
    cmp = c.fleet.CompareBranches(fleet_pb2.CompareBranchesRequest(name="branches/storm"), **kw)
    assert not cmp.identical and cmp.divergence_tick == 22  # the outage, an hour after the fork
    assert cmp.first_common_tick == 0 and cmp.last_common_tick == 29
    page = Path(cmp.report_path)  # the offline page, beside its JSON, in the branch's directory
    assert page.name == "comparison.html" and page.read_text().startswith("<!DOCTYPE html>")
    assert json.loads((page.parent / "comparison.json").read_text())["divergence_tick"] == 22
    alerts = next(f for f in cmp.figures if f.figure == "alerts")
    assert alerts.difference == alerts.value - alerts.other_value > 0

    # Bad requests name the field and create nothing.
    bad = [
        (fleet_pb2.CreateBranchRequest(branch_id="Bad_Id", branch=fleet_pb2.Branch(fork_tick=5), until_tick=9),
         "branch_id"),
        (fleet_pb2.CreateBranchRequest(branch_id="back", branch=fleet_pb2.Branch(fork_tick=10), until_tick=5),
         "until_tick"),
        (fleet_pb2.CreateBranchRequest(branch_id="nowhere", branch=fleet_pb2.Branch(fork_tick=10), until_tick=12, events=[
            fleet_pb2.CreateEventRequest(power_outage=fleet_pb2.PowerOutage(area="Atlantis", duration_min=5))]),
         "events[0].area"),
        (fleet_pb2.CreateBranchRequest(branch_id="gone", branch=fleet_pb2.Branch(fork_tick=10, dropped=["x-1"]),
                                       until_tick=12), "branch.dropped"),
    ]
    for request, field in bad:
        code, fields = _fields(lambda r=request: c.fleet.CreateBranch(r, **kw))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and fields == [field], (field, fields)
    code, fields = _fields(lambda: c.fleet.CreateBranch(fleet_pb2.CreateBranchRequest(
        branch_id="late", branch=fleet_pb2.Branch(fork_tick=999), until_tick=999), **kw))
    assert code == grpc.StatusCode.OUT_OF_RANGE and fields == ["branch.fork_tick"]  # not reached yet (AIP-193)
    assert len(c.fleet.ListBranches(fleet_pb2.ListBranchesRequest(), **kw).branches) == 1
    code, _ = _fields(lambda: c.fleet.GetBranch(fleet_pb2.GetBranchRequest(name="branches/nope"), **kw))
    assert code == grpc.StatusCode.NOT_FOUND

    before = sup.state_hash()
    clock = c.fleet.RewindClock(fleet_pb2.RewindClockRequest(tick=10), **kw)
    assert clock.tick == 10
    with pytest.raises(grpc.RpcError) as e:
        c.create_event(power_outage=fleet_pb2.PowerOutage(area="Yorkshire", duration_min=30))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    code, fields = _fields(lambda: c.fleet.RewindClock(fleet_pb2.RewindClockRequest(tick=999), **kw))
    assert code == grpc.StatusCode.OUT_OF_RANGE and fields == ["tick"]  # not reached yet (AIP-193)
    c.step(20)
    assert sup.state_hash() == before
