"""The API server: grpc.aio on its own thread and event loop beside the engine.

Cross-cutting concerns live in one gate wrapped around every RPC method: bearer-token
authentication (the identity is handed to the servicer in a context variable), a cap on calls in
flight (overload answers RESOURCE_EXHAUSTED instead of queueing without bound), and turning
ApiError and bad input into statuses so no call ends UNKNOWN. Health checking and reflection are
open to all; channelz (the server's own call and socket counters) to operators only. Plaintext is
allowed on loopback only; any other address needs TLS."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import socket
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from twin.engine.supervisor import RunStateError
from twin.model.config import TwinInputError
from twin.netaddr import is_loopback
from twin.services.errors import ApiError, invalid
from twin.services.identity import OPERATOR, Identity, Unauthenticated, UserStore
from twin.services.streams import StreamLimits

log = logging.getLogger(__name__)

IDENTITY: contextvars.ContextVar[Identity] = contextvars.ContextVar("twin_identity")
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# Options of every API process's server, and of the replicas' channel to the primary.
MESSAGE_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]


def current_identity() -> Identity:
    return IDENTITY.get()


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

    def __init__(self, users: UserStore, max_in_flight: int, forward: Forwarder | None = None):
        self.users = users
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.forward = forward

    def guard(self, servicer: Any, service: Any, roles: frozenset[str] | None = None) -> Any:
        """`servicer` with every method of `service` (a ServiceDescriptor) gated; `roles`, if
        given, are the only roles allowed in."""
        for method in service.methods:
            if method.client_streaming:
                raise ValueError(f"{service.full_name}.{method.name}: client streaming is not gated")
            fn = getattr(servicer, method.name)
            if method.server_streaming:
                setattr(servicer, method.name, self._stream(fn, roles))
            else:
                setattr(servicer, method.name, self._unary(fn, roles, f"/{service.full_name}/{method.name}"))
        return servicer

    def _known(self, context) -> Identity | None:
        try:
            return self.users.authenticate(bearer_token(context))
        except Unauthenticated:
            return None

    async def _identity(self, context, roles: frozenset[str] | None, identity: Identity | None = None) -> Identity:
        try:
            identity = identity or self.users.authenticate(bearer_token(context))
        except Unauthenticated:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "missing or unknown bearer token (metadata 'authorization: Bearer <token>')")
            raise  # unreachable: abort raises
        if roles is not None and identity.role not in roles:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"only {', '.join(sorted(roles))} may call this")
        IDENTITY.set(identity)
        return identity

    def _unary(self, fn: Callable, roles: frozenset[str] | None, path: str) -> Callable:
        gate = self

        async def call(request, context):
            known = gate._known(context)
            if known is None and gate.forward is not None:
                return await gate.forward(path, request, context)
            await gate._identity(context, roles, known)
            if gate.in_flight >= gate.max_in_flight:
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                    f"server busy: {gate.in_flight} calls in flight (limit {gate.max_in_flight})")
            gate.in_flight += 1
            try:
                out = fn(request, context)
                return await out if inspect.isawaitable(out) else out
            except ApiError as e:
                await context.abort_with_status(e.status())
            except TwinInputError as e:
                await context.abort_with_status(invalid(e.field, e.reason).status())
            except RunStateError as e:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
            except NotImplementedError:  # a method of a generated base class this twin does not serve
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, "method not implemented")
            except Forward:
                return await gate.forward(path, request, context)  # type: ignore[misc]
            finally:
                gate.in_flight -= 1
        return call

    def _stream(self, fn: Callable, roles: frozenset[str] | None) -> Callable:
        gate = self

        async def call(request, context):
            await gate._identity(context, roles)
            try:
                async for item in fn(request, context):
                    yield item
            except ApiError as e:
                await context.abort_with_status(e.status())
        return call


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
        ChannelzServicer(), channelz_pb2.DESCRIPTOR.services_by_name["Channelz"], roles=frozenset({OPERATOR})), server)


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


def bearer_token(context) -> str:
    """The call's bearer token ('' if it has none)."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and value[:7].lower() == "bearer ":
            return value[7:].strip()
    return ""


class ApiServer:
    """Start with `start()`, stop with `stop()`; `port` is the bound port (0 picks one)."""

    def __init__(self, supervisor: Any, users: UserStore, *, host: str = "127.0.0.1", port: int = 50051,
                 tls: tuple[Path, Path] | None = None, max_in_flight: int = 256,
                 anomaly: Any = None, local_reads: bool = True, replica_token: str | None = None,
                 streams: StreamLimits | None = None):
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
        # How long a message may wait undelivered on a stream before it ends with a resume point.
        self.streams = streams or StreamLimits()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: grpc.aio.Server | None = None

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

        from twin.csp.v1 import csp_pb2, csp_pb2_grpc
        from twin.dcc.v1 import dcc_pb2, dcc_pb2_grpc
        from twin.fleet.v1 import fleet_pb2, fleet_pb2_grpc
        from twin.services.csp_servicer import CspServicer
        from twin.services.dcc_servicer import DccServicer
        from twin.services.fleet_servicer import FleetServicer, OperationsServicer

        # The port is shared (SO_REUSEPORT) only with API replicas, and only once it is known to
        # be free, so a second twin on the same port fails instead of silently taking half the calls.
        if self.replica_token is not None:
            ensure_port_free(self.host, self.port)
        server = grpc.aio.server(options=[*MESSAGE_OPTIONS, ("grpc.so_reuseport", int(self.replica_token is not None))])
        gate = _Gate(self.users, self.max_in_flight)
        fleet = FleetServicer(self.supervisor, self, limits=self.streams)
        dcc = DccServicer(self.supervisor, self, anomaly=self.anomaly, limits=self.streams)
        services = [  # (descriptor, servicer, registration function)
            (fleet_pb2.DESCRIPTOR.services_by_name["FleetService"], fleet,
             fleet_pb2_grpc.add_FleetServiceServicer_to_server),
            (operations_pb2.DESCRIPTOR.services_by_name["Operations"], OperationsServicer(self.supervisor, fleet.branches),
             operations_pb2_grpc.add_OperationsServicer_to_server),
            (dcc_pb2.DESCRIPTOR.services_by_name["DccService"], dcc, dcc_pb2_grpc.add_DccServiceServicer_to_server),
            (csp_pb2.DESCRIPTOR.services_by_name["CspService"], CspServicer(self.supervisor),
             csp_pb2_grpc.add_CspServiceServicer_to_server),
        ]
        for desc, servicer, add in services:
            add(gate.guard(servicer, desc), server)
        add_channelz(server, gate)
        if self.replica_token is not None:
            from twin.replica.v1 import replica_pb2_grpc
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
        for name in [*names[:len(services)], ""]:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._server = server
        self.dcc, self.fleet = dcc, fleet
        self._listeners = [lambda s: self.call_soon(lambda: dcc.on_tick(s)),
                           lambda s: self.call_soon(lambda: fleet.on_tick(s))]
        for fn in self._listeners:
            self.supervisor.add_listener(fn)

    def stop(self, grace_s: float = 5.0) -> None:
        """Graceful shutdown: stop accepting, let calls in flight finish within the grace period."""
        if self._loop is None or self._server is None:
            return
        for fn in getattr(self, "_listeners", []):
            self.supervisor.remove_listener(fn)
        fut = asyncio.run_coroutine_threadsafe(self._server.stop(grace_s), self._loop)
        fut.result(timeout=grace_s + 5)
        self._server = None
