"""Operations as users see them: the shape of a google.longrunning.Operation (AIP-151), with the
typed state, allowed controls and per-kind progress of the model (`twin.model.ops.progress`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twin.model.config import FleetConfig
from twin.model.ops.progress import OperationAction, OperationState
from twin.model.ops.runtime import FleetOp

# google.rpc.Code values used for operations that end without success.
CANCELLED = 1
ABORTED = 10


def operation_view(op: FleetOp, config: FleetConfig) -> dict[str, Any]:
    """One operation as a dict: name ("operations/{id}"), done, metadata (kind, state as an
    `OperationState`, reason, start_tick, start_time ISO 8601, command as accepted, progress as the
    kind's frozen `Progress` record, percent_done 0..100, allowed_actions as `OperationAction`s
    in their declared order), and error {code, message} (google.rpc codes) or response {note}."""
    state = OperationState(op.state)
    progress = op.progress()
    allowed = op.allowed_actions()
    view: dict[str, Any] = {
        "name": f"operations/{op.name}",
        "done": op.done,
        "metadata": {
            "kind": op.cmd.kind,
            "state": state,
            "reason": op.reason,
            "start_tick": op.cmd.at,
            "start_time": config.time_of(op.cmd.at).isoformat(),
            "command": op.cmd.to_dict(),
            "progress": progress,
            "percent_done": 100.0 * progress.fraction(state),
            "allowed_actions": [a for a in OperationAction if a in allowed],
        },
    }
    if state == OperationState.CANCELLED:
        view["error"] = {"code": CANCELLED, "message": op.reason or "cancelled"}
    elif state in (OperationState.HALTED, OperationState.FAILED):
        view["error"] = {"code": ABORTED, "message": op.reason}
    elif state == OperationState.DONE:
        view["response"] = {"note": op.reason}
    return view


# Operations left out of the per-tick changes (WatchFleet): one per device-changing Service
# Request, so a busy DCC would fill every tick with them; their callers follow them one by one.
UNSTREAMED_KINDS = frozenset({"service_request"})


def changed_views(ops: Iterable[FleetOp], config: FleetConfig) -> list[dict[str, Any]]:
    """Views of the operations a tick changed (`FleetPlanner.observe`'s result), operator events
    only: what a tick summary carries so a watcher never polls for operations."""
    return [operation_view(op, config) for op in ops if op.cmd.kind not in UNSTREAMED_KINDS]
