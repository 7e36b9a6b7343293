"""API replicas: another process answering reads from the shards' shared memory, and sending the
rest on to the primary; real Ray, real gRPC, a real second process."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_channelz.v1 import channelz_pb2, channelz_pb2_grpc

from tests.support import run_dir
from twin.client import TwinClient
from twin.engine.supervisor import FleetSupervisor
from twin.generated.dcc.v1 import dcc_pb2
from twin.generated.fleet.v1 import fleet_pb2
from twin.launcher.process import start_child
from twin.model.catalog import supplier_code
from twin.model.config import FleetConfig
from twin.model.readings import READ_SRVS
from twin.services.anomaly import AnomalyDetector
from twin.services.errors import bad_request_fields
from twin.services.identity import UserStore
from twin.services.server import ApiServer

pytestmark = pytest.mark.usefixtures("ray_session")


class Pair:
    """A primary (engine + API) and one replica process on its own port. Not the session's shared
    stack: the primary needs a replica token and per-user rate thresholds at start, and the replica
    process reads the shards' shared memory."""

    def __init__(self, tmp: Path):
        self.sup = FleetSupervisor(FleetConfig(hubs=20_000, seed=5, block_size=1024), shards=2,
                                   run_dir=run_dir("replica"))
        self.sup.step(2)
        recs, _ = self.sup.list_hubs({"reachable": True}, 0, 400)
        self.hub = next(r for r in recs if r["gas_supplier"] == r["supplier"])
        self.hubs = [r for r in recs if r["supplier"] == self.hub["supplier"]][:20]
        code = supplier_code(self.hub["supplier"])
        self.users = UserStore()
        self.tokens = {}
        for user, role, party in (("reader", "IS", code), ("burst", "IS", code), ("other", "IS", 1 if code != 1 else 2),
                                  ("operator", "OPERATOR", 0)):
            _, self.tokens[user], _ = self.users.issue_user(user, role, party, keys_dir=tmp / "keys")
        self.users.save(tmp / "users.json")
        self.home = tmp
        self.anomaly = AnomalyDetector(default_threshold=100_000, user_thresholds={("burst", "4.1.1"): 30})
        token = secrets.token_urlsafe(24)
        self.api = ApiServer(self.sup, self.users, port=0, anomaly=self.anomaly, replica_token=token)
        self.api.start()
        # Where it listens, from the readiness file it writes once serving (as twin up learns it).
        child = start_child("the replica", [sys.executable, "-m", "twin.services.replica", "--primary",
                                            f"127.0.0.1:{self.api.internal_port}", "--listen", "127.0.0.1:0",
                                            "--home", str(tmp)],
                            ready_file=tmp / "replica-ready.json", env={**os.environ, "TWIN_REPLICA_TOKEN": token})
        self.proc = child.proc
        self.replica = f"127.0.0.1:{child.ready['own_port']}"

    def client(self, user: str, where: str) -> TwinClient:
        return TwinClient(self.replica if where == "replica" else self.api.address, token=self.tokens.get(user, user))

    def served(self, address: str) -> int:
        """Calls answered OK by the process listening on `address` (its channelz counters)."""
        with grpc.insecure_channel(address) as ch:
            servers = channelz_pb2_grpc.ChannelzStub(ch).GetServers(
                channelz_pb2.GetServersRequest(), metadata=(("authorization", f"Bearer {self.tokens['operator']}"),))
        return sum(s.data.calls_succeeded for s in servers.server)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.api.stop(1.0)
        self.sup.shutdown()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    p = Pair(tmp_path_factory.mktemp("replica"))
    yield p
    p.close()


def _answer(r: dcc_pb2.SubmitServiceRequestResponse) -> tuple:
    # The latency too: a replica looks it up in the primary's response-time table (twin.engine.latency).
    return (r.response.status, r.response.csp, r.response.time.seconds, dict(r.response.result),
            r.response.latency.seconds, r.response.latency.nanos)


def test_reads_through_a_replica_equal_the_primarys_and_are_answered_there(pair):
    with pair.client("reader", "replica") as rep, pair.client("reader", "primary") as pri:
        primary_before, replica_before = pair.served(pair.api.address), pair.served(pair.replica)
        n = 0
        for h in pair.hubs:
            target = f"hubs/{h['device_id']}"
            for srv in READ_SRVS:
                for fuel in ("electricity", "gas") if h["gas_supplier"] == h["supplier"] else ("electricity",):
                    a = rep.submit(srv, target, {"fuel": fuel}, request_id=f"r{n}")
                    b = pri.submit(srv, target, {"fuel": fuel}, request_id=f"r{n}")
                    assert a.response.status == dcc_pb2.RESPONSE_STATUS_COMPLETED
                    assert _answer(a) == _answer(b) and a.response.request_id == f"r{n}"
                    n += 1
        # The primary answered the reads sent to it, its own channelz calls and the replica's
        # refreshes and leases: far fewer than the reads the replica took.
        primary_calls = pair.served(pair.api.address) - primary_before
        assert n >= 80 and primary_calls < n + n // 2
        assert pair.served(pair.replica) - replica_before >= n  # the replica's own counters
        # A tick later both answer from the new tick.
        pair.sup.step(1)
        target = f"hubs/{pair.hub['device_id']}"
        assert _answer(rep.submit("4.1.1", target)) == _answer(pri.submit("4.1.1", target))


def test_what_a_replica_does_not_answer_reaches_the_primary(pair):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    target = f"hubs/{pair.hub['device_id']}"
    with pair.client("operator", "replica") as op:
        hub = op.get_hub(target)  # FleetService, sent on
        assert hub.name == target
        clock = op.fleet.GetClock(fleet_pb2.GetClockRequest(), metadata=op.metadata)
        assert clock.tick == pair.sup.tick
        # A server stream, relayed: the backlog of tick summaries, then cancelled by the client.
        stream = op.fleet.WatchFleet(fleet_pb2.WatchFleetRequest(backlog=2), metadata=op.metadata)
        ticks = [next(stream).tick for _ in range(2)]
        stream.cancel()
        assert ticks == [pair.sup.tick - 2, pair.sup.tick - 1]
        # Health (unary) and reflection (a bidirectional stream), relayed.
        health = health_pb2_grpc.HealthStub(op.channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        out = list(reflection_pb2_grpc.ServerReflectionStub(op.channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        assert "twin.dcc.v1.DccService" in {x.name for x in out[0].list_services_response.service}
    with pair.client("reader", "replica") as rep:
        # A device-changing request: journaled by the primary as an Operation.
        ops = len(pair.sup.operations())
        topup = rep.submit("2.2", target, {"amount_pence": 100})
        assert topup.response.status == dcc_pb2.RESPONSE_STATUS_ACKNOWLEDGED and topup.response.operation
        assert len(pair.sup.operations()) == ops + 1
        # Bad input is refused with the field named, as the primary would.
        with pytest.raises(grpc.RpcError) as e:
            rep.submit("4.1.1", "hubs/not-a-hub")
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and bad_request_fields(e.value) == ["target"]
    with pair.client("other", "replica") as other, pytest.raises(grpc.RpcError) as e:
        other.submit("4.1.1", target)  # another supplier's premises
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pair.client("nobody", "replica") as nobody, pytest.raises(grpc.RpcError) as e:
        nobody.submit("4.1.1", target)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_read_beyond_its_deadline_is_deferred_by_the_primary(pair):
    """A replica answers a read only within the caller's deadline; one the network answers later
    goes to the primary, which acknowledges it and keeps it for StreamResponses."""
    hub = pair.hubs[1]
    with pair.client("reader", "replica") as rep:
        ok = rep.submit("4.1.1", f"hubs/{hub['device_id']}")
        assert ok.response.status == dcc_pb2.RESPONSE_STATUS_COMPLETED and ok.response.latency.seconds >= 3
        ack = rep.submit("4.1.1", f"hubs/{hub['device_id']}", request_id="late-through-replica", response_deadline_s=0)
    assert ack.response.status == dcc_pb2.RESPONSE_STATUS_ACKNOWLEDGED
    assert pair.api.dcc.core.late.requests().count("late-through-replica") == 1
    pair.sup.step(1)  # answered on the primary's response log at the next tick


def test_a_dark_hubs_read_is_deferred_by_the_primary(pair):
    with pair.client("operator", "primary") as op:
        op.create_event(power_outage=fleet_pb2.PowerOutage(area=pair.hub["area"]["name"], fraction=1.0,
                                                            duration_min=60))
    pair.sup.step(1)
    assert not pair.sup.hub(pair.hub["hub"])["reachable"]
    with pair.client("reader", "replica") as rep:
        ack = rep.submit("4.1.1", f"hubs/{pair.hub['device_id']}")
    assert ack.response.status == dcc_pb2.RESPONSE_STATUS_ACKNOWLEDGED
    pair.sup.step(3)  # the power is back


def test_thresholds_hold_across_processes(pair):
    import time

    reachable = [h for h in pair.hubs if pair.sup.hub(h["hub"])["reachable"]]
    target = f"hubs/{reachable[0]['device_id']}"

    def send(client: TwinClient) -> str:
        try:
            client.submit("4.1.1", target)
            return "ok"
        except grpc.RpcError as e:
            return e.code().name

    with pair.client("burst", "replica") as rep, pair.client("burst", "primary") as pri:
        first = [send(rep if i % 4 else pri) for i in range(40)]
        # Never more than the threshold (30 in the window) answered, whichever process answered;
        # the rest quarantined by the primary. A replica's leased admissions that it has not used
        # yet count until it hands them back (within about a second), so some may be refused early.
        assert first.count("ok") <= 30 and set(first) == {"ok", "RESOURCE_EXHAUSTED"}
        assert len(pair.anomaly.list("burst")) == first.count("RESOURCE_EXHAUSTED")
        time.sleep(2.0)  # unused leases are back
        second = []
        while len(second) < 40 and (not second or second[-1] == "ok"):
            second.append(send(rep))
    # Exactly the threshold in all.
    assert first.count("ok") + second.count("ok") == 30 and second[-1] == "RESOURCE_EXHAUSTED"


def test_a_replica_follows_a_restarted_shard(pair):
    import time

    hub = pair.hubs[0]
    target = f"hubs/{hub['device_id']}"
    shard = pair.sup.shard_of(hub["hub"])
    old = pair.sup.local_reads.readers_snapshot()[shard].descriptor.name
    pid = ray_pid(pair.sup.shards[shard])
    os.kill(pid, 9)
    pair.sup.step(1)  # the supervisor restarts the shard, which shares its columns anew
    new = pair.sup.local_reads.readers_snapshot()[shard]
    assert new is not None and new.descriptor.name != old
    time.sleep(0.6)  # the replica's next refreshes
    with pair.client("reader", "replica") as rep, pair.client("reader", "primary") as pri:
        before = pair.served(pair.api.address)
        answers = [rep.submit("4.1.1", target) for _ in range(20)]
        assert all(_answer(a) == _answer(pri.submit("4.1.1", target)) for a in answers)
        # Answered by the replica from the new segment: the primary saw its own 20 and a few refreshes.
        assert pair.served(pair.api.address) - before < 35


def ray_pid(actor) -> int:
    import ray

    return ray.get(actor.info.remote())["pid"]


def test_a_replica_serves_tls_where_the_primary_does(pair, tmp_path):
    from twin.services.bootstrap import make_certs

    ca, cert, key = make_certs(tmp_path / "certs", ["127.0.0.1", "localhost"])
    token = secrets.token_urlsafe(24)
    primary = ApiServer(pair.sup, pair.users, port=0, tls=(cert, key), anomaly=pair.anomaly, replica_token=token)
    primary.start()
    child = start_child("the replica", [sys.executable, "-m", "twin.services.replica", "--primary",
                                        f"127.0.0.1:{primary.internal_port}", "--listen", "127.0.0.1:0", "--home",
                                        str(pair.home), "--tls-cert", str(cert), "--tls-key", str(key)],
                        ready_file=tmp_path / "replica-ready.json", env={**os.environ, "TWIN_REPLICA_TOKEN": token})
    proc = child.proc
    try:
        target = f"hubs/{pair.hubs[1]['device_id']}"
        for address in (f"127.0.0.1:{child.ready['public_port']}", primary.address):
            with TwinClient(address, token=pair.tokens["reader"], ca_cert=ca) as c:
                r = c.submit("4.1.1", target)
            assert r.response.status == dcc_pb2.RESPONSE_STATUS_COMPLETED
            with TwinClient(address, token=pair.tokens["reader"]) as plain, pytest.raises(grpc.RpcError) as e:
                plain.submit("4.1.1", target)  # plaintext to a TLS port
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        primary.stop(1.0)
    # The replica refuses plaintext beyond loopback, and a primary that is not on loopback.
    bad = subprocess.run([sys.executable, "-m", "twin.services.replica", "--primary", "10.1.2.3:5000",
                          "--listen", "0.0.0.0:0", "--home", str(pair.home)],
                         env={**os.environ, "TWIN_REPLICA_TOKEN": token}, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "plaintext" in bad.stderr
