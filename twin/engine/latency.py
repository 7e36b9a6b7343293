"""What one Service Request's response time is now: the capacity model's answer
(`NetworkQueues.response_time`: queueing on its link, at the DSP stage and at a North base
station, transfer over the air, the device's time) as a small table taken once per observed tick,
so a request looks up its seconds without the plan lock, and an API replica gets the same table.

The table is immutable: the engine replaces it after each tick (and after a rewind or restart),
and a reader holding the old one reads a whole tick's figures, never half of two."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.model.capacity import NetworkQueues
from twin.model.catalog import MESSAGE_CLASS, N_LINKS, N_MESSAGE_TYPES, N_WAN, Csp, MessageType, TrafficClass, WanTech
from twin.model.params import NORTH_BASE_STATIONS, CapacityParams

_LRR_NORTH = int(Csp.NORTH) * N_WAN + int(WanTech.LRR)


@dataclass(frozen=True, eq=False)
class LatencyTable:
    """Response times, seconds, of a message sent after tick `tick` (the last one the queues
    observed; -1 before the first): `link_s[link, message type]` for each CSP x WAN link
    (twin.model.capacity.LINK_NAMES order) and MessageType, without any base-station wait, and
    `cell_wait_s[cell]` the wait at each North base station (long-range radio hubs only; empty
    when none is queueing)."""

    tick: int
    link_s: np.ndarray  # (N_LINKS, N_MESSAGE_TYPES) float64
    cell_wait_s: np.ndarray  # (NORTH_BASE_STATIONS,) float64, or (0,)

    @classmethod
    def of(cls, queues: NetworkQueues, p: CapacityParams, tick: int) -> LatencyTable:
        """The table of `queues` now: `NetworkQueues.response_time` for every link, message type
        and North base station at once, as whole arrays (the model's per-request formula, which
        tests/unit/test_latency_table.py holds it to): each class's wait at the end of the last
        tick on the link and at the DSP stage, plus the message's transfer over the link's
        technology and its class's device time; a base station's backlog over its rate. Cost:
        links x types plus the base stations, about 0.2 ms a tick (under the plan lock; calling
        `response_time` for each took 30 ms with the base stations queueing)."""
        klass = MESSAGE_CLASS  # (types,) class of each message type
        wait = queues.last_wait[:, klass] + queues.last_dsp_wait[klass][None, :]  # (links, types)
        rate = np.array([p.wan_bytes_per_s.get(WanTech(i % N_WAN).name, np.inf) for i in range(N_LINKS)])
        size = np.array([p.message_bytes[MessageType(k).name] for k in range(N_MESSAGE_TYPES)], float)
        device = np.array([p.device_time_s[TrafficClass(int(c)).name] for c in klass])
        link_s = wait + size[None, :] / rate[:, None] + device[None, :]
        cells = np.zeros(0)
        if queues.bs_msgs_per_s > 0 and queues.bs_backlog.any():
            group = np.arange(NORTH_BASE_STATIONS) * queues.bs_groups // NORTH_BASE_STATIONS
            cells = queues.bs_backlog[group] / queues.bs_msgs_per_s
        return cls(tick, link_s.astype(float), cells.astype(float))

    def seconds(self, *, csp: int, wan: int, cell: int, message: MessageType) -> float:
        """Seconds a message of type `message` sent now to a hub on (`csp`, `wan`) attached to
        North base station `cell` (ignored elsewhere) takes to be answered. ValueError for a
        region or technology outside the catalog."""
        if not (0 <= csp < len(Csp) and 0 <= wan < N_WAN):
            raise ValueError(f"no link for region {csp}, technology {wan}")
        link = csp * N_WAN + wan
        s = float(self.link_s[link, int(message)])
        if link == _LRR_NORTH and 0 <= cell < self.cell_wait_s.size:
            s += float(self.cell_wait_s[cell])
        return s

    def to_lists(self) -> tuple[int, list[float], list[float]]:
        """(tick, link_s row-major, cell_wait_s) for the wire (an API replica's state)."""
        return self.tick, self.link_s.ravel().tolist(), self.cell_wait_s.tolist()

    @classmethod
    def from_lists(cls, tick: int, link_s: list[float], cell_wait_s: list[float]) -> LatencyTable:
        """The table `to_lists` gave; ValueError if the sizes are not the catalog's."""
        if len(link_s) != N_LINKS * N_MESSAGE_TYPES or len(cell_wait_s) not in (0, NORTH_BASE_STATIONS):
            raise ValueError(f"a latency table of {len(link_s)} link and {len(cell_wait_s)} cell figures")
        return cls(tick, np.array(link_s, float).reshape(N_LINKS, N_MESSAGE_TYPES), np.array(cell_wait_s, float))
