"""Ensembles: one scenario run with N fleet seeds, the runs in parallel as Ray tasks (like a sweep's
points), and per figure of the runs the mean, the sample standard deviation, the range and a 95%
confidence interval for the mean, with the throughput in hub-days per second.

A seed draws a different fleet (premises, devices, which hubs an outage reaches, ...) from the same
distributions, so the spread over seeds is how much a figure owes to chance rather than to the
scenario: a capacity engineer quotes the mean and its interval, not one run's figure.

The confidence interval is Student's t on n - 1 degrees of freedom: mean +- t(0.975, n-1) * s /
sqrt(n), taking the seeds' figures as independent draws (they are: each seed keys its own Philox
streams). t comes from scipy.stats when scipy is installed, else from the table below.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from twin.model.config import TwinInputError
from twin.studies.capacity import CSPS

CONFIDENCE = 0.95
# Student t, two-sided 95% (the 0.975 quantile) by degrees of freedom: the standard table (e.g.
# NIST/SEMATECH e-Handbook of Statistical Methods, 1.3.6.7.2, "Critical values of the Student's t
# distribution"). Used only when scipy is not installed; degrees of freedom between the rows, or
# past the last, take the next smaller row's (a larger t, so the interval errs wide, never narrow).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
         29: 2.045, 30: 2.042, 40: 2.021, 50: 2.009, 60: 2.000, 80: 1.990, 100: 1.984, 120: 1.980}
MAX_SEEDS = 1000


def t_quantile(df: int) -> tuple[float, str]:
    """The two-sided 95% Student t critical value on `df` >= 1 degrees of freedom and where it
    came from ("scipy.stats.t" or "table")."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    try:
        from scipy import stats  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError:
        return T_975[max(d for d in T_975 if d <= df)], "table"
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)), "scipy.stats.t"


def describe(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (n - 1), min, max and the 95% Student t interval of the
    mean of a figure over the seeds (`ci95`: [low, high]; None for fewer than two values, whose
    spread is unknown). `ci_method` names where t came from."""
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        raise ValueError("no values")
    mean = statistics.fmean(xs)
    out: dict[str, Any] = {"n": n, "mean": mean, "std": None, "min": min(xs), "max": max(xs), "ci95": None,
                           "ci_method": None}
    if n >= 2:
        sd = statistics.stdev(xs)
        t, method = t_quantile(n - 1)
        half = t * sd / math.sqrt(n)
        out.update(std=sd, ci95=[mean - half, mean + half], ci_method=f"Student t 95%, {n - 1} df ({method})")
    return out


def parse_seeds(spec: Any, field: str = "seeds") -> list[int]:
    """The seeds of an ensemble: N (seeds 1..N), "A-B" (A..B inclusive), "A,B,C", or a list of
    whole numbers; distinct, each in [0, 2^63), at most MAX_SEEDS. TwinInputError naming `field`."""
    if isinstance(spec, bool):
        raise TwinInputError(field, f"give a count (8), a range (1-8) or a list (1,5,9), got {spec!r}")
    if isinstance(spec, int):
        seeds = list(range(1, spec + 1)) if spec >= 1 else []
    elif isinstance(spec, str):
        text = spec.strip()
        if re.fullmatch(r"[0-9]+", text):
            seeds = list(range(1, int(text) + 1))
        elif m := re.fullmatch(r"([0-9]+)\s*-\s*([0-9]+)", text):
            lo, hi = int(m[1]), int(m[2])
            if hi < lo:
                raise TwinInputError(field, f"a range runs low to high, got {spec!r}")
            if hi - lo + 1 > MAX_SEEDS:
                raise TwinInputError(field, f"at most {MAX_SEEDS} seeds, got {hi - lo + 1}")
            seeds = list(range(lo, hi + 1))
        elif re.fullmatch(r"[0-9]+(\s*,\s*[0-9]+)+", text):
            seeds = [int(p) for p in text.split(",")]
        else:
            raise TwinInputError(field, f"give a count (8), a range (1-8) or a list (1,5,9) in ASCII digits, "
                                        f"got {spec!r}")
    elif isinstance(spec, list) and spec and all(isinstance(s, int) and not isinstance(s, bool) for s in spec):
        seeds = list(spec)
    else:
        raise TwinInputError(field, f"give a count (8), a range (1-8) or a list (1,5,9), got {spec!r}")
    if len(seeds) < 2:
        raise TwinInputError(field, f"an ensemble needs at least two seeds, got {spec!r}")
    if len(seeds) > MAX_SEEDS:
        raise TwinInputError(field, f"at most {MAX_SEEDS} seeds, got {len(seeds)}")
    if len(set(seeds)) != len(seeds):
        raise TwinInputError(field, f"seeds repeat in {spec!r}; each seed is one run")
    bad = [s for s in seeds if not 0 <= s < 2**63]
    if bad:
        raise TwinInputError(field, f"a seed is a whole number in [0, 2^63), got {bad[0]}")
    return seeds


# The figures of one run that an ensemble (or a point of a sweep with seeds) summarises: name ->
# (label, unit). Capacity figures per CSP are added when the run had the capacity model on.
FIGURE_LABELS: dict[str, tuple[str, str]] = {
    "messages_total": ("messages, whole run", "messages"),
    "messages_per_meter_month": ("messages per reachable meter per month (besides alerts)", "per meter-month"),
    "peak_alerts_per_s": ("peak device alerts per second", "alerts/s"),
    "max_dark_hubs": ("most hubs dark at once", "hubs"),
    "dark_hubs_end": ("hubs dark at the end", "hubs"),
    "hh_periods_lost": ("half-hourly periods lost", "periods"),
    **{f"peak_messages_per_s.{c}": (f"peak messages per second, {c} (busiest half-hour)", "msgs/s") for c in CSPS},
    "peak_link_utilisation": ("peak utilisation of the busiest link", "share of capacity"),
    **{f"within_target.{c}": (f"{{klass}} share within target over the run, {c}", "share") for c in CSPS},
    **{f"worst_half_hour_within_target.{c}": (f"{{klass}} share within target in the worst half-hour, {c}", "share")
       for c in CSPS},
    **{f"worst_tick_p99_s.{c}": (f"{{klass}} p99 latency in the worst half-hour, {c}", "s") for c in CSPS},
}


def run_figures(row: Mapping[str, Any], summary: Mapping[str, Any]) -> dict[str, float]:
    """The scalar figures of one run (see FIGURE_LABELS), from its sweep row
    (twin.studies.sweep._row) and its run summary (twin.reporting.summary.run_summary)."""
    out: dict[str, float] = {
        "messages_total": float(summary["messages_total"]),
        "messages_per_meter_month": float(summary["messages_per_reachable_meter_month"]),
        "peak_alerts_per_s": float(row["peak_alerts_per_s"]),
        "max_dark_hubs": float(row["max_dark_hubs"]),
        "dark_hubs_end": float(sum(summary["dark_hubs"].values())),
        "hh_periods_lost": float(row["hh_periods_lost"]),
    }
    for c in CSPS:
        out[f"peak_messages_per_s.{c}"] = float(row["peak_messages_per_s"][c])
    cap = row.get("capacity") or {}
    if cap:
        out["peak_link_utilisation"] = max((v["peak_utilisation"] for v in cap["links"].values()), default=0.0)
        for c in CSPS:
            svc = cap["service"][c]
            out[f"within_target.{c}"] = float(svc["within_target"])
            out[f"worst_half_hour_within_target.{c}"] = float(svc["worst_tick_within_target"])
            out[f"worst_tick_p99_s.{c}"] = float(svc["worst_tick_p99_s"])
    return out


def summarise(figures: Sequence[Mapping[str, float]], *, klass: str = "on-demand") -> dict[str, dict[str, Any]]:
    """Per figure, `describe` over the runs (figures every run has, in FIGURE_LABELS order), with
    its label (naming `klass`, the traffic class of the capacity figures) and unit."""
    names = [k for k in FIGURE_LABELS if all(k in f for f in figures)]
    return {k: describe([f[k] for f in figures]) | {"label": FIGURE_LABELS[k][0].format(klass=klass),
                                                    "unit": FIGURE_LABELS[k][1]}
            for k in names}


def mean_capacity(caps: Sequence[Mapping[str, Any]], *, quantile: float) -> dict[str, Any]:
    """The capacity figures (twin.studies.capacity.capacity_figures) of several seeds of one point
    as one: every number the mean over the seeds, other values kept where the seeds agree (None
    where not), and the pass/fail flags taken again from the mean shares. {} if any seed had none."""
    if not caps or not all(caps):
        return {}

    def merge(values: list[Any]) -> Any:
        first = values[0]
        if isinstance(first, Mapping):
            keys = [k for k in first if all(isinstance(v, Mapping) and k in v for v in values)]
            return {k: merge([v[k] for v in values]) for k in keys}
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return statistics.fmean(values)
        return first if all(v == first for v in values) else None

    out = merge(list(caps))
    for svc in out.get("service", {}).values():
        svc["passed_target"] = bool(svc["within_target"] < quantile)
        svc["passed_target_in_a_tick"] = bool(svc["worst_tick_within_target"] < quantile)
    return out
