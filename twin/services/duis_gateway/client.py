"""A DCC User's side of DUIS in a few lines, for tests, examples and benchmarks: build a request,
sign it with the User's key, send it to the right URL, check the twin's signature on the answer,
and run the critical-command flow (Transform, sign the pre-command, Send Command).

    pki = Pki.load(Path(".twin/duis/duis.json"))
    with DuisClient("http://127.0.0.1:8079", pki, "is") as c:
        answer = c.send("4.1.1", "00-DB-12-4F-0A-91-3C-07")
        answer.code, answer.payload()      # "I0", the reading
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from twin.services import duis
from twin.services.duis_gateway import wire
from twin.services.duis_gateway.gateway import sign_pre_command
from twin.services.duis_gateway.pki import Pki
from twin.services.duis_gateway.signing import verify

URLS = {"S": "/api/v1/serviceS", "D": "/api/v1/serviceD", "T": "/api/v1/serviceT"}


def default_variant(srv: str) -> int:
    """The command variant a request is sent with: 8 non-device, 4 critical (to Transform), else 1."""
    s = duis.lookup(srv)
    return 8 if s.non_device else 4 if s.critical else 1


def service_of(cv: int) -> str:
    """The DUIS web service ("S", "D", "T") that takes command variant `cv`."""
    return "D" if cv == 8 else "T" if cv == 4 else "S"


def request_tree(rid: wire.RequestId, srv: str, *, cv: int, parameters: dict[str, Any] | None = None,
                 signed_pre_command: bytes | None = None, schema_version: str = wire.SCHEMA_VERSIONS[-1]) -> Any:
    """An unsigned sr:Request (lxml root): the header in DUIS order and the SRV's body with the
    twin's parameters as their elements (wire.PARAMETERS), or for command variant 5 a
    SignedPreCommand carrying `signed_pre_command`. ValueError for a parameter the SRV does not take."""
    sr = wire.NS_SR
    root = etree.Element(f"{{{sr}}}Request", nsmap={"sr": sr})
    root.set("schemaVersion", schema_version)
    header = etree.SubElement(root, f"{{{sr}}}Header")
    for name, text in (("RequestID", str(rid)), ("CommandVariant", str(cv)),
                       ("ServiceReference", ".".join(srv.split(".")[:2])), ("ServiceReferenceVariant", srv)):
        etree.SubElement(header, f"{{{sr}}}{name}").text = text
    body = etree.SubElement(root, f"{{{sr}}}Body")
    if cv == 5:
        item = etree.SubElement(body, f"{{{sr}}}SignedPreCommand")
        etree.SubElement(item, f"{{{sr}}}GBCSPayload").text = base64.b64encode(signed_pre_command or b"").decode()
        return root
    item = etree.SubElement(body, f"{{{sr}}}{wire.BODIES[srv]}")
    element_of = {param: el for el, (param, _, _) in wire.PARAMETERS.get(srv, {}).items() if param}
    for param, value in (parameters or {}).items():
        if param not in element_of:
            raise ValueError(f"SR {srv} takes no parameter {param!r} over DUIS (it takes {', '.join(element_of) or 'none'})")
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        etree.SubElement(item, f"{{{sr}}}{element_of[param]}").text = text
    return root


@dataclass(frozen=True)
class DuisAnswer:
    """The twin's answer: HTTP status, DUIS response code, the verified response root, the RequestID."""

    status: int
    code: str
    tree: Any
    request_id: wire.RequestId

    def find(self, path: str) -> Any:
        """The first element at `path` (local names joined by '/', under the root, e.g.
        "Body/ResponseMessage/GBCSPayload"), or None."""
        return self.tree.find("/".join(f"{{{wire.NS_SR}}}{p}" for p in path.split("/")))

    def payload(self) -> Any:
        """A GBCSPayload's content: the twin's JSON result, decoded."""
        el = self.find("Body/ResponseMessage/GBCSPayload")
        if el is None:
            raise LookupError(f"the answer ({self.code}) carries no GBCSPayload")
        return json.loads(base64.b64decode(el.text))

    def pre_command(self) -> bytes:
        el = self.find("Body/ResponseMessage/PreCommand/GBCSPayload")
        if el is None:
            raise LookupError(f"the answer ({self.code}) carries no pre-command")
        return base64.b64decode(el.text)


class DuisClient:
    """DCC User `user_id` of the PKI, talking to the gateway at `url`. Counters start from the
    wall clock in microseconds, so they keep increasing across restarts of the client."""

    def __init__(self, url: str, pki: Pki, user_id: str, *, verify_tls: bool | str = True, timeout_s: float = 30.0):
        party = pki.by_user(user_id)
        if party is None:
            raise ValueError(f"no DCC User {user_id!r} in the PKI")
        self.party = party
        self.pki = pki
        self.signer = pki.signer(user_id)
        self._key = serialization.load_pem_private_key(party.key_path.read_bytes(), password=None)
        self._counter = time.time_ns() // 1000
        self.http = httpx.Client(base_url=url, verify=verify_tls, timeout=timeout_s)

    def __enter__(self) -> DuisClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def next_id(self, target: str) -> wire.RequestId:
        self._counter += 1
        return wire.RequestId(self.party.eui, target.removeprefix("hubs/").upper(), self._counter)

    def post(self, service: str, data: bytes) -> httpx.Response:
        return self.http.post(URLS[service], content=data, headers={"content-type": "application/xml"})

    def answer(self, response: httpx.Response, rid: wire.RequestId) -> DuisAnswer:
        """The response checked: signed by the twin (SignatureRefused otherwise), its code read."""
        tree = verify(response.content, self.pki.dcc.cert_pem)
        code = tree.find(f"{{{wire.NS_SR}}}Header/{{{wire.NS_SR}}}ResponseCode").text
        return DuisAnswer(response.status_code, code, tree, rid)

    def send(self, srv: str, target: str, parameters: dict[str, Any] | None = None, *, cv: int | None = None,
             rid: wire.RequestId | None = None) -> DuisAnswer:
        """Sign and send one request to the URL its command variant goes to; a critical SRV (with
        no `cv` given) is sent to Transform, so the answer holds its pre-command (see `critical`)."""
        cv = default_variant(srv) if cv is None else cv
        rid = rid or self.next_id(target)
        data = self.signer.sign(request_tree(rid, srv, cv=cv, parameters=parameters))
        return self.answer(self.post(service_of(cv), data), rid)

    def sign_pre_command(self, payload: bytes) -> bytes:
        assert isinstance(self._key, ec.EllipticCurvePrivateKey)
        return sign_pre_command(self._key, payload)

    def critical(self, srv: str, target: str, parameters: dict[str, Any] | None = None) -> DuisAnswer:
        """The whole critical-command flow: Transform (command variant 4), sign the pre-command
        with the User's key, send it signed (5) with the same RequestID. The answer to the last
        step; the Transform's own if it refused."""
        first = self.send(srv, target, parameters, cv=4)
        if first.code != "I0":
            return first
        signed = self.sign_pre_command(first.pre_command())
        data = self.signer.sign(request_tree(first.request_id, srv, cv=5, signed_pre_command=signed))
        return self.answer(self.post("S", data), first.request_id)
