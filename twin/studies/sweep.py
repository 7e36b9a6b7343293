"""Capacity studies: one scenario run at several values of one parameter, the points in parallel
as Ray tasks (spread over the cluster), summarised in one report (a table and plots).

Every point's run gives its capacity figures (twin.studies.capacity: link utilisation, service
levels per CSP and class, alerts under load), and the sweep adds a baseline run (the scenario
without the swept event, or with the swept parameter at its default) and, per CSP, the breaking
point: the swept value at which a class's p99 latency over the run passes its Target Response
Time, interpolated between the points either side, with the headroom the baseline has.

A sweep is given on the command line (a scenario, --param, --values) or as a sweep file:

    name: mhhs-breaking-point
    description: ...
    scenario: ../scenarios/mhhs-migration.yaml   # relative to the sweep file
    param: events[0].share
    values: [0.1, 0.25, 0.5, 0.75, 1.0]
    hubs: 20000                                  # optional, as --hubs (also seed, shards)
    breaking_point: {class: on-demand, quantile: 0.99, over: half-hour}   # the defaults
    seeds: 1-4                                   # optional, as --seeds: each point once per seed

A sweep file with `seeds` and no `param` is an ensemble of its scenario (`run_ensemble`).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from twin.model.catalog import CLASS_LABEL, TrafficClass
from twin.model.config import TwinInputError
from twin.reporting.downsample import downsample_series, period_phrase
from twin.studies.capacity import CSPS, WINDOWS, breaking_points, capacity_class, capacity_figures
from twin.studies.ensemble import parse_seeds

SWEEP_KEYS = {"name", "description", "scenario", "param", "values", "hubs", "seed", "shards", "breaking_point",
              "seeds"}


@dataclass
class SweepSpec:
    """A sweep: the scenario, the parameter path and its values, and what the breaking point is
    of (a traffic class and the latency quantile held against its Target Response Time)."""

    scenario: Path
    param: str | None  # None: an ensemble over `seeds`
    values: list[Any]
    name: str = ""
    description: str = ""
    hubs: int | None = None
    seed: int | None = None
    shards: int | None = None
    klass: TrafficClass = TrafficClass.ON_DEMAND
    quantile: float = 0.99
    over: str = "half-hour"  # a key of twin.studies.capacity.WINDOWS
    seeds: list[int] | None = None


def is_sweep_file(path: Path) -> bool:
    """Whether `path` is a sweep file (a mapping with `param`) rather than a scenario."""
    from twin.yamlfile import load_mapping

    doc = load_mapping(path, "a scenario or a sweep")
    return "param" in doc or "seeds" in doc


def load_sweep(path: Path) -> SweepSpec:
    """Read and check a sweep file; TwinInputError naming the key at fault."""
    from twin.yamlfile import load_mapping

    doc = load_mapping(path, "scenario, param and values")
    unknown = set(doc) - SWEEP_KEYS
    if unknown:
        raise TwinInputError(sorted(unknown)[0], f"not a sweep key; keys are {', '.join(sorted(SWEEP_KEYS))}")
    seeds = parse_seeds(doc["seeds"]) if "seeds" in doc else None
    ensemble = seeds is not None and "param" not in doc
    for key in ("scenario",) if ensemble else ("scenario", "param", "values"):
        if doc.get(key) in (None, "", []):
            raise TwinInputError(key, "is required" + ("" if seeds else " (or seeds, for an ensemble)"))
    if ensemble and "values" in doc:
        raise TwinInputError("values", "values need a param to sweep; an ensemble has seeds only")
    if not isinstance(doc["scenario"], str) or not (ensemble or isinstance(doc["param"], str)):
        raise TwinInputError("scenario" if not isinstance(doc["scenario"], str) else "param", "must be text")
    values = [] if ensemble else doc["values"]
    if not ensemble and (not isinstance(values, list) or len(values) < 2):
        raise TwinInputError("values", "give a list of at least two values")
    if seeds and doc.get("seed") is not None:
        raise TwinInputError("seed", "give seed or seeds, not both")
    for key in ("hubs", "seed", "shards"):
        v = doc.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < (0 if key == "seed" else 1)):
            raise TwinInputError(key, f"must be a whole number{' from 0' if key == 'seed' else ' from 1'}, got {v!r}")
    bp = doc.get("breaking_point") or {}
    if not isinstance(bp, dict) or set(bp) - {"class", "quantile", "over"}:
        raise TwinInputError("breaking_point", "a mapping of class (e.g. on-demand), quantile (e.g. 0.99) and over "
                                               f"({' or '.join(WINDOWS)})")
    over = bp.get("over", "half-hour")
    if over not in WINDOWS:
        raise TwinInputError("breaking_point.over", f"must be {' or '.join(WINDOWS)}, got {over!r}")
    quantile = bp.get("quantile", 0.99)
    if isinstance(quantile, bool) or not isinstance(quantile, int | float) or not 0 < quantile < 1:
        raise TwinInputError("breaking_point.quantile", f"must be between 0 and 1, got {quantile!r}")
    klass = capacity_class(str(bp.get("class", "on-demand")), "breaking_point.class")
    return SweepSpec(scenario=(path.parent / doc["scenario"]).resolve(), param=doc.get("param"), values=values,
                     name=str(doc.get("name") or path.stem), description=str(doc.get("description") or ""),
                     hubs=doc.get("hubs"), seed=doc.get("seed"), shards=doc.get("shards"), klass=klass,
                     quantile=float(quantile), over=over, seeds=seeds)


def set_param(doc: dict[str, Any], path: str, value: Any) -> None:
    """'incidents.outage_alert_backoff_s' -> fleet.params; 'events[1].installs_per_day' -> an event."""
    if path.startswith("events["):
        idx_text, _, key = path[len("events["):].partition("].")
        try:
            event = doc.get("events", [])[int(idx_text)]
        except (ValueError, IndexError):
            raise TwinInputError("param", f"{path!r}: no such event") from None
        if not key:
            raise TwinInputError("param", f"{path!r}: name a field, e.g. events[0].installs_per_day")
        event[key] = value
        return
    group, _, key = path.partition(".")
    if not key:
        raise TwinInputError("param", f"{path!r}: use group.name (e.g. incidents.outage_alert_backoff_s) "
                                      "or events[i].field")
    doc.setdefault("fleet", {}).setdefault("params", {}).setdefault(group, {})[key] = value


def baseline_doc(doc: dict[str, Any], path: str) -> dict[str, Any]:
    """The scenario a sweep's points are compared with: without the swept event (events[i].x),
    or, for a model parameter, as the scenario gives it."""
    out = copy.deepcopy(doc)
    if path.startswith("events["):
        idx_text = path[len("events["):].partition("]")[0]
        try:
            del out["events"][int(idx_text)]
        except (ValueError, IndexError, KeyError, TypeError):
            raise TwinInputError("param", f"{path!r}: no such event") from None
    return out


def _run_point(doc: dict[str, Any], point_dir: str, hubs: int | None, seed: int | None, shards: int,
               cpus_per_shard: float, klass: int = int(TrafficClass.ON_DEMAND), quantile: float = 0.99) -> dict:
    from twin.studies.scenario import load_scenario, run_scenario

    path = Path(point_dir) / "scenario.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    sc = load_scenario(path, hubs=hubs, seed=seed)
    summaries = []  # only their capacity reports are kept: a few hundred numbers a tick
    report = run_scenario(sc, run_dir=Path(point_dir), shards=shards, cpus_per_shard=cpus_per_shard,
                          progress=lambda s: summaries.append(_CapacityOnly(s.capacity)))
    report["capacity"] = capacity_figures(summaries, klass=TrafficClass(klass), quantile=quantile)
    report["target_s"] = sc.config.params.capacity.target_response_s[TrafficClass(klass).name]
    return report


@dataclass
class _CapacityOnly:
    capacity: Any


def run_sweep(scenario: Path, *, param: str, values: list[Any], out: Path, hubs: int | None = None,
              seed: int | None = None, shards: int | None = None, klass: TrafficClass = TrafficClass.ON_DEMAND,
              quantile: float = 0.99, over: str = "half-hour", name: str = "", description: str = "",
              seeds: list[int] | None = None) -> dict[str, Any]:
    """Run every point and a baseline (Ray must be started) and write sweep.json and sweep.html
    to `out`: per point the peak figures and its capacity figures; per CSP the breaking point
    (`breaking_points`) of `klass` at `quantile`, and the headroom at the baseline.

    With `seeds` (twin.studies.ensemble.parse_seeds), every point and the baseline run once per
    seed (points x seeds runs, `seed` is then ignored): a point's figures are the means over its
    seeds, with each figure's spread (twin.studies.ensemble.describe) under `spread`, and the
    breaking point is found on the mean share within target of each point."""
    from twin.studies.scenario import load_scenario

    base = yaml.safe_load(scenario.read_text())
    docs = []
    for v in values:
        doc = copy.deepcopy(base)
        set_param(doc, param, v)
        docs.append(doc)
    docs.append(baseline_doc(base, param))
    for doc in docs:
        tmp = out / "check.yaml"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(yaml.safe_dump(doc))
        load_scenario(tmp, hubs=hubs, seed=seed)  # validate every point before running any
        tmp.unlink()
    dirs = [f"point-{i}" for i in range(len(values))] + ["baseline"]
    run_seeds: list[int | None] = list(seeds) if seeds else [seed]
    jobs = [(d, str(out / (p if not seeds else f"{p}/seed-{s}")), s) for d, p in zip(docs, dirs, strict=True)
            for s in run_seeds]
    t = time.perf_counter()
    done = run_jobs(jobs, hubs=hubs, shards=shards, klass=klass, quantile=quantile)
    wall = time.perf_counter() - t
    by_point = [done[i * len(run_seeds):(i + 1) * len(run_seeds)] for i in range(len(docs))]
    if seeds:
        *reports, baseline = [_mean_report(rs, run_seeds, quantile=quantile) for rs in by_point]
    else:
        *reports, baseline = [rs[0] for rs in by_point]
    rows = [_row(v, r) for v, r in zip(values, reports, strict=True)]
    result: dict[str, Any] = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "name": name,
              "description": description, "scenario": str(scenario), "param": param, "values": values,
              "points": rows, "baseline": _row(None, baseline),
              # Dark hubs over time per point, by day or longer for long runs (the highest half-hour).
              "series": {str(v): downsample_series(r["series"], kinds={"dark_hubs": "max"})
                         for v, r in zip(values, reports, strict=True)},
              "seeds": list(seeds) if seeds else None,
              "throughput": throughput([r for rs in by_point for r in rs], wall)}
    result.update(breaking_point_report(values, reports, baseline, klass=klass, quantile=quantile, over=over))
    if seeds:
        result["breaking_point"]["on"] = f"the mean over {len(seeds)} seeds of each point's share within target"
    (out / "sweep.json").write_text(json.dumps(result, indent=1) + "\n")
    _write_html(result, out / "sweep.html")
    return result


def run_jobs(jobs: list[tuple[dict[str, Any], str, int | None]], *, hubs: int | None, shards: int | None,
             klass: TrafficClass = TrafficClass.ON_DEMAND, quantile: float = 0.99,
             max_in_flight: int | None = None) -> list[dict[str, Any]]:
    """Run scenario documents as Ray tasks, each (doc, run directory, seed or None for the
    document's), at most `max_in_flight` at once (default: twice the cluster's CPUs, at least 8),
    the shards of those in flight sharing the CPUs; returns their reports in the jobs' order."""
    import ray

    cpus = float(ray.cluster_resources().get("CPU", 1))
    in_flight = max(1, min(len(jobs), max_in_flight or max(8, int(2 * cpus))))
    shards = shards or max(1, int(cpus // in_flight))
    per_shard = min(1.0, cpus / (in_flight * shards))
    # Each run drives its own shards (which hold the CPUs); the driving task only waits on them.
    task = ray.remote(num_cpus=0, scheduling_strategy="SPREAD")(_run_point)
    results: dict[int, dict[str, Any]] = {}
    pending: dict[Any, int] = {}
    todo = list(enumerate(jobs))
    while todo or pending:
        while todo and len(pending) < in_flight:
            i, (doc, run_dir, s) = todo.pop(0)
            pending[task.remote(doc, run_dir, hubs, s, shards, per_shard, int(klass), quantile)] = i
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            results[pending.pop(ref)] = ray.get(ref)
    return [results[i] for i in range(len(jobs))]


def throughput(reports: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """Hub-days simulated by `reports` (hubs x days, summed over the runs) per second of the
    study's wall time (all runs, start to finish, including each run's build)."""
    hub_days = sum(r["config"]["hubs"] * r["config"]["days"] for r in reports)
    return {"runs": len(reports), "hub_days": hub_days, "wall_s": round(wall_s, 3),
            "hub_days_per_s": round(hub_days / wall_s, 1) if wall_s > 0 else None}


def _mean_report(reports: list[dict[str, Any]], seeds: list[int | None], *, quantile: float) -> dict[str, Any]:
    """One point's runs over its seeds as one report for `_row` and the breaking point: each
    figure of the row the mean over the seeds of that seed's figure (a mean of peaks, not the peak
    of a mean series), the mean capacity figures (twin.studies.ensemble.mean_capacity) and the
    mean per-tick series for the plots; the seeds' own figures, their spread and their state
    hashes ride along."""
    from twin.studies.ensemble import mean_capacity, run_figures, summarise

    rows = [_row(seed, r) for seed, r in zip(seeds, reports, strict=True)]
    figures = [run_figures(row, r["summary"]) for row, r in zip(rows, reports, strict=True)]

    def mean(xs: list[Any]) -> Any:
        if isinstance(xs[0], dict):
            return {k: mean([x[k] for x in xs]) for k in xs[0]}
        return round(float(np.mean(xs)), 4)

    row = {k: mean([r[k] for r in rows]) for k in ("peak_messages_per_tick", "peak_messages_per_s",
                                                   "peak_alerts_per_s", "max_dark_hubs", "hh_periods_lost")}
    capacity = mean_capacity([r["capacity"] for r in reports], quantile=quantile)
    klass = capacity.get("class") or CLASS_LABEL[TrafficClass.ON_DEMAND]
    row |= {"state_hash": None, "capacity": capacity, "spread": summarise(figures, klass=klass),
            "seeds": [{"seed": x["value"], "state_hash": x["state_hash"], "figures": f}
                      for x, f in zip(rows, figures, strict=True)]}
    series = {"time": reports[0]["series"]["time"],
              "dark_hubs": np.mean([r["series"]["dark_hubs"] for r in reports], axis=0).tolist()}
    return {"row": row, "series": series, "capacity": capacity, "target_s": reports[0].get("target_s"),
            "config": reports[0]["config"]}


def run_ensemble(scenario: Path, *, seeds: list[int], out: Path, hubs: int | None = None,
                 shards: int | None = None, klass: TrafficClass = TrafficClass.ON_DEMAND, quantile: float = 0.99,
                 name: str = "", description: str = "") -> dict[str, Any]:
    """Run `scenario` once per seed (Ray must be started; the runs in parallel, see `run_jobs`)
    and write ensemble.json and ensemble.html to `out`: per run its seed, state hash, wall time
    and figures (twin.studies.ensemble.run_figures), per figure its mean, standard deviation,
    range and 95% interval (`summarise`), and the throughput in hub-days per second."""
    from twin.reporting.ensemble import write_ensemble_html
    from twin.studies.ensemble import run_figures, summarise
    from twin.studies.scenario import load_scenario

    load_scenario(scenario, hubs=hubs, seed=seeds[0])  # checked before any run starts
    doc = yaml.safe_load(scenario.read_text())
    jobs: list[tuple[dict[str, Any], str, int | None]] = [(doc, str(out / f"seed-{s}"), s) for s in seeds]
    t = time.perf_counter()
    reports = run_jobs(jobs, hubs=hubs, shards=shards, klass=klass, quantile=quantile)
    wall = time.perf_counter() - t
    runs = []
    for s, r in zip(seeds, reports, strict=True):
        row = _row(s, r)
        runs.append({"seed": s, "state_hash": r["summary"]["state_hash"], "wall_s": r["summary"]["wall_s"],
                     "figures": run_figures(row, r["summary"]), "series": _seed_series(r)})
    cfg = reports[0]["config"]
    result = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "name": name or scenario.stem,
              "description": description, "scenario": str(scenario), "seeds": seeds,
              "hubs": cfg["hubs"], "days": cfg["days"], "shards_per_run": cfg["shards"],
              "class": CLASS_LABEL[klass], "quantile": quantile,
              "figures": summarise([r["figures"] for r in runs], klass=CLASS_LABEL[klass]), "runs": runs,
              "throughput": throughput(reports, wall)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "ensemble.json").write_text(json.dumps(result, indent=1) + "\n")
    write_ensemble_html(result, out / "ensemble.html")
    return result


def _seed_series(report: dict[str, Any]) -> dict[str, Any]:
    """What the ensemble page plots of one run: dark hubs (the highest half-hour) and messages
    (all CSPs, summed) per tick, or by day or longer for a long run (twin.reporting.downsample)."""
    s = report["series"]
    return downsample_series({"time": s["time"], "dark_hubs": s["dark_hubs"],
                              "messages": np.sum([s["messages_by_csp"][c] for c in CSPS], axis=0).tolist()},
                             kinds={"dark_hubs": "max", "messages": "sum"})


def _row(value: Any, r: dict[str, Any]) -> dict[str, Any]:
    if "row" in r:  # a point's seeds as one (`_mean_report`)
        return {"value": value} | r["row"]
    s = r["series"]
    msgs = np.array([s["messages_by_csp"][c] for c in CSPS])
    return {"value": value, "peak_messages_per_tick": {c: int(msgs[i].max()) for i, c in enumerate(CSPS)},
            "peak_messages_per_s": {c: round(int(msgs[i].max()) / 1800, 1) for i, c in enumerate(CSPS)},
            "peak_alerts_per_s": int(max(s["peak_alerts_per_s"])), "max_dark_hubs": int(max(s["dark_hubs"])),
            "hh_periods_lost": int(s["hh_lost_cum"][-1]), "state_hash": r["summary"]["state_hash"],
            "capacity": r.get("capacity", {})}


def breaking_point_report(values: list[Any], reports: list[dict[str, Any]], baseline: dict[str, Any], *,
                          klass: TrafficClass, quantile: float, over: str = "half-hour") -> dict[str, Any]:
    """The sweep's verdict per CSP: the breaking point of `klass` (twin.studies.capacity
    .breaking_points over the points' shares within target, in their worst half-hour or over the
    run, `over`) and the headroom at the baseline: its share within target in that window, its
    worst tick's p99 and the seconds left to the target,
    and the utilisation left on its busiest link (1 - peak utilisation) with that link's name."""
    if not all(r.get("capacity") for r in [*reports, baseline]):
        return {"breaking_point": {}, "headroom": {}}
    try:
        xs = [float(v) for v in values]
    except (TypeError, ValueError):
        return {"breaking_point": {}, "headroom": {}}  # not numbers: nothing to interpolate
    target = float(baseline["target_s"])
    key = WINDOWS[over]
    shares = [{c: r["capacity"]["service"][c][key] for c in CSPS} for r in reports]
    points = breaking_points(xs, shares, quantile=quantile)
    cap = baseline["capacity"]
    headroom = {}
    for c in CSPS:
        svc = cap["service"][c]
        links = {n: v for n, v in cap["links"].items() if n.split("/")[0].title() == c}
        tight = max(links, key=lambda n: links[n]["peak_utilisation"]) if links else None
        headroom[c] = {"within_target": svc[key], "worst_tick_p99_s": svc["worst_tick_p99_s"],
                       "latency_headroom_s": round(target - svc["worst_tick_p99_s"], 2),
                       "busiest_link": tight,
                       "link_headroom": None if tight is None else round(1.0 - links[tight]["peak_utilisation"], 4)}
    return {"breaking_point": {"class": cap["class"], "quantile": quantile, "over": over, "target_s": target,
                               "per_csp": points},
            "headroom": headroom}


def _write_html(result: dict[str, Any], path: Path) -> None:
    import html

    import plotly.graph_objects as go
    import plotly.io as pio

    figs = []
    pts = result["points"]
    xs = [str(p["value"]) for p in pts]
    f1 = go.Figure([go.Bar(name=c, x=xs, y=[p["peak_messages_per_s"][c] for p in pts])
                    for c in ("North", "Central", "South")])
    f1.update_layout(title="Peak messages per second per CSP", xaxis_title=result["param"], barmode="group")
    figs.append(f1)
    f2 = go.Figure([go.Scatter(x=s["time"], y=s["dark_hubs"], name=f"{result['param']}={v}", mode="lines")
                    for v, s in result["series"].items()])
    period = next((s.get("period") for s in result["series"].values()), None) or "half-hour"
    f2.update_layout(title="Dark hubs over time" + (f" ({period_phrase(period, 'max')})" if period != "half-hour"
                                                     else ""))
    figs.append(f2)
    f3 = go.Figure([go.Bar(x=xs, y=[p["hh_periods_lost"] for p in pts], name="lost"),
                    go.Bar(x=xs, y=[p["peak_alerts_per_s"] for p in pts], name="peak alerts/s")])
    f3.update_layout(title="Half-hourly periods lost and peak alerts per second", barmode="group",
                     xaxis_title=result["param"])
    figs.append(f3)
    bp = result.get("breaking_point") or {}
    if bp:
        label = f"{bp['class']} within target ({bp['target_s']:g} s)"
        f4 = go.Figure([go.Scatter(x=[p["value"] for p in pts],
                                   y=[p["capacity"]["service"][c][WINDOWS[bp["over"]]] for p in pts], name=c,
                                   mode="lines+markers") for c in ("North", "Central", "South")])
        f4.add_hline(y=bp["quantile"], line_dash="dash", annotation_text=f"p{bp['quantile'] * 100:g} at target")
        window = "in the worst half-hour" if bp["over"] == "half-hour" else "over the run"
        f4.update_layout(title=f"Share of {label} {window}", xaxis_title=result["param"])
        figs.insert(0, f4)
        links = sorted({n for p in pts for n in p["capacity"]["links"]})
        f5 = go.Figure([go.Scatter(x=[p["value"] for p in pts],
                                   y=[p["capacity"]["links"].get(n, {}).get("peak_utilisation", 0) for p in pts],
                                   name=n, mode="lines+markers") for n in links])
        f5.add_hline(y=1.0, line_dash="dash", annotation_text="saturated")
        f5.update_layout(title="Peak utilisation per link", xaxis_title=result["param"])
        figs.insert(1, f5)
    verdict = ""
    if bp:
        def cell(c: str) -> str:
            e = bp["per_csp"][c]
            if e["status"] == "crossed":
                return f"{e['value']:g} (between {e['bracket'][0]:g} and {e['bracket'][1]:g})"
            return "not within the range swept" if e["status"] == "within" else f"at or below {e['value']:g}"

        head = result["headroom"]
        verdict = (f"<h2>Breaking point: p{bp['quantile'] * 100:g} {html.escape(bp['class'])} latency passes "
                   f"{bp['target_s']:g} s</h2><table><tr><th>CSP</th><th>{html.escape(result['param'])} at the "
                   "breaking point</th><th>baseline within target</th><th>baseline worst p99 (s)</th>"
                   "<th>latency headroom (s)</th><th>busiest link</th><th>link headroom</th></tr>"
                   + "".join(f"<tr><td>{c}</td><td>{html.escape(cell(c))}</td>"
                             f"<td>{head[c]['within_target']:.4f}</td><td>{head[c]['worst_tick_p99_s']}</td>"
                             f"<td>{head[c]['latency_headroom_s']}</td><td>{html.escape(str(head[c]['busiest_link']))}"
                             f"</td><td>{head[c]['link_headroom']}</td></tr>" for c in ("North", "Central", "South"))
                   + "</table>")
    rows = "".join(
        f"<tr><td>{html.escape(str(p['value']))}</td>"
        + "".join(f"<td>{p['peak_messages_per_s'][c]}</td>" for c in ("North", "Central", "South"))
        + f"<td>{p['peak_alerts_per_s']}</td><td>{p['max_dark_hubs']}</td><td>{p['hh_periods_lost']}</td></tr>"
        for p in pts)
    body = "".join(pio.to_html(f, include_plotlyjs=(i == 0), full_html=False) for i, f in enumerate(figs))
    tp = result.get("throughput") or {}
    if tp:
        verdict += (f"<p>{tp['runs']} runs, {tp['hub_days']:,.0f} hub-days in {tp['wall_s']:.1f} s: "
                    f"{tp['hub_days_per_s']:,.0f} hub-days per second.</p>")
    if result.get("seeds"):
        from twin.reporting.ensemble import ci_method, spread_table_html

        seeds = result["seeds"]
        verdict += (f"<h2>Spread over {len(seeds)} seeds</h2><p>Each point ran once per seed ({seeds[0]}..{seeds[-1]}); "
                    "the table above and the plots give each figure's mean over the seeds, and the breaking point "
                    f"is found on the mean share within target. Interval: "
                    f"{html.escape(ci_method(pts[0]['spread']))}.</p>"
                    + "".join(f"<h3>{html.escape(_point_label(result['param'], p['value']))}</h3>"
                              + spread_table_html(p["spread"]) for p in [*pts, result["baseline"]]))
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>Sweep {html.escape(result['param'])}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:4px 8px}</style></head>"
        f"<body><h1>Sweep of {html.escape(result['param'])}</h1><p>{html.escape(result['scenario'])}</p>"
        f"<p>{html.escape(result.get('description', ''))}</p>{verdict}"
        "<table><tr><th>value</th><th>North msgs/s</th><th>Central msgs/s</th><th>South msgs/s</th>"
        f"<th>peak alerts/s</th><th>max dark hubs</th><th>HH lost</th></tr>{rows}</table>{body}</body></html>")


def _point_label(param: str, value: Any) -> str:
    return "baseline" if value is None else f"{param} = {value}"
