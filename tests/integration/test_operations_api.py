"""Operations over the API as typed contracts (AIP-151): a rollout's typed progress is the model's
counts at a tick, WatchFleet carries each operation's change at the tick it happened, and the one
operations store lists fleet and branch operations alike."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import pytest
from google.longrunning import operations_pb2

from tests.integration.conftest import run_dir
from twin.client import TwinClient
from twin.engine.supervisor import FleetSupervisor
from twin.generated.fleet.v1 import fleet_pb2
from twin.model.config import FleetConfig
from twin.model.ops.progress import OperationState
from twin.model.ops.rollout import CSP_KEYS
from twin.services.anomaly import AnomalyDetector
from twin.services.identity import UserStore
from twin.services.server import ApiServer

pytestmark = pytest.mark.usefixtures("ray_session")


class Served:
    """A 20k-hub fleet on two shards behind an API server, its clock stepped by the test."""

    def __init__(self, tmp: Path):
        self.sup = FleetSupervisor(FleetConfig(hubs=20_000, seed=23, block_size=1024), shards=2,
                                   run_dir=run_dir("operations-api"), cpus_per_shard=0.5)
        self.sup.step(1)
        self.users = UserStore()
        _, self.token, _ = self.users.issue_user("operator", "OPERATOR", 0, keys_dir=tmp / "keys")
        self.server = ApiServer(self.sup, self.users, port=0, anomaly=AnomalyDetector(default_threshold=100_000))
        self.server.start()

    def client(self) -> TwinClient:
        return TwinClient(self.server.address, token=self.token, user_id="operator")

    def close(self) -> None:
        self.server.stop(1.0)
        self.sup.shutdown()


@pytest.fixture
def served(tmp_path):
    s = Served(tmp_path)
    yield s
    s.close()


def _rollout() -> fleet_pb2.FirmwareRollout:
    return fleet_pb2.FirmwareRollout(device="ESME", manufacturer="EDMI", model="ES-10A", target_version="9.1.0",
                                     waves=[0.2, 1.0], concurrency_per_csp=30)


def test_a_rollouts_typed_progress_over_the_api_is_the_models_count_at_the_tick(served):
    with served.client() as c:
        name = c.create_event(firmware_rollout=_rollout()).name
        served.sup.step(12)  # started, budgets issued (LAG 4), images moving
        op = c.get_operation(name)
    md = TwinClient.progress(op)
    assert md.WhichOneof("progress") == "firmware_rollout" and md.kind == "firmware_rollout"
    p = md.firmware_rollout
    model = served.sup.planner.ops[name.removeprefix("operations/")]
    counts = model.counters  # the shards' merged report of the last tick, as the planner holds it
    assert md.state == fleet_pb2.OPERATION_STATE_RUNNING and model.state == OperationState.RUNNING
    assert p.targeted == counts["targeted"] > 0
    for stage in ("waiting", "transferring", "activating", "activated", "failed", "bricked", "cancelled"):
        assert getattr(p, stage) == counts[stage], stage
    assert p.waiting + p.transferring + p.activating + p.activated + p.failed + p.bricked + p.cancelled == p.targeted
    assert p.transferring + p.activating + p.activated > 0  # under way: the comparison is not of zeros
    assert [w.devices for w in p.waves] == [counts["wave0_total"], counts["wave1_total"]]
    assert [w.passed for w in p.waves] == [counts["wave0_passed"], counts["wave1_passed"]]
    assert [w.share for w in p.waves] == [0.2, 1.0]
    assert [getattr(p.in_flight, k) for k in CSP_KEYS] == [counts[f"inflight_{k}"] for k in CSP_KEYS]
    assert p.current_wave == model.current_wave and p.target_version == "9.1.0"
    assert md.percent_done == pytest.approx(100.0 * (p.activated + p.failed + p.bricked) / p.targeted)
    assert list(md.allowed_actions) == [fleet_pb2.OPERATION_ACTION_PAUSE, fleet_pb2.OPERATION_ACTION_CANCEL]

    # Paused: the state and the controls it allows change at once, typed.
    with served.client() as c:
        paused = TwinClient.progress(c.fleet.PauseOperation(fleet_pb2.PauseOperationRequest(name=name),
                                                            metadata=c.metadata))
    assert paused.state == fleet_pb2.OPERATION_STATE_PAUSED
    assert list(paused.allowed_actions) == [fleet_pb2.OPERATION_ACTION_RESUME, fleet_pb2.OPERATION_ACTION_CANCEL]


def _watch(c: TwinClient, after: int, into: list, until_tick: int) -> threading.Thread:
    def run() -> None:
        for s in c.watch_fleet(start_after_tick=after):
            into.append(s)
            if s.tick >= until_tick:
                return

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_watch_fleet_carries_an_operations_change_at_the_tick_it_happened(served):
    sup = served.sup
    with served.client() as c:
        accepted_at = sup.tick  # the next tick to run: the first the planner observes it in
        op = c.create_event(at="1h", power_outage=fleet_pb2.PowerOutage(area="12", duration_min=60))
        md = TwinClient.progress(op)
        start, end = md.start_tick, md.power_outage.end_tick
        assert md.state == fleet_pb2.OPERATION_STATE_PENDING and start == accepted_at + 2 and end == start + 3
        got: list[fleet_pb2.TickSummary] = []
        reader = _watch(c, accepted_at - 1, got, end + 2)
        sup.step(end + 3 - accepted_at)
        reader.join(timeout=60)
    assert not reader.is_alive() and [s.tick for s in got] == list(range(accepted_at, end + 3))
    seen = {}
    for s in got:
        for o in s.operations:
            if o.name == op.name:
                seen[s.tick] = TwinClient.progress(o)
    # Accepted (pending), started, a third of its hour run each tick, restored: each change at the
    # tick it happened, and nothing after the end.
    R, P, D = fleet_pb2.OPERATION_STATE_RUNNING, fleet_pb2.OPERATION_STATE_PENDING, fleet_pb2.OPERATION_STATE_DONE
    assert {t: (m.state, round(m.percent_done, 1)) for t, m in seen.items()} == {
        accepted_at: (P, 0.0), start: (R, 0.0), start + 1: (R, 33.3), start + 2: (R, 66.7), end: (D, 100.0)}
    assert seen[start].power_outage.premises_cut == sup.operation(op.name)["metadata"]["progress"].premises_cut > 0


def test_watch_fleet_latest_mode_carries_the_changes_of_the_ticks_it_skipped(served):
    sup = served.sup
    with served.client() as c:
        first = sup.tick
        op = c.create_event(power_outage=fleet_pb2.PowerOutage(area="12", duration_min=30))
        sup.step(6)  # accepted, started and restored in ticks the next latest message skips
        stream = c.watch_fleet(start_after_tick=first - 1, latest=True)
        msg = next(stream)
        stream.cancel()
    assert msg.tick == first + 5 and msg.skipped_ticks == 5
    carried = [TwinClient.progress(o) for o in msg.operations if o.name == op.name]
    assert [m.state for m in carried] == [fleet_pb2.OPERATION_STATE_DONE]


def test_list_operations_reads_one_store_and_filters_by_typed_state(served):
    with served.client() as c:
        a = c.create_event(firmware_rollout=_rollout()).name
        b = c.create_event(at="1d", power_outage=fleet_pb2.PowerOutage(area="12", duration_min=30)).name
        served.sup.step(2)
        c.operations.CancelOperation(operations_pb2.CancelOperationRequest(name=b), metadata=c.metadata)
        names = []
        token = ""
        while True:  # a page at a time: the two-part position carries across pages
            page = c.operations.ListOperations(operations_pb2.ListOperationsRequest(page_size=1, page_token=token),
                                               metadata=c.metadata)
            names += [o.name for o in page.operations]
            token = page.next_page_token
            if not token:
                break
        cancelled = c.operations.ListOperations(operations_pb2.ListOperationsRequest(filter="state=cancelled"),
                                                metadata=c.metadata)
        with pytest.raises(grpc.RpcError) as e:
            c.operations.GetOperation(operations_pb2.GetOperationRequest(name="operations/create-branch-none"),
                                      metadata=c.metadata)
    assert names == [a, b]
    assert [o.name for o in cancelled.operations] == [b]
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
