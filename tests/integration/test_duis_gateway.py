"""The DUIS front door end to end: signed DUIS XML over real HTTP to the gateway beside the
session's live gRPC API (tests/support.py `Api`), over the same DCC; the twin's answers verified
with its certificate; asynchronous responses and alerts POSTed to a real receiver."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from lxml import etree

from tests.integration.test_duis_interop import needs_parser, node
from twin.generated.fleet.v1 import fleet_pb2
from twin.model.catalog import AREA_BY_ID
from twin.model.ids import parse_hub_ref
from twin.services import duis
from twin.services.dcc.requests import ResponseStatus
from twin.services.duis_gateway import wire
from twin.services.duis_gateway.app import DuisSettings
from twin.services.duis_gateway.client import DuisClient, request_tree
from twin.services.duis_gateway.pki import Pki, issue, set_receive_url
from twin.services.duis_gateway.signing import verify

pytestmark = pytest.mark.usefixtures("ray_session")
USERS = ("is", "es", "gs", "ed", "gt", "rsa", "ou", "other-is", "far-ed", "operator")
READS = ("4.1.1", "4.6.1", "4.8.1", "4.17", "11.2")
RETRY_FOR_S = 3.0


class Receiver:
    """A DCC User's receive URL: a real HTTP server on loopback recording every POST (the twin's
    signed DUIS messages), answering 204 while up and 503 while down."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.up = True
        app = FastAPI()

        @app.post("/smartdcc/duis")
        async def receive(request: Request) -> Response:
            if not self.up:
                return Response(status_code=503)
            self.got.append(await request.body())
            return Response(status_code=204)

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/smartdcc/duis"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class Gateway:
    def __init__(self, api, tmp: Path):
        self.api = api
        self.receiver = Receiver()
        self.manifest = issue(tmp / "duis", [u for u in USERS if u != "operator"])
        set_receive_url(self.manifest, "is", self.receiver.url)
        self.pki = Pki.load(self.manifest)
        # Messages undelivered for 3 s go to the failed-delivery queue (300 s in service), so a test
        # can see them there without waiting five minutes: the same code path.
        self.front = api.server.serve_duis(DuisSettings(pki=self.manifest, port=0, retry_for_s=RETRY_FOR_S))
        self.url = self.front.server.url
        self.target = api.hub["device_id"]

    def posted_for(self, rid: wire.RequestId, since: int = 0) -> list:
        """The messages posted to the receiver (from the `since`-th) answering `rid`, verified."""
        trees = [verify(b, self.pki.dcc.cert_pem) for b in self.receiver.got[since:]]
        return [t for t in trees if t.findtext(f"{{{wire.NS_SR}}}Header/{{{wire.NS_SR}}}RequestID") == str(rid)]

    def client(self, user: str) -> DuisClient:
        return DuisClient(self.url, self.pki, user)

    def close(self) -> None:
        self.api.server.stop_duis()
        self.receiver.stop()


@pytest.fixture(scope="module")
def gw(live_api, tmp_path_factory):
    g = Gateway(live_api, tmp_path_factory.mktemp("duis"))
    yield g
    g.close()


@pytest.fixture
def api(gw):
    gw.api.settle()
    return gw.api


def grpc_result(api, user: str, srv: str, params: dict | None = None) -> dict:
    from google.protobuf import json_format

    with api.client(user) as c:
        resp = c.submit(srv, f"hubs/{api.hub['device_id']}", params).response
    assert resp.status == 1, resp  # COMPLETED
    return json_format.MessageToDict(resp.result)


@pytest.mark.parametrize("srv", READS)
def test_a_read_over_duis_equals_the_grpc_answer_at_the_same_tick(gw, api, srv):
    with gw.client("is") as c:
        answer = c.send(srv, gw.target)
    assert (answer.status, answer.code) == (200, "I0")
    assert answer.find("Header/ResponseID").text == str(answer.request_id.response_id())
    assert answer.find("Body/ResponseMessage/ServiceReferenceVariant").text == srv
    assert answer.payload() == grpc_result(api, "is", srv)


def test_read_inventory_and_wan_matrix_in_their_duis_shapes(gw, api):
    rec = api.sup.hub(api.hub["hub"])
    with gw.client("is") as c:
        inv = c.send("8.2", gw.target)
        wan = c.send("12.1", gw.target)
    assert (inv.code, wan.code) == ("I0", "I0")
    devices = inv.find("Body/ResponseMessage/DSPInventory")
    ids = [el.text for el in devices.iter(f"{{{wire.NS_SR}}}DeviceID")]
    want = [d["device_id"] for d in [rec["comms_hub"], *rec["meters"], rec["ppmid"]] if d]
    assert ids == want
    regions = {el.text for el in devices.iter(f"{{{wire.NS_SR}}}CSPRegion")}
    assert regions == {f"4G {rec['region']}" if rec["wan"] == "4G" else rec["region"]}
    grpc_wan = grpc_result(api, "is", "12.1")
    assert wan.find("Body/ResponseMessage/DSPWANMatrix") is not None
    assert grpc_wan["region"] == rec["region"]


def test_a_device_change_is_acknowledged_and_its_response_posted_to_the_receive_url(gw, api):
    before = len(gw.receiver.got)
    with gw.client("is") as c:
        answer = c.send("2.2", gw.target, {"amount_pence": 700})
    assert (answer.status, answer.code) == (200, "I99")  # the clock is stepped by hand: it applies at a tick
    api.sup.step(2)
    assert _wait(lambda: gw.posted_for(answer.request_id, before))
    mine = gw.posted_for(answer.request_id, before)
    assert len(mine) == 1
    assert mine[0].findtext(f"{{{wire.NS_SR}}}Header/{{{wire.NS_SR}}}ResponseCode") == "I0"


def test_the_critical_command_flow_applies_once(gw, api):
    ops_before = len(api.sup.operations())
    with gw.client("is") as c:
        first = c.send("7.2", gw.target, cv=4)  # Transform: a pre-command to sign, nothing applied
        assert first.code == "I0"
        assert len(api.sup.operations()) == ops_before
        pre = first.pre_command()
        assert json.loads(pre)["srv"] == "7.2"
        signed = c.sign_pre_command(pre)
        data = c.signer.sign(request_tree(first.request_id, "7.2", cv=5, signed_pre_command=signed))
        sent = c.answer(c.post("S", data), first.request_id)
        assert sent.code == "I99"
        again = c.answer(c.post("S", data), first.request_id)  # the same signed pre-command again
        assert again.code == "E8"
    assert len(api.sup.operations()) == ops_before + 1  # applied once, the repeat refused
    seen = api.server.dcc.core.ledger.get("is", str(first.request_id))
    assert seen is not None and seen.state == "done"


def test_a_critical_command_sent_without_transform_or_with_a_forged_pre_command_is_refused(gw, api):
    with gw.client("is") as c:
        assert c.send("7.2", gw.target, cv=1).code == "E12"  # a critical SR never goes as 1
        rid = c.next_id(gw.target)
        data = c.signer.sign(request_tree(rid, "7.2", cv=5, signed_pre_command=b"x" * 100))
        assert c.answer(c.post("S", data), rid).code == "E4"  # no pre-command issued for it
        first = c.send("7.2", gw.target, cv=4)
        forged = first.pre_command()[:-1] + b"}" + b"\0" * 64
        data = c.signer.sign(request_tree(first.request_id, "7.2", cv=5, signed_pre_command=forged))
        assert c.answer(c.post("S", data), first.request_id).code == "E6"
        # Another User's key on the pre-command: refused too.
        with gw.client("other-is") as o:
            other_signed = o.sign_pre_command(first.pre_command())
        data = c.signer.sign(request_tree(first.request_id, "7.2", cv=5, signed_pre_command=other_signed))
        assert c.answer(c.post("S", data), first.request_id).code == "E6"
    assert api.server.dcc.core.ledger.get("is", str(first.request_id)) is None  # nothing applied


def test_the_request_id_counter_must_increase(gw, api):
    with gw.client("is") as c:
        rid = c.next_id(gw.target)
        assert c.send("4.1.1", gw.target, rid=rid).code == "I0"
        assert c.send("4.1.1", gw.target, rid=rid).code == "E8"  # a repeat
        lower = wire.RequestId(rid.originator, rid.target, rid.counter - 1)
        assert c.send("4.1.1", gw.target, rid=lower).code == "E8"
        assert c.send("4.1.1", gw.target).code == "I0"  # the next counter is fine


def test_roles_and_premises_are_the_grpc_apis_rules(gw, api):
    with gw.client("ed") as c:
        assert c.send("2.2", gw.target, {"amount_pence": 100}).code == "E2"  # ED may not top up
    with gw.client("other-is") as c:
        assert c.send("4.1.1", gw.target).code == "E4"  # not its premises
    with gw.client("far-ed") as c:
        assert c.send("4.1.1", gw.target).code == "E4"  # not its area
    with gw.client("is") as c:
        assert c.send("4.1.1", "00-00-00-00-00-00-00-01").code == "E19"


def _post(gw, service: str, data: bytes) -> tuple[int, str]:
    r = httpx.post(f"{gw.url}/api/v1/service{service}", content=data, headers={"content-type": "application/xml"})
    tree = verify(r.content, gw.pki.dcc.cert_pem)
    return r.status_code, tree.findtext(f"{{{wire.NS_SR}}}Header/{{{wire.NS_SR}}}ResponseCode")


def test_bad_input_gets_the_duis_error_and_changes_nothing(gw, api):
    with gw.client("is") as c:
        rid = c.next_id(gw.target)
        good = request_tree(rid, "2.2", cv=1, parameters={"amount_pence": 500})
        signed = c.signer.sign(good)
    tampered = signed.replace(b">500<", b">900<")
    assert tampered != signed
    wrong_ns = signed.replace(wire.NS_SR.encode(), b"http://example.com/not-duis")
    with gw.client("other-is") as o:  # the is user's request signed by another User's key
        foreign = o.signer.sign(request_tree(rid, "2.2", cv=1, parameters={"amount_pence": 500}))
    unsigned = etree.tostring(good)
    cases = {
        "malformed": (b"<sr:Request", 400, "E10"),
        "wrong namespace": (wrong_ns, 400, "E10"),
        "schema version": (signed.replace(b'schemaVersion="5.4"', b'schemaVersion="9.9"'), 400, "E10"),
        "no RequestID": (etree.tostring(_without(good, "RequestID")), 400, "E10"),
        "unknown SRV": (signed.replace(b">2.2<", b">99.9<"), 400, "E17"),
        "tampered": (tampered, 200, "E6"),
        "foreign signature": (foreign, 200, "E6"),
        "unsigned": (unsigned, 200, "E6"),
        "oversized": (b"<a>" + b"x" * (wire.MAX_BODY_BYTES + 10) + b"</a>", 413, "E10"),
        "unicode": ("<sr:Request xmlns:sr='x'>\u202e\U0001F600</sr:Request>".encode(), 400, "E10"),
    }
    for name, (data, status, code) in cases.items():
        assert _post(gw, "S", data) == (status, code), name
    assert api.server.dcc.core.ledger.get("is", str(rid)) is None
    # None of them used the counter: the good request with it is accepted now.
    assert _post(gw, "S", signed) == (200, "I99")


def _without(tree, name: str):
    tree = etree.fromstring(etree.tostring(tree))
    for el in tree.iter(f"{{{wire.NS_SR}}}{name}"):
        el.getparent().remove(el)
    return tree


def test_a_request_to_the_wrong_url_is_refused(gw, api):
    with gw.client("is") as c:
        rid = c.next_id(gw.target)
        data = c.signer.sign(request_tree(rid, "4.1.1", cv=1))
        assert c.answer(c.post("D", data), rid).code == "E13"
        assert c.answer(c.post("T", data), rid).code == "E13"
        assert c.answer(c.post("S", data), rid).code == "I0"  # the counter was not used by the refusals


def test_an_unknown_originator_or_an_operator_is_refused(gw, api):
    with gw.client("is") as c:
        rid = wire.RequestId("02-00-00-00-00-00-99-99", gw.target, 1)
        data = c.signer.sign(request_tree(rid, "4.1.1", cv=1))
        assert c.answer(c.post("S", data), rid).code == "E1"


def test_deferred_responses_match_statuses(gw, api):
    # The ServiceResponse statuses the gateway maps, and their codes, in one table.
    from twin.services.duis_gateway.gateway import DuisGateway

    assert {s: DuisGateway.outcome(gw.front.gateway, _resp(s))[1] for s in ResponseStatus} == {
        ResponseStatus.COMPLETED: "I0", ResponseStatus.ACKNOWLEDGED: "I99", ResponseStatus.FAILED: "E20"}


def _resp(status: ResponseStatus):
    from datetime import UTC, datetime

    from twin.services.dcc.requests import ServiceResponse

    return ServiceResponse(request_id="x", srv="4.1.1", target="hubs/0", csp="North", status=status,
                           time=datetime(2026, 1, 1, tzinfo=UTC), result={"a": 1},
                           detail="the hub stayed unreachable")


def test_alerts_are_posted_signed_to_the_receive_url(gw, api):
    before = len(gw.receiver.got)
    # Not the chosen premises' area, nor the first other one (test_api cuts that for long).
    area = [a for a in sorted(AREA_BY_ID) if a != api.hub["area"]["id"]][1]
    with api.client("operator") as c:
        c.create_event(power_outage=fleet_pb2.PowerOutage(area=str(area), fraction=0.5, duration_min=30))
        c.step(3)

    def outage_alerts() -> list:
        posted = [verify(b, gw.pki.dcc.cert_pem) for b in gw.receiver.got[before:]]
        return [t for t in posted if t.findtext(f".//{{{wire.NS_SR}}}DCCAlertCode") == "AD1"]

    assert _wait(outage_alerts), "no power-outage alert was posted"
    for t in outage_alerts():  # each names a comms hub in the area cut, and when its power went
        alert = t.find(f"{{{wire.NS_SR}}}Body/{{{wire.NS_SR}}}DCCAlertMessage/{{{wire.NS_SR}}}DCCAlert")
        hub = api.sup.hub(parse_hub_ref(alert.findtext(f".//{{{wire.NS_SR}}}CommsHubID"), api.sup.config.seed))
        assert hub["area"]["id"] == area and hub["supplier"] == api.hub["supplier"]
    api.settle()


@needs_parser
def test_the_dcc_tool_builds_requests_the_twin_answers_and_parses_all_it_sends(gw, api):
    """DCC's own client library (@smartdcc/duis-parser) builds the requests (signed with the
    User's key, as an adapter signs them) and parses every answer and every message the twin
    POSTed to the receive URL in this module."""
    srvs = ["4.1.1", "4.6.1", "4.17", "11.2", "8.2", "12.1", "2.2"]
    with gw.client("is") as c:
        rids = [c.next_id(gw.target) for _ in srvs]
        items = []
        for rid, srv in zip(rids, srvs, strict=True):
            cv = 8 if srv in ("8.2", "12.1") else 1
            items.append({"version": "5.3", "duis": {
                "header": {"type": "request", "requestId": {"originatorId": rid.originator.lower(),
                                                            "targetId": rid.target.lower(), "counter": rid.counter},
                           "commandVariant": cv, "serviceReference": ".".join(srv.split(".")[:2]),
                           "serviceReferenceVariant": srv},
                "body": {wire.BODIES[srv]: {"TopUpAmountPence": "250"} if srv == "2.2" else ""}}})
        built = node("construct", items)
        answers = []
        for rid, srv, xml in zip(rids, srvs, built, strict=True):
            signed = c.signer.sign(etree.fromstring(xml.encode()))
            r = c.post("D" if srv in ("8.2", "12.1") else "S", signed)
            answers.append(r.content)
            assert c.answer(r, rid).code == ("I99" if srv == "2.2" else "I0"), srv
    parsed = node("parse", [a.decode() for a in answers])
    for rid, srv, p in zip(rids, srvs, parsed, strict=True):
        assert p["header"]["type"] == "response"
        assert p["header"]["responseCode"] == ("I99" if srv == "2.2" else "I0")
        assert p["header"]["requestId"]["counter"] == str(rid.counter)
        if srv != "2.2":
            assert p["body"]["ResponseMessage"]["ServiceReferenceVariant"] == srv
    api.sup.step(2)  # the top-up applies; its response is posted
    assert _wait(lambda: gw.posted_for(rids[-1]))
    posted = node("parse", [b.decode() for b in gw.receiver.got])
    assert posted
    for p in posted:
        assert p["header"]["type"] == "response" and p["header"]["responseCode"] in wire.RESPONSE_CODES
        if p["header"]["responseCode"] == "I0":
            assert set(p["body"]) & {"ResponseMessage", "DeviceAlertMessage", "DCCAlertMessage"}, p


def test_past_its_in_flight_limit_the_gateway_says_busy_and_applies_nothing(gw, api):
    gateway = gw.front.gateway
    with gw.client("is") as c:
        rid = c.next_id(gw.target)
        data = c.signer.sign(request_tree(rid, "2.2", cv=1, parameters={"amount_pence": 300}))
        gateway.in_flight = gateway.max_in_flight  # as if that many were being answered now
        try:
            r = c.post("S", data)
        finally:
            gateway.in_flight = 0
        assert (r.status_code, c.answer(r, rid).code) == (503, "E16")
        assert api.server.dcc.core.ledger.get("is", str(rid)) is None
        assert c.answer(c.post("S", data), rid).code == "I99"  # sent again later, it is taken


def test_a_request_past_the_anomaly_threshold_is_quarantined_and_applies_only_when_released(gw, api):
    core = api.server.dcc.core
    core.anomaly.user_thresholds[("is", "2.2")] = 0  # every top-up from this User is held
    try:
        with gw.client("is") as c:
            held = c.send("2.2", gw.target, {"amount_pence": 400})
            assert held.code == "E15"
            seen = core.ledger.get("is", str(held.request_id))
            assert seen is not None and seen.state == "held"
            assert c.send("2.2", gw.target, {"amount_pence": 400}, rid=held.request_id).code == "E8"
        entry = core.anomaly.list("is")[-1]
        assert (entry.srv, entry.request["request_id"]) == ("2.2", str(held.request_id))
    finally:
        del core.anomaly.user_thresholds[("is", "2.2")]
    core.delete(entry.id)  # an operator deletes it: nothing applied
    assert core.ledger.get("is", str(held.request_id)).state == "failed"


def _wait(pred, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_a_receiver_down_past_the_retry_window_finds_its_messages_in_the_failed_queue(gw, api):
    delivery = gw.front.delivery
    auth = {"authorization": f"Bearer {api.tokens['is']}"}
    gw.receiver.up = False
    try:
        with gw.client("is") as c:
            answer = c.send("2.2", gw.target, {"amount_pence": 900})
        assert answer.code == "I99"
        api.sup.step(2)
        want = str(answer.request_id.response_id())
        assert _wait(lambda: any(f.message.message_id == want for f in delivery.failed("is")))
        held = httpx.get(f"{gw.url}/twin/v1/failed-deliveries", headers=auth).json()["failed"]
        mine = [f for f in held if f["message_id"] == want]
        assert len(mine) == 1 and mine[0]["attempts"] >= 1 and mine[0]["last_error"] == "HTTP 503"
        assert httpx.get(f"{gw.url}/twin/v1/failed-deliveries").status_code == 401  # no token
    finally:
        gw.receiver.up = True
    before = len(gw.receiver.got)
    r = httpx.post(f"{gw.url}/twin/v1/redeliver", headers=auth).json()
    assert r["redelivered"] >= 1
    assert _wait(lambda: not delivery.failed("is") and delivery.stats()["queued"] == 0)
    ids = [verify(b, gw.pki.dcc.cert_pem).findtext(f"{{{wire.NS_SR}}}Header/{{{wire.NS_SR}}}ResponseID")
           for b in gw.receiver.got[before:]]
    assert ids.count(want) == 1  # delivered once, on re-delivery


XMLSEC1 = shutil.which("xmlsec1")


@pytest.mark.skipif(XMLSEC1 is None, reason="xmlsec1 (Debian package xmlsec1) is not installed")
def test_xmlsec1_verifies_a_live_answer_with_the_twins_certificate(gw, api, tmp_path):
    with gw.client("is") as c:
        rid = c.next_id(gw.target)
        r = c.post("S", c.signer.sign(request_tree(rid, "4.1.1", cv=1)))
    (tmp_path / "answer.xml").write_bytes(r.content)
    (tmp_path / "dcc.pem").write_bytes(gw.pki.dcc.cert_pem)
    ok = subprocess.run([XMLSEC1, "--verify", "--pubkey-cert-pem", str(tmp_path / "dcc.pem"),
                         str(tmp_path / "answer.xml")], capture_output=True, check=False)
    assert ok.returncode == 0, ok.stderr.decode()
    (tmp_path / "other.pem").write_bytes(gw.pki.by_user("is").cert_pem)  # not the twin's key
    bad = subprocess.run([XMLSEC1, "--verify", "--pubkey-cert-pem", str(tmp_path / "other.pem"),
                          str(tmp_path / "answer.xml")], capture_output=True, check=False)
    assert bad.returncode != 0


def _grpc_outcome(api, srv: str, target: str, params: dict) -> str:
    """The DUIS code the gRPC API's outcome for the same request corresponds to."""
    import grpc

    from twin.services.dcc.errors import Code, DccError
    from twin.services.duis_gateway.gateway import dcc_code
    from twin.services.errors import bad_request_fields

    with api.client("is") as c:
        try:
            resp = c.submit(srv, f"hubs/{target}", params, sign=duis.lookup(srv).critical).response
        except grpc.RpcError as e:
            fields = bad_request_fields(e)
            return dcc_code(DccError(Code[e.code().name], e.details(), field=fields[0] if fields else ""))
        if srv == "11.1":  # leave no distribution waiting on the device (as test_api does)
            api.sup.submit({"type": "operation_control", "action": "cancel",
                            "operation": resp.operation.split("/")[1]})
            api.sup.step(1)
        return {1: "I0", 2: "I99"}.get(resp.status, "E20" if "unreachable" in resp.detail else "E5")


@pytest.mark.parametrize("srv", duis.IMPLEMENTED)
def test_every_srv_over_duis_gets_the_outcome_the_grpc_api_gives(gw, api, srv):
    target = api.hub2["device_id"]  # the premises requests that change a hub go to
    params = {"2.2": {"amount_pence": 500}, "1.1.1": {"unit_rate_pence": 26.1},
              "11.1": {"target_version": f"9.{uuid.uuid4().int % 10**6}"}}.get(srv, {})
    want = _grpc_outcome(api, srv, target, params)
    if srv == "11.1":
        params = {"target_version": f"9.{uuid.uuid4().int % 10**6}"}
    with gw.client("is") as c:
        got = c.critical(srv, target, params) if duis.lookup(srv).critical else c.send(srv, target, params)
    if srv == "11.1" and got.code == "I99":  # cancel its distribution too (the operation its ack names)
        op = next(p.operation for p in api.server.dcc.core.pending if p.request.request_id == str(got.request_id))
        api.sup.submit({"type": "operation_control", "action": "cancel", "operation": op.split("/")[1]})
        api.sup.step(1)
    assert got.code == want, (srv, got.code, want)


def test_healthz_reports_deliveries_and_recent_failures(gw, api):
    h = httpx.get(f"{gw.url}/healthz").json()
    assert h["serving"] is True and h["in_flight"] == 0
    assert set(h["delivery"]) >= {"delivered", "failed", "queued"} and isinstance(h["recent_errors"], list)
