"""`twin bench api`: the API under load, from a separate process (as a client would be).

Starts `twin up` (1M hubs, clock running, dashboard up), then measures GetHub latency at a fixed
1,000 requests/s (open loop, so a slow answer cannot slow the offered load) in several runs of 15 s
each (`--runs`, default 5: the target is a p99 under 10 ms in every one), read Service Requests
answered per second (closed loop, 64 in flight: from h2load, a C client, when it is installed, and
from a Python client), the same load against a server that answers with a constant (grpc.aio's own
ceiling on this machine), read Service Requests in bulk on one SubmitServiceRequests stream
(batches of 1,000, five runs, each reported), and the time to deliver the alerts of a ~100k-hub power cut to the
subscribed network operator. Every call that does not end OK is counted by status code twice: by
the client, and by the server's own counters (`twin up --metrics-port`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psutil
from google.protobuf import struct_pb2
from rich.console import Console

from twin.bench.engine import start_twin_up, stop_process, write_results
from twin.client import TwinClient
from twin.generated.dcc.v1 import dcc_pb2, dcc_pb2_grpc
from twin.generated.fleet.v1 import fleet_pb2, fleet_pb2_grpc
from twin.util.background import ReportingThread

PORT = 50071
ECHO_PORT = 50072
METRICS_PORT = 50073
SUBMIT = "/twin.dcc.v1.DccService/SubmitServiceRequest"


def _start_server(hubs: int, home: Path, run_dir: Path) -> subprocess.Popen:
    added = subprocess.run([sys.executable, "-m", "twin.cli", "users", "add", "ed-east", "--role", "ED", "--party",
                            "10", "--home", str(home)], check=True, capture_output=True, text=True)
    token = next(ln.split("token (shown once):")[1].strip() for ln in added.stdout.splitlines() if "token (shown" in ln)
    (home / "ed-east.token").write_text(token + "\n")
    # The dashboard on a port the system picks: up in every run, never refused for a busy 8050.
    proc = start_twin_up(hubs, home, run_dir, "--grpc-port", str(PORT), "--anomaly-threshold", str(10**9),
                         "--metrics-port", str(METRICS_PORT), "--dash-port", "0")
    # Measure the running twin as a user meets it: after everything `twin up` starts (the
    # dashboard too) is up and has settled, not while it is still starting.
    time.sleep(3.0)
    return proc


async def _gethub_latency(addr: str, token: str, hubs: int, rps: int, seconds: float) -> dict[str, Any]:
    md = (("authorization", f"Bearer {token}"),)
    lat: list[float] = []
    errors: dict[str, int] = {}
    async with grpc.aio.insecure_channel(addr) as ch:
        stub = fleet_pb2_grpc.FleetServiceStub(ch)
        await stub.GetHub(fleet_pb2.GetHubRequest(name="hubs/0"), metadata=md)  # warm up

        async def one() -> None:
            nonlocal errors
            t = time.perf_counter()
            try:
                await stub.GetHub(fleet_pb2.GetHubRequest(name=f"hubs/{random.randrange(hubs)}"), metadata=md,
                                  timeout=5)
                lat.append(time.perf_counter() - t)
            except grpc.aio.AioRpcError as e:
                errors[e.code().name] = errors.get(e.code().name, 0) + 1

        tasks = []
        start = time.perf_counter()
        n = int(rps * seconds)
        for i in range(n):
            delay = start + i / rps - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        achieved = n / (time.perf_counter() - start)
    ms = np.array(lat) * 1000
    return {"offered_rps": rps, "achieved_rps": round(achieved), "requests": n, "errors": sum(errors.values()),
            "errors_by_code": errors,
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "max_ms": round(float(ms.max()), 2)}


async def _read_throughput(addr: str, token: str, targets: list[str], seconds: float, inflight: int = 64) -> dict[str, Any]:
    md = (("authorization", f"Bearer {token}"),)
    done = 0
    completed = 0
    errors: dict[str, int] = {}
    async with grpc.aio.insecure_channel(addr) as ch:
        stub = dcc_pb2_grpc.DccServiceStub(ch)
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done, completed
            while time.perf_counter() < end:
                req = dcc_pb2.SubmitServiceRequestRequest(srv="4.1.1", target=random.choice(targets),
                                                          request_id=uuid.uuid4().hex)
                try:
                    resp = await stub.SubmitServiceRequest(req, metadata=md, timeout=10)
                except grpc.aio.AioRpcError as e:  # counted by code, never dropped
                    errors[e.code().name] = errors.get(e.code().name, 0) + 1
                    continue
                done += 1
                completed += resp.response.status == dcc_pb2.RESPONSE_STATUS_COMPLETED

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(inflight)))
        wall = time.perf_counter() - t
    return {"requests": done, "completed": completed, "per_s": round(done / wall), "in_flight": inflight,
            "errors": sum(errors.values()), "errors_by_code": errors}


def _bulk_batches(targets: list[str], requests: int, batch: int) -> list[bytes]:
    """`requests` 4.1.1 reads over `targets`, each with its own id, as serialized
    SubmitServiceRequests batches of `batch` (built before the clock starts: the figure is the
    server's, not the client's message building)."""
    rng = random.Random(7)
    out = []
    for start in range(0, requests, batch):
        msg = dcc_pb2.SubmitServiceRequestsRequest(requests=[
            dcc_pb2.SubmitServiceRequestRequest(srv="4.1.1", target=rng.choice(targets), request_id=uuid.uuid4().hex)
            for _ in range(min(batch, requests - start))])
        out.append(msg.SerializeToString())
    return out


def _bulk_reads(addr: str, token: str, targets: list[str], requests: int, batch: int = 1000,
                in_flight: int = 4) -> dict[str, Any]:
    """4.1.1 reads on one SubmitServiceRequests stream, `batch` to a message and at most
    `in_flight` batches unanswered, from this process (a separate one from the server's): every
    request's own status counted by code, read requests answered per second."""
    bodies = _bulk_batches(targets, requests, batch)
    md = (("authorization", f"Bearer {token}"),)
    answered = threading.Semaphore(in_flight)
    codes: dict[str, int] = {}
    completed = 0

    def send():
        for body in bodies:
            answered.acquire()
            yield body

    with grpc.insecure_channel(addr, options=[("grpc.max_receive_message_length", 64 * 2**20)]) as ch:
        call = ch.stream_stream("/twin.dcc.v1.DccService/SubmitServiceRequests", request_serializer=lambda b: b,
                                response_deserializer=dcc_pb2.SubmitServiceRequestsResponse.FromString)
        t0 = time.perf_counter()
        for answer in call(send(), metadata=md, timeout=600):
            answered.release()
            for r in answer.results:
                if r.status.code:
                    name = next(c.name for c in grpc.StatusCode if c.value[0] == r.status.code)
                    codes[name] = codes.get(name, 0) + 1
                else:
                    completed += r.response.status == dcc_pb2.RESPONSE_STATUS_COMPLETED
        wall = time.perf_counter() - t0
    return {"requests": requests, "batch": batch, "batches_in_flight": in_flight, "seconds": round(wall, 2),
            "per_s": round(requests / wall), "completed": completed, "not_ok_by_code": codes}


def _bulk_runs(addr: str, token: str, targets: list[str], server: psutil.Process, runs: int = 5,
               requests: int = 100_000) -> dict[str, Any]:
    """`runs` runs of `_bulk_reads`, each reported, with the API process's CPU per request."""
    out = []
    for _ in range(runs):
        cpu0 = _cpu([server])
        r = _bulk_reads(addr, token, targets, requests)
        r["api_process_cpu_us_per_request"] = round(1e6 * (_cpu([server]) - cpu0) / requests, 1)
        out.append(r)
    rates = [r["per_s"] for r in out]
    return {"runs": out, "per_s_each_run": rates, "per_s_min": min(rates), "per_s_median": sorted(rates)[len(rates) // 2]}


def _server_outcomes(method: str) -> dict[str, int]:
    """Calls of `method` the API process has answered so far, per status code, from its
    Prometheus counters (twin up --metrics-port)."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    with urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, int] = {}
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            if smp.name == "twin_api_calls_total" and smp.labels.get("method") == method:
                out[smp.labels["code"]] = int(smp.value)
    return out


def _not_ok_since(before: dict[str, int], method: str) -> dict[str, int]:
    """Non-OK outcomes of `method` the server counted since `before`, per code."""
    now = _server_outcomes(method)
    return {c: n - before.get(c, 0) for c, n in now.items() if c != "OK" and n > before.get(c, 0)}


def _grpc_body(message: Any) -> bytes:
    """A gRPC length-prefixed message (uncompressed), as sent in an HTTP/2 DATA frame."""
    raw = message.SerializeToString()
    return b"\x00" + struct.pack(">I", len(raw)) + raw


def _read_bodies(targets: list[str]) -> list[bytes]:
    """One 4.1.1 read per h2load connection (8), each of its own premises."""
    return [_grpc_body(dcc_pb2.SubmitServiceRequestRequest(srv="4.1.1", target=t, request_id=f"bench-{i}"))
            for i, t in enumerate(targets[:8])]


def _cpu(procs: list[psutil.Process]) -> float:
    """CPU seconds (user + system) the processes have used so far."""
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def _h2load(addr: str, path: str, token: str, bodies: list[bytes], requests: int, streams: int = 8) -> dict[str, Any]:
    """Drive one gRPC method with h2load (nghttp2's C load generator): one process per body, each
    one connection with `streams` calls in flight, `requests` calls in all. A C client costs the
    machine about a tenth of what a Python one does per call, so on a small machine the figure is
    the server's, not the client's. A fixed count, not a duration, so no call is cut off at the
    end. h2load only sees HTTP status 200, which a gRPC error also carries: the caller checks the
    outcome of every call with channelz."""
    tmp = Path(tempfile.mkdtemp(prefix="twin-h2load-"))
    each = requests // len(bodies)
    procs = []
    t0 = time.perf_counter()
    for i, body in enumerate(bodies):
        (tmp / f"{i}.bin").write_bytes(body)
        procs.append(subprocess.Popen(
            ["h2load", "-c", "1", "-t", "1", "-m", str(streams), "-n", str(each), "-d", str(tmp / f"{i}.bin"),
             "-H", "content-type: application/grpc", "-H", "te: trailers", "-H", f"authorization: Bearer {token}",
             f"http://{addr}{path}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    done = 0
    for p in procs:
        out, _ = p.communicate(timeout=600)
        m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
        if p.returncode != 0 or m is None:
            raise RuntimeError(f"h2load failed (exit {p.returncode}): {out[-500:]}")
        done += int(m.group(2))
    wall = time.perf_counter() - t0
    shutil.rmtree(tmp, ignore_errors=True)
    return {"requests": done, "seconds": round(wall, 2), "per_s": round(done / wall), "connections": len(bodies),
            "in_flight": streams * len(bodies), "client": "h2load"}


def _calls(addrs: list[str], token: str) -> tuple[int, int]:
    """Calls the API's processes (each asked on its own port) have answered OK and not OK so far,
    from their channelz counters."""
    from grpc_channelz.v1 import channelz_pb2, channelz_pb2_grpc

    ok = failed = 0
    for addr in addrs:
        with grpc.insecure_channel(addr) as ch:
            servers = channelz_pb2_grpc.ChannelzStub(ch).GetServers(channelz_pb2.GetServersRequest(),
                                                                    metadata=(("authorization", f"Bearer {token}"),))
        ok += sum(s.data.calls_succeeded for s in servers.server)
        failed += sum(s.data.calls_failed for s in servers.server)
    return ok, failed


def _reads_h2load(addr: str, tokens: dict[str, str], targets: list[str], requests: int,
                  servers: list[psutil.Process], own: list[str]) -> dict[str, Any]:
    """Read SRs (4.1.1) from h2load, 8 connections (so the kernel spreads them over the API's
    processes) each reading its own premises; every call's outcome checked through channelz on
    each process; the API processes' CPU per call."""
    ok0, failed0 = _calls(own, tokens["operator"])
    cpu0, wall0 = _cpu(servers), time.perf_counter()
    out = _h2load(addr, SUBMIT, tokens["octopus-is"], _read_bodies(targets), requests)
    cpu, wall = _cpu(servers) - cpu0, time.perf_counter() - wall0
    ok, failed = _calls(own, tokens["operator"])
    # Every call the API answered meanwhile: the reads, the dashboard's polls and the replicas'
    # refreshes; less the first channelz call of each process, counted once it had returned. Any
    # call not answered OK shows here, whatever h2load counted.
    out["api_processes"] = len(servers)
    out["calls_answered_ok"], out["calls_answered_not_ok"] = ok - ok0 - len(own), failed - failed0
    out["api_cpu_ms_per_request"] = round(1000 * cpu / max(out["requests"], 1), 3)
    out["api_cpu_cores"] = round(cpu / wall, 2)
    return out


def _own_ports(proc: subprocess.Popen) -> list[str]:
    """Each API process's own address, from `twin up`'s readiness file (one process: the API's)."""
    own: list[str] = proc.ready["own_ports"]  # type: ignore[attr-defined]
    return own


class _Echo(dcc_pb2_grpc.DccServiceServicer):
    """The same method answered with a constant reading and nothing else: what grpc.aio itself can
    do on this machine, the ceiling for any Python handler."""

    async def SubmitServiceRequest(self, request, context):
        result = struct_pb2.Struct()
        result.update({"import_register_kwh": 1234.567})
        return dcc_pb2.SubmitServiceRequestResponse(response=dcc_pb2.ServiceResponse(
            request_id=request.request_id, srv=request.srv, target=request.target, csp="North",
            status=dcc_pb2.RESPONSE_STATUS_COMPLETED, result=result))


async def _serve_echo(port: int) -> None:
    server = grpc.aio.server()
    dcc_pb2_grpc.add_DccServiceServicer_to_server(_Echo(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("serving", flush=True)
    await server.wait_for_termination()


def _grpc_ceiling(targets: list[str], requests: int) -> dict[str, Any]:
    """h2load against the constant-answer server, with the twin still running beside it."""
    proc = subprocess.Popen([sys.executable, "-m", "twin.bench.api", "echo", str(ECHO_PORT)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "serving"
        server = [psutil.Process(proc.pid)]
        cpu0 = _cpu(server)
        out = _h2load(f"127.0.0.1:{ECHO_PORT}", SUBMIT, "none", _read_bodies(targets), requests)
        out["server_cpu_ms_per_request"] = round(1000 * (_cpu(server) - cpu0) / out["requests"], 3)
        return out
    finally:
        stop_process(proc)


def _alert_delivery(addr: str, tokens: dict[str, str]) -> dict[str, Any]:
    op_md = (("authorization", f"Bearer {tokens['operator']}"),)
    ch = grpc.insecure_channel(addr)
    fleet = fleet_pb2_grpc.FleetServiceStub(ch)
    fleet.UpdateClock(fleet_pb2.UpdateClockRequest(state=fleet_pb2.CLOCK_STATE_PAUSED, speed=-1), metadata=op_md)
    time.sleep(2)
    received: list[float] = []
    positions: list[int] = []
    resumes: list[int] = []
    started = threading.Event()

    def listen() -> None:
        # From the next tick on (position before it), resumed by the client if the server ends
        # the stream for falling behind: every alert counted once, or the error is reported.
        client = TwinClient(addr, token=tokens["ed-east"])
        clock = fleet.GetClock(fleet_pb2.GetClockRequest(), metadata=op_md)
        started.set()
        try:
            for a in client.follow_alerts(["POWER_OUTAGE"], start_after_position=clock.tick << 32, resumes=resumes):
                received.append(time.perf_counter())
                positions.append(a.position)
        except grpc.RpcError as e:
            errors.append(f"{e.code().name}: {e.details()}")

    errors: list[str] = []
    listener = ReportingThread(listen, name="alert-listener")
    listener.start()
    if not started.wait(60):  # it failed before it could listen (its error is raised), or hangs
        listener.join_or_raise(1)
        raise RuntimeError("the alert listener did not start within 60 s")
    time.sleep(1)
    op = fleet.CreateEvent(fleet_pb2.CreateEventRequest(power_outage=fleet_pb2.PowerOutage(
        area="East England", fraction=0.81, duration_min=120)), metadata=op_md)
    t0 = time.perf_counter()
    fleet.StepClock(fleet_pb2.StepClockRequest(count=1), metadata=op_md)
    t_tick = time.perf_counter()
    last = 0
    while True:
        time.sleep(1.0)
        if len(received) == last and last > 0:
            break
        last = len(received)
    if listener.error is not None:
        listener.join_or_raise()
    opm = fleet_pb2.OperationMetadata()
    from google.longrunning import operations_pb2, operations_pb2_grpc

    view = operations_pb2_grpc.OperationsStub(ch).GetOperation(operations_pb2.GetOperationRequest(name=op.name),
                                                               metadata=op_md)
    view.metadata.Unpack(opm)
    return {"premises_cut": opm.power_outage.premises_cut, "alerts_delivered": len(received),
            "alerts_distinct_in_order": positions == sorted(set(positions)), "stream_resumes": len(resumes),
            "stream_errors": errors,
            "tick_s": round(t_tick - t0, 3), "last_alert_after_tick_end_s": round(received[-1] - t_tick, 3),
            "first_alert_after_tick_end_s": round(received[0] - t_tick, 3),
            "delivery_rate_per_s": round(len(received) / max(received[-1] - t_tick, 1e-3))}


GET_HUB_RPS = 1000
GET_HUB_RUN_S = 15.0
GET_HUB_P99_TARGET_MS = 10.0


def _gethub_runs(proc: subprocess.Popen, addr: str, token: str, hubs: int, runs: int,
                 console: Console) -> dict[str, Any]:
    """GetHub at GET_HUB_RPS for GET_HUB_RUN_S, `runs` times over, against the running twin: each
    run's latency figures, the calls the server itself counted as not OK, the ticks the clock ran
    meanwhile (it runs through every run), the API process's CPU per call and the machine's load
    average (what else was running), and in how many runs the p99 met GET_HUB_P99_TARGET_MS."""
    server = psutil.Process(proc.pid)
    fleet = fleet_pb2_grpc.FleetServiceStub(grpc.insecure_channel(addr))
    md = (("authorization", f"Bearer {token}"),)
    out: list[dict[str, Any]] = []
    for i in range(runs):
        tick0 = fleet.GetClock(fleet_pb2.GetClockRequest(), metadata=md).tick
        before = _server_outcomes("GetHub")
        cpu0 = _cpu([server])
        run = asyncio.run(_gethub_latency(addr, token, hubs, GET_HUB_RPS, GET_HUB_RUN_S))
        run["api_cpu_ms_per_request"] = round(1000 * (_cpu([server]) - cpu0) / run["requests"], 3)
        run["server_errors_by_code"] = _not_ok_since(before, "GetHub")
        run["clock_ticks"] = fleet.GetClock(fleet_pb2.GetClockRequest(), metadata=md).tick - tick0
        run["load_average_1m"] = round(os.getloadavg()[0], 2)
        console.print(f"  run {i + 1} of {runs}: p99 {run['p99_ms']} ms, max {run['max_ms']} ms, "
                      f"{run['errors']} not OK, {run['clock_ticks']} ticks, load {run['load_average_1m']}",
                      highlight=False)
        out.append(run)
    met = sum(r["p99_ms"] < GET_HUB_P99_TARGET_MS and r["errors"] == 0 for r in out)
    return {"offered_rps": GET_HUB_RPS, "seconds_per_run": GET_HUB_RUN_S, "dashboard": bool(proc.ready.get("dashboard")),  # type: ignore[attr-defined]
            "p99_target_ms": GET_HUB_P99_TARGET_MS, "runs_meeting_target": met, "runs": out}


def run_api_bench(*, hubs: int, out: Path, console: Console, runs: int = 5) -> dict[str, Any] | None:
    home = Path(tempfile.mkdtemp(prefix="twin-bench-api-"))
    console.print(f"starting twin up with {hubs:,} hubs…", highlight=False)
    proc = _start_server(hubs, home, home / "run")
    addr = f"127.0.0.1:{PORT}"
    try:
        tokens = json.loads((home / "tokens.json").read_text())
        result: dict[str, Any] = {"hubs": hubs}
        console.print(f"GetHub at {GET_HUB_RPS:,} requests/s, {runs} runs of {GET_HUB_RUN_S:g} s, while the fleet "
                      "runs and the dashboard is up…")
        result["get_hub"] = _gethub_runs(proc, addr, tokens["operator"], hubs, runs, console)
        ch = grpc.insecure_channel(addr)
        md = (("authorization", f"Bearer {tokens['operator']}"),)
        page = fleet_pb2_grpc.FleetServiceStub(ch).ListHubs(fleet_pb2.ListHubsRequest(
            filter="supplier=Octopus Energy AND reachable=true", page_size=1000), metadata=md)
        targets = [h.name for h in page.hubs]
        # The API's own CPU per request (the twin up process, not its shards or Ray's daemons): the
        # figure to size API processes by, whatever else shares the machine.
        server = psutil.Process(proc.pid)
        if shutil.which("h2load"):
            console.print("40,000 4.1.1 reads from h2load, 64 in flight…")
            before = _server_outcomes("SubmitServiceRequest")
            result["read_requests"] = _reads_h2load(addr, tokens, targets, 40_000, [server], [addr])
            result["read_requests"]["server_errors_by_code"] = _not_ok_since(before, "SubmitServiceRequest")
            console.print("the same from h2load against a constant-answer grpc.aio server (the ceiling)…")
            result["grpc_aio_ceiling"] = _grpc_ceiling(targets, 40_000)
            result["read_requests"]["share_of_ceiling"] = round(
                result["read_requests"]["per_s"] / max(result["grpc_aio_ceiling"]["per_s"], 1), 2)
        else:
            console.print("h2load not found (Debian package nghttp2-client): reads from the Python client only")
        console.print("4.1.1 reads from a Python grpc.aio client, 64 in flight, for 10 s…")
        cpu0, wall0 = _cpu([server]), time.perf_counter()
        before = _server_outcomes("SubmitServiceRequest")
        rr = result["read_requests_python_client"] = asyncio.run(
            _read_throughput(addr, tokens["octopus-is"], targets, 10))
        rr["server_errors_by_code"] = _not_ok_since(before, "SubmitServiceRequest")
        cpu = _cpu([server]) - cpu0
        rr["api_process_cpu_ms_per_request"] = round(1000 * cpu / max(rr["requests"], 1), 3)
        rr["api_process_cpu_share"] = round(cpu / (time.perf_counter() - wall0), 2)
        console.print("4.1.1 reads in bulk (SubmitServiceRequests, batches of 1,000), 5 runs of 100,000…")
        before = _server_outcomes("SubmitServiceRequests")
        bulk = result["bulk_read_requests"] = _bulk_runs(addr, tokens["octopus-is"], targets, server)
        bulk["server_errors_by_code"] = _not_ok_since(before, "SubmitServiceRequests")
        tokens["ed-east"] = _ed_token(home)
        console.print("alerts of a ~100k-hub outage to the area's network operator…")
        result["alert_stream"] = _alert_delivery(addr, tokens)
    finally:
        stop_process(proc)
    if shutil.which("h2load"):
        result["read_requests_2_api_processes"] = _reads_with_replicas(hubs, home, targets, console)
    return write_results({"api": result}, out, console)


def _reads_with_replicas(hubs: int, home: Path, targets: list[str], console: Console) -> dict[str, Any]:
    """The same reads against `twin up --api-processes 2`: the primary and one replica process
    share the port; every process's calls checked on its own port."""
    console.print("the same reads with two API processes (twin up --api-processes 2)…")
    proc = start_twin_up(hubs, home, home / "run2", "--grpc-port", str(PORT), "--anomaly-threshold", str(10**9),
                         "--api-processes", "2")
    try:
        time.sleep(3.0)
        addr = f"127.0.0.1:{PORT}"
        tokens = json.loads((home / "tokens.json").read_text())
        servers = [psutil.Process(proc.pid), *(c for c in psutil.Process(proc.pid).children()
                                               if "twin.services.replica" in " ".join(c.cmdline()))]
        return _reads_h2load(addr, tokens, targets, 40_000, servers, _own_ports(proc))
    finally:
        stop_process(proc)


def _ed_token(home: Path) -> str:
    """The bench's own ED user for East England (area 10), added before the server started."""
    return (home / "ed-east.token").read_text().strip()


if __name__ == "__main__" and sys.argv[1:2] == ["echo"]:
    with contextlib.suppress(KeyboardInterrupt):  # the bench stops the echo server with Ctrl-C
        asyncio.run(_serve_echo(int(sys.argv[2])))
