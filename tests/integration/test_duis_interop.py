"""DUIS interop with DCC's own client tool and with xmlsec1.

(a) Requests built by @smartdcc/duis-parser's constructDuis (node, the package dir in
TWIN_DUIS_PARSER) parse with wire.parse_request; (b) every kind of response and alert our builders
make, signed, parses with its parseDuis (which ignores the ds:Signature: it drops nothing of the
header or body); (c) our signed response verifies with xmlsec1 and a tampered one does not."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from twin.services import duis
from twin.services.duis_gateway import pki, wire
from twin.services.duis_gateway.wire import RequestId

pytestmark = pytest.mark.integration

PARSER = os.environ.get("TWIN_DUIS_PARSER")
NODE = shutil.which("node")
XMLSEC1 = shutil.which("xmlsec1")
needs_parser = pytest.mark.skipif(not PARSER or NODE is None,
                                  reason="set TWIN_DUIS_PARSER to the @smartdcc/duis-parser package dir (and have node)")
needs_xmlsec1 = pytest.mark.skipif(XMLSEC1 is None, reason="xmlsec1 (Debian package xmlsec1) is not installed")

# JSON in on stdin, JSON out on stdout; BigInt counters written as strings.
SCRIPT = """
const d = require(process.env.TWIN_DUIS_PARSER);
let input = '';
process.stdin.on('data', (c) => { input += c; });
process.stdin.on('end', () => {
  const job = JSON.parse(input);
  const out = job.items.map((x) => job.op === 'construct'
    ? d.constructDuis('simplified', x.duis, x.version)
    : d.parseDuis('simplified', x));
  process.stdout.write(JSON.stringify(out, (k, v) => typeof v === 'bigint' ? v.toString() : v));
});
"""


def node(op: str, items: list[Any]) -> list[Any]:
    assert NODE is not None and PARSER is not None
    done = subprocess.run([NODE, "-e", SCRIPT], input=json.dumps({"op": op, "items": items}).encode(),
                          capture_output=True, env={**os.environ, "TWIN_DUIS_PARSER": PARSER}, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()
    out: list[Any] = json.loads(done.stdout)
    return out


PARAMS: dict[str, dict[str, str]] = {"2.2": {"TopUpAmountPence": "500"}, "1.1.1": {"UnitRatePence": "21.75"},
                                     "11.1": {"FirmwareVersion": "4.2.0", "Device": "ESME"},
                                     "4.1.1": {"Fuel": "gas"}}


@needs_parser
def test_requests_built_by_the_dcc_tool_parse() -> None:
    srvs = sorted(wire.BODIES)
    items = []
    for i, srv in enumerate(srvs):
        s = duis.lookup(srv)
        items.append({"version": "5.2", "duis": {
            "header": {"type": "request", "requestId": {"originatorId": "02-54-57-00-00-00-00-01",
                                                        "targetId": "00-db-12-34-56-78-90-a0", "counter": 100 + i},
                       "commandVariant": 8 if s.non_device else 4 if s.critical else 1,
                       "serviceReference": ".".join(srv.split(".")[:2]), "serviceReferenceVariant": srv},
            "body": {wire.BODIES[srv]: PARAMS.get(srv, "")}}})
    xmls = node("construct", items)
    for i, (srv, xml) in enumerate(zip(srvs, xmls, strict=True)):
        req = wire.parse_request(xml.encode())
        assert req.srv == srv
        assert req.schema_version == "5.2"
        assert req.request_id == RequestId("02-54-57-00-00-00-00-01", "00-DB-12-34-56-78-90-A0", 100 + i)
        assert req.body_name == wire.BODIES[srv]
    parsed = {srv: wire.parse_request(xml.encode()).parameters for srv, xml in zip(srvs, xmls, strict=True)}
    assert parsed["2.2"] == {"amount_pence": 500}
    assert parsed["1.1.1"] == {"unit_rate_pence": 21.75}
    assert parsed["11.1"] == {"target_version": "4.2.0", "device": "ESME"}
    assert parsed["4.1.1"] == {"fuel": "gas"}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> pki.Pki:
    return pki.Pki.load(pki.issue(tmp_path_factory.mktemp("pki"), ["alice"]))


RID = RequestId.parse("02-54-57-00-00-00-00-01:00-DB-12-34-56-78-90-A0:42")
WHEN = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
INVENTORY = [{"device_id": "00-DB-12-34-56-78-90-A0", "type": "CH", "status": "Commissioned", "manufacturer": "Acme",
              "model": "H1", "firmware_version": "1.0", "csp_region": "North"},
             {"device_id": "00-DB-12-34-56-78-90-A1", "type": "ESME", "status": "Commissioned",
              "manufacturer": "Acme", "model": "E1", "firmware_version": "2.0", "csp_region": "Central"}]


def outputs() -> dict[str, tuple[RequestId | None, str, etree._Element | None]]:
    """Every kind of message the builders make: (request id, code, body)."""
    return {
        "ack": (RID, "I99", None),
        "refusal": (None, "E10", None),
        "gbcs": (RID, "I0", wire.response_message("4.1.1", gbcs_payload=b'{"kwh": 1.5}')),
        "references": (RID, "I0", wire.response_message("7.1")),
        "inventory": (RID, "I0", wire.response_message("8.2", inventory=INVENTORY)),
        "wan": (RID, "I0", wire.response_message("12.1", wan_matrix={"technology": "4G", "available": True})),
        "pre": (RID, "I0", wire.response_message("7.1", pre_command=("3.2", b"\x00\x01\x02"))),
        "device_alert": (None, "I0", wire.device_alert("8F84", b"alert", throttled_count=5)),
        "dcc_alert": (None, "I0", wire.dcc_alert("N1", {"PowerOutageEvent": {"CommsHubID": "00-DB-12-34-56-78-90-A0"}})),
    }


@needs_parser
def test_our_signed_responses_parse_with_the_dcc_tool(keys: pki.Pki) -> None:
    made = outputs()
    signer = keys.signer("dcc")
    xml = [signer.sign(wire.response_tree(schema_version="5.4", request_id=rid, code=code, when=WHEN, body=body))
           .decode() for rid, code, body in made.values()]
    got = dict(zip(made, node("parse", xml), strict=True))
    for name, (rid, code, _) in made.items():
        h = got[name]["header"]
        assert h["type"] == "response"
        assert h["responseCode"] == code
        assert h["responseDateTime"] == "2026-12-02T01:00:00.000Z"
        if rid is None:
            assert "requestId" not in h and "responseId" not in h
        else:
            assert h["requestId"] == {"originatorId": rid.originator.lower(), "targetId": rid.target.lower(),
                                      "counter": str(rid.counter)}
            assert h["responseId"] == {"originatorId": rid.target.lower(), "targetId": rid.originator.lower(),
                                       "counter": str(rid.counter)}
    assert "body" not in got["ack"] and "body" not in got["refusal"]  # no Body element: none parsed
    assert got["gbcs"]["body"] == {"ResponseMessage": {"ServiceReference": "4.1", "ServiceReferenceVariant": "4.1.1",
                                                       "GBCSPayload": base64.b64encode(b'{"kwh": 1.5}').decode()}}
    assert got["references"]["body"] == {"ResponseMessage": {"ServiceReference": "7.1",
                                                             "ServiceReferenceVariant": "7.1"}}
    devices = got["inventory"]["body"]["ResponseMessage"]["DSPInventory"]["Device"]
    assert [d["DeviceType"] for d in devices] == ["CHF", "ESME"]
    assert [d["CSPRegion"] for d in devices] == ["North", "Central"]
    assert got["wan"]["body"]["ResponseMessage"]["DSPWANMatrix"] == {"technology": "4G", "available": "true"}
    assert got["pre"]["body"]["ResponseMessage"]["PreCommand"] == {"GBCSVersion": "3.2", "GBCSPayload": "AAEC"}
    assert got["device_alert"]["body"] == {"DeviceAlertMessage": {
        "AlertCode": "8F84", "ThrottledAlertCount": "5", "GBCSPayload": base64.b64encode(b"alert").decode()}}
    assert got["dcc_alert"]["body"] == {"DCCAlertMessage": {
        "DCCAlertCode": "N1", "DCCAlert": {"PowerOutageEvent": {"CommsHubID": "00-DB-12-34-56-78-90-A0"}}}}


def xmlsec1_verify(path: Path, cert: Path) -> subprocess.CompletedProcess[bytes]:
    assert XMLSEC1 is not None
    # Reference URI="" needs no id attribute; the key is the certificate's, given on the command line.
    return subprocess.run([XMLSEC1, "--verify", "--pubkey-cert-pem", str(cert), str(path)], capture_output=True,
                          timeout=60, check=False)


@needs_xmlsec1
def test_xmlsec1_verifies_our_signature(keys: pki.Pki, tmp_path: Path) -> None:
    signer = keys.signer("dcc")
    cert = tmp_path / "dcc.pem"
    cert.write_bytes(keys.dcc.cert_pem)
    for name, (rid, code, body) in outputs().items():
        data = signer.sign(wire.response_tree(schema_version="5.4", request_id=rid, code=code, when=WHEN, body=body))
        good = tmp_path / f"{name}.xml"
        good.write_bytes(data)
        done = xmlsec1_verify(good, cert)
        assert done.returncode == 0, done.stderr.decode()
    data = signer.sign(wire.response_tree(schema_version="5.4", request_id=RID, code="I0", when=WHEN))
    bad = tmp_path / "tampered.xml"
    bad.write_bytes(data.replace(b">I0<", b">E1<"))
    assert xmlsec1_verify(bad, cert).returncode != 0
    alice = keys.by_user("alice")
    assert alice is not None
    other = tmp_path / "alice.pem"
    other.write_bytes(alice.cert_pem)
    good = tmp_path / "good.xml"
    good.write_bytes(data)
    assert xmlsec1_verify(good, other).returncode != 0  # signed by the DCC, checked with Alice's key
