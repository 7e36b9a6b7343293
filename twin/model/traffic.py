"""Counting the messages a tick sends, where the network's queues need them: by CSP region and
message type (the figures every report shows), by link (CSP region x WAN technology) and, for
long-range radio in the North, by base station. Each count costs the hubs that send, never the
fleet; the fleet-level queues (twin.model.capacity) read them from the merged summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from twin.model.catalog import AREA_CSP, N_CSP, N_LINKS, N_WAN, Csp, WanTech
from twin.model.params import NORTH_BASE_STATIONS
from twin.model.summary import TickSummary

if TYPE_CHECKING:
    from twin.model.state import HubState

_LRR_NORTH = int(Csp.NORTH) * N_WAN + int(WanTech.LRR)  # the link whose hubs load base stations


def count_messages(s: TickSummary, kind: int, csp: np.ndarray, wan: np.ndarray, cell: np.ndarray,
                   weights: np.ndarray | int | None = None) -> None:
    """Add messages of type `kind` sent by hubs with these CSP codes, WAN technologies and cells
    (equal-length arrays; `weights` messages each, one if None) to `s`: by CSP, by link and, for
    North long-range radio hubs, by base station (the hub's cell).

    One pass over the hubs: each hub's link (CSP x WAN technology) or, on North radio, its base
    station is counted in one bincount; the counts by link and by CSP are sums of those, so
    counting all three costs about twice what counting by CSP alone did."""
    if csp.size == 0:
        return
    w = None if weights is None else np.broadcast_to(np.asarray(weights, np.int64), csp.shape)
    link = (np.asarray(csp).astype(np.uint16) * np.uint16(N_WAN) + np.asarray(wan).astype(np.uint16, copy=False))
    # North radio hubs are counted by base station instead (slots after the links), their link's
    # count being the base stations' sum: one bincount over the hubs for all three.
    slot = np.where(link == _LRR_NORTH, np.asarray(cell).astype(np.uint16, copy=False) + np.uint16(N_LINKS), link)
    counts = np.bincount(slot, weights=w, minlength=N_LINKS + NORTH_BASE_STATIONS).astype(np.int64)
    bs = counts[N_LINKS:N_LINKS + NORTH_BASE_STATIONS]
    by_link = counts[:N_LINKS].copy()
    by_link[_LRR_NORTH] = bs.sum()
    s.link_messages[:, kind] += by_link
    s.messages[:, kind] += by_link.reshape(N_CSP, N_WAN).sum(axis=1)
    s.bs_messages += bs


def count_rows(s: TickSummary, kind: int, state: HubState, rows: np.ndarray,
               weights: np.ndarray | int | None = None) -> None:
    """`count_messages` for the hubs at `rows` of `state`."""
    if rows.size == 0:
        return
    c = state.cols
    count_messages(s, kind, AREA_CSP[c["area"][rows]], c["wan"][rows], c["cell"][rows], weights)

