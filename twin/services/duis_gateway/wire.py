"""DUIS messages on the wire: parse a DCC User's Request, build the DCC's Responses and alerts.

Real-world facts come from /work/shared/domain/DUIS.md, tagged as there: [C] confirmed in DCC's
public client tools, [D] derived, [U] not found (the twin's own choice). XML goes through lxml with a
hardened parser (no DTD, no entity expansion, no network, no huge trees); a DOCTYPE is refused.

Every refusal is a `DuisRefusal` carrying a DUIS response code (see RESPONSE_CODES), the offending
element or attribute as a path ("Header/RequestID", "Body/TopUpDevice/TopUpAmountPence") and, once
the header's RequestID was read, the RequestID so the refusal can be answered with it.
"""

from __future__ import annotations

import base64
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lxml import etree
from lxml.etree import _Element

from twin.services import duis

NS_SR = "http://www.dccinterface.co.uk/ServiceUserGateway"  # [C]
NS_RA = "http://www.dccinterface.co.uk/ResponseAndAlert"  # [C]
NS_DS = "http://www.w3.org/2000/09/xmldsig#"  # [C]
# Accepted schemaVersion values: public samples carry 5.1 to 5.3, the newest schema is 5.4 [C].
# A response echoes its request's version; alerts, which answer no request, use the newest.
SCHEMA_VERSIONS: tuple[str, ...] = ("5.1", "5.2", "5.3", "5.4")
ALERT_SCHEMA_VERSION = SCHEMA_VERSIONS[-1]
MAX_BODY_BYTES = 256 * 1024  # the twin's limit on a request body [U]
MAX_COUNTER = 2**64 - 1  # the RequestID counter is an unsigned 64-bit integer [C]

# DUIS response codes the twin gives. [C]: the DCC System codes of a public reference page; [U]:
# failures that page does not name, with codes the twin chose (a real DCC may use others).
RESPONSE_CODES: dict[str, str] = {
    "I0": "success: the result is in this response [C]",
    "I99": "acknowledged: the result follows asynchronously [C]",
    "E1": "invalid User or role: the originator is not a known DCC User [C]",
    "E2": "the User's role may not send this Service Request [C]",
    "E4": "the User is not authorised for the device [C]",
    "E5": "the device's status is incompatible with the request [C]",
    "E6": "the request's XML signature is missing or does not verify [U]",
    "E8": "the RequestID counter was used before or does not increase [U]",
    "E9": "a parameter of the request is missing or invalid [U]",
    "E10": "the request is not well-formed DUIS: XML, structure, schema version or size [U]",
    "E11": "the Service Request is not compatible with the device [C]",
    "E12": "the command variant is not applicable to the request type [C]",
    "E13": "the request type is not valid for the URL it was sent to [C]",
    "E14": "the twin does not implement this Service Request variant [U]",
    "E15": "the request is quarantined (an anomaly detection threshold was breached) [U]",
    "E16": "busy: the twin cannot take the request now; send it again later [U]",
    "E17": "the Service Reference Variant is not a DUIS Service Request variant [U]",
    "E19": "the device does not exist [C]",
    "E20": "unable to communicate with the device [C]",
}


class DuisRefusal(Exception):
    """A request refused: `code` (a RESPONSE_CODES key), `field` (the offending element or
    attribute, a path below the root, e.g. "Header/RequestID"), `message` for people and
    `request_id` when the header's RequestID was readable (so the refusal can echo it)."""

    def __init__(self, code: str, field: str, message: str, request_id: RequestId | None = None) -> None:
        super().__init__(f"{code} {field}: {message}")
        self.code = code
        self.field = field
        self.message = message
        self.request_id = request_id


_EUI = r"[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){7}"
_REQUEST_ID = re.compile(rf"({_EUI}):({_EUI}):([0-9]{{1,20}})", re.ASCII)


def _shown(text: str, limit: int = 40) -> str:
    """A value quoted for a message, cut short and with non-printables escaped."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


@dataclass(frozen=True)
class RequestId:
    """A DUIS RequestID: originator EUI-64, target EUI-64 and counter [C]. EUIs are kept in the
    canonical form "90-B3-D5-1F-30-01-00-00" (upper-case hex, hyphens); DCC's client tools write
    them lower-case, which parse accepts [C]. The counter is 0 .. 2**64-1."""

    originator: str
    target: str
    counter: int

    def __str__(self) -> str:
        return f"{self.originator}:{self.target}:{self.counter}"

    def response_id(self) -> RequestId:
        """The ResponseID answering this request: target:originator:counter [C]."""
        return RequestId(self.target, self.originator, self.counter)

    @classmethod
    def parse(cls, text: str, field: str = "Header/RequestID") -> RequestId:
        """'originator:target:counter' with ASCII hex EUIs and ASCII decimal digits only.
        DuisRefusal E10 naming `field` on any other grammar or a counter over 2**64-1."""
        m = _REQUEST_ID.fullmatch(text) if isinstance(text, str) else None
        if m is None:
            raise DuisRefusal("E10", field, f"{_shown(str(text))} is not originator-EUI:target-EUI:counter, "
                                            "EUIs written like 90-B3-D5-1F-30-01-00-00")
        counter = int(m.group(3))
        if counter > MAX_COUNTER:
            raise DuisRefusal("E10", field, f"counter {counter} is over 2**64-1")
        return cls(m.group(1).upper(), m.group(2).upper(), counter)


@dataclass(frozen=True)
class DuisRequest:
    """A parsed DUIS Request. `parameters` are the twin's parameters for the SRV (see
    `parse_request`), as DccCore expects them; `pre_command` is, for command variant 5, the
    SignedPreCommand element in exclusive c14n bytes (else None); `tree` the parsed lxml root.
    `first_in_sequence` / `preceding_request_id` are the optional header fields (None if absent)."""

    schema_version: str
    request_id: RequestId
    command_variant: int
    service_reference: str
    srv: str
    body_name: str
    parameters: dict[str, Any]
    pre_command: bytes | None
    tree: Any
    first_in_sequence: bool | None = None
    preceding_request_id: RequestId | None = None


def _camel(name: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", name.split("\n")[0])
    return "".join(w[:1].upper() + w[1:] for w in words)


def body_name(srv: str) -> str:
    """The Body element's local name for an SRV: the SR name of the DUIS matrix in CamelCase, its
    punctuation dropped ("Read Instantaneous Import Registers" -> "ReadInstantaneousImportRegisters",
    "Update Import Tariff (Primary Element)" -> "UpdateImportTariffPrimaryElement") [D]: derived from
    the names, the real XSD may differ for some SRVs. duis.UnknownSrv for an SRV not in the matrix."""
    return _camel(duis.lookup(srv).name)


# The SRVs whose bodies the twin reads: every one it implements, plus 8.2 Read Inventory.
BODIES: dict[str, str] = {srv: body_name(srv) for srv in (*duis.IMPLEMENTED, "8.2")}
DEVICE_NAMES = ("ESME", "GSME", "CH", "PPMID")  # the devices an SR 11.1 may name (the twin's)
_READS_WITH_FUEL = frozenset({"4.1.1", "4.6.1", "4.8.1", "4.17", "11.2"})
_INT = re.compile(r"[+-]?[0-9]{1,18}", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(?:[0-9]{1,12}(?:\.[0-9]{0,12})?|\.[0-9]{1,12})", re.ASCII)
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}", re.ASCII)
_UTRN = re.compile(r"[0-9]{20}", re.ASCII)
_BOOLEAN = {"true": True, "1": True, "false": False, "0": False}  # xs:boolean's lexical space


def _local(el: _Element) -> str:
    return etree.QName(el).localname


def _elements(el: _Element) -> list[_Element]:
    """The element children (comments and processing instructions are not content)."""
    return [c for c in el if isinstance(c.tag, str)]


def _text(el: _Element) -> str:
    return el.text or ""


class _Parsers(threading.local):
    # lxml parser objects must not be shared between threads: one per thread.
    def __init__(self) -> None:
        self.parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                                      dtd_validation=False, remove_blank_text=False)


_PARSERS = _Parsers()


def parse_xml(data: bytes, what: str = "Request") -> _Element:
    """Well-formed XML by the hardened parser, at most MAX_BODY_BYTES, no DOCTYPE, no entities.
    DuisRefusal E10 naming `what` otherwise."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"DUIS XML is bytes, got {type(data).__name__}")
    if len(data) > MAX_BODY_BYTES:
        raise DuisRefusal("E10", what, f"{len(data):,} bytes; at most {MAX_BODY_BYTES:,}")
    if len(data) == 0:
        raise DuisRefusal("E10", what, "empty body: a DUIS XML document is required")
    try:
        root = etree.fromstring(bytes(data), _PARSERS.parser)
    except etree.XMLSyntaxError as e:
        raise DuisRefusal("E10", what, f"not well-formed XML: {e.msg}") from None
    if root is None:
        raise DuisRefusal("E10", what, "no document element")
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise DuisRefusal("E10", what, "a DOCTYPE is not allowed in DUIS")
    for _ in root.iter(etree.Entity):  # unexpanded entity references (resolve_entities=False)
        raise DuisRefusal("E10", what, "entity references are not allowed in DUIS")
    return root


def _no_text(el: _Element, path: str, rid: RequestId | None) -> None:
    if (el.text or "").strip(" \t\r\n") or any((c.tail or "").strip(" \t\r\n") for c in el):
        raise DuisRefusal("E10", path, "text where only elements belong", rid)


def _leaf(el: _Element, path: str, rid: RequestId | None) -> str:
    if _elements(el):
        raise DuisRefusal("E10", path, f"element {_local(_elements(el)[0])} where only text belongs", rid)
    return _text(el)


def parse_request(data: bytes | _Element) -> DuisRequest:
    """Parse and check a DUIS Request: the XML bytes as sent, or an lxml root (e.g. the signed
    root `signing.verify` returns). DuisRefusal, naming the field, when:

    - E10: larger than MAX_BODY_BYTES, not well-formed, a DOCTYPE or entity; root not sr:Request;
      schemaVersion missing or not in SCHEMA_VERSIONS; header elements missing, repeated, out of
      order (RequestID, FirstInSequence?, PrecedingServiceRequestID?, CommandVariant,
      ServiceReference, ServiceReferenceVariant [C]) or of bad grammar (RequestID, CommandVariant
      1..9); ServiceReference not the SRV's reference (its first two parts); Body not exactly one
      element, or not the SRV's body element; an unknown element in the body; anything else in the
      root than Header, Body and a trailing ds:Signature (which signing.py verifies).
    - E17: a ServiceReferenceVariant not in the DUIS matrix [U]; E14: one the twin does not read [U].
    - E12: a command variant that does not fit the SRV [C]: 8 for non-device SRVs only; 4, 5, 6 or 7
      for critical device SRVs; 1, 2 or 3 for the other device SRVs; 9 for none the twin carries [U].
    - E9: a parameter missing or of the wrong type (see below) [U].

    Parameters (child elements of the body, all in NS_SR) become the twin's parameters:
    2.2 TopUpAmountPence (integer) -> {"amount_pence": int}: DUIS carries a 20-digit UTRN, which
    the twin cannot decode, so it takes the amount from this child, the twin's extension [U]; a UTRN
    child is accepted (20 ASCII digits) and not used. 1.1.1 UnitRatePence (decimal) ->
    {"unit_rate_pence": float}. 11.1 FirmwareVersion -> {"target_version": str}, optional Device
    (ESME, GSME, CH, PPMID) -> {"device": str}, optional AllowDowngrade (xs:boolean) ->
    {"allow_downgrade": bool}. 4.1.1, 4.6.1, 4.8.1, 4.17, 11.2: optional Fuel ("electricity" or
    "gas") -> {"fuel": str}. Other SRVs: an empty body -> {}. Command variant 5 carries no SR body
    but a SignedPreCommand (with a GBCSPayload) [C]: its parameters are {} and `pre_command` holds it.
    Numbers take ASCII digits only (no other Unicode digits)."""
    root = data if isinstance(data, _Element) else parse_xml(data)
    if root.tag != f"{{{NS_SR}}}Request":
        raise DuisRefusal("E10", _local(root) if isinstance(root.tag, str) else "Request",
                          f"the root element must be Request in {NS_SR}, got {_shown(str(root.tag), 80)}")
    version = root.get("schemaVersion")
    if version is None:
        raise DuisRefusal("E10", "@schemaVersion", "the schemaVersion attribute is required")
    if version not in SCHEMA_VERSIONS:
        raise DuisRefusal("E10", "@schemaVersion", f"{_shown(version)} is not one of {', '.join(SCHEMA_VERSIONS)}")
    _no_text(root, "Request", None)
    kids = _elements(root)
    if kids and kids[-1].tag == f"{{{NS_DS}}}Signature":
        kids = kids[:-1]
    names = [c.tag for c in kids]
    if names != [f"{{{NS_SR}}}Header", f"{{{NS_SR}}}Body"]:
        shown = ", ".join(_local(c) if c.tag.startswith(f"{{{NS_SR}}}") else str(c.tag) for c in kids)
        raise DuisRefusal("E10", "Request", f"expected Header, Body and an optional ds:Signature; got {shown}")
    header, body = kids
    rid, first, preceding, cv, reference, srv_id = _header(header)
    try:
        srv = duis.lookup(srv_id)
    except duis.UnknownSrv:
        raise DuisRefusal("E17", "Header/ServiceReferenceVariant", f"{_shown(srv_id)} is not a DUIS SR variant",
                          rid) from None
    want_ref = ".".join(srv_id.split(".")[:2])
    if reference != want_ref:
        raise DuisRefusal("E10", "Header/ServiceReference",
                          f"{_shown(reference)} does not match ServiceReferenceVariant {srv_id} (expected {want_ref})",
                          rid)
    if srv_id not in BODIES:
        raise DuisRefusal("E14", "Header/ServiceReferenceVariant",
                          f"the twin does not implement SR {srv_id} ({srv.name.splitlines()[0].strip()})", rid)
    _check_cv(cv, srv, rid)
    _no_text(body, "Body", rid)
    items = _elements(body)
    if len(items) != 1:
        raise DuisRefusal("E10", "Body", f"exactly one body element is required, got {len(items)}", rid)
    (item,) = items
    name = BODIES[srv_id]
    pre_command = None
    if cv == 5:
        if item.tag != f"{{{NS_SR}}}SignedPreCommand":
            raise DuisRefusal("E10", f"Body/{_local(item)}",
                              "command variant 5 carries a SignedPreCommand as its body", rid)
        _signed_pre_command(item, rid)
        pre_command = etree.tostring(item, method="c14n", exclusive=True, with_comments=False)
        params: dict[str, Any] = {}
    else:
        if item.tag != f"{{{NS_SR}}}{name}":
            raise DuisRefusal("E10", f"Body/{_local(item)}", f"SR {srv_id}'s body element is {name}", rid)
        params = _parameters(srv_id, item, f"Body/{name}", rid)
    return DuisRequest(schema_version=version, request_id=rid, command_variant=cv, service_reference=reference,
                       srv=srv_id, body_name=name, parameters=params, pre_command=pre_command, tree=root,
                       first_in_sequence=first, preceding_request_id=preceding)


def _header(header: _Element) -> tuple[RequestId, bool | None, RequestId | None, int, str, str]:
    _no_text(header, "Header", None)
    kids = _elements(header)
    order = ("RequestID", "FirstInSequence", "PrecedingServiceRequestID", "CommandVariant", "ServiceReference",
             "ServiceReferenceVariant")
    required = {"RequestID", "CommandVariant", "ServiceReference", "ServiceReferenceVariant"}
    got: dict[str, str] = {}
    rid: RequestId | None = None
    at = 0
    for el in kids:
        local = _local(el)
        if el.tag != f"{{{NS_SR}}}{local}" or local not in order:
            raise DuisRefusal("E10", f"Header/{local}", "not a DUIS request header element", rid)
        pos = order.index(local)
        if pos < at or local in got:
            raise DuisRefusal("E10", f"Header/{local}", f"out of order or repeated; the order is {', '.join(order)}",
                              rid)
        at = pos
        got[local] = _leaf(el, f"Header/{local}", rid)
        if local == "RequestID":
            rid = RequestId.parse(got[local])
        missing = [n for n in order[:pos] if n in required and n not in got]
        if missing:
            raise DuisRefusal("E10", f"Header/{missing[0]}", "required header element missing", rid)
    for n in order:
        if n in required and n not in got:
            raise DuisRefusal("E10", f"Header/{n}", "required header element missing", rid)
    assert rid is not None
    first = None
    if "FirstInSequence" in got:
        if got["FirstInSequence"] not in _BOOLEAN:
            raise DuisRefusal("E10", "Header/FirstInSequence", f"{_shown(got['FirstInSequence'])} is not a boolean",
                              rid)
        first = _BOOLEAN[got["FirstInSequence"]]
    preceding = None
    if "PrecedingServiceRequestID" in got:
        try:
            preceding = RequestId.parse(got["PrecedingServiceRequestID"], "Header/PrecedingServiceRequestID")
        except DuisRefusal as e:
            raise DuisRefusal(e.code, e.field, e.message, rid) from None
    cv_text = got["CommandVariant"]
    if not re.fullmatch(r"[0-9]{1,2}", cv_text, re.ASCII) or not 1 <= int(cv_text) <= 9:
        raise DuisRefusal("E10", "Header/CommandVariant", f"{_shown(cv_text)} is not a command variant 1 to 9", rid)
    return rid, first, preceding, int(cv_text), got["ServiceReference"], got["ServiceReferenceVariant"]


def _check_cv(cv: int, srv: duis.Srv, rid: RequestId) -> None:
    if srv.non_device:
        allowed: tuple[int, ...] = (8,)
        kind = "a non-device SR"
    elif srv.critical:
        allowed, kind = (4, 5, 6, 7), "a critical SR"
    else:
        allowed, kind = (1, 2, 3), "a non-critical device SR"
    if cv not in allowed:
        raise DuisRefusal("E12", "Header/CommandVariant",
                          f"command variant {cv} does not apply to SR {srv.srv}, {kind} (allowed: "
                          f"{', '.join(map(str, allowed))})", rid)


def _signed_pre_command(item: _Element, rid: RequestId) -> None:
    _no_text(item, "Body/SignedPreCommand", rid)
    kids = _elements(item)
    if [c.tag for c in kids] != [f"{{{NS_SR}}}GBCSPayload"]:
        raise DuisRefusal("E10", "Body/SignedPreCommand", "a SignedPreCommand holds one GBCSPayload", rid)
    _base64(kids[0], "Body/SignedPreCommand/GBCSPayload", rid)


def _base64(el: _Element, path: str, rid: RequestId | None) -> bytes:
    text = _leaf(el, path, rid)
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, ValueError):
        raise DuisRefusal("E9", path, "not base64", rid) from None


def signed_pre_command_payload(request: DuisRequest) -> bytes:
    """The GBCS payload a command variant 5 request carries (decoded); ValueError for another CV."""
    if request.command_variant != 5:
        raise ValueError(f"command variant {request.command_variant} carries no signed pre-command")
    el = request.tree.find(f"{{{NS_SR}}}Body/{{{NS_SR}}}SignedPreCommand/{{{NS_SR}}}GBCSPayload")
    return _base64(el, "Body/SignedPreCommand/GBCSPayload", request.request_id)


# Per SRV: parameter element -> (the twin's parameter name, kind, required); a name of "" is
# accepted and not used (2.2's UTRN).
PARAMETERS: dict[str, dict[str, tuple[str, str, bool]]] = {
    "2.2": {"TopUpAmountPence": ("amount_pence", "int", True), "UTRN": ("", "utrn", False)},
    "1.1.1": {"UnitRatePence": ("unit_rate_pence", "decimal", True)},
    "11.1": {"FirmwareVersion": ("target_version", "version", True), "Device": ("device", "device", False),
             "AllowDowngrade": ("allow_downgrade", "boolean", False)},
    **{srv: {"Fuel": ("fuel", "fuel", False)} for srv in sorted(_READS_WITH_FUEL)},
}


def _parameters(srv: str, item: _Element, path: str, rid: RequestId) -> dict[str, Any]:
    spec = PARAMETERS.get(srv, {})
    _no_text(item, path, rid)
    out: dict[str, Any] = {}
    seen: set[str] = set()
    for el in _elements(item):
        local = _local(el)
        here = f"{path}/{local}"
        if el.tag != f"{{{NS_SR}}}{local}" or local not in spec:
            allowed = ", ".join(spec) or "nothing"
            raise DuisRefusal("E10", here, f"not a parameter of SR {srv} (allowed: {allowed})", rid)
        if local in seen:
            raise DuisRefusal("E10", here, "repeated", rid)
        seen.add(local)
        name, kind, _ = spec[local]
        value = _value(kind, _leaf(el, here, rid), here, rid)
        if name:
            out[name] = value
    for local, (_, _, required) in spec.items():
        if required and local not in seen:
            raise DuisRefusal("E9", f"{path}/{local}", f"SR {srv} needs {local}", rid)
    return out


def _value(kind: str, text: str, path: str, rid: RequestId) -> Any:
    if kind == "int":
        if not _INT.fullmatch(text):
            raise DuisRefusal("E9", path, f"{_shown(text)} is not an integer (ASCII digits)", rid)
        return int(text)
    if kind == "decimal":
        if not _DECIMAL.fullmatch(text):
            raise DuisRefusal("E9", path, f"{_shown(text)} is not a decimal number (ASCII digits)", rid)
        return float(text)
    if kind == "version":
        if not _VERSION.fullmatch(text):
            raise DuisRefusal("E9", path, f"{_shown(text)} is not a firmware version (1 to 64 ASCII letters, "
                                          "digits, '.', '_', '+', '-')", rid)
        return text
    if kind == "device":
        if text not in DEVICE_NAMES:
            raise DuisRefusal("E9", path, f"{_shown(text)} is not one of {', '.join(DEVICE_NAMES)}", rid)
        return text
    if kind == "boolean":
        if text not in _BOOLEAN:
            raise DuisRefusal("E9", path, f"{_shown(text)} is not a boolean (true, false, 1, 0)", rid)
        return _BOOLEAN[text]
    if kind == "fuel":
        if text not in ("electricity", "gas"):
            raise DuisRefusal("E9", path, f"{_shown(text)} is not electricity or gas", rid)
        return text
    if kind == "utrn":
        if not _UTRN.fullmatch(text):
            raise DuisRefusal("E9", path, f"{_shown(text)} is not a UTRN (20 ASCII digits)", rid)
        return text
    raise AssertionError(kind)


# ---- builders ---------------------------------------------------------------------------------

# Response bodies are written in the sr namespace, as DCC's own client tool (@smartdcc/duis-parser)
# writes and reads them [C]; `ra` (ResponseAndAlert) holds the DCC's decoded GBCS content, which
# the twin does not produce (it carries its JSON results in GBCSPayload instead) [D].
_NSMAP = {"sr": NS_SR}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", re.ASCII)
_ALERT_CODE = re.compile(r"[0-9A-F]{4}", re.ASCII)  # a GBCS alert code in hex [C]
_DCC_ALERT_CODE = re.compile(r"AD1|N[1-9][0-9]?", re.ASCII)  # AD1 or N1..N65 [C]
# The DSP inventory's vocabulary (8.2) [C] (DUIS.md); "CH" is the twin's name of the hub (CHF).
DEVICE_TYPES = ("ESME", "GSME", "GPF", "CHF", "HCALCS", "PPMID", "IHD", "CAD")
DEVICE_STATUSES = ("Pending", "Whitelisted", "InstalledNotCommissioned", "Commissioned", "Decommissioned",
                   "Withdrawn", "Suspended", "Recovery", "Recovered")
CSP_REGIONS = ("North", "Central", "South", "4G North", "4G Central", "4G South", "Unknown", "SMETS1")
# Inventory entry keys -> element names [U]: DUIS names these fields, the element names are the
# twin's spelling of them.
_INVENTORY = (("device_id", "DeviceID", True), ("type", "DeviceType", True), ("status", "DeviceStatus", True),
              ("manufacturer", "DeviceManufacturer", True), ("model", "DeviceModel", True),
              ("firmware_version", "FirmwareVersion", True), ("csp_region", "CSPRegion", True),
              ("firmware_status", "FirmwareVersionStatus", False), ("uprn", "UPRN", False),
              ("postcode", "Postcode", False), ("gbcs_version", "GBCSVersion", False),
              ("han_variant", "HANVariant", False))


def _sr(parent: _Element | None, name: str, text: str | None = None) -> _Element:
    tag = f"{{{NS_SR}}}{name}"
    el = etree.Element(tag, nsmap=_NSMAP) if parent is None else etree.SubElement(parent, tag)
    if text is not None:
        el.text = text
    return el


def _xml_text(value: str, what: str) -> str:
    """A string fit for XML 1.0 text; ValueError naming `what` otherwise (lxml refuses control
    characters itself, with a less clear message)."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}")
    if re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]", value):
        raise ValueError(f"{what} has a character XML cannot carry: {_shown(value)}")
    return value


def response_tree(*, schema_version: str, request_id: RequestId | None, code: str, when: datetime,
                  body: _Element | None = None, response_id: RequestId | None = None) -> _Element:
    """An sr:Response: schemaVersion, Header (RequestID and ResponseID when the request is known,
    in that order, then ResponseCode and ResponseDateTime [C]) and the optional Body (from
    response_message, device_alert or dcc_alert). `response_id` overrides the ResponseID
    (default request_id.response_id()). `when` is an aware datetime, written in UTC with
    milliseconds ("2026-12-02T01:00:00.000Z"). ValueError for a schema version not in
    SCHEMA_VERSIONS, a code not in RESPONSE_CODES, a naive `when`, or a body not an sr:Body."""
    if schema_version not in SCHEMA_VERSIONS:
        raise ValueError(f"schema version {schema_version!r} is not one of {SCHEMA_VERSIONS}")
    if code not in RESPONSE_CODES:
        raise ValueError(f"response code {code!r} is not in RESPONSE_CODES")
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("the response time must be an aware datetime")
    if body is not None and body.tag != f"{{{NS_SR}}}Body":
        raise ValueError(f"the body must be an sr:Body element, got {body.tag!r}")
    root = _sr(None, "Response")
    root.set("schemaVersion", schema_version)
    header = _sr(root, "Header")
    if request_id is not None:
        _sr(header, "RequestID", str(request_id))
    rsp = response_id if response_id is not None else request_id.response_id() if request_id is not None else None
    if rsp is not None:
        _sr(header, "ResponseID", str(rsp))
    _sr(header, "ResponseCode", code)
    _sr(header, "ResponseDateTime", format_time(when))
    if body is not None:
        root.append(body)
    return root


def format_time(when: datetime) -> str:
    """ISO 8601 UTC with milliseconds and Z, e.g. 2026-12-02T01:00:00.000Z [C]."""
    t = when.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _b64(data: bytes) -> str:
    if not isinstance(data, bytes | bytearray):
        raise ValueError(f"a GBCS payload is bytes, got {type(data).__name__}")
    return base64.b64encode(bytes(data)).decode("ascii")


def response_message(srv: str, *, gbcs_payload: bytes | None = None, inventory: list[dict[str, Any]] | None = None,
                     wan_matrix: dict[str, Any] | None = None,
                     pre_command: tuple[str, bytes] | None = None) -> _Element:
    """sr:Body/ResponseMessage with ServiceReference, ServiceReferenceVariant [C] and at most one of:
    - GBCSPayload (base64 of `gbcs_payload`) [C]: the twin carries its JSON result here, it does not
      encode GBCS [U];
    - DSPInventory (8.2) [C]: one Device per entry of `inventory`, each a dict with device_id, type
      (DEVICE_TYPES; the twin's "CH" is written CHF), status (DEVICE_STATUSES), manufacturer, model,
      firmware_version, csp_region (CSP_REGIONS) and optionally firmware_status, uprn, postcode,
      gbcs_version, han_variant; element names are the twin's [U];
    - DSPWANMatrix (12.1) [C]: `wan_matrix` written as elements, keys as element names (ASCII
      names), values str / int / float / bool (true/false) or nested dicts [U];
    - PreCommand (GBCSVersion, GBCSPayload) [C] from `pre_command` = (GBCS version, payload).
    None of them: the reference elements only. ValueError for an SRV not in the DUIS matrix, more
    than one payload or a value not as described."""
    try:
        duis.lookup(srv)
    except duis.UnknownSrv as e:
        raise ValueError(str(e)) from None
    given = [x for x in (gbcs_payload, inventory, wan_matrix, pre_command) if x is not None]
    if len(given) > 1:
        raise ValueError("a ResponseMessage carries at most one of gbcs_payload, inventory, wan_matrix, pre_command")
    body = _sr(None, "Body")
    msg = _sr(body, "ResponseMessage")
    _sr(msg, "ServiceReference", ".".join(srv.split(".")[:2]))
    _sr(msg, "ServiceReferenceVariant", srv)
    if gbcs_payload is not None:
        _sr(msg, "GBCSPayload", _b64(gbcs_payload))
    elif inventory is not None:
        inv = _sr(msg, "DSPInventory")
        for i, entry in enumerate(inventory):
            _inventory_device(inv, entry, i)
    elif wan_matrix is not None:
        _fields(_sr(msg, "DSPWANMatrix"), wan_matrix, "wan_matrix")
    elif pre_command is not None:
        version, payload = pre_command
        pre = _sr(msg, "PreCommand")
        _sr(pre, "GBCSVersion", _xml_text(version, "the GBCS version"))
        _sr(pre, "GBCSPayload", _b64(payload))
    return body


def _inventory_device(parent: _Element, entry: dict[str, Any], i: int) -> None:
    if not isinstance(entry, dict):
        raise ValueError(f"inventory[{i}] must be a dict")
    unknown = set(entry) - {k for k, _, _ in _INVENTORY}
    if unknown:
        raise ValueError(f"inventory[{i}] has unknown keys {sorted(unknown)}")
    dev = _sr(parent, "Device")
    for key, element, required in _INVENTORY:
        if key not in entry:
            if required:
                raise ValueError(f"inventory[{i}] needs {key}")
            continue
        value = _xml_text(entry[key], f"inventory[{i}].{key}")
        if key == "type":
            value = "CHF" if value == "CH" else value
            allowed: tuple[str, ...] | None = DEVICE_TYPES
        else:
            allowed = {"status": DEVICE_STATUSES, "csp_region": CSP_REGIONS}.get(key)
        if allowed is not None and value not in allowed:
            raise ValueError(f"inventory[{i}].{key} {value!r} is not one of {allowed}")
        _sr(dev, element, value)


def _fields(parent: _Element, fields: dict[str, Any], what: str) -> None:
    if not isinstance(fields, dict):
        raise ValueError(f"{what} must be a dict")
    for key, value in fields.items():
        if not isinstance(key, str) or not _NAME.fullmatch(key) or key.lower().startswith("xml"):
            raise ValueError(f"{what} key {key!r} is not an ASCII XML element name")
        if isinstance(value, dict):
            _fields(_sr(parent, key), value, f"{what}.{key}")
        elif isinstance(value, bool):
            _sr(parent, key, "true" if value else "false")
        elif isinstance(value, int | float):
            _sr(parent, key, repr(value))
        elif isinstance(value, str):
            _sr(parent, key, _xml_text(value, f"{what}.{key}"))
        else:
            raise ValueError(f"{what}.{key} must be a str, number, bool or dict, got {type(value).__name__}")


def _throttle(parent: _Element, sequence_id: int | None, count: int | None) -> None:
    for name, value in (("ThrottledAlertSequenceId", sequence_id), ("ThrottledAlertCount", count)):
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int")
            _sr(parent, name, str(value))


def device_alert(alert_code: str, gbcs_payload: bytes, *, throttled_sequence_id: int | None = None,
                 throttled_count: int | None = None) -> _Element:
    """sr:Body/DeviceAlertMessage: AlertCode (4 upper-case hex digits, e.g. "8F84") [C], the
    optional throttle fields (alert storm protection) [C], GBCSPayload (base64; the twin's JSON) [U].
    ValueError for a bad code or payload."""
    if not isinstance(alert_code, str) or not _ALERT_CODE.fullmatch(alert_code):
        raise ValueError(f"alert code {alert_code!r} is not 4 upper-case hex digits")
    body = _sr(None, "Body")
    msg = _sr(body, "DeviceAlertMessage")
    _sr(msg, "AlertCode", alert_code)
    _throttle(msg, throttled_sequence_id, throttled_count)
    _sr(msg, "GBCSPayload", _b64(gbcs_payload))
    return body


def dcc_alert(dcc_alert_code: str, fields: dict[str, Any], *, throttled_sequence_id: int | None = None,
              throttled_count: int | None = None) -> _Element:
    """sr:Body/DCCAlertMessage: DCCAlertCode (AD1 or N1..N65) [C], the optional throttle fields,
    DCCAlert holding `fields` as elements (keys ASCII element names; values str / number / bool or
    nested dicts, e.g. {"PowerOutageEvent": {"CommsHubID": ...}}) [C] for the shape, [U] for the
    names the twin writes. ValueError for a bad code or field."""
    m = _DCC_ALERT_CODE.fullmatch(dcc_alert_code) if isinstance(dcc_alert_code, str) else None
    if m is None or (dcc_alert_code.startswith("N") and not 1 <= int(dcc_alert_code[1:]) <= 65):
        raise ValueError(f"DCC alert code {dcc_alert_code!r} is not AD1 or N1..N65")
    if not fields:
        raise ValueError("a DCC alert carries at least one field")
    body = _sr(None, "Body")
    msg = _sr(body, "DCCAlertMessage")
    _sr(msg, "DCCAlertCode", dcc_alert_code)
    _throttle(msg, throttled_sequence_id, throttled_count)
    _fields(_sr(msg, "DCCAlert"), fields, "fields")
    return body


def to_bytes(el: _Element) -> bytes:
    """The element as a UTF-8 XML document with an XML declaration."""
    return etree.tostring(el, xml_declaration=True, encoding="UTF-8")
