"""Ensembles (`twin sweep --seeds`) on the engine (Ray): each seed is its own run, the ensemble's
figures are the statistics of the single runs' figures, and the same seeds give the same figures."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import yaml

from twin.studies.capacity import capacity_figures
from twin.studies.ensemble import run_figures
from twin.studies.scenario import load_scenario, run_scenario
from twin.studies.sweep import _row, run_ensemble, run_sweep

ROOT = Path(__file__).resolve().parents[2]
HUBS = 5_000
SEEDS = [3, 4, 5]


DAYS = 14 / 24


@pytest.fixture(scope="module")
def storm(tmp_path_factory) -> Path:
    """The shipped storm scenario with its events brought forward 16 hours (the outage from 2h,
    the base-station failure at 4h, the incident at 8h), run for 14 hours: the outage, its
    staggered restorations, the base-station failure and the incident all fall in it."""
    doc = yaml.safe_load((ROOT / "scenarios" / "storm-outage.yaml").read_text())
    assert [e["at"] for e in doc["events"]] == ["18h", "20h", "1d"]
    for e, at in zip(doc["events"], ["2h", "4h", "8h"], strict=True):
        e["at"] = at
    doc["fleet"]["days"] = DAYS
    path = tmp_path_factory.mktemp("storm") / "storm.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def ensemble(ray_session, storm, tmp_path_factory) -> dict:
    return run_ensemble(storm, seeds=SEEDS, out=tmp_path_factory.mktemp("ens") / "out", hubs=HUBS, shards=1)


def test_each_seed_is_its_own_run_and_the_report_is_written(ensemble, tmp_path_factory):
    assert [r["seed"] for r in ensemble["runs"]] == SEEDS
    assert len({r["state_hash"] for r in ensemble["runs"]}) == 3
    tp = ensemble["throughput"]
    assert tp["runs"] == 3 and tp["hub_days"] == pytest.approx(3 * HUBS * DAYS)
    assert tp["hub_days_per_s"] == pytest.approx(tp["hub_days"] / tp["wall_s"], rel=1e-3)
    # The storm's alerts and dark hubs differ between seeds: there is a spread to report.
    assert ensemble["figures"]["peak_alerts_per_s"]["std"] > 0


def test_the_ensemble_figures_are_the_statistics_of_the_single_runs(ray_session, ensemble, storm, tmp_path):
    singles = []
    for s in SEEDS:
        sc = load_scenario(storm, hubs=HUBS, seed=s)
        ticks: list = []
        report = run_scenario(sc, run_dir=tmp_path / f"single-{s}", shards=1, progress=ticks.append)
        report["capacity"] = capacity_figures(ticks)  # on-demand at p99, as the ensemble takes them
        singles.append((report["summary"]["state_hash"], run_figures(_row(s, report), report["summary"])))
    assert [h for h, _ in singles] == [r["state_hash"] for r in ensemble["runs"]]
    figures = ensemble["figures"]
    assert {"messages_total", "peak_alerts_per_s", "max_dark_hubs", "within_target.South"} <= set(figures)
    for name, d in figures.items():
        xs = [f[name] for _, f in singles]
        assert d["mean"] == pytest.approx(statistics.fmean(xs), rel=1e-12, abs=1e-12), name
        assert d["std"] == pytest.approx(statistics.stdev(xs), rel=1e-12, abs=1e-12), name
        assert (d["min"], d["max"]) == (min(xs), max(xs)), name
        lo, hi = d["ci95"]
        # Student t on 2 degrees of freedom: 4.303 s / sqrt(3) either side of the mean.
        assert hi - d["mean"] == pytest.approx(4.303 * statistics.stdev(xs) / 3 ** 0.5, rel=1e-3, abs=1e-9), name
        assert d["mean"] - lo == pytest.approx(hi - d["mean"], rel=1e-9, abs=1e-9), name


def test_the_same_seeds_give_the_same_figures(ray_session, ensemble, storm, tmp_path):
    again = run_ensemble(storm, seeds=SEEDS, out=tmp_path / "again", hubs=HUBS, shards=1)
    assert [r["state_hash"] for r in again["runs"]] == [r["state_hash"] for r in ensemble["runs"]]
    assert again["figures"] == ensemble["figures"]
    on_disk = json.loads((tmp_path / "again" / "ensemble.json").read_text())
    assert on_disk["figures"] == json.loads(json.dumps(again["figures"]))
    page = (tmp_path / "again" / "ensemble.html").read_text()
    assert "95% CI of the mean" in page and "hub-days per second" in page
    assert all(r["state_hash"] in page for r in again["runs"])


def test_a_sweep_with_seeds_gives_each_point_the_mean_of_its_seeds(ray_session, tmp_path):
    # The MHHS scenario for half a day, its migration starting at 01:00 (two of its waves in).
    doc = yaml.safe_load((ROOT / "scenarios" / "mhhs-migration.yaml").read_text())
    doc["fleet"]["days"] = 0.5
    doc["events"][0]["at"] = "1h"
    scenario = tmp_path / "mhhs.yaml"
    scenario.write_text(yaml.safe_dump(doc))
    res = run_sweep(scenario, param="events[0].share", values=[0.25, 1.0], out=tmp_path / "out", hubs=HUBS,
                    shards=1, seeds=[1, 2])
    assert res["seeds"] == [1, 2] and res["throughput"]["runs"] == 6
    assert "mean over 2 seeds" in res["breaking_point"]["on"]
    for p in [*res["points"], res["baseline"]]:
        assert len({s["state_hash"] for s in p["seeds"]}) == 2
        per_seed = [s["figures"] for s in p["seeds"]]
        assert p["max_dark_hubs"] == pytest.approx(statistics.fmean(f["max_dark_hubs"] for f in per_seed))
        assert p["spread"]["peak_alerts_per_s"]["mean"] == pytest.approx(
            statistics.fmean(f["peak_alerts_per_s"] for f in per_seed))
        for c in ("North", "Central", "South"):
            share = p["capacity"]["service"][c]["worst_tick_within_target"]
            assert share == pytest.approx(statistics.fmean(f[f"worst_half_hour_within_target.{c}"] for f in per_seed))
    # Every run is distinct: 3 documents x 2 seeds.
    assert len({s["state_hash"] for p in [*res["points"], res["baseline"]] for s in p["seeds"]}) == 6
    assert "Spread over 2 seeds" in (tmp_path / "out" / "sweep.html").read_text()
