"""Counting the alerts a tick sends into its summary: by CSP and alert kind, per second for the
peak, and (given the hubs' rows) each alert for subscribers. Used by the kernel, prepayment and the
operations alike, so it sits below all of them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from twin.model.catalog import AREA_CSP, N_ALERT_KINDS, N_AREA_CODES, N_CSP, N_LINKS, N_WAN, MessageType
from twin.model.params import TICK_SECONDS
from twin.model.summary import BIN_SECONDS, N_BINS, TickSummary
from twin.model.traffic import count_messages

if TYPE_CHECKING:
    from twin.model.state import HubState


def count_alerts(s: TickSummary, state: HubState, rows: np.ndarray, kind: np.ndarray, sec: np.ndarray) -> None:
    """Count the alerts the hubs at `rows` of `state` send in this tick (their kinds, and seconds
    into the tick): by CSP and kind, as ALERT messages by link and minute (the network's queues),
    per second for the peak, and each alert for subscribers."""
    if rows.size == 0:
        return
    rows, kind = np.asarray(rows, np.intp), np.asarray(kind, np.intp)
    sec = np.asarray(sec, np.int64)
    c = state.cols
    area, wan = c["area"][rows], c["wan"][rows]
    csp = AREA_CSP[area].astype(np.intp)
    new = {"hub": state.offset + rows.astype(np.int64), "kind": kind.astype(np.uint8),
           "sec": sec, "area": area, "supplier": c["supplier"][rows], "gas_supplier": c["gas_supplier"][rows]}
    if s.alert_events:
        s.alert_events = {k: np.concatenate([s.alert_events[k], v]) for k, v in new.items()}
    else:
        s.alert_events = new
    s.alerts += np.bincount(csp * N_ALERT_KINDS + kind, minlength=N_CSP * N_ALERT_KINDS).reshape(N_CSP, -1)
    count_messages(s, MessageType.ALERT, csp, wan, c["cell"][rows])
    link = csp * N_WAN + wan.astype(np.intp)
    s.link_alert_minutes += np.bincount(link * N_BINS + sec // BIN_SECONDS,
                                        minlength=N_LINKS * N_BINS).reshape(N_LINKS, N_BINS)
    s.area_alerts += np.bincount(area, minlength=N_AREA_CODES)
    dense = np.bincount(np.concatenate([np.repeat(s.alert_seconds, s.alert_second_counts), sec]),
                        minlength=TICK_SECONDS)
    nz = np.flatnonzero(dense)
    s.alert_seconds, s.alert_second_counts = nz, dense[nz].astype(np.int64)
