"""The operation runtime as checkpoint data (twin.model.records): a shard's `ShardOps` and the
fleet's `FleetPlanner` with the controls already sent for later ticks. No pickled instances:
every class that may appear is named in RECORD_TYPES, and a file of another format version is
refused. Bump a version when a recorded class's fields change meaning."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from twin.model import catalog
from twin.model.capacity import AlertStorm, NetworkQueues
from twin.model.catalog import VersionTable
from twin.model.config import FleetConfig
from twin.model.network import NetworkPlan
from twin.model.ops.commands import COMMANDS
from twin.model.ops.common import CredentialSwaps
from twin.model.ops.progress import OperationAction, OperationState
from twin.model.ops.registry import IMPLEMENTATIONS
from twin.model.ops.runtime import Control, FleetPlanner, ShardOps
from twin.model.records import RecordFormatError, RecordTypes, decode, encode, pack, pack_bytes, unpack

SHARD_OPS_FORMAT = "twin.shard-ops"
PLANNER_FORMAT = "twin.planner"
VERSION = 3  # 2: the planner holds the network's queues; 3: it retires finished operations


def _classes() -> list[type]:
    ops = [cls for pair in IMPLEMENTATIONS.values() for cls in pair]
    return [ShardOps, FleetPlanner, Control, NetworkPlan, VersionTable, CredentialSwaps, NetworkQueues, AlertStorm,
            *dict.fromkeys(ops), *COMMANDS.values()]


# Every class and enum a record may hold, by stable tag. An operation kind added to the registry
# is covered at once; anything else (an operation's new helper class) must be added here.
RECORD_TYPES = RecordTypes(
    classes=_classes(),
    enums=[catalog.Csp, catalog.WanTech, catalog.Variant, catalog.Smets, catalog.DeviceType,
           catalog.MessageType, catalog.AlertKind, OperationState, OperationAction],
)


def shard_ops_record(ops: ShardOps) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(JSON-able record, arrays by name) of a shard's operations."""
    value, arrays = encode(ops, RECORD_TYPES)
    return {"format": SHARD_OPS_FORMAT, "version": VERSION, "ops": value}, arrays


def shard_ops_from_record(record: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                          config: FleetConfig) -> ShardOps:
    """The ShardOps `shard_ops_record` wrote, holding `config`; RecordFormatError for another
    format or version."""
    _check(record, SHARD_OPS_FORMAT)
    ops = decode(record["ops"], arrays, RECORD_TYPES, {"config": config})
    if not isinstance(ops, ShardOps):
        raise RecordFormatError("a shard-ops record that holds no ShardOps")
    return ops


def planner_chunks(planner: FleetPlanner, applied: tuple[int, int],
                   controls: Mapping[int, list[Control]]) -> list[bytes | memoryview]:
    """The fleet half of a checkpoint as one record: the planner, how much of the journal it has
    accepted (`applied`, a journal position) and the controls already sent for later ticks."""
    value, arrays = encode({"planner": planner, "controls": {int(t): list(c) for t, c in controls.items()}},
                           RECORD_TYPES)
    return pack(PLANNER_FORMAT, VERSION, {"applied": list(applied), "value": value}, arrays.items())


def planner_applied(data: bytes | memoryview) -> tuple[int, int]:
    """The journal position a planner record had accepted, without rebuilding the planner."""
    meta, _ = unpack(data, PLANNER_FORMAT, (VERSION,))
    return _position(meta["applied"])


def planner_from_bytes(data: bytes | memoryview, config: FleetConfig
                       ) -> tuple[FleetPlanner, tuple[int, int], dict[int, list[Control]]]:
    """(planner, applied, controls) of a planner record; RecordFormatError for another format or
    version, or a damaged record."""
    meta, arrays = unpack(data, PLANNER_FORMAT, (VERSION,))
    value = decode(meta["value"], arrays, RECORD_TYPES, {"config": config})
    planner = value["planner"]
    if not isinstance(planner, FleetPlanner):
        raise RecordFormatError("a planner record that holds no FleetPlanner")
    return planner, _position(meta["applied"]), {int(t): list(c) for t, c in value["controls"].items()}


def _position(value: object) -> tuple[int, int]:
    """A journal position (after_tick, seq) as recorded: two whole numbers."""
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(x, int) for x in value)):
        raise RecordFormatError(f"a planner record's journal position is not two whole numbers: {value!r}")
    return int(value[0]), int(value[1])


def _check(record: Mapping[str, Any], fmt: str) -> None:
    if record.get("format") != fmt:
        raise RecordFormatError(f"expected a {fmt!r} record, found {record.get('format')!r}")
    if record.get("version") != VERSION:
        raise RecordFormatError(f"{fmt!r} record of version {record.get('version')!r}; this twin reads "
                                f"version {VERSION} only (written by another release? start the run again)")


CONTROLS_FORMAT = "twin.tick-controls"


def controls_record(tick: int, controls: list[Control]) -> bytes:
    """One tick's controls as a record (what a shard restarted without a checkpoint replays)."""
    value, arrays = encode(list(controls), RECORD_TYPES)
    return pack_bytes(CONTROLS_FORMAT, VERSION, {"tick": int(tick), "value": value}, arrays.items())


def controls_from_record(data: bytes | memoryview) -> tuple[int, list[Control]]:
    """(tick, controls) of a `controls_record`; RecordFormatError for another format or version."""
    meta, arrays = unpack(data, CONTROLS_FORMAT, (VERSION,))
    controls = decode(meta["value"], arrays, RECORD_TYPES, {})
    if not isinstance(controls, list) or not all(isinstance(c, Control) for c in controls):
        raise RecordFormatError("a tick-controls record that holds no list of controls")
    return int(meta["tick"]), controls
