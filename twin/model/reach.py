"""The reachability rule, written once: whether the DCC can reach a hub now. Every caller (the
kernel's reads and alerts, the operations, queries, the prepayment pass) asks here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from twin.model.catalog import Smets


class HubColumns(Protocol):
    """A shard's hub state as `reachable` reads it (twin.model.state.HubState): its columns by name,
    one row per hub. A protocol, since the state keeps its counters with `on_dcc` from here."""

    @property
    def cols(self) -> Mapping[str, np.ndarray]: ...


def on_dcc(smets: np.ndarray) -> np.ndarray:
    """Hubs whose meters the DCC serves: all but SMETS1 meters not enrolled (those stay on their
    supplier's own system). Same shape as `smets` (a `Smets` code per hub)."""
    return smets != Smets.SMETS1_NOT_ENROLLED


def wan_up(fault: np.ndarray, area: np.ndarray, wan: np.ndarray, up_area: np.ndarray, *,
           ignore: int = 0) -> np.ndarray:
    """Hubs with no fault bit set (other than those in `ignore`) whose network is up.

    `fault`, `area`, `wan`: per-hub codes of the same shape; `up_area`: bool [area code, WanTech],
    the network schedule at this tick (NetworkPlan.up). An outage alert passes `ignore=Fault.POWER`:
    the hub's reserve sends it although the premises is unpowered."""
    ok = fault == 0 if ignore == 0 else (fault & np.uint8(~ignore & 0xFF)) == 0
    return ok & up_area[area, wan]


def reachable_now(*, smets: np.ndarray, fault: np.ndarray, area: np.ndarray, wan: np.ndarray,
                  up_area: np.ndarray) -> np.ndarray:
    """The rule: on the DCC, no fault bit set, and its network (area x technology) up."""
    return on_dcc(smets) & wan_up(fault, area, wan, up_area)


def reachable(hs: HubColumns, rows: np.ndarray | slice | int, up_area: np.ndarray) -> np.ndarray:
    """`reachable_now` for rows of a shard's state (an index array, a slice or one row)."""
    c = hs.cols
    return reachable_now(smets=c["smets"][rows], fault=c["fault"][rows], area=c["area"][rows],
                         wan=c["wan"][rows], up_area=up_area)
