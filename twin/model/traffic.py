"""Counting the messages a tick sends, where the network's queues need them: by CSP region and
message type (the figures every report shows), by link (CSP region x WAN technology) and, for
long-range radio in the North, by base station. Each count costs the hubs that send, never the
fleet; the fleet-level queues (twin.model.capacity) read them from the merged summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from twin.model.catalog import AREA_CSP, N_CSP, N_LINKS, N_MESSAGE_TYPES, Csp, WanTech
from twin.model.params import NORTH_BASE_STATIONS
from twin.model.summary import TickSummary

if TYPE_CHECKING:
    from twin.model.state import HubState


def count_messages(s: TickSummary, kind: int, csp: np.ndarray, wan: np.ndarray, cell: np.ndarray,
                   weights: np.ndarray | int | None = None) -> None:
    """Add messages of type `kind` sent by hubs with these CSP codes, WAN technologies and cells
    (equal-length arrays; `weights` messages each, one if None) to `s`: by CSP, by link and, for
    North long-range radio hubs, by base station (the hub's cell)."""
    if csp.size == 0:
        return
    csp = np.asarray(csp, np.intp)
    w = None if weights is None else np.broadcast_to(np.asarray(weights, np.int64), csp.shape)
    s.messages[:, kind] += np.bincount(csp, weights=w, minlength=N_CSP).astype(np.int64)[:N_CSP]
    link = csp * (N_LINKS // N_CSP) + np.asarray(wan, np.intp)
    s.link_messages[:, kind] += np.bincount(link, weights=w, minlength=N_LINKS).astype(np.int64)[:N_LINKS]
    radio = (csp == Csp.NORTH) & (wan == WanTech.LRR)
    if radio.any():
        bs = np.asarray(cell, np.intp)[radio]
        s.bs_messages += np.bincount(bs, weights=None if w is None else w[radio],
                                     minlength=NORTH_BASE_STATIONS).astype(np.int64)[:NORTH_BASE_STATIONS]


def count_rows(s: TickSummary, kind: int, state: HubState, rows: np.ndarray,
               weights: np.ndarray | int | None = None) -> None:
    """`count_messages` for the hubs at `rows` of `state`."""
    if rows.size == 0:
        return
    c = state.cols
    count_messages(s, kind, AREA_CSP[c["area"][rows]], c["wan"][rows], c["cell"][rows], weights)


assert N_LINKS * N_MESSAGE_TYPES < 1_000  # a summary's per-link counts stay a few hundred numbers
