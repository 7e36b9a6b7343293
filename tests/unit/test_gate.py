"""The API gate's view of the server's queue (gRPC core's calls waiting plus those in handlers)."""

from __future__ import annotations

import json

from grpc._cython import cygrpc

import twin.services.server as server
from twin.services.identity import UserStore


def test_the_gate_reads_channelz_every_50_ms_while_the_queue_is_short_and_every_5_ms_past_half_its_cap(monkeypatch):
    reads: list[int] = []
    waiting = {"calls": 0}

    def channelz_get_server(server_id: int) -> str:
        reads.append(server_id)
        return json.dumps({"server": {"data": {"callsStarted": str(waiting["calls"]), "callsSucceeded": "0",
                                               "callsFailed": "0"}}})

    now = [1000.0]
    monkeypatch.setattr(cygrpc, "channelz_get_server", channelz_get_server)
    monkeypatch.setattr(server.time, "monotonic", lambda: now[0])
    gate = server._Gate(UserStore(), max_in_flight=100)
    gate._channelz_id = 7

    assert gate.backlog() == 0 and reads == [7]
    waiting["calls"] = 80
    now[0] += 0.045
    assert gate.backlog() == 0 and len(reads) == 1  # under half the cap: the reading of 45 ms ago stands
    now[0] += 0.006
    assert gate.backlog() == 80 and len(reads) == 2  # 51 ms on: read again
    assert gate.busy() is None
    waiting["calls"] = 120
    now[0] += 0.0055
    assert gate.backlog() == 120 and len(reads) == 3  # past half the cap: read every 5 ms
    error = gate.busy()
    assert error is not None and "120 calls waiting or in flight (limit 100)" in error.message
    now[0] += 0.004
    waiting["calls"] = 10
    assert gate.backlog() == 120 and len(reads) == 3  # 4 ms on: not yet
    now[0] += 0.0015
    assert gate.backlog() == 10 and len(reads) == 4
