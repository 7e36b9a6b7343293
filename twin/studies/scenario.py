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
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from twin.engine.needs import DEFAULT_CHECKPOINT_EVERY
from twin.model.catalog import SUPPLIERS, WAN_LABEL, AlertKind, Csp, WanTech
from twin.model.config import FleetConfig, TwinInputError, parse_regions
from twin.model.ops.commands import Command, parse_command
from twin.model.params import HALF_HOURS_PER_DAY, ModelParams
from twin.model.summary import TickSummary
from twin.model.timeutil import parse_instant
from twin.studies.report_ticks import ReportTicks, ReportTicksError

if TYPE_CHECKING:
    from twin.engine.supervisor import FleetSupervisor

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
                 cpus_per_shard: float | None = None,
                 checkpoint_every: int | None = DEFAULT_CHECKPOINT_EVERY) -> dict[str, Any]:
    """Run a scenario on the engine (Ray must be started); returns the report and writes it."""
    run = ScenarioRun.start(sc, run_dir=run_dir, shards=shards, cpus_per_shard=cpus_per_shard,
                            checkpoint_every=checkpoint_every)
    return run.finish(progress)


class NotResumable(TwinInputError):
    """A run directory `twin run --resume` cannot continue; the message says why (field "--resume")."""

    def __init__(self, reason: str) -> None:
        super().__init__("--resume", reason)


class ScenarioRun:
    """A scenario on the engine, started (`start`) or continued from its run directory after its
    driver died (`resume`); `finish` runs it to its last tick and writes the report, the same
    report either way.

    As the run goes, what the report reads of every tick is appended to the run directory
    (twin.studies.report_ticks), durably before each checkpoint counts, so a resume from a
    checkpoint reads back the ticks before it instead of running them again."""

    def __init__(self, sc: Scenario, sup: FleetSupervisor, record: ReportTicks, summaries: list[TickSummary],
                 run_s: float) -> None:
        self.sc = sc
        self.sup = sup
        self.record = record
        # The newest summary whole (the report's end state), the earlier ones with only what the
        # report reads per tick: a year's summaries whole would hold ~0.5 GB.
        self.summaries = summaries
        self.run_s = run_s  # the run's wall seconds before this process (0 unless resumed)
        self._closed = False

    @classmethod
    def start(cls, sc: Scenario, *, run_dir: Path, shards: int | None = None, cpus_per_shard: float | None = None,
              checkpoint_every: int | None = DEFAULT_CHECKPOINT_EVERY) -> ScenarioRun:
        """Build the fleet in a new run directory and submit the scenario's events (journaled).
        Raises RunStateError if `run_dir` already holds a run, TwinInputError ("events[i]...")
        for an event the engine refuses."""
        from twin.engine.supervisor import FleetSupervisor

        # A report shows every operation of the run, however long ago it finished: none is retired.
        sup = FleetSupervisor(sc.config, shards=shards, run_dir=run_dir, cpus_per_shard=cpus_per_shard,
                              checkpoint_every=checkpoint_every, operation_retention_days=None)
        try:
            # Once the supervisor has refused a directory holding another run (whose record this
            # would replace), and before any event is journaled or tick run.
            write_scenario_record(sc, run_dir)
            for i, cmd in enumerate(sc.commands):
                try:
                    sup.submit_command(cmd)
                except TwinInputError as e:
                    raise TwinInputError(f"events[{i}].{e.field}", e.reason) from None
            record = ReportTicks.create(run_dir, RECORDED_FIELDS)
        except BaseException:
            sup.shutdown()
            raise
        return cls(sc, sup, record, [], 0.0)

    @classmethod
    def resume(cls, sc: Scenario, *, run_dir: Path, cpus_per_shard: float | None = None) -> ScenarioRun:
        """Continue the run in `run_dir` (`sc` from `load_resumable`; Ray must be started): the
        shards restore the newest complete checkpoint, the planner its snapshot, the journal
        replays (the events are not submitted again: they are in it), and the report's figures of
        the ticks up to the checkpoint are read back. Raises NotResumable if they cannot be."""
        from twin.engine.rundir import read_manifest
        from twin.engine.supervisor import FleetSupervisor

        manifest = read_manifest(run_dir)
        sup = FleetSupervisor(sc.config, shards=manifest.get("shards"), run_dir=run_dir, cpus_per_shard=cpus_per_shard,
                              checkpoint_every=manifest.get("checkpoint_every", DEFAULT_CHECKPOINT_EVERY),
                              resume=True, operation_retention_days=None)
        try:
            record, summaries, run_s = ReportTicks.resume(run_dir, RECORDED_FIELDS, upto=sup.tick - 1,
                                                          trim=for_report)
        except ReportTicksError as e:
            sup.shutdown()
            raise NotResumable(str(e)) from None
        except BaseException:
            sup.shutdown()
            raise
        return cls(sc, sup, record, summaries, run_s)

    @property
    def tick(self) -> int:
        """The next tick to run."""
        return self.sup.tick

    @property
    def resumed_from(self) -> int | None:
        """The checkpoint tick a resumed run continued from (-1: from the start), else None."""
        return self.sup.resumed_from

    def finish(self, progress: Callable[[TickSummary], None] | None = None) -> dict[str, Any]:
        """Run to the scenario's last tick (`progress` hears each tick run), then build the report,
        shut the fleet down and write report.json and report.html. Returns the report."""
        import time

        sup, sc = self.sup, self.sc
        t = time.perf_counter()

        def on_tick(s: TickSummary) -> None:
            # A tick listener, so it runs before the tick's checkpoint is marked: the record is
            # synced first, and every complete checkpoint has its ticks' rows on disk.
            if self.summaries:
                self.summaries[-1] = for_report(self.summaries[-1])
            self.summaries.append(s)
            self.record.append(s, self.run_s + time.perf_counter() - t, sync=sup.run.is_checkpoint_tick(s.tick))

        try:
            sup.add_listener(on_tick)
            sup.run_until(sc.ticks, progress=progress)
            report = build_report(sc, self.summaries, sup, self.run_s + time.perf_counter() - t)
        finally:
            self.close()
        write_report(report, sup.run_dir)
        return report

    def close(self) -> None:
        """Shut the fleet down and close the record (once; `finish` does it)."""
        if not self._closed:
            self._closed = True
            try:
                self.record.close()
            finally:
                self.sup.shutdown()


# -- the scenario record: what `twin run --resume` needs besides the engine's files ---------------
SCENARIO_FILE = "scenario.json"
SCENARIO_FORMAT = "twin.scenario-run"
SCENARIO_VERSION = 1


def _json_safe(value: Any) -> Any:
    """An event as JSON holds it: times (YAML reads an unquoted ISO time as a datetime) as ISO
    text, which the event grammar reads back to the same instant."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_scenario_record(sc: Scenario, run_dir: Path) -> None:
    """RUN_DIR/scenario.json, atomically: the scenario's name, description, file, days and events
    (the fleet config and shards are in manifest.json)."""
    import json

    from twin.engine.files import replace_synced

    run_dir.mkdir(parents=True, exist_ok=True)
    doc = {"format": SCENARIO_FORMAT, "version": SCENARIO_VERSION, "name": sc.name, "description": sc.description,
           "file": sc.file, "days": sc.days, "ticks": sc.ticks, "events": _json_safe(sc.events)}
    path = run_dir / SCENARIO_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    replace_synced(tmp, path)


def _read_json(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def load_resumable(run_dir: Path) -> Scenario:
    """The scenario of the run in `run_dir`, for `twin run --resume`: from its manifest (config)
    and its scenario record, events parsed again (they are not submitted again: the journal holds
    them). Reads files only (Ray need not be started). Raises NotResumable for a directory that
    is not a twin run, a run that already finished (its report is written) or a run written by a
    twin without the scenario record."""
    manifest = _read_json(run_dir / "manifest.json")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
        raise NotResumable(f"{run_dir} is not a twin run directory (no readable manifest.json)")
    report = _read_json(run_dir / "report.json")
    if isinstance(report, dict):
        try:
            done, days = int(report["summary"]["ticks"]), float(report["config"]["days"])
        except (KeyError, TypeError, ValueError):
            done, days = 0, 0.0
        if done and done >= max(1, round(days * HALF_HOURS_PER_DAY)):
            raise NotResumable(f"the run in {run_dir} already finished: its report, to its last tick ({done - 1}), "
                               f"is {run_dir / 'report.json'} and {run_dir / 'report.html'}")
    doc = _read_json(run_dir / SCENARIO_FILE)
    if doc is None:
        raise NotResumable(f"{run_dir} holds no scenario record ({SCENARIO_FILE}): its run was started by an older "
                           "twin (or is not a `twin run`; `twin up --resume` continues a live twin's run), "
                           "so twin run cannot tell how to finish it; run the scenario again")
    if not isinstance(doc, dict) or doc.get("format") != SCENARIO_FORMAT or doc.get("version") != SCENARIO_VERSION:
        raise NotResumable(f"{run_dir / SCENARIO_FILE} is not a scenario record this twin reads "
                           f"({SCENARIO_FORMAT!r} version {SCENARIO_VERSION})")
    try:
        config = FleetConfig.from_dict(manifest["config"])
        sc = Scenario(name=str(doc["name"]), description=str(doc["description"]), config=config,
                      days=float(doc["days"]), events=list(doc["events"]), file=str(doc["file"]))
        sc.commands = [_parse_event(i, e, config) for i, e in enumerate(sc.events)]
    except (KeyError, TypeError, ValueError) as e:
        raise NotResumable(f"{run_dir}: its manifest or scenario record cannot be read ({e})") from None
    return sc


# What the report reads of every tick's summary (series, run_summary, the capacity figures); the
# rest (per-area, per-base-station, per-alert arrays: about 80% of a summary) only of the last.
_REPORT_FIELDS = frozenset({
    "tick", "messages", "alerts", "alerts_undelivered", "peak_alerts_per_s", "hh_lost", "hh_at_risk", "prepay_topups",
    "dcc_hubs", "reachable_hubs", "reachable_meters", "hubs_by_wan", "supplier_hubs", "credit_off_supplier",
    "credit_ec_supplier", "capacity"})


# What it reads of the last tick besides (the end state: hubs, meters, dark hubs by reason and
# age, prepayment). A resume whose checkpoint is the last tick has only the record's last tick.
_END_FIELDS = frozenset({"off_dcc_hubs", "meters", "dark_by_reason", "dark_age", "prepay_supplier"})
# What the run directory keeps of every tick (twin.studies.report_ticks) for a resumed run's report.
RECORDED_FIELDS = _REPORT_FIELDS | _END_FIELDS


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
