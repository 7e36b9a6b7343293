"""The HTML report of a real week's run, read as a person reads it (Debian's chromium, Playwright,
1400x1000): the O2 3G switch-off in the South with its 4G hub swaps and VWAN fallback, scaled to
20,000 hubs and brought forward to day 3. From the Plotly figures the page draws: no second axis
that puts its zero away from the first one's, no all-zero series in a legend, a title on every
axis, one progress plot per operation, no chart of more than a few hundred points. Full-page
screenshots go to the test's tmp dir and to I14_REPORT_SHOTS (default /work/wt/i14-report-shots)
for people to look at."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tests.e2e.test_dashboard import CHROMIUM, CHROMIUM_ARGS
from tests.support import twin

SHARE = Path(os.environ.get("I14_REPORT_SHOTS", "/work/wt/i14-report-shots"))
HUBS = 20_000
# The scenario's 3M-hub programme rates scaled to the run's hubs, so the swaps take days, not an hour.
SCENARIO = f"""name: o2-3g-off-south-week
description: >
  The O2 3G switch-off in the South (scenarios/o2-3g-off-south-with-swaps.yaml) brought forward to
  day 3, with its 4G hub swap programme and VWAN fallback scaled to {HUBS:,} hubs.
fleet:
  hubs: {HUBS}
  seed: 1
  days: 7
  start: 2026-11-01T00:00:00+00:00
events:
  - at: 0h
    type: swap_programme
    region: South
    installs_per_day: {12_000 * HUBS // 3_000_000}
    prioritise: 3G
  - at: 3d
    type: network_switch_off
    region: South
    technology: 3G
  - at: 3d
    type: vwan_fallback
    region: South
    onboard_per_day: {4_000 * HUBS // 3_000_000}
"""

# Every axis of every figure as drawn (plotly's _fullLayout: ranges after autorange), per figure:
# its title, each axis' title, range, type, whether it is shown with tick labels and which axis it
# overlays; and each trace in the legend with its y values.
FIGURES_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].map(gd => {
  const L = gd._fullLayout;
  const axes = Object.keys(L).filter(k => /^[xy]axis\\d*$/.test(k)).map(k => ({
    name: k, title: (L[k].title && L[k].title.text) || '', range: L[k].range, type: L[k].type,
    visible: L[k].visible !== false && L[k].showticklabels !== false, overlaying: L[k].overlaying || null}));
  const traces = gd.data.map(t => ({name: t.name, legend: t.showlegend !== false,
    y: Array.from(t.y || []), x0: (t.x || [])[0], n: (t.x || []).length}));
  return {title: (L.title && L.title.text) || '', axes, traces};
})"""


def _zero_at(axis: dict) -> float:
    """Where zero sits up the axis, 0..1 of its height (outside 0..1: off the plot)."""
    lo, hi = axis["range"]
    if axis["type"] == "log":
        return float("-inf")  # a log axis has no zero
    return (0 - lo) / (hi - lo)


def test_a_weeks_switch_off_report_reads_well(tmp_path):
    from playwright.sync_api import sync_playwright

    scenario = tmp_path / "o2-3g-off-south-week.yaml"
    scenario.write_text(SCENARIO)
    run = tmp_path / "run"
    p = twin("run", str(scenario), "--shards", "1", "--run-dir", str(run), timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads((run / "report.json").read_text())
    operations = [op["name"] for op in report["operations"]]
    assert len(operations) == 3  # the swaps, the switch-off, the fallback

    shots = tmp_path / "shots"
    shots.mkdir()
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((run / "report.html").as_uri())
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length > 0 && "
                                   "[...document.querySelectorAll('.js-plotly-plot')].every(g => g._fullLayout)",
                                   timeout=120_000)
            figures = page.evaluate(FIGURES_JS)
            headings = page.locator("h3").all_inner_texts()
            text = page.inner_text("body")
            page.screenshot(path=str(shots / "report-full.png"), full_page=True)
            page.screenshot(path=str(shots / "report-top.png"))
            page.locator("h2", has_text="Operations").scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "report-operations.png"), full_page=False)
        finally:
            browser.close()
    SHARE.mkdir(parents=True, exist_ok=True)
    for shot in shots.iterdir():
        shutil.copy(shot, SHARE / shot.name)

    assert errors == []
    assert figures
    for fig in figures:
        named = {a["name"]: a for a in fig["axes"]}
        for axis in fig["axes"]:
            if axis["visible"]:
                assert axis["title"], f"{fig['title']}: {axis['name']} has no title"
            if axis["overlaying"]:
                # A second axis over the first: its zero where the first one's is.
                key = axis["overlaying"]  # "y" or "y2": the axis "yaxis" or "yaxis2"
                base = named[f"{key[0]}axis{key[1:]}"]
                assert abs(_zero_at(axis) - _zero_at(base)) < 0.01, f"{fig['title']}: {axis['name']} misplaces zero"
        for trace in fig["traces"]:
            if trace["legend"]:
                assert any(v for v in trace["y"] if v is not None), f"{fig['title']}: {trace['name']} is all zero"
            # A week by day: a handful of points per line, never a wall of half-hours.
            assert trace["n"] <= 8, f"{fig['title']}: {trace['name']} has {trace['n']} points"
    # One progress plot per operation, under its heading, named in words.
    assert len(headings) == len(operations)
    for name, heading in zip(operations, headings, strict=True):
        assert heading.endswith(name) and "_" not in heading.split(":")[0]
        assert any(f["title"].startswith(heading) for f in figures), f"no progress plot for {heading}"
    switch_off = next(f for f in figures if f["title"].startswith("Network switch-off"))
    # Its figures, not only its state: hubs still on the network until the switch-off, and those it cut off.
    assert [t["name"] for t in switch_off["traces"]] == ["cut off (dark)", "on the network"]
    # Words, not report keys.
    for key in ("hh_periods_at_risk", "wall_s", "POWER_OUTAGE", "network_switch_off", "messages_total", "{"):
        assert key not in text
