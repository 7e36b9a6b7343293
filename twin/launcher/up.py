"""`twin up`'s processes: the engine in this process (on local Ray, or a cluster), the gRPC API in
this process, its replica processes and the dashboard process beside it, the clock, a status line
every few seconds with the story's lines between them (launcher/story.py), and a clean stop on
Ctrl-C or SIGTERM. Children report readiness and ports through readiness files
(launcher/process.py) and die with this process (launcher/child.py)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from grpc.experimental.aio import init_grpc_aio
from rich.console import Console

from twin.engine import runtime
from twin.engine.placement import ClusterView
from twin.engine.supervisor import FleetSupervisor, read_manifest
from twin.launcher.process import Child, LaunchError, start_child, stop_children
from twin.launcher.story import Story, cluster_line, node_lines, placement_line, recovery_line
from twin.model.config import FleetConfig
from twin.model.params import TICK_SECONDS
from twin.model.timeutil import format_instant
from twin.reporting.capacity import status_figure
from twin.reporting.compare import comparison_page
from twin.services.anomaly import AnomalyDetector
from twin.services.bootstrap import load_or_create_users
from twin.services.identity import UserStore
from twin.services.server import ApiServer
from twin.util.child import write_ready
from twin.util.heap import release_heap, settle_heap

if TYPE_CHECKING:
    from twin.services.duis_gateway.app import DuisSettings

_LOOP_S = 0.2  # how often the main loop looks for a stop request and a status line due
# How often the main loop looks at the cluster's nodes (one GCS call; the shards' answers are
# collected on the next look, never waited for, so a dead node cannot hold up the status lines).
_NODES_EVERY_S = 2.0


@dataclass(frozen=True, kw_only=True)
class FleetSpec:
    """The fleet to run: a new one (config, shards, run directory) or, with `resume`, the run
    directory to continue (its manifest gives the config and shards)."""

    config: FleetConfig | None = None
    shards: int | None = None
    run_dir: Path
    resume: bool = False


@dataclass(frozen=True, kw_only=True)
class UpOptions:
    """What `twin up` serves and how (checked by the command line before it gets here)."""

    speed: float | None  # simulated seconds per wall second; None: as fast as possible
    status_every_s: float
    address: str | None  # a Ray cluster to join; None: Ray embedded in this process
    home: Path
    grpc_host: str
    grpc_port: int
    metrics_port: int | None
    tls: tuple[Path, Path] | None  # (certificate, key), PEM
    anomaly_threshold: int
    api_processes: int
    dashboard: bool
    dash_host: str
    dash_port: int
    ready_file: Path | None = None  # written once everything serves: where the API and dashboard are
    duis_port: int | None = None  # the DUIS gateway's port; None: not served
    duis_host: str = "127.0.0.1"
    duis_pki: Path | None = None  # its PKI manifest; None: HOME/duis/duis.json, issued if missing
    duis_receiver_hosts: frozenset[str] = frozenset()


class Launcher:
    """Start, run and stop `twin up`. `run()` returns the exit status (0) once stopped; a start
    that fails raises LaunchError (naming the option) with nothing left behind."""

    def __init__(self, fleet: FleetSpec, options: UpOptions, *, err: Console):
        self.fleet = fleet
        self.options = options
        self.err = err
        self.sup: FleetSupervisor | None = None
        self.api: ApiServer | None = None
        self.children: list[Child] = []
        self._stop = False
        self._ready_dir = Path(tempfile.mkdtemp(prefix="twin-up-"))

    def run(self) -> int:
        o = self.options
        try:
            sup = self._start_engine()
            signal.signal(signal.SIGINT, self._on_signal)
            signal.signal(signal.SIGTERM, self._on_signal)
            # grpc.aio set up from the main thread, and kept up until the process exits: set up on first
            # use in the server's thread instead, its poller may be shut while that thread still handles
            # it, and the exit prints a 'Bad file descriptor' traceback (grpc/grpc#22365).
            init_grpc_aio()
            try:
                api = self._start_api(sup)
                dash_url = self._start_dashboard(api) if o.dashboard else None
            except BaseException:
                self._stop_all(grace_s=1.0)  # none left behind by a failed start, the shards' segments too
                raise
            settle_heap()  # the engine, API and children are up: what the run keeps from its start
            story = Story(sup.config)
            sup.add_listener(story.observe)  # before the clock: no tick's operations go untold
            sup.start_clock(speed=o.speed)
            config = sup.config
            pace = ("as fast as possible" if o.speed is None
                    else f"{o.speed:g}x real time ({TICK_SECONDS / o.speed:.2f} s per tick)")
            if o.ready_file is not None:
                write_ready(o.ready_file, grpc=api.address, own_ports=self._own_ports(api), dashboard=dash_url,
                            run_dir=str(sup.run_dir), duis=api.duis.server.url if api.duis is not None else None)
            self.err.print(f"twin is running: simulated clock from {format_instant(config.time_of(sup.tick))}, "
                           f"{pace}. Ctrl-C stops.")
            try:
                self._status_loop(sup, story)
            finally:
                if o.ready_file is not None:
                    o.ready_file.unlink(missing_ok=True)  # no longer ready: a script waiting on it must not see it
                self.err.print("stopping…")
                self._stop_all(grace_s=5.0)
            return 0
        finally:
            for f in self._ready_dir.iterdir():
                f.unlink(missing_ok=True)
            self._ready_dir.rmdir()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop = True

    def _start_engine(self) -> FleetSupervisor:
        spec = self.fleet
        if spec.resume:
            manifest = read_manifest(spec.run_dir)  # before Ray starts, so a wrong directory costs nothing
            if not manifest:
                raise LaunchError(f"--resume: {spec.run_dir} is not a run directory (no readable manifest.json)")
            config = FleetConfig.from_dict(manifest["config"])
            runtime.start_ray(address=self.options.address, num_cpus=None)
            if self.options.address:
                runtime.check_run_dir_shared(spec.run_dir)
            with self.err.status(f"resuming {spec.run_dir}…"):
                self.sup = FleetSupervisor(config, shards=manifest.get("shards"), run_dir=spec.run_dir, resume=True)
            self.err.print(f"[green]resumed {spec.run_dir} at tick {self.sup.tick} "
                           f"({format_instant(config.time_of(self.sup.tick))}), "
                           f"{len(self.sup.operations())} operation(s)")
            self._say_placement(self.sup)
            return self.sup
        assert spec.config is not None
        runtime.start_ray(address=self.options.address, num_cpus=None)
        if self.options.address:
            runtime.check_run_dir_shared(spec.run_dir)
        with self.err.status(f"building a fleet of {spec.config.hubs:,} hubs…"):
            self.sup = FleetSupervisor(spec.config, shards=spec.shards, run_dir=spec.run_dir)
        self.err.print(f"[green]fleet of {spec.config.hubs:,} hubs built on {len(self.sup.shards)} shard(s) in "
                       f"{self.sup.build_s:.1f} s; run directory {spec.run_dir}")
        self._say_placement(self.sup)
        return self.sup

    def _say_placement(self, sup: FleetSupervisor) -> None:
        """On a cluster, which machine runs how many shards (on one machine, nothing to say)."""
        line = placement_line(len(sup.shards), sup.shards_per_node())
        if line:
            self.err.print(line, highlight=False)

    def _start_api(self, sup: FleetSupervisor) -> ApiServer:
        """The API in this process, and its replica processes if api_processes asks for more."""
        o = self.options
        users, tokens = load_or_create_users(o.home)
        replicas = o.api_processes - 1
        duis = self._duis_settings(users) if o.duis_port is not None else None
        api = ApiServer(sup, users, host=o.grpc_host, port=o.grpc_port, tls=o.tls,
                        anomaly=AnomalyDetector(default_threshold=o.anomaly_threshold),
                        replica_token=secrets.token_urlsafe(32) if replicas else None, metrics_port=o.metrics_port,
                        write_comparison=comparison_page, duis=duis)
        try:
            api.start()
        except OSError as e:
            raise LaunchError(f"--grpc-port or --duis-port: {e}") from None
        except ValueError as e:
            raise LaunchError(f"--duis-pki: {e}") from None
        self.api = api
        for i in range(replicas):
            self.children.append(self._start_replica(api, i))
        self.err.print(f"gRPC API on {api.address} ({'TLS' if o.tls else 'plaintext, loopback only'}); bearer tokens "
                       f"of the development users in {tokens}", highlight=False)
        if api.duis is not None and api.duis_settings is not None:
            self.err.print(f"DUIS gateway on {api.duis.server.url}/api/v1/serviceS|serviceD|serviceT; DCC Users' "
                           f"keys and certificates in {api.duis_settings.pki.parent}", highlight=False)
        if api.metrics_port is not None:
            self.err.print(f"API and engine metrics (Prometheus) on http://127.0.0.1:{api.metrics_port}/metrics",
                           highlight=False)
        if replicas:
            # Each process's own loopback port, to ask one of them (its channelz counters) directly.
            own = self._own_ports(api)
            self.err.print(f"{o.api_processes} API processes share {api.address}; own ports: "
                           f"{own[0]} (this one), {', '.join(own[1:])}", highlight=False)
        return api

    def _duis_settings(self, users: UserStore) -> DuisSettings:
        """The DUIS gateway's settings; the development users' test PKI issued in HOME/duis if no
        manifest is named and none is there yet."""
        from twin.services.duis_gateway.app import DuisSettings
        from twin.services.duis_gateway.pki import issue
        from twin.services.identity import OPERATOR

        o = self.options
        assert o.duis_port is not None
        manifest = o.duis_pki
        if manifest is None:
            manifest = o.home / "duis" / "duis.json"
            if not manifest.exists():
                issue(manifest.parent, [u.user_id for u in users.users() if u.role != OPERATOR])
        elif not manifest.exists():
            raise LaunchError(f"--duis-pki: no manifest at {manifest} (twin duis-pki issues one)")
        return DuisSettings(pki=manifest, host=o.duis_host, port=o.duis_port, tls=o.tls,
                            receiver_hosts=o.duis_receiver_hosts)

    def _own_ports(self, api: ApiServer) -> list[str]:
        """Each API process's own address, this one first (the replicas' from their readiness files);
        a single process has no other port than the API's."""
        replicas = [f"127.0.0.1:{c.ready['own_port']}" for c in self.children if "own_port" in c.ready]
        return [f"127.0.0.1:{api.internal_port}", *replicas] if replicas else [api.address]

    def _start_replica(self, api: ApiServer, index: int) -> Child:
        """An API replica process on the API's own port: it answers reads from the shards' shared
        memory and sends everything else to this process (twin/services/replica.py)."""
        o = self.options
        cmd = [sys.executable, "-m", "twin.services.replica", "--primary", f"127.0.0.1:{api.internal_port}",
               "--listen", api.address, "--home", str(o.home), "--exit-with-parent"]
        if o.tls:
            cmd += ["--tls-cert", str(o.tls[0]), "--tls-key", str(o.tls[1])]
        assert api.replica_token is not None
        return start_child("an API replica", cmd, ready_file=self._ready_dir / f"replica-{index}.json",
                           env={**os.environ, "TWIN_REPLICA_TOKEN": api.replica_token})

    def _start_dashboard(self, api: ApiServer) -> str:
        """The dashboard in its own process (its own interpreter lock, so drawing pages never slows
        the fleet), a client of the API like any other; returns its URL."""
        o = self.options
        token = json.loads((o.home / "tokens.json").read_text())["operator"]
        # The dashboard reaches the API on this machine: over loopback when the API listens on all addresses.
        api_host = "127.0.0.1" if api.host in ("0.0.0.0", "::", "") else api.host
        api_addr = f"[{api_host}]:{api.port}" if ":" in api_host else f"{api_host}:{api.port}"
        cmd = [sys.executable, "-m", "dashboard", "--api", api_addr, "--host", o.dash_host, "--port", str(o.dash_port),
               "--exit-with-parent"]
        if o.tls:
            cmd += ["--tls-cert", str(o.tls[0]), "--tls-key", str(o.tls[1])]
            ca = o.tls[0].with_name("ca.pem")
            if ca.exists():
                cmd += ["--api-ca", str(ca)]
        child = start_child("the dashboard", cmd, ready_file=self._ready_dir / "dashboard.json",
                            env={**os.environ, "TWIN_TOKEN": token})
        self.children.append(child)
        url = str(child.ready["url"])
        self.err.print(f"dashboard on {url}", highlight=False)
        return url

    def _status_loop(self, sup: FleetSupervisor, story: Story) -> None:
        """Until a stop is asked: one plain status line every status_every_s, and the story's lines
        (operations starting, progressing and ending, alert peaks) as they come (to stdout)."""
        config = sup.config
        last_print = 0.0
        last_tick = 0
        t_last = time.monotonic()
        recovered = sup.recovery_count
        view: ClusterView | None = None
        last_nodes = -1e9
        while not self._stop:
            time.sleep(_LOOP_S)
            for line in story.drain():
                print(line, flush=True)
            if sup.recovery_count != recovered:
                new, recovered = sup.recovery_count - recovered, sup.recovery_count
                for r in list(sup.recoveries)[-new:]:
                    print(recovery_line(config, r), flush=True)
            now = time.monotonic()
            if now - last_nodes >= _NODES_EVERY_S:
                last_nodes = now
                before, view = view, sup.cluster(timeout_s=0.0)
                for line in node_lines(before, view, config.time_of(sup.tick)):
                    print(line, flush=True)
            if now - last_print < self.options.status_every_s:
                continue
            if sup.clock_state == "failed":
                # Said on every status line while it lasts: never a quiet, frozen status.
                last_print = now
                print(f"{format_instant(config.time_of(sup.tick))}  tick {sup.tick:>6}  CLOCK FAILED: "
                      f"{sup.clock_error} (the traceback is above; UpdateClock to RUNNING tries again)", flush=True)
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
                f"HH lost {sup.totals['hh_lost']:>10,}  {rate / 1e6:,.1f}M hub-ticks/s"
                + (f"  {cap}" if (cap := status_figure(s.capacity, config.params.capacity)) else ""),
                flush=True,
            )
            if view is not None and (cl := cluster_line(view, config.time_of(s.tick + 1))):
                print(cl, flush=True)

    def _stop_all(self, *, grace_s: float) -> None:
        """The children, then the API, then the engine (the shards' shared segments go with them).
        The dashboard goes before the replicas: its stream may be served by one of them, and a
        replica gone first would have it report a lost stream on its way out."""
        for child in reversed(self.children):
            stop_children([child.proc])
        self.children = []
        if self.api is not None:
            self.api.stop(grace_s=grace_s)
            self.api = None
        if self.sup is not None:
            self.sup.shutdown()
            self.sup = None
        release_heap()
