"""`twin bench duis`: the DUIS gateway under load, from this process as the DCC Users' adapters.

Starts `twin up --duis-port` (clock running, no dashboard) with `users` IS users of one supplier,
each with its own test PKI credential; pre-signs SR 4.1.1 reads of that supplier's reachable
premises (each User's RequestID counters strictly increasing), then in several runs each User
sends its reads one after another (one in flight per originator, so its counters arrive in
order), all Users at once. Reported per run: signed reads answered per second, response time
p50/p99/max (ms, as the client sees it, HTTP included), codes other than I0, and the twin
process's CPU per request. Then the share of that CPU that is XML signature work: the time of
verifying one signed request and of signing one response, measured here on the same machine."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from rich.console import Console

from twin.bench.engine import start_twin_up, stop_process, write_results

PORT = 50081
GRPC_PORT = 50082
SUPPLIER = "Octopus Energy"
SUPPLIER_CODE = 1
DUIS_USERS = 16  # DCC Users (originators) sending at once, one request in flight each
DUIS_SECONDS = 10.0  # per run


def _add_users(home: Path, n: int) -> list[str]:
    names = [f"bench-is-{i}" for i in range(n)]
    for name in names:
        subprocess.run([sys.executable, "-m", "twin.cli", "users", "add", name, "--role", "IS", "--party",
                        str(SUPPLIER_CODE), "--home", str(home)], check=True, capture_output=True)
    return names


def _targets(home: Path, count: int) -> list[str]:
    import json

    from twin.client import TwinClient

    token = json.loads((home / "tokens.json").read_text())["operator"]
    with TwinClient(f"127.0.0.1:{GRPC_PORT}", token=token) as c:
        page = c.list_hubs(f'supplier="{SUPPLIER}" AND reachable=true', page_size=count)
    return [h.name.removeprefix("hubs/") for h in page.hubs]


def _presign(clients: list[Any], targets: list[str], per_user: int) -> list[list[tuple[str, bytes]]]:
    from twin.services.duis_gateway.client import request_tree

    out = []
    for k, c in enumerate(clients):
        reqs = []
        for i in range(per_user):
            rid = c.next_id(targets[(k * per_user + i) % len(targets)])
            reqs.append((str(rid), c.signer.sign(request_tree(rid, "4.1.1", cv=1))))
        out.append(reqs)
    return out


async def _load(url: str, batches: list[list[tuple[str, bytes]]], seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    codes: dict[str, int] = {}
    end = time.perf_counter() + seconds

    async def user(reqs: list[tuple[str, bytes]], http: httpx.AsyncClient) -> None:
        for _rid, body in reqs:
            if time.perf_counter() > end:
                return
            t0 = time.perf_counter()
            r = await http.post("/api/v1/serviceS", content=body, headers={"content-type": "application/xml"})
            latencies.append(time.perf_counter() - t0)
            text = r.content
            i = text.find(b"ResponseCode>")
            code = text[i + 13:text.find(b"<", i + 13)].decode() if i >= 0 else f"HTTP {r.status_code}"
            codes[code] = codes.get(code, 0) + 1

    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=30.0,
                                 limits=httpx.Limits(max_connections=len(batches) + 4)) as http:
        await asyncio.gather(*(user(b, http) for b in batches))
    wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {"requests": len(latencies), "seconds": round(wall, 2), "per_s": round(len(latencies) / wall, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1),
            "max_ms": round(float(lat.max()), 1), "codes": codes}


def _signature_costs(client: Any, pki: Any, target: str, n: int = 300) -> dict[str, float]:
    """Milliseconds per call: verify one signed request, sign one response, parse one request."""
    from datetime import UTC, datetime

    from twin.services.duis_gateway import wire
    from twin.services.duis_gateway.client import request_tree
    from twin.services.duis_gateway.signing import verify

    signed = [client.signer.sign(request_tree(client.next_id(target), "4.1.1", cv=1)) for _ in range(n)]
    t0 = time.perf_counter()
    for s in signed:
        verify(s, client.party.cert)
    verify_ms = (time.perf_counter() - t0) * 1000 / n
    t0 = time.perf_counter()
    for s in signed:
        wire.parse_request(s)
    parse_ms = (time.perf_counter() - t0) * 1000 / n
    dcc = pki.signer(pki.dcc.user_id)
    body = wire.response_message("4.1.1", gbcs_payload=b'{"elec_import_kwh":12345.6,"tick":100}')
    rid = wire.RequestId.parse(f"{client.party.eui}:{target}:1")
    t0 = time.perf_counter()
    for _ in range(n):
        dcc.sign(wire.response_tree(schema_version="5.4", request_id=rid, code="I0", when=datetime.now(UTC),
                                    body=body))
    sign_ms = (time.perf_counter() - t0) * 1000 / n
    return {"verify_request_ms": round(verify_ms, 3), "sign_response_ms": round(sign_ms, 3),
            "parse_request_ms": round(parse_ms, 3)}


def run_duis_bench(*, hubs: int, runs: int, users: int, seconds: float, out: Path,
                   console: Console) -> dict[str, Any]:
    from twin.services.duis_gateway.client import DuisClient
    from twin.services.duis_gateway.pki import Pki

    home = Path(tempfile.mkdtemp(prefix="twin-bench-duis-"))
    subprocess.run([sys.executable, "-m", "twin.cli", "users", "list", "--home", str(home)], check=True,
                   capture_output=True)  # the development users first
    names = _add_users(home, users)
    console.print(f"starting twin up with {hubs:,} hubs and the DUIS gateway, {users} IS users…", highlight=False)
    proc = start_twin_up(hubs, home, home / "run", "--duis-port", str(PORT), "--grpc-port", str(GRPC_PORT),
                         "--no-dashboard", "--anomaly-threshold", str(10**9))
    url = f"http://127.0.0.1:{PORT}"
    result: dict[str, Any] = {"hubs": hubs, "users": users, "in_flight": users, "srv": "4.1.1"}
    try:
        pki = Pki.load(home / "duis" / "duis.json")
        clients = [DuisClient(url, pki, n) for n in names]
        targets = _targets(home, 1000)
        server = psutil.Process(proc.pid)
        per_run = []
        for r in range(runs):
            batches = _presign(clients, targets, per_user=int(seconds * 150))
            cpu0 = sum(server.cpu_times()[:2])
            console.print(f"run {r + 1}/{runs}: {users} Users sending signed 4.1.1 reads for {seconds:g} s…")
            got = asyncio.run(_load(url, batches, seconds))
            cpu = sum(server.cpu_times()[:2]) - cpu0
            got["twin_process_cpu_ms_per_request"] = round(1000 * cpu / max(got["requests"], 1), 3)
            per_run.append(got)
            console.print(f"  {got['per_s']:,.0f} reads/s, p50 {got['p50_ms']} ms, p99 {got['p99_ms']} ms, "
                          f"max {got['max_ms']} ms, codes {got['codes']}", highlight=False)
        result["runs"] = per_run
        costs = _signature_costs(clients[0], pki, targets[0])
        cpu_ms = float(np.median([r["twin_process_cpu_ms_per_request"] for r in per_run]))
        costs["signature_share_of_twin_cpu"] = round(
            (costs["verify_request_ms"] + costs["sign_response_ms"]) / max(cpu_ms, 1e-9), 2)
        result["signature_costs"] = costs
        for c in clients:
            c.close()
    finally:
        stop_process(proc)
    return write_results({"duis": result}, out, console)
