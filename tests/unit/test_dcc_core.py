"""The DCC's logic (twin.services.dcc) without gRPC: Service Requests checked, routed, answered,
deferred and quarantined against the real in-process fleet model."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.engine.latency import LatencyTable
from twin.engine.operations import operation_view
from twin.model.catalog import Csp, MessageType, WanTech
from twin.model.config import FleetConfig
from twin.model.fleet import LocalFleet
from twin.model.params import CapacityParams, ModelParams
from twin.model.readings import read, register_facts, service_facts
from twin.services.anomaly import AnomalyDetector
from twin.services.dcc import (
    Code,
    DccCore,
    DccError,
    PositionAhead,
    PositionExpired,
    ResponseStatus,
    ServiceRequest,
    ServiceResponse,
)
from twin.services.dcc.requests import MAX_DEADLINE_S, MAX_PARAMETERS_BYTES
from twin.services.dcc.responses import ResponseLog
from twin.services.identity import Identity


class LocalEngine:
    """The engine members the DCC uses (twin.services.dcc.DccEngine), over the in-process model:
    what the supervisor does over its shards, done over LocalFleet's one state."""

    clock_state = "paused"

    def __init__(self, fleet: LocalFleet):
        self.fleet = fleet
        self.config = fleet.config
        self.state = fleet.states[0]
        self.versions = fleet.ops[0].versions

    @property
    def tick(self) -> int:
        return self.fleet.tick

    def submit(self, event: dict[str, Any], *, request: Any = None) -> dict[str, Any]:
        op = self.fleet.submit(event)
        assert op is not None
        return operation_view(op, self.config)

    def operation(self, name: str) -> dict[str, Any]:
        return operation_view(self.fleet.planner.ops[name.removeprefix("operations/")], self.config)

    def operations_page(self, keep: Callable[[Any], bool] | None, start: int,
                        limit: int) -> tuple[list[dict[str, Any]], int]:
        ops = [op for op in itertools.islice(self.fleet.planner.ops.values(), start, None) if keep is None or keep(op)]
        return [operation_view(op, self.config) for op in ops[:limit]], 0

    def read(self, hub: int, srv: str, fuel: str) -> dict[str, Any]:
        return read(self.state, self.config, hub, srv, fuel, self.state.last_tick)

    def latency_table(self) -> LatencyTable | None:
        """What the engine's operations store keeps after each tick (twin.engine.operations)."""
        cap = self.config.params.capacity
        planner = self.fleet.planner
        return LatencyTable.of(planner.queues, cap, planner.observed) if cap.enabled else None

    # One state, so one "shard", whose columns this process reads itself (as the API reads the
    # shards' shared memory): the bulk path's facts.
    shards = ()

    def shard_of(self, hub: int) -> int:
        return 0

    @property
    def local_reads(self) -> LocalEngine:
        return self

    def register_facts(self, shard: int, hubs: Any, fuel: str) -> dict[str, Any]:
        tick = self.state.last_tick
        return register_facts(self.state, self.config, self.fleet.network.up_by_area(max(tick, 0)),
                              hubs - self.state.offset, tick, fuel)

    async def call(self, hub: int, srv: str, fuel: str, record: bool) -> dict[str, Any]:
        """The shards' service facts (the DCC's facts source)."""
        tick = self.state.last_tick
        return service_facts(self.state, self.config, self.fleet.network.up_by_area(max(tick, 0)), hub, tick, srv,
                             fuel, record, versions=self.versions)


def _digest(request: ServiceRequest) -> str:
    return repr((request.srv, request.target, sorted((request.parameters or {}).items())))


@pytest.fixture()
def dcc() -> tuple[DccCore, LocalEngine]:
    fleet = LocalFleet(FleetConfig(hubs=4096, seed=11, block_size=1024))
    fleet.run(2)
    engine = LocalEngine(fleet)
    users = [SUPPLIER(engine, 0), Identity("london-ed", "ED", 12)]
    core = DccCore(engine, users=lambda: users, digest=_digest, facts=engine,
                   anomaly=AnomalyDetector(thresholds={"4.8.1": 1}))
    return core, engine


def SUPPLIER(engine: LocalEngine, hub: int) -> Identity:
    """The import supplier of `hub`, as an IS user."""
    return Identity("supplier-is", "IS", int(engine.state.cols["supplier"][hub]))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def refused(coro: Any) -> DccError:
    with pytest.raises(DccError) as e:
        run(coro)
    return e.value


def _reachable_hub(engine: LocalEngine, *, reachable: bool = True) -> int:
    for hub in range(engine.config.hubs):
        facts = run(engine.call(hub, "4.1.1", "elec", False))
        if facts["hub"]["reachable"] == reachable and "result" in facts:
            return hub
    raise AssertionError("no such hub")


def test_a_read_is_answered_at_once_from_the_tick_it_describes(dcc):
    core, engine = dcc
    hub = _reachable_hub(engine)
    resp = run(core.submit(SUPPLIER(engine, hub), ServiceRequest("4.1.1", f"hubs/{hub}", "r-1")))
    assert resp.status is ResponseStatus.COMPLETED
    assert resp.result == engine.read(hub, "4.1.1", "elec")
    assert resp.time == engine.config.time_of(engine.state.last_tick + 1)
    assert resp.csp == run(engine.call(hub, "4.1.1", "elec", False))["hub"]["region"]
    assert (resp.request_id, resp.srv, resp.target, resp.position) == ("r-1", "4.1.1", f"hubs/{hub}", 0)


def test_a_retry_gets_the_first_answer_and_a_reused_id_is_refused(dcc):
    core, engine = dcc
    hub = _reachable_hub(engine)
    user = SUPPLIER(engine, hub)
    first = run(core.submit(user, ServiceRequest("4.1.1", f"hubs/{hub}", "r-1")))
    engine.fleet.run(1)  # the reading would differ now: a retry must not read again
    assert run(core.submit(user, ServiceRequest("4.1.1", f"hubs/{hub}", "r-1"))) == first
    e = refused(core.submit(user, ServiceRequest("4.6.1", f"hubs/{hub}", "r-1")))
    assert (e.code, e.field) == (Code.ALREADY_EXISTS, "request_id")


@pytest.mark.parametrize(("who", "srv", "code", "field"), [
    ("ed", "7.1", Code.PERMISSION_DENIED, "srv"),  # a network operator may not change supply
    ("other-supplier", "4.1.1", Code.PERMISSION_DENIED, "target"),
    ("supplier", "4.99", Code.INVALID_ARGUMENT, "srv"),
    ("supplier", "1.6", Code.UNIMPLEMENTED, "srv"),
])
def test_refusals_name_the_field_and_apply_nothing(dcc, who, srv, code, field):
    core, engine = dcc
    hub = _reachable_hub(engine)
    own = SUPPLIER(engine, hub)
    user = {"ed": Identity("london-ed", "ED", 12), "supplier": own,
            "other-supplier": Identity("other-is", "IS", own.party_id % 20 + 1)}[who]
    ops_before = len(engine.fleet.planner.ops)
    e = refused(core.submit(user, ServiceRequest(srv, f"hubs/{hub}", "r-1")))
    assert (e.code, e.field) == (code, field)
    assert len(engine.fleet.planner.ops) == ops_before and core.pending == []
    # Its id is free again: the same id with a good request is accepted.
    assert run(core.submit(own, ServiceRequest("4.1.1", f"hubs/{hub}", "r-1"))).status is ResponseStatus.COMPLETED


def test_a_target_outside_the_fleet_and_oversized_parameters_are_refused(dcc):
    core, engine = dcc
    user = SUPPLIER(engine, 0)
    e = refused(core.submit(user, ServiceRequest("4.1.1", "hubs/999999", "r-1")))
    assert (e.code, e.field) == (Code.NOT_FOUND, "target")
    e = refused(core.submit(user, ServiceRequest("4.1.1", "hubs/0", "r-2", parameters_bytes=MAX_PARAMETERS_BYTES + 1)))
    assert (e.code, e.field) == (Code.INVALID_ARGUMENT, "parameters")


def test_a_device_change_is_acknowledged_and_its_response_follows_on_the_users_log(dcc):
    core, engine = dcc
    hub = _reachable_hub(engine)
    user = SUPPLIER(engine, hub)
    ack = run(core.submit(user, ServiceRequest("8.14.1", f"hubs/{hub}", "change-1")))
    assert ack.status is ResponseStatus.ACKNOWLEDGED and ack.operation.startswith("operations/")
    log = core.responses.of(user.user_id)
    assert log.last == 0

    async def tick_and_settle() -> None:
        engine.fleet.run(1)
        core.on_tick(engine.tick - 1)
        while core.pending:
            await asyncio.sleep(0.01)

    run(tick_and_settle())
    assert log.last == 1
    _, settled = log.items[0]
    assert (settled.status, settled.operation, settled.position) == (ResponseStatus.COMPLETED, ack.operation, 1)
    assert settled.request_id == "change-1"


def test_a_read_of_a_dark_hub_is_deferred_then_answered_when_it_is_back(dcc):
    core, engine = dcc
    hub = _reachable_hub(engine)
    area = run(engine.call(hub, "4.1.1", "elec", False))["hub"]["area_id"]
    engine.fleet.submit({"type": "power_outage", "area": str(area), "duration_min": 40})
    engine.fleet.run(1)
    assert not run(engine.call(hub, "4.1.1", "elec", False))["hub"]["reachable"]
    user = SUPPLIER(engine, hub)
    ack = run(core.submit(user, ServiceRequest("4.1.1", f"hubs/{hub}", "dark-1")))
    assert ack.status is ResponseStatus.ACKNOWLEDGED and len(core.pending) == 1

    async def settle_until_answered() -> None:
        for _ in range(6):
            engine.fleet.run(1)
            core.on_tick(engine.tick - 1)
            while core._settling:
                await asyncio.sleep(0.01)
            if not core.pending:
                return

    run(settle_until_answered())
    log = core.responses.of(user.user_id)
    assert log.last == 1 and log.items[0][1].status is ResponseStatus.COMPLETED
    assert log.items[0][1].result == engine.read(hub, "4.1.1", "elec")  # read at the tick it came back


def test_quarantine_holds_the_excess_and_release_processes_it_as_its_sender(dcc):
    core, engine = dcc
    hub = _reachable_hub(engine)
    user = SUPPLIER(engine, hub)
    run(core.submit(user, ServiceRequest("4.8.1", f"hubs/{hub}", "q-1")))
    e = refused(core.submit(user, ServiceRequest("4.8.1", f"hubs/{hub}", "q-2")))
    assert e.code is Code.RESOURCE_EXHAUSTED and e.quota.startswith("q-")
    # Its retry is answered as held, naming the same entry; nothing is processed.
    again = refused(core.submit(user, ServiceRequest("4.8.1", f"hubs/{hub}", "q-2")))
    assert (again.code, again.quota) == (Code.RESOURCE_EXHAUSTED, e.quota)
    [entry] = core.quarantined(Identity("operator", "OPERATOR", 0), "", 0, 10)
    assert entry.id == e.quota and entry.request["request_id"] == "q-2"
    # A DCC User sees its own entries only.
    assert core.quarantined(user, "", 0, 10) == [entry]
    with pytest.raises(DccError) as denied:
        core.quarantined(Identity("x-is", "IS", 1), user.user_id, 0, 10)
    assert (denied.value.code, denied.value.field) == (Code.PERMISSION_DENIED, "user_id")
    released = run(core.release(entry.id))
    assert released.status is ResponseStatus.COMPLETED and released.request_id == "q-2"
    assert run(core.release(entry.id)) == released  # a retried release answers the same
    assert run(core.submit(user, ServiceRequest("4.8.1", f"hubs/{hub}", "q-2"))) == released
    e = refused(core.release("q-999999"))
    assert (e.code, e.field) == (Code.NOT_FOUND, "id")


def test_delete_frees_the_request_id(dcc):
    core, engine = dcc
    hub = _reachable_hub(engine)
    user = SUPPLIER(engine, hub)
    run(core.submit(user, ServiceRequest("4.8.1", f"hubs/{hub}", "q-1")))
    held = refused(core.submit(user, ServiceRequest("4.8.1", f"hubs/{hub}", "q-2")))
    assert core.delete(held.quota).request["request_id"] == "q-2"
    assert core.quarantined(user, "", 0, 10) == []
    with pytest.raises(DccError):
        core.delete(held.quota)
    # Freed: the id may be used for another request (the window still holds the first read).
    e = refused(core.submit(user, ServiceRequest("4.8.1", f"hubs/{hub}", "q-2")))
    assert e.code is Code.RESOURCE_EXHAUSTED and e.quota != held.quota


def test_the_credential_swap_is_sent_by_the_gaining_supplier():
    """SR 6.23 addresses premises the sender does not supply yet (policy.SRV_PREMISES)."""
    from twin.services import duis
    from twin.services.policy import authorise

    gaining = Identity("new-is", "IS", 7)
    authorise(gaining, duis.lookup("6.23"), fuel="electricity", hub_supplier=3, hub_gas_supplier=3, hub_area=12,
              has_gas=True)


_json = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
                     | st.integers(-2**53, 2**53) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                     max_leaves=8)


@settings(deadline=None, max_examples=200)
@given(result=st.dictionaries(st.text(max_size=8), _json, max_size=4), status=st.sampled_from(list(ResponseStatus)),
       seconds=st.integers(0, 10**9), micros=st.integers(0, 999_999), text=st.text(max_size=20),
       position=st.integers(0, 2**40))
def test_a_response_kept_for_retries_decodes_to_itself(result, status, seconds, micros, text, position):
    when = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=micros)
    r = ServiceResponse(request_id=text, srv="4.1.1", target="hubs/1", csp="North", status=status, time=when,
                        result=result, detail=text, operation=text, position=position)
    assert ServiceResponse.decode(r.encode()) == r


@settings(deadline=None)
@given(keep=st.integers(1, 20), produced=st.integers(0, 60), after=st.integers(-5, 70))
def test_a_response_log_resumes_exactly_within_what_it_keeps(keep, produced, after):
    log = ResponseLog(keep)
    for i in range(produced):
        r = ServiceResponse(request_id=str(i), srv="4.1.1", target="hubs/1", csp="North",
                            status=ResponseStatus.COMPLETED, time=datetime(2025, 1, 1, tzinfo=UTC))
        assert log.append(r).position == i + 1
    oldest = max(produced - keep, 0)  # the oldest position a stream may resume after
    if after < oldest:
        with pytest.raises(PositionExpired) as e:
            log.start(after)
        assert e.value.oldest == oldest
    elif after > produced:
        with pytest.raises(PositionAhead) as ahead:
            log.start(after)
        assert ahead.value.newest == produced
    else:
        assert log.start(after) == after
        assert [r.position for _, r in log.items if r.position > after] == list(range(after + 1, produced + 1))


def test_the_dcc_logic_imports_no_grpc_and_no_generated_code():
    """What the DUIS gateway calls must not drag in the gRPC front door."""
    import subprocess
    import sys

    code = ("import sys, twin.services.dcc; bad = sorted(m for m in sys.modules if m == 'grpc' or m.startswith("
            "('grpc.', 'twin.generated', 'google.protobuf', 'twin.services.dcc_servicer', 'twin.services.server'))); "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_collaborators_passed_in_are_used_even_when_empty(dcc):
    """An empty SignatureChecker or RequestLedger is falsy (len 0): the core must still use it."""
    from twin.engine.requests import RequestLedger
    from twin.services.signing import SignatureChecker

    _, engine = dcc
    signatures, ledger, anomaly = SignatureChecker(), RequestLedger(), AnomalyDetector()
    core = DccCore(engine, users=list, digest=_digest, facts=engine, signatures=signatures, ledger=ledger,
                   anomaly=anomaly)
    assert core.signatures is signatures and core.ledger is ledger and core.anomaly is anomaly


# -- response times: the capacity model's latency, the caller's deadline ---------------------------
SOUTH_LINKS = ("SOUTH/G2", "SOUTH/G3", "SOUTH/G4", "SOUTH/VWAN")


@pytest.fixture()
def congested() -> tuple[DccCore, LocalEngine]:
    """The South's links at 5% of their designed capacity (a tick's reads queue for about half an
    hour on 2G after one tick); the North and Central as designed."""
    cap = CapacityParams(link_capacity_factor={name: 0.05 for name in SOUTH_LINKS})
    fleet = LocalFleet(FleetConfig(hubs=4096, seed=11, block_size=1024, params=ModelParams(capacity=cap)))
    fleet.run(1)
    engine = LocalEngine(fleet)
    core = DccCore(engine, users=lambda: [], digest=_digest, facts=engine)
    return core, engine


def _hub_on(engine: LocalEngine, region: str, wans: tuple[WanTech, ...]) -> int:
    for hub in range(engine.config.hubs):
        facts = run(engine.call(hub, "4.1.1", "elec", False))
        rec = facts["hub"]
        if rec["region"] == region and rec["wan_code"] in wans and rec["reachable"] and "result" in facts:
            return hub
    raise AssertionError(f"no reachable {region} hub on {wans}")


def _table_seconds(engine: LocalEngine, hub: int) -> float:
    rec = run(engine.call(hub, "4.1.1", "elec", False))["hub"]
    table = engine.latency_table()
    assert table is not None
    return table.seconds(csp=int(Csp[rec["region"].upper()]), wan=rec["wan_code"], cell=rec["cell"],
                         message=MessageType.ON_DEMAND_READ)


def test_an_uncongested_read_answers_at_once_with_transfer_plus_device_time(congested):
    core, engine = congested
    cap = engine.config.params.capacity
    for region, wan in (("Central", WanTech.G3), ("Central", WanTech.G2), ("North", WanTech.LRR)):
        hub = _hub_on(engine, region, (wan,))
        resp = run(core.submit(SUPPLIER(engine, hub), ServiceRequest("4.1.1", f"hubs/{hub}", f"r-{region}-{wan.name}")))
        expected = cap.message_bytes["ON_DEMAND_READ"] / cap.wan_bytes_per_s[wan.name] + cap.device_time_s["ON_DEMAND"]
        assert resp.status is ResponseStatus.COMPLETED
        assert resp.latency_s == pytest.approx(expected, rel=1e-12), (region, wan)
        assert resp.result == engine.read(hub, "4.1.1", "elec")


def test_a_read_beyond_its_deadline_is_acknowledged_then_answered_when_the_clock_passes_it(congested):
    core, engine = congested
    hub = _hub_on(engine, "South", (WanTech.G2, WanTech.G3))
    user = SUPPLIER(engine, hub)
    latency = _table_seconds(engine, hub)
    target = engine.config.params.capacity.target_response_s["ON_DEMAND"]
    assert latency > target  # the South's queue: beyond the on-demand Target Response Time
    sent_at = engine.config.time_of(engine.tick)
    reading = engine.read(hub, "4.1.1", "elec")
    ack = run(core.submit(user, ServiceRequest("4.1.1", f"hubs/{hub}", "late-1")))
    assert (ack.status, ack.latency_s, ack.result) == (ResponseStatus.ACKNOWLEDGED, None, {})
    assert "StreamResponses" in ack.detail
    # A retry before it is answered gets the acknowledgement again, and nothing is queued twice.
    assert run(core.submit(user, ServiceRequest("4.1.1", f"hubs/{hub}", "late-1"))) == ack
    assert core.late.requests() == ["late-1"] and core.pending == []
    due = sent_at + timedelta(seconds=latency)
    log = core.responses.of(user.user_id)

    async def step_and_settle() -> None:
        engine.fleet.run(1)
        core.on_tick(engine.tick - 1)
        while core._settling:
            await asyncio.sleep(0.01)

    for _ in range(48):
        run(step_and_settle())
        if engine.config.time_of(engine.tick) < due:
            assert log.last == 0, "answered before the network did"
        else:
            break
    assert log.last == 1 and len(core.late) == 0
    _, late = log.items[0]
    assert (late.status, late.request_id, late.position) == (ResponseStatus.COMPLETED, "late-1", 1)
    assert late.latency_s == pytest.approx(latency, rel=1e-12) and late.latency_s > target
    assert late.time == due
    assert late.result == reading  # what the device answered when the request reached it
    # A retry now gets the answer the stream carried.
    assert run(core.submit(user, ServiceRequest("4.1.1", f"hubs/{hub}", "late-1"))) == late


def test_the_callers_deadline_decides_between_an_answer_and_an_acknowledgement(congested):
    core, engine = congested
    south = _hub_on(engine, "South", (WanTech.G2, WanTech.G3))
    latency = _table_seconds(engine, south)
    patient = run(core.submit(SUPPLIER(engine, south), ServiceRequest("4.1.1", f"hubs/{south}", "d-1",
                                                                      deadline_s=latency + 1)))
    assert patient.status is ResponseStatus.COMPLETED and patient.latency_s == pytest.approx(latency, rel=1e-12)
    central = _hub_on(engine, "Central", (WanTech.G3,))
    hasty = run(core.submit(SUPPLIER(engine, central), ServiceRequest("4.1.1", f"hubs/{central}", "d-2",
                                                                      deadline_s=0.0)))
    assert hasty.status is ResponseStatus.ACKNOWLEDGED and core.late.requests() == ["d-2"]  # 3 s of device time > 0 s


@settings(max_examples=40, deadline=None)
@given(deadline=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**12, 10**12)))
def test_a_response_deadline_outside_0_to_2_days_is_refused_naming_it(deadline):
    fleet = _SMALL_FLEET
    engine = LocalEngine(fleet)
    core = DccCore(engine, users=lambda: [], digest=_digest, facts=engine)
    hub = 0
    user = SUPPLIER(engine, hub)
    request = ServiceRequest("4.1.1", f"hubs/{hub}", f"dl-{deadline!r}", deadline_s=float(deadline))
    if 0 <= deadline <= MAX_DEADLINE_S:
        resp = run(core.submit(user, request))
        assert resp.status in (ResponseStatus.COMPLETED, ResponseStatus.ACKNOWLEDGED)
    else:
        e = refused(core.submit(user, request))
        assert (e.code, e.field) == (Code.INVALID_ARGUMENT, "response_deadline")
        assert len(core.late) == 0 and core.pending == []
        assert core.ledger.get(user.user_id, request.request_id).state == "failed"


_SMALL_FLEET = LocalFleet(FleetConfig(hubs=1024, seed=3, block_size=1024))
_SMALL_FLEET.run(1)


def test_late_answers_come_due_in_time_order_ties_by_arrival():
    from twin.services.dcc.responses import DueAnswers, Pending

    t0 = datetime(2026, 6, 1, tzinfo=UTC)
    due = DueAnswers()
    for rid, s in (("c", 90), ("a", 30), ("b", 30), ("d", 3600)):
        due.add(Pending("u", ServiceRequest("4.1.1", "hubs/1", rid), 1, "electricity", "South", -1,
                        due=t0 + timedelta(seconds=s), result={}, latency_s=float(s)))
    assert due.requests() == ["a", "b", "c", "d"]
    assert due.pop_due(t0 + timedelta(seconds=29)) == []
    assert [p.request.request_id for p in due.pop_due(t0 + timedelta(seconds=90))] == ["a", "b", "c"]
    assert len(due) == 1 and due.requests() == ["d"]
    with pytest.raises(ValueError):
        due.add(Pending("u", ServiceRequest("4.1.1", "hubs/1", "x"), 1, "electricity", "South", -1))


def _outcome(x: Any) -> Any:
    return (x.code, x.field) if isinstance(x, DccError) else x


_BULK_TARGETS = st.one_of(st.integers(0, 4095).map(lambda h: f"hubs/{h}"),
                          st.sampled_from(["hubs/4096", "hubs/", "hubs/\u00b2", "\U0001f4a5", "hubs/1 2"]))
_BULK_READS = st.tuples(st.sampled_from(["4.1.1", "4.1.1", "4.1.1", "4.6.1", "4.99"]), _BULK_TARGETS,
                        st.sampled_from([None, {"fuel": "gas"}, {"fuel": "water"}]),
                        st.sampled_from(["a", "b", "c", "d", "e", "f"]))


@settings(max_examples=40, deadline=None)
@given(drawn=st.lists(_BULK_READS, min_size=1, max_size=20), deadline=st.sampled_from([None, 0.0, 1e5]))
def test_a_batch_is_answered_as_the_same_requests_one_by_one(drawn, deadline):
    """Property: submit_many (register reads checked and read together) gives each request what
    submit gives it sent alone, in the same order: the same response or the same refusal (code
    and field); repeated ids in the batch are retries or reuses exactly as sent one after another."""
    fleet = LocalFleet(FleetConfig(hubs=4096, seed=11, block_size=1024))
    fleet.run(2)
    engine = LocalEngine(fleet)
    user = SUPPLIER(engine, 0)
    requests = [ServiceRequest(srv, target, rid, parameters=params, deadline_s=deadline)
                for srv, target, params, rid in drawn]

    def core() -> DccCore:
        return DccCore(engine, users=lambda: [user], digest=_digest, facts=engine, anomaly=AnomalyDetector())

    bulk = run(core().submit_many(user, requests))
    one = core()
    alone = []
    for r in requests:
        try:
            alone.append(run(one.submit(user, r)))
        except DccError as e:
            alone.append(e)
    assert [_outcome(b) for b in bulk] == [_outcome(a) for a in alone]
