"""DUIS wire: parsing requests (every SRV the twin reads, every refusal with its code and field)
and the response and alert builders, with real lxml."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from lxml import etree

from twin.services import duis
from twin.services.duis_gateway import wire
from twin.services.duis_gateway.wire import NS_DS, NS_SR, DuisRefusal, RequestId

RID = "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:1000"


def sr(parent: Any, name: str, text: str | None = None) -> Any:
    el = etree.SubElement(parent, f"{{{NS_SR}}}{name}")
    el.text = text
    return el


def request(srv: str, params: dict[str, str] | None = None, *, cv: int | str | None = None, rid: str = RID,
            version: str | None = "5.3", reference: str | None = None, body: str | None = None,
            header: list[tuple[str, str]] | None = None) -> bytes:
    """A DUIS Request built with lxml: the SRV's header (or `header` as given) and its body element
    (or `body`) with `params` as children."""
    root = etree.Element(f"{{{NS_SR}}}Request", nsmap={"sr": NS_SR})
    if version is not None:
        root.set("schemaVersion", version)
    h = sr(root, "Header")
    if cv is None:
        s = duis.lookup(srv)
        cv = 8 if s.non_device else 4 if s.critical else 1
    for name, text in header if header is not None else [
            ("RequestID", rid), ("CommandVariant", str(cv)),
            ("ServiceReference", reference or ".".join(srv.split(".")[:2])), ("ServiceReferenceVariant", srv)]:
        sr(h, name, text)
    b = sr(sr(root, "Body"), body or wire.BODIES.get(srv, "Nothing"))
    for k, v in (params or {}).items():
        sr(b, k, v)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def refused(data: bytes) -> DuisRefusal:
    with pytest.raises(DuisRefusal) as e:
        wire.parse_request(data)
    return e.value


# ---- every SRV's body -------------------------------------------------------------------------

CASES: list[tuple[str, dict[str, str], dict[str, Any]]] = [
    ("4.1.1", {}, {}),
    ("4.1.1", {"Fuel": "gas"}, {"fuel": "gas"}),
    ("4.6.1", {"Fuel": "electricity"}, {"fuel": "electricity"}),
    ("4.8.1", {}, {}),
    ("4.17", {"Fuel": "gas"}, {"fuel": "gas"}),
    ("2.2", {"TopUpAmountPence": "500"}, {"amount_pence": 500}),
    ("2.2", {"UTRN": "12345678901234567890", "TopUpAmountPence": "1"}, {"amount_pence": 1}),
    ("1.1.1", {"UnitRatePence": "24.5"}, {"unit_rate_pence": 24.5}),
    ("6.23", {}, {}),
    ("7.1", {}, {}),
    ("7.2", {}, {}),
    ("11.1", {"FirmwareVersion": "2.1.0"}, {"target_version": "2.1.0"}),
    ("11.1", {"FirmwareVersion": "v3", "Device": "CH", "AllowDowngrade": "true"},
     {"target_version": "v3", "device": "CH", "allow_downgrade": True}),
    ("11.2", {"Fuel": "electricity"}, {"fuel": "electricity"}),
    ("11.3", {}, {}),
    ("8.14.1", {}, {}),
    ("8.14.2", {}, {}),
    ("8.14.3", {}, {}),
    ("8.14.4", {}, {}),
    ("12.1", {}, {}),
    ("8.2", {}, {}),
]


def test_cases_cover_every_srv_the_twin_reads() -> None:
    assert {c[0] for c in CASES} == set(duis.IMPLEMENTED) | {"8.2"} == set(wire.BODIES)


@pytest.mark.parametrize(("srv", "params", "want"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_every_srv_body_parses(srv: str, params: dict[str, str], want: dict[str, Any]) -> None:
    got = wire.parse_request(request(srv, params))
    s = duis.lookup(srv)
    assert got.schema_version == "5.3"
    assert got.request_id == RequestId("90-B3-D5-1F-30-01-00-00", "00-DB-12-34-56-78-90-A0", 1000)
    assert got.command_variant == (8 if s.non_device else 4 if s.critical else 1)
    assert got.service_reference == ".".join(srv.split(".")[:2])
    assert got.srv == srv
    assert got.body_name == wire.BODIES[srv] == wire.body_name(srv)
    assert got.parameters == want
    assert got.pre_command is None
    assert got.tree.tag == f"{{{NS_SR}}}Request"


def test_body_names_are_the_sr_names_in_camel_case() -> None:
    assert wire.body_name("4.1.1") == "ReadInstantaneousImportRegisters"
    assert wire.body_name("1.1.1") == "UpdateImportTariffPrimaryElement"
    assert wire.body_name("8.2") == "ReadInventory"
    assert wire.body_name("8.14.3") == "CommunicationsHubStatusUpdateFaultReturn"


def test_lower_case_euis_and_optional_header_fields() -> None:
    data = request("4.1.1", header=[
        ("RequestID", RID.lower()), ("FirstInSequence", "true"),
        ("PrecedingServiceRequestID", "90-b3-d5-1f-30-01-00-00:00-db-12-34-56-78-90-a0:999"),
        ("CommandVariant", "1"), ("ServiceReference", "4.1"), ("ServiceReferenceVariant", "4.1.1")])
    got = wire.parse_request(data)
    assert str(got.request_id) == RID
    assert got.first_in_sequence is True
    assert got.preceding_request_id == RequestId("90-B3-D5-1F-30-01-00-00", "00-DB-12-34-56-78-90-A0", 999)


def test_a_trailing_signature_is_allowed_and_ignored() -> None:
    root = etree.fromstring(request("7.1"))
    etree.SubElement(root, f"{{{NS_DS}}}Signature")
    assert wire.parse_request(etree.tostring(root)).srv == "7.1"


def test_command_variant_5_carries_the_signed_pre_command() -> None:
    payload = b"\x01\x02signed"
    root = etree.fromstring(request("7.1", cv=5, body="SignedPreCommand"))
    pre = root.find(f"{{{NS_SR}}}Body/{{{NS_SR}}}SignedPreCommand")
    sr(pre, "GBCSPayload", base64.b64encode(payload).decode())
    got = wire.parse_request(etree.tostring(root))
    assert got.command_variant == 5
    assert got.parameters == {}
    assert got.pre_command == etree.tostring(pre, method="c14n", exclusive=True)
    assert wire.signed_pre_command_payload(got) == payload


def test_parse_accepts_a_parsed_root() -> None:
    root = etree.fromstring(request("2.2", {"TopUpAmountPence": "7"}))
    assert wire.parse_request(root).parameters == {"amount_pence": 7}


# ---- refusals -------------------------------------------------------------------------------

def test_malformed_xml() -> None:
    r = refused(b"<sr:Request xmlns:sr='x'><unclosed></sr:Request>")
    assert (r.code, r.field, r.request_id) == ("E10", "Request", None)


def test_empty_body() -> None:
    assert (refused(b"").code, refused(b"").field) == ("E10", "Request")


def test_doctype_refused() -> None:
    data = request("4.1.1").replace(b"?>", b"?><!DOCTYPE x [<!ELEMENT x ANY>]>", 1)
    r = refused(data)
    assert (r.code, r.field) == ("E10", "Request")
    assert "DOCTYPE" in r.message


def test_entity_bomb_refused_without_expansion() -> None:
    bomb = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                       for i in range(1, 10))
            + b']><sr:Request xmlns:sr="' + NS_SR.encode() + b'" schemaVersion="5.3">&lol9;</sr:Request>')
    r = refused(bomb)
    assert (r.code, r.field) == ("E10", "Request")


def test_external_entity_refused() -> None:
    data = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<sr:Request xmlns:sr="' + NS_SR.encode() + b'" schemaVersion="5.3">&x;</sr:Request>')
    r = refused(data)
    assert r.code == "E10"
    assert "root:" not in r.message


def test_wrong_namespace() -> None:
    data = request("4.1.1").replace(NS_SR.encode(), b"http://example.com/other")
    r = refused(data)
    assert (r.code, r.field) == ("E10", "Request")


def test_wrong_root() -> None:
    data = b'<sr:Response xmlns:sr="' + NS_SR.encode() + b'" schemaVersion="5.3"/>'
    r = refused(data)
    assert (r.code, r.field) == ("E10", "Response")


def test_missing_schema_version() -> None:
    r = refused(request("4.1.1", version=None))
    assert (r.code, r.field) == ("E10", "@schemaVersion")


def test_unsupported_schema_version() -> None:
    r = refused(request("4.1.1", version="4.0"))
    assert (r.code, r.field) == ("E10", "@schemaVersion")


def test_missing_request_id() -> None:
    r = refused(request("4.1.1", header=[("CommandVariant", "1"), ("ServiceReference", "4.1"),
                                         ("ServiceReferenceVariant", "4.1.1")]))
    assert (r.code, r.field, r.request_id) == ("E10", "Header/RequestID", None)


def test_header_out_of_order() -> None:
    r = refused(request("4.1.1", header=[("RequestID", RID), ("ServiceReference", "4.1"), ("CommandVariant", "1"),
                                         ("ServiceReferenceVariant", "4.1.1")]))
    assert (r.code, r.field) == ("E10", "Header/CommandVariant")
    assert str(r.request_id) == RID


@pytest.mark.parametrize("bad", [
    "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0",  # no counter
    "90B3D51F30010000:00-DB-12-34-56-78-90-A0:1",  # EUI without hyphens
    "90-B3-D5-1F-30-01-00:00-DB-12-34-56-78-90-A0:1",  # 7 octets
    "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:-1",
    "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:1 ",
    "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:\u0661\u0662",  # Arabic-Indic digits
    "9\uff10-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:1",  # a full-width zero
    "",
])
def test_bad_request_id_grammar(bad: str) -> None:
    r = refused(request("4.1.1", rid=bad))
    assert (r.code, r.field, r.request_id) == ("E10", "Header/RequestID", None)


def test_counter_over_64_bits() -> None:
    ok = wire.parse_request(request("4.1.1", rid=RID.replace(":1000", f":{2**64 - 1}")))
    assert ok.request_id.counter == 2**64 - 1
    r = refused(request("4.1.1", rid=RID.replace(":1000", f":{2**64}")))
    assert (r.code, r.field) == ("E10", "Header/RequestID")


@pytest.mark.parametrize("cv", ["0", "10", "x", "\u0661", ""])
def test_command_variant_out_of_range(cv: str) -> None:
    r = refused(request("4.1.1", cv=cv))
    assert (r.code, r.field) == ("E10", "Header/CommandVariant")
    assert str(r.request_id) == RID


@pytest.mark.parametrize(("srv", "cv"), [("4.1.1", 8), ("4.1.1", 4), ("7.1", 1), ("12.1", 1), ("8.2", 9)])
def test_command_variant_not_for_the_srv(srv: str, cv: int) -> None:
    r = refused(request(srv, cv=cv))
    assert (r.code, r.field) == ("E12", "Header/CommandVariant")


def test_unknown_srv() -> None:
    r = refused(request("99.9.9", cv=1))
    assert (r.code, r.field) == ("E17", "Header/ServiceReferenceVariant")
    assert str(r.request_id) == RID


def test_srv_the_twin_does_not_implement() -> None:
    r = refused(request("4.2", cv=1, body="ReadInstantaneousExportRegisters"))
    assert (r.code, r.field) == ("E14", "Header/ServiceReferenceVariant")


def test_reference_variant_mismatch() -> None:
    r = refused(request("4.1.1", reference="4.6"))
    assert (r.code, r.field) == ("E10", "Header/ServiceReference")


def test_wrong_body_element() -> None:
    r = refused(request("4.1.1", body="DisableSupply"))
    assert (r.code, r.field) == ("E10", "Body/DisableSupply")


def test_two_body_elements() -> None:
    root = etree.fromstring(request("4.1.1"))
    sr(root.find(f"{{{NS_SR}}}Body"), "ReadInstantaneousImportRegisters")
    r = refused(etree.tostring(root))
    assert (r.code, r.field) == ("E10", "Body")


def test_unknown_parameter() -> None:
    r = refused(request("4.1.1", {"Colour": "blue"}))
    assert (r.code, r.field) == ("E10", "Body/ReadInstantaneousImportRegisters/Colour")


def test_missing_parameter() -> None:
    r = refused(request("2.2"))
    assert (r.code, r.field) == ("E9", "Body/TopUpDevice/TopUpAmountPence")


@pytest.mark.parametrize(("srv", "name", "value"), [
    ("2.2", "TopUpAmountPence", "12.5"),
    ("2.2", "TopUpAmountPence", "ten"),
    ("2.2", "TopUpAmountPence", "\u0661\u0662"),  # Arabic-Indic digits
    ("2.2", "TopUpAmountPence", "\uff11\uff12"),  # full-width digits
    ("2.2", "TopUpAmountPence", "1" * 40),
    ("2.2", "UTRN", "123"),
    ("1.1.1", "UnitRatePence", "1e3"),
    ("1.1.1", "UnitRatePence", "NaN"),
    ("1.1.1", "UnitRatePence", "\uff124.5"),
    ("11.1", "FirmwareVersion", ""),
    ("11.1", "FirmwareVersion", "v\u00e9rsion"),
    ("11.1", "Device", "esme"),
    ("11.1", "AllowDowngrade", "yes"),
    ("4.1.1", "Fuel", "Gas"),
    ("4.1.1", "Fuel", "ga\u017f"),  # the long s
])
def test_bad_parameter_type(srv: str, name: str, value: str) -> None:
    params = {"TopUpAmountPence": "5"} if srv == "2.2" else {"FirmwareVersion": "1"} if srv == "11.1" else {}
    params[name] = value
    r = refused(request(srv, params))
    assert (r.code, r.field) == ("E9", f"Body/{wire.BODIES[srv]}/{name}")
    assert str(r.request_id) == RID


def test_oversized() -> None:
    data = request("4.1.1").replace(b"</sr:Request>", b"<!--" + b"x" * wire.MAX_BODY_BYTES + b"--></sr:Request>")
    r = refused(data)
    assert (r.code, r.field) == ("E10", "Request")


def test_extra_root_element() -> None:
    root = etree.fromstring(request("4.1.1"))
    sr(root, "Extra")
    r = refused(etree.tostring(root))
    assert (r.code, r.field) == ("E10", "Request")


def test_invalid_utf8_refused() -> None:
    data = request("11.1", {"FirmwareVersion": "1"}).replace(b">1<", b">\xff\xfe<")
    assert refused(data).code == "E10"


def test_response_codes_table() -> None:
    for code in ("I0", "I99", "E1", "E2", "E4", "E5", "E11", "E12", "E13", "E19", "E20"):
        assert wire.RESPONSE_CODES[code].endswith("[C]")
    for code in ("E6", "E8", "E9", "E10", "E14", "E15", "E16", "E17"):
        assert wire.RESPONSE_CODES[code].endswith("[U]")


# ---- builders -----------------------------------------------------------------------------------

WHEN = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)


def text(root: Any, path: str) -> str | None:
    return root.findtext(path, namespaces={"sr": NS_SR})


def test_response_tree_header() -> None:
    rid = RequestId.parse(RID)
    root = wire.response_tree(schema_version="5.2", request_id=rid, code="I99",
                              when=datetime(2026, 12, 2, 2, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1))))
    assert root.tag == f"{{{NS_SR}}}Response"
    assert root.get("schemaVersion") == "5.2"
    assert [etree.QName(c).localname for c in root.find("sr:Header", {"sr": NS_SR})] == [
        "RequestID", "ResponseID", "ResponseCode", "ResponseDateTime"]
    assert text(root, "sr:Header/sr:RequestID") == RID
    assert text(root, "sr:Header/sr:ResponseID") == "00-DB-12-34-56-78-90-A0:90-B3-D5-1F-30-01-00-00:1000"
    assert text(root, "sr:Header/sr:ResponseCode") == "I99"
    assert text(root, "sr:Header/sr:ResponseDateTime") == "2026-12-02T01:00:00.123Z"
    assert root.find("sr:Body", {"sr": NS_SR}) is None


def test_response_tree_without_request_id() -> None:
    root = wire.response_tree(schema_version="5.4", request_id=None, code="E10", when=WHEN)
    assert [etree.QName(c).localname for c in root.find("sr:Header", {"sr": NS_SR})] == [
        "ResponseCode", "ResponseDateTime"]


@pytest.mark.parametrize("kwargs", [
    {"schema_version": "6.0"}, {"code": "E999"}, {"when": datetime(2026, 1, 1)},
])
def test_response_tree_refuses_bad_arguments(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"schema_version": "5.1", "request_id": None, "code": "I0", "when": WHEN, **kwargs}
    with pytest.raises(ValueError):
        wire.response_tree(**args)


def test_response_message_gbcs_payload() -> None:
    body = wire.response_message("4.1.1", gbcs_payload=b'{"kwh": 1.5}')
    assert text(body, "sr:ResponseMessage/sr:ServiceReference") == "4.1"
    assert text(body, "sr:ResponseMessage/sr:ServiceReferenceVariant") == "4.1.1"
    assert base64.b64decode(text(body, "sr:ResponseMessage/sr:GBCSPayload") or "") == b'{"kwh": 1.5}'


def test_response_message_references_only() -> None:
    body = wire.response_message("7.1")
    assert [etree.QName(c).localname for c in body.find("sr:ResponseMessage", {"sr": NS_SR})] == [
        "ServiceReference", "ServiceReferenceVariant"]


def test_response_message_inventory() -> None:
    body = wire.response_message("8.2", inventory=[
        {"device_id": "00-DB-12-34-56-78-90-A0", "type": "CH", "status": "Commissioned", "manufacturer": "Acme",
         "model": "H1", "firmware_version": "1.0", "csp_region": "North"},
        {"device_id": "00-DB-12-34-56-78-90-A1", "type": "ESME", "status": "Commissioned", "manufacturer": "Acme",
         "model": "E1", "firmware_version": "2.0", "csp_region": "4G South", "uprn": "100023336956"}])
    devices = body.findall("sr:ResponseMessage/sr:DSPInventory/sr:Device", {"sr": NS_SR})
    assert [text(d, "sr:DeviceType") for d in devices] == ["CHF", "ESME"]
    assert [text(d, "sr:CSPRegion") for d in devices] == ["North", "4G South"]
    assert text(devices[1], "sr:UPRN") == "100023336956"


@pytest.mark.parametrize("entry", [
    {"type": "TOASTER"}, {"status": "Happy"}, {"csp_region": "Mars"}, {"colour": "red"}, {"model": "a\x00b"},
])
def test_inventory_refuses_bad_entries(entry: dict[str, str]) -> None:
    base = {"device_id": "x", "type": "ESME", "status": "Commissioned", "manufacturer": "m", "model": "m",
            "firmware_version": "1", "csp_region": "North"}
    with pytest.raises(ValueError):
        wire.response_message("8.2", inventory=[{**base, **entry}])


def test_response_message_wan_matrix_and_pre_command() -> None:
    body = wire.response_message("12.1", wan_matrix={"technology": "4G", "available": True, "mesh": {"hops": 2}})
    assert text(body, "sr:ResponseMessage/sr:DSPWANMatrix/sr:available") == "true"
    assert text(body, "sr:ResponseMessage/sr:DSPWANMatrix/sr:mesh/sr:hops") == "2"
    pre = wire.response_message("7.1", pre_command=("3.2", b"\x00\x01"))
    assert text(pre, "sr:ResponseMessage/sr:PreCommand/sr:GBCSVersion") == "3.2"
    assert text(pre, "sr:ResponseMessage/sr:PreCommand/sr:GBCSPayload") == "AAE="


def test_response_message_refuses_two_payloads_and_unknown_srvs() -> None:
    with pytest.raises(ValueError):
        wire.response_message("4.1.1", gbcs_payload=b"x", wan_matrix={"a": 1})
    with pytest.raises(ValueError):
        wire.response_message("99.1")
    with pytest.raises(ValueError):
        wire.response_message("12.1", wan_matrix={"not a name": 1})


def test_device_alert() -> None:
    body = wire.device_alert("8F84", b"alert", throttled_sequence_id=3, throttled_count=10)
    assert [etree.QName(c).localname for c in body.find("sr:DeviceAlertMessage", {"sr": NS_SR})] == [
        "AlertCode", "ThrottledAlertSequenceId", "ThrottledAlertCount", "GBCSPayload"]
    assert text(body, "sr:DeviceAlertMessage/sr:AlertCode") == "8F84"
    with pytest.raises(ValueError):
        wire.device_alert("8f84", b"x")


def test_dcc_alert() -> None:
    body = wire.dcc_alert("N1", {"PowerOutageEvent": {"CommsHubID": "00-DB-12-34-56-78-90-A0"}})
    assert text(body, "sr:DCCAlertMessage/sr:DCCAlertCode") == "N1"
    assert text(body, "sr:DCCAlertMessage/sr:DCCAlert/sr:PowerOutageEvent/sr:CommsHubID") == "00-DB-12-34-56-78-90-A0"
    for bad in ("N0", "N66", "AD2", "X1"):
        with pytest.raises(ValueError):
            wire.dcc_alert(bad, {"a": "b"})


def test_to_bytes_round_trips() -> None:
    root = wire.response_tree(schema_version="5.4", request_id=RequestId.parse(RID), code="I0", when=WHEN,
                              body=wire.response_message("4.1.1", gbcs_payload=b"\xe2\x82\xac"))
    data = wire.to_bytes(root)
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert etree.tostring(etree.fromstring(data), method="c14n") == etree.tostring(root, method="c14n")


def test_request_id_methods() -> None:
    rid = RequestId.parse(RID.lower())
    assert str(rid) == RID
    assert rid.response_id().response_id() == rid
    assert str(rid.response_id()) == "00-DB-12-34-56-78-90-A0:90-B3-D5-1F-30-01-00-00:1000"
