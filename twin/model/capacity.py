"""The network's capacity: queues per link, per North base station and at the central DCC Data
Service Provider (DSP) stage, and the latency and service levels they give.

Fleet-level and exact for any shard layout: the shards count arrivals (twin.model.traffic) as
integers in their tick summaries, summaries merge by addition, and the queues run here on the
merged arrivals, once per tick, in one-minute bins (all bins in one pass, `serve_bins`). Their
cost grows with links x classes x bins, never with the fleet; alert storm protection costs the
alerts sent (shared/DESIGN.md, "Network capacity and service levels").

The queues are fluid: within a bin a stage serves `capacity x 60 s` of work, what it cannot
serve waits (backlog' = max(0, backlog + arrivals - capacity x bin)), and a message's wait is
the work queued ahead of it when its bin ends, in seconds at full rate. Work is measured in
seconds of a link's time: a message of `b` bytes takes max(1 / messages-per-second, b /
bytes-per-second) of it. Under FIFO (the default, see CapacityParams.policy) the oldest work is
served first and every class waits for the whole backlog; under priority a class waits for its
own backlog and that of the classes before it. Base stations are queued per tick. The DSP stage
sees every link's arrivals as they are offered (not as the links release them: the stages are
sized apart, and a congested link's output only ever smooths the DSP's load). A message's
latency is its link's wait, the DSP's, its base station's (North long-range radio), its transfer
time over the air and its device time (CapacityParams), held against its class's Target
Response Time; percentiles are exact weighted quantiles over the tick's (link, bin) latencies.

Alerts under load: alert storm protection (SECMP0062, at the DCC) discards repeats of one alert
code from one device beyond a threshold in a window, forwarding one copy per period (AlertStorm);
a throttled alert has crossed its link but stops at the DSP stage. An alert that waits longer
than the retry window (300 s) reaches the DCC too late for delivery and goes to the failed-alert
queue, from which the DSP stage's spare capacity redelivers the oldest first; what it has held
for two days expires. The 300 s and 2 days are the SEC's [C]; reading network delay as the cause
of a failed delivery is the model's [U]."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from twin.model.catalog import (
    AREA_CSP,
    CLASS_LABEL,
    MESSAGE_CLASS,
    N_ALERT_KINDS,
    N_CLASSES,
    N_CSP,
    N_LINKS,
    N_MESSAGE_TYPES,
    N_WAN,
    Csp,
    MessageType,
    TrafficClass,
    WanTech,
)
from twin.model.params import (
    DAYS_PER_MONTH,
    HALF_HOURS_PER_DAY,
    NORTH_BASE_STATIONS,
    TICK_SECONDS,
    CapacityParams,
    TrafficParams,
    once_per_params,
)
from twin.model.summary import BIN_SECONDS, N_BINS, TickSummary

# Congested North base stations are taken in this many groups of similar wait for the latency
# percentiles (within-target counts are exact), so a tick's cost stays bounded [U].
BS_LATENCY_GROUPS = 64
# How far back the age of the oldest queued message is traced, ticks (two days); older reads as this.
AGE_TICKS = 2 * HALF_HOURS_PER_DAY
LINK_NAMES = tuple(f"{Csp(c).name}/{WanTech(w).name}" for c in range(N_CSP) for w in range(N_WAN))
_LRR_NORTH = Csp.NORTH * N_WAN + WanTech.LRR
_LINK_CSP = np.repeat(np.arange(N_CSP), N_WAN)
_ALERT = int(TrafficClass.ALERT)
# The latency group (CSP x N_CLASSES + class) of every (link, class, bin), and its class.
_GRP = np.broadcast_to((_LINK_CSP[:, None, None] * N_CLASSES + np.arange(N_CLASSES)[None, :, None]),
                       (N_LINKS, N_CLASSES, N_BINS))
_GRP_FLAT = _GRP.ravel()
_GRP_CLASS_FLAT = _GRP_FLAT % N_CLASSES
BS_MIN_METERS = 2_000  # [U] see NetworkQueues.size


def link_index(name: str) -> int:
    """The link index of a "CSP/WAN" name (params.CAPACITY_LINKS)."""
    return LINK_NAMES.index(name)


def busiest_rates(traffic: TrafficParams, sizes: dict[str, int]) -> tuple[float, float]:
    """(messages, bytes) per connected meter per second at the busiest half-hour of the nominal
    day of `traffic`'s calibration: daily read bursts on their profile, the rest of the month's
    messages and its device alerts on the background profile."""
    per_s = 1.0 / (DAYS_PER_MONTH * 86_400)
    daily = np.asarray(traffic.daily_read_profile, float)
    daily = daily / daily.mean()
    back = np.asarray(traffic.background_profile, float)
    back = back / back.mean()
    reads = traffic.daily_reads_per_meter_month * per_s
    rest = max(traffic.monthly_messages - traffic.daily_reads_per_meter_month, 0.0) * per_s
    alerts = traffic.monthly_alerts * per_s
    mix_total = sum(traffic.background_mix.values())
    rest_bytes = sum(sizes[k] * v / mix_total for k, v in traffic.background_mix.items())
    msgs = reads * daily + (rest + alerts) * back
    nbytes = reads * sizes["DAILY_READ"] * daily + (rest * rest_bytes + alerts * sizes["ALERT"]) * back
    return float(msgs.max()), float(nbytes.max())


@dataclass
class CapacityReport:
    """How the network carried one tick. Arrays by link are (N_LINKS,) in LINK_NAMES order; by
    CSP and class (N_CSP, N_CLASSES). Seconds, messages and shares (0..1)."""

    tick: int
    link_capacity: np.ndarray  # messages per second each link serves (0: not modelled, unconstrained)
    link_utilisation: np.ndarray  # work offered this tick / the link's capacity over the tick
    link_backlog: np.ndarray  # messages queued on each link at the end of the tick
    messages: np.ndarray  # (N_CSP, N_CLASSES) messages that arrived this tick
    latency_p50: np.ndarray  # (N_CSP, N_CLASSES) seconds, of this tick's arrivals
    latency_p95: np.ndarray
    latency_p99: np.ndarray
    within_target: np.ndarray  # (N_CSP, N_CLASSES) share of this tick's arrivals within target (1 if none)
    backlog: np.ndarray  # (N_CSP, N_CLASSES) messages queued at the end of the tick
    oldest_age_s: np.ndarray  # (N_CSP, N_CLASSES) age of the oldest queued message (0 if none)
    bs_peak_utilisation: float  # the busiest North base station's offered load / capacity
    bs_congested: int  # North base stations offered more than they serve this tick
    bs_backlog: int  # messages queued at North base stations
    dsp_utilisation: float
    alerts_delayed: np.ndarray  # (N_CSP,) alerts that waited in a queue (over CapacityParams.alert_delayed_s)
    alerts_throttled: np.ndarray  # (N_CSP,) discarded by alert storm protection
    alerts_failed: np.ndarray  # (N_CSP,) not delivered within the retry window: to the failed queue
    alerts_redelivered: np.ndarray  # (N_CSP,) delivered from the failed queue
    alerts_expired: np.ndarray  # (N_CSP,) held two days in the failed queue, then dropped
    failed_queue: np.ndarray  # (N_CSP,) alerts in the failed queue at the end of the tick

    def to_dict(self) -> dict[str, Any]:
        """The figures by name: links ("CENTRAL/G2"), CSPs ("Central") and classes ("on-demand")."""
        csps = [c.name.title() for c in Csp]
        used = [i for i in range(N_LINKS) if self.link_capacity[i] > 0]

        def by_class(a: np.ndarray, digits: int = 3) -> dict[str, dict[str, float]]:
            return {c: {CLASS_LABEL[k]: round(float(a[i, k]), digits) for k in TrafficClass}
                    for i, c in enumerate(csps)}

        def by_csp(a: np.ndarray) -> dict[str, int]:
            return {c: int(a[i]) for i, c in enumerate(csps)}

        return {
            "links": {LINK_NAMES[i]: {"capacity_per_s": round(float(self.link_capacity[i]), 3),
                                      "utilisation": round(float(self.link_utilisation[i]), 4),
                                      "backlog": int(self.link_backlog[i])} for i in used},
            "messages": by_class(self.messages, 0),
            "latency_p50_s": by_class(self.latency_p50, 2),
            "latency_p95_s": by_class(self.latency_p95, 2),
            "latency_p99_s": by_class(self.latency_p99, 2),
            "within_target": by_class(self.within_target, 4),
            "backlog": by_class(self.backlog, 0),
            "oldest_age_s": by_class(self.oldest_age_s, 0),
            "base_stations": {"peak_utilisation": round(self.bs_peak_utilisation, 4),
                              "congested": self.bs_congested, "backlog": self.bs_backlog},
            "dsp_utilisation": round(self.dsp_utilisation, 4),
            "alerts": {"delayed": by_csp(self.alerts_delayed), "throttled": by_csp(self.alerts_throttled),
                       "failed": by_csp(self.alerts_failed), "redelivered": by_csp(self.alerts_redelivered),
                       "expired": by_csp(self.alerts_expired), "failed_queue": by_csp(self.failed_queue)},
        }


def serve(backlog: np.ndarray, work: np.ndarray, budget: np.ndarray | float, order: np.ndarray | None
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One bin of fluid queues (`serve_bins` with one bin).

    `backlog` and `work` are (links, classes) seconds of work (queued before the bin, arriving in
    it); each link serves `budget` seconds (a (links,) array or one number). `order` is the class
    priority order (class indices, first served first) or None for FIFO. Returns (backlog after
    the bin, each class's wait in seconds at the end of the bin, budget left)."""
    budget = np.broadcast_to(np.asarray(budget, float), backlog.shape[:1])
    out, waits, left = serve_bins(backlog, work[:, :, None], budget, order)
    return out, waits[:, :, 0], left


def lindley(backlog: np.ndarray, work: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """The backlog of single fluid queues after each of several bins, all bins at once.

    `backlog` (n,) seconds of work queued at the start, `work` (n, bins) arriving per bin,
    `budget` (n,) seconds served per bin. Returns (n, bins): b_k = max(0, b_(k-1) + w_k - budget),
    from Lindley's recursion solved in closed form, b_k = X_k - min(-b_0, min_(j<=k) X_j) with
    X_k the cumulative work less the cumulative budget (X_0 = 0)."""
    x = np.cumsum(work - budget[:, None], axis=1)
    low = np.minimum(np.minimum.accumulate(x, axis=1), 0.0)
    return np.maximum(x - np.minimum(-backlog[:, None], low), 0.0)


def serve_bins(backlog: np.ndarray, work: np.ndarray, budget: np.ndarray, order: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`serve` over every bin of a tick in one pass (no loop over bins): the same queues, the
    same results up to rounding.

    `backlog` (links, classes) seconds of work queued before the first bin, `work` (links,
    classes, bins) arriving per bin, `budget` (links,) seconds each link serves per bin (finite).
    Returns (backlog after the last bin (links, classes), waits (links, classes, bins): each
    class's wait at the end of each bin, seconds, budget left over the tick (links,) seconds).

    Strict priority is exact by aggregation: the classes before and including class k, taken
    together, form one work-conserving queue, so each such prefix follows Lindley's recursion
    and a class's backlog is the difference of two prefixes. Under FIFO the whole link is one
    queue, every class waits for all of it and what stays queued at the end is the newest work:
    the last bins' arrivals, then (if the backlog reaches back so far) the backlog carried in."""
    n_links, n_cls, n_bins = work.shape
    budget = np.asarray(budget, float)
    served_budget = budget * n_bins
    if order is None:
        old = backlog.sum(axis=1)  # (links,)
        w_tot = work.sum(axis=1)  # (links, bins)
        total_b = lindley(old, w_tot, budget)  # (links, bins)
        waits = np.repeat(total_b[:, None, :], n_cls, axis=1)
        end = total_b[:, -1]
        after = np.cumsum(w_tot[:, ::-1], axis=1)[:, ::-1] - w_tot  # arrived after each bin
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(w_tot > 0, (end[:, None] - after) / np.where(w_tot > 0, w_tot, 1.0), 0.0)
            arrived = w_tot.sum(axis=1)
            keep_old = np.where(old > 0, (end - arrived) / np.where(old > 0, old, 1.0), 0.0)
        frac = np.clip(frac, 0.0, 1.0)
        out = (work * frac[:, None, :]).sum(axis=2) + backlog * np.clip(keep_old, 0.0, 1.0)[:, None]
        left = served_budget - (old + arrived - end)
        return out, waits, np.maximum(left, 0.0)
    order = np.asarray(order, np.intp)
    # Prefixes of the priority order: queue k holds the classes order[0..k].
    pre_b = np.cumsum(backlog[:, order], axis=1)  # (links, classes)
    pre_w = np.cumsum(work[:, order, :], axis=1)  # (links, classes, bins)
    agg = lindley(pre_b.reshape(-1), pre_w.reshape(-1, n_bins), np.repeat(budget, n_cls)
                  ).reshape(n_links, n_cls, n_bins)
    waits = np.empty_like(agg)
    waits[:, order, :] = agg
    own = np.diff(agg[:, :, -1], axis=1, prepend=0.0)
    out = np.empty((n_links, n_cls))
    out[:, order] = np.maximum(own, 0.0)
    left = served_budget - (pre_b[:, -1] + pre_w[:, -1, :].sum(axis=1) - agg[:, -1, -1])
    return out, waits, np.maximum(left, 0.0)


@dataclass
class AlertStorm:
    """Alert storm protection state (SECMP0062): per (hub, alert kind) seen within its window,
    the window's start (second of the run), the alerts in it and the last period a copy of a
    repeat was forwarded in (-1: none). Sorted by key = hub x N_ALERT_KINDS + kind; only devices
    whose window is open are held, so it grows with the alerts sent, not the fleet.

    The rule, per device and alert kind (SECMP0062 [C]; its figures are parameters [U]): the
    first alert opens a window of `alert_storm_window_s`; the first `alert_storm_threshold`
    alerts in the window are forwarded; beyond them, the window is cut into periods of
    `alert_storm_period_s` from its start and one alert per period is forwarded (the first),
    the rest discarded (throttled). The first alert at or after the window's end opens the next
    window. Windows are fixed, not sliding: the DCC counts from the first alert [U]."""

    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    start: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    count: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    period: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def apply(self, hub: np.ndarray, kind: np.ndarray, t: np.ndarray, p: CapacityParams) -> np.ndarray:
        """Pass this tick's alerts through the rule: `hub` ids, alert `kind`s and `t` seconds of
        the run, equal-length arrays in any order, none earlier than an alert already passed.
        Returns a bool array, True where an alert is throttled (discarded).

        Layout-independent: decided in (hub, kind, time) order, whatever order the shards'
        alerts came in. Whole-array work in rounds, one per window a device opens within the
        batch (at most about tick / window + 1), so a GB-wide storm costs its alerts, O(n log n)."""
        n = hub.size
        throttled = np.zeros(n, bool)
        if n == 0:
            return throttled
        win, thr, per_s = p.alert_storm_window_s, p.alert_storm_threshold, p.alert_storm_period_s
        key = hub.astype(np.int64) * N_ALERT_KINDS + kind.astype(np.int64)
        t = np.asarray(t, np.int64)
        t0 = int(t.min())
        span = int(t.max()) - t0 + 1
        # One integer sort key where it fits in 62 bits (several times faster than lexsort).
        one_key = int(key.max()) < (1 << 62) // span
        order = np.argsort(key * span + (t - t0)) if one_key else np.lexsort((t, key))
        key_s, t_s = key[order], t[order]
        starts = np.flatnonzero(np.concatenate([[True], key_s[1:] != key_s[:-1]]))
        uniq, first = key_s[starts], starts
        dev = np.cumsum(np.concatenate([[False], key_s[1:] != key_s[:-1]]))  # device of each sorted alert
        # The held state of each device (-1: no window).
        pos = np.searchsorted(self.keys, uniq)
        known = pos < self.keys.size
        known[known] = self.keys[pos[known]] == uniq[known]
        ws = np.full(uniq.size, -1, np.int64)
        cnt = np.zeros(uniq.size, np.int64)
        last = np.full(uniq.size, -1, np.int64)
        ws[known], cnt[known], last[known] = self.start[pos[known]], self.count[pos[known]], self.period[pos[known]]
        # A held window that has closed by the device's first alert here gives way to a new one.
        fresh = (ws < 0) | (t_s[first] >= ws + win)
        ws[fresh], cnt[fresh], last[fresh] = t_s[first[fresh]], 0, -1
        todo = np.arange(n)  # sorted alerts not yet placed in a window, each device's in time order
        while todo.size:
            d = dev[todo]
            inside = t_s[todo] < ws[d] + win  # a prefix of each device's remaining alerts
            idx, dw = todo[inside], d[inside]
            head = np.flatnonzero(np.concatenate([[True], dw[1:] != dw[:-1]]))
            seg = np.repeat(head, np.diff(np.append(head, dw.size)))  # where each device's alerts start in idx
            rank = cnt[dw] + (np.arange(idx.size) - seg) + 1  # the alert's number in its window
            beyond = rank > thr
            k = (t_s[idx] - ws[dw]) // per_s  # its period in the window
            same_prev = np.zeros(idx.size, bool)
            same_prev[1:] = (dw[1:] == dw[:-1]) & beyond[:-1] & (k[1:] == k[:-1])
            copy = beyond & ~same_prev & (k != last[dw])  # the period's one forwarded copy
            throttled[order[idx[beyond & ~copy]]] = True
            cnt += np.bincount(dw, minlength=uniq.size)
            if copy.any():
                np.maximum.at(last, dw[copy], k[copy])
            todo = todo[~inside]
            if todo.size:  # the next window of each device with alerts left opens at the first
                nd, at = np.unique(dev[todo], return_index=True)
                ws[nd], cnt[nd], last[nd] = t_s[todo[at]], 0, -1
        # Into the held state: known devices updated in place, new ones inserted in key order.
        self.start, self.count, self.period = self.start.copy(), self.count.copy(), self.period.copy()
        self.start[pos[known]], self.count[pos[known]], self.period[pos[known]] = ws[known], cnt[known], last[known]
        new = ~known
        at = pos[new]
        self.keys = np.insert(self.keys, at, uniq[new])
        self.start = np.insert(self.start, at, ws[new])
        self.count = np.insert(self.count, at, cnt[new])
        self.period = np.insert(self.period, at, last[new])
        return throttled

    def expire(self, now_s: int, window_s: int) -> None:
        """Forget devices whose window has closed by `now_s` (their next alert opens a new one)."""
        keep = self.start + window_s > now_s
        if not keep.all():
            self.keys, self.start, self.count, self.period = (
                self.keys[keep], self.start[keep], self.count[keep], self.period[keep])


# Which class each message type belongs to, as a (types, classes) 0/1 matrix: counts by type @ it
# give counts by class.
_ONEHOT = np.zeros((N_MESSAGE_TYPES, N_CLASSES))
_ONEHOT[np.arange(N_MESSAGE_TYPES), MESSAGE_CLASS] = 1.0


@dataclass(frozen=True)
class _Constants:
    """What a tick needs of CapacityParams as arrays: the priority order (None: FIFO), bytes by
    message type, over-the-air bytes per second by link (inf where not given), device time and
    Target Response Time by class, seconds."""

    order: np.ndarray | None
    sizes: np.ndarray
    wan_rate: np.ndarray
    device: np.ndarray
    target: np.ndarray
    mean_size: np.ndarray  # bytes by class, the mean over its message types (a class that sent nothing)


@once_per_params
def _constants(p: CapacityParams) -> _Constants:
    """`p` as arrays, built once per parameter set (a run has one), not once per tick."""
    sizes = np.array([p.message_bytes[m.name] for m in MessageType], float)
    k = _Constants(
        order=None if p.policy == "fifo" else np.array([TrafficClass[c] for c in p.priority], np.intp),
        sizes=sizes,
        wan_rate=np.array([p.wan_bytes_per_s.get(WanTech(i % N_WAN).name, np.inf) for i in range(N_LINKS)]),
        device=np.array([p.device_time_s[c.name] for c in TrafficClass], float),
        target=np.array([p.target_response_s[c.name] for c in TrafficClass], float),
        mean_size=(sizes[None, :] @ _ONEHOT) / _ONEHOT.sum(axis=0))
    return k


class NetworkQueues:
    """The queues' state between ticks, held by the fleet planner (so checkpoints, rewind and
    branches carry it). Sized from the first tick it observes (its fleet's meters per CSP), so a
    20,000-hub run meets its network as loaded as the whole fleet meets GB's."""

    def __init__(self) -> None:
        self.sized = False
        self.link_msgs_per_s = np.zeros(N_LINKS)  # 0: not modelled
        self.link_bytes_per_s = np.zeros(N_LINKS)
        self.bs_msgs_per_s = 0.0
        self.dsp_msgs_per_s = 0.0
        self.backlog = np.zeros((N_LINKS, N_CLASSES))  # seconds of work
        self.dsp_backlog = np.zeros((1, N_CLASSES))  # seconds of work
        self.bs_groups = NORTH_BASE_STATIONS  # modelled base stations (cells grouped in a small fleet)
        self.bs_backlog = np.zeros(NORTH_BASE_STATIONS)  # messages, by modelled base station
        # Cumulative work arrived per (link, class) at the end of each of the last AGE_TICKS ticks,
        # and served so far: where the oldest queued message came in.
        self.arrived = np.zeros((N_LINKS, N_CLASSES))
        self.served = np.zeros((N_LINKS, N_CLASSES))
        self.arrived_at = np.zeros((AGE_TICKS, N_LINKS, N_CLASSES))
        # Failed alerts by the tick they failed in (ring of the hold period) and link.
        self.failed = np.zeros((1, N_LINKS))
        self.storm = AlertStorm()
        self.last_wait = np.zeros((N_LINKS, N_CLASSES))  # each class's wait at the end of the last tick
        self.last_dsp_wait = np.zeros(N_CLASSES)

    # -- sizing ------------------------------------------------------------------------------
    def size(self, s: TickSummary, p: CapacityParams, traffic: TrafficParams) -> None:
        """Size every stage from the first observed tick's meters per CSP (params docstring)."""
        design = replace(traffic, calibration_year=p.design_year, messages_per_meter_month=None,
                         device_alerts_per_meter_month=None)
        msgs, nbytes = busiest_rates(design, p.message_bytes)
        u = p.design_utilisation
        meters = s.meters.astype(float)
        for name, share in p.link_design_share.items():
            i = link_index(name)
            factor = p.link_capacity_factor.get(name, 1.0)
            m = max(meters[_LINK_CSP[i]] * share, 1.0)
            self.link_msgs_per_s[i] = m * msgs / u * factor
            self.link_bytes_per_s[i] = m * nbytes / u * factor
        # A fleet smaller than GB's holds fewer base stations' worth of hubs: its cells are grouped
        # so each modelled base station serves at least BS_MIN_METERS (else a handful of hubs'
        # daily reads, landing in one tick, would read as a congested base station).
        north = max(meters[Csp.NORTH], 1.0)
        self.bs_groups = int(min(NORTH_BASE_STATIONS, max(1, north // BS_MIN_METERS)))
        self.bs_msgs_per_s = north * msgs / self.bs_groups / u * p.base_station_factor
        self.bs_backlog = np.zeros(self.bs_groups)
        self.dsp_msgs_per_s = max(meters.sum(), 1.0) * msgs / u * p.dsp_factor
        hold = max(1, -(-p.failed_alert_hold_s // TICK_SECONDS))
        self.failed = np.zeros((hold, N_LINKS))
        self.sized = True

    # -- the tick ------------------------------------------------------------------------------
    def step(self, s: TickSummary, p: CapacityParams, traffic: TrafficParams) -> CapacityReport:
        """Run this tick's arrivals (the merged, finished summary `s`: `link_messages`,
        `link_alert_minutes`, `bs_messages`, `alert_events`) through the queues and return how
        the network carried them. Sets `s.alert_events["throttled"]` (bool per alert). Sizes
        the stages on the first call. Costs links x classes x bins plus the tick's alerts
        (about 1 ms a tick without a storm on the reference machine), never the fleet."""
        # Divisions here guard their zero denominators with np.where (the discarded lanes may warn):
        # one errstate for the whole tick, entering one costs about as much as a small array op.
        with np.errstate(invalid="ignore", divide="ignore"):
            return self._step(s, p, traffic)

    def _step(self, s: TickSummary, p: CapacityParams, traffic: TrafficParams) -> CapacityReport:
        if not self.sized:
            self.size(s, p, traffic)
        k = _constants(p)
        order, sizes, onehot = k.order, k.sizes, _ONEHOT
        cap = self.link_msgs_per_s
        modelled = cap > 0
        per_msg = np.where(modelled[:, None],
                           np.maximum(1.0 / np.where(modelled, cap, 1.0)[:, None],
                                      sizes[None, :] / np.where(modelled, self.link_bytes_per_s, 1.0)[:, None]),
                           0.0)  # (links, types) seconds of link time per message
        arrivals = s.link_messages.astype(float)  # (links, types)
        n_class = arrivals @ onehot  # (links, classes) messages
        w_class = (arrivals * per_msg) @ onehot  # seconds of work
        # Per bin: alerts as they were sent, the rest spread evenly over the tick.
        alert_bins = s.link_alert_minutes.astype(float)  # (links, bins)
        alert_total = alert_bins.sum(axis=1)
        spread = n_class.copy()
        spread[:, _ALERT] = np.maximum(n_class[:, _ALERT] - alert_total, 0.0)  # background alerts
        work_per = np.where(n_class > 0, w_class / np.where(n_class > 0, n_class, 1.0), 0.0)
        n_bins = np.repeat((spread / N_BINS)[:, :, None], N_BINS, axis=2)  # (links, classes, bins)
        n_bins[:, _ALERT, :] += alert_bins
        w_bins = n_bins * work_per[:, :, None]
        # The DSP sees every link's messages (one message, one unit of its time).
        dsp_per = 1.0 / self.dsp_msgs_per_s
        dsp_in = n_bins.sum(axis=0)  # (classes, bins)
        # Alert storm protection runs at the DCC: a throttled alert crossed its CSP's link but
        # stops at the DSP stage (never queued there, delivered, delayed or failed).
        throttled = np.zeros(N_CSP)
        thr_bins = np.zeros((N_CSP, N_BINS))
        ev = s.alert_events
        if ev and ev["hub"].size:
            mask = self.storm.apply(ev["hub"], ev["kind"], s.tick * TICK_SECONDS + ev["sec"], p)
            s.alert_events["throttled"] = mask
            csp_of = AREA_CSP[ev["area"][mask]].astype(np.intp)
            np.add.at(thr_bins, (csp_of, (ev["sec"][mask] // BIN_SECONDS).astype(np.intp)), 1.0)
            throttled = thr_bins.sum(axis=1)
        self.storm.expire((s.tick + 1) * TICK_SECONDS, p.alert_storm_window_s)
        dsp_in[_ALERT] = np.maximum(dsp_in[_ALERT] - thr_bins.sum(axis=0), 0.0)

        # Every bin of the tick at once (serve_bins); links not modelled carry their traffic at once.
        waits = np.zeros((N_LINKS, N_CLASSES, N_BINS))
        backlog = np.zeros((N_LINKS, N_CLASSES))
        backlog[modelled], waits[modelled], _ = serve_bins(
            self.backlog[modelled], w_bins[modelled], np.full(int(modelled.sum()), float(BIN_SECONDS)), order)
        dsp_backlog, dw, dsp_left = serve_bins(self.dsp_backlog, (dsp_in * dsp_per)[None],
                                               np.array([float(BIN_SECONDS)]), order)
        dsp_waits = dw[0]
        self.backlog, self.dsp_backlog = backlog, dsp_backlog

        # Base stations, per tick: what North long-range radio hubs sent through each (background
        # traffic shared as the hub-driven traffic is), against each one's capacity.
        g = self.bs_groups
        bs_in = np.bincount(np.arange(NORTH_BASE_STATIONS) * g // NORTH_BASE_STATIONS, weights=s.bs_messages,
                            minlength=g)
        lrr_total = n_class[_LRR_NORTH].sum()
        # Background traffic alone (no hub-driven count by cell) is shared evenly: the base
        # stations are sized on the mean.
        bs_in = bs_in / bs_in.sum() * lrr_total if bs_in.sum() > 0 else np.full(g, lrr_total / g)
        bs_cap = self.bs_msgs_per_s * TICK_SECONDS
        bs_q = self.bs_backlog + bs_in
        self.bs_backlog = np.maximum(bs_q - bs_cap, 0.0)
        bs_wait = self.bs_backlog / self.bs_msgs_per_s

        # Transfer and device time per class (the class's mean over its types on each link).
        wan_rate = k.wan_rate
        bytes_class = (arrivals * sizes[None, :]) @ onehot
        mean_bytes = np.where(n_class > 0, bytes_class / np.where(n_class > 0, n_class, 1.0), k.mean_size)
        transfer = mean_bytes / wan_rate[:, None]
        device, target = k.device, k.target
        base = waits + dsp_waits[None, :, :] + (transfer + device[None, :])[:, :, None]  # (links, classes, bins)

        # Latencies per (CSP, class): every (link, bin) of the tick is one latency with its
        # messages as weight; percentiles are exact weighted quantiles of these (a few thousand
        # values, never per message), and within-target counts exact.
        n_grp = N_CSP * N_CLASSES
        grp = _GRP  # (links, classes, bins)
        within: np.ndarray = np.zeros(n_grp)
        others = np.ones(N_LINKS, bool)
        lat_parts, wt_parts, grp_parts = [], [], []
        congested = np.flatnonzero(bs_wait > 0)
        if congested.size and bs_in.sum() > 0:
            # North radio messages wait at their base station too: each congested base station's
            # share of them waits its wait, the rest none. Exact within-target counts; for the
            # percentiles the congested base stations are taken in BS_LATENCY_GROUPS groups of
            # similar wait (each at its group's mean wait), so the cost stays bounded.
            others[_LRR_NORTH] = False
            share = bs_in[congested] / bs_in.sum()
            rest = 1.0 - share.sum()
            o = np.argsort(bs_wait[congested], kind="stable")
            w_sorted, s_sorted = bs_wait[congested][o], share[o]
            cum_share = np.concatenate([[0.0], np.cumsum(s_sorted)])
            lrr_base, lrr_n = base[_LRR_NORTH], n_bins[_LRR_NORTH]  # (classes, bins)
            slack = target[:, None] - lrr_base
            ok = cum_share[np.searchsorted(w_sorted, slack, side="right")] + rest * (slack >= 0)
            np.add.at(within, Csp.NORTH * N_CLASSES + np.arange(N_CLASSES), (lrr_n * ok).sum(axis=1))
            cuts = np.linspace(0, w_sorted.size, min(BS_LATENCY_GROUPS, w_sorted.size) + 1).astype(np.intp)
            g_share = np.add.reduceat(s_sorted, cuts[:-1])
            # (A base station with a backlog may have no arrivals: no share, no wait.)
            g_wait = np.where(g_share > 0, np.add.reduceat(w_sorted * s_sorted, cuts[:-1]) / g_share, 0.0)
            g_wait = np.concatenate([[0.0], g_wait])
            g_share = np.concatenate([[rest], g_share])
            lat_parts.append((lrr_base[:, :, None] + g_wait).ravel())
            wt_parts.append((lrr_n[:, :, None] * g_share).ravel())
            grp_parts.append(np.repeat(grp[_LRR_NORTH].ravel(), g_wait.size))
        if others.all():  # no base station congested: every (link, class, bin), in its constant group
            lat_o, n_o, grp_o = base.ravel(), n_bins.ravel(), _GRP_FLAT
            # Into zeros, in index order, as np.add.at would: the same sums, bit for bit.
            within = np.bincount(grp_o, weights=n_o * (lat_o <= target[_GRP_CLASS_FLAT]), minlength=n_grp)
        else:
            lat_o, n_o, grp_o = base[others].ravel(), n_bins[others].ravel(), grp[others].ravel()
            np.add.at(within, grp_o, n_o * (lat_o <= target[grp_o % N_CLASSES]))
        lat_parts.append(lat_o)
        wt_parts.append(n_o)
        grp_parts.append(grp_o)
        quant = weighted_quantiles(np.concatenate(lat_parts), np.concatenate(wt_parts), np.concatenate(grp_parts),
                                   n_grp, (0.50, 0.95, 0.99))
        p50, p95, p99 = (quant[:, i].reshape(N_CSP, N_CLASSES) for i in range(3))

        # Whole message counts (floats holding integers): exact in any order of summation.
        messages = n_class.reshape(N_CSP, N_WAN, N_CLASSES).sum(axis=1)
        within_csp = within.reshape(N_CSP, N_CLASSES)
        within_share = np.where(messages > 0, np.minimum(within_csp / np.where(messages > 0, messages, 1.0), 1.0),
                                1.0)

        # Backlog in messages, and the age of the oldest queued message.
        last_per = np.where(work_per > 0, work_per, self._work_per_fallback(per_msg, onehot))
        backlog_msgs = np.where(last_per > 0, self.backlog / last_per, 0.0)
        age = self._oldest(s.tick, w_class)

        # Alerts: delayed (queued over `alert_delayed_s`), failed (not through the queues within the retry
        # window: they reach the DCC too late and go to the failed-alert queue), redelivered from
        # that queue, oldest first, with what the DSP stage had left this tick (redelivery is
        # the DCC's to its Users, not the WAN's), expired when held `failed_alert_hold_s`.
        alert_wait = waits[:, _ALERT, :] + dsp_waits[None, _ALERT, :]  # (links, bins)
        a_bins = n_bins[:, _ALERT, :]
        if thr_bins.any():  # else every alert is kept (a share of 1: the same numbers)
            a_csp = np.zeros((N_CSP, N_BINS))
            np.add.at(a_csp, _LINK_CSP, a_bins)
            # The throttled ones, shared among their CSP's links as that minute's alerts are.
            kept = np.where(a_csp > 0, 1.0 - np.minimum(thr_bins / np.where(a_csp > 0, a_csp, 1.0), 1.0), 1.0)
            a_bins = a_bins * kept[_LINK_CSP]
        delayed_l = (a_bins * (alert_wait > p.alert_delayed_s)).sum(axis=1)
        failed_l = (a_bins * (alert_wait > p.alert_retry_s)).sum(axis=1)
        hold = self.failed.shape[0]
        slot = s.tick % hold
        if self.failed.any():
            expired_l = self.failed[slot].copy()  # failed `hold` ticks ago, never redelivered
            self.failed[slot] = 0.0
            ring = (slot + np.arange(1, hold + 1)) % hold  # oldest first
            per_slot = self.failed[ring].sum(axis=1)
            can = float(dsp_left[0]) / dsp_per  # messages the DSP stage could still pass this tick
            take = np.clip(can - (np.cumsum(per_slot) - per_slot), 0.0, per_slot)
            share = np.where(per_slot > 0, take / np.where(per_slot > 0, per_slot, 1.0), 0.0)
            moved = self.failed[ring] * share[:, None]
            self.failed[ring] -= moved
            redelivered_l = moved.sum(axis=0)
        else:  # an empty failed-alert queue: nothing expires, nothing to redeliver
            expired_l = redelivered_l = np.zeros(N_LINKS)
        self.failed[slot] = failed_l

        def per_csp(a: np.ndarray) -> np.ndarray:
            out = np.zeros(N_CSP)
            np.add.at(out, _LINK_CSP, a)
            return np.rint(out).astype(np.int64)

        self.last_wait = waits[:, :, -1]
        self.last_dsp_wait = dsp_waits[:, -1]
        util = np.where(modelled, w_class.sum(axis=1) / TICK_SECONDS, 0.0)
        bs_util = bs_in / bs_cap if bs_cap > 0 else np.zeros_like(bs_in)
        backlog_csp = np.zeros((N_CSP, N_CLASSES))
        np.add.at(backlog_csp, _LINK_CSP, backlog_msgs)
        age_csp = age.reshape(N_CSP, N_WAN, N_CLASSES).max(axis=1)  # ages are >= 0
        return CapacityReport(
            tick=s.tick, link_capacity=np.where(modelled, cap, 0.0), link_utilisation=util,
            link_backlog=np.rint(backlog_msgs.sum(axis=1)).astype(np.int64),
            messages=np.rint(messages).astype(np.int64), latency_p50=p50, latency_p95=p95, latency_p99=p99,
            within_target=within_share, backlog=np.rint(backlog_csp).astype(np.int64), oldest_age_s=age_csp,
            bs_peak_utilisation=float(bs_util.max()) if bs_util.size else 0.0,
            bs_congested=int((bs_in > bs_cap).sum()), bs_backlog=round(float(self.bs_backlog.sum())),
            dsp_utilisation=float(dsp_in.sum() * dsp_per / TICK_SECONDS),
            alerts_delayed=per_csp(delayed_l), alerts_throttled=throttled.astype(np.int64),
            alerts_failed=per_csp(failed_l), alerts_redelivered=per_csp(redelivered_l),
            alerts_expired=per_csp(expired_l), failed_queue=per_csp(self.failed.sum(axis=0)))

    def _work_per_fallback(self, per_msg: np.ndarray, onehot: np.ndarray) -> np.ndarray:
        """Seconds of work per message by (link, class) when a class sent nothing this tick: the
        mean over its message types."""
        return (per_msg @ onehot) / onehot.sum(axis=0)[None, :]

    def _oldest(self, tick: int, w_class: np.ndarray) -> np.ndarray:
        """Age in seconds at the end of `tick` of the oldest queued message per (link, class).

        Within a class, work is served oldest first, so the oldest queued message is the first
        whose cumulative arrivals pass what has been served: found among the last AGE_TICKS
        ticks' cumulative arrivals, and placed inside its tick assuming the tick's arrivals came
        evenly (exact for the evenly spread classes; alerts come by minute). Work queued longer
        than AGE_TICKS ticks reads as AGE_TICKS ticks old. `w_class` (links, classes) is this
        tick's work arrived, seconds."""
        self.arrived += w_class
        self.served = self.arrived - self.backlog
        self.arrived_at[tick % AGE_TICKS] = self.arrived
        queued = self.backlog > 1e-9
        age = np.zeros((N_LINKS, N_CLASSES))
        if not queued.any():
            return age
        back = np.arange(AGE_TICKS)  # 0 = this tick, 1 = the one before...
        ring = self.arrived_at[(tick - back) % AGE_TICKS]  # (AGE_TICKS, links, classes)
        valid = back <= tick
        # The tick an unserved message arrived in: cumulative arrivals at its end pass `served`,
        # and at the end of the tick before they did not.
        passed = (ring > self.served[None] + 1e-9) & valid[:, None, None]
        oldest = np.where(passed, back[:, None, None], -1).max(axis=0)  # (links, classes)
        traced = (oldest >= 0) & (oldest + 1 < AGE_TICKS)
        b = np.clip(oldest, 0, AGE_TICKS - 1)
        at_end = np.take_along_axis(ring, b[None], axis=0)[0]
        before = np.where(b + 1 <= tick, np.take_along_axis(ring, np.minimum(b + 1, AGE_TICKS - 1)[None], axis=0)[0],
                          0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.clip(np.where(at_end > before, (self.served - before) / (at_end - before), 0.0), 0.0, 1.0)
        age = np.where(traced, (b + 1 - frac) * TICK_SECONDS, AGE_TICKS * TICK_SECONDS)
        return np.where(queued, age, 0.0)

    # -- per-request look-ups -------------------------------------------------------------------
    def response_time(self, csp: int, wan: int, cell: int, kind: MessageType, p: CapacityParams) -> float:
        """Seconds a message of type `kind` sent now (after the last observed tick) to a hub on
        (csp, wan), attached to `cell`, takes to be answered: the queues' waits at the end of the
        last tick, its transfer over the air and the device's time."""
        klass = int(MESSAGE_CLASS[kind])
        link = csp * N_WAN + wan
        wait = float(self.last_wait[link, klass] + self.last_dsp_wait[klass])
        if link == _LRR_NORTH and 0 <= cell < NORTH_BASE_STATIONS and self.bs_msgs_per_s > 0:
            wait += float(self.bs_backlog[cell * self.bs_groups // NORTH_BASE_STATIONS] / self.bs_msgs_per_s)
        rate = p.wan_bytes_per_s.get(WanTech(wan).name, float("inf"))
        return wait + p.message_bytes[MessageType(kind).name] / rate + p.device_time_s[TrafficClass(klass).name]


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, groups: np.ndarray, n_groups: int,
                       qs: tuple[float, ...]) -> np.ndarray:
    """Weighted quantiles by group: for each group (0..n_groups-1) and each q in `qs`, the
    smallest value whose cumulative weight (values ascending) reaches q of the group's weight.
    `values`, `weights` (messages, from 0) and `groups` are equal-length; returns (n_groups,
    len(qs)), 0 for a group with no weight."""
    keep = weights > 0
    values, weights, groups = values[keep], weights[keep], groups[keep]
    out = np.zeros((n_groups, len(qs)))
    if values.size == 0:
        return out
    # By group, then value (ties in input order): np.lexsort((values, groups)) as two stable
    # sorts, the same permutation; the groups' sort is a radix sort on small unsigned codes.
    order = np.argsort(values, kind="stable")
    small = np.uint8 if n_groups <= 1 << 8 else np.uint16 if n_groups <= 1 << 16 else np.int64
    order = order[np.argsort(groups[order].astype(small), kind="stable")]
    v, w, g = values[order], weights[order], groups[order]
    cum = np.cumsum(w)
    total = np.bincount(g, weights=w, minlength=n_groups)
    before = np.concatenate([[0.0], np.cumsum(total)[:-1]])  # weight of the groups before each
    present = total > 0
    # A relative tolerance keeps the exact rank (q x total) from missing by rounding. All qs at
    # once: (groups, qs).
    want = before[:, None] + np.asarray(qs, float)[None, :] * total[:, None] * (1 - 1e-12)
    k = np.minimum(np.searchsorted(cum, want.ravel(), side="left"), v.size - 1).reshape(want.shape)
    out[:] = np.where(present[:, None], v[k], 0.0)
    return out
