"""Counting the alerts a tick sends into its summary: by CSP and alert kind, per second for the
peak, and (given the hubs' rows) each alert for subscribers. Used by the kernel, prepayment and the
operations alike, so it sits below all of them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from twin.model.catalog import N_ALERT_KINDS, N_AREA_CODES, N_CSP, MessageType
from twin.model.params import TICK_SECONDS
from twin.model.summary import TickSummary

if TYPE_CHECKING:
    from twin.model.state import HubState


def count_alerts(s: TickSummary, csp: np.ndarray, kind: np.ndarray, sec: np.ndarray,
                 state: HubState | None = None, rows: np.ndarray | None = None) -> None:
    """Count alerts sent in this tick by CSP and kind, and per second for the peak; with the
    hubs' rows, also record each alert for subscribers."""
    if csp.size == 0:
        return
    csp, kind = np.asarray(csp, np.intp), np.asarray(kind, np.intp)
    if state is not None and rows is not None:
        c = state.cols
        new = {"hub": state.offset + rows.astype(np.int64), "kind": kind.astype(np.uint8),
               "sec": np.asarray(sec, np.int64), "area": c["area"][rows], "supplier": c["supplier"][rows],
               "gas_supplier": c["gas_supplier"][rows]}
        if s.alert_events:
            s.alert_events = {k: np.concatenate([s.alert_events[k], v]) for k, v in new.items()}
        else:
            s.alert_events = new
    s.alerts += np.bincount(csp * N_ALERT_KINDS + kind, minlength=N_CSP * N_ALERT_KINDS).reshape(N_CSP, -1)
    s.messages[:, MessageType.ALERT] += np.bincount(csp, minlength=N_CSP)
    if state is not None and rows is not None:
        s.area_alerts += np.bincount(state.cols["area"][rows], minlength=N_AREA_CODES)
    dense = np.bincount(np.concatenate([np.repeat(s.alert_seconds, s.alert_second_counts), sec]),
                        minlength=TICK_SECONDS)
    nz = np.flatnonzero(dense)
    s.alert_seconds, s.alert_second_counts = nz, dense[nz].astype(np.int64)
