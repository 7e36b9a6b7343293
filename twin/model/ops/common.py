"""Pieces the operations share: per-hub keys, block-budgeted selection, reachability of rows,
and the change-of-supplier credential swap."""

from __future__ import annotations

import numpy as np

from twin.model.catalog import AREA_CSP, MessageType, Status
from twin.model.ops.budget import apportion
from twin.model.params import HALF_HOURS_PER_DAY
from twin.model.reach import on_dcc, reachable
from twin.model.rng import Purpose, hash_uniform
from twin.model.state import HubState
from twin.model.summary import TickSummary
from twin.model.traffic import count_rows


def op_uniform(hs: HubState, seq: int, salt: int, rows: np.ndarray, step: int = 0) -> np.ndarray:
    """A uniform per hub for operation `seq`, independent of which shard holds the hub."""
    return hash_uniform(hs.seed, Purpose.EVENT + 16 * seq + salt, hs.offset + rows, step)


def csp_of(hs: HubState, rows: np.ndarray) -> np.ndarray:
    return AREA_CSP[hs.cols["area"][rows]].astype(np.intp)


def sort_by_block(hs: HubState, rows: np.ndarray, key: np.ndarray, klass: np.ndarray | None = None) -> np.ndarray:
    """Order rows by (block, class, key): each block's candidates contiguous, best first."""
    block = rows // hs.block_size
    keys = (key, block) if klass is None else (key, klass, block)
    return np.lexsort(keys)


def block_demand(hs: HubState, rows: np.ndarray, mask: np.ndarray, buckets: np.ndarray | None = None,
                 n_buckets: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Global block ids with candidates, and candidates per (block, bucket)."""
    block = rows[mask] // hs.block_size + hs.first_block
    b = np.zeros(block.size, np.intp) if buckets is None else buckets[mask]
    if block.size == 0:
        return np.zeros(0, np.int64), np.zeros((0, n_buckets), np.int64)
    ub, inv = np.unique(block, return_inverse=True)
    counts = np.zeros((ub.size, n_buckets), np.int64)
    np.add.at(counts, (inv, b), 1)
    return ub.astype(np.int64), counts


def take_by_block(hs: HubState, rows: np.ndarray, eligible: np.ndarray, blocks: np.ndarray,
                  budget: np.ndarray) -> np.ndarray:
    """Mask of the first budget[block] eligible rows of each block (rows sorted by block).

    `blocks` are global block ids with their budgets; blocks not listed get nothing."""
    if rows.size == 0 or blocks.size == 0:
        return np.zeros(rows.size, bool)
    gblock = rows // hs.block_size + hs.first_block
    pos = np.searchsorted(blocks, gblock)
    pos = np.minimum(pos, blocks.size - 1)
    listed = blocks[pos] == gblock
    allowance = np.where(listed, budget[pos], 0)
    # Rank among eligible rows within the same block: rows are grouped by block.
    e = eligible.astype(np.int64)
    csum = np.cumsum(e)
    starts = np.r_[0, np.flatnonzero(np.diff(gblock)) + 1]
    seg = np.repeat(starts, np.diff(np.r_[starts, rows.size]))
    before = csum[seg] - e[seg]
    rank = csum - before - 1
    return eligible & (rank < allowance)


def issue_budget(blocks: np.ndarray, demand: np.ndarray, allowance: np.ndarray) -> dict[str, np.ndarray]:
    """Per-block budgets (one column per bucket) within per-bucket allowances."""
    budget = np.zeros_like(demand)
    for b in range(demand.shape[1]):
        budget[:, b] = apportion(demand[:, b], int(max(allowance[b], 0)))
    keep = budget.sum(axis=1) > 0
    return {"blocks": blocks[keep], "budget": budget[keep]}


class CredentialSwaps:
    """Change of supplier on the smart side: the gaining supplier's SR 6.23 swaps the device
    credentials over the WAN. Unreachable hubs wait until a deadline; SMETS1 meters not enrolled
    in the DCC cannot take the new supplier and go dumb."""

    def __init__(self, deadline_ticks: int):
        self.deadline_ticks = deadline_ticks
        self.rows = np.zeros(0, np.int64)
        self.deadline = np.zeros(0, np.int64)
        self.counts = {"switched_smart": 0, "dumb": 0, "failed": 0}

    def switched(self, hs: HubState, rows: np.ndarray, tick: int, s: TickSummary, up_area: np.ndarray) -> None:
        """Premises `rows` changed supplier at `tick`."""
        c = hs.cols
        not_enrolled = ~on_dcc(c["smets"][rows])
        dumb = rows[not_enrolled]
        c["status"][dumb] |= np.uint8(Status.DUMB)
        self.counts["dumb"] += int(dumb.size)
        rest = rows[~not_enrolled]
        ok = reachable(hs, rest, up_area)
        self._smart(hs, rest[ok], s)
        self.rows = np.concatenate([self.rows, rest[~ok]])
        self.deadline = np.concatenate([self.deadline, np.full(int((~ok).sum()), tick + self.deadline_ticks)])

    def _smart(self, hs: HubState, rows: np.ndarray, s: TickSummary) -> None:
        if rows.size == 0:
            return
        meters = 1 + ((hs.cols["flags"][rows] & 1) != 0)
        count_rows(s, MessageType.SECURITY, hs, rows, meters)
        self.counts["switched_smart"] += int(rows.size)

    def step(self, hs: HubState, tick: int, s: TickSummary, up_area: np.ndarray) -> None:
        if self.rows.size == 0:
            return
        ok = reachable(hs, self.rows, up_area)
        self._smart(hs, self.rows[ok], s)
        late = ~ok & (self.deadline <= tick)
        self.counts["failed"] += int(late.sum())
        keep = ~ok & ~late
        self.rows, self.deadline = self.rows[keep], self.deadline[keep]

    def report(self) -> dict[str, int]:
        return {**self.counts, "pending": int(self.rows.size)}


def days_to_ticks(days: float) -> int:
    return max(1, round(days * HALF_HOURS_PER_DAY))
