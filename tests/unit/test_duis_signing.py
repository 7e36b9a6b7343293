"""DUIS XML signatures (real signxml, real keys) and the test PKI."""

from __future__ import annotations

import base64
import copy
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from twin.services.duis_gateway import pki, signing, wire
from twin.services.duis_gateway.signing import SignatureRefused
from twin.services.duis_gateway.wire import NS_DS, NS_SR, RequestId

RID = RequestId.parse("90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:7")
NS = {"sr": NS_SR, "ds": NS_DS}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> pki.Pki:
    return pki.Pki.load(pki.issue(tmp_path_factory.mktemp("pki"), ["alice", "bob"]))


def response() -> etree._Element:
    return wire.response_tree(schema_version="5.3", request_id=RID, code="I0", when=datetime(2026, 12, 2, tzinfo=UTC),
                              body=wire.response_message("4.1.1", gbcs_payload=b'{"kwh": 12.5}'))


def refused(data: bytes | etree._Element, cert: bytes) -> str:
    with pytest.raises(SignatureRefused) as e:
        signing.verify(data, cert)
    return e.value.reason


def test_round_trip(keys: pki.Pki) -> None:
    data = keys.signer("dcc").sign(response())
    signed = signing.verify(data, keys.dcc.cert_pem)
    assert signed.findtext("sr:Header/sr:ResponseCode", namespaces=NS) == "I0"
    assert signed.find("ds:Signature", NS) is None  # only the signed content comes back
    assert etree.tostring(signed, method="c14n", exclusive=True) == etree.tostring(response(), method="c14n",
                                                                                    exclusive=True)


def test_signature_form(keys: pki.Pki) -> None:
    root = etree.fromstring(keys.signer("alice").sign(response()))
    sig = root[-1]
    assert sig.tag == f"{{{NS_DS}}}Signature"
    alg = {e.tag.split("}")[1]: e.get("Algorithm") for e in sig.iter() if e.get("Algorithm")}
    assert alg["CanonicalizationMethod"] == "http://www.w3.org/2001/10/xml-exc-c14n#"
    assert alg["SignatureMethod"] == "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
    assert alg["DigestMethod"] == "http://www.w3.org/2001/04/xmlenc#sha256"
    assert sig.find("ds:SignedInfo/ds:Reference", NS).get("URI") == ""
    assert sig.find(".//ds:X509Certificate", NS) is None
    assert signing.issuer_serial(root) == keys.by_user("alice").issuer_serial  # type: ignore[union-attr]


def test_a_signed_request_parses_and_verifies(keys: pki.Pki) -> None:
    req = etree.Element(f"{{{NS_SR}}}Request", nsmap={"sr": NS_SR}, schemaVersion="5.1")
    h = etree.SubElement(req, f"{{{NS_SR}}}Header")
    for name, value in (("RequestID", str(RID)), ("CommandVariant", "1"), ("ServiceReference", "4.1"),
                        ("ServiceReferenceVariant", "4.1.1")):
        etree.SubElement(h, f"{{{NS_SR}}}{name}").text = value
    etree.SubElement(etree.SubElement(req, f"{{{NS_SR}}}Body"), f"{{{NS_SR}}}ReadInstantaneousImportRegisters")
    data = keys.signer("alice").sign(req)
    parsed = wire.parse_request(data)
    party = keys.by_issuer_serial(*signing.issuer_serial(parsed.tree))  # type: ignore[misc]
    assert party is not None and party.user_id == "alice"
    trusted = wire.parse_request(signing.verify(parsed.tree, party.cert_pem))
    assert trusted.request_id == RID and trusted.srv == "4.1.1"


def test_tampered_body_refused(keys: pki.Pki) -> None:
    data = keys.signer("dcc").sign(response())
    bad = data.replace(base64.b64encode(b'{"kwh": 12.5}'), base64.b64encode(b'{"kwh": 99.9}'))
    assert bad != data
    assert "does not verify" in refused(bad, keys.dcc.cert_pem)


def test_tampered_signature_value_refused(keys: pki.Pki) -> None:
    root = etree.fromstring(keys.signer("dcc").sign(response()))
    value = root.find("ds:Signature/ds:SignatureValue", NS)
    raw = bytearray(base64.b64decode(value.text))
    raw[5] ^= 1
    value.text = base64.b64encode(bytes(raw)).decode()
    refused(etree.tostring(root), keys.dcc.cert_pem)


def test_signed_by_another_key_refused(keys: pki.Pki) -> None:
    # Bob's key, Alice's IssuerSerial: verified against Alice's certificate, it must fail.
    root = etree.fromstring(keys.signer("bob").sign(response()))
    alice = keys.by_user("alice")
    assert alice is not None
    serial = root.find("ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509IssuerSerial/ds:X509SerialNumber", NS)
    serial.text = str(alice.cert.serial_number)
    assert "does not verify" in refused(etree.tostring(root), alice.cert_pem)


def test_issuer_serial_of_another_cert_refused(keys: pki.Pki) -> None:
    data = keys.signer("bob").sign(response())
    alice = keys.by_user("alice")
    assert alice is not None
    assert "not the signer's" in refused(data, alice.cert_pem)


def test_missing_signature_refused(keys: pki.Pki) -> None:
    assert "exactly one ds:Signature" in refused(wire.to_bytes(response()), keys.dcc.cert_pem)


def test_not_xml_refused(keys: pki.Pki) -> None:
    refused(b"<nope", keys.dcc.cert_pem)
    refused(b"", keys.dcc.cert_pem)


def test_added_unsigned_element_refused(keys: pki.Pki) -> None:
    root = etree.fromstring(keys.signer("dcc").sign(response()))
    body = root.find("sr:Body", NS)
    etree.SubElement(body, f"{{{NS_SR}}}Injected").text = "evil"
    refused(etree.tostring(root), keys.dcc.cert_pem)


def test_wrapped_signature_refused(keys: pki.Pki) -> None:
    # XML signature wrapping: the genuine signed document is tucked inside a forged one, whose
    # own content is unsigned. Nothing of the forged content may come back as signed.
    genuine = etree.fromstring(keys.signer("dcc").sign(response()))
    forged = response()
    forged.find("sr:Header/sr:ResponseCode", NS).text = "E1"
    forged.append(copy.deepcopy(genuine.find("ds:Signature", NS)))
    forged.find("sr:Body", NS).append(genuine)  # the signed original, hidden in the body
    refused(etree.tostring(forged), keys.dcc.cert_pem)


def test_signature_moved_into_the_body_refused(keys: pki.Pki) -> None:
    root = etree.fromstring(keys.signer("dcc").sign(response()))
    sig = root.find("ds:Signature", NS)
    root.find("sr:Body", NS).append(sig)
    assert "last child" in refused(etree.tostring(root), keys.dcc.cert_pem)


def test_a_second_signature_refused(keys: pki.Pki) -> None:
    root = etree.fromstring(keys.signer("dcc").sign(response()))
    root.append(copy.deepcopy(root.find("ds:Signature", NS)))
    refused(etree.tostring(root), keys.dcc.cert_pem)


def test_wrong_algorithm_refused(keys: pki.Pki) -> None:
    root = etree.fromstring(keys.signer("dcc").sign(response()))
    method = root.find("ds:Signature/ds:SignedInfo/ds:SignatureMethod", NS)
    method.set("Algorithm", "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
    refused(etree.tostring(root), keys.dcc.cert_pem)


def test_signer_needs_a_p256_key_matching_its_cert(keys: pki.Pki, tmp_path: Path) -> None:
    alice, bob = keys.by_user("alice"), keys.by_user("bob")
    assert alice is not None and bob is not None
    with pytest.raises(ValueError):
        signing.XmlSigner(alice.key_path.read_bytes(), bob.cert_pem)


# ---- PKI ----------------------------------------------------------------------------------------

def test_issue_and_load(tmp_path: Path) -> None:
    manifest = pki.issue(tmp_path, ["alice", "bob"])
    doc = json.loads(manifest.read_text())
    assert set(doc) == {"ca", "dcc", "users"}
    assert doc["users"]["alice"]["receive_url"] is None
    for name in ("ca.key", "dcc.key", "alice.key", "bob.key"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
    p = pki.Pki.load(manifest)
    assert p.dcc.user_id == "dcc" and p.dcc.eui == "02-54-57-00-00-00-00-00"
    alice = p.by_user("alice")
    assert alice is not None and alice.eui == "02-54-57-00-00-00-00-01"
    assert p.by_eui("02-54-57-00-00-00-00-02") == p.by_user("bob")
    assert p.by_eui("02-54-57-00-00-00-00-02".lower()) == p.by_user("bob")
    assert p.by_eui("02-54-57-00-00-00-00-09") is None
    assert p.by_user("carol") is None
    assert p.by_issuer_serial(*alice.issuer_serial) == alice
    assert p.by_issuer_serial(alice.issuer_serial[0], alice.issuer_serial[1] + 1) is None
    assert p.by_issuer_serial("O=twin test PKI, CN=twin test CA", 1) is None


def test_reissue_keeps_keys_and_adds_users(tmp_path: Path) -> None:
    pki.issue(tmp_path, ["alice", "bob"])
    before = {n: (tmp_path / n).read_bytes() for n in ("ca.key", "dcc.key", "alice.key", "alice.pem", "bob.key")}
    p = pki.Pki.load(pki.issue(tmp_path, ["carol", "alice"]))
    assert {n: (tmp_path / n).read_bytes() for n in before} == before
    assert [p.by_user(u).eui for u in ("alice", "bob", "carol")] == [  # type: ignore[union-attr]
        "02-54-57-00-00-00-00-01", "02-54-57-00-00-00-00-02", "02-54-57-00-00-00-00-03"]


def test_a_cert_from_another_ca_refused(tmp_path: Path) -> None:
    pki.issue(tmp_path / "a", ["alice"])
    pki.issue(tmp_path / "b", ["alice"])
    (tmp_path / "a" / "alice.pem").write_bytes((tmp_path / "b" / "alice.pem").read_bytes())
    with pytest.raises(ValueError, match="not signed by the manifest's CA"):
        pki.Pki.load(tmp_path / "a" / "duis.json")


@pytest.mark.parametrize("damage", ["missing", "not json", "bad eui", "bad url", "no cert file"])
def test_bad_manifest_refused(tmp_path: Path, damage: str) -> None:
    manifest = pki.issue(tmp_path, ["alice"])
    doc = json.loads(manifest.read_text())
    if damage == "missing":
        manifest.unlink()
    elif damage == "not json":
        manifest.write_text("{\u00e9")
    else:
        entry = doc["users"]["alice"]
        entry.update({"bad eui": {"eui": "02-54-57"}, "bad url": {"receive_url": "ftp://x"},
                      "no cert file": {"cert": "gone.pem"}}[damage])
        manifest.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="DUIS PKI manifest"):
        pki.Pki.load(manifest)


def test_bad_user_ids_refused(tmp_path: Path) -> None:
    for bad in ("dcc", "Alice", "", "a/b", "\u0430lice"):
        with pytest.raises(ValueError):
            pki.issue(tmp_path, [bad])


def test_signer_of_unknown_user(keys: pki.Pki) -> None:
    with pytest.raises(KeyError):
        keys.signer("carol")
