"""An API replica: another process answering on the API's own port (the kernel spreads connections
over the processes that share it, SO_REUSEPORT), so reads are not bound by one interpreter.

A replica answers read Service Requests (4.1.1, 4.6.1, 4.8.1, 4.17) of reachable hubs itself,
from the shards' shared memory, with the same checks as the primary (the servicer is the primary's,
given this process's view of the fleet). Everything else, and anything it cannot answer exactly
(a hub that is dark, a shard busy writing or restarting, a token it does not know, a user past its
admissions), it sends on to the primary: the caller's message, metadata and deadline in; the
primary's answer, status and details out. So a caller cannot tell which process answered.

What it knows of the fleet it takes from the primary's internal ReplicaService, on its loopback
port: the last completed tick, the network schedule and which ticks it is final for, the shared
segments and the response-time table (twin.engine.latency: a read beyond its caller's deadline is
the primary's to acknowledge and answer later), every quarter of a second and whenever a row is
newer than what it knows.
Admissions come in leases from the primary's anomaly detector, so the per-user thresholds hold
across processes; leased admissions not used within a second are handed back.

    python -m twin.services.replica --primary 127.0.0.1:PORT --listen 127.0.0.1:50051 --home .twin
    (started by `twin up --api-processes N`; the replica token comes in TWIN_REPLICA_TOKEN)"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import grpc
import numpy as np

from twin.engine.alert_log import AlertLog
from twin.engine.latency import LatencyTable
from twin.engine.operations import OperationFilter
from twin.engine.requests import RequestKey, RequestLedger
from twin.engine.shared_state import Descriptor, SharedReader
from twin.generated.dcc.v1 import dcc_pb2
from twin.generated.replica.v1 import replica_pb2, replica_pb2_grpc
from twin.model.config import FleetConfig
from twin.model.network import NetworkPlan
from twin.model.readings import READ_SRVS, service_facts
from twin.services.dcc import DccCore, DccEngine, ServiceRequest, ServiceResponse
from twin.services.dcc_servicer import DccServicer, grpc_digest
from twin.services.identity import Identity, UserStore
from twin.services.replica_source import LEASE_HOLD_S, MAX_LEASE
from twin.services.server import (
    MESSAGE_OPTIONS,
    SERVER_OPTIONS,
    Forward,
    _Gate,
    add_channelz,
    add_port,
    channelz_server_ids,
)
from twin.util.background import spawn
from twin.util.child import on_parent_exit, write_ready
from twin.util.heap import release_heap, settle_heap
from twin.util.netaddr import host_of, is_loopback

log = logging.getLogger("twin.replica")

SUBMIT = "/twin.dcc.v1.DccService/SubmitServiceRequest"
REFRESH_S = 0.25  # how often the view of the fleet is refreshed
STALE_S = 1.0  # a view not refreshed for this long answers nothing itself
GIVE_UP_S = 5.0  # the primary unreachable this long: it is gone, and so is this replica
_TRANSPORT_HEADERS = {"user-agent", "content-type", "te", "host", "authority"}


class FleetView:
    """The fleet as this replica knows it, refreshed from the primary: the engine's HubReads
    (twin.engine.interface), answered from the shards' shared memory where this process can, and
    by raising Forward (the primary answers) where it cannot."""

    def __init__(self, stub: replica_pb2_grpc.ReplicaServiceStub, token: str):
        self.stub = stub
        self.metadata = (("authorization", f"Bearer {token}"),)
        self._config: FleetConfig | None = None  # the primary's, from the first refresh
        self.last_tick = -1
        self.final_before = 0
        self.plan = NetworkPlan()
        self.first_hub: list[int] = []
        self.readers: list[SharedReader | None] = []
        self.returned: dict[tuple[str, str], int] = {}  # leased admissions to hand back
        self.refreshed_at = float("-inf")
        self._refreshing: asyncio.Task | None = None
        self.latency: LatencyTable | None = None  # the primary's, as of the last refresh

    async def refresh(self) -> None:
        """Fetch the primary's state. Concurrent callers share one fetch, in a task of its own, so
        a caller that is cancelled (its client gave up) cancels nobody else's wait."""
        if self._refreshing is None or self._refreshing.done():
            # Logged if it fails, also when every caller has given up waiting on it.
            self._refreshing = spawn(self._fetch(), name="replica-refresh")
        await asyncio.shield(self._refreshing)

    async def _fetch(self) -> None:
        returned, self.returned = self.returned, {}
        try:
            st = await self.stub.GetReplicaState(replica_pb2.GetReplicaStateRequest(returned=[
                replica_pb2.Admissions(user_id=u, srv=s, count=n) for (u, s), n in returned.items()]),
                metadata=self.metadata, timeout=10)
        except BaseException:
            for key, n in returned.items():  # not handed back: send them with the next fetch
                self.returned[key] = self.returned.get(key, 0) + n
            raise
        self._apply(st)
        self.refreshed_at = time.monotonic()

    def _apply(self, st: replica_pb2.ReplicaState) -> None:
        if self._config is None:
            self._config = FleetConfig.from_dict(json.loads(st.config_json))
        self.plan = NetworkPlan.from_array(np.array(st.network_plan, np.int64).reshape(tuple(st.network_plan_shape)))
        readers: list[SharedReader | None] = []
        for i, seg in enumerate(st.segments):
            old = self.readers[i] if i < len(self.readers) else None
            if old is not None and old.descriptor.name == seg.name:
                readers.append(old)
                continue
            if old is not None:
                old.close()  # the shard restarted: its new segment has a new name (the primary removes the old)
            readers.append(_attach(seg))
        for old in self.readers[len(st.segments):]:
            if old is not None:
                old.close()
        self.readers = readers
        self.first_hub = list(st.shard_first_hub)
        self.last_tick, self.final_before = st.tick, st.plan_final_before
        self.latency = (LatencyTable.from_lists(st.latency.tick, list(st.latency.link_s), list(st.latency.cell_wait_s))
                        if st.HasField("latency") else None)

    async def call(self, hub: int, srv: str, fuel: str, record: bool) -> dict[str, Any]:
        """The service facts of `hub` from shared memory (the ShardBatcher's contract), or Forward."""
        if record or self._config is None or time.monotonic() - self.refreshed_at > STALE_S:
            # The whole record needs the firmware labels, which the primary holds; and a view not
            # refreshed lately may be behind a shard restart.
            raise Forward
        facts = self._facts(hub, srv, fuel)
        if facts is _BEHIND:
            try:
                await self.refresh()  # the row is a tick newer than the view here
            except Exception:
                raise Forward from None  # the primary answers, or says why it cannot
            facts = self._facts(hub, srv, fuel)
        if not isinstance(facts, dict):
            raise Forward
        return facts

    def _facts(self, hub: int, srv: str, fuel: str) -> dict[str, Any] | object | None:
        """The facts; None where this process cannot answer (no segment, a tick being written:
        the primary waits for it, an event loop here must not); _BEHIND if the view is older than
        the row."""
        i = bisect.bisect_right(self.first_hub, hub) - 1
        reader = self.readers[i] if 0 <= i < len(self.readers) else None
        if reader is None:
            return None
        got = reader.row(hub, wait_s=0.0)
        if got is None:
            return None
        row, tick = got
        # A row of a tick the schedule here is not final for, or one before the tick the fleet has
        # completed as known here (the view is behind a rewind or a restart), is not answered here.
        if tick >= self.final_before or tick < self.last_tick:
            return _BEHIND
        assert self._config is not None
        # The shared row reads like a one-hub HubState's columns (SharedReader.row).
        return service_facts(cast(Any, row), self._config, self.plan.up_by_area(max(tick, 0)), hub, tick, srv, fuel)

    # -- HubReads -----------------------------------------------------------------------------
    @property
    def config(self) -> FleetConfig:
        """The primary's fleet configuration; Forward before the first refresh."""
        if self._config is None:
            raise Forward
        return self._config

    @property
    def tick(self) -> int:
        """The next tick to run, as of the last refresh."""
        return self.last_tick + 1

    def shard_of(self, hub: int) -> int:
        """The shard holding `hub` (KeyError outside the fleet), from the primary's layout."""
        if self._config is None or not 0 <= hub < self._config.hubs or not self.first_hub:
            raise KeyError(hub)
        return bisect.bisect_right(self.first_hub, hub) - 1

    def hub(self, hub: int) -> dict[str, Any]:
        """A whole record needs the firmware labels the primary holds: it answers."""
        raise Forward

    def read(self, hub: int, srv: str, fuel: str) -> dict[str, Any]:
        """Reads are answered through `call` (with the admission and checks of the request);
        one asked for otherwise goes to the primary."""
        raise Forward

    def latency_table(self) -> LatencyTable | None:
        """The primary's response-time table as of the last refresh (the same figures, refreshed
        with the tick: a row newer than the view is re-checked before it is answered here)."""
        return self.latency

    # -- the rest of DccEngine: what only the primary's engine holds ------------------------------
    # A replica answers reads of reachable hubs from shared memory (`call`); everything that
    # changes the fleet or follows its operations and alerts is the primary's. These members are
    # the DCC's interface all the same, so the DCC logic runs on this view unchanged (no cast), and
    # whatever reaches them is forwarded to the primary.
    @property
    def clock_state(self) -> str:
        raise Forward

    @property
    def alert_log(self) -> AlertLog:
        raise Forward

    @property
    def shards(self) -> Sequence[Any]:
        raise Forward

    @property
    def local_reads(self) -> None:
        return None  # this process reads the shards' shared memory itself, in `call`

    def operation(self, name: str) -> dict[str, Any]:
        raise Forward

    def submit(self, event: dict[str, Any], *, relative_to: int | None = None,
               request: RequestKey | None = None) -> dict[str, Any]:
        raise Forward

    def operations_page(self, where: OperationFilter | None, start: int, limit: int
                        ) -> tuple[list[dict[str, Any]], int]:
        raise Forward

    def close(self) -> None:
        for r in self.readers:
            if r is not None:
                r.close()
        self.readers = []


_BEHIND = object()


def _attach(seg: replica_pb2.Segment) -> SharedReader | None:
    if not seg.name:
        return None
    d = Descriptor(name=seg.name, columns=tuple((c.name, c.dtype, c.byte_offset, c.length) for c in seg.columns),
                   offset=seg.offset, n_hubs=seg.hubs, node_id=seg.node_id)
    try:
        return SharedReader(d)
    except (FileNotFoundError, ValueError):  # on another machine, or gone already
        return None


class Leases:
    """Admissions leased from the primary's anomaly detector, per (user, SRV). A lease is sized by
    use: twice the last one if it ran out within its second, what was used of it if it expired."""

    def __init__(self, view: FleetView):
        self.view = view
        self.held: dict[tuple[str, str], tuple[int, float, int]] = {}  # key -> (left, expires, size)
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def admit(self, user_id: str, srv: str) -> bool:
        key = (user_id, srv)
        if self._take(key):
            return True
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if self._take(key):  # another call fetched a lease meanwhile
                return True
            now = time.monotonic()
            left, expires, size = self.held.pop(key, (0, 0.0, 0))
            if expires >= now:  # ran out within its hold
                want = min(MAX_LEASE, max(1, 2 * size))
            else:
                self._hand_back(key, left)
                want = max(1, size - left)
            asked = time.monotonic()
            # Shielded: a caller that gives up must not lose a grant the primary has counted.
            got = await asyncio.shield(self.view.stub.LeaseAdmissions(replica_pb2.LeaseAdmissionsRequest(
                user_id=user_id, srv=srv, count=want), metadata=self.view.metadata, timeout=5))
            if got.granted < 1:
                return False
            # The hold is counted from the asking, so it ends no later than the primary's.
            self.held[key] = (got.granted - 1, asked + LEASE_HOLD_S, got.granted)
            return True

    def _take(self, key: tuple[str, str]) -> bool:
        held = self.held.get(key)
        if held is None or held[0] < 1 or held[1] < time.monotonic():
            return False
        self.held[key] = (held[0] - 1, held[1], held[2])
        return True

    def _hand_back(self, key: tuple[str, str], count: int) -> None:
        if count:
            self.view.returned[key] = self.view.returned.get(key, 0) + count

    def expire(self) -> None:
        """Hand back what expired unused (sent with the next refresh); remember what was used."""
        now = time.monotonic()
        for key, (left, expires, size) in list(self.held.items()):
            if expires < now and left:
                self._hand_back(key, left)
                self.held[key] = (0, expires, size - left)


class ReplicaCore(DccCore):
    """The DCC's logic over this process's view of the fleet: reads of reachable hubs answered
    here, with the primary's checks; everything else raised as Forward for the primary."""

    def __init__(self, view: FleetView, leases: Leases):
        # The view serves only the read path (config, facts from shared memory); anything that
        # needs more of the engine is forwarded before it is reached. Request ids are checked in
        # this process's own ledger (a retry that reaches another process is answered afresh,
        # never applied twice: reads change nothing).
        super().__init__(view, users=tuple, digest=grpc_digest, facts=view, ledger=RequestLedger())
        self.leases = leases

    async def submit(self, identity: Identity, request: ServiceRequest) -> ServiceResponse:
        if request.srv not in READ_SRVS:
            raise Forward
        return await super().submit(identity, request)

    async def _admit_and_process(self, identity: Identity, request: ServiceRequest, key: RequestKey) -> ServiceResponse:
        checked = await self.check(identity, request)
        if not checked.record["reachable"] or checked.reading is None:
            raise Forward  # deferred: the primary keeps it and answers on StreamResponses
        latency, deadline = self.response_time(request, checked)
        if latency is not None and latency > deadline:
            raise Forward  # answered late: the primary acknowledges it and answers on StreamResponses
        try:
            admitted = await self.leases.admit(identity.user_id, checked.srv.srv)
        except grpc.aio.AioRpcError:
            raise Forward from None
        if not admitted:
            raise Forward  # past the threshold: the primary quarantines it
        return await self.process(identity, request, checked)


class Proxy:
    """Sends a call on to the primary as it came and answers with what the primary answered."""

    def __init__(self, channel: grpc.aio.Channel):
        self.channel = channel

    @staticmethod
    def _metadata(context) -> tuple[tuple[str, Any], ...]:
        # The caller's own metadata (its token above all); what the transport sets is set again.
        return tuple((k, v) for k, v in (context.invocation_metadata() or ())
                     if not k.startswith((":", "grpc-")) and k not in _TRANSPORT_HEADERS)

    async def unary(self, path: str, request: bytes, context) -> bytes:
        call = self.channel.unary_unary(path)
        try:
            return await call(request, metadata=self._metadata(context), timeout=context.time_remaining())
        except grpc.aio.AioRpcError as e:
            await _relay_error(e, context)
            raise  # unreachable: abort raises

    async def submit(self, path: str, request: dcc_pb2.SubmitServiceRequestRequest, context):
        """Forward a SubmitServiceRequest the local servicer already parsed (the Gate's forward)."""
        return dcc_pb2.SubmitServiceRequestResponse.FromString(
            await self.unary(path, request.SerializeToString(), context))

    async def stream(self, path: str, request: Any, context, *, streaming_request: bool):
        """A server stream, or with `streaming_request` a bidirectional one, relayed item by item."""
        kind = self.channel.stream_stream if streaming_request else self.channel.unary_stream
        call = kind(path)(request, metadata=self._metadata(context), timeout=context.time_remaining())
        try:
            async for item in call:
                yield item
        except grpc.aio.AioRpcError as e:
            await _relay_error(e, context)


async def _relay_error(e: grpc.aio.AioRpcError, context) -> None:
    """End the call with the primary's status, details and trailing metadata (rich error details)."""
    await context.abort(e.code(), e.details() or "", tuple(e.trailing_metadata() or ()))


def _public_services() -> list[Any]:
    from google.longrunning import operations_pb2
    from grpc_health.v1 import health_pb2
    from grpc_reflection.v1alpha import reflection_pb2

    from twin.generated.csp.v1 import csp_pb2
    from twin.generated.fleet.v1 import fleet_pb2

    # Not channelz: each process answers for its own counters.
    return [fleet_pb2.DESCRIPTOR.services_by_name["FleetService"], dcc_pb2.DESCRIPTOR.services_by_name["DccService"],
            csp_pb2.DESCRIPTOR.services_by_name["CspService"], operations_pb2.DESCRIPTOR.services_by_name["Operations"],
            health_pb2.DESCRIPTOR.services_by_name["Health"],
            reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]]


def _handlers(proxy: Proxy, submit: Any, gate: _Gate) -> list[grpc.GenericRpcHandler]:
    """Every public method: SubmitServiceRequest by `submit`, the rest sent on as bytes (streams
    counted as open on `gate`, so they do not count as waiting work against its cap)."""
    out = []
    for service in _public_services():
        methods = {}
        for m in service.methods:
            path = f"/{service.full_name}/{m.name}"
            if path == SUBMIT:
                methods[m.name] = grpc.unary_unary_rpc_method_handler(
                    submit, request_deserializer=dcc_pb2.SubmitServiceRequestRequest.FromString,
                    response_serializer=dcc_pb2.SubmitServiceRequestResponse.SerializeToString)
            elif m.client_streaming:
                methods[m.name] = grpc.stream_stream_rpc_method_handler(_relay(proxy, path, True, gate))
            elif m.server_streaming:
                methods[m.name] = grpc.unary_stream_rpc_method_handler(_relay(proxy, path, False, gate))
            else:
                methods[m.name] = grpc.unary_unary_rpc_method_handler(_relay_unary(proxy, path))
        out.append(grpc.method_handlers_generic_handler(service.full_name, methods))
    return out


def _relay(proxy: Proxy, path: str, streaming_request: bool, gate: _Gate) -> Any:
    # grpc.aio runs a streaming handler as a stream only if it is an async generator function.
    async def call(request, context):
        gate.streams += 1
        try:
            async for item in proxy.stream(path, request, context, streaming_request=streaming_request):
                yield item
        finally:
            gate.streams -= 1
    return call


def _relay_unary(proxy: Proxy, path: str) -> Any:
    async def call(request: bytes, context) -> bytes:
        return await proxy.unary(path, request, context)
    return call


class Replica:
    def __init__(self, primary: str, listen: str, home: Path, token: str, *, tls: tuple[Path, Path] | None = None,
                 max_in_flight: int = 256):
        self.primary, self.listen, self.home, self.token, self.tls = primary, listen, home, token, tls
        self.max_in_flight = max_in_flight

    async def serve(self, started: asyncio.Future | None = None) -> None:
        """Serve until cancelled; `started` gets (public port, own port) once it serves."""
        channel = grpc.aio.insecure_channel(self.primary, options=MESSAGE_OPTIONS)
        view = FleetView(replica_pb2_grpc.ReplicaServiceStub(channel), self.token)
        await view.refresh()
        users = UserStore.load(self.home / "users.json")
        proxy = Proxy(channel)
        leases = Leases(view)
        gate = _Gate(users, self.max_in_flight, forward=proxy.submit)
        dcc = gate.guard(DccServicer(view, None, core=ReplicaCore(view, leases)),
                         dcc_pb2.DESCRIPTOR.services_by_name["DccService"])
        known = channelz_server_ids()
        server = grpc.aio.server(options=[*SERVER_OPTIONS, ("grpc.so_reuseport", 1)])
        gate.watch(known)
        server.add_generic_rpc_handlers(_handlers(proxy, dcc.SubmitServiceRequest, gate))
        # This process's own counters: for operators it knows, never sent on (a gate without forward).
        add_channelz(server, _Gate(users, self.max_in_flight, metrics=gate.metrics))
        public_port = add_port(server, self.listen, self.tls)
        # Its own loopback port too, so this process alone can be asked (its channelz counters).
        own_port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        settle_heap()  # what this process keeps for its life is built: full collections skip it
        if started is not None:
            started.set_result((public_port, own_port))
        try:
            while True:
                await asyncio.sleep(REFRESH_S)
                leases.expire()
                try:
                    await view.refresh()
                except Exception as e:  # any failure: retried, and reads go to the primary meanwhile
                    if time.monotonic() - view.refreshed_at > GIVE_UP_S:
                        log.warning("the primary has not answered for %.0f s; stopping", GIVE_UP_S)
                        break
                    log.warning("refreshing from the primary failed: %s", e)
        finally:
            await server.stop(2.0)
            view.close()
            await channel.close()
            release_heap()  # (as `twin up` does: frozen objects outliving finalisation print leak reports)


def _check_args(args: argparse.Namespace, token: str) -> str:
    """What is wrong with the arguments ('' if nothing): the same rules as the primary's."""
    if not token:
        return "TWIN_REPLICA_TOKEN is not set"
    if bool(args.tls_cert) != bool(args.tls_key):
        return "--tls-cert and --tls-key go together"
    if not args.tls_cert and not is_loopback(host_of(args.listen)):
        return f"refusing to serve plaintext on {host_of(args.listen)}: beyond loopback the API needs TLS"
    if not is_loopback(host_of(args.primary)):
        # Calls go to the primary in plaintext, tokens and all: only ever over loopback.
        return f"--primary must be on this machine's loopback, got {args.primary}"
    return ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m twin.services.replica", description="an API replica process")
    p.add_argument("--primary", required=True, help="the primary's internal loopback address")
    p.add_argument("--listen", required=True, help="the public API address to share")
    p.add_argument("--home", default=".twin", help="where users.json is")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ready-file", help="once serving, write there (JSON) the public port and this process's own "
                                        "loopback port (how twin up learns that it is ready, and where)")
    args = p.parse_args(argv)
    token = os.environ.get("TWIN_REPLICA_TOKEN", "")
    problem = _check_args(args, token)
    if problem:
        print(f"replica: {problem}", file=sys.stderr)
        return 2
    tls = (Path(args.tls_cert), Path(args.tls_key)) if args.tls_cert else None
    replica = Replica(args.primary, args.listen, Path(args.home), token, tls=tls)

    async def run() -> None:
        started = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(replica.serve(started))
        # SIGTERM (twin up stopping) stops serving with a grace period, as the primary does.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        if args.exit_with_parent:
            loop = asyncio.get_running_loop()

            def stop() -> None:
                loop.call_soon_threadsafe(task.cancel)

            on_parent_exit(stop)
        await asyncio.wait({started, task}, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            task.result()  # it failed before serving: raise its error
            return
        public_port, own_port = started.result()
        if args.ready_file:
            write_ready(Path(args.ready_file), public_port=public_port, own_port=own_port)
        else:
            host = args.listen.rpartition(":")[0]
            print(f"replica serving on {host}:{public_port} (own port 127.0.0.1:{own_port})", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())


if TYPE_CHECKING:
    from twin.engine.interface import HubReads

    # The type checker proves the view is the engine's read interface, as the DCC servicer needs.
    _conforms: type[HubReads] = FleetView
    _serves_the_dcc: type[DccEngine] = FleetView
