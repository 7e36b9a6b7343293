"""Operations as users see them: the shape of a google.longrunning.Operation (AIP-151)."""

from __future__ import annotations

from typing import Any

from twin.model.config import FleetConfig
from twin.model.ops.runtime import FleetOp

# google.rpc.Code values used for operations that end without success.
CANCELLED = 1
ABORTED = 10


def operation_view(op: FleetOp, config: FleetConfig) -> dict[str, Any]:
    md = op.metadata()
    cmd = op.cmd.to_dict()
    view: dict[str, Any] = {
        "name": f"operations/{op.name}",
        "done": op.done,
        "metadata": {
            "kind": op.cmd.kind,
            "state": md.pop("state"),
            "reason": md.pop("reason"),
            "start_tick": op.cmd.at,
            "start_time": config.time_of(op.cmd.at).isoformat(),
            "command": cmd,
            "progress": md,
        },
    }
    if op.state == "CANCELLED":
        view["error"] = {"code": CANCELLED, "message": op.reason or "cancelled"}
    elif op.state in ("HALTED", "FAILED"):
        view["error"] = {"code": ABORTED, "message": op.reason}
    elif op.state == "DONE":
        view["response"] = {"progress": md, "note": op.reason}
    return view
