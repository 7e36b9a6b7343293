"""The model's typed operation contracts: states and controls as enums mirrored by the API's, one
progress record per operation kind mirrored field for field by its message, each built by its
kind from the merged counters, and fractions that stay in 0..1."""

from __future__ import annotations

import dataclasses
import json

from hypothesis import given
from hypothesis import strategies as st

from twin.engine.operations import operation_view
from twin.generated.fleet.v1 import fleet_pb2
from twin.model.config import FleetConfig
from twin.model.fleet import LocalFleet
from twin.model.ops.progress import (
    PROGRESS_TYPES,
    ChurnCampaignProgress,
    FieldProgrammeProgress,
    FirmwareRolloutProgress,
    OperationAction,
    OperationState,
    ServiceRequestProgress,
    SupplierFailureProgress,
)
from twin.model.ops.registry import IMPLEMENTATIONS
from twin.services.convert import operation_metadata

CFG = FleetConfig(hubs=4000, seed=5, block_size=512)


def test_states_and_actions_mirror_the_api_enums_and_keep_their_journal_strings():
    assert [f"OPERATION_STATE_{s.name}" for s in OperationState] == fleet_pb2.OperationState.keys()[1:]
    assert [f"OPERATION_ACTION_{a.name}" for a in OperationAction] == fleet_pb2.OperationAction.keys()[1:]
    assert all(s.value == s.name for s in OperationState)  # journals, reports and golden runs read the same
    assert json.dumps([OperationState.HALTED, OperationAction.PAUSE]) == '["HALTED", "pause"]'
    assert {s for s in OperationState if s.done} == {OperationState.DONE, OperationState.CANCELLED,
                                                     OperationState.HALTED, OperationState.FAILED}


def _fields_match(record_type: type, message: type) -> None:
    names = [f.name for f in dataclasses.fields(record_type)]
    desc = message.DESCRIPTOR
    assert names == [f.name for f in desc.fields], record_type
    hints = {f.name: f.default for f in dataclasses.fields(record_type)}
    for f in desc.fields:
        if f.message_type is not None:
            nested = hints[f.name]
            inner = type(nested[0]) if isinstance(nested, tuple) and nested else type(nested)
            if dataclasses.is_dataclass(inner):
                _fields_match(inner, getattr(fleet_pb2, f.message_type.name))


def test_every_operation_kind_has_its_progress_record_mirrored_by_its_message():
    oneof = fleet_pb2.OperationMetadata.DESCRIPTOR.oneofs_by_name["progress"]
    assert set(PROGRESS_TYPES) == set(IMPLEMENTATIONS)
    assert [f.name for f in oneof.fields] == [*PROGRESS_TYPES, "branch_creation"]
    for kind, record_type in PROGRESS_TYPES.items():
        message = getattr(fleet_pb2, fleet_pb2.OperationMetadata.DESCRIPTOR.fields_by_name[kind].message_type.name)
        _fields_match(record_type, message)
    _fields_match(FirmwareRolloutProgress, fleet_pb2.FirmwareRolloutProgress)
    wave = fleet_pb2.FirmwareRolloutProgress.DESCRIPTOR.fields_by_name["waves"].message_type
    assert [f.name for f in wave.fields] == ["index", "share", "devices", "finished", "passed", "failed"]


counts = st.integers(min_value=0, max_value=10**8)


@given(targeted=counts, activated=counts, failed=counts, bricked=counts, state=st.sampled_from(list(OperationState)))
def test_a_rollouts_fraction_is_its_finished_devices_share_and_one_when_done(targeted, activated, failed, bricked,
                                                                               state):
    p = FirmwareRolloutProgress(targeted=targeted, activated=activated, failed=failed, bricked=bricked)
    f = p.fraction(state)
    assert 0.0 <= f <= 1.0
    if state == OperationState.DONE:
        assert f == 1.0
    elif targeted:
        assert f == min(1.0, (activated + failed + bricked) / targeted)
    else:
        assert f == 0.0


@given(done=counts, eligible=counts, moved=counts, customers=counts, switches=counts, planned=counts)
def test_each_kinds_fraction_stays_in_0_1(done, eligible, moved, customers, switches, planned):
    running = OperationState.RUNNING
    assert 0.0 <= FieldProgrammeProgress(done=done, eligible=eligible).fraction(running) <= 1.0
    assert 0.0 <= SupplierFailureProgress(customers=customers, moved=moved).fraction(running) <= 1.0
    assert 0.0 <= ChurnCampaignProgress(switches=switches, planned=planned).fraction(running) <= 1.0
    if done + eligible:
        assert FieldProgrammeProgress(done=done, eligible=eligible).fraction(running) == done / (done + eligible)


def test_a_service_requests_result_is_what_the_device_gave():
    assert ServiceRequestProgress(applied=1, credit_pence=1234, tariff_dp=2).result() == {
        "applied": 1, "failed": 0, "pending": 0, "credit_pence": 1234, "tariff_dp": 2}
    assert ServiceRequestProgress(failed=1, refusal="not_prepayment").result() == {
        "applied": 0, "failed": 1, "pending": 0, "not_prepayment": 1}


def test_a_rollout_says_its_progress_from_its_counters_and_the_api_carries_it_unchanged():
    f = LocalFleet(CFG)
    f.submit({"type": "firmware_rollout", "device": "ESME", "manufacturer": "EDMI", "model": "ES-10A",
              "target_version": "9.0.0", "waves": [0.25, 1.0], "concurrency_per_csp": 20})
    f.run(14)
    op = next(iter(f.planner.ops.values()))
    p = op.progress()
    c = op.counters
    assert isinstance(p, FirmwareRolloutProgress) and p.targeted == c["targeted"] > 0
    assert (p.waiting, p.transferring, p.activating, p.activated) == (c["waiting"], c["transferring"],
                                                                      c["activating"], c["activated"])
    assert [(w.devices, w.finished, w.passed, w.failed) for w in p.waves] == [
        (c[f"wave{w}_total"], c[f"wave{w}_finished"], c[f"wave{w}_passed"], c[f"wave{w}_failed"]) for w in (0, 1)]
    assert sum(w.devices for w in p.waves) == p.targeted
    md = operation_metadata(operation_view(op, CFG))
    assert md.state == fleet_pb2.OPERATION_STATE_RUNNING and md.WhichOneof("progress") == "firmware_rollout"
    assert md.firmware_rollout.targeted == p.targeted and md.firmware_rollout.waves[1].devices == p.waves[1].devices
    assert md.firmware_rollout.in_flight.central == p.in_flight.central
    # Its history says the same record at each earlier tick (what a run report plots).
    _, counters = op.history[0]
    assert op.progress(counters).targeted == counters["targeted"]
