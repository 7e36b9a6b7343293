"""Checks on a parsed command that need the fleet's state: conflicts, empty selections,
operations that do not exist. A failed check raises TwinInputError and changes nothing."""

from __future__ import annotations

from collections.abc import Callable

from twin.model.catalog import SUPPLIERS
from twin.model.config import TwinInputError
from twin.model.ops.commands import Command, FirmwareRollout, OperationControl, SupplierFailure, SupplierSwitch
from twin.model.ops.runtime import FleetPlanner


def _overlap(a: tuple, b: tuple) -> bool:
    """Empty means 'all'."""
    return not a or not b or bool(set(a) & set(b))


def validate(cmd: Command, planner: FleetPlanner, *, census: Callable[[Command], int]) -> None:
    if isinstance(cmd, OperationControl):
        op = planner.ops.get(cmd.operation)
        if op is None:
            raise TwinInputError("operation", f"no operation named {cmd.operation!r}")
        if cmd.action not in op.allowed_actions():
            raise TwinInputError("action", f"cannot {cmd.action} {cmd.operation}: it is {op.state.lower()}")
        return
    # Only operations not yet done can conflict, and all of them are live: looking at the live ones
    # keeps a request (an SR 11.1 is a rollout) from costing every operation ever accepted.
    if isinstance(cmd, FirmwareRollout):
        for op in planner.live.values():
            other = op.cmd
            if (isinstance(other, FirmwareRollout) and not op.done and other.device_type == cmd.device_type
                    and other.model_code == cmd.model_code and _overlap(other.regions, cmd.regions)
                    and _overlap(other.suppliers, cmd.suppliers)
                    and _overlap(other.from_versions, cmd.from_versions) and _overlap(other.hubs, cmd.hubs)):
                raise TwinInputError("model", f"conflicts with {op.name}, still {op.state.lower()} on "
                                              f"{cmd.model_label} devices of the same selection")
        if census(cmd) == 0:
            raise TwinInputError("selector", f"no {cmd.model_label} devices match this selection")
    # A supplier fails once and for good: no second failure, no customers sent to it as a Supplier
    # of Last Resort, no switch to it from its failure on (its customers are being moved away).
    failed = planner.failed_suppliers
    if isinstance(cmd, SupplierFailure):
        if cmd.supplier in failed:
            raise TwinInputError("supplier", f"{_name(cmd.supplier)} already failed in {failed[cmd.supplier][2]}")
        if cmd.solr in failed:
            raise TwinInputError("solr", f"{_name(cmd.solr)} failed in {failed[cmd.solr][2]}: a Supplier of Last "
                                         "Resort must be a supplier still trading")
    if isinstance(cmd, SupplierSwitch) and cmd.to_supplier in failed and cmd.at >= failed[cmd.to_supplier][0]:
        raise TwinInputError("to_supplier", f"{_name(cmd.to_supplier)} has failed ({failed[cmd.to_supplier][2]}) "
                                            "and takes no customers")


def _name(code: int) -> str:
    return SUPPLIERS[code - 1].name
