"""Where API users see the network's capacity, on the real stack (engine on local Ray, gRPC on
localhost): a read's latency and deadline (SubmitServiceRequest, StreamResponses), the tick
summaries of WatchFleet and the CSP service's load per link and class.

The run's South links are built at 5% of their designed capacity: its 2G and 3G queues grow from
the first tick, while the North and Central carry their load as designed."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from google.protobuf import json_format

from tests.support import Api
from twin.generated.dcc.v1 import dcc_pb2
from twin.model.capacity import LINK_NAMES
from twin.model.catalog import CLASS_LABEL, Csp, TrafficClass, WanTech, supplier_code
from twin.model.config import FleetConfig
from twin.model.params import CapacityParams, ModelParams
from twin.services.errors import bad_request_fields

pytestmark = pytest.mark.usefixtures("ray_session")
SOUTH_LINKS = ("SOUTH/G2", "SOUTH/G3", "SOUTH/G4", "SOUTH/VWAN")
CAP = CapacityParams(link_capacity_factor={name: 0.05 for name in SOUTH_LINKS})


@pytest.fixture(scope="module")
def capapi(tmp_path_factory: pytest.TempPathFactory):
    """Its own stack: the congested South needs its own parameters, and the tests step its clock."""
    tmp = tmp_path_factory.mktemp("capacity-api")
    a = Api(tmp, config=FleetConfig(hubs=20_000, seed=9, block_size=1024, params=ModelParams(capacity=CAP)),
            cpus_per_shard=0.0)
    yield a
    a.close()


def _premises(a: Api, region: Csp, wan: WanTech, user_id: str) -> dict:
    """A reachable premises on (region, wan), and an import supplier user of it named `user_id`."""
    recs, _ = a.sup.list_hubs({"region": int(region), "wan": int(wan), "reachable": True}, 0, 200)
    rec = next(r for r in recs if r["smets"] == "SMETS2")
    if user_id not in a.tokens:
        a.user(user_id, "IS", supplier_code(rec["supplier"]))
    return rec


def _model_latency(a: Api, rec: dict) -> float:
    """What the engine's capacity model says a read of `rec` takes now."""
    return a.read_latency_s(rec)


def _seconds(d) -> float:
    return d.seconds + d.nanos / 1e9


def test_an_uncongested_read_answers_at_once_with_transfer_plus_device_time(capapi):
    a = capapi
    rec = _premises(a, Csp.CENTRAL, WanTech.G3, "central-is")
    with a.client("central-is") as c:
        resp = c.submit("4.1.1", f"hubs/{rec['device_id']}").response
    assert resp.status == dcc_pb2.RESPONSE_STATUS_COMPLETED
    want = CAP.message_bytes["ON_DEMAND_READ"] / CAP.wan_bytes_per_s["G3"] + CAP.device_time_s["ON_DEMAND"]
    assert resp.HasField("latency") and _seconds(resp.latency) == pytest.approx(want, abs=1e-9)
    assert json_format.MessageToDict(resp.result) == a.sup.read(rec["hub"], "4.1.1", "elec")


def test_a_read_to_a_congested_region_beyond_its_deadline_is_answered_on_stream_responses(capapi):
    """The South's 2G queue: the read is acknowledged, and StreamResponses carries its answer,
    COMPLETED with the latency the model gave it, once the simulated clock passes it; a rewind
    in between does not lose it, and it comes once."""
    a = capapi
    rec = _premises(a, Csp.SOUTH, WanTech.G2, "south-is")
    latency = _model_latency(a, rec)
    target = CAP.target_response_s["ON_DEMAND"]
    assert latency > target
    user = "south-is"
    log = a.server.dcc.core.responses.of(user)
    got: list[dcc_pb2.ServiceResponse] = []
    opened = threading.Event()
    with a.client(user) as c:
        stream = c.responses(start_after_position=log.last)

        def read() -> None:
            opened.set()
            try:
                for r in stream:
                    got.append(r)
            except grpc.RpcError:
                pass  # cancelled at the end

        t = threading.Thread(target=read, daemon=True)
        t.start()
        opened.wait(10)
        sent_tick = a.sup.tick
        ack = c.submit("4.1.1", f"hubs/{rec['device_id']}", request_id="late-read-1").response
        assert ack.status == dcc_pb2.RESPONSE_STATUS_ACKNOWLEDGED and not ack.HasField("latency")
        assert "StreamResponses" in ack.detail
        before = log.last
        due = a.sup.config.time_of(sent_tick).timestamp() + latency
        # A rewind behind the acknowledgement: the answer still comes when the clock passes it.
        a.sup.rewind(sent_tick - 1)
        for _ in range(96):
            a.sup.step(1)
            if a.sup.config.time_of(a.sup.tick).timestamp() < due:
                assert log.last == before, "answered before the network did"
            else:
                break
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        # Some more ticks: nothing more comes for it.
        a.sup.step(2)
        time.sleep(0.5)
        stream.cancel()
        t.join(10)
        retry = c.submit("4.1.1", f"hubs/{rec['device_id']}", request_id="late-read-1").response
    mine = [r for r in got if r.request_id == "late-read-1"]
    assert len(mine) == 1, got
    late = mine[0]
    assert late.status == dcc_pb2.RESPONSE_STATUS_COMPLETED and late.srv == "4.1.1" and late.csp == "South"
    assert _seconds(late.latency) == pytest.approx(latency, abs=1e-6) and _seconds(late.latency) > target
    sent_at = a.sup.config.time_of(sent_tick)
    assert late.time.ToDatetime().timestamp() == pytest.approx(sent_at.timestamp() + latency, abs=1e-3)
    assert dict(late.result)  # the reading
    assert retry == late  # a retry now gets the answer the stream carried


def test_a_deadline_the_network_meets_is_answered_at_once_with_its_latency(capapi):
    a = capapi
    rec = _premises(a, Csp.SOUTH, WanTech.G2, "south-is")
    latency = _model_latency(a, rec)
    with a.client("south-is") as c:
        resp = c.submit("4.1.1", f"hubs/{rec['device_id']}", response_deadline_s=latency + 60).response
    assert resp.status == dcc_pb2.RESPONSE_STATUS_COMPLETED
    assert _seconds(resp.latency) == pytest.approx(latency, abs=1e-6)


@pytest.mark.parametrize(("seconds", "nanos"), [(-1, 0), (0, -5), (0, 1_000_000_000), (2 * 86_400 + 1, 0),
                                                 (10**11, 0)])
def test_a_bad_response_deadline_is_invalid_argument_naming_it(capapi, seconds, nanos):
    a = capapi
    rec = _premises(a, Csp.CENTRAL, WanTech.G3, "central-is")
    with a.client("central-is") as c:
        req = dcc_pb2.SubmitServiceRequestRequest(srv="4.1.1", target=f"hubs/{rec['device_id']}",
                                                  request_id=f"bad-deadline-{seconds}-{nanos}")
        req.response_deadline.seconds, req.response_deadline.nanos = seconds, nanos
        with pytest.raises(grpc.RpcError) as e:
            c.dcc.SubmitServiceRequest(req, **c._kw())
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(e.value) == ["response_deadline"]
    # Refused before it was accepted: the id is free again, and nothing was deferred.
    assert req.request_id not in a.server.dcc.core.late.requests()


def test_watch_fleet_carries_the_network_capacity_of_each_tick(capapi):
    a = capapi
    a.sup.step(1)
    s = a.sup.history[-1]
    r = s.capacity
    assert r is not None
    with a.client("operator") as c:
        msg = next(iter(c.watch_fleet(start_after_tick=s.tick - 1)))
    assert msg.tick == s.tick
    cap = msg.capacity
    links = {(x.csp, x.technology): x for x in cap.links}
    modelled = [i for i in range(len(LINK_NAMES)) if r.link_capacity[i] > 0]
    assert len(links) == len(modelled) == 10
    for i in modelled:
        csp, tech = LINK_NAMES[i].split("/")
        x = links[(csp.title(), tech)]
        assert x.capacity_per_s == r.link_capacity[i] > 0
        assert x.utilisation == r.link_utilisation[i] and x.backlog == r.link_backlog[i]
    assert links[("South", "G2")].utilisation > 1 > links[("Central", "G2")].utilisation  # the congested link
    classes = {(x.csp, x.traffic_class): x for x in cap.classes}
    assert len(classes) == 3 * len(TrafficClass)
    for csp in Csp:
        for k in TrafficClass:
            x = classes[(csp.name.title(), CLASS_LABEL[k])]
            assert x.messages == r.messages[csp, k] and x.latency_p99_s == r.latency_p99[csp, k]
            assert x.within_target == r.within_target[csp, k] and x.backlog == r.backlog[csp, k]
            assert x.target_response_s == CAP.target_response_s[k.name]
    south = classes[("South", "on-demand")]
    assert south.latency_p99_s > south.target_response_s and south.within_target < 1
    assert [x.csp for x in cap.alerts] == ["North", "Central", "South"]
    assert cap.dsp_utilisation == r.dsp_utilisation > 0


def test_the_csp_service_shows_each_links_capacity_and_each_class_service(capapi):
    a = capapi
    a.sup.step(1)
    recent = list(a.sup.history)[-3:]
    with a.client("operator") as c:
        load = c.load("South", ticks=3)
    assert [t.tick for t in load.ticks] == [s.tick for s in recent]
    for t, s in zip(load.ticks, recent, strict=True):
        r = s.capacity
        assert [x.technology for x in t.links] == ["G2", "G3", "G4", "VWAN"]
        for x in t.links:
            i = LINK_NAMES.index(f"SOUTH/{x.technology}")
            assert x.capacity_per_s == r.link_capacity[i] > 0
            assert x.utilisation == r.link_utilisation[i] and x.backlog == r.link_backlog[i]
        assert [x.traffic_class for x in t.classes] == [CLASS_LABEL[k] for k in TrafficClass]
        for x, k in zip(t.classes, TrafficClass, strict=True):
            assert x.latency_p50_s == r.latency_p50[Csp.SOUTH, k] and x.within_target == r.within_target[Csp.SOUTH, k]
            assert x.oldest_age_s == r.oldest_age_s[Csp.SOUTH, k]
        assert t.alerts.throttled == r.alerts_throttled[Csp.SOUTH] and t.alerts.failed == r.alerts_failed[Csp.SOUTH]
    # The South's 2G, at 5% of its design, is over its capacity; its backlog grows.
    assert load.ticks[-1].links[0].utilisation > 1 and load.ticks[-1].links[0].backlog > 0
    assert not any(t.HasField("base_stations") for t in load.ticks)  # the North's only
    with a.client("operator") as c:
        north = c.load("North", ticks=1).ticks[-1]
    r = recent[-1].capacity
    assert [x.technology for x in north.links] == ["LRR", "VWAN"]
    assert (north.base_stations.peak_utilisation, north.base_stations.congested, north.base_stations.backlog) == (
        r.bs_peak_utilisation, r.bs_congested, r.bs_backlog) and north.base_stations.peak_utilisation > 0


def test_tick_summaries_survive_the_replay_path_with_their_capacity(capapi):
    """WatchFleet replays retained summaries (start_after_tick): the capacity figures come back
    the same as the live ones."""
    a = capapi
    a.sup.step(1)
    first = a.sup.history[0].tick
    with a.client("operator") as c:
        it = iter(c.watch_fleet(start_after_tick=first - 1))
        replayed = [next(it) for _ in range(3)]
    for msg in replayed:
        s = next(h for h in a.sup.history if h.tick == msg.tick)
        assert msg.HasField("capacity") and len(msg.capacity.links) == 10
        assert [x.utilisation for x in msg.capacity.links] == [
            float(s.capacity.link_utilisation[i]) for i in range(len(LINK_NAMES)) if s.capacity.link_capacity[i] > 0]
