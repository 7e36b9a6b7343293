"""DUIS onto the DCC: a signed DUIS request checked (format, sender, signature, URL and command
variant, RequestID counter) and handed to the same DccCore the gRPC API calls; its outcome
answered as a signed DUIS Response; deferred responses and alerts followed from the DCC's logs and
handed to `delivery` for each User with a receive URL.

Which DUIS response code answers what (twin.services.duis_gateway.wire.RESPONSE_CODES has their
meanings and sources):

| outcome | code | HTTP |
| --- | --- | --- |
| answered now | I0 | 200 |
| accepted, answer follows on the receive URL | I99 | 200 |
| malformed, wrong namespace or schema version, bad header | E10 | 400 |
| body over the size limit | E10 | 413 |
| originator unknown to the PKI or the user store, or an operator | E1 | 200 |
| signature missing, bad, or by another party's key | E6 | 200 |
| command variant not valid for the URL | E13 | 200 |
| command variant not valid for the SRV (critical via 1, non-device via 1, ...) | E12 | 200 |
| RequestID counter not above the last one (a repeat included) | E8 | 200 |
| role not eligible for the SRV | E2 | 200 |
| premises not the User's, or a signed pre-command not matching the one issued | E4 | 200 |
| no such device | E19 | 200 |
| a parameter refused | E9 | 200 |
| the state forbids it (e.g. no image waiting to activate) | E5 | 200 |
| accepted, then the device could not be reached | E20 | 200 |
| an SRV the twin does not model | E14 | 200 |
| held in quarantine | E15 | 200 |
| the twin is busy (more than `max_in_flight` requests at once, or its quarantine full) | E16 | 503 / 200 |

Every answer, refusals included, is signed with the twin's own DUIS credential; a refusal changes
nothing (nothing applied, no counter used)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509 import Certificate

from twin.engine.requests import RequestIdError
from twin.services.dcc.alerts import DeviceAlert
from twin.services.dcc.core import DccCore
from twin.services.dcc.errors import Code, DccError, PositionExpired, StreamBehind
from twin.services.dcc.requests import MAX_PARAMETERS_BYTES, ResponseStatus, ServiceRequest, ServiceResponse
from twin.services.duis_gateway import wire
from twin.services.duis_gateway.delivery import Delivery, Message
from twin.services.duis_gateway.pki import Party, Pki
from twin.services.duis_gateway.signing import SignatureRefused, verify
from twin.services.identity import OPERATOR, Identity

log = logging.getLogger(__name__)

# The command variants each DUIS web service takes (DUIS.md [C]: Send Command 1, 2, 5, 6;
# Non-Device 8; Transform 4). 3 and 7 (WAN plus local delivery) are not supported by DCC's own
# test system; the twin has no local delivery (2, 6) either.
SERVICE_VARIANTS = {"S": frozenset({1, 2, 3, 5, 6, 7}), "D": frozenset({8}), "T": frozenset({4})}
MODELLED_VARIANTS = frozenset({1, 4, 5, 8})
GBCS_VERSION = "4.0"  # the GBCS version a pre-command is issued under [U]
MAX_IN_FLIGHT = 256  # requests answered at once; more are told E16 (busy), as the gRPC API says RESOURCE_EXHAUSTED
PRE_COMMANDS_KEPT = 10_000  # pre-commands issued and not yet sent back signed (oldest dropped first)
SIGNATURE_BYTES = 64  # a raw ECDSA P-256 signature, r || s, as GBCS appends it to a command


@dataclass(frozen=True)
class Answer:
    """The HTTP answer to a DUIS request: status, signed DUIS Response XML, and its response code."""

    status: int
    xml: bytes
    code: str


@dataclass(frozen=True)
class Issued:
    """A pre-command issued by Transform: the request it was made from and its payload."""

    request: ServiceRequest
    payload: bytes


class Refusal(Exception):
    def __init__(self, code: str, message: str, *, status: int = 200):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def dcc_code(e: DccError) -> str:
    """The DUIS response code of a DCC refusal (see the module table)."""
    field = e.field or ""
    if e.code is Code.PERMISSION_DENIED:
        if field == "srv":
            return "E2"
        if field == "signature":
            return "E6"
        return "E4"
    if e.code is Code.NOT_FOUND:
        return "E19"
    if e.code is Code.UNIMPLEMENTED:
        return "E14"
    if e.code is Code.RESOURCE_EXHAUSTED:
        # A request held (quota: its quarantine entry) is E15; the quarantine full, E16 busy.
        return "E15" if e.quota not in ("", "quarantine") else "E16"
    if field == "request_id":
        return "E8"
    if e.code in (Code.FAILED_PRECONDITION, Code.ABORTED, Code.ALREADY_EXISTS):
        return "E5"
    if field == "target":
        return "E19"
    return "E9"


def failed_code(resp: ServiceResponse) -> str:
    """A request accepted and then not carried out: E20 when the device could not be reached, else E5."""
    return "E20" if "unreachable" in resp.detail else "E5"


def pre_command_payload(request: ServiceRequest) -> bytes:
    """The command a critical request becomes, as the twin issues it for the User to sign: the
    canonical JSON of its SRV, target, RequestID and parameters (the twin's stand-in for a GBCS
    command, which it does not encode [U])."""
    body = {"srv": request.srv, "target": request.target, "request_id": request.request_id,
            "parameters": request.parameters or {}}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign_pre_command(key: ec.EllipticCurvePrivateKey, payload: bytes) -> bytes:
    """A User's signed pre-command: the payload with its raw ECDSA P-256 / SHA-256 signature (r || s,
    32 bytes each) appended, as GBCS appends a supplier's signature to a command."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(key.sign(payload, ec.ECDSA(hashes.SHA256())))
    return payload + r.to_bytes(32, "big") + s.to_bytes(32, "big")


def check_pre_command(cert: Certificate, signed: bytes) -> bytes:
    """The payload of a signed pre-command if its signature verifies with the certificate's key;
    Refusal E6 otherwise."""
    if len(signed) <= SIGNATURE_BYTES:
        raise Refusal("E6", "the signed pre-command is shorter than its signature")
    payload, sig = signed[:-SIGNATURE_BYTES], signed[-SIGNATURE_BYTES:]
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise Refusal("E6", "the sender's certificate has no EC key")
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    try:
        key.verify(der, payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Refusal("E6", "the pre-command's signature does not verify with the sender's key") from None
    return payload


class DuisGateway:
    """`core` is the DCC (the gRPC API's own, so both doors share ledger, quarantine and response
    logs); `pki` names the DCC Users' certificates by EUI and holds the twin's signing credential;
    `users()` lists the user store's identities (role and party come from there); `now()` the
    wall time responses are stamped with."""

    def __init__(self, core: DccCore, pki: Pki, users: Callable[[], Iterable[Identity]], *,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC), max_in_flight: int = MAX_IN_FLIGHT):
        self.core = core
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.pki = pki
        self.users = users
        self.now = now
        self.signer = pki.signer(pki.dcc.user_id)
        # (user id, RequestID) -> the pre-command issued by Transform, waiting to come back signed.
        self._pre_commands: OrderedDict[tuple[str, str], Issued] = OrderedDict()

    # -- the synchronous path -------------------------------------------------------------------
    async def handle(self, service: str, data: bytes) -> Answer:
        """Answer one DUIS request sent to `service` ("S" Send Command, "D" Non-Device, "T"
        Transform). Never raises for bad input: every refusal is a signed DUIS Response. Past
        `max_in_flight` requests being answered at once, E16 (HTTP 503) at once: send it again later."""
        if self.in_flight >= self.max_in_flight:
            return self._answer(503, "E16", None, None, detail=f"{self.in_flight} requests in flight")
        self.in_flight += 1
        try:
            return await self._handle(service, data)
        finally:
            self.in_flight -= 1

    def too_large(self) -> Answer:
        """The answer to a body over wire.MAX_BODY_BYTES (read no further than that): E10, HTTP 413."""
        return self._answer(413, "E10", None, None,
                            detail=f"Request: larger than {wire.MAX_BODY_BYTES:,} bytes")

    async def _handle(self, service: str, data: bytes) -> Answer:
        try:
            req = wire.parse_request(data)
        except wire.DuisRefusal as e:
            status = 413 if len(data) > wire.MAX_BODY_BYTES else 400
            return self._answer(status, e.code, None, e.request_id, detail=f"{e.field}: {e.message}")
        try:
            body, code = await self._process(service, req)
        except Refusal as e:
            return self._answer(e.status, e.code, req.schema_version, req.request_id, detail=e.message)
        except DccError as e:
            return self._answer(200, dcc_code(e), req.schema_version, req.request_id,
                                detail=f"{e.field}: {e.message}" if e.field else e.message)
        return self._answer(200, code, req.schema_version, req.request_id, body=body)

    def sender(self, req: wire.DuisRequest) -> tuple[wire.DuisRequest, Party, Identity]:
        """The DCC User that sent `req`, once its signature verifies: the request as signed (parsed
        again from what the signature covers, so nothing unsigned is read), the User's PKI party
        (by the RequestID's originator EUI) and its identity in the user store. Refusal E1 / E6."""
        party = self.pki.by_eui(req.request_id.originator)
        if party is None or party.user_id == self.pki.dcc.user_id:
            raise Refusal("E1", f"originator {req.request_id.originator} is not a DCC User known to this twin")
        try:
            signed = verify(req.tree, party.cert)
        except SignatureRefused as e:
            raise Refusal("E6", f"signature refused: {e.reason}") from None
        identity = next((u for u in self.users() if u.user_id == party.user_id), None)
        if identity is None or identity.role == OPERATOR:
            raise Refusal("E1", f"{party.user_id} is not a DCC User of this twin (no user of that id, or an operator)")
        return wire.parse_request(signed), party, identity

    @staticmethod
    def check_variant(service: str, req: wire.DuisRequest) -> None:
        """The URL takes the request's command variant (E13) and the twin models it (E12); that
        the variant fits the SRV is wire.parse_request's check."""
        cv = req.command_variant
        if cv not in SERVICE_VARIANTS[service]:
            raise Refusal("E13", f"command variant {cv} is not taken by /api/v1/service{service}, which takes "
                                 f"{', '.join(map(str, sorted(SERVICE_VARIANTS[service])))}")
        if cv not in MODELLED_VARIANTS:
            raise Refusal("E12", f"command variant {cv} (local delivery) is not supported by the twin")

    async def _process(self, service: str, req: wire.DuisRequest) -> tuple[Any, str]:
        self.check_variant(service, req)
        req, party, identity = self.sender(req)
        rid = str(req.request_id)
        try:
            self.core.ledger.check_fresh(identity.user_id, rid)
        except RequestIdError as e:
            raise Refusal("E8", e.message) from None
        if req.command_variant == 5:
            issued = self._pre_commands.get((identity.user_id, rid))
            if issued is None:
                raise Refusal("E4", f"no pre-command was issued for {rid} (send the request to serviceT first)")
            if issued.request.srv != req.srv:
                raise Refusal("E4", f"the pre-command issued for {rid} is for SR {issued.request.srv}, not {req.srv}")
            payload = check_pre_command(party.cert, wire.signed_pre_command_payload(req))
            if payload != issued.payload:
                raise Refusal("E4", "the signed pre-command is not the one the twin issued for this RequestID")
            resp = await self.core.submit(identity, replace(issued.request, countersigned=True))
            self._pre_commands.pop((identity.user_id, rid), None)  # applied: it cannot come back
            return self.outcome(resp)
        request = self.service_request(req)
        if req.command_variant == 4:
            # Every check the command will meet, nothing applied; the User signs what comes back.
            await self.core.check(identity, replace(request, countersigned=True))
            payload = pre_command_payload(request)
            self._pre_commands[(identity.user_id, rid)] = Issued(request, payload)
            while len(self._pre_commands) > PRE_COMMANDS_KEPT:
                self._pre_commands.popitem(last=False)
            return wire.response_message(req.srv, pre_command=(GBCS_VERSION, payload)), "I0"
        return self.outcome(await self.core.submit(identity, request))

    def service_request(self, req: wire.DuisRequest) -> ServiceRequest:
        """The DCC's request: the device the RequestID targets is the premises addressed."""
        params = req.parameters or None
        size = len(json.dumps(params).encode()) if params else 0
        if size > MAX_PARAMETERS_BYTES:
            raise Refusal("E9", f"parameters of {size:,} bytes; at most {MAX_PARAMETERS_BYTES:,}")
        return ServiceRequest(srv=req.srv, target=f"hubs/{req.request_id.target}", request_id=str(req.request_id),
                              parameters=params, parameters_bytes=size)

    def outcome(self, resp: ServiceResponse) -> tuple[Any, str]:
        """(DUIS body, response code) of the DCC's response."""
        if resp.status is ResponseStatus.ACKNOWLEDGED:
            return None, "I99"
        if resp.status is ResponseStatus.FAILED:
            return None, failed_code(resp)
        return result_body(resp), "I0"

    def _answer(self, status: int, code: str, schema_version: str | None, request_id: wire.RequestId | None, *,
                body: Any = None, detail: str = "") -> Answer:
        if code.startswith("E"):
            log.info("DUIS request %s refused %s: %s", request_id, code, detail)
        tree = wire.response_tree(schema_version=schema_version or wire.SCHEMA_VERSIONS[-1], request_id=request_id,
                                  code=code, when=self.now(), body=body)
        return Answer(status, self.signer.sign(tree), code)

    # -- the asynchronous path ------------------------------------------------------------------
    def deferred_message(self, user_id: str, resp: ServiceResponse) -> Message | None:
        """A deferred response as the signed DUIS Response POSTed to its User (None for a
        response to a request that did not carry a DUIS RequestID: that User reads it on the gRPC
        stream)."""
        try:
            rid = wire.RequestId.parse(resp.request_id)
        except wire.DuisRefusal:
            return None
        body, code = self.outcome(resp)
        tree = wire.response_tree(schema_version=wire.SCHEMA_VERSIONS[-1], request_id=rid, code=code,
                                  when=self.now(), body=body)
        return Message(user_id, str(rid.response_id()), self.signer.sign(tree), asyncio.get_running_loop().time())

    def alert_message(self, party: Party, alert: DeviceAlert) -> Message:
        """A device alert, or the DCC's own AD1 power-outage alert, as the signed DUIS message POSTed
        to `party`: ResponseID device EUI : User EUI : the alert's position (unique, increasing)."""
        device = alert.hub.removeprefix("hubs/")
        rid = wire.RequestId(device, party.eui, alert.position)
        if alert.code == "AD1":
            body = wire.dcc_alert("AD1", {"CommsHubID": device, "PowerOutageStartTime": _iso(alert.time)})
        else:
            payload = json.dumps({"kind": alert.kind, "hub": alert.hub, "time": _iso(alert.time),
                                  "area_id": alert.area_id, "csp": alert.csp}, separators=(",", ":")).encode()
            body = wire.device_alert(alert.code.removeprefix("0x"), payload)
        tree = wire.response_tree(schema_version=wire.SCHEMA_VERSIONS[-1], request_id=None, code="I0",
                                  when=self.now(), body=body, response_id=rid)
        return Message(party.user_id, f"alert:{alert.position}", self.signer.sign(tree),
                       asyncio.get_running_loop().time())


def result_body(resp: ServiceResponse) -> Any:
    """The DUIS body of a COMPLETED response: the inventory (8.2) and WAN matrix (12.1) in their
    DUIS shapes; any other result as the twin's JSON in GBCSPayload (documented: no GBCS encoding)."""
    if resp.srv == "8.2":
        return wire.response_message(resp.srv, inventory=resp.result["devices"])
    if resp.srv == "12.1":
        return wire.response_message(resp.srv, wan_matrix=resp.result)
    payload = json.dumps(resp.result, sort_keys=True, separators=(",", ":")).encode()
    return wire.response_message(resp.srv, gbcs_payload=payload)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Followers:
    """Per DCC User with a receive URL: a task following its deferred responses and one following
    its alerts, each handing signed messages to `delivery` in order. A task that fails is logged
    with its cause and restarted after what it handed over last (a consumer that falls behind is
    resumed where it was, never skipped); `errors` keeps the last failures for health reports."""

    def __init__(self, gateway: DuisGateway, delivery: Delivery, *, delivery_s: float = 30.0):
        self.gateway = gateway
        self.delivery = delivery
        self.delivery_s = delivery_s
        self.errors: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for party in self.gateway.pki.parties():
            if party.receive_url is None:
                continue
            identity = next((u for u in self.gateway.users() if u.user_id == party.user_id), None)
            if identity is None or identity.role == OPERATOR:
                log.warning("DUIS receive URL of %s ignored: no DCC User of that id", party.user_id)
                continue
            self._tasks.append(asyncio.create_task(self._responses(identity), name=f"duis-responses-{party.user_id}"))
            self._tasks.append(asyncio.create_task(self._alerts(party, identity), name=f"duis-alerts-{party.user_id}"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _responses(self, identity: Identity) -> None:
        logbook = self.gateway.core.responses.of(identity.user_id)
        after = logbook.start(None)
        while True:
            try:
                async for resp in logbook.follow(after, delivery_s=self.delivery_s):
                    msg = self.gateway.deferred_message(identity.user_id, resp)
                    if msg is not None:
                        self.delivery.enqueue(msg)
                    after = resp.position
            except asyncio.CancelledError:
                raise
            except StreamBehind as e:
                after = e.resume_after  # resumed after the last response handed over
            except PositionExpired as e:  # fell behind what the log keeps: said, then the oldest kept
                self._gap(f"responses of {identity.user_id}", e)
                after = e.oldest
            except Exception as e:  # reported, then resumed where it was
                self._failed(f"responses of {identity.user_id}", e)
                await asyncio.sleep(1.0)

    async def _alerts(self, party: Party, identity: Identity) -> None:
        feed = self.gateway.core.alerts
        after: int | None = None  # from the next tick, the first time
        while True:
            try:
                cursor = feed.start(identity, set(), after)
                after = cursor.after  # (a restart resumes here, never from a later "now")
                async for alert in feed.follow(cursor, delivery_s=self.delivery_s):
                    self.delivery.enqueue(self.gateway.alert_message(party, alert))
                    after = alert.position
            except asyncio.CancelledError:
                raise
            except StreamBehind:
                continue  # resumed after the last alert handed over
            except PositionExpired as e:
                self._gap(f"alerts of {identity.user_id}", e)
                after = e.oldest
            except Exception as e:
                self._failed(f"alerts of {identity.user_id}", e)
                await asyncio.sleep(1.0)

    def _gap(self, what: str, e: PositionExpired) -> None:
        log.error("DUIS delivery of %s fell behind retention: positions %d to %d are no longer held and were not "
                  "delivered", what, e.requested + 1, e.oldest)
        self.errors = [*self.errors[-9:], f"{what}: positions {e.requested + 1} to {e.oldest} expired undelivered"]

    def _failed(self, what: str, e: Exception) -> None:
        log.exception("DUIS delivery of %s failed; resuming where it was", what)
        self.errors = [*self.errors[-9:], f"{what}: {type(e).__name__}: {e}"]
