"""Two runs of one fleet side by side (a parent and its what-if branch, or any two runs): where
their tick summaries first differ, their final figures and the difference, operation counters, and
the key series of both, read from their history stores (twin.engine.history). This is what the
CompareBranches RPC and `twin compare` serve; twin.reporting.compare renders it as a page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb

from twin.engine.history import WIDE_INT_COLS, attach_views, has_history

# (column, title) of the series plotted for both runs.
KEY_SERIES = (
    ("messages", "Messages per half-hour"),
    ("dark_hubs", "Dark hubs"),
    ("reachable_hubs", "Reachable hubs"),
    ("alerts", "Alerts per half-hour"),
    ("peak_alerts_per_s", "Peak alerts per second"),
    ("hh_at_risk", "Half-hourly periods at risk"),
    ("hh_lost_cum", "Half-hourly periods lost (cumulative)"),
)
# Final figures over the ticks both runs have: (label, SQL aggregate).
AGGREGATES = (
    ("messages", "sum(messages)"),
    ("alerts", "sum(alerts)"),
    ("alerts undelivered", "sum(alerts_undelivered)"),
    ("peak alerts per second", "max(peak_alerts_per_s)"),
    ("HH periods lost", "sum(hh_lost)"),
    ("max dark hubs", "max(dark_hubs)"),
    ("dark hubs at the end", "arg_max(dark_hubs, tick)"),
    ("reachable hubs at the end", "arg_max(reachable_hubs, tick)"),
    ("HH periods at risk at the end", "arg_max(hh_at_risk, tick)"),
)


def _manifest(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def compare_runs(a_dir: Path, b_dir: Path) -> dict[str, Any]:
    """The comparison of two runs from their history stores."""
    for d in (a_dir, b_dir):
        if not has_history(d):
            raise FileNotFoundError(f"{d} has no tick history")
    ma, mb = _manifest(a_dir), _manifest(b_dir)
    if ma.get("config", {}).get("hubs") != mb.get("config", {}).get("hubs") or \
            ma.get("config", {}).get("seed") != mb.get("config", {}).get("seed"):
        raise ValueError("the runs are of different fleets (hubs or seed differ); compare a run with its branches")
    with duckdb.connect() as con:
        # Views over each run's segments: no lock taken, a live run writes on meanwhile.
        attach_views(con, a_dir, schema="a")
        attach_views(con, b_dir, schema="b")
        common = "(SELECT tick FROM a.ticks INTERSECT SELECT tick FROM b.ticks)"
        lo, hi = con.execute(f"SELECT min(tick), max(tick) FROM {common}").fetchone() or (None, None)
        if lo is None:
            raise ValueError("the runs have no tick in common")
        differ = []
        for table in ("ticks", "metrics"):
            rows = f"SELECT * EXCLUDE (branch) FROM {{}}.{table} WHERE tick IN {common}"
            differ.append(f"SELECT tick FROM ({rows.format('a')} EXCEPT {rows.format('b')})")
            differ.append(f"SELECT tick FROM ({rows.format('b')} EXCEPT {rows.format('a')})")
        (div,) = con.execute(f"SELECT min(tick) FROM ({' UNION ALL '.join(differ)})").fetchone() or (None,)
        changed: list[str] = []
        if div is not None:
            ra = con.execute("SELECT * EXCLUDE (branch) FROM a.ticks WHERE tick = ?", [div]).fetchone()
            rb = con.execute("SELECT * EXCLUDE (branch) FROM b.ticks WHERE tick = ?", [div]).fetchone()
            cols = ["tick", "time_utc", *WIDE_INT_COLS]
            changed = [c for c, x, y in zip(cols, ra or (), rb or (), strict=False) if x != y]
        aggs: list[dict[str, Any]] = []
        sql = ", ".join(expr for _, expr in AGGREGATES)
        va = con.execute(f"SELECT {sql} FROM a.ticks WHERE tick IN {common}").fetchone() or ()
        vb = con.execute(f"SELECT {sql} FROM b.ticks WHERE tick IN {common}").fetchone() or ()
        for (label, _), x, y in zip(AGGREGATES, va, vb, strict=True):
            aggs.append({"figure": label, "a": int(x or 0), "b": int(y or 0), "difference": int(y or 0) - int(x or 0)})
        op_sql = ("SELECT metric, key, arg_max(value, tick) FROM {}.metrics WHERE metric LIKE 'op:%' "
                  f"AND tick IN {common} GROUP BY ALL")
        oa = {(m, k): v for m, k, v in con.execute(op_sql.format("a")).fetchall()}
        ob = {(m, k): v for m, k, v in con.execute(op_sql.format("b")).fetchall()}
        ops = [{"operation": m.removeprefix("op:"), "counter": k, "a": oa.get((m, k)), "b": ob.get((m, k))}
               for m, k in sorted(set(oa) | set(ob))]
        series = {alias: _series(con, alias) for alias in ("a", "b")}
    fork = None
    for child, parent in ((mb, a_dir), (ma, b_dir)):
        p = child.get("parent") or {}
        if p and Path(p.get("run_dir", "")).resolve() == parent.resolve():
            fork = p.get("fork_tick")
    return {
        "a": {"name": ma.get("name", a_dir.name), "run_dir": str(a_dir), "parent": ma.get("parent")},
        "b": {"name": mb.get("name", b_dir.name), "run_dir": str(b_dir), "parent": mb.get("parent")},
        "hubs": ma.get("config", {}).get("hubs"), "seed": ma.get("config", {}).get("seed"),
        "common_ticks": [int(lo), int(hi)],
        "fork_tick": fork,
        "divergence_tick": None if div is None else int(div),
        "divergence_time": None if div is None else series["a"]["time"][series["a"]["tick"].index(div)],
        "changed_at_divergence": [c for c in changed if c not in ("tick", "time_utc")],
        "aggregates": aggs,
        "operations": ops,
        "series": series,
    }


def _series(con: duckdb.DuckDBPyConnection, alias: str) -> dict[str, Any]:
    cols = [c for c, _ in KEY_SERIES if c != "hh_lost_cum"]
    rows = con.execute(f"SELECT tick, time_utc, {', '.join(cols)}, sum(hh_lost) OVER (ORDER BY tick) "
                       f"FROM {alias}.ticks ORDER BY tick").fetchall()
    out: dict[str, Any] = {"tick": [r[0] for r in rows], "time": [r[1].isoformat() for r in rows]}
    for i, c in enumerate([*cols, "hh_lost_cum"]):
        out[c] = [int(r[2 + i]) for r in rows]
    return out


def write_comparison_json(cmp: dict[str, Any], out_dir: Path) -> Path:
    """Write `cmp` (from `compare_runs`) as `out_dir/comparison.json`; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    j = out_dir / "comparison.json"
    j.write_text(json.dumps(cmp, indent=1, default=str) + "\n")
    return j
