"""What a run's network capacity reports (twin.model.capacity.CapacityReport, one per tick) come to:
the time series the HTML report plots, the figures its JSON carries, the terminal's capacity block
and the `twin up` status figure. Plain functions over the tick summaries; nothing here changes them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from twin.model.capacity import LINK_NAMES, CapacityReport
from twin.model.catalog import CLASS_LABEL, Csp, TrafficClass
from twin.model.params import CapacityParams
from twin.model.summary import TickSummary
from twin.util import units
from twin.util.units import ALERT_OUTCOMES, format_seconds

CSP_NAMES = [c.name.title() for c in Csp]
# The classes the report and the terminal hold against their Target Response Time: what a User
# waits for (on-demand reads and top-ups) and what a network operator waits for (AD1 outage alerts).
KEY_CLASSES = (TrafficClass.ON_DEMAND, TrafficClass.ALERT)


def link_label(name: str) -> str:
    """"SOUTH/G3" (twin.model.capacity.LINK_NAMES) as people read it: "South 3G"."""
    csp, tech = name.split("/")
    return units.link_label(csp, tech)


def _reports(summaries: Sequence[TickSummary]) -> list[CapacityReport]:
    return [s.capacity for s in summaries if s.capacity is not None]


def _links(reports: list[CapacityReport]) -> list[int]:
    """The modelled links (capacity above 0 in any tick), in LINK_NAMES order."""
    cap = np.max([r.link_capacity for r in reports], axis=0)
    return [int(i) for i in np.flatnonzero(cap > 0)]


def capacity_series(summaries: Sequence[TickSummary], params: CapacityParams) -> dict[str, Any]:
    """Per-tick series for the report's capacity plots, JSON-ready, each list one value per tick
    that carries a capacity report ({} when none does: the capacity model is off). Utilisation and
    shares are 0..1, latencies and ages seconds, backlogs messages; `tick` names the ticks."""
    reports = _reports(summaries)
    if not reports:
        return {}
    links = _links(reports)
    util = np.array([r.link_utilisation for r in reports])
    p99 = np.array([r.latency_p99 for r in reports])  # (ticks, CSPs, classes)
    within = np.array([r.within_target for r in reports])
    backlog = np.array([r.backlog for r in reports])
    age = np.array([r.oldest_age_s for r in reports])
    return {
        "tick": [r.tick for r in reports],
        "link_utilisation": {link_label(LINK_NAMES[i]): np.round(util[:, i], 4).tolist() for i in links},
        "target_response_s": {CLASS_LABEL[k]: float(params.target_response_s[k.name]) for k in KEY_CLASSES},
        "latency_p99_s": {CLASS_LABEL[k]: {c: np.round(p99[:, j, k], 2).tolist() for j, c in enumerate(CSP_NAMES)}
                          for k in KEY_CLASSES},
        "within_target": {CLASS_LABEL[k]: {c: np.round(within[:, j, k], 4).tolist() for j, c in enumerate(CSP_NAMES)}
                          for k in KEY_CLASSES},
        "backlog": {c: backlog[:, j].sum(axis=1).tolist() for j, c in enumerate(CSP_NAMES)},
        "backlog_by_class": {CLASS_LABEL[k]: backlog[:, :, k].sum(axis=1).tolist() for k in TrafficClass},
        "oldest_age_s": {c: age[:, j].max(axis=1).tolist() for j, c in enumerate(CSP_NAMES)},
        "dsp_utilisation": [round(r.dsp_utilisation, 4) for r in reports],
        "base_station_peak_utilisation": [round(r.bs_peak_utilisation, 4) for r in reports],
        "alerts": {k: [int(getattr(r, f"alerts_{k}").sum()) for r in reports] for k in ALERT_OUTCOMES}
        | {"failed_queue": [int(r.failed_queue.sum()) for r in reports]},
    }


def capacity_summary(summaries: Sequence[TickSummary], params: CapacityParams) -> dict[str, Any]:
    """The run's capacity figures ({} when no tick carries a capacity report):

    - `peak_link_utilisation`: per modelled link ("South 3G"), the highest tick's offered load as a
      share of its capacity (above 1: a queue grew), with `peak_link` the busiest link;
    - `worst_p99_s` and `min_within_target`: per CSP and class ("on-demand"), the highest p99
      latency in seconds and the lowest share within the Target Response Time over the ticks in
      which the class sent anything; `target_response_s` per class;
    - `peak_backlog` per CSP (messages, all classes) and `oldest_queued_s` (seconds);
    - `alerts`: delayed, throttled, failed, redelivered and expired totals per CSP, and the
      failed-alert queue at the end;
    - `dsp_peak_utilisation`, `base_station_peak_utilisation`, `base_station_congested_ticks`."""
    reports = _reports(summaries)
    if not reports:
        return {}
    links = _links(reports)
    util = np.array([r.link_utilisation for r in reports])
    peak = {link_label(LINK_NAMES[i]): round(float(util[:, i].max()), 4) for i in links}
    sent = np.array([r.messages for r in reports]) > 0  # (ticks, CSPs, classes)
    p99 = np.where(sent, np.array([r.latency_p99 for r in reports]), 0.0).max(axis=0)
    within = np.where(sent, np.array([r.within_target for r in reports]), 1.0).min(axis=0)
    backlog = np.array([r.backlog for r in reports]).sum(axis=2).max(axis=0)
    age = np.array([r.oldest_age_s for r in reports]).max(axis=(0, 2))
    last = reports[-1]

    def by_class(a: np.ndarray, digits: int) -> dict[str, dict[str, float]]:
        return {c: {CLASS_LABEL[k]: round(float(a[j, k]), digits) for k in TrafficClass}
                for j, c in enumerate(CSP_NAMES)}

    return {
        "ticks": len(reports),
        "peak_link": max(peak, key=lambda k: peak[k]) if peak else "",
        "peak_link_utilisation": peak,
        "target_response_s": {CLASS_LABEL[k]: float(params.target_response_s[k.name]) for k in TrafficClass},
        "worst_p99_s": by_class(p99, 2),
        "min_within_target": by_class(within, 4),
        "peak_backlog": {c: int(backlog[j]) for j, c in enumerate(CSP_NAMES)},
        "oldest_queued_s": {c: float(age[j]) for j, c in enumerate(CSP_NAMES)},
        "alerts": {k: {c: int(sum(int(getattr(r, f"alerts_{k}")[j]) for r in reports)) for j, c in enumerate(CSP_NAMES)}
                   for k in ALERT_OUTCOMES}
        | {"failed_queue_end": {c: int(last.failed_queue[j]) for j, c in enumerate(CSP_NAMES)}},
        "dsp_peak_utilisation": round(max(r.dsp_utilisation for r in reports), 4),
        "base_station_peak_utilisation": round(max(r.bs_peak_utilisation for r in reports), 4),
        "base_station_congested_ticks": sum(1 for r in reports if r.bs_congested > 0),
    }


def print_capacity(cap: dict[str, Any], console: Console) -> None:
    """The run summary's capacity block (`capacity_summary`'s figures): link utilisation at its
    peak, the worst on-demand and alert p99 per CSP against the target, the lowest within-target
    share, backlogs and alerts under load. Prints nothing when the run had no capacity model."""
    if not cap:
        return
    t = Table(title="Network capacity (worst tick of the run)", title_justify="left")
    t.add_column("figure")
    for c in CSP_NAMES:
        t.add_column(c, justify="right")
    for k in KEY_CLASSES:
        label, target = CLASS_LABEL[k], cap["target_response_s"][CLASS_LABEL[k]]
        t.add_row(f"p99 {label} latency (target {format_seconds(target)})",
                  *(_over(cap["worst_p99_s"][c][label], target) for c in CSP_NAMES))
        t.add_row(f"{label} share within target (lowest)",
                  *(f"{cap['min_within_target'][c][label]:.1%}" for c in CSP_NAMES))
    t.add_row("peak backlog, messages", *(f"{cap['peak_backlog'][c]:,}" for c in CSP_NAMES))
    t.add_row("oldest queued message", *(format_seconds(cap["oldest_queued_s"][c]) if cap["oldest_queued_s"][c] else "-"
                                          for c in CSP_NAMES))
    a = cap["alerts"]
    t.add_row("alerts delayed / throttled", *(f"{a['delayed'][c]:,} / {a['throttled'][c]:,}" for c in CSP_NAMES))
    t.add_row("alerts failed / expired", *(f"{a['failed'][c]:,} / {a['expired'][c]:,}" for c in CSP_NAMES))
    console.print(t)
    u = Table(title="Peak utilisation", title_justify="left")
    u.add_column("link or stage")
    u.add_column("offered load / capacity", justify="right")
    for name, v in sorted(cap["peak_link_utilisation"].items(), key=lambda kv: -kv[1]):
        u.add_row(name, f"{v:.0%}" + ("  over capacity: a queue grew" if v > 1 else ""))
    u.add_row("central DSP stage", f"{cap['dsp_peak_utilisation']:.0%}")
    u.add_row("busiest North base station", f"{cap['base_station_peak_utilisation']:.0%}"
              + (f"  congested in {cap['base_station_congested_ticks']:,} tick(s)"
                 if cap["base_station_congested_ticks"] else ""))
    console.print(u)


def _over(value: float, target: float) -> str:
    return format_seconds(value) + (" OVER" if value > target else "")


def status_figure(report: CapacityReport | None, params: CapacityParams) -> str:
    """The `twin up` status line's capacity figure for one tick: the busiest link's utilisation
    and the worst on-demand p99 over the CSPs, e.g. "busiest South 3G 74%  on-demand p99 3.2 s"
    ("" without a capacity report)."""
    if report is None:
        return ""
    util = np.where(report.link_capacity > 0, report.link_utilisation, -1.0)
    i = int(np.argmax(util))
    k = TrafficClass.ON_DEMAND
    sent = report.messages[:, k] > 0
    p99 = float(report.latency_p99[sent, k].max()) if sent.any() else 0.0
    over = "!" if p99 > params.target_response_s[k.name] else ""
    return f"busiest {link_label(LINK_NAMES[i])} {max(util[i], 0.0):.0%}  on-demand p99 {format_seconds(p99)}{over}"
