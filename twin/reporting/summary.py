"""The end-of-run summary: one dict (written as JSON) and the same figures as terminal tables."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from twin.model.catalog import AlertKind, Csp, MessageType
from twin.model.params import DAYS_PER_MONTH, HALF_HOURS_PER_DAY, ModelParams
from twin.model.state import BYTES_PER_HUB, DARK_AGE_EDGES_DAYS
from twin.model.summary import DARK_REASONS, TickSummary
from twin.reporting.capacity import capacity_summary, print_capacity

CSP_NAMES = [c.name.title() for c in Csp]


def run_summary(*, config: dict[str, Any], summaries: list[TickSummary], shards: int, state_bytes: int,
                build_s: float, run_s: float, state_hash: str) -> dict[str, Any]:
    """Figures of a finished headless run. `config` is FleetConfig.to_dict() (its params give the
    Target Response Times the capacity figures are held against)."""
    last = summaries[-1]
    ticks = len(summaries)
    messages = np.sum([s.messages for s in summaries], axis=0)
    alerts = np.sum([s.alerts for s in summaries], axis=0)
    hubs = last.hubs
    meters = int(last.meters.sum())
    mean_reach_meters = float(np.mean([s.reachable_meters.sum() for s in summaries]))
    months = ticks / (HALF_HOURS_PER_DAY * DAYS_PER_MONTH)
    # As the DCC publishes them: messages besides device alerts, and device alerts, per meter.
    n_alerts = float(messages[:, MessageType.ALERT].sum())
    per_meter_month = float((messages.sum() - n_alerts) / mean_reach_meters / months) if mean_reach_meters else 0.0
    alerts_per_meter_month = float(n_alerts / mean_reach_meters / months) if mean_reach_meters else 0.0
    return {
        "config": config,
        "shards": shards,
        "ticks": ticks,
        "hubs": hubs,
        "meters": meters,
        "dcc_hubs": int(last.dcc_hubs.sum()),
        "off_dcc_hubs": int(last.off_dcc_hubs.sum()),
        "messages": {
            c: {m.name: int(messages[i, m]) for m in MessageType} | {"TOTAL": int(messages[i].sum())}
            for i, c in enumerate(CSP_NAMES)
        },
        "messages_total": int(messages.sum()),
        "messages_per_reachable_meter_month": round(per_meter_month, 2),
        "device_alerts_per_reachable_meter_month": round(alerts_per_meter_month, 2),
        "daily_read_share": round(float(messages[:, MessageType.DAILY_READ].sum() / max(messages.sum() - n_alerts, 1)), 4),
        "alerts": {k.name: int(alerts[:, k].sum()) for k in AlertKind},
        "alerts_undelivered": int(sum(s.alerts_undelivered for s in summaries)),
        "peak_alerts_per_s": int(max(s.peak_alerts_per_s for s in summaries)),
        "reachable_hubs": dict(zip(CSP_NAMES, last.reachable_hubs.tolist(), strict=True)),
        "dark_hubs": dict(zip(CSP_NAMES, last.dark_hubs.tolist(), strict=True)),
        "dark_by_reason": {r: int(last.dark_by_reason[:, i].sum()) for i, r in enumerate(DARK_REASONS)},
        "dark_age_days": dict(zip(_age_labels(), last.dark_age.tolist(), strict=True)),
        "hh_periods_lost": int(sum(s.hh_lost for s in summaries)),
        "hh_periods_at_risk": last.hh_at_risk,
        # Prepayment premises off supply for credit and on emergency credit at the end, per supplier.
        "prepayment": last.prepayment() | {"topups": int(sum(s.prepay_topups for s in summaries))},
        # The network's capacity and service levels at their worst ({} with the capacity model off).
        "capacity": capacity_summary(summaries, ModelParams.from_dict(config.get("params") or {}).capacity),
        "state_bytes": state_bytes,
        "bytes_per_hub": round(state_bytes / hubs, 2),
        "bytes_per_hub_layout": BYTES_PER_HUB,
        "build_s": round(build_s, 3),
        "wall_s": round(run_s, 3),
        "hub_ticks_per_s": round(hubs * ticks / run_s) if run_s > 0 else None,
        "state_hash": state_hash,
    }


# The alert rows of the run summary: each kind's short label sits beside the kind itself, so a
# row's title names exactly the counts it prints (every AlertKind in one row, once).
ALERT_ROWS: tuple[tuple[tuple[AlertKind, str], ...], ...] = (
    ((AlertKind.POWER_OUTAGE, "outage"), (AlertKind.POWER_RESTORED, "restored"),
     (AlertKind.LOW_BATTERY, "low battery")),
    ((AlertKind.FIRMWARE_TRANSFER_OK, "firmware transfer ok"), (AlertKind.FIRMWARE_TRANSFER_FAIL, "failed"),
     (AlertKind.FIRMWARE_ACTIVATED, "activated")),
    ((AlertKind.EMERGENCY_CREDIT_ACTIVATED, "emergency credit"), (AlertKind.CREDIT_BELOW_DISABLEMENT, "disabled"),
     (AlertKind.SUPPLY_ARMED, "armed")),
)


def alert_rows(alerts: dict[str, int]) -> list[tuple[str, str]]:
    """(label, figures) per summary row, e.g. ("alerts (outage / restored / low battery)",
    "12 / 10 / 3"), from a run summary's alert counts by AlertKind name."""
    return [(f"alerts ({' / '.join(label for _, label in row)})",
             " / ".join(f"{alerts[kind.name]:,}" for kind, _ in row)) for row in ALERT_ROWS]


def _age_labels() -> list[str]:
    edges = DARK_AGE_EDGES_DAYS
    return [f"<{edges[0]}"] + [f"{a}-{b}" for a, b in itertools.pairwise(edges)] + [f">={edges[-1]}"]


def print_summary(r: dict[str, Any], console: Console) -> None:
    t = Table(title="Run summary", show_header=False, title_justify="left")
    # The labels stay short and the figure column unwrapped so the state hash prints on one line
    # (people and tests copy it from there).
    t.add_column("figure")
    t.add_column("value", justify="right", no_wrap=True)
    cfg = r["config"]
    t.add_row("hubs", f"{r['hubs']:,}")
    t.add_row("meters", f"{r['meters']:,}")
    t.add_row("hubs on the DCC / not enrolled", f"{r['dcc_hubs']:,} / {r['off_dcc_hubs']:,}")
    t.add_row("seed / shards / ticks", f"{cfg['seed']} / {r['shards']} / {r['ticks']:,}")
    t.add_row("messages", f"{r['messages_total']:,}")
    t.add_row("messages per meter per month (besides alerts)", f"{r['messages_per_reachable_meter_month']:.1f}")
    t.add_row("device alerts per meter per month", f"{r['device_alerts_per_reachable_meter_month']:.1f}")
    t.add_row("daily-read share", f"{r['daily_read_share']:.1%}")
    for label, figures in alert_rows(r["alerts"]):
        t.add_row(label, figures)
    t.add_row("peak alerts per second", f"{r['peak_alerts_per_s']:,}")
    t.add_row("reachable hubs", f"{sum(r['reachable_hubs'].values()):,}")
    t.add_row("dark hubs", f"{sum(r['dark_hubs'].values()):,}")
    t.add_row("half-hourly periods lost", f"{r['hh_periods_lost']:,}")
    t.add_row("half-hourly periods at risk", f"{r['hh_periods_at_risk']:,}")
    pp = r.get("prepayment")
    if pp:
        t.add_row("prepayment off supply / on emergency credit",
                  f"{pp['off_supply']:,} / {pp['emergency_credit']:,} of {pp['premises']:,}")
        t.add_row("prepayment top-ups", f"{pp['topups']:,}")
    t.add_row("state bytes per hub", f"{r['bytes_per_hub']:.1f}")
    t.add_row("build time", f"{r['build_s']:.2f} s")
    t.add_row("run wall time", f"{r['wall_s']:.2f} s")
    t.add_row("hub-ticks per second", f"{r['hub_ticks_per_s']:,}" if r["hub_ticks_per_s"] else "-")
    t.add_row("state hash", r["state_hash"])
    console.print(t)

    m = Table(title="Messages by CSP and type", title_justify="left")
    m.add_column("type")
    for c in CSP_NAMES:
        m.add_column(c, justify="right")
    for name in [*(mt.name for mt in MessageType), "TOTAL"]:
        m.add_row(name.lower().replace("_", " "), *(f"{r['messages'][c][name]:,}" for c in CSP_NAMES))
    m.add_row("reachable hubs", *(f"{r['reachable_hubs'][c]:,}" for c in CSP_NAMES))
    m.add_row("dark hubs", *(f"{r['dark_hubs'][c]:,}" for c in CSP_NAMES))
    console.print(m)
    if pp and pp["by_supplier"]:
        p = Table(title="Prepayment by supplier (end of run)", title_justify="left")
        for col in ("supplier", "premises", "emergency credit", "off supply", "off %"):
            p.add_column(col, justify="left" if col == "supplier" else "right")
        for name, v in sorted(pp["by_supplier"].items(), key=lambda kv: -kv[1]["premises"]):
            p.add_row(name, f"{v['premises']:,}", f"{v['emergency_credit']:,}", f"{v['off_supply']:,}",
                      f"{v['off_supply'] / max(v['premises'], 1):.1%}")
        console.print(p)
    print_capacity(r.get("capacity") or {}, console)
