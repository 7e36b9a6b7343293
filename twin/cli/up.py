"""`twin up`: the live twin (engine, API, dashboard) until Ctrl-C. This module is its command line:
it checks every option, then hands a typed UpOptions to the launcher (twin/launcher/up.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from twin.cli.base import (
    Command,
    UsageError,
    check_needs,
    err,
    fleet_args,
    fleet_config,
    parse_shards,
    real_arg,
    run_dir,
    whole_arg,
)
from twin.launcher.up import FleetSpec, Launcher, UpOptions
from twin.util.grammar import GrammarError, parse_decimal, parse_number, shown
from twin.util.netaddr import is_loopback

MAX_API_PROCESSES = 64


def api_processes_arg(text: str) -> int:
    """argparse type for --api-processes: 1 to MAX_API_PROCESSES."""
    try:
        n = parse_decimal(text)
    except GrammarError:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {MAX_API_PROCESSES}, got {shown(text)}") from None
    if not 1 <= n <= MAX_API_PROCESSES:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {MAX_API_PROCESSES}, got {n}")
    return n


def parse_speed(text: str) -> float | None:
    """--speed: a positive multiple of real time, or 'max' (None: as fast as possible)."""
    if text == "max":
        return None
    try:
        speed = parse_number(text)
    except GrammarError:
        raise UsageError(f"--speed: a positive number or 'max', got {shown(text)}") from None
    if not speed > 0:
        raise UsageError(f"--speed: must be a positive multiple of real time or 'max', got {text}")
    return speed


def check_serving_args(args: argparse.Namespace) -> None:
    """Ports in range, TLS given whole, and nothing served beyond loopback without TLS."""
    if not 0 <= args.grpc_port <= 65535:
        raise UsageError(f"--grpc-port: must be 0-65535, got {args.grpc_port}")
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        raise UsageError(f"--metrics-port: must be 0-65535, got {args.metrics_port}")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    if not args.tls_cert and not is_loopback(args.grpc_host):
        raise UsageError(f"--grpc-host: {args.grpc_host} is beyond loopback; serving there needs TLS "
                         "(--tls-cert/--tls-key; `twin certs` makes development ones)")
    if args.duis_port is not None:
        if not 0 <= args.duis_port <= 65535:
            raise UsageError(f"--duis-port: must be 0-65535, got {args.duis_port}")
        if not args.tls_cert and not is_loopback(args.duis_host):
            raise UsageError(f"--duis-host: {args.duis_host} is beyond loopback; DUIS is served there only over HTTPS "
                             "(--tls-cert/--tls-key)")
    if args.no_dashboard:
        return
    if not 0 <= args.dash_port <= 65535:
        raise UsageError(f"--dash-port: must be 0-65535, got {args.dash_port}")
    if not args.tls_cert and not is_loopback(args.dash_host):
        raise UsageError(f"--dash-host: {args.dash_host} is beyond localhost; the dashboard serves there only with TLS "
                         "(--tls-cert/--tls-key) and operator sign-in")


class UpCommand(Command):
    name = "up"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        fleet_args(parser, "1M")
        parser.add_argument("--shards", help="shard actors (default: one per CPU Ray has)")
        parser.add_argument("--speed", default="1800",
                            help="simulated seconds per wall second, or 'max' (default 1800: one tick a second)")
        parser.add_argument("--status-every", type=real_arg, default=5.0, help="seconds between status lines")
        parser.add_argument("--address", help="join an existing Ray cluster instead of starting one")
        parser.add_argument("--run-dir", help="where the journal goes (default runs/live-TIME)")
        parser.add_argument("--resume", metavar="RUN_DIR",
                            help="continue a run from its directory: newest complete checkpoint plus the journal")
        parser.add_argument("--grpc-host", default="127.0.0.1",
                            help="API address (default 127.0.0.1; beyond loopback needs TLS)")
        parser.add_argument("--grpc-port", type=whole_arg, default=50051,
                            help="API port (default 50051; 0 picks a free one)")
        parser.add_argument("--metrics-port", type=whole_arg, default=None,
                            help="serve the API's call counters (by method and status code) in Prometheus format at "
                                 "http://127.0.0.1:PORT/metrics (default off; 0 picks a free port)")
        parser.add_argument("--tls-cert", help="server certificate (PEM) for TLS")
        parser.add_argument("--tls-key", help="server key (PEM) for TLS")
        parser.add_argument("--home", default=".twin", help="users, tokens and keys (default .twin)")
        parser.add_argument("--anomaly-threshold", type=whole_arg, default=1000,
                            help="requests per user and SRV per minute before quarantine (default 1000)")
        parser.add_argument("--dash-host", default="127.0.0.1",
                            help="dashboard address (default 127.0.0.1; beyond localhost needs TLS and operator "
                                 "sign-in)")
        parser.add_argument("--dash-port", type=whole_arg, default=8050,
                            help="dashboard port (default 8050; 0 picks a free one)")
        parser.add_argument("--no-dashboard", action="store_true", help="run the engine and API only")
        parser.add_argument("--api-processes", type=api_processes_arg, default=1,
                            help="processes serving the API port (default 1); each more one answers read Service "
                                 "Requests from the shards' shared memory, so reads scale with cores")
        parser.add_argument("--duis-port", type=whole_arg, default=None,
                            help="serve the DUIS gateway (signed DUIS XML, as DCC User adapters speak it) on this port "
                                 "(8079 is DCC's test system's; 0 picks a free one; default: not served)")
        parser.add_argument("--duis-host", default="127.0.0.1",
                            help="DUIS gateway address (default 127.0.0.1; beyond loopback it needs --tls-cert/--tls-key)")
        parser.add_argument("--duis-pki", metavar="MANIFEST",
                            help="the DUIS test PKI's manifest (twin duis-pki writes one; default HOME/duis/duis.json, "
                                 "issued for the development users if missing); receive URLs are set there per User")
        parser.add_argument("--duis-receiver-host", action="append", default=[], metavar="HOST",
                            help="a host beyond loopback that receive URLs may name (HTTPS only); repeat for more")
        parser.add_argument("--ready-file", metavar="PATH",
                            help="once everything serves, write there (JSON) the API address, each API process's own "
                                 "port, the dashboard URL and the run directory: how a script learns that the twin "
                                 "is up, and where")

    def run(self, args: argparse.Namespace) -> int:
        speed = parse_speed(args.speed)
        check_serving_args(args)
        if args.resume:
            fleet = FleetSpec(run_dir=Path(args.resume), resume=True)
        else:
            config = fleet_config(args)
            shards, where = parse_shards(args), run_dir(args, "live")
            check_needs(config, address=args.address, run_dir=where, shards=shards, days=None, serving=True)
            fleet = FleetSpec(config=config, shards=shards, run_dir=where)
        options = UpOptions(
            speed=speed, status_every_s=args.status_every, address=args.address, home=Path(args.home),
            grpc_host=args.grpc_host, grpc_port=args.grpc_port, metrics_port=args.metrics_port,
            tls=(Path(args.tls_cert), Path(args.tls_key)) if args.tls_cert else None,
            anomaly_threshold=args.anomaly_threshold, api_processes=args.api_processes,
            dashboard=not args.no_dashboard, dash_host=args.dash_host, dash_port=args.dash_port,
            ready_file=Path(args.ready_file) if args.ready_file else None,
            duis_port=args.duis_port, duis_host=args.duis_host,
            duis_pki=Path(args.duis_pki) if args.duis_pki else None,
            duis_receiver_hosts=frozenset(args.duis_receiver_host))
        return Launcher(fleet, options, err=err).run()
