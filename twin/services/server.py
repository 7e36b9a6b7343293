"""The API server: grpc.aio on its own thread and event loop beside the engine.

Cross-cutting concerns live in one gate wrapped around every RPC method: bearer-token
authentication (the identity is handed to the servicer in a context variable), a cap on calls in
flight (overload answers RESOURCE_EXHAUSTED with a RetryInfo instead of queueing without bound),
turning ApiError and bad input into statuses so no call ends UNKNOWN, and counting every call's
outcome by method and status code and timing every unary call (Prometheus, `twin up --metrics-port`,
with the engine's tick figures and the streams' subscribers: twin.services.metrics). Health
checking and reflection are open to all; channelz (the server's own call and socket counters) to operators only. Plaintext is
allowed on loopback only; any other address needs TLS."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from twin.engine.interface import FleetEngine
from twin.engine.supervisor import RunFailure, RunStateError
from twin.model.config import TwinInputError
from twin.model.ops.validation import CommandConflict, OperationStateConflict, UnknownOperation
from twin.services.branching import ComparisonWriter
from twin.services.errors import ApiError, conflict, denied, invalid, overloaded
from twin.services.identity import IDENTITY, Identity, Unauthenticated, UserStore, bearer_token
from twin.services.metrics import STREAM_KINDS, ApiMetrics
from twin.services.policy import PolicyError, Rule, check_call, rpc_rule
from twin.services.streams import StreamLimits
from twin.util.netaddr import is_loopback

if TYPE_CHECKING:  # (the DUIS gateway's libraries load only when it is served)
    from twin.services.duis_gateway.app import DuisFrontDoor, DuisSettings

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# Options of every API process's server, and of the replicas' channel to the primary.
MESSAGE_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
# Calls gRPC core has received but the Python server has not yet picked up wait in core's queue.
# Past its default limits (1,000 with random early drops, 3,000 hard) core cancels them: the client
# sees CANCELLED, channelz counts nothing as failed, and the gate below never sees them. The limits
# are raised far above the gate's cap, so the gate (which sees that queue through channelz) answers
# RESOURCE_EXHAUSTED long before core would drop anything. Memory: a waiting call holds its request
# (at most MAX_MESSAGE_BYTES, typically under 200 bytes).
CORE_PENDING_CALLS = 50_000
SERVER_OPTIONS = [*MESSAGE_OPTIONS, ("grpc.server.max_pending_requests", CORE_PENDING_CALLS),
                  ("grpc.server.max_pending_requests_hard_limit", CORE_PENDING_CALLS)]
# How long an overloaded server asks a client to wait before retrying (google.rpc.RetryInfo).
RETRY_AFTER_S = 0.2
# The gate reads the server's queue from channelz (a read costs 0.1-0.8 ms of the loop's time, the
# more the busier the machine): at most every _BACKLOG_SAMPLE_S while the last reading was well
# under the cap (at 1,000 calls/s the queue grows at most 50 calls between readings, a fifth of the
# default cap), and every _BACKLOG_SAMPLE_NEAR_S once it was past half the cap, so an overload is
# still refused within a few milliseconds. Read every 5 ms, it took a fifth of the loop's time at
# 500 GetHub/s (py-spy, `twin bench api`).
_BACKLOG_SAMPLE_S = 0.05
_BACKLOG_SAMPLE_NEAR_S = 0.005


_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()


def _shared_loop() -> asyncio.AbstractEventLoop:
    """One event loop thread for every API server in the process: grpc.aio is built for a single
    loop, and several servers on several loops interfere."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None or _LOOP.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="twin-grpc", daemon=True).start()
            _LOOP = loop
        return _LOOP


class Forward(Exception):
    """Raised by a servicer of an API replica: this call is for the primary to answer."""


Forwarder = Callable[[str, Any, Any], Awaitable[Any]]  # (method path, request, context) -> response


class _Gate:
    """Wraps each RPC method of a servicer once, when it is registered (an interceptor would
    rebuild the handler on every call, a measurable share of a read Service Request's cost).

    In an API replica, `forward` sends on to the primary what the replica does not answer itself:
    a call whose token it does not know (the primary may), or one its servicer raises Forward for."""

    def __init__(self, users: UserStore, max_in_flight: int, forward: Forwarder | None = None,
                 metrics: ApiMetrics | None = None):
        self.users = users
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.streams = 0  # server streams open: long-lived by design, so not waiting work
        self.forward = forward
        self.metrics = metrics or ApiMetrics()
        self._channelz_id: int | None = None
        self._backlog = 0
        self._backlog_at = 0.0

    def watch(self, known: set[int]) -> None:
        """Once the server is created: find it in channelz (the one server not in `known`, the
        ids before it), so the gate sees the calls waiting in gRPC core's queue as well as those
        in its handlers. If it cannot tell which is its server, it counts its handlers only."""
        new = channelz_server_ids() - known
        self._channelz_id = new.pop() if len(new) == 1 else None

    def backlog(self) -> int:
        """Calls received and not yet answered (in core's queue or in a handler), sampled."""
        if self._channelz_id is None:
            return self.in_flight
        now = time.monotonic()
        every = _BACKLOG_SAMPLE_NEAR_S if 2 * self._backlog > self.max_in_flight else _BACKLOG_SAMPLE_S
        if now - self._backlog_at >= every:
            from grpc._cython import cygrpc

            d = json.loads(cygrpc.channelz_get_server(self._channelz_id))["server"]["data"]
            self._backlog = (int(d.get("callsStarted", 0)) - int(d.get("callsSucceeded", 0))
                             - int(d.get("callsFailed", 0)) - self.streams)
            self._backlog_at = now
        return max(self._backlog, self.in_flight)

    def busy(self) -> ApiError | None:
        """The RESOURCE_EXHAUSTED to answer if the server is over its cap, else None."""
        if self.in_flight >= self.max_in_flight or self.backlog() > self.max_in_flight:
            return overloaded(f"server busy: {max(self.in_flight, self._backlog)} calls waiting or in flight "
                              f"(limit {self.max_in_flight}); retry after {RETRY_AFTER_S:g} s", RETRY_AFTER_S)
        return None

    def guard(self, servicer: Any, service: Any) -> Any:
        """`servicer` with every method of `service` (a ServiceDescriptor) gated, each admitting
        the callers its rule in the permission table (`policy.RPC_RULES`) allows. Raises KeyError
        for a method the table has no rule for."""
        for method in service.methods:
            if method.client_streaming and not method.server_streaming:
                raise ValueError(f"{service.full_name}.{method.name}: client streaming is not gated")
            fn = getattr(servicer, method.name)
            rule = rpc_rule(service.full_name, method.name)
            if method.server_streaming:  # (a bidirectional stream too: `request` is its iterator)
                setattr(servicer, method.name, self._stream(fn, rule, method.name))
            else:
                setattr(servicer, method.name, self._unary(fn, rule, f"/{service.full_name}/{method.name}"))
        return servicer

    def _known(self, context) -> Identity | None:
        try:
            return self.users.authenticate(bearer_token(context))
        except Unauthenticated:
            return None

    def _identity(self, context, rule: Rule, method: str, identity: Identity | None = None) -> Identity:
        try:
            identity = identity or self.users.authenticate(bearer_token(context))
        except Unauthenticated:
            raise ApiError(grpc.StatusCode.UNAUTHENTICATED,
                           "missing or unknown bearer token (metadata 'authorization: Bearer <token>')") from None
        try:
            check_call(identity, rule, method)
        except PolicyError as e:
            raise denied(e.message, e.field) from None
        IDENTITY.set(identity)
        return identity

    async def _refuse(self, context, method: str, error: ApiError, started: float | None = None) -> None:
        """Count the call (and time it, if unary: `started` is its time.perf_counter() start), then
        end it with `error` (counted first: aborting sends the status at once)."""
        if started is None:
            self.metrics.count(method, error.code)
        else:
            self.metrics.answered(method, error.code, time.perf_counter() - started)
        await context.abort_with_status(error.status())

    def _unary(self, fn: Callable, rule: Rule, path: str) -> Callable:
        gate = self
        method = path.rsplit("/", 1)[-1]

        async def call(request, context):
            started = time.perf_counter()
            try:
                out = await serve(request, context)
            except ApiError as e:
                await gate._refuse(context, method, e, started)
            except BaseException as e:  # a relayed status, the client gone, or a fault: counted as it ends
                gate.metrics.answered(method, _code_of(context, e), time.perf_counter() - started)
                raise
            gate.metrics.answered(method, grpc.StatusCode.OK, time.perf_counter() - started)
            return out

        async def serve(request, context):
            known = gate._known(context)
            if known is None and gate.forward is not None:
                return await gate.forward(path, request, context)
            gate._identity(context, rule, method, known)
            busy = gate.busy()
            if busy is not None:
                raise busy
            gate.in_flight += 1
            try:
                out = fn(request, context)
                return await out if inspect.isawaitable(out) else out
            except UnknownOperation as e:
                raise ApiError(grpc.StatusCode.NOT_FOUND, str(e), field=e.field) from None
            except (OperationStateConflict, CommandConflict) as e:
                raise conflict(e.field, str(e)) from None
            except TwinInputError as e:
                raise invalid(e.field, e.reason) from None
            except RunStateError as e:
                raise conflict("run", str(e)) from None
            except RunFailure as e:  # the run's own fault (storage, a shard), not the caller's
                raise ApiError(grpc.StatusCode.UNAVAILABLE, str(e)) from None
            except NotImplementedError:  # a method of a generated base class this twin does not serve
                raise ApiError(grpc.StatusCode.UNIMPLEMENTED, "method not implemented") from None
            except Forward:
                return await gate.forward(path, request, context)
            finally:
                gate.in_flight -= 1
        return call

    def _stream(self, fn: Callable, rule: Rule, method: str) -> Callable:
        gate = self

        async def call(request, context):
            try:
                gate._identity(context, rule, method)
                busy = gate.busy()
                if busy is not None:
                    raise busy
                gate.streams += 1
                try:
                    async for item in fn(request, context):
                        yield item
                finally:
                    gate.streams -= 1
            except ApiError as e:
                await gate._refuse(context, method, e)
                return
            except BaseException as e:
                gate.metrics.count(method, _code_of(context, e))
                raise
            gate.metrics.count(method, grpc.StatusCode.OK)
        return call


def _code_of(context, error: BaseException) -> grpc.StatusCode:
    """The status a call that did not return is ending with: what abort set, CANCELLED if the
    client went away (asyncio cancelled the handler: grpc.aio's `context.cancelled()` still says
    False then), UNKNOWN for anything else."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):  # grpc.aio keeps the raw status number
        return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    if isinstance(error, asyncio.CancelledError) or context.cancelled():
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


def channelz_server_ids() -> set[int]:
    """Channelz ids of the gRPC servers of this process."""
    from grpc._cython import cygrpc

    return {int(srv["ref"]["serverId"]) for srv in json.loads(cygrpc.channelz_get_servers(0)).get("server", [])}


def add_port(server: grpc.aio.Server, address: str, tls: tuple[Path, Path] | None) -> int:
    """Listen on `address`, with TLS from (certificate, key) files if given; returns the port."""
    if tls is None:
        return server.add_insecure_port(address)
    cert, key = (p.read_bytes() for p in tls)
    return server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))


def add_channelz(server: grpc.aio.Server, gate: _Gate) -> None:
    """The server's own call and socket counters (gRPC channelz), for operators only."""
    from grpc_channelz.v1 import channelz_pb2, channelz_pb2_grpc
    from grpc_channelz.v1._async import ChannelzServicer

    channelz_pb2_grpc.add_ChannelzServicer_to_server(gate.guard(
        ChannelzServicer(), channelz_pb2.DESCRIPTOR.services_by_name["Channelz"]), server)


def ensure_port_free(host: str, port: int) -> None:
    """Raise OSError if something listens on host:port already (port 0 is always free)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT, never past a listener
        try:
            probe.bind((host.strip("[]") or "0.0.0.0", port))
        except OSError as e:
            raise OSError(f"cannot serve on {host}:{port}: {e.strerror}") from None


class ApiServer:
    """Start with `start()`, stop with `stop()`; `port` is the bound port (0 picks one)."""

    def __init__(self, supervisor: FleetEngine, users: UserStore, *, host: str = "127.0.0.1", port: int = 50051,
                 tls: tuple[Path, Path] | None = None, max_in_flight: int = 256,
                 anomaly: Any = None, local_reads: bool = True, replica_token: str | None = None,
                 metrics_port: int | None = None, streams: StreamLimits | None = None,
                 write_comparison: ComparisonWriter | None = None, duis: DuisSettings | None = None):
        if tls is None and not is_loopback(host):
            raise ValueError(f"refusing to serve plaintext on {host}: beyond loopback the API needs TLS "
                             "(twin certs makes development certificates)")
        self.supervisor = supervisor
        self.users = users
        self.host = host
        self.port = port
        self.tls = tls
        self.max_in_flight = max_in_flight
        self.anomaly = anomaly
        # Hub lookups and reads straight from the shards' shared memory when they are on this node.
        self.local_reads = local_reads
        # With API replicas (other processes answering reads on the same port): the token they
        # present, and the loopback port where they reach this process alone.
        self.replica_token = replica_token
        self.internal_port = 0
        # Outcomes of every call by method and code, unary calls' latency, the engine's tick figures
        # and the streams' subscribers (twin.services.metrics); served over HTTP on loopback if a
        # port is given.
        self.metrics = ApiMetrics()
        self.metrics_port = metrics_port
        # How long a message may wait undelivered on a stream before it ends with a resume point.
        self.streams = streams or StreamLimits()
        # Writes CompareBranches' page (twin.reporting.compare.comparison_page; None: its JSON only).
        self.write_comparison = write_comparison
        # The DUIS front door beside the gRPC API, over the same DCC (None: not served).
        self.duis_settings = duis
        self.duis: DuisFrontDoor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: grpc.aio.Server | None = None
        # The health service, and the clock-failure listener that turns it NOT_SERVING.
        self.health: Any = None
        self._health_names: list[str] = []
        self._on_clock: Callable[[str | None], None] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        if self.local_reads and hasattr(self.supervisor, "enable_local_reads"):
            self.supervisor.enable_local_reads()
        self._loop = _shared_loop()
        fut = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        fut.result(timeout=30)

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the server's loop (from any thread)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn)

    async def _serve(self) -> None:
        from google.longrunning import operations_pb2, operations_pb2_grpc

        from twin.generated.csp.v1 import csp_pb2, csp_pb2_grpc
        from twin.generated.dcc.v1 import dcc_pb2, dcc_pb2_grpc
        from twin.generated.fleet.v1 import fleet_pb2, fleet_pb2_grpc
        from twin.services.csp_servicer import CspServicer
        from twin.services.dcc_servicer import DccServicer
        from twin.services.fleet_servicer import FleetServicer, OperationsServicer

        # The port is shared (SO_REUSEPORT) only with API replicas, and only once it is known to
        # be free, so a second twin on the same port fails instead of silently taking half the calls.
        if self.replica_token is not None:
            ensure_port_free(self.host, self.port)
        known = channelz_server_ids()
        server = grpc.aio.server(options=[*SERVER_OPTIONS, ("grpc.so_reuseport", int(self.replica_token is not None))])
        gate = _Gate(self.users, self.max_in_flight, metrics=self.metrics)
        gate.watch(known)
        fleet = FleetServicer(self.supervisor, self, limits=self.streams, write_comparison=self.write_comparison)
        dcc = DccServicer(self.supervisor, self, anomaly=self.anomaly, limits=self.streams)
        services = [  # (descriptor, servicer, registration function)
            (fleet_pb2.DESCRIPTOR.services_by_name["FleetService"], fleet,
             fleet_pb2_grpc.add_FleetServiceServicer_to_server),
            (operations_pb2.DESCRIPTOR.services_by_name["Operations"], OperationsServicer(self.supervisor, fleet.branches, fleet),
             operations_pb2_grpc.add_OperationsServicer_to_server),
            (dcc_pb2.DESCRIPTOR.services_by_name["DccService"], dcc, dcc_pb2_grpc.add_DccServiceServicer_to_server),
            (csp_pb2.DESCRIPTOR.services_by_name["CspService"], CspServicer(self.supervisor),
             csp_pb2_grpc.add_CspServiceServicer_to_server),
        ]
        for desc, servicer, add in services:
            add(gate.guard(servicer, desc), server)
        add_channelz(server, gate)
        if self.replica_token is not None:
            from twin.generated.replica.v1 import replica_pb2_grpc
            from twin.services.replica_source import ReplicaServicer

            replica_pb2_grpc.add_ReplicaServiceServicer_to_server(
                ReplicaServicer(self.supervisor, dcc.anomaly, self.replica_token), server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        names = [desc.full_name for desc, _, _ in services]
        names += ["grpc.channelz.v1.Channelz", health.SERVICE_NAME, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, server)
        addr = f"{self.host}:{self.port}"
        try:
            self.port = add_port(server, addr, self.tls)
        except RuntimeError:  # grpc's way of saying the bind failed
            raise OSError(f"cannot serve on {addr}: the address is in use or not available here") from None
        if self.replica_token is not None:
            self.internal_port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        streams = dict(zip(STREAM_KINDS, (fleet.watchers, dcc.alert_subscribers, dcc.response_subscribers), strict=True))
        self.metrics.watch(self.supervisor, streams, lambda: gate.in_flight)
        if self.metrics_port is not None:
            self.metrics_port = self.metrics.serve_http(self.metrics_port)
        for name in [*names[:len(services)], ""]:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._server = server
        self.dcc, self.fleet = dcc, fleet
        if self.duis_settings is not None:
            try:
                await self._start_duis(self.duis_settings)
            except BaseException:
                await server.stop(0)
                self._server = None
                self.metrics.stop_http()
                raise
        self._listeners = [lambda s: self.call_soon(lambda: dcc.on_tick(s)),
                           lambda s: self.call_soon(lambda: fleet.on_tick(s))]
        for fn in self._listeners:
            self.supervisor.add_listener(fn)
        self.health = health_servicer
        self._health_names = [*names[:len(services)], ""]
        if hasattr(self.supervisor, "add_failure_listener"):  # (a replica's view of the fleet has no clock)
            self._on_clock = lambda error: self.call_soon(lambda: self._clock_health(error))
            self.supervisor.add_failure_listener(self._on_clock)
            if self.supervisor.clock_error is not None:
                self._clock_health(self.supervisor.clock_error)

    async def _start_duis(self, settings: DuisSettings) -> None:
        from twin.services.duis_gateway.app import start_duis

        self.duis = await start_duis(settings, self.dcc.core, self.users)

    def serve_duis(self, settings: DuisSettings) -> DuisFrontDoor:
        """Start the DUIS front door over this server's DCC (the gRPC API's, so both doors share
        its ledger, quarantine and response logs) on the server's loop; returns it once it listens.
        ValueError for a PKI or receive URL that cannot be used, OSError for a port in use."""
        if self._loop is None or self._server is None:
            raise RuntimeError("start the API server first")
        if self.duis is not None:
            raise RuntimeError("the DUIS front door is served already")
        asyncio.run_coroutine_threadsafe(self._start_duis(settings), self._loop).result(timeout=30)
        assert self.duis is not None
        return self.duis

    def stop_duis(self) -> None:
        """Stop the DUIS front door (its HTTP server, followers and deliveries), if served."""
        if self.duis is not None and self._loop is not None:
            asyncio.run_coroutine_threadsafe(self.duis.stop(), self._loop).result(timeout=30)
        self.duis = None

    def _clock_health(self, error: str | None) -> None:
        """On the server loop: a failed clock makes every service NOT_SERVING (a load balancer or
        `grpc_health_probe` sees the run has stopped); a clock running again makes them SERVING."""
        from twin.util.background import spawn

        status = health_pb2.HealthCheckResponse.NOT_SERVING if error else health_pb2.HealthCheckResponse.SERVING

        async def set_all() -> None:
            for name in self._health_names:
                await self.health.set(name, status)

        spawn(set_all(), name="health-from-clock")

    def stop(self, grace_s: float = 5.0) -> None:
        """Graceful shutdown: stop accepting, let calls in flight finish within the grace period."""
        if self._loop is None or self._server is None:
            return
        for fn in getattr(self, "_listeners", []):
            self.supervisor.remove_listener(fn)
        if self._on_clock is not None and hasattr(self.supervisor, "remove_failure_listener"):
            self.supervisor.remove_failure_listener(self._on_clock)
        self.stop_duis()
        fut = asyncio.run_coroutine_threadsafe(self._server.stop(grace_s), self._loop)
        fut.result(timeout=grace_s + 5)
        self._server = None
        self.metrics.stop_http()
