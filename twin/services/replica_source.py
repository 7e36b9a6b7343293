"""The primary's side of API replicas: the internal ReplicaService that tells a replica process
what it needs to answer reads from the shards' shared memory (the tick, the network schedule, the
segments, the configuration) and leases it admissions from the anomaly detector's window.

Served to the holder of the replica token only, which `twin up` hands to the replicas it starts."""

from __future__ import annotations

import hmac
import json
from typing import Any

import grpc

from twin.replica.v1 import replica_pb2, replica_pb2_grpc
from twin.services.anomaly import AnomalyDetector

MAX_LEASE = 1024  # admissions per lease: a replica asks for about a second's worth


class ReplicaServicer(replica_pb2_grpc.ReplicaServiceServicer):
    def __init__(self, supervisor: Any, anomaly: AnomalyDetector, token: str):
        self.sup = supervisor
        self.anomaly = anomaly
        self._token = token.encode()

    async def _check(self, context) -> None:
        given = ""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and value[:7].lower() == "bearer ":
                given = value[7:].strip()
        if not hmac.compare_digest(given.encode(), self._token):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "the replica service is for the twin's own API processes")

    async def GetReplicaState(self, request, context):
        await self._check(context)
        for r in request.returned:
            self.anomaly.unlease(r.user_id, r.srv, max(r.count, 0))
        return replica_state(self.sup)

    async def LeaseAdmissions(self, request, context):
        await self._check(context)
        if not request.user_id or not request.srv or request.count < 1:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "user_id, srv and a positive count are needed")
        granted = self.anomaly.lease(request.user_id, request.srv, min(request.count, MAX_LEASE))
        return replica_pb2.LeaseAdmissionsResponse(granted=granted)


def replica_state(sup: Any) -> replica_pb2.ReplicaState:
    """The supervisor's state as a replica needs it. The network schedule is final for every tick
    before `plan_final_before`: a command accepted later applies at that tick or after."""
    with sup._plan_lock:
        plan = sup.planner.network.to_array()
        final_before = sup._next_submit
    segments = []
    local = sup.local_reads
    for reader in (local.readers_snapshot() if local is not None else [None] * len(sup.shards)):
        if reader is None:
            segments.append(replica_pb2.Segment())
            continue
        d = reader.descriptor
        segments.append(replica_pb2.Segment(
            name=d.name, offset=d.offset, hubs=d.n_hubs, node_id=d.node_id,
            columns=[replica_pb2.Column(name=n, dtype=dt, byte_offset=off, length=length)
                     for n, dt, off, length in d.columns]))
    return replica_pb2.ReplicaState(tick=sup.tick - 1, plan_final_before=final_before,
                                    network_plan=plan.ravel().tolist(), network_plan_shape=list(plan.shape),
                                    segments=segments, config_json=json.dumps(sup.config.to_dict()),
                                    shard_first_hub=[int(b) * sup.config.block_size for b in sup._starts])
