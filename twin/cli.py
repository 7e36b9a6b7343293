"""The `twin` command: run the live twin, run headless, benchmark, look up a hub."""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from twin.engine.address import RayAddressError
from twin.model.config import MAX_HUBS, FleetConfig, TwinInputError, parse_regions
from twin.model.params import HALF_HOURS_PER_DAY, TICK_SECONDS
from twin.model.state import BYTES_PER_HUB
from twin.model.timeutil import format_instant, parse_instant
from twin.timeline_cli import TimelineUsageError, whole_arg
from twin.util.grammar import GrammarError, parse_decimal, parse_number, shown

# Wide enough for the tables when output goes to a file or a pipe.
console = Console(stderr=False, width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 120)

# Ray and numpy temporaries on top of the columns; measured peak is ~1.2x state + ~0.6 GiB.
_MEMORY_OVERHEAD = 1.5
_MEMORY_BASE = 1.5 * 2**30


DEFAULT_BENCH_OUT = "bench-results/engine.json"


class UsageError(Exception):
    """A bad command line: printed as one line, exit code 2."""


# --hubs and the like: ASCII digits, optional '_' or ',' between them, an optional fraction and an
# optional k/M/b multiplier ('1000000', '1_000_000', '1M', '250k', '1.5M').
_COUNT_RE = re.compile(r"([0-9]+(?:[_,][0-9]+)*(?:\.[0-9]+)?)([kKmMbB]?)", re.ASCII)


def parse_count(text: str, what: str = "hubs") -> int:
    """'1000000', '1_000_000', '1M', '250k', '1.5M' -> int; UsageError naming --`what` otherwise
    (non-ASCII digits, signs, inner blanks and fractions of one are refused)."""
    m = _COUNT_RE.fullmatch(text.strip(" \t"))
    if m is None:
        raise UsageError(f"--{what}: expected a whole number like 1000000 or 1M, got {shown(text)}")
    value = Fraction(m.group(1).replace("_", "").replace(",", "")) * {"": 1, "k": 10**3, "m": 10**6, "b": 10**9}[
        m.group(2).lower()]
    if value.denominator != 1:
        raise UsageError(f"--{what}: expected a whole number, got {shown(text)}")
    return int(value)


def _real(text: str) -> float:
    """argparse type: a finite decimal number in ASCII (argparse names the option)."""
    try:
        return parse_number(text)
    except GrammarError:
        raise argparse.ArgumentTypeError(f"expected a number like 2.5, got {shown(text)}") from None


def _positive_int(text: str, what: str) -> int:
    try:
        v = parse_decimal(text, signed=True)
    except GrammarError:
        raise UsageError(f"--{what}: expected a whole number, got {shown(text)} (ASCII digits 0-9)") from None
    if v < 1:
        raise UsageError(f"--{what}: must be at least 1, got {v}")
    return v


def _seed(text: str) -> int:
    """--seed: what FleetConfig takes, checked here so the message names the option."""
    try:
        v = parse_decimal(text, signed=True)
    except GrammarError:
        raise UsageError(f"--seed: expected a whole number, got {shown(text)} (ASCII digits 0-9)") from None
    if not 0 <= v < 2**63:
        raise UsageError(f"--seed: must be a whole number in [0, 2^63), got {v}")
    return v


def _days(text: str) -> float:
    """--days: a positive number of simulated days, at least one half-hour tick."""
    try:
        days = parse_number(text, finite=False)
    except GrammarError:
        raise UsageError(f"--days: expected a number like 1.5, got {shown(text)}") from None
    if not days > 0:  # also rejects nan
        raise UsageError(f"--days: must be more than zero, got {text}")
    if days == float("inf"):
        raise UsageError(f"--days: must be finite, got {text}")
    if round(days * HALF_HOURS_PER_DAY) < 1:
        raise UsageError(f"--days: {text} is less than one half-hour tick")
    return days


def _hubs(text: str) -> int:
    hubs = parse_count(text)
    if hubs < 1:
        raise UsageError(f"--hubs: must be at least 1, got {hubs:,}")
    if hubs > MAX_HUBS:
        raise UsageError(f"--hubs: must be at most {MAX_HUBS:,}, got {hubs:,}")
    return hubs


def _config(args: argparse.Namespace) -> FleetConfig:
    hubs = _hubs(args.hubs)
    seed = _seed(args.seed)
    start = {}
    if getattr(args, "start", None):
        try:
            start["start"] = parse_instant(args.start, "--start")
        except TwinInputError as e:
            raise UsageError(str(e)) from None
    regions = parse_regions(args.regions) if getattr(args, "regions", None) else None
    kw: dict[str, Any] = {"hubs": hubs, "seed": seed, **start}
    if regions:
        kw["regions"] = regions
    if getattr(args, "block_size", None):
        kw["block_size"] = _positive_int(args.block_size, "block-size")
    return FleetConfig(**kw)


def _check_memory(hubs: int, address: str | None) -> None:
    if address:
        return  # a cluster's memory is the cluster's business
    need = hubs * BYTES_PER_HUB * _MEMORY_OVERHEAD + _MEMORY_BASE
    have = psutil.virtual_memory().available
    if need > have:
        raise UsageError(
            f"--hubs: {hubs:,} hubs need about {need / 2**30:.1f} GiB here and this machine has "
            f"{have / 2**30:.1f} GiB available; use fewer hubs or a cluster (--address)"
        )


def _shards(args: argparse.Namespace) -> int | None:
    return _positive_int(args.shards, "shards") if args.shards is not None else None


def _run_dir(args: argparse.Namespace, name: str) -> Path:
    if getattr(args, "run_dir", None):
        return Path(args.run_dir)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("runs") / f"{name}-{stamp}"


def _start(args: argparse.Namespace):
    from twin.engine.runtime import start_ray
    from twin.engine.supervisor import FleetSupervisor

    if getattr(args, "resume", None):
        return _resume(args)
    config = _config(args)
    _check_memory(config.hubs, getattr(args, "address", None))
    shards = _shards(args)
    run_dir = _run_dir(args, "live")
    start_ray(address=getattr(args, "address", None), num_cpus=None)
    with err.status(f"building a fleet of {config.hubs:,} hubs…"):
        sup = FleetSupervisor(config, shards=shards, run_dir=run_dir)
    err.print(f"[green]fleet of {config.hubs:,} hubs built on {len(sup.shards)} shard(s) in {sup.build_s:.1f} s; "
              f"run directory {run_dir}")
    return config, sup


def _resume(args: argparse.Namespace):
    from twin.engine.runtime import start_ray
    from twin.engine.supervisor import FleetSupervisor, read_manifest

    run_dir = Path(args.resume)
    manifest = read_manifest(run_dir)
    if not manifest:
        raise UsageError(f"--resume: {run_dir} is not a run directory (no readable manifest.json)")
    config = FleetConfig.from_dict(manifest["config"])
    start_ray(address=getattr(args, "address", None), num_cpus=None)
    with err.status(f"resuming {run_dir}…"):
        sup = FleetSupervisor(config, shards=manifest.get("shards"), run_dir=run_dir, resume=True)
    err.print(f"[green]resumed {run_dir} at tick {sup.tick} ({format_instant(config.time_of(sup.tick))}), "
              f"{len(sup.operations())} operation(s)")
    return config, sup


def _scenario(args: argparse.Namespace):
    from twin.studies.scenario import Scenario, load_scenario

    hubs = _hubs(args.hubs) if args.hubs is not None else None
    seed = _seed(args.seed) if args.seed is not None else None
    days = _days(args.days) if args.days is not None else None
    if args.scenario:
        return load_scenario(Path(args.scenario), hubs=hubs, seed=seed, days=days)
    if args.hubs is None:
        args.hubs = "1M"
    if args.seed is None:
        args.seed = "1"
    config = _config(args)
    return Scenario(name="baseline", description="The fleet with no operator events.", config=config,
                    days=days if days is not None else 1.0, events=[])


def cmd_run(args: argparse.Namespace) -> int:
    from twin.engine.runtime import start_ray
    from twin.reporting.summary import print_summary
    from twin.studies.scenario import run_scenario

    sc = _scenario(args)
    config = sc.config
    _check_memory(config.hubs, getattr(args, "address", None))
    shards = _shards(args)
    run_dir = _run_dir(args, sc.name)
    start_ray(address=getattr(args, "address", None), num_cpus=None)
    ticks = sc.ticks
    err.print(f"scenario {sc.name}: {config.hubs:,} hubs from {format_instant(config.start)}, {sc.days:g} days, "
              f"{len(sc.commands)} event(s); "
              f"run directory {run_dir}", highlight=False)
    done = {"n": 0}
    t = time.perf_counter()
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=err,
                  transient=False) as progress:
        task = progress.add_task("building", total=ticks, rate="")

        def on_tick(s) -> None:
            done["n"] += 1
            elapsed = time.perf_counter() - t
            progress.update(task, advance=1, description=f"{config.time_of(s.tick + 1):%Y-%m-%d %H:%M}",
                            rate=f"{config.hubs * done['n'] / max(elapsed, 1e-9) / 1e6:,.1f}M hub-ticks/s")

        report = run_scenario(sc, run_dir=run_dir, shards=shards, progress=on_tick)
    print_summary(report["summary"], console)
    for op in report["operations"]:
        md = op["metadata"]
        console.print(f"{op['name']}: {md['state']}" + (f" ({md['reason']})" if md.get("reason") else ""),
                      highlight=False)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report["summary"], indent=2) + "\n")
        err.print(f"summary written to {path}")
    console.print(f"report: {run_dir / 'report.html'} and {run_dir / 'report.json'}", highlight=False)
    return 0


def _check_api_args(args: argparse.Namespace) -> None:
    from twin.netaddr import is_loopback

    if not 0 <= args.grpc_port <= 65535:
        raise UsageError(f"--grpc-port: must be 0-65535, got {args.grpc_port}")
    if getattr(args, "metrics_port", None) is not None and not 0 <= args.metrics_port <= 65535:
        raise UsageError(f"--metrics-port: must be 0-65535, got {args.metrics_port}")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    if not args.tls_cert and not is_loopback(args.grpc_host):
        raise UsageError(f"--grpc-host: {args.grpc_host} is beyond loopback; serving there needs TLS "
                         "(--tls-cert/--tls-key; `twin certs` makes development ones)")
    if args.no_dashboard:
        return
    if not 0 <= args.dash_port <= 65535:
        raise UsageError(f"--dash-port: must be 0-65535, got {args.dash_port}")
    if not args.tls_cert and not is_loopback(args.dash_host):
        raise UsageError(f"--dash-host: {args.dash_host} is beyond localhost; the dashboard serves there only with TLS "
                         "(--tls-cert/--tls-key) and operator sign-in")


def _start_dashboard(args: argparse.Namespace, api, tokens_path: Path):
    """The dashboard in its own process (its own interpreter lock, so drawing pages never slows the
    fleet), a client of the API like any other; returns (process, url)."""
    import socket
    import ssl
    import subprocess
    import urllib.error
    import urllib.request

    port = args.dash_port
    if port == 0:
        with socket.socket() as s:
            s.bind((args.dash_host, 0))
            port = s.getsockname()[1]
    token = json.loads(tokens_path.read_text())["operator"]
    # The dashboard reaches the API on this machine: over loopback when the API listens on all addresses.
    api_host = "127.0.0.1" if api.host in ("0.0.0.0", "::", "") else api.host
    api_addr = f"[{api_host}]:{api.port}" if ":" in api_host else f"{api_host}:{api.port}"
    cmd = [sys.executable, "-m", "dashboard", "--api", api_addr, "--host", args.dash_host, "--port", str(port),
           "--exit-with-parent"]
    if args.tls_cert:
        cmd += ["--tls-cert", args.tls_cert, "--tls-key", args.tls_key]
        ca = Path(args.tls_cert).with_name("ca.pem")
        if ca.exists():
            cmd += ["--api-ca", str(ca)]
    proc = subprocess.Popen(cmd, env={**os.environ, "TWIN_TOKEN": token})
    scheme = "https" if args.tls_cert else "http"
    host = f"[{args.dash_host}]" if ":" in args.dash_host else args.dash_host
    url = f"{scheme}://{host}:{port}"
    deadline = time.monotonic() + 60
    ctx = ssl._create_unverified_context() if args.tls_cert else None  # only asking our own child if it is up
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=2, context=ctx)
            break
        except urllib.error.HTTPError:
            break  # it answers (503 until the first tick arrives)
        except OSError:
            time.sleep(0.2)
    if proc.poll() is not None:
        raise UsageError(f"the dashboard did not start (exit {proc.returncode}); see its message above")
    return proc, url


def _start_api(args: argparse.Namespace, sup) -> tuple[Any, list[Any]]:
    """The API in this process, and its replica processes if --api-processes asks for more."""
    from twin.services.bootstrap import load_or_create_users
    from twin.services.server import ApiServer

    users, tokens = load_or_create_users(Path(args.home))
    tls = (Path(args.tls_cert), Path(args.tls_key)) if args.tls_cert else None
    from twin.services.anomaly import AnomalyDetector

    replicas = args.api_processes - 1
    api = ApiServer(sup, users, host=args.grpc_host, port=args.grpc_port, tls=tls,
                    anomaly=AnomalyDetector(default_threshold=args.anomaly_threshold),
                    replica_token=secrets.token_urlsafe(32) if replicas else None, metrics_port=args.metrics_port)
    try:
        api.start()
    except OSError as e:
        raise UsageError(f"--grpc-port: {e}") from None
    children: list[tuple[Any, int]] = []
    try:
        for _ in range(replicas):
            children.append(_start_replica(args, api))
    except BaseException:
        _stop_children([proc for proc, _ in children])  # none left behind by a failed start
        api.stop(grace_s=1.0)
        raise
    err.print(f"gRPC API on {api.address} ({'TLS' if tls else 'plaintext, loopback only'}); bearer tokens of the "
              f"development users in {tokens}", highlight=False)
    if api.metrics_port is not None:
        err.print(f"API call counters (Prometheus) on http://127.0.0.1:{api.metrics_port}/metrics", highlight=False)
    if children:
        # Each process's own loopback port, to ask one of them (its channelz counters) directly.
        own = ", ".join(f"127.0.0.1:{port}" for _, port in children)
        err.print(f"{args.api_processes} API processes share {api.address}; own ports: 127.0.0.1:{api.internal_port} "
                  f"(this one), {own}", highlight=False)
    return api, [proc for proc, _ in children]


def _api_processes(text: str) -> int:
    try:
        n = parse_decimal(text)
    except GrammarError:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to 64, got {shown(text)}") from None
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to 64, got {n}")
    return n


def _start_replica(args: argparse.Namespace, api) -> tuple[Any, int]:
    """An API replica process on the API's own port: it answers reads from the shards' shared
    memory and sends everything else to this process (twin/services/replica.py). Returns the
    process and its own loopback port."""
    import subprocess

    cmd = [sys.executable, "-m", "twin.services.replica", "--primary", f"127.0.0.1:{api.internal_port}",
           "--listen", api.address, "--home", str(args.home), "--exit-with-parent"]
    if args.tls_cert:
        cmd += ["--tls-cert", args.tls_cert, "--tls-key", args.tls_key]
    proc = subprocess.Popen(cmd, env={**os.environ, "TWIN_REPLICA_TOKEN": api.replica_token},
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout is not None else ""
    own = re.search(r"own port 127\.0\.0\.1:(\d+)", line)
    if own is None:
        raise UsageError(f"an API replica did not start (exit {proc.wait()}); see its message above")
    return proc, int(own.group(1))


def _stop_children(procs: list) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except Exception:
            proc.kill()


def cmd_submit(args: argparse.Namespace) -> int:
    from twin.cluster import submit
    from twin.studies.scenario import load_scenario

    path = Path(args.scenario)
    # Every option is checked before the cluster hears of the job.
    hubs = _hubs(args.hubs) if args.hubs is not None else None
    seed = _seed(args.seed) if args.seed is not None else None
    days = _days(args.days) if args.days is not None else None
    shards = _shards(args)
    load_scenario(path, hubs=hubs, seed=seed, days=days)  # reject a bad file before the cluster sees it
    run_dir = str(_run_dir(args, path.stem))
    res = submit(path, address=args.address, run_dir=run_dir, hubs=hubs, seed=seed, shards=shards, days=days,
                 wait=not args.no_wait, log=lambda m: err.print(m, highlight=False), python=args.python)
    if args.no_wait:
        console.print(res["job_id"])
        return 0
    err.print(res["logs"][-3000:], highlight=False, markup=False)
    console.print(f"job {res['job_id']}: {res['status']}; report in {res['run_dir']}", highlight=False)
    return 0 if res["status"] == "SUCCEEDED" else 1


def cmd_sweep(args: argparse.Namespace) -> int:
    import yaml

    from twin.engine.runtime import start_ray
    from twin.studies.sweep import run_sweep

    values = [yaml.safe_load(v) for v in args.values.split(",") if v.strip()]
    if len(values) < 2:
        raise UsageError("--values: give at least two comma-separated values")
    # Checked before Ray starts, so a typo costs nothing.
    hubs = _hubs(args.hubs) if args.hubs is not None else None
    seed = _seed(args.seed) if args.seed is not None else None
    shards = _shards(args)
    out = _run_dir(args, f"sweep-{Path(args.scenario).stem}")
    start_ray(address=args.address)
    res = run_sweep(Path(args.scenario), param=args.param, values=values, out=out, hubs=hubs, seed=seed,
                    shards=shards)
    for p in res["points"]:
        console.print(f"{args.param}={p['value']}: peak msgs/s {p['peak_messages_per_s']}, peak alerts/s "
                      f"{p['peak_alerts_per_s']}, max dark {p['max_dark_hubs']:,}, HH lost {p['hh_periods_lost']:,}",
                      highlight=False)
    console.print(f"sweep report: {out / 'sweep.html'} and {out / 'sweep.json'}", highlight=False)
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    from twin.services.bootstrap import load_or_create_users

    home = Path(args.home)
    party = 0
    if args.action == "add":
        # Checked before the user store is read (or created).
        if not args.user_id or not args.role:
            raise UsageError("users add needs USER_ID and --role")
        try:
            party = parse_decimal(args.party)
        except GrammarError:
            raise UsageError(f"--party: expected a supplier code (1-16) or a DNO area id (10-23), "
                             f"got {shown(args.party)}") from None
    store, _tokens = load_or_create_users(home)
    if args.action == "list":
        for u in store.users():
            console.print(f"{u.user_id:20} {u.role:9} party {u.party_id}", highlight=False)
        return 0
    try:
        identity, token, key = store.issue_user(args.user_id, args.role.upper(), party, keys_dir=home / "keys")
    except ValueError as e:
        raise UsageError(str(e)) from None
    store.save(home / "users.json")
    console.print(f"user {identity.user_id} ({identity.role}, party {identity.party_id}); signing key {key}")
    console.print(f"token (shown once): {token}", highlight=False)
    return 0


def cmd_certs(args: argparse.Namespace) -> int:
    from twin.services.bootstrap import make_certs

    ca, cert, key = make_certs(Path(args.out), args.hosts.split(","))
    console.print(f"CA {ca}\nserver certificate {cert}\nserver key {key}", highlight=False)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    try:
        speed = None if args.speed == "max" else parse_number(args.speed)
    except GrammarError:
        raise UsageError(f"--speed: a positive number or 'max', got {shown(args.speed)}") from None
    if speed is not None and not speed > 0:
        raise UsageError(f"--speed: must be a positive multiple of real time or 'max', got {args.speed}")
    _check_api_args(args)
    config, sup = _start(args)
    stop = {"now": False}

    def on_signal(signum, frame) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # grpc.aio set up from the main thread, and kept up until the process exits: set up on first
    # use in the server's thread instead, its poller may be shut while that thread still handles
    # it, and the exit prints a 'Bad file descriptor' traceback (grpc/grpc#22365).
    from grpc.experimental.aio import init_grpc_aio

    init_grpc_aio()
    try:
        api, replicas = _start_api(args, sup)
    except BaseException:
        sup.shutdown()  # the shards' shared segments go with them
        raise
    dash = None
    if not args.no_dashboard:
        dash, url = _start_dashboard(args, api, Path(args.home) / "tokens.json")
        err.print(f"dashboard on {url}", highlight=False)
    sup.start_clock(speed=speed)
    pace = "as fast as possible" if speed is None else f"{speed:g}x real time ({TICK_SECONDS / speed:.2f} s per tick)"
    err.print(f"twin is running: simulated clock from {format_instant(config.time_of(sup.tick))}, {pace}. "
              "Ctrl-C stops.")
    last_print = 0.0
    last_tick = 0
    t_last = time.monotonic()
    while not stop["now"]:
        time.sleep(0.2)
        now = time.monotonic()
        if now - last_print < args.status_every:
            continue
        if sup.clock_state == "failed":
            # Said on every status line while it lasts: never a quiet, frozen status.
            last_print = now
            print(f"{format_instant(config.time_of(sup.tick))}  tick {sup.tick:>6}  CLOCK FAILED: {sup.clock_error} "
                  "(the traceback is above; UpdateClock to RUNNING tries again)", flush=True)
            continue
        if not sup.history:
            continue
        s = sup.history[-1]
        rate = (sup.tick - last_tick) * config.hubs / max(now - t_last, 1e-9)
        last_tick, t_last, last_print = sup.tick, now, now
        # One plain line per status, never wrapped, so logs and pipes can parse it.
        print(
            f"{config.time_of(s.tick + 1):%Y-%m-%d %H:%M}  tick {s.tick:>6}  "
            f"msgs/tick {s.total_messages:>9,}  reachable {int(s.reachable_hubs.sum()):>11,}  "
            f"dark {int(s.dark_hubs.sum()):>8,}  alerts {int(s.alerts.sum()):>6,}  "
            f"HH lost {sup.totals['hh_lost']:>10,}  {rate / 1e6:,.1f}M hub-ticks/s",
            flush=True,
        )
    err.print("stopping…")
    _stop_children([*([dash] if dash is not None else []), *replicas])
    api.stop(grace_s=5.0)
    sup.shutdown()
    return 0


def cmd_hub(args: argparse.Namespace) -> int:
    from twin.model.generator import generate
    from twin.model.ids import parse_hub_ref
    from twin.model.network import NetworkPlan
    from twin.model.query import hub_record

    config = _config(args)
    try:
        hub = parse_hub_ref(args.hub_id, config.seed)
    except GrammarError as e:
        raise UsageError(f"HUB_ID: {e}") from None
    if not 0 <= hub < config.hubs:
        raise UsageError(f"HUB_ID: {shown(args.hub_id)} is not in this fleet ({config.hubs:,} hubs, seed {config.seed})")
    block = hub // config.block_size
    state = generate(config, block, 1)  # one block is enough to describe a hub at the start
    rec = hub_record(state, config, NetworkPlan().up_by_area(0), hub, -1)
    console.print_json(json.dumps(rec))
    return 0


DEFAULT_SIZES = "1M,3M,10M,30M"


def cmd_bench(args: argparse.Namespace) -> int:
    from twin.bench.engine import run_bench, run_events_bench

    seed = _seed(args.seed)
    if args.suite == "api":
        from twin.bench.api import run_api_bench

        res = run_api_bench(hubs=_hubs(args.hubs if args.hubs != "30M" else "1M"), out=Path(
            args.out if args.out != DEFAULT_BENCH_OUT else "bench-results/api.json"), console=console)
        return 0 if res else 1
    if args.suite == "dashboard":
        from twin.bench.dashboard import run_dashboard_bench

        sizes = [parse_count(s) for s in (args.sizes if args.sizes != DEFAULT_SIZES else "1M,30M").split(",")]
        for s in sizes:
            _check_memory(s, None)
        res = run_dashboard_bench(sizes, samples=args.samples, out=Path(
            args.out if args.out != DEFAULT_BENCH_OUT else "bench-results/dashboard.json"), console=console)
        return 0 if res else 1
    if args.suite == "reliability":
        from twin.bench.reliability import run_reliability_bench

        resume_hubs, chaos_hubs = _hubs(args.hubs), _hubs(args.chaos_hubs)
        _check_memory(resume_hubs, None)
        out = Path(args.out if args.out != DEFAULT_BENCH_OUT else "bench-results/reliability.json")
        res = run_reliability_bench(chaos_hubs=chaos_hubs, resume_hubs=resume_hubs, ticks=480, kill_every_s=3.0,
                                    seed=seed, out=out, console=console)
        return 0 if res else 1
    if args.suite == "events":
        hubs = _hubs(args.hubs)
        _check_memory(hubs, None)
        out = Path(args.out if args.out != DEFAULT_BENCH_OUT else "bench-results/events.json")
        res = run_events_bench(hubs=hubs, scenario_hubs=_hubs(args.scenario_hubs), seed=seed, out=out,
                               console=console)
        return 0 if res else 1

    sizes = [parse_count(s) for s in args.sizes.split(",")]
    days = _days(args.days)
    for s in sizes:
        _check_memory(s, None)
    result = run_bench(sizes, days=days, shards=_shards(args), seed=seed, out=Path(args.out),
                       console=console)
    return 0 if result else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="twin", description="Digital twin of the GB smart metering fleet")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def fleet_args(sp: argparse.ArgumentParser, hubs: str | None) -> None:
        sp.add_argument("--hubs", default=hubs, help=f"number of hubs, e.g. 1000000 or 1M (default {hubs or '1M'})")
        sp.add_argument("--seed", default=None if hubs is None else "1", help="fleet seed (default 1)")
        sp.add_argument("--regions", help="only these CSP regions, e.g. North,Central (default all)")
        sp.add_argument("--start", help="simulated start: an instant, ISO 8601 with a zone (Z or an offset), "
                        "kept and shown in UTC (default 2026-11-01T00:00Z)")
        sp.add_argument("--block-size", help=argparse.SUPPRESS)

    up = sub.add_parser("up", help="run the live twin (engine on local Ray) until Ctrl-C")
    fleet_args(up, "1M")
    up.add_argument("--shards", help="shard actors (default: one per CPU Ray has)")
    up.add_argument("--speed", default="1800",
                    help="simulated seconds per wall second, or 'max' (default 1800: one tick a second)")
    up.add_argument("--status-every", type=_real, default=5.0, help="seconds between status lines")
    up.add_argument("--address", help="join an existing Ray cluster instead of starting one")
    up.add_argument("--run-dir", help="where the journal goes (default runs/live-TIME)")
    up.add_argument("--resume", metavar="RUN_DIR",
                    help="continue a run from its directory: newest complete checkpoint plus the journal")
    up.add_argument("--grpc-host", default="127.0.0.1", help="API address (default 127.0.0.1; beyond loopback needs TLS)")
    up.add_argument("--grpc-port", type=whole_arg, default=50051, help="API port (default 50051; 0 picks a free one)")
    up.add_argument("--metrics-port", type=whole_arg, default=None,
                    help="serve the API's call counters (by method and status code) in Prometheus format at "
                         "http://127.0.0.1:PORT/metrics (default off; 0 picks a free port)")
    up.add_argument("--tls-cert", help="server certificate (PEM) for TLS")
    up.add_argument("--tls-key", help="server key (PEM) for TLS")
    up.add_argument("--home", default=".twin", help="users, tokens and keys (default .twin)")
    up.add_argument("--anomaly-threshold", type=whole_arg, default=1000,
                    help="requests per user and SRV per minute before quarantine (default 1000)")
    up.add_argument("--dash-host", default="127.0.0.1",
                    help="dashboard address (default 127.0.0.1; beyond localhost needs TLS and operator sign-in)")
    up.add_argument("--dash-port", type=whole_arg, default=8050, help="dashboard port (default 8050; 0 picks a free one)")
    up.add_argument("--no-dashboard", action="store_true", help="run the engine and API only")
    up.add_argument("--api-processes", type=_api_processes, default=1,
                    help="processes serving the API port (default 1); each more one answers read Service "
                         "Requests from the shards' shared memory, so reads scale with cores")
    up.set_defaults(fn=cmd_up)

    run = sub.add_parser("run", help="run a scenario (or the plain fleet) headless and write its report")
    run.add_argument("scenario", nargs="?", help="scenario file (YAML); its fleet values unless overridden")
    fleet_args(run, None)
    run.add_argument("--days", default=None, help="simulated days (default: the scenario's, or 1)")
    run.add_argument("--run-dir", help="where the journal and report go (default runs/NAME-TIME)")
    run.add_argument("--shards", help="shard actors (default: one per CPU Ray has)")
    run.add_argument("--json", help="also write the summary as JSON to this path")
    run.add_argument("--address", help="join an existing Ray cluster instead of starting one")
    run.set_defaults(fn=cmd_run)

    bench = sub.add_parser("bench", help="measure build, tick and memory figures, or event costs")
    bench.add_argument("suite", nargs="?", choices=("engine", "events", "api", "dashboard", "reliability"),
                       default="engine",
                       help="engine (default): sizes x build/day/memory; events: event costs and scenarios; api: "
                            "gRPC latency and throughput; dashboard: tick-to-browser time and update sizes; "
                            "reliability: kills, recovery, checkpoints, resume")
    bench.add_argument("--hubs", default="30M", help="events suite: fleet size; reliability: resume size (default 30M)")
    bench.add_argument("--chaos-hubs", default="1M", help="reliability suite: fleet size of the chaos run (default 1M)")
    bench.add_argument("--scenario-hubs", default="3M", help="events suite: fleet size for the scenarios")
    bench.add_argument("--sizes", default=DEFAULT_SIZES,
                       help="fleet sizes (default 1M,3M,10M,30M; dashboard suite 1M,30M)")
    bench.add_argument("--samples", type=whole_arg, default=60, help="dashboard suite: ticks timed per size (default 60)")
    bench.add_argument("--days", default="1", help="simulated days per size (default 1)")
    bench.add_argument("--shards", help="shard actors (default: one per CPU)")
    bench.add_argument("--seed", default="1")
    bench.add_argument("--out", default=DEFAULT_BENCH_OUT, help="results file (JSON)")
    bench.set_defaults(fn=cmd_bench)

    sm = sub.add_parser("submit", help="run a scenario on a Ray cluster as a Ray job")
    sm.add_argument("scenario")
    sm.add_argument("--address", required=True, help="the cluster's job server, e.g. http://127.0.0.1:8265")
    sm.add_argument("--hubs")
    sm.add_argument("--seed")
    sm.add_argument("--shards")
    sm.add_argument("--days")
    sm.add_argument("--run-dir", help="where the head writes the report: a path, file:// or another URI")
    sm.add_argument("--no-wait", action="store_true", help="print the job id and return")
    sm.add_argument("--python", default="python", help="the cluster's Python with twin installed (default python)")
    sm.set_defaults(fn=cmd_submit)

    sw = sub.add_parser("sweep", help="run a scenario at several values of one parameter, in parallel")
    sw.add_argument("scenario")
    sw.add_argument("--param", required=True,
                    help="incidents.outage_alert_backoff_s (a model parameter) or events[1].installs_per_day")
    sw.add_argument("--values", required=True, help="comma-separated values")
    sw.add_argument("--hubs")
    sw.add_argument("--seed")
    sw.add_argument("--shards", help="shards per point")
    sw.add_argument("--address", help="a Ray cluster (default: local Ray)")
    sw.add_argument("--run-dir")
    sw.set_defaults(fn=cmd_sweep)

    users = sub.add_parser("users", help="list DCC Users, or add one (prints its token once)")
    users.add_argument("action", choices=("list", "add"))
    users.add_argument("user_id", nargs="?")
    users.add_argument("--role", help="IS, ES, GS, ED, GT, RSA, OU or OPERATOR")
    users.add_argument("--party", default="0", help="supplier code (1-16) or DNO area id (10-23)")
    users.add_argument("--home", default=".twin")
    users.set_defaults(fn=cmd_users)

    certs = sub.add_parser("certs", help="make a development CA and server certificate for TLS")
    certs.add_argument("--out", default=".twin/certs")
    certs.add_argument("--hosts", default="localhost,127.0.0.1", help="names and addresses the certificate covers")
    certs.set_defaults(fn=cmd_certs)

    hub = sub.add_parser("hub", help="describe one hub of a fleet at its start")
    hub.add_argument("hub_id", help="hub index (0..N-1) or comms hub device id (EUI-64)")
    fleet_args(hub, "1M")
    hub.set_defaults(fn=cmd_hub)

    from twin.timeline_cli import add_commands

    add_commands(sub, console, err)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except (UsageError, TwinInputError, TimelineUsageError, RayAddressError) as e:
        err.print(f"twin {args.command}: error: {e}", highlight=False, markup=False)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
