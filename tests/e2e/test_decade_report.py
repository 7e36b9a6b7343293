"""A ten-year run's report opens in a real browser (Debian's chromium, Playwright): every figure
draws, from a page that embeds at most MAX_POINTS points per series. The time it took to draw is
written beside the screenshots (test-results/screenshots/decade-report.*), never asserted."""

from __future__ import annotations

import json
import time

from tests import decade
from tests.e2e.test_dashboard import CHROMIUM, CHROMIUM_ARGS, SHOTS
from twin.reporting.html import build_figures, write_html


def test_a_decade_report_opens_and_draws_every_figure(tmp_path):
    from playwright.sync_api import sync_playwright

    report = decade.report()
    path = tmp_path / "report.html"
    write_html(report, path)
    figures = len(build_figures(report))
    SHOTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda e: errors.append(str(e)))
            t = time.perf_counter()
            page.goto(path.as_uri())
            page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {figures}",
                                   timeout=120_000)
            drawn_s = time.perf_counter() - t
            assert page.locator(".js-plotly-plot").count() == figures
            # Every trace drawn: one per series in SVG (none of WebGL, whose contexts a page runs out of).
            assert page.locator(".js-plotly-plot .scatterlayer .trace").count() == sum(
                len(f.data) for _, f in build_figures(report))
            page.screenshot(path=str(SHOTS / "decade-report.png"), full_page=True)
            page.locator(".js-plotly-plot").nth(0).scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / "decade-report-top.png"))
        finally:
            browser.close()
    assert errors == []
    (SHOTS / "decade-report.json").write_text(json.dumps(
        {"ticks": decade.TICKS, "figures": figures, "page_bytes": path.stat().st_size,
         "drawn_s": round(drawn_s, 2)}, indent=1) + "\n")
