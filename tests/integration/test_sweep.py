"""The shipped breaking-point sweep, run small on the engine (Ray): every point, a baseline
without the migration, and per CSP a breaking point consistent with the points' figures."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from twin.studies.capacity import CSPS, WINDOWS
from twin.studies.sweep import load_sweep, run_sweep

ROOT = Path(__file__).resolve().parents[2]


def test_the_mhhs_sweep_finds_each_csps_breaking_point_and_the_baseline_headroom(ray_session, tmp_path):
    spec = load_sweep(ROOT / "sweeps" / "mhhs-breaking-point.yaml")
    # Small: 20,000 hubs, one day with the migration starting at 01:00 (four of its nine waves
    # in), three of its shares.
    doc = yaml.safe_load(spec.scenario.read_text())
    doc["fleet"]["days"] = 1
    doc["events"][0]["at"] = "1h"
    scenario = tmp_path / "mhhs.yaml"
    scenario.write_text(yaml.safe_dump(doc))
    values = [0.25, 0.5, 1.0]
    res = run_sweep(scenario, param=spec.param, values=values, out=tmp_path / "out", hubs=20_000, shards=1,
                    klass=spec.klass, quantile=spec.quantile, over=spec.over, name=spec.name)
    assert json.loads((tmp_path / "out" / "sweep.json").read_text()) == json.loads(json.dumps(res))
    assert "Breaking point" in (tmp_path / "out" / "sweep.html").read_text()
    assert [p["value"] for p in res["points"]] == values
    hashes = {p["state_hash"] for p in res["points"]} | {res["baseline"]["state_hash"]}
    assert len(hashes) == 4  # every share, and the baseline, is a different run
    bp = res["breaking_point"]
    assert (bp["class"], bp["quantile"], bp["over"], bp["target_s"]) == ("on-demand", 0.99, "half-hour", 30.0)
    key = WINDOWS["half-hour"]
    for c in CSPS:
        shares = [p["capacity"]["service"][c][key] for p in res["points"]]
        e = bp["per_csp"][c]
        if e["status"] == "within":
            assert min(shares) >= 0.99 and e["value"] is None
        elif e["status"] == "below_range":
            assert shares[0] < 0.99 and e["value"] == values[0]
        else:
            lo, hi = e["bracket"]
            i = values.index(lo)
            assert values[i + 1] == hi and all(s >= 0.99 for s in shares[:i + 1]) and shares[i + 1] < 0.99
            assert lo <= e["value"] <= hi
        h = res["headroom"][c]
        base = res["baseline"]["capacity"]
        assert h["within_target"] == base["service"][c][key]
        assert h["latency_headroom_s"] == round(30.0 - base["service"][c]["worst_tick_p99_s"], 2)
        links = {n: v for n, v in base["links"].items() if n.startswith(c.upper() + "/")}
        assert h["link_headroom"] == round(1 - max(v["peak_utilisation"] for v in links.values()), 4)
    # More of the fleet migrated, more load: the busiest link's peak grows with the share.
    peaks = [max(v["peak_utilisation"] for v in p["capacity"]["links"].values()) for p in res["points"]]
    assert peaks == sorted(peaks) and peaks[-1] > max(v["peak_utilisation"]
                                                     for v in res["baseline"]["capacity"]["links"].values())
