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


# What each device alert kind is, as a person reads it (the DCC alert code in brackets): the run
# summary, `twin up`'s alert peaks and anything else that names a kind use these words.
ALERT_LABELS: dict[AlertKind, str] = {
    AlertKind.POWER_OUTAGE: "power outage (AD1)",
    AlertKind.POWER_RESTORED: "power restored (8F36)",
    AlertKind.LOW_BATTERY: "gas meter low battery (8F1F)",
    AlertKind.FIRMWARE_TRANSFER_OK: "firmware transfer ok (8F8A)",
    AlertKind.FIRMWARE_TRANSFER_FAIL: "firmware transfer failed (8F89)",
    AlertKind.FIRMWARE_ACTIVATED: "firmware activated (8F43)",
    AlertKind.EMERGENCY_CREDIT_ACTIVATED: "emergency credit on (81AB)",
    AlertKind.CREDIT_BELOW_DISABLEMENT: "supply off, no credit (8F0F)",
    AlertKind.SUPPLY_ARMED: "supply armed by a top-up (8F32)",
}


def alert_rows(alerts: dict[str, int]) -> list[tuple[str, str]]:
    """(label, count) rows of the device alerts modelled events sent (outages, batteries, firmware,
    prepayment; not the background volume of alert messages): their total, then one indented row
    per kind in AlertKind order, e.g. ("  power outage (AD1)", "12"), from a run summary's alert counts by
    AlertKind name (a kind missing counts 0)."""
    return [("alerts of modelled events", f"{sum(alerts.get(k.name, 0) for k in AlertKind):,}"),
            *((f"  {ALERT_LABELS[k]}", f"{alerts.get(k.name, 0):,}") for k in AlertKind)]


def _share_of(part: int, whole: int) -> str:
    return f" ({part / whole:.1%})" if whole else ""


def summary_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    """The run summary (`run_summary`'s dict) as (label, value) rows for people: every label says
    what is counted and over what, every value carries its unit; dicts by region or reason are
    spelt out, none is printed raw. The state hash is the last row. Rows the dict lacks (an older
    report) are left out."""
    cfg = r["config"]
    ticks = int(r["ticks"])
    rows = [
        ("hubs", f"{r['hubs']:,}"),
        ("hubs on the DCC / not enrolled", f"{r['dcc_hubs']:,} / {r['off_dcc_hubs']:,}"),
        ("meters", f"{r['meters']:,}"),
        ("seed / shards", f"{cfg['seed']} / {r['shards']}"),
        ("simulated time", f"{ticks:,} half hours ({ticks / HALF_HOURS_PER_DAY:,.1f} days)"),
        ("messages, all types", f"{r['messages_total']:,}"),
        ("non-alert messages per meter-month", f"{r['messages_per_reachable_meter_month']:.1f}"),
        # Every device alert the DCC carries, the calibrated background volume included (its
        # kinds are not published); the rows by kind below count the alerts of modelled events.
        ("alert messages per meter-month", f"{r['device_alerts_per_reachable_meter_month']:.1f}"),
        ("daily reads, % of non-alert messages", f"{r['daily_read_share']:.1%}"),
        *alert_rows(r["alerts"]),
    ]
    if "alerts_undelivered" in r:
        rows.append(("alerts not sent (hub out of reach)", f"{r['alerts_undelivered']:,}"))
    rows.append(("peak device alerts per second", f"{r['peak_alerts_per_s']:,}"))
    reachable, dark = sum(r["reachable_hubs"].values()), sum(r["dark_hubs"].values())
    rows.append(("reachable hubs at the end", f"{reachable:,}"))
    rows.append(("dark hubs at the end", f"{dark:,}{_share_of(dark, reachable + dark)}"))
    for region, n in r["dark_hubs"].items():
        rows.append((f"  in {region}", f"{n:,}"))
    for reason, n in (r.get("dark_by_reason") or {}).items():
        if n:
            rows.append((f"  cause: {reason}", f"{n:,}"))
    rows.append(("half-hourly reads lost, all meters", f"{r['hh_periods_lost']:,} periods"))
    rows.append(("half-hourly reads at risk (end)", f"{r['hh_periods_at_risk']:,} periods"))
    pp = r.get("prepayment")
    if pp:
        rows.append(("prepayment: off supply (end)", f"{pp['off_supply']:,} of {pp['premises']:,} premises"))
        rows.append(("prepayment: emergency credit (end)", f"{pp['emergency_credit']:,} of {pp['premises']:,} premises"))
        rows.append(("prepayment: top-ups", f"{pp['topups']:,}"))
    rows.append(("state per hub", f"{r['bytes_per_hub']:.1f} bytes"))
    rows.append(("fleet build time", f"{r['build_s']:.2f} s"))
    rows.append(("run time (wall clock)", f"{r['wall_s']:.2f} s"))
    rate = r.get("hub_ticks_per_s")
    rows.append(("hub-ticks per second (tick: 30 min)", f"{rate:,}" if rate else "-"))
    rows.append(("state hash (SHA-256)", r["state_hash"]))
    return rows


def _age_labels() -> list[str]:
    edges = DARK_AGE_EDGES_DAYS
    return [f"<{edges[0]}"] + [f"{a}-{b}" for a, b in itertools.pairwise(edges)] + [f">={edges[-1]}"]


def print_summary(r: dict[str, Any], console: Console) -> None:
    t = Table(title="Run summary", show_header=False, title_justify="left")
    t.add_column("figure")
    t.add_column("value", justify="right", no_wrap=True)
    *rows, (hash_label, state_hash) = summary_rows(r)
    for label, value in rows:
        t.add_row(label, value)
    console.print(t)
    # On a line of its own, never wrapped, so people and tests copy it whole (and the table's
    # labels keep the width the 64 characters would take).
    console.print(f"{hash_label}: {state_hash}", soft_wrap=True, highlight=False)
    pp = r.get("prepayment")

    m = Table(title="Messages by CSP and type", title_justify="left")
    m.add_column("type")
    for c in CSP_NAMES:
        m.add_column(c, justify="right")
    for name in [*(mt.name for mt in MessageType), "TOTAL"]:
        m.add_row(name.lower().replace("_", " "), *(f"{r['messages'][c][name]:,}" for c in CSP_NAMES))
    m.add_row("reachable hubs at the end", *(f"{r['reachable_hubs'][c]:,}" for c in CSP_NAMES))
    m.add_row("dark hubs at the end", *(f"{r['dark_hubs'][c]:,}" for c in CSP_NAMES))
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
