"""The primary's side of API replicas: the internal ReplicaService that tells a replica process
what it needs to answer reads from the shards' shared memory (the tick, the network schedule, the
segments, the configuration) and leases it admissions from the anomaly detector's window.

Served to the holder of the replica token only, which `twin up` hands to the replicas it starts."""

from __future__ import annotations

import asyncio
import hmac
import json

import grpc

from twin.engine.interface import FleetEngine
from twin.generated.replica.v1 import replica_pb2, replica_pb2_grpc
from twin.services.anomaly import AnomalyDetector
from twin.services.identity import bearer_token
from twin.util.netaddr import host_of, is_loopback

MAX_LEASE = 1024  # admissions per lease: a replica asks for about a second's worth
LEASE_HOLD_S = 1.0  # a replica uses leased admissions within this long or hands them back


class ReplicaServicer(replica_pb2_grpc.ReplicaServiceServicer):
    def __init__(self, supervisor: FleetEngine, anomaly: AnomalyDetector, token: str):
        self.sup = supervisor
        self.anomaly = anomaly
        self._token = token.encode()

    async def _check(self, context) -> None:
        # The replicas are on this machine: a call from anywhere else is refused whatever it
        # carries, and a local one needs the token `twin up` handed them.
        if not is_loopback(peer_host(context.peer())) or not hmac.compare_digest(
                bearer_token(context).encode(), self._token):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "the replica service is for the twin's own API processes")

    async def GetReplicaState(self, request, context):
        await self._check(context)
        for r in request.returned:
            self.anomaly.unlease(r.user_id, r.srv, max(r.count, 0))
        # The supervisor's plan lock can be held through a census or a checkpoint: never wait for
        # it on the event loop every call of this process shares.
        return await asyncio.to_thread(replica_state, self.sup)

    async def LeaseAdmissions(self, request, context):
        await self._check(context)
        if not request.user_id or not request.srv or request.count < 1:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "user_id, srv and a positive count are needed")
        granted = self.anomaly.lease(request.user_id, request.srv, min(request.count, MAX_LEASE), LEASE_HOLD_S)
        return replica_pb2.LeaseAdmissionsResponse(granted=granted)


def peer_host(peer: str) -> str:
    """The host of a grpc peer string ('ipv4:127.0.0.1:5000', 'ipv6:[::1]:5000', 'unix:...')."""
    kind, _, rest = peer.partition(":")
    return host_of(rest) if kind in ("ipv4", "ipv6") else ""


def replica_state(sup: FleetEngine) -> replica_pb2.ReplicaState:
    """The supervisor's state as a replica needs it (blocking: run it off the event loop)."""
    tick, plan, final_before, first_hubs = sup.schedule_view()
    segments = []
    local = sup.local_reads
    for reader in (local.readers_snapshot() if local is not None else [None] * len(first_hubs)):
        if reader is None:
            segments.append(replica_pb2.Segment())
            continue
        d = reader.descriptor
        segments.append(replica_pb2.Segment(
            name=d.name, offset=d.offset, hubs=d.n_hubs, node_id=d.node_id,
            columns=[replica_pb2.Column(name=n, dtype=dt, byte_offset=off, length=length)
                     for n, dt, off, length in d.columns]))
    st = replica_pb2.ReplicaState(tick=tick, plan_final_before=final_before, network_plan=plan.ravel().tolist(),
                                  network_plan_shape=list(plan.shape), segments=segments,
                                  config_json=json.dumps(sup.config.to_dict()), shard_first_hub=first_hubs)
    table = sup.latency_table()
    if table is not None:
        t, link_s, cell_wait_s = table.to_lists()
        st.latency.CopyFrom(replica_pb2.ServiceLatency(tick=t, link_s=link_s, cell_wait_s=cell_wait_s))
    return st
