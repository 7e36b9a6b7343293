"""Scenario files: a fleet and a list of operator events at times, in YAML; a headless run of one,
and its report (JSON figures plus an HTML page of plots) in a run directory.

    name: storm-outage
    description: A storm takes out power across Southern England for 4 hours.
    fleet: {hubs: 3000000, seed: 1, days: 2, start: 2026-11-01T00:00:00+00:00}
    events:
      - {at: 6h, type: power_outage, area: Southern England, fraction: 0.6, duration_min: 240}

Event times are ticks, ISO times with a zone, or offsets from the start like '6h', '1d12h'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from twin.model.catalog import SUPPLIERS, WAN_LABEL, AlertKind, Csp, WanTech
from twin.model.config import FleetConfig, TwinInputError, parse_regions
from twin.model.ops.commands import Command, parse_command
from twin.model.params import HALF_HOURS_PER_DAY, ModelParams
from twin.model.summary import TickSummary
from twin.model.timeutil import parse_instant

FLEET_KEYS = {"hubs", "seed", "days", "start", "regions", "block_size", "params"}
TOP_KEYS = {"name", "description", "fleet", "events"}


@dataclass
class Scenario:
    name: str
    description: str
    config: FleetConfig
    days: float
    events: list[dict[str, Any]]
    commands: list[Command] = field(default_factory=list)
    file: str = ""

    @property
    def ticks(self) -> int:
        return max(1, round(self.days * HALF_HOURS_PER_DAY))


def load_scenario(path: Path, *, hubs: int | None = None, seed: int | None = None,
                  days: float | None = None) -> Scenario:
    """Read and fully validate a scenario file; command-line values override the file's."""
    from twin.yamlfile import load_mapping

    doc = load_mapping(path, "name, fleet and events")
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise TwinInputError(sorted(unknown)[0], f"not a scenario key; keys are {', '.join(sorted(TOP_KEYS))}")
    fleet = doc.get("fleet") or {}
    if not isinstance(fleet, dict):
        raise TwinInputError("fleet", "must be a mapping")
    bad = set(fleet) - FLEET_KEYS
    if bad:
        raise TwinInputError(f"fleet.{sorted(bad)[0]}", f"not a fleet key; keys are {', '.join(sorted(FLEET_KEYS))}")
    kw: dict[str, Any] = {"hubs": hubs if hubs is not None else fleet.get("hubs", 1_000_000),
                          "seed": seed if seed is not None else fleet.get("seed", 1)}
    if "start" in fleet:
        start = fleet["start"]
        kw["start"] = parse_instant(start, "fleet.start")
    if "regions" in fleet:
        kw["regions"] = parse_regions(fleet["regions"])
    if "block_size" in fleet:
        kw["block_size"] = fleet["block_size"]
    if "params" in fleet:
        try:
            kw["params"] = ModelParams.from_dict(fleet["params"])
        except TwinInputError as e:  # names its field from params on: fleet.params.capacity.policy
            raise TwinInputError(f"fleet.{e.field}", e.reason) from None
        except (TypeError, ValueError) as e:
            raise TwinInputError("fleet.params", str(e)) from None
    try:
        config = FleetConfig(**kw)
    except TwinInputError as e:
        raise TwinInputError(f"fleet.{e.field}", e.reason) from None
    run_days = days if days is not None else fleet.get("days", 1)
    if isinstance(run_days, bool) or not isinstance(run_days, int | float) or run_days <= 0:
        raise TwinInputError("fleet.days", f"must be a positive number of days, got {run_days!r}")
    events = doc.get("events") or []
    if not isinstance(events, list):
        raise TwinInputError("events", "must be a list")
    sc = Scenario(name=str(doc.get("name") or path.stem), description=str(doc.get("description", "")),
                  config=config, days=float(run_days), events=events, file=str(path))
    sc.commands = [_parse_event(i, e, config) for i, e in enumerate(events)]
    return sc


def _parse_event(i: int, event: Any, config: FleetConfig) -> Command:
    try:
        return parse_command(event, config, now_tick=0, relative_to=0)
    except TwinInputError as e:
        raise TwinInputError(f"events[{i}].{e.field}", e.reason) from None


def run_scenario(sc: Scenario, *, run_dir: Path, shards: int | None = None,
                 progress: Callable[[TickSummary], None] | None = None,
                 cpus_per_shard: float | None = None) -> dict[str, Any]:
    """Run a scenario on the engine (Ray must be started); returns the report and writes it."""
    import time

    from twin.engine.supervisor import FleetSupervisor

    # A report shows every operation of the run, however long ago it finished: none is retired.
    sup = FleetSupervisor(sc.config, shards=shards, run_dir=run_dir, cpus_per_shard=cpus_per_shard,
                          operation_retention_days=None)
    try:
        for i, cmd in enumerate(sc.commands):
            try:
                sup.submit_command(cmd)
            except TwinInputError as e:
                raise TwinInputError(f"events[{i}].{e.field}", e.reason) from None
        summaries: list[TickSummary] = []

        def on_tick(s: TickSummary) -> None:
            # The newest summary whole (the report's end state), the earlier ones with only what
            # the report reads per tick: a year's summaries whole would hold ~0.5 GB.
            if summaries:
                summaries[-1] = for_report(summaries[-1])
            summaries.append(s)
            if progress:
                progress(s)

        t = time.perf_counter()
        sup.run_until(sc.ticks, progress=on_tick)
        wall = time.perf_counter() - t
        report = build_report(sc, summaries, sup, wall)
    finally:
        sup.shutdown()
    write_report(report, run_dir)
    return report


# What the report reads of every tick's summary (series, run_summary, the capacity figures); the
# rest (per-area, per-base-station, per-alert arrays: about 80% of a summary) only of the last.
_REPORT_FIELDS = frozenset({
    "tick", "messages", "alerts", "alerts_undelivered", "peak_alerts_per_s", "hh_lost", "hh_at_risk", "prepay_topups",
    "dcc_hubs", "reachable_hubs", "reachable_meters", "hubs_by_wan", "supplier_hubs", "credit_off_supplier",
    "credit_ec_supplier", "capacity"})


def for_report(s: TickSummary) -> TickSummary:
    """A copy of `s` holding only the fields the report reads of every tick; reading another is an
    AttributeError, never a silent zero."""
    out = object.__new__(TickSummary)
    out.__dict__.update({k: v for k, v in vars(s).items() if k in _REPORT_FIELDS})
    return out


def series(config: FleetConfig, summaries: list[TickSummary]) -> dict[str, Any]:
    """Time series for the report's plots, one value per tick."""
    from twin.reporting.capacity import capacity_series

    csps = [c.name.title() for c in Csp]
    msgs = np.array([s.messages.sum(axis=1) for s in summaries])
    dark = np.array([s.dark_hubs for s in summaries])
    wan = np.array([s.hubs_by_wan.sum(axis=0) for s in summaries])
    alerts = np.array([s.alerts.sum(axis=0) for s in summaries])
    sup = np.array([s.supplier_hubs for s in summaries])
    off = np.array([s.credit_off_supplier for s in summaries])
    return {
        "tick": [s.tick for s in summaries],
        "time": [config.time_of(s.tick + 1).isoformat() for s in summaries],
        "messages_by_csp": {c: msgs[:, i].tolist() for i, c in enumerate(csps)},
        "dark_hubs": dark.sum(axis=1).tolist(),
        "dark_by_csp": {c: dark[:, i].tolist() for i, c in enumerate(csps)},
        "hubs_by_wan": {WAN_LABEL[w]: wan[:, w].tolist() for w in WanTech},
        "hh_at_risk": [s.hh_at_risk for s in summaries],
        "hh_lost_cum": np.cumsum([s.hh_lost for s in summaries]).tolist(),
        "alerts": {k.name: alerts[:, k].tolist() for k in AlertKind},
        "peak_alerts_per_s": [s.peak_alerts_per_s for s in summaries],
        "supplier_hubs": {x.name: sup[:, k].tolist() for k, x in enumerate(SUPPLIERS, 1)},
        "prepay_off_supply": {x.name: off[:, k].tolist() for k, x in enumerate(SUPPLIERS, 1)},
        "prepay_emergency_credit": [int(s.credit_ec_supplier.sum()) for s in summaries],
        "capacity": capacity_series(summaries, config.params.capacity),
    }


def build_report(sc: Scenario, summaries: list[TickSummary], sup, wall_s: float) -> dict[str, Any]:
    from twin.reporting.summary import run_summary

    infos = sup.info()
    summary = run_summary(config=sc.config.to_dict() | {"days": sc.days}, summaries=summaries,
                          shards=len(sup.shards), state_bytes=sum(i["state_bytes"] for i in infos),
                          build_s=sup.build_s, run_s=wall_s, state_hash=sup.state_hash())
    ops = []
    for view in sup.operations():
        hist = [(t, p.figures()) for t, p in sup.operation_history(view["name"])]
        keys = sorted({k for _, c in hist for k in c})
        md = view["metadata"]
        ops.append({"name": view["name"], "kind": md["kind"], "done": view["done"],
                    "metadata": {"state": md["state"].value, "reason": md["reason"],
                                 "percent_done": round(md["percent_done"], 1), **md["progress"].result()},
                    "series": {"tick": [t for t, _ in hist], **{k: [c.get(k, 0) for _, c in hist] for k in keys}}
                    if hist else {}})
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "scenario": {"name": sc.name, "description": sc.description, "file": sc.file},
        "config": {"hubs": sc.config.hubs, "seed": sc.config.seed, "shards": len(sup.shards), "days": sc.days,
                   "start": sc.config.start.isoformat()},
        "summary": summary,
        "series": series(sc.config, summaries),
        "operations": ops,
    }


def write_report(report: dict[str, Any], run_dir: Path) -> None:
    """report.json and report.html. A long run's series are aggregated by day, week or month in
    both (twin.reporting.downsample: at most MAX_POINTS points per series, `series.period` says
    which); its half-hourly figures are in the run's history."""
    import json

    from twin.reporting.downsample import downsample_run_report
    from twin.reporting.html import write_html

    run_dir.mkdir(parents=True, exist_ok=True)
    short = downsample_run_report(report)
    (run_dir / "report.json").write_text(json.dumps(short, indent=1) + "\n")
    write_html(short, run_dir / "report.html")
