"""Every dashboard page, read as an operator reads it: captured in a real headless browser at
1400x1000 against a real engine and API, at baseline and after a 3G switch-off (with a power cut
beside it), each capture a screenshot (SHOTS/baseline-*.png, SHOTS/switch-off-*.png) and what the
page shows, from its DOM and the Plotly figures' JSON. The captures are made once per module, in
that order, whatever order the tests run in."""

from __future__ import annotations

import os
import re
import signal
import time
from typing import Any

import pytest
import ray

from dashboard.pages import PAGES
from dashboard.pages.alerts import OUTAGE_POINTS
from dashboard.pages.firmware import NO_WAVES
from dashboard.pages.network import REGION_COLUMNS
from dashboard.pages.scenario import NO_RECOVERIES
from tests.e2e.test_dashboard import READY, SHOTS, Stack
from twin.generated.fleet.v1 import fleet_pb2

pytestmark = pytest.mark.usefixtures("ray_session")
OUTAGE_AREA = "12"  # London, in the South: the switch-off is in the Central region

# What a page shows, from its DOM and its figures (a Dash graph's div holds Plotly's `data` and
# `layout`). Overlaps: a legend's box against every axis tick label's box, in the same plot.
READ_JS = """() => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const meets = (a, b) => a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
  const plots = [...document.querySelectorAll('.js-plotly-plot')].map(gd => {
    const legend = gd.querySelector('.legend');
    const ticks = [...gd.querySelectorAll('.xtick text, .ytick text')].filter(t => t.textContent);
    return {id: gd.id || gd.parentElement.closest('[id]').id,
            traces: gd.data.map(t => ({name: t.name, x: t.x ? Array.from(t.x) : [], y: t.y ? Array.from(t.y) : [],
                                       meta: t.meta, fillcolor: t.fillcolor, marker: t.marker || null})),
            ytick_labels: [...gd.querySelectorAll('.ytick text')].map(t => t.textContent),
            legend_over_ticks: legend ? ticks.filter(t => meets(box(legend), box(t))).map(t => t.textContent) : []};
  });
  const text = s => { const e = document.querySelector(s); return e ? e.innerText : null; };
  const rows = s => [...document.querySelectorAll(s)].map(r => [...r.children].map(c => c.innerText));
  return {plots,
          kpis: [...document.querySelectorAll('.kpi')].map(k => [k.querySelector('.kpi-label').textContent,
                                                                 k.querySelector('.kpi-note').textContent]),
          header: text('#hdr-clock'), header_tick: document.querySelector('#hdr-clock').dataset.tick,
          sc_clock: text('#sc-clock-text'),
          waves: text('#fw-waves-box'), no_waves: text('#fw-no-waves'),
          outage_note: text('#al-no-outage'), outage_rows: rows('#al-outage-table tbody tr'),
          region_head: rows('#net-region-table thead tr')[0] || null, region_rows: rows('#net-region-table tbody tr'),
          ops: [...document.querySelectorAll('tr[id^=op-row-]')].map(r => ({
            kind: r.children[1].innerText, counters: r.querySelector('.counters').innerText}))};
}"""


def capture(page, url: str, path: str, tag: str) -> dict[str, Any]:
    """Open a page, stay for two live updates, screenshot it, and read what it shows."""
    page.console_errors.clear()
    page.goto(url + path)
    page.wait_for_selector(READY[path], timeout=30_000)
    tick = int(page.get_attribute("#hdr-clock", "data-tick"))
    page.wait_for_function(f"Number(document.querySelector('#hdr-clock').dataset.tick) > {tick + 1}", timeout=30_000)
    if path == "/firmware":
        page.wait_for_selector("#fw-versions .main-svg", timeout=30_000)
    page.wait_for_timeout(1500)  # the page's own pulse after the header's (no assertion rests on it)
    name = next(p.TITLE.lower() for p in PAGES if path == p.PATH)
    page.screenshot(path=str(SHOTS / f"{tag}-{name}.png"), full_page=True)
    shown = page.evaluate(READ_JS)
    shown["console_errors"] = list(page.console_errors)
    return shown


def capture_all(browser, url: str, tag: str) -> dict[str, dict[str, Any]]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.console_errors = []
    page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.console_errors.append(f"page error: {e}"))
    try:
        return {p.PATH: capture(page, url, p.PATH, tag) for p in PAGES}
    finally:
        ctx.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("pages"))
    yield s
    s.close()


@pytest.fixture(scope="module")
def baseline(stack, browser):
    """Every page before any event."""
    return capture_all(browser, stack.url, "baseline")


@pytest.fixture(scope="module")
def switched_off(stack, browser, baseline):
    """Every page once the Central region's 3G network is off and a power cut is on in London."""
    with stack.client() as c:
        c.create_event(network_switch_off=fleet_pb2.NetworkSwitchOff(region="Central", technology="3G"))
        c.create_event(power_outage=fleet_pb2.PowerOutage(area=OUTAGE_AREA, fraction=0.3, duration_min=4 * 24 * 60))
        start = c.fleet.GetClock(fleet_pb2.GetClockRequest(), metadata=c.metadata).tick
    while stack.sup.tick < start + 3:  # both applied and in a tick summary
        time.sleep(0.2)
    return capture_all(browser, stack.url, "switch-off")


def both(baseline, switched_off) -> list[tuple[str, dict[str, dict[str, Any]]]]:
    return [("baseline", baseline), ("switch-off", switched_off)]


def plot(shown: dict[str, Any], pid: str) -> dict[str, Any]:
    return next(p for p in shown["plots"] if p["id"] == pid)


def test_every_page_has_no_console_errors_and_no_empty_axes(baseline, switched_off):
    for tag, pages in both(baseline, switched_off):
        for path, shown in pages.items():
            assert shown["console_errors"] == [], (tag, path, shown["console_errors"])
            for p in shown["plots"]:
                assert any(t["x"] or t["y"] for t in p["traces"]), (tag, path, p["id"], "a chart with nothing drawn")


def test_no_legend_sits_on_an_axis_label(baseline, switched_off):
    for tag, pages in both(baseline, switched_off):
        for path, shown in pages.items():
            for p in shown["plots"]:
                assert p["legend_over_ticks"] == [], (tag, path, p["id"], p["legend_over_ticks"])


def test_the_map_colours_span_the_areas_values_and_say_so(baseline, switched_off):
    for tag, pages in both(baseline, switched_off):
        fig = plot(pages["/"], "ov-map")
        areas = [t for t in fig["traces"] if t.get("meta") is not None and t["name"] not in ("coast", "scale")]
        scale = next(t for t in fig["traces"] if t["name"] == "scale")["marker"]
        values = [t["meta"] for t in areas]
        assert len(values) == 14
        assert (scale["cmin"], scale["cmax"]) == pytest.approx((min(values), max(values))), tag
        assert min(values) < max(values)
        # The scale is stated beside the colours, and the lowest and highest areas differ in colour.
        assert "scaled to the areas" in scale["colorbar"]["title"]["text"]
        lowest = next(t["fillcolor"] for t in areas if t["meta"] == min(values))
        highest = next(t["fillcolor"] for t in areas if t["meta"] == max(values))
        assert lowest != highest
    # At baseline every area is under 2% dark; after the switch-off the Central areas are far over.
    assert max(t["meta"] for t in plot(baseline["/"], "ov-map")["traces"] if t.get("meta") is not None) < 2
    assert max(t["meta"] for t in plot(switched_off["/"], "ov-map")["traces"] if t.get("meta") is not None) > 10


def test_the_firmware_page_says_in_words_that_no_wave_has_finished(baseline):
    shown = baseline["/firmware"]
    assert shown["no_waves"] == NO_WAVES
    assert "fw-waves" not in [p["id"] for p in shown["plots"]]


def test_every_firmware_version_has_its_label(baseline, switched_off):
    for tag, pages in both(baseline, switched_off):
        fig = plot(pages["/firmware"], "fw-versions")
        categories = {y for t in fig["traces"] for y in t["y"]}
        assert len(categories) > 20
        assert set(fig["ytick_labels"]) == categories, (tag, categories - set(fig["ytick_labels"]))


def test_every_operation_row_has_its_counters(switched_off):
    ops = {o["kind"]: o["counters"] for o in switched_off["/scenario"]["ops"]}
    assert set(ops) == {"network_switch_off", "power_outage"}
    premises_cut = re.search(r"premises cut ([\d,]+)", ops["power_outage"])
    assert premises_cut and int(premises_cut.group(1).replace(",", "")) > 0, ops["power_outage"]
    assert re.fullmatch(r"off at tick \d+", ops["network_switch_off"])
    network_ops = {o["kind"]: o["counters"] for o in switched_off["/network"]["ops"]}
    assert network_ops == {"network_switch_off": ops["network_switch_off"]}


def test_the_scenario_page_names_one_tick(stack, browser):
    """The header and the Scenario page's clock name the same tick (the clock paused, so neither
    is a pulse behind the other)."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    with stack.client() as c:
        c.fleet.UpdateClock(fleet_pb2.UpdateClockRequest(state=fleet_pb2.CLOCK_STATE_PAUSED), metadata=c.metadata)
        # A pause stops the clock after the tick in flight (a tick of a shard recovery can take
        # seconds): the tick is final once two reads 2 s apart agree.
        seen, deadline = -1, time.monotonic() + 60
        while time.monotonic() < deadline:
            tick = c.fleet.GetClock(fleet_pb2.GetClockRequest(), metadata=c.metadata).tick
            if tick == seen:
                break
            seen = tick
            time.sleep(2.0)
        last = seen - 1
    try:
        page.goto(stack.url + "/scenario")
        page.wait_for_function(f"document.querySelector('#sc-clock-text') && "
                               f"document.querySelector('#sc-clock-text').dataset.tick === '{last}' && "
                               f"document.querySelector('#hdr-clock').dataset.tick === '{last}' && "
                               f"document.querySelector('#hdr-clock').innerText.includes('paused')", timeout=30_000)
        header, panel = page.inner_text("#hdr-clock"), page.inner_text("#sc-clock-text")
        named = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d UTC · tick (\d+))", header)
        assert named and int(named.group(2)) == last
        assert panel.startswith(named.group(1))
        assert re.findall(r"tick (\d+)", page.inner_text("#sc-clock")) == [str(last)]
    finally:
        stack.run_clock()
        ctx.close()

def test_the_header_and_the_scenario_page_name_the_same_ticks_while_the_clock_runs(stack, browser):
    """Two ticks a second, a pulse a second: the header and the Scenario page's clock are drawn
    from one frame, so every tick the header names the panel names too, and no other (with a timer
    each, the two sampled the running clock at different moments and named different ticks)."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    stack.run_clock()
    try:
        page.goto(stack.url + "/scenario")
        page.wait_for_selector("#sc-clock-text")
        # Every tick each one shows, in order, as the browser draws it.
        page.evaluate("""() => {
            window.named = {hdr: [], panel: []};
            const note = (k, t) => { const a = window.named[k]; if (t && a[a.length - 1] !== t) a.push(t); };
            const hdr = document.querySelector('#hdr-clock');
            const all = {attributes: true, childList: true, subtree: true};
            new MutationObserver(() => note("hdr", hdr.dataset.tick)).observe(hdr, all);
            const box = document.querySelector('#sc-clock');
            new MutationObserver(() => { const t = document.querySelector('#sc-clock-text');
                                         note('panel', t && t.dataset.tick); })
                .observe(box, all);
        }""")
        page.wait_for_timeout(8000)
        named = page.evaluate("() => window.named")
    finally:
        ctx.close()
    hdr, panel = [int(t) for t in named["hdr"]], [int(t) for t in named["panel"]]
    assert len(hdr) >= 5 and hdr == sorted(hdr) and hdr[-1] - hdr[0] >= 8, named  # it ran, pulse by pulse
    # The first and last may be drawn by one before the observers started or after they stopped.
    assert set(hdr[1:-1]) <= set(panel) and set(panel[1:-1]) <= set(hdr), named



def test_alert_figures_say_whether_they_are_cumulative_or_per_tick(baseline):
    kpis = dict(baseline["/"]["kpis"])
    alerts = {label: note for label, note in kpis.items() if "alerts" in label.lower()}
    assert alerts == {"Alerts this tick": alerts["Alerts this tick"], "Alerts since start": "cumulative, whole run"}
    assert "within it" in alerts["Alerts this tick"]
    assert "since the run began" in kpis["HH data lost"] and "this tick" in kpis["HH data lost"]


def test_the_region_table_holds_reachable_and_dark_hubs(baseline, switched_off):
    for tag, pages in both(baseline, switched_off):
        shown = pages["/network"]
        assert shown["region_head"] == list(REGION_COLUMNS), tag
        assert [r[0] for r in shown["region_rows"]] == ["North", "Central", "South"]
        assert all(int(r[1].replace(",", "")) > 1000 for r in shown["region_rows"]), shown["region_rows"]
    central = switched_off["/network"]["region_rows"][1]
    assert float(central[3].rstrip("%")) > 10


def test_the_outage_table_lists_only_areas_with_an_outage(baseline, switched_off):
    assert baseline["/alerts"]["outage_rows"] == []
    assert baseline["/alerts"]["outage_note"].startswith("No area has an outage")
    rows = switched_off["/alerts"]["outage_rows"]
    assert switched_off["/alerts"]["outage_note"] is None
    areas = {re.search(r"\((\d+)\)$", r[0]).group(1): r for r in rows}
    # The five Central areas (its 3G off) and London (the power cut), worst first, none else.
    assert {r[1] for r in rows if r[0] != areas.get(OUTAGE_AREA, [""])[0]} == {"Central"}
    assert OUTAGE_AREA in areas and len(rows) == 6
    shares = [float(r[3].rstrip("%")) for r in rows]
    assert shares == sorted(shares, reverse=True) and min(shares) >= OUTAGE_POINTS


def test_the_scenario_page_shows_the_node_its_shards_and_a_shard_recovery(stack, browser):
    """The Cluster panel: the one node alive with both shards, a plain sentence while no shard has
    needed recovery, then the recovery of a shard whose process was killed (screenshot
    SHOTS/cluster-recovery-scenario.png)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    sup = stack.sup
    try:
        page.goto(stack.url + "/scenario")
        page.wait_for_selector("#sc-nodes tr.node-row", timeout=30_000)
        row = page.query_selector("#sc-nodes tr.node-row")
        assert (row.get_attribute("data-alive"), row.get_attribute("data-shards")) == ("true", str(len(sup.shards)))
        assert page.inner_text("#sc-cluster-head") == "1 of 1 node alive"
        before = sup.recovery_count
        if before == 0:  # (another test of the module may have killed one already)
            assert page.inner_text("#sc-recoveries") == NO_RECOVERIES
        pid = int(ray.get(sup.shards[1].info.remote(), timeout=30)["pid"])
        os.kill(pid, signal.SIGKILL)  # the clock runs: the next tick finds it dead and recovers it
        page.wait_for_selector(f"#sc-recoveries[data-count='{before + 1}']", timeout=60_000)
        page.screenshot(path=str(SHOTS / "cluster-recovery-scenario.png"), full_page=True)
        r = next(x for x in reversed(sup.recoveries) if x["shard"] == 1)
        cells = page.eval_on_selector("#sc-recoveries tbody tr.recovery-row",
                                      "tr => [...tr.children].map(c => c.innerText)")
        restored = "the seed (rebuilt)" if r["from_tick"] < 0 else "checkpoint of " + \
            sup.config.time_of(r["from_tick"] + 1).strftime("%Y-%m-%d %H:%M")
        assert cells[0].endswith(f"tick {r['tick']}") and cells[2] == "1" and cells[3] == r["node_ip"]
        assert cells[4] == restored
        assert cells[5] == f"{r['replayed']} tick{'s' if r['replayed'] != 1 else ''}"
        assert cells[6].startswith(f"{r['seconds']:.1f}")
    finally:
        ctx.close()
