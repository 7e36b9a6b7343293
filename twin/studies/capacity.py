"""What a capacity study reads from a run's tick summaries (their `capacity`, a
twin.model.capacity.CapacityReport per tick): each link's busiest tick and the tick it first
saturated, service levels per CSP over the whole run, alerts under load, and the breaking point
of a sweep (the swept value at which a class's p99 latency passes its Target Response Time).

Shares and latencies over a run are message-weighted over the run's ticks: the share of a
class's messages within target over the run is the per-tick share times the tick's messages,
summed, over the messages. p99 passes the target exactly when fewer than 99% of the messages are
within it, so the breaking point is found on that share, which is exact over a run (a percentile
of percentiles is not) and in each half-hour. A sweep's breaking point is over the worst
half-hour by default (`WINDOWS`): the busy hour is what a capacity engineer sizes for, and the
DCC's own service measures (a month's share within target) are the "run" window.

The figures hold whatever capacity model ran; they are read only through CapacityReport's fields."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from twin.model.capacity import LINK_NAMES
from twin.model.catalog import CLASS_LABEL, Csp, TrafficClass
from twin.model.config import TwinInputError

CSPS = tuple(c.name.title() for c in Csp)
# Where the breaking point's share within target is taken: the run's worst half-hour, or the run.
WINDOWS = {"half-hour": "worst_tick_within_target", "run": "within_target"}
CLASS_BY_LABEL = {label: k for k, label in CLASS_LABEL.items()}


class HasCapacity(Protocol):
    """A tick summary, or anything that keeps only its capacity report (None: the model was off)."""

    capacity: Any


def capacity_class(label: str, name: str = "class") -> TrafficClass:
    """A traffic class by its label ("on-demand", "alert", ...); TwinInputError naming `name`."""
    if label not in CLASS_BY_LABEL:
        raise TwinInputError(name, f"unknown class {label!r}; choose from {', '.join(CLASS_BY_LABEL)}")
    return CLASS_BY_LABEL[label]


def capacity_figures(summaries: Sequence[HasCapacity], *, klass: TrafficClass = TrafficClass.ON_DEMAND,
                     quantile: float = 0.99) -> dict[str, Any]:
    """The figures of one run (ticks with a capacity report; {} if it had none):

    - links: per modelled link, peak utilisation (offered work / capacity over a tick), the tick
      of that peak, the first tick it reached 1 (None: never) and its peak backlog (messages);
    - first_saturated: the link that reached utilisation 1 first, and the tick (None: none did);
    - per CSP for `klass`: messages, share within target over the run and in its worst tick (the
      busiest half-hour for it), the worst tick's p99 (s), and whether the `quantile` latency
      passed the target over the run and in some tick (the within-target share below `quantile`);
    - alerts per CSP over the run: delayed, throttled, failed, expired."""
    reps = [s.capacity for s in summaries if s.capacity is not None]
    if not reps:
        return {}
    ticks = np.array([r.tick for r in reps])
    util = np.array([r.link_utilisation for r in reps])  # (ticks, links)
    backlog = np.array([r.link_backlog for r in reps])
    modelled = reps[0].link_capacity > 0
    links = {}
    first: tuple[int, str] | None = None
    for i in np.flatnonzero(modelled):
        over = np.flatnonzero(util[:, i] >= 1.0)
        sat = int(ticks[over[0]]) if over.size else None
        links[LINK_NAMES[i]] = {"peak_utilisation": round(float(util[:, i].max()), 4),
                                "peak_tick": int(ticks[int(util[:, i].argmax())]), "first_saturated_tick": sat,
                                "peak_backlog": int(backlog[:, i].max())}
        if sat is not None and (first is None or sat < first[0]):
            first = (sat, LINK_NAMES[i])
    msgs = np.array([r.messages[:, klass] for r in reps], float)  # (ticks, CSP)
    within = np.array([r.within_target[:, klass] for r in reps]) * msgs
    p99 = np.array([r.latency_p99[:, klass] for r in reps])
    total = msgs.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, within.sum(axis=0) / np.where(total > 0, total, 1.0), 1.0)
    # The busiest half-hour: the tick with the smallest share within target (1 if none sent).
    per_tick = np.where(msgs > 0, np.array([r.within_target[:, klass] for r in reps]), 1.0).min(axis=0)
    service = {c: {"messages": int(total[i]), "within_target": round(float(share[i]), 5),
                   "worst_tick_within_target": round(float(per_tick[i]), 5),
                   "worst_tick_p99_s": round(float(p99[:, i].max()), 2),
                   "passed_target": bool(share[i] < quantile),
                   "passed_target_in_a_tick": bool(per_tick[i] < quantile)} for i, c in enumerate(CSPS)}

    def per_csp(name: str) -> dict[str, int]:
        a = np.sum([getattr(r, name) for r in reps], axis=0)
        return {c: int(a[i]) for i, c in enumerate(CSPS)}

    return {"class": CLASS_LABEL[klass], "quantile": quantile, "links": links,
            "first_saturated": None if first is None else {"link": first[1], "tick": first[0]},
            "service": service,
            "alerts": {k: per_csp(f"alerts_{k}") for k in ("delayed", "throttled", "failed", "expired")}}


def breaking_points(values: Sequence[float], shares: Sequence[dict[str, float]], *,
                    quantile: float = 0.99) -> dict[str, dict[str, Any]]:
    """Per CSP, the swept value at which the class's run latency at `quantile` passes its target:
    where the share within target falls below `quantile`, linearly interpolated between the two
    points either side (values in increasing order, one {CSP: share} per value).

    Each entry: `value` (None if it never passes within the range), `status` ("within", "crossed"
    or "below_range": already passed at the first value) and `bracket` (the two values it lies
    between)."""
    order = np.argsort(np.asarray(values, float), kind="stable")
    xs = np.asarray(values, float)[order]
    out: dict[str, dict[str, Any]] = {}
    for c in CSPS:
        ys = np.array([shares[i][c] for i in order])
        bad = np.flatnonzero(ys < quantile)
        if bad.size == 0:
            out[c] = {"value": None, "status": "within", "bracket": None}
        elif bad[0] == 0:
            out[c] = {"value": float(xs[0]), "status": "below_range", "bracket": None}
        else:
            j = int(bad[0])
            x0, x1, y0, y1 = xs[j - 1], xs[j], ys[j - 1], ys[j]
            x = x0 + (x1 - x0) * (y0 - quantile) / (y0 - y1) if y0 != y1 else x1
            out[c] = {"value": round(float(x), 6), "status": "crossed", "bracket": [float(x0), float(x1)]}
    return out
