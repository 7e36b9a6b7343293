"""The dashboard in a real headless browser (Debian's chromium driven by Playwright), against a real
engine on local Ray and the real gRPC API over sockets. Screenshots of every page go to
test-results/screenshots/."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from google.longrunning import operations_pb2

from dashboard.pages import PAGES
from dashboard.server import DashboardServer, create_app
from tests.support import run_dir
from twin.client import TwinClient
from twin.engine.supervisor import FleetSupervisor
from twin.generated.fleet.v1 import fleet_pb2
from twin.model.capacity import LINK_NAMES
from twin.model.catalog import WAN_LABEL, Csp, TrafficClass, WanTech
from twin.model.config import FleetConfig
from twin.reporting.capacity import link_label
from twin.services.identity import UserStore
from twin.services.server import ApiServer

pytestmark = pytest.mark.usefixtures("ray_session")
ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("TWIN_TEST_RESULTS", ROOT / "test-results")) / "screenshots"
CHROMIUM = os.environ.get("TWIN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Flags for a closed network: no background fetches, no sandbox (CI runs as root).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
# Each page and an element that shows it has drawn.
READY = {"/": "#ov-map .main-svg", "/network": "#net-mix .main-svg", "/firmware": "#fw-versions .main-svg",
         "/switching": "#sw-shares .main-svg", "/alerts": "#al-rates .main-svg", "/hub": "#hub-id",
         "/scenario": "#ev-submit", "/capacity": "#cap-kpis .kpi, #cap-message-panel"}


class Stack:
    """Engine, API and dashboard, as `twin up` runs them (the dashboard in-process here). Not the
    session's shared stack (tests/conftest.py `live_api`): its clock runs all along (the pages show
    live change), which would move the shared fleet under the API suites' feet."""

    def __init__(self, tmp: Path):
        self.sup = FleetSupervisor(FleetConfig(hubs=30_000, seed=5, block_size=1024), shards=2, run_dir=run_dir("dash"))
        self.sup.step(2)
        self.users = UserStore()
        _, self.token, _ = self.users.issue_user("operator", "OPERATOR", 0, keys_dir=tmp / "keys")
        self.api = ApiServer(self.sup, self.users, port=0)
        self.api.start()
        self.dash = DashboardServer(api_address=self.api.address, token=self.token, port=0).start()
        self.url = self.dash.url
        # Two ticks a second: fast enough to see change, slow enough to watch it happen.
        self.sup.start_clock(speed=3600.0)

    def client(self, token: str | None = None) -> TwinClient:
        return TwinClient(self.api.address, token=token or self.token)

    def run_clock(self) -> None:
        """Two ticks a second, whatever a test before left the clock at."""
        with self.client() as c:
            c.fleet.UpdateClock(fleet_pb2.UpdateClockRequest(state=fleet_pb2.CLOCK_STATE_RUNNING, speed=3600),
                                metadata=c.metadata)

    def operation_names(self) -> list[str]:
        with self.client() as c:
            return [o.name for o in c.operations.ListOperations(operations_pb2.ListOperationsRequest(page_size=1000),
                                                                 metadata=c.metadata).operations]

    def close(self) -> None:
        self.sup.pause()
        self.dash.stop()
        self.api.stop(1.0)
        self.sup.shutdown()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("dash"))
    yield s
    s.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.console_errors = []  # type: ignore[attr-defined]
    pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.console_errors.append(f"page error: {e}"))
    yield pg
    ctx.close()


def field(event: str, name: str) -> str:
    """The DOM id Dash gives a pattern-matching form field (keys sorted, no spaces)."""
    return "[id='" + json.dumps({"event": event, "name": name, "type": "ev-field"}, separators=(",", ":")) + "']"


def choose(page, selector: str, label: str) -> None:
    """Pick an option in a Dash dropdown."""
    page.locator(selector).click()
    page.get_by_role("option", name=label, exact=True).click()
    page.keyboard.press("Escape")


def pick_event(page, event: str) -> None:
    from dashboard import forms

    choose(page, "#ev-type", event.replace("_", " "))
    page.wait_for_selector(field(event, forms.fields(event)[0].name))


def dark_shown(page) -> int:
    return int(page.get_attribute("#kpi-dark", "data-value"))


def test_every_page_loads_with_no_console_errors(stack, page):
    SHOTS.mkdir(parents=True, exist_ok=True)
    for p in PAGES:
        page.goto(stack.url + p.PATH)
        page.wait_for_selector(READY[p.PATH], timeout=20_000)
        tick = int(page.get_attribute("#hdr-clock", "data-tick"))
        # Stay for a few live updates: errors in the update callbacks count too.
        page.wait_for_function(f"Number(document.querySelector('#hdr-clock').dataset.tick) > {tick + 1}",
                               timeout=20_000)
        name = p.TITLE.lower()
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
        assert page.console_errors == [], (p.PATH, page.console_errors)
    # The overview's map is drawn from the shipped geometry: 14 areas, the coast and the colour bar.
    page.goto(stack.url + "/")
    page.wait_for_selector(READY["/"])
    assert page.locator("#ov-map .scatterlayer .trace").count() == 16
    assert "NESO Open Data Licence" in page.inner_text(".attribution")
    assert page.console_errors == []


def test_a_3g_switch_off_from_the_form_shows_as_dark_hubs_on_the_overview(stack, page):
    last = stack.sup.history[-1]
    central_3g = int(last.hubs_by_wan[Csp.CENTRAL, WanTech.G3])
    assert central_3g > 1000
    page.goto(stack.url + "/")
    page.wait_for_selector("#kpi-dark")
    before = dark_shown(page)
    page.goto(stack.url + "/scenario")
    page.wait_for_selector("#ev-submit")
    pick_event(page, "network_switch_off")
    choose(page, field("network_switch_off", "region"), "Central")
    choose(page, field("network_switch_off", "technology"), WAN_LABEL[WanTech.G3])
    page.click("#ev-submit")
    page.wait_for_selector("#ev-op-name", timeout=20_000)
    assert page.inner_text("#ev-op-name").startswith("operations/network-switch-off")
    page.goto(stack.url + "/")
    page.wait_for_selector("#kpi-dark")
    # Within a few ticks every Central 3G hub is dark (minus any already dark for other reasons).
    page.wait_for_function(
        f"Number(document.querySelector('#kpi-dark').dataset.value) >= {before + int(0.9 * central_3g)}", timeout=30_000)
    assert dark_shown(page) >= before + int(0.9 * central_3g)
    assert page.console_errors == []


def test_a_firmware_rollout_from_the_form_advances_its_progress_bar(stack, page):
    page.goto(stack.url + "/scenario")
    page.wait_for_selector("#ev-submit")
    pick_event(page, "firmware_rollout")
    choose(page, field("firmware_rollout", "device"), "ESME")
    choose(page, field("firmware_rollout", "manufacturer"), "Kaifa")
    choose(page, field("firmware_rollout", "model"), "MA120")
    page.locator(field("firmware_rollout", "target_version")).fill("9.9.9")
    page.locator(field("firmware_rollout", "waves")).fill("0.5, 1")
    page.locator(field("firmware_rollout", "concurrency_per_csp")).fill("40")
    page.click("#ev-submit")
    page.wait_for_selector("#ev-op-name", timeout=20_000)
    op = page.inner_text("#ev-op-name").removeprefix("operations/")
    page.goto(stack.url + "/firmware")
    bar = f"#progress-{op}"
    page.wait_for_selector(bar, timeout=20_000)
    first = float(page.get_attribute(bar, "data-value"))
    page.wait_for_function(f"Number(document.querySelector('{bar}').dataset.value) > {first}", timeout=30_000)
    second = float(page.get_attribute(bar, "data-value"))
    page.wait_for_function(f"Number(document.querySelector('{bar}').dataset.value) > {second}", timeout=30_000)
    assert 0 <= first < second < float(page.get_attribute(bar, "data-value")) <= 100
    assert page.console_errors == []


def test_clock_and_operation_controls_on_the_scenario_page(stack, page):
    with stack.client() as c:
        op = c.create_event(power_outage=fleet_pb2.PowerOutage(area="10", fraction=0.1, duration_min=30),
                            at="2d").name
    oid = op.removeprefix("operations/")
    page.goto(stack.url + "/scenario")
    page.wait_for_selector(f"#op-row-{oid}")
    try:
        page.click("#sc-pause")
        page.wait_for_function("document.querySelector('#sc-clock-state').innerText === 'paused'")
        before = stack.sup.tick
        page.click("#sc-step1")
        # The panel names the newest tick run (as the header does): the one just stepped.
        page.wait_for_function(f"document.querySelector('#sc-clock-text').dataset.tick === '{before}'")
        assert stack.sup.tick == before + 1
        # Cancel the pending outage from its row: the server's state comes back into the table.
        page.locator(f"#op-row-{oid} button", has_text="Cancel").click()
        page.wait_for_selector("#sc-op-msg .ok")
        page.click("#sc-step1")
        page.wait_for_function(f"document.querySelector('#op-row-{oid} .state').innerText === 'CANCELLED'",
                               timeout=20_000)
        with stack.client() as c:
            assert TwinClient.progress(c.get_operation(op)).state == fleet_pb2.OPERATION_STATE_CANCELLED
        page.click("#sc-resume")
        page.wait_for_function("document.querySelector('#sc-clock-state').innerText === 'running'")
        assert page.console_errors == []
    finally:
        stack.run_clock()


def test_invalid_form_input_shows_the_error_and_injects_nothing(stack, page):
    before = stack.operation_names()
    page.goto(stack.url + "/scenario")
    page.wait_for_selector("#ev-submit")
    # A value that is not a number: caught before anything is sent.
    choose(page, field("power_outage", "area"), "12 London")
    page.locator(field("power_outage", "duration_min")).fill("an hour")
    page.click("#ev-submit")
    page.wait_for_selector("#ev-result .error")
    assert "duration_min" in page.inner_text("#ev-result .error")
    # A number the server rejects: its own error text, naming the field.
    page.locator(field("power_outage", "duration_min")).fill("-30")
    page.click("#ev-submit")
    page.wait_for_selector("#ev-result .error[data-code='INVALID_ARGUMENT']")
    text = page.inner_text("#ev-result .error")
    assert "duration_min" in text and "INVALID_ARGUMENT" in text
    # An unknown hub for a supplier switch.
    pick_event(page, "supplier_switch")
    page.locator(field("supplier_switch", "hub")).fill("hubs/not-a-hub")
    choose(page, field("supplier_switch", "fuel"), "dual")
    choose(page, field("supplier_switch", "to_supplier"), "Octopus Energy")
    page.click("#ev-submit")
    page.wait_for_function("document.querySelector('#ev-result .error') && "
                           "document.querySelector('#ev-result .error').innerText.includes('hub')")
    time.sleep(1.0)
    assert stack.operation_names() == before
    assert not any("Uncaught" in e for e in page.console_errors)


def test_hub_page_shows_meters_state_and_recent_events(stack, page):
    with stack.client() as c:
        hub = c.list_hubs("reachable=true", page_size=1).hubs[0]
    page.goto(stack.url + "/hub")
    page.wait_for_selector("#hub-id")
    page.locator("#hub-id input, input#hub-id").first.fill(hub.name.removeprefix("hubs/"))
    page.click("#hub-go")
    page.wait_for_selector("#hub-devices")
    text = page.inner_text("#hub-view")
    assert hub.name in text and hub.comms_hub.device_id in text and "Recent events" in text
    assert all(m.device_id in text for m in hub.meters)
    page.screenshot(path=str(SHOTS / "hub-detail.png"), full_page=True)
    # The page offers dark hubs to start from; a link opens one.
    page.goto(stack.url + "/hub")
    link = page.locator("#hub-examples a").first
    link.wait_for()
    name = link.inner_text()
    link.click()
    page.wait_for_function(f"document.querySelector('#hub-view') && "
                           f"document.querySelector('#hub-view').innerText.includes('hubs/{name}')")
    assert "dark" in page.inner_text("#hub-state")
    page.locator("#hub-id input, input#hub-id").first.fill("00-11-zz")
    page.click("#hub-go")
    page.wait_for_selector("#hub-error .error")
    assert "INVALID_ARGUMENT" in page.inner_text("#hub-error .error")
    assert page.console_errors == []


def test_live_updates_are_small_and_carry_no_per_hub_arrays(stack, page):
    sizes: list[int] = []

    def on_response(r) -> None:
        # Live updates are the callbacks a page's timer fires (the page's first drawing is not one).
        if "/_dash-update-component" in r.url and r.status == 200 and "pulse" in (r.request.post_data or ""):
            sizes.append(int(r.headers["content-length"]))

    page.on("response", on_response)
    page.goto(stack.url + "/")
    page.wait_for_selector("#ov-map .main-svg")
    tick = int(page.get_attribute("#hdr-clock", "data-tick"))
    page.wait_for_function(f"Number(document.querySelector('#hdr-clock').dataset.tick) > {tick + 4}", timeout=30_000)
    time.sleep(1.5)
    assert len(sizes) >= 4
    assert max(sizes) < 100_000, sizes
    with urllib.request.urlopen(stack.url + "/metrics") as r:
        metrics = r.read().decode()
    assert re.search(r"twin_dashboard_update_bytes_count \d+", metrics)
    with urllib.request.urlopen(stack.url + "/healthz") as r:
        health = json.loads(r.read())
    assert health["feed_connected"] and health["last_tick"] >= tick


def test_beyond_localhost_needs_an_operator_token(stack, tmp_path):
    import threading

    import uvicorn

    with pytest.raises(ValueError, match="TLS"):
        DashboardServer(api_address=stack.api.address, token=stack.token, host="0.0.0.0", port=0)
    # The sign-in itself, served here on loopback with sign-in forced on as it is beyond localhost.
    _, other, _ = stack.users.issue_user("is-user", "IS", 1, keys_dir=tmp_path / "keys")
    from dashboard.feed import FleetFeed

    feed = FleetFeed(stack.api.address, token=stack.token).start()
    app = create_app(feed, api_address=stack.api.address, token=stack.token, require_login=True)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    try:
        while not server.started:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a, **k):
                return None

        opener = urllib.request.build_opener(NoRedirect)

        def status(path: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
            req = urllib.request.Request(url + path, data=data, headers=headers or {})
            try:
                with opener.open(req) as r:
                    return r.status, dict(r.headers)
            except urllib.error.HTTPError as e:
                return e.code, dict(e.headers)

        assert status("/", headers={"Accept": "text/html"})[0] == 303  # a browser goes to the sign-in page
        assert status("/")[0] == 401
        assert status("/_dash-layout")[0] == 401
        assert status("/metrics")[0] == 401
        # Healthy once the feed is connected (503 before): wait for that, then the one right answer.
        deadline = time.monotonic() + 60
        while not feed.status.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status("/healthz")[0] == 200
        with urllib.request.urlopen(url + "/healthz") as r:
            health = json.loads(r.read())
        assert set(health) == {"status", "feed_connected", "feed_threads_alive", "clock_state", "last_tick",
                               "tick_age_s"}  # no API address, no errors
        assert status("/login", b"token=wrong")[0] == 401
        assert status("/login", f"token={other}".encode())[0] == 401  # a DCC User is not an operator
        code, headers = status("/login", f"token={stack.token}".encode())
        assert code == 303 and "HttpOnly" in headers["set-cookie"] and "SameSite=strict" in headers["set-cookie"]
        cookie = headers["set-cookie"].split(";")[0]
        assert status("/_dash-layout", headers={"Cookie": cookie})[0] == 200
        assert status("/metrics", headers={"Authorization": f"Bearer {stack.token}"})[0] == 200
        assert status("/metrics", headers={"Authorization": f"Bearer {other}"})[0] == 401
    finally:
        server.should_exit = True
        t.join(5)
        feed.stop()


def test_capacity_page_shows_the_networks_figures_for_the_tick_the_api_sent(stack, page):
    with stack.client() as c:
        stream = c.fleet.WatchFleet(fleet_pb2.WatchFleetRequest(backlog=1), metadata=c.metadata)
        first = next(stream)
        stream.cancel()
    assert first.HasField("capacity")
    stack.sup.pause()  # one tick on the page and in the engine's history while they are compared
    try:
        page.goto(stack.url + "/")
        page.click("#nav-capacity")
        page.wait_for_selector("#cap-kpis .kpi")
        # A step in flight when the clock paused still lands: wait until the page shows the last one.
        deadline = time.monotonic() + 30
        while (tick := int(page.get_attribute("#cap-kpis", "data-tick"))) != stack.sup.history[-1].tick:
            assert time.monotonic() < deadline, (tick, stack.sup.history[-1].tick)
            time.sleep(0.2)
        page.wait_for_selector("#cap-links-fig .main-svg")
        page.wait_for_selector("#cap-latency-fig .main-svg")
        report = next(s for s in stack.sup.history if s.tick == tick).capacity
        # The busiest link and its utilisation: the model's, for this tick.
        util = np.where(report.link_capacity > 0, report.link_utilisation, -1.0)
        busiest = int(np.argmax(util))
        link, value = page.evaluate("(() => { const b = document.querySelector('#cap-kpi-busiest');"
                                    " return [b.dataset.link, Number(b.dataset.value)]; })()")
        assert link == link_label(LINK_NAMES[busiest]) and value == pytest.approx(util[busiest], abs=1e-4)
        bars = page.evaluate("document.querySelector('#cap-links-fig .js-plotly-plot').data[0].x.length")
        assert bars == int((report.link_capacity > 0).sum())
        # South's p99 per class that sent anything, on the latency chart.
        south = int(Csp.SOUTH)
        p99 = page.evaluate("document.querySelector('#cap-latency-fig .js-plotly-plot').data"
                            ".find(t => t.name === 'South p99').y")
        sent = [k for k in TrafficClass if report.messages[south, k] > 0]
        assert p99 == pytest.approx([float(report.latency_p99[south, k]) for k in sent], abs=0.01)
        within = float(page.get_attribute("#cap-within-south-on-demand", "data-value"))
        assert within == pytest.approx(float(report.within_target[south, TrafficClass.ON_DEMAND]), abs=1e-4)
        # Backlog over the last day: a chart if anything was queued in it, else a sentence.
        day = [s.capacity for s in stack.sup.history if tick - 48 < s.tick <= tick]
        queued = any(r.backlog.sum() > 0 for r in day)
        page.wait_for_selector("#cap-backlog-fig .main-svg" if queued else "#cap-backlog-none")
        page.screenshot(path=str(SHOTS / "capacity-live.png"), full_page=True)
        # Live: each tick redraws the page's figures, in an update under 100 kB (shared/DESIGN.md).
        sizes: list[int] = []
        page.on("response", lambda r: sizes.append(int(r.headers["content-length"]))
                if "/_dash-update-component" in r.url and r.status == 200 and "cap-pulse" in (r.request.post_data or "")
                else None)
        stack.run_clock()
        page.wait_for_function(f"Number(document.querySelector('#cap-kpis').dataset.tick) > {tick + 3}",
                               timeout=30_000)
        assert sizes and max(sizes) < 100_000, sizes
        assert page.console_errors == []
    finally:
        stack.run_clock()
