"""What-if branches: a fork of a run from a past tick, with events added and/or some of the parent's
later commands left out, as a new run directory (by default PARENT/branches/NAME) that names its
parent and fork tick; and the comparison of two runs' tick-summary histories.

A run is a function of its seed and journal, so a branch is its parent's journal with the changes
(each record keeps its position, so everything else is accepted at the same points and keeps its
operation number and random streams) started from the parent's newest checkpoint that none of the
changes precede (hard-linked), or from the seed. Up to the fork tick it is the parent exactly."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twin.engine.checkpoint import CheckpointStore, load_planner_applied
from twin.engine.history import HistoryStore, has_history, query
from twin.engine.journal import position, read_records, write_journal
from twin.engine.supervisor import read_manifest, write_manifest
from twin.model.config import FleetConfig, TwinInputError
from twin.model.ops.commands import Command, parse_command
from twin.model.summary import TickSummary

BRANCHES = "branches"
# AIP-122 resource ids; matched whole (fullmatch: `$` would let a trailing newline through).
NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,62}", re.ASCII)
_SEQ_RE = re.compile(r"[0-9]{1,12}", re.ASCII)  # a journal seq, in ASCII digits


@dataclass
class ForkPlan:
    """A branch before it runs: where it starts and what it changes."""

    parent_dir: Path
    branch_dir: Path
    at: int
    events: list[dict[str, Any]]
    commands: list[Command]
    dropped: list[dict[str, Any]]  # the parent's journal records left out
    base: int  # the parent checkpoint it starts from (-1: the seed)
    records: list[dict[str, Any]] = field(default_factory=list)  # the journal it inherits


def operation_name(rec: dict[str, Any]) -> str | None:
    """The operation a journal record created ("firmware-rollout-3"), if it created one."""
    cmd = rec["command"]
    if cmd["type"] == "operation_control" or rec.get("op_seq") is None:
        return None
    return f"{cmd['type'].replace('_', '-')}-{rec['op_seq']}"


def run_head(run_dir: Path) -> int:
    """The furthest tick a run on disk has reached: its last summarised tick + 1."""
    head = 0
    latest = CheckpointStore(run_dir).latest()
    if latest is not None:
        head = latest + 1
    if has_history(run_dir):
        _, rows = query(run_dir, "SELECT max(tick) FROM ticks")
        if rows and rows[0][0] is not None:
            head = max(head, int(rows[0][0]) + 1)
    return head


def _dropped(records: list[dict[str, Any]], drop: list[str], at: int) -> list[dict[str, Any]]:
    """The records `drop` names (operations, with their pauses/resumes/cancels, or journal seqs)."""
    by_seq = {int(r["seq"]): r for r in records}
    by_op = {n: r for r in records if (n := operation_name(r))}
    out: dict[int, dict[str, Any]] = {}
    for item in drop:
        key = str(item).strip(" \t").removeprefix("operations/")
        if _SEQ_RE.fullmatch(key) and int(key) in by_seq:
            out[int(key)] = by_seq[int(key)]
        elif key in by_op:
            out[int(by_op[key]["seq"])] = by_op[key]
        else:
            raise TwinInputError("drop", f"{ascii(item)[:70]} is neither an operation of the parent run nor a journal seq "
                                         f"(operations: {', '.join(sorted(by_op)) or 'none'})")
    names = {operation_name(r) for r in out.values()} - {None}
    for r in records:  # a left-out operation takes its controls with it
        if r["command"]["type"] == "operation_control" and r["command"]["operation"] in names:
            out[int(r["seq"])] = r
    for r in out.values():
        cmd, label = r["command"], operation_name(r) or f"journal seq {r['seq']}"
        if int(cmd["at"]) < at:
            raise TwinInputError("drop", f"{label} took effect at tick {cmd['at']}, before the fork tick {at}")
        if cmd["type"] == "operation_control" and int(r.get("after_tick", -1)) < at - 1:
            # Its effect on the plan began when it was accepted, before the fork.
            raise TwinInputError("drop", f"{label} ({cmd['action']} of {cmd['operation']}) was accepted before the "
                                         f"fork tick {at}; add the opposite action at the fork instead")
    return sorted(out.values(), key=position)


def _base_checkpoint(parent: Path, at: int, dropped: list[dict[str, Any]]) -> int:
    """The parent's newest checkpoint before the fork tick whose planner had accepted none of the
    dropped commands (-1: start from the seed)."""
    store = CheckpointStore(parent)
    first_dropped = min((position(r) for r in dropped), default=None)
    for c in store.marked_ticks():
        if c > at - 1:
            continue
        applied = load_planner_applied(store.planner_path(c))
        if applied is None:
            continue
        if first_dropped is None or applied < first_dropped:
            return c
    return -1


def plan_fork(parent_dir: Path, *, at: int, events: list[dict[str, Any]] | None = None,
              drop: list[str] | None = None, name: str | None = None, branch_dir: Path | None = None,
              head: int | None = None) -> ForkPlan:
    """Check a fork request against the parent run on disk; nothing is written."""
    manifest = read_manifest(parent_dir)
    if not manifest:
        raise TwinInputError("parent", f"{parent_dir} is not a run directory (no manifest.json)")
    config = FleetConfig.from_dict(manifest["config"])
    head = run_head(parent_dir) if head is None else head
    if isinstance(at, bool) or not isinstance(at, int) or not 0 <= at <= head:
        raise TwinInputError("fork_tick", f"must be a tick between 0 and the parent's head {head}, got {at!r}")
    if name is not None and not NAME_RE.fullmatch(name):
        raise TwinInputError("branch_id", f"{ascii(name)[:70]}: use lower-case letters, digits and '-', starting with a letter")
    name = name or f"fork-{at}-{datetime.now(UTC):%Y%m%dt%H%M%S%f}"
    branch_dir = branch_dir or parent_dir / BRANCHES / name
    if branch_dir.exists():
        raise TwinInputError("branch_id", f"{branch_dir} already exists")
    events = list(events or [])
    commands = []
    for i, ev in enumerate(events):
        try:
            # Offsets in a what-if count from the fork tick; nothing may start before it.
            commands.append(parse_command(ev, config, now_tick=at, relative_to=at))
        except TwinInputError as e:
            raise TwinInputError(f"events[{i}].{e.field}", e.reason) from None
    records = read_records(parent_dir / "journal.jsonl")
    dropped = _dropped(records, list(drop or []), at)
    if not commands and not dropped and drop:
        raise TwinInputError("drop", "names nothing to leave out")
    gone = {int(r["seq"]) for r in dropped}
    base = _base_checkpoint(parent_dir, at, dropped)
    return ForkPlan(parent_dir=parent_dir, branch_dir=branch_dir, at=at, events=events, commands=commands,
                    dropped=dropped, base=base, records=[r for r in records if int(r["seq"]) not in gone])


def create_branch(plan: ForkPlan, *, parent_history: AbstractContextManager[Any] | None = None) -> None:
    """Write the branch's directory: manifest (parent, fork tick, changes), inherited journal, the
    base checkpoint (linked) and the parent's history up to it. `parent_history` flushes a live
    parent's history first (the copy reads it with no lock, while the parent runs on)."""
    parent = read_manifest(plan.parent_dir)
    config = FleetConfig.from_dict(parent["config"])
    d = plan.branch_dir
    d.mkdir(parents=True)
    try:
        write_manifest(d, config, parent["shards"], checkpoint_every=parent.get("checkpoint_every", 48), parent={
            "run_dir": str(plan.parent_dir.resolve()), "name": parent.get("name", plan.parent_dir.name),
            "fork_tick": plan.at, "fork_time": config.time_of(plan.at).isoformat(), "base_checkpoint": plan.base,
            "dropped": [operation_name(r) or f"seq {r['seq']}" for r in plan.dropped],
            "dropped_seqs": [int(r["seq"]) for r in plan.dropped], "events": plan.events})
        write_journal(d / "journal.jsonl", sorted(plan.records, key=position))
        if plan.base >= 0:
            CheckpointStore(d).link_from(CheckpointStore(plan.parent_dir), plan.base)
        store = HistoryStore(d, branch=d.name, config=config)
        try:
            if has_history(plan.parent_dir) and plan.base >= 0:
                with parent_history or nullcontext():
                    store.copy_from(plan.parent_dir, upto_tick=plan.base)
        finally:
            store.close()
    except BaseException:
        shutil.rmtree(d, ignore_errors=True)
        raise


def run_branch(plan: ForkPlan, *, until: int, shards: int | None = None, cpus_per_shard: float | None = None,
               progress: Callable[[TickSummary], None] | None = None) -> dict[str, Any]:
    """Run a created branch: replay to the fork tick, accept its events there (validated against
    the fleet as it then is), run on to `until`. Returns the branch's figures."""
    from twin.engine.supervisor import FleetSupervisor

    manifest = read_manifest(plan.branch_dir)
    config = FleetConfig.from_dict(manifest["config"])
    if until < plan.at:
        raise TwinInputError("until_tick", f"must not be before the fork tick {plan.at}, got {until}")
    sup = FleetSupervisor(config, run_dir=plan.branch_dir, shards=shards or manifest["shards"],
                          cpus_per_shard=cpus_per_shard, checkpoint_every=manifest.get("checkpoint_every", 48),
                          resume=True)
    try:
        sup.run_until(plan.at, progress=progress)
        ops = []
        for i, cmd in enumerate(plan.commands):
            try:
                ops.append(sup.submit_command(cmd))
            except TwinInputError as e:
                raise TwinInputError(f"events[{i}].{e.field}", e.reason) from None
        sup.run_until(until, progress=progress)
        return {"name": sup.name, "run_dir": str(plan.branch_dir), "tick": sup.tick, "base_checkpoint": plan.base,
                "state_hash": sup.state_hash(), "operations": [o.get("name") for o in ops]}
    finally:
        sup.shutdown()


def fork(parent_dir: Path, *, at: int, until: int, events: list[dict[str, Any]] | None = None,
         drop: list[str] | None = None, name: str | None = None, branch_dir: Path | None = None,
         shards: int | None = None, progress: Callable[[TickSummary], None] | None = None) -> dict[str, Any]:
    """Plan, create and run a branch (Ray must be started)."""
    plan = plan_fork(parent_dir, at=at, events=events, drop=drop, name=name, branch_dir=branch_dir)
    create_branch(plan)
    try:
        return run_branch(plan, until=until, shards=shards, progress=progress)
    except TwinInputError:
        shutil.rmtree(plan.branch_dir, ignore_errors=True)  # an event the fleet refused: no branch
        raise


def branch_info(run_dir: Path) -> dict[str, Any]:
    m = read_manifest(run_dir)
    return {"name": m.get("name", run_dir.name), "run_dir": str(run_dir), "parent": m.get("parent"),
            "created_at": m.get("created_at"), "head": run_head(run_dir)}


def list_branches(run_dir: Path) -> Iterator[dict[str, Any]]:
    """The branches forked from a run, oldest first."""
    root = run_dir / BRANCHES
    if not root.exists():
        return
    found = [d for d in root.iterdir() if (d / "manifest.json").exists()]
    for d in sorted(found, key=lambda p: (read_manifest(p).get("created_at", ""), p.name)):
        yield branch_info(d)


def load_what_if(path: Path) -> tuple[list[dict[str, Any]], list[str], str]:
    """A what-if file: `events` (offsets count from the fork tick) and `drop` (the parent's
    operations or journal seqs to leave out); the fleet is always the parent's."""
    from twin.yamlfile import load_mapping

    doc = load_mapping(path, "events and/or drop")
    if "fleet" in doc:
        raise TwinInputError("fleet", "a what-if runs on its parent's fleet; leave `fleet` out")
    unknown = set(doc) - {"name", "description", "events", "drop"}
    if unknown:
        raise TwinInputError(sorted(unknown)[0], "not a what-if key; keys are name, description, events, drop")
    events, drop = doc.get("events") or [], doc.get("drop") or []
    if not isinstance(events, list) or not isinstance(drop, list):
        raise TwinInputError("events" if not isinstance(events, list) else "drop", "must be a list")
    return events, [str(x) for x in drop], str(doc.get("description", ""))
