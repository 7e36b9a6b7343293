"""Branches of the served run for the FleetService: the resources ("branches/{id}", each a run
directory under the served run's `branches/`), the CreateBranch Operations (a fork runs in a
worker thread on the same Ray as the served fleet), and comparisons."""

from __future__ import annotations

import builtins
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from google.longrunning import operations_pb2
from google.rpc import code_pb2, status_pb2

from twin.engine.branches import BRANCHES, NAME_RE, ForkPlan, create_branch, plan_fork, run_branch, run_head
from twin.engine.compare import compare_runs, write_comparison_json
from twin.engine.interface import FleetEngine
from twin.engine.supervisor import read_manifest
from twin.generated.fleet.v1 import fleet_pb2
from twin.model.config import FleetConfig, TwinInputError
from twin.model.ops.progress import OperationState
from twin.services.convert import OPERATION_STATES, ts
from twin.services.errors import ApiError, invalid, not_found
from twin.util.rpc_status import pack_any

OP_PREFIX = "operations/create-branch-"
BRANCH_KIND = "branch_creation"  # the kind of a CreateBranch Operation in its OperationMetadata
log = logging.getLogger(__name__)

# Writes the comparison of two runs (twin.engine.compare.compare_runs) into a directory and returns
# the path of the page a reader opens: twin.reporting.compare.comparison_page (offline HTML), which
# the process serving the API passes in, since rendering sits above the services.
ComparisonWriter = Callable[[dict[str, Any], Path], Path]


class Branches:
    """The served run's branches and the operations that make them."""

    def __init__(self, supervisor: FleetEngine, *, write_comparison: ComparisonWriter | None = None):
        """`write_comparison` writes a CompareBranches result where its `report_path` points (None:
        its JSON only, twin.engine.compare.write_comparison_json)."""
        self.sup = supervisor
        self.write_comparison: ComparisonWriter = write_comparison or write_comparison_json
        self.root: Path = supervisor.run_dir / BRANCHES
        self._ops: dict[str, operations_pb2.Operation] = {}  # creation order
        self._lock = threading.Lock()
        # Called (from the branch's worker thread) after each change of a branch operation.
        self.on_change: Callable[[], None] | None = None

    # -- resources -------------------------------------------------------------------------
    def branch_dir(self, name: str, field: str = "name") -> Path:
        bid = name.removeprefix("branches/")
        if not name.startswith("branches/") or not NAME_RE.fullmatch(bid):
            raise invalid(field, f"expected branches/{{branch_id}} (lower-case letters, digits and '-', starting "
                                 f"with a letter), got {ascii(name)[:70]}")
        d = self.root / bid
        if not (d / "manifest.json").exists():
            raise not_found(field, f"no branch named {name!r}")
        return d

    def message(self, d: Path) -> fleet_pb2.Branch:
        m = read_manifest(d)
        p = m.get("parent") or {}
        parent_dir = Path(p.get("run_dir", ""))
        parent = "" if parent_dir.resolve() == self.sup.run_dir.resolve() else f"branches/{parent_dir.name}"
        config = FleetConfig.from_dict(m["config"])
        return fleet_pb2.Branch(
            name=f"branches/{d.name}", parent=parent, fork_tick=p.get("fork_tick", 0),
            fork_time=ts(config.time_of(p.get("fork_tick", 0))), head_tick=run_head(d),
            added_events_json=[json.dumps(e, default=str) for e in p.get("events", [])],
            dropped=list(p.get("dropped", [])), base_checkpoint=p.get("base_checkpoint", -1), run_dir=str(d))

    def list(self) -> list[fleet_pb2.Branch]:
        if not self.root.exists():
            return []
        dirs = [d for d in self.root.iterdir() if (d / "manifest.json").exists()]
        dirs.sort(key=lambda d: (read_manifest(d).get("created_at", ""), d.name))
        return [self.message(d) for d in dirs]

    # -- creating ------------------------------------------------------------------------------
    def create(self, req: fleet_pb2.CreateBranchRequest,
               events: builtins.list[dict[str, Any]]) -> operations_pb2.Operation:
        """Check the request, write the branch, and start running it; returns its Operation."""
        served = req.branch.parent in ("", self.sup.name)
        parent_dir = self.sup.run_dir if served else self.branch_dir(req.branch.parent, "branch.parent")
        if not req.branch_id:
            raise invalid("branch_id", "is required")
        if NAME_RE.fullmatch(req.branch_id) and (self.root / req.branch_id).exists():
            raise ApiError(grpc.StatusCode.ALREADY_EXISTS, f"branch_id: branches/{req.branch_id} already exists",
                           field="branch_id")
        at, until = int(req.branch.fork_tick), int(req.until_tick)
        if served and at > self.sup.tick:  # not reached yet: valid later (AIP-193)
            raise ApiError(grpc.StatusCode.OUT_OF_RANGE, f"branch.fork_tick: {at} is beyond the run's current tick "
                                                         f"{self.sup.tick}", field="branch.fork_tick")
        try:
            plan = plan_fork(parent_dir, at=at, events=events, drop=list(req.branch.dropped), name=req.branch_id,
                             branch_dir=self.root / req.branch_id, head=self.sup.tick if served else None)
        except TwinInputError as e:
            field = {"fork_tick": "branch.fork_tick", "drop": "branch.dropped"}.get(e.field, e.field)
            raise invalid(field, e.reason) from None
        if until < at:
            raise invalid("until_tick", f"must not be before the fork tick {at}, got {until}")
        create_branch(plan, parent_history=self.sup.history_db.flushed() if served else None)
        name = OP_PREFIX + req.branch_id
        op = operations_pb2.Operation(name=name, metadata=pack_any(self._metadata(
            plan, OperationState.RUNNING, fleet_pb2.BRANCH_PHASE_REPLAYING, plan.base + 1, until)))
        with self._lock:
            self._ops[name] = op
        threading.Thread(target=self._run, args=(name, plan, until), name=f"branch-{req.branch_id}", daemon=True).start()
        return op

    def _metadata(self, plan: ForkPlan, state: OperationState, phase: fleet_pb2.BranchPhase, tick: int,
                  until: int, reason: str = "") -> fleet_pb2.OperationMetadata:
        """The OperationMetadata of a branch being made: its progress is the ticks run from the
        parent checkpoint it starts at towards `until` (replayed up to the fork, then new)."""
        first = plan.base + 1
        done = 100.0 if state == OperationState.DONE else 100.0 * max(0, tick - first) / max(1, until + 1 - first)
        return fleet_pb2.OperationMetadata(
            kind=BRANCH_KIND, state=OPERATION_STATES[state], reason=reason, start_tick=plan.at,
            start_time=ts(self.sup.config.time_of(plan.at)), percent_done=min(done, 100.0),
            branch_creation=fleet_pb2.BranchCreationProgress(branch=f"branches/{plan.branch_dir.name}", phase=phase,
                                                             tick=tick, until_tick=until))

    def _run(self, name: str, plan: ForkPlan, until: int) -> None:
        def progress(s: Any) -> None:
            phase = fleet_pb2.BRANCH_PHASE_REPLAYING if s.tick + 1 < plan.at else fleet_pb2.BRANCH_PHASE_RUNNING
            self._set(name, metadata=self._metadata(plan, OperationState.RUNNING, phase, s.tick + 1, until))

        unset = fleet_pb2.BRANCH_PHASE_UNSPECIFIED
        try:
            # No CPUs reserved: the branch shares the machine with the served fleet, which holds them.
            out = run_branch(plan, until=until, cpus_per_shard=0.0, progress=progress)
            self._set(name, metadata=self._metadata(plan, OperationState.DONE, unset, out["tick"], until),
                      response=self.message(plan.branch_dir))
        except TwinInputError as e:
            self._set(name, metadata=self._metadata(plan, OperationState.FAILED, unset, plan.at, until, str(e)),
                      error=status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=str(e)))
        except Exception as e:  # the operation reports it; the server goes on
            log.exception("branch operation %s failed", name)
            reason = f"{type(e).__name__}: {e}"
            self._set(name, metadata=self._metadata(plan, OperationState.FAILED, unset, plan.at, until, reason),
                      error=status_pb2.Status(code=code_pb2.INTERNAL, message=reason))

    def _set(self, name: str, *, metadata: Any, response: Any = None, error: status_pb2.Status | None = None) -> None:
        op = operations_pb2.Operation(name=name, metadata=pack_any(metadata))
        if response is not None:
            op.done = True
            op.response.CopyFrom(pack_any(response))
        elif error is not None:
            op.done = True
            op.error.CopyFrom(error)
        with self._lock:
            self._ops[name] = op
        if self.on_change is not None:
            self.on_change()

    def operation(self, name: str) -> operations_pb2.Operation | None:
        with self._lock:
            return self._ops.get(name)

    def operations(self) -> tuple[operations_pb2.Operation, ...]:
        """Every branch-creation Operation of this server, oldest first."""
        with self._lock:
            return tuple(self._ops.values())

    # -- comparing -------------------------------------------------------------------------------
    def compare(self, name: str, other: str) -> fleet_pb2.CompareBranchesResponse:
        a = self.sup.run_dir if other in ("", self.sup.name) else self.branch_dir(other, "other")
        b = self.branch_dir(name)
        try:
            if a == self.sup.run_dir:
                with self.sup.history_db.flushed():
                    cmp = compare_runs(a, b)
            else:
                cmp = compare_runs(a, b)
        except (FileNotFoundError, ValueError) as e:
            raise invalid("other", str(e)) from None
        page = self.write_comparison(cmp, b / f"compare-{a.name}")
        resp = fleet_pb2.CompareBranchesResponse(
            name=name, other=other, first_common_tick=cmp["common_ticks"][0], last_common_tick=cmp["common_ticks"][1],
            identical=cmp["divergence_tick"] is None, changed_at_divergence=cmp["changed_at_divergence"],
            figures=[fleet_pb2.BranchFigure(figure=r["figure"], value=r["b"], other_value=r["a"],
                                            difference=r["difference"]) for r in cmp["aggregates"]],
            report_path=str(page))
        if cmp["divergence_tick"] is not None:
            resp.divergence_tick = cmp["divergence_tick"]
        return resp
