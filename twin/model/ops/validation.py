"""Checks on a parsed command that need the fleet's state: conflicts, empty selections,
operations that do not exist. A failed check raises TwinInputError and changes nothing."""

from __future__ import annotations

from collections.abc import Callable

from twin.model.config import TwinInputError
from twin.model.ops.commands import Command, FirmwareRollout, OperationControl, SupplierFailure
from twin.model.ops.runtime import FleetPlanner


class UnknownOperation(TwinInputError):
    """A control names an operation the run does not hold (the API answers NOT_FOUND)."""


class OperationStateConflict(TwinInputError):
    """A control the operation's state does not allow, e.g. pausing a finished rollout (the API
    answers FAILED_PRECONDITION)."""


class CommandConflict(TwinInputError):
    """A command that conflicts with one still running, e.g. a second rollout of the same devices
    (the API answers FAILED_PRECONDITION)."""


def _overlap(a: tuple, b: tuple) -> bool:
    """Empty means 'all'."""
    return not a or not b or bool(set(a) & set(b))


def validate(cmd: Command, planner: FleetPlanner, *, census: Callable[[Command], int]) -> None:
    if isinstance(cmd, OperationControl):
        op = planner.ops.get(cmd.operation)
        if op is None:
            raise UnknownOperation("operation", f"no operation named {cmd.operation!r}")
        if cmd.action not in op.allowed_actions():
            raise OperationStateConflict("action", f"cannot {cmd.action} {cmd.operation}: it is {op.state.lower()}")
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
                raise CommandConflict("model", f"conflicts with {op.name}, still {op.state.lower()} on "
                                              f"{cmd.model_label} devices of the same selection")
        if census(cmd) == 0:
            raise TwinInputError("selector", f"no {cmd.model_label} devices match this selection")
    if isinstance(cmd, SupplierFailure):
        for op in planner.live.values():
            if isinstance(op.cmd, SupplierFailure) and not op.done and op.cmd.supplier in (cmd.supplier, cmd.solr):
                raise CommandConflict("supplier", f"supplier already failed in {op.name}")
