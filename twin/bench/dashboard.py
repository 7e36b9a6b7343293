"""`twin bench dashboard`: how fast a tick reaches the browser and how big the live updates are.

For each fleet size it starts the README's main command (`twin up`: engine, API and dashboard),
opens the overview in headless Chromium (Playwright), pauses the clock and then, many times over,
steps one tick through the API and times until the page shows it (a random wait between steps
samples every phase of the page's one-second refresh). Then it lets the clock run and records the
size of every live update each page receives."""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from twin.bench.engine import machine, start_twin_up, stop_process

GRPC_PORT, DASH_PORT = 50081, 8081
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def measure(hubs: int, samples: int, browser, console: Console) -> dict[str, Any]:
    from dashboard.pages import PAGES
    from twin.client import TwinClient
    from twin.generated.fleet.v1 import fleet_pb2

    work = Path(tempfile.mkdtemp(prefix="twin-bench-dash-"))
    t0 = time.perf_counter()
    proc = start_twin_up(hubs, work / "home", work / "run", "--grpc-port", str(GRPC_PORT), "--dash-port", str(DASH_PORT))
    started_s = time.perf_counter() - t0
    try:
        token = json.loads((work / "home" / "tokens.json").read_text())["operator"]
        client = TwinClient(f"127.0.0.1:{GRPC_PORT}", token=token, timeout_s=120)
        url = f"http://127.0.0.1:{DASH_PORT}"
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        sizes: dict[str, list[int]] = {}
        where = {"path": "/"}

        def on_response(r) -> None:
            if "/_dash-update-component" in r.url and r.status == 200 and "pulse" in (r.request.post_data or ""):
                sizes.setdefault(where["path"], []).append(int(r.headers.get("content-length", 0)))

        page.on("response", on_response)
        client.fleet.UpdateClock(fleet_pb2.UpdateClockRequest(state=fleet_pb2.CLOCK_STATE_PAUSED), **client._kw())
        page.goto(url + "/")
        page.wait_for_selector("#ov-map .main-svg", timeout=60_000)
        latencies = []
        rng = random.Random(hubs)
        for i in range(samples):
            time.sleep(rng.uniform(0.0, 1.0))
            clock = client.fleet.StepClock(fleet_pb2.StepClockRequest(count=1), **client._kw())
            done = time.perf_counter()  # the tick is computed and recorded; its summary is on its way
            shown = clock.tick - 1
            page.wait_for_function(f"Number(document.querySelector('#hdr-clock').dataset.tick) >= {shown}",
                                   timeout=30_000, polling=10)
            latencies.append(time.perf_counter() - done)
            if (i + 1) % 10 == 0:
                console.print(f"  {hubs:,} hubs: {i + 1}/{samples} ticks, p50 {_pct(latencies, 50):.3f} s", highlight=False)
        # Live updates with the clock running, on every page.
        client.fleet.UpdateClock(fleet_pb2.UpdateClockRequest(state=fleet_pb2.CLOCK_STATE_RUNNING, speed=1800),
                                 **client._kw())
        sizes.clear()
        for p in PAGES:
            where["path"] = p.PATH
            page.goto(url + p.PATH)
            page.wait_for_timeout(6000)
        page.close()
        client.channel.close()
        every = [s for v in sizes.values() for s in v]
        return {
            "hubs": hubs,
            "startup_s": round(started_s, 2),
            "tick_to_browser_s": {"samples": len(latencies), "p50": round(_pct(latencies, 50), 3),
                                  "p90": round(_pct(latencies, 90), 3), "p99": round(_pct(latencies, 99), 3),
                                  "max": round(max(latencies), 3)},
            "update_bytes": {"updates": len(every), "mean": round(float(np.mean(every)), 1) if every else None,
                             "max": max(every) if every else None,
                             "by_page_max": {k: max(v) for k, v in sizes.items()}},
        }
    finally:
        stop_process(proc)
        shutil.rmtree(work, ignore_errors=True)


def run_dashboard_bench(sizes: list[int], *, samples: int, out: Path, console: Console) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("TWIN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            for hubs in sizes:
                console.print(f"dashboard bench: {hubs:,} hubs", highlight=False)
                results.append(measure(hubs, samples, browser, console))
                r = results[-1]
                console.print(f"  tick→browser p50 {r['tick_to_browser_s']['p50']} s, p99 {r['tick_to_browser_s']['p99']}"
                              f" s; updates max {r['update_bytes']['max']:,} B, mean {r['update_bytes']['mean']:,} B",
                              highlight=False)
        finally:
            browser.close()
    doc = {"suite": "dashboard", "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
           "targets": {"tick_to_browser_s": 1.5, "update_bytes": 100_000}, "results": results}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    console.print(f"wrote {out}", highlight=False)
    return doc
