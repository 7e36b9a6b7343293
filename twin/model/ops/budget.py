"""Splitting a fleet-wide allowance (a daily cap, a concurrency limit) into per-block budgets.

Blocks, not shards, receive budgets, so the split is the same for any shard layout. The split is
Webster's divisor method over each block's demand: proportional, never more than a block asked for,
never more in total than the allowance."""

from __future__ import annotations

import numpy as np


def apportion(demand: np.ndarray, allowance: int) -> np.ndarray:
    """Integer budgets b with 0 <= b <= demand and sum(b) = min(allowance, sum(demand)).

    Webster (Sainte-Lague) rounding with a divisor found by bisection; the leftover units after
    rounding go to the largest remainders, ties to the lower block index, so it is deterministic."""
    demand = np.asarray(demand, dtype=np.int64)
    total = int(demand.sum())
    allowance = int(allowance)
    if allowance <= 0 or total == 0:
        return np.zeros_like(demand)
    if allowance >= total:
        return demand.copy()
    ideal = demand * (allowance / total)
    base = np.minimum(np.floor(ideal + 0.5).astype(np.int64), demand)
    diff = allowance - int(base.sum())
    if diff == 0:
        return base
    rem = ideal - base  # in (-0.5, 0.5]
    order = np.lexsort((np.arange(demand.size), -rem if diff > 0 else rem))
    if diff > 0:
        room = order[base[order] < demand[order]]
        base[room[:diff]] += 1
    else:
        has = order[base[order] > 0]
        base[has[:-diff]] -= 1
    return base
