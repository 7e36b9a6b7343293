"""Queries of the fleet held on the shards: one hub's record or reading, pages of hubs, a hub's
recent alerts, fleet aggregates and the schedule an API replica needs. Each asks the shard(s) that
hold the answer; no query copies the fleet."""

from __future__ import annotations

from typing import Any

import numpy as np
import ray

from twin.engine.operations import OperationsStore
from twin.engine.stepping import StepPipeline
from twin.model.config import FleetConfig
from twin.model.query import label_counts, validate_group_keys


class FleetQueries:
    """Reads over the pipeline's shards and history. Takes no lock of its own: a single hub's
    answer is the shard's (a shard answers between its steps), and `schedule_view` reads the plan
    under the operations store's lock."""

    def __init__(self, config: FleetConfig, *, pipeline: StepPipeline, ops: OperationsStore) -> None:
        self.config = config
        self.pipeline = pipeline
        self.ops = ops

    def hub(self, hub: int) -> dict[str, Any]:
        """The whole record of dense hub id `hub` (KeyError outside the fleet)."""
        p = self.pipeline
        return ray.get(p.shards[p.shard_of(hub)].hub.remote(hub))

    def read(self, hub: int, srv: str, fuel: str) -> dict[str, Any]:
        """A read Service Request's answer (`srv` "4.1.1" ..., `fuel` "elec" or "gas") from the hub's
        shard; ValueError for a fuel the premises lacks."""
        p = self.pipeline
        return ray.get(p.shards[p.shard_of(hub)].read.remote(hub, srv, fuel))

    def hub_events(self, hub: int, limit: int, *, start: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        """The hub's alerts in the retained tick history, newest first, at most `limit`; from
        `start` = (tick, rank): that tick's alerts from its rank-th on, then older ticks' (None:
        from the newest). Each event has its tick, kind, second and rank (its place among the
        hub's alerts of its tick). Cost grows with the alerts held in the history (vectorised per
        tick), not with the fleet."""
        out: list[dict[str, Any]] = []
        for s in reversed(list(self.pipeline.history)):
            if start is not None and s.tick > start[0]:
                continue
            ev = s.alert_events
            if not ev or ev["hub"].size == 0:
                continue
            hit = np.flatnonzero(ev["hub"] == hub)
            skip = start[1] if start is not None and s.tick == start[0] else 0
            for rank, i in enumerate(hit[np.argsort(-ev["sec"][hit], kind="stable")]):
                if rank < skip:
                    continue
                out.append({"tick": s.tick, "kind": int(ev["kind"][i]), "second": int(ev["sec"][i]), "rank": rank})
                if len(out) >= limit:
                    return out
        return out

    def list_hubs(self, filters: dict[str, Any], start: int, limit: int) -> tuple[list[dict[str, Any]], int | None]:
        """Hubs matching `filters` from hub id `start`, at most `limit`; and the next start (None
        at the end). Shards are asked in hub order, so pages are stable."""
        p = self.pipeline
        out: list[dict[str, Any]] = []
        start = max(start, 0)
        while start < self.config.hubs and len(out) < limit:
            i = p.shard_of(start)
            recs, nxt = ray.get(p.shards[i].list_hubs.remote(filters, start, limit - len(out)))
            out.extend(recs)
            span = p.spans[i]
            end = min((span.first_block + span.n_blocks) * self.config.block_size, self.config.hubs)
            start = nxt if len(out) >= limit else end
        return out, (start if start < self.config.hubs else None)

    def aggregate(self, by: list[str]) -> list[dict[str, Any]]:
        """Hubs and meters counted by the group keys `by` (twin.model.query), labelled, largest
        group first; TwinInputError for an unknown key."""
        validate_group_keys(by)
        merged: dict[tuple[int, ...], list[int]] = {}
        for part in ray.get([s.aggregate.remote(by) for s in self.pipeline.shards]):
            for k, (h, m) in part.items():
                acc = merged.setdefault(k, [0, 0])
                acc[0] += h
                acc[1] += m
        return label_counts(by, merged, self.ops.planner.versions)  # the versions rollouts added, too

    def schedule_view(self) -> tuple[int, np.ndarray, int, list[int]]:
        """For API replicas: the last completed tick, the network schedule (NetworkPlan.to_array())
        and the tick before which it is final (a command accepted later applies then or after),
        and each shard's first hub; read together under the operations lock."""
        with self.ops.lock:
            return (self.pipeline.tick - 1, self.ops.planner.network.to_array(), self.ops.next_submit,
                    self.pipeline.first_hubs())
