"""A synthetic decade of a 100,000-hub fleet, half-hour by half-hour (175,296 ticks from 2026-01-01):
what the report and history tests of long runs read. Numpy only, seeded, a few seconds to make.

It looks like the studies it stands for: a daily read burst each night, the 3G hubs swapped to 4G
year by year until 3G is switched off in the South on 2033-09-30 (the hubs not swapped by then go
dark), winter storms that take power from a few thousand premises for a few hours (dark hubs, an
outage alert storm), and the capacity model's figures for the links that carry it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

START = datetime(2026, 1, 1, tzinfo=UTC)
YEARS = 10
TICKS = (datetime(2026 + YEARS, 1, 1, tzinfo=UTC) - START) // timedelta(minutes=30)  # 175,296
CSPS = ("North", "Central", "South")
HUBS = 100_000
SWITCH_OFF = datetime(2033, 9, 30, tzinfo=UTC)


def arrays(ticks: int = TICKS, seed: int = 16) -> dict[str, Any]:
    """The decade as arrays, one row per tick."""
    rng = np.random.default_rng(seed)
    t = np.arange(ticks)
    half_hour = t % 48
    year = t / (48 * 365.25)
    off = int((SWITCH_OFF - START) / timedelta(minutes=30))
    # Messages: ~28 per meter-month, 60% of them the nightly daily-read burst (01:00-04:00).
    share = np.array([0.28, 0.36, 0.36])
    burst = ((half_hour >= 2) & (half_hour < 8)).astype(float)
    rate = HUBS * 1.6 * 28 / (30 * 48) * (0.4 + 0.6 * burst * 48 / 6)
    messages = rng.poisson(np.outer(rate, share)).astype(np.int64)  # (ticks, CSP)
    # WAN: South and Central 3G hubs swapped to 4G, linearly to the switch-off; 3G off then.
    g3 = np.clip(1 - year / ((off / (48 * 365.25)) * 1.08), 0, 1)
    south_3g = np.where(t < off, (0.5 * HUBS * 0.36 * g3).astype(np.int64), 0)
    stranded = np.where(t >= off, int(0.5 * HUBS * 0.36 * (1 - 1 / 1.08) * 0.4), 0)
    wan = {"long-range radio": np.full(ticks, int(HUBS * 0.28)), "3G": south_3g + (0.3 * HUBS * g3).astype(np.int64),
           "4G": (HUBS * 0.72 - south_3g - 0.3 * HUBS * g3 - stranded).astype(np.int64),
           "none": stranded.astype(np.int64) + 500}
    # Storms: a few each winter, 4-8 hours, in a random CSP region.
    dark = rng.poisson(20, size=(ticks, 3)).astype(np.int64)
    outage_alerts = rng.poisson(2, size=ticks).astype(np.int64)
    peak_alerts = rng.poisson(1, size=ticks).astype(np.int64)
    for y in range(YEARS):
        for _ in range(rng.integers(2, 5)):
            day = int(rng.choice(np.r_[0:75, 300:365])) + round(y * 365.25)
            at, length, csp = day * 48 + int(rng.integers(0, 48)), int(rng.integers(8, 17)), int(rng.integers(3))
            hit = int(rng.integers(1_000, 8_000))
            if at >= ticks:
                continue
            dark[at:at + length, csp] += hit
            outage_alerts[at] += int(hit * 0.9)
            peak_alerts[at] = max(peak_alerts[at], hit // 20)
    dark[:, 2] += stranded.astype(np.int64)
    low_battery = rng.poisson(3, size=ticks).astype(np.int64)
    # Capacity: busiest links by share of capacity, with the nightly burst; p99 and the share
    # within target follow the South 3G link, which runs hot before its switch-off.
    util = {"South 3G": np.where(t < off, 0.35 + 0.55 * burst * (0.6 + 0.4 * g3), 0.0),
            "South 4G": 0.2 + 0.45 * burst * (1.4 - 0.4 * g3), "North LRR": 0.25 + 0.3 * burst,
            "Central 4G": 0.2 + 0.4 * burst}
    util = {k: np.round(v * rng.uniform(0.95, 1.05, ticks), 4) for k, v in util.items()}
    hot = np.maximum(util["South 3G"], util["South 4G"])
    p99 = np.round(np.where(hot > 0.9, 2 + 200 * (hot - 0.9), 0.8 + 2 * hot), 2)
    within = np.round(np.where(hot > 0.95, 1 - (hot - 0.95) * 2, 1.0), 4)
    return {"t": t, "messages": messages, "wan": wan, "dark": dark, "outage_alerts": outage_alerts,
            "low_battery": low_battery, "peak_alerts": peak_alerts, "util": util, "p99": p99, "within": within}


def times(ticks: int = TICKS) -> list[str]:
    """Each tick's end, ISO with its offset, as a run report gives it."""
    ends = np.datetime64(START.replace(tzinfo=None), "s") + (np.arange(ticks) + 1) * np.timedelta64(1800, "s")
    return [f"{d}+00:00" for d in ends.astype(str)]


def report(ticks: int = TICKS, seed: int = 16) -> dict[str, Any]:
    """A run report (twin.studies.scenario.build_report's shape) of the decade."""
    a = arrays(ticks, seed)
    dark = a["dark"]
    cap_csp = {"South": a["p99"], "Central": np.round(a["p99"] * 0.6, 2), "North": np.round(a["p99"] * 0.5, 2)}
    series = {
        "tick": a["t"].tolist(), "time": times(ticks),
        "messages_by_csp": {c: a["messages"][:, i].tolist() for i, c in enumerate(CSPS)},
        "dark_hubs": dark.sum(axis=1).tolist(),
        "dark_by_csp": {c: dark[:, i].tolist() for i, c in enumerate(CSPS)},
        "hubs_by_wan": {k: v.tolist() for k, v in a["wan"].items()},
        "hh_at_risk": (dark.sum(axis=1) * 3).tolist(),
        "hh_lost_cum": np.cumsum(np.maximum(dark.sum(axis=1) - 2_000, 0) // 50).tolist(),
        "alerts": {"POWER_OUTAGE": a["outage_alerts"].tolist(), "POWER_RESTORED": a["outage_alerts"].tolist(),
                   "LOW_BATTERY": a["low_battery"].tolist()},
        "peak_alerts_per_s": a["peak_alerts"].tolist(),
        "supplier_hubs": {"BGAS": np.linspace(30_000, 26_000, ticks).astype(np.int64).tolist(),
                          "OCTO": np.linspace(20_000, 31_000, ticks).astype(np.int64).tolist(),
                          "EDF": np.linspace(15_000, 13_000, ticks).astype(np.int64).tolist()},
        "capacity": {
            "tick": a["t"].tolist(),
            "link_utilisation": {k: v.tolist() for k, v in a["util"].items()},
            "target_response_s": {"on-demand": 30.0, "alert": 60.0},
            "latency_p99_s": {"on-demand": {c: v.tolist() for c, v in cap_csp.items()},
                              "alert": {c: np.round(v * 0.5, 2).tolist() for c, v in cap_csp.items()}},
            "within_target": {"on-demand": {c: (a["within"] if c == "South" else np.ones(ticks)).tolist()
                                            for c in CSPS},
                              "alert": {c: np.ones(ticks).tolist() for c in CSPS}},
            "backlog": {c: (np.maximum(a["util"]["South 3G"] - 0.95, 0) * 1e5 * (c == "South")).astype(np.int64)
                        .tolist() for c in CSPS},
            "oldest_age_s": {c: np.zeros(ticks).tolist() for c in CSPS},
            "alerts": {"delayed": (a["outage_alerts"] // 10).tolist(), "throttled": np.zeros(ticks, int).tolist(),
                       "failed": np.zeros(ticks, int).tolist(), "redelivered": np.zeros(ticks, int).tolist(),
                       "expired": np.zeros(ticks, int).tolist(), "failed_queue": np.zeros(ticks, int).tolist()},
        },
    }
    op_ticks = list(range(48 * 30, 48 * 400))
    return {
        "generated_at": "2026-12-01T07:00:00+00:00",
        "scenario": {"name": "decade-3g-sunset", "description": "Ten years of 100,000 hubs through the 3G sunset "
                                                                "(synthetic figures for the report test)."},
        "config": {"hubs": HUBS, "seed": seed, "shards": 2, "days": ticks / 48, "start": START.isoformat()},
        "summary": {"hubs": HUBS, "messages_total": int(a["messages"].sum()),
                    "peak_alerts_per_s": int(a["peak_alerts"].max()), "dark_hubs": int(dark[-1].sum())},
        "series": series,
        "operations": [{"name": "operations/4g-swaps", "kind": "swap_programme", "done": True, "metadata": {},
                        "series": {"tick": op_ticks, "swapped": np.arange(len(op_ticks)).tolist()}}],
    }
