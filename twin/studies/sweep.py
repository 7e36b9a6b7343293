"""Capacity studies: one scenario run at several values of one parameter, the points in parallel
as Ray tasks (spread over the cluster), summarised in one report (a table and plots)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from twin.model.config import TwinInputError


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


def _run_point(doc: dict[str, Any], point_dir: str, hubs: int | None, seed: int | None, shards: int,
               cpus_per_shard: float) -> dict:
    from twin.studies.scenario import load_scenario, run_scenario

    path = Path(point_dir) / "scenario.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    sc = load_scenario(path, hubs=hubs, seed=seed)
    return run_scenario(sc, run_dir=Path(point_dir), shards=shards, cpus_per_shard=cpus_per_shard)


def run_sweep(scenario: Path, *, param: str, values: list[Any], out: Path, hubs: int | None = None,
              seed: int | None = None, shards: int | None = None) -> dict[str, Any]:
    """Run every point (Ray must be started) and write sweep.json and sweep.html to `out`."""
    import ray

    from twin.studies.scenario import load_scenario

    base = yaml.safe_load(scenario.read_text())
    docs = []
    for v in values:
        doc = copy.deepcopy(base)
        set_param(doc, param, v)
        docs.append(doc)
        tmp = out / "check.yaml"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(yaml.safe_dump(doc))
        load_scenario(tmp, hubs=hubs, seed=seed)  # validate every point before running any
        tmp.unlink()
    cpus = float(ray.cluster_resources().get("CPU", 1))
    shards = shards or max(1, int(cpus // len(values)))
    per_shard = min(1.0, cpus / (len(values) * shards))
    # Each point drives its own shards (which hold the CPUs); the driving task only waits on them.
    task = ray.remote(num_cpus=0, scheduling_strategy="SPREAD")(_run_point)
    refs = [task.remote(d, str(out / f"point-{i}"), hubs, seed, shards, per_shard) for i, d in enumerate(docs)]
    reports = ray.get(refs)
    rows = []
    for v, r in zip(values, reports, strict=True):
        s = r["series"]
        msgs = np.array([s["messages_by_csp"][c] for c in ("North", "Central", "South")])
        rows.append({"value": v, "peak_messages_per_tick": {c: int(msgs[i].max()) for i, c in
                                                            enumerate(("North", "Central", "South"))},
                     "peak_messages_per_s": {c: round(int(msgs[i].max()) / 1800, 1) for i, c in
                                             enumerate(("North", "Central", "South"))},
                     "peak_alerts_per_s": int(max(s["peak_alerts_per_s"])), "max_dark_hubs": int(max(s["dark_hubs"])),
                     "hh_periods_lost": int(s["hh_lost_cum"][-1]), "state_hash": r["summary"]["state_hash"]})
    result = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "scenario": str(scenario),
              "param": param, "values": values, "points": rows,
              "series": {str(v): {"time": r["series"]["time"], "dark_hubs": r["series"]["dark_hubs"]}
                         for v, r in zip(values, reports, strict=True)}}
    (out / "sweep.json").write_text(json.dumps(result, indent=1) + "\n")
    _write_html(result, out / "sweep.html")
    return result


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
    f2.update_layout(title="Dark hubs over time")
    figs.append(f2)
    f3 = go.Figure([go.Bar(x=xs, y=[p["hh_periods_lost"] for p in pts], name="lost"),
                    go.Bar(x=xs, y=[p["peak_alerts_per_s"] for p in pts], name="peak alerts/s")])
    f3.update_layout(title="Half-hourly periods lost and peak alerts per second", barmode="group",
                     xaxis_title=result["param"])
    figs.append(f3)
    rows = "".join(
        f"<tr><td>{html.escape(str(p['value']))}</td>"
        + "".join(f"<td>{p['peak_messages_per_s'][c]}</td>" for c in ("North", "Central", "South"))
        + f"<td>{p['peak_alerts_per_s']}</td><td>{p['max_dark_hubs']}</td><td>{p['hh_periods_lost']}</td></tr>"
        for p in pts)
    body = "".join(pio.to_html(f, include_plotlyjs=(i == 0), full_html=False) for i, f in enumerate(figs))
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>Sweep {html.escape(result['param'])}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:4px 8px}</style></head>"
        f"<body><h1>Sweep of {html.escape(result['param'])}</h1><p>{html.escape(result['scenario'])}</p>"
        "<table><tr><th>value</th><th>North msgs/s</th><th>Central msgs/s</th><th>South msgs/s</th>"
        f"<th>peak alerts/s</th><th>max dark hubs</th><th>HH lost</th></tr>{rows}</table>{body}</body></html>")
