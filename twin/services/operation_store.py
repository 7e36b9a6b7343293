"""The API's one store of Operations: the fleet's operator events (held by the engine's planner)
and this server's CreateBranch operations (run in its worker threads), read the same way by
GetOperation, ListOperations, WaitOperation, CancelOperation and the Pause/Resume RPCs."""

from __future__ import annotations

from typing import Any

from google.longrunning import operations_pb2

from twin.engine.interface import FleetEngine
from twin.engine.operations import OperationFilter, OperationRetired
from twin.generated.fleet.v1 import fleet_pb2
from twin.model.config import TwinInputError
from twin.model.ops.progress import OperationState
from twin.services.branching import BRANCH_KIND, OP_PREFIX, Branches
from twin.services.convert import OPERATION_STATES, operation_message
from twin.services.errors import not_found

_STATE_OF = {v: k for k, v in OPERATION_STATES.items()}


def _branch_matches(where: OperationFilter, op: operations_pb2.Operation) -> bool:
    md = fleet_pb2.OperationMetadata()
    op.metadata.Unpack(md)
    return where.matches_facts(done=op.done, kind=md.kind or BRANCH_KIND,
                               state=_STATE_OF.get(md.state, OperationState.RUNNING))


class OperationStore:
    """Operations by name ("operations/{id}"); a list is the fleet's operations in the order they
    were accepted, then the branch operations in the order they were created."""

    def __init__(self, supervisor: FleetEngine, branches: Branches | None):
        self.sup = supervisor
        self.branches = branches

    def is_branch(self, name: str) -> bool:
        """`name` is one of this server's CreateBranch operations."""
        return self.branches is not None and name.startswith(OP_PREFIX) and self.branches.operation(name) is not None

    def view(self, name: str) -> dict[str, Any]:
        """The engine's view of fleet operation `name` (NOT_FOUND naming `name` if none)."""
        try:
            return self.sup.operation(name)
        except OperationRetired as e:  # finished and retired after the run's retention: said so
            raise not_found("name", e.reason) from None
        except TwinInputError:
            raise not_found("name", f"no operation named {name!r}") from None

    def get(self, name: str) -> operations_pb2.Operation:
        """Operation `name`, fleet or branch; NOT_FOUND naming `name` if there is none."""
        if self.branches is not None and name.startswith(OP_PREFIX):
            op = self.branches.operation(name)
            if op is None:
                raise not_found("name", f"no operation named {name!r}")
            return op
        return operation_message(self.view(name))

    def page(self, where: OperationFilter | None, start: tuple[int, ...], size: int
             ) -> tuple[list[operations_pb2.Operation], tuple[int, int] | None]:
        """Up to `size` operations `where` matches (all if None) from position `start`, and the
        position to continue from (None at the end). A position is (the fleet's position as its
        number of the next fleet operation, 0) while in the fleet's operations, then (0, 1 + the index of
        the next branch operation)."""
        fleet_at, branch_at = start
        out: list[operations_pb2.Operation] = []
        if branch_at == 0:
            views, nxt = self.sup.operations_page(where, fleet_at, size)
            out = [operation_message(v) for v in views]
            if nxt:
                return out, (nxt, 0)
            branch_at = 1
        branch_ops = self.branches.operations() if self.branches is not None else []
        for i in range(branch_at - 1, len(branch_ops)):
            op = branch_ops[i]
            if where is None or _branch_matches(where, op):
                if len(out) == size:
                    return out, (0, i + 1)
                out.append(op)
        return out, None
