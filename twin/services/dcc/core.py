"""The DCC's logic behind every front door: a Service Request checked (request id, DUIS catalogue,
premises, eligibility, signature, parameters, anomaly thresholds), routed to the CSP region of its
hub, answered now or acknowledged and answered later on the user's response log; quarantined
requests released or deleted; device alerts fanned out to the users entitled to them.

The gRPC DccServicer and the DUIS gateway translate their wire to and from these plain dataclasses
and DccError; nothing here imports gRPC or generated code."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from twin.engine.alert_log import AlertLog
from twin.engine.interface import HubReads, ShardAccess
from twin.engine.operations import OperationField, OperationFilter, OperationRetired, OperationTerm
from twin.engine.requests import RequestIdError, RequestKey, RequestLedger, Seen
from twin.model.catalog import MESSAGE_CLASS, Csp, MessageType, TrafficClass
from twin.model.config import TwinInputError
from twin.model.ops.validation import CommandConflict
from twin.model.params import HALF_HOURS_PER_DAY
from twin.model.query import REGION_OF_AREA
from twin.model.readings import READ_SRVS
from twin.services import duis
from twin.services.anomaly import AnomalyDetector, QuarantineEntry, QuarantineFull
from twin.services.batching import ShardBatcher
from twin.services.dcc.alerts import AlertFeed
from twin.services.dcc.errors import Code, DccError, conflict, denied, invalid, not_found, quarantined, request_id_refusal
from twin.services.dcc.requests import (
    ACKNOWLEDGED_DETAIL,
    MAX_PARAMETERS_BYTES,
    MAX_REQUEST_ID,
    NEEDS_RECORD,
    ResponseStatus,
    ServiceRequest,
    ServiceResponse,
    check_deadline,
    check_duis_target,
    check_params,
    command_for,
    coverage,
    device_list,
    hub_of,
    inventory,
    operation_response,
    read_fuel,
    response,
    role_fuel,
)
from twin.services.dcc.responses import PENDING_READ_DAYS, DueAnswers, Pending, ResponseLogs
from twin.services.identity import Identity
from twin.services.policy import PolicyError, authorise, quarantine_scope
from twin.services.signing import SignatureChecker, SignatureError
from twin.util.background import spawn

log = logging.getLogger(__name__)

ANSWER_WITHIN_S = 3.0  # how long a device-changing request waits for its tick before acknowledging
# The network message a read Service Request is carried as (its class gives the queue it waits in
# and the Target Response Time that is its default deadline).
READ_MESSAGE = MessageType.ON_DEMAND_READ
MAX_RELEASED = 10_000
# The read a bulk submission checks and answers in bulk (the register read, the commonest
# on-demand read); other SRVs of a batch go one by one through `submit`.
BULK_READ = "4.1.1"
# A bulk batch gives the event loop back every this many requests (a few milliseconds of work),
# so a batch of 10,000 never holds up the other calls the server answers (GetHub) for long.
YIELD_EVERY = 200  # answers of recent releases kept, so a retried release answers the same


class DccEngine(HubReads, ShardAccess, Protocol):
    """What the DCC needs of the engine: the members it uses of twin.engine.interface.FleetEngine
    (which the engine implements; mypy checks it below), and no more, so an API replica's view
    serves the read path through the same interface."""

    @property
    def clock_state(self) -> str: ...

    @property
    def alert_log(self) -> AlertLog: ...

    def operation(self, name: str) -> dict[str, Any]: ...

    def submit(self, event: dict[str, Any], *, relative_to: int | None = None,
               request: RequestKey | None = None) -> dict[str, Any]: ...

    def operations_page(self, where: OperationFilter | None, start: int,
                        limit: int) -> tuple[list[dict[str, Any]], int]: ...


class FactsSource(Protocol):
    async def call(self, hub: int, srv: str, fuel: str, record: bool) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Checked:
    """A request that passed every check: its SRV, hub index, fuel ("electricity" or "gas"), the
    hub's facts as the shard gave them (`record`: the premises, or the whole hub record for
    NEEDS_RECORD SRVs), and for a read of a reachable hub the reading and the tick it describes."""

    srv: duis.Srv
    hub: int
    fuel: str
    record: dict[str, Any]
    reading: dict[str, Any] | None
    reading_tick: int | None


@dataclass(frozen=True)
class Asked:
    """What a request asks, as its own checks found it: the SRV, the hub index, the fuel asked."""

    srv: duis.Srv
    hub: int
    fuel: str


def _shard_fuel(fuel: str) -> str:
    return "gas" if fuel == "gas" else "elec"


class DccCore:
    """The DCC. `engine` is the run (see DccEngine); `facts` answers a hub's service facts (a
    ShardBatcher over the engine's shards by default); `users()` lists the current DCC Users (a
    released request is processed as its sender); `digest(request)` fingerprints what a request
    asks for (the front door's canonical encoding), to tell a retry from a reused id; `ledger`
    remembers request ids (the engine's, which its journal rebuilds on resume, by default)."""

    def __init__(self, engine: DccEngine, *, users: Callable[[], Iterable[Identity]],
                 digest: Callable[[ServiceRequest], str], facts: FactsSource | None = None,
                 anomaly: AnomalyDetector | None = None, signatures: SignatureChecker | None = None,
                 ledger: RequestLedger | None = None, responses_kept: int = 10_000):
        self.engine = engine
        self.users = users
        self.digest = digest
        self.facts: FactsSource = facts if facts is not None else ShardBatcher(engine, "service_facts_many")
        self.anomaly = anomaly if anomaly is not None else AnomalyDetector()
        # (a SignatureChecker with nothing seen yet is falsy: test for None)
        self.signatures = signatures if signatures is not None else SignatureChecker()
        if ledger is None:  # (an empty ledger is falsy: test for None)
            engine_ledger = getattr(engine, "requests", None)
            ledger = engine_ledger if isinstance(engine_ledger, RequestLedger) else RequestLedger()
        self.ledger: RequestLedger = ledger
        self.responses = ResponseLogs(responses_kept)
        self.pending: list[Pending] = []
        self.late = DueAnswers()  # reads answered after their caller's deadline, by due time
        self.alerts = AlertFeed(lambda: self.engine.alert_log, lambda t: self.engine.config.time_of(t),
                                lambda: self.engine.config.seed)
        self._released: OrderedDict[str, bytes] = OrderedDict()  # quarantine id -> first answer
        self._settling = False

    # -- the request path ------------------------------------------------------------------
    async def submit(self, identity: Identity, request: ServiceRequest) -> ServiceResponse:
        """Check, admit and process one Service Request from `identity` (a DCC User; the caller's
        permission table keeps operators out). A retry of an answered request id gets its first
        answer (its operation's outcome if that has finished since) and nothing is applied again.
        Raises DccError (nothing applied): see the checks in `check`, the id rules in
        twin.engine.requests, RESOURCE_EXHAUSTED for a request quarantined or a quarantine full,
        FAILED_PRECONDITION / INVALID_ARGUMENT from the engine's validation of the command."""
        key, first = await self.claim(identity, request)
        if first is not None:
            return first
        try:
            resp = await self._admit_and_process(identity, request, key)
        except BaseException:
            if self.ledger.fail(key.user, key.request_id):
                self.signatures.forget(key.user, key.request_id)  # refused: it may be signed and sent again
            raise
        self.ledger.finish(key.user, key.request_id, answer=resp.encode())
        return resp

    async def submit_many(self, identity: Identity,
                          requests: Sequence[ServiceRequest]) -> list[ServiceResponse | Exception]:
        """Each of `requests` from `identity` exactly as `submit` does it (the same checks, the
        same ledger, quarantine and capacity model), answered in order: its response, or the
        exception that ended it (a DccError refusal, or what the engine raised: nothing applied
        for that one). One refused request never stops the others. Requests run together, so
        their hub facts share one shard call per shard; a request id that comes again later in
        the same list is a retry of the earlier one and runs once that has been answered (so it
        gets its answer, as a retry sent later would)."""
        out: list[ServiceResponse | Exception | None] = [None] * len(requests)
        # Rounds: the first occurrence of each id in round 0, the second in round 1, ...
        rounds: list[list[int]] = []
        seen: dict[str, int] = {}
        for i, request in enumerate(requests):
            k = seen.get(request.request_id, 0)
            seen[request.request_id] = k + 1
            if k == len(rounds):
                rounds.append([])
            rounds[k].append(i)
        for idx in rounds:
            # Register reads (SR 4.1.1) in bulk, the rest one by one beside them.
            reads = [i for i in idx if requests[i].srv == BULK_READ]
            others = [i for i in idx if requests[i].srv != BULK_READ]
            answers = await asyncio.gather(self._submit_reads(identity, [requests[i] for i in reads]),
                                           *(self.submit(identity, requests[i]) for i in others),
                                           return_exceptions=True)
            for a in answers:
                if isinstance(a, BaseException) and not isinstance(a, Exception):
                    raise a  # cancelled: the caller went away
            first, rest = answers[0], answers[1:]
            if isinstance(first, BaseException):
                raise first  # (each read's own refusal is in its slot: this is a fault of the batch)
            for i, a in zip([*reads, *others], [*cast(list[Any], first), *rest], strict=True):
                out[i] = a
        return out  # type: ignore[return-value]  # every slot is filled above

    async def _submit_reads(self, identity: Identity,
                            requests: Sequence[ServiceRequest]) -> list[ServiceResponse | Exception]:
        """`submit` for many SR 4.1.1 reads with distinct ids, the same steps in the same order,
        with the premises' facts and readings read for all of them at once (one shard call or
        shared-memory read per shard: twin.model.readings.register_facts) and the response time
        looked up once per network link. Each read's answer or refusal in its slot."""
        out: list[ServiceResponse | Exception | None] = [None] * len(requests)
        keys: list[RequestKey | None] = [None] * len(requests)
        asked: list[Asked | None] = [None] * len(requests)
        live: list[int] = []
        for j, request in enumerate(requests):
            if j % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
            try:
                key, first = await self.claim(identity, request)
            except DccError as e:
                out[j] = e
                continue
            if first is not None:
                out[j] = first
                continue
            keys[j] = key
            try:
                asked[j] = self.check_request(identity, request)
                live.append(j)
            except DccError as e:
                out[j] = e
                self._refused(key)
        try:
            facts = await self._register_facts([asked[j].hub for j in live], live, asked)  # type: ignore[union-attr]
        except BaseException:
            for j in live:
                self._refused(keys[j])  # type: ignore[arg-type]
            raise
        table = self.engine.latency_table()
        latencies: dict[tuple[str, int, int], float] = {}
        for n, j in enumerate(live):
            if n % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
            request, a = requests[j], asked[j]
            assert a is not None
            rec, reading, tick = facts[j]
            try:
                self.check_premises(identity, request, a, rec,
                                    "the premises has no gas meter" if rec["reachable"] and reading is None else None)
                checked = Checked(a.srv, a.hub, a.fuel, rec, reading, tick if reading is not None else None)
                entry = self.anomaly.admit(identity.user_id, a.srv.srv, request.quarantine_copy)
                if entry is not None:
                    self.ledger.hold(identity.user_id, request.request_id, entry.id)
                    raise quarantined(entry.id, f"{entry.count} {a.srv.srv} requests from {identity.user_id} in the "
                                                f"window passed the threshold of {entry.threshold}")
                if rec["reachable"]:
                    link = (rec["region"], rec["wan_code"], rec["cell"])
                    latency = latencies.get(link)
                    if latency is None and table is not None:
                        latency = latencies[link] = self.response_time(request, checked)[0]  # type: ignore[assignment]
                    deadline = self.deadline_s(request)
                    resp = self.answer_read(identity, request, checked, reading,
                                            self.engine.config.time_of(tick + 1), latency, deadline)
                else:
                    resp = await self.process(identity, request, checked, key=keys[j])
            except QuarantineFull as e:
                out[j] = DccError(Code.RESOURCE_EXHAUSTED, str(e), quota="quarantine")
                self._refused(keys[j])  # type: ignore[arg-type]
                continue
            except Exception as e:
                out[j] = e
                self._refused(keys[j])  # type: ignore[arg-type]
                continue
            self.ledger.finish(identity.user_id, request.request_id, answer=resp.encode())
            out[j] = resp
        return out  # type: ignore[return-value]  # every slot is filled above

    def _refused(self, key: RequestKey) -> None:
        """A claimed request was refused before anything applied: its id is free again (as `submit` does)."""
        if self.ledger.fail(key.user, key.request_id):
            self.signatures.forget(key.user, key.request_id)

    async def _register_facts(self, hubs: list[int], live: list[int],
                              asked: list[Asked | None]) -> dict[int, tuple[dict[str, Any], Any, int]]:
        """(premises record, 4.1.1 reading or None, tick) per slot of `live` (hub `hubs[k]`, fuel
        asked[live[k]].fuel): one read per shard and fuel, from shared memory when this process
        has the shard's segment, else one call to the shard."""
        by: dict[tuple[int, str], list[int]] = {}
        for k, hub in enumerate(hubs):
            by.setdefault((self.engine.shard_of(hub), _shard_fuel(asked[live[k]].fuel)), []).append(k)  # type: ignore[union-attr]
        local = self.engine.local_reads

        async def one(shard: int, fuel: str, ks: list[int]) -> dict[str, Any]:
            arr = np.fromiter((hubs[k] for k in ks), dtype=np.int64, count=len(ks))
            got = local.register_facts(shard, arr, fuel) if local is not None else None
            if got is None:
                got = await self.engine.shards[shard].register_facts.remote(arr, fuel)
            return got

        groups = list(by.items())
        results = await asyncio.gather(*(one(shard, fuel, ks) for (shard, fuel), ks in groups))
        out: dict[int, tuple[dict[str, Any], Any, int]] = {}
        for ((_, _), ks), got in zip(groups, results, strict=True):
            p = {k: v.tolist() for k, v in got["premises"].items()}
            tick, reads = got["tick"], got["reads"]
            for n, k in enumerate(ks):
                area = p["area_id"][n]
                rec = {"area_id": area, "region": REGION_OF_AREA[area], "supplier_code": p["supplier_code"][n],
                       "gas_supplier_code": p["gas_supplier_code"][n], "has_gas": p["has_gas"][n],
                       "dcc_connected": p["dcc_connected"][n], "reachable": p["reachable"][n],
                       "wan_code": p["wan_code"][n], "cell": p["cell"][n]}
                out[live[k]] = (rec, reads[n] if rec["reachable"] else None, tick)
        return out

    async def _admit_and_process(self, identity: Identity, request: ServiceRequest, key: RequestKey) -> ServiceResponse:
        checked = await self.check(identity, request)
        try:
            # The request is kept only if it is quarantined, so its copy is made only then.
            entry = self.anomaly.admit(identity.user_id, checked.srv.srv, request.quarantine_copy)
        except QuarantineFull as e:  # the quarantine itself is full: refuse, never UNKNOWN
            raise DccError(Code.RESOURCE_EXHAUSTED, str(e), quota="quarantine") from None
        if entry is not None:
            self.ledger.hold(key.user, key.request_id, entry.id)
            raise quarantined(entry.id, f"{entry.count} {checked.srv.srv} requests from {identity.user_id} in the "
                                        f"window passed the threshold of {entry.threshold}")
        return await self.process(identity, request, checked, key=key)

    async def claim(self, identity: Identity, request: ServiceRequest) -> tuple[RequestKey, ServiceResponse | None]:
        """The request's key, claimed in the ledger; or, for a retry of an answered request, the
        first answer. DccError for an id that may not be used."""
        if not request.request_id or len(request.request_id) > MAX_REQUEST_ID:
            raise invalid("request_id", f"give a unique id of 1 to {MAX_REQUEST_ID} characters")
        key = RequestKey(identity.user_id, request.request_id, self.digest(request))
        try:
            seen = self.ledger.claim(key.user, key.request_id, key.digest)
        except RequestIdError as e:
            raise request_id_refusal(e) from None
        if seen is None:
            return key, None
        return key, await self._first_answer(request, seen)

    async def _first_answer(self, request: ServiceRequest, seen: Seen) -> ServiceResponse:
        if seen.operation:
            name = f"operations/{seen.operation}"
            try:
                view = await asyncio.to_thread(self.engine.operation, name)
            except OperationRetired as e:
                # Finished long ago: the answer it settled with, if this server still holds it.
                if seen.answer:
                    return ServiceResponse.decode(seen.answer)
                raise not_found("request_id", f"request {request.request_id!r} was applied by {name}, which "
                                              f"has since been retired ({e.reason})") from None
            except TwinInputError:  # journaled, not yet accepted again after a resume
                view = {"name": name, "done": False}
            if view["done"] or not seen.answer:
                cfg = self.engine.config
                hub = hub_of(request.target, cfg.seed, cfg.hubs)
                csp = (await self.facts.call(hub, request.srv, "elec", False))["hub"]["region"]
                now = cfg.time_of(self.engine.tick)
                if view["done"]:
                    return operation_response(request, csp, view, now)
                return response(request, csp, ResponseStatus.ACKNOWLEDGED, now, operation=view["name"],
                                detail=ACKNOWLEDGED_DETAIL)
        return ServiceResponse.decode(seen.answer)

    async def check(self, identity: Identity, request: ServiceRequest) -> Checked:
        """Validate and authorise. DccError: INVALID_ARGUMENT naming srv, parameters, target,
        request_id, signature or parameters.<name>; UNIMPLEMENTED for an SRV the twin does not
        model; NOT_FOUND for no such hub; PERMISSION_DENIED naming srv (not eligible), target (not
        a premises it may address) or signature (rejected). The checks are `check_request` (the
        request alone) and `check_premises` (against the premises' facts), which the bulk path
        calls too."""
        asked = self.check_request(identity, request)
        # One shard call: the premises' facts, and the answer if it is a read (discarded if the
        # checks below refuse the request).
        facts = await self.facts.call(asked.hub, asked.srv.srv, _shard_fuel(asked.fuel), asked.srv.srv in NEEDS_RECORD)
        self.check_premises(identity, request, asked, facts["hub"], facts.get("error"))
        return Checked(asked.srv, asked.hub, asked.fuel, facts["hub"], facts.get("result"), facts.get("tick"))

    def check_request(self, identity: Identity, request: ServiceRequest) -> Asked:
        """The checks of a request that need no premises facts: SRV, deadline, parameters' size,
        target, a DUIS RequestID's target, the fuel asked. DccError as `check` says."""
        try:
            srv = duis.lookup(request.srv)
        except duis.UnknownSrv as e:
            raise invalid("srv", str(e)) from None
        check_deadline(request.deadline_s)
        if srv.srv not in duis.IMPLEMENTED:
            raise DccError(Code.UNIMPLEMENTED, f"the twin does not implement SRV {srv.srv} ({srv.name})", field="srv")
        if request.parameters_bytes > MAX_PARAMETERS_BYTES:
            raise invalid("parameters", f"{request.parameters_bytes:,} bytes; at most {MAX_PARAMETERS_BYTES:,}")
        cfg = self.engine.config
        hub = hub_of(request.target, cfg.seed, cfg.hubs)
        check_duis_target(request.request_id, hub, cfg.seed)
        return Asked(srv, hub, read_fuel(identity.role, request.params))

    def check_premises(self, identity: Identity, request: ServiceRequest, asked: Asked, rec: dict[str, Any],
                       error: str | None) -> None:
        """The checks against the premises' facts `rec` (twin.model.query.premises): eligibility
        and premises (policy.authorise), the signature of a critical SRV, the SRV's parameters,
        and `error`, the shard's refusal of the fuel asked (no gas meter). DccError as `check`."""
        srv, params = asked.srv, request.params
        fuel = duis.FUEL.get(srv.srv, "either")
        try:
            authorise(identity, srv, fuel=fuel if fuel != "either" else role_fuel(identity.role, asked.fuel),
                      hub_supplier=rec["supplier_code"], hub_gas_supplier=rec["gas_supplier_code"],
                      hub_area=rec["area_id"], has_gas=rec["has_gas"])
        except PolicyError as e:
            raise _policy_error(e) from None
        if srv.critical and not request.countersigned:
            try:
                self.signatures.verify(identity, request.signature or None, srv=srv.srv, target=request.target,
                                       request_id=request.request_id, issued_at_ms=request.issued_at_ms,
                                       payload=params)
            except SignatureError as e:
                if e.reason == "missing signature":
                    raise invalid("signature", f"SRV {srv.srv} is critical and must be signed") from None
                raise denied(f"signature rejected: {e.reason}", "signature") from None
        check_params(srv.srv, params)
        if error is not None:
            raise invalid("parameters.fuel", error)

    def response_time(self, request: ServiceRequest, checked: Checked) -> tuple[float | None, float]:
        """(seconds the network takes to answer this read, the caller's deadline in seconds): the
        capacity model's response time for the hub's link, North base station and the read's
        class, queueing + transfer + device time (None when the run's capacity model is off); the
        request's own deadline, or the class's Target Response Time if it gave none. Both are
        simulated seconds from the fleet's now (the start of the next tick)."""
        deadline = self.deadline_s(request)
        table = self.engine.latency_table()
        if table is None:
            return None, deadline
        rec = checked.record
        latency = table.seconds(csp=int(Csp[rec["region"].upper()]), wan=int(rec["wan_code"]), cell=int(rec["cell"]),
                                message=READ_MESSAGE)
        return latency, deadline

    def deadline_s(self, request: ServiceRequest) -> float:
        """The caller's deadline for a read, simulated seconds: its own, or the Target Response
        Time of the read's traffic class if it gave none."""
        if request.deadline_s is not None:
            return request.deadline_s
        cap = self.engine.config.params.capacity
        return float(cap.target_response_s[TrafficClass(int(MESSAGE_CLASS[READ_MESSAGE])).name])

    async def process(self, identity: Identity, request: ServiceRequest, checked: Checked, *,
                      key: RequestKey | None = None) -> ServiceResponse:
        """Route a checked request to its CSP and answer it: a coverage query at once; a read of
        a reachable hub when the network answers it (`response_time`): within the caller's
        deadline, at once with its latency, else acknowledged and answered on the user's
        response log once the simulated clock passes the time it was sent plus its latency; a
        read of a dark hub acknowledged (answered on the user's response log when the hub is
        back, FAILED after PENDING_READ_DAYS); a device change submitted to the engine as a
        command (journaled under `key`) and answered if it applies within ANSWER_WITHIN_S while
        the clock runs, else acknowledged with its operation's name."""
        srv, hub, fuel, rec = checked.srv, checked.hub, checked.fuel, checked.record
        csp = rec["region"]
        engine = self.engine
        # A reading is stamped with the end of the tick it describes; the rest with the fleet's now.
        now = engine.config.time_of(engine.tick if checked.reading_tick is None else checked.reading_tick + 1)
        if srv.srv == "12.1":
            return response(request, csp, ResponseStatus.COMPLETED, now, coverage(rec))
        if srv.srv == "8.2":
            return response(request, csp, ResponseStatus.COMPLETED, now, inventory(rec))
        if srv.srv in READ_SRVS or srv.srv == "11.2":
            if rec["reachable"]:
                result = checked.reading if checked.reading is not None else await self._read(srv.srv, hub, fuel, rec)
                latency, deadline = self.response_time(request, checked)
                return self.answer_read(identity, request, checked, result, now, latency, deadline)
            self.pending.append(Pending(identity.user_id, request, hub, fuel, csp,
                                        engine.tick + round(PENDING_READ_DAYS * HALF_HOURS_PER_DAY)))
            return response(request, csp, ResponseStatus.ACKNOWLEDGED, now,
                            detail="the hub is not reachable now; the response will follow on StreamResponses")
        command = command_for(srv.srv, role=identity.role, party_id=identity.party_id, user_id=identity.user_id,
                              hub=hub, rec=rec, params=request.params, request_id=request.request_id)
        if command is None:
            if srv.srv != "11.3":
                raise DccError(Code.UNIMPLEMENTED, f"SRV {srv.srv} is not implemented", field="srv")
            command = await asyncio.to_thread(self._activation, hub)
        params = request.params
        try:
            view = await asyncio.to_thread(engine.submit, command, request=key)
        except CommandConflict as e:  # e.g. an SR 6.23 to a supplier that has failed: the state forbids it
            raise conflict(f"parameters.{e.field}" if e.field in params else e.field, str(e)) from None
        except TwinInputError as e:
            # A field the request's parameters gave (an SR 11.1's target_version) is named as sent.
            raise invalid(f"parameters.{e.field}" if e.field in params else e.field, e.reason) from None
        name = view["name"]
        waited = 0.0
        while engine.clock_state == "running" and waited < ANSWER_WITHIN_S:
            view = await asyncio.to_thread(engine.operation, name)
            if view["done"]:
                return operation_response(request, csp, view, engine.config.time_of(engine.tick))
            await asyncio.sleep(0.05)
            waited += 0.05
        self.pending.append(Pending(identity.user_id, request, hub, fuel, csp, -1, operation=name))
        return response(request, csp, ResponseStatus.ACKNOWLEDGED, now, operation=name, detail=ACKNOWLEDGED_DETAIL)

    def answer_read(self, identity: Identity, request: ServiceRequest, checked: Checked, result: dict[str, Any],
                    now: datetime, latency: float | None, deadline: float) -> ServiceResponse:
        """The answer to a read of a reachable hub whose reading is `result` (stamped `now`): at
        once with its latency if the network answers within the caller's deadline (or the
        capacity model is off), else acknowledged, and answered on the user's response log when
        the simulated clock passes the time the network answers it."""
        csp = checked.record["region"]
        if latency is None or latency <= deadline:
            return response(request, csp, ResponseStatus.COMPLETED, now, result, latency_s=latency)
        engine = self.engine
        due = engine.config.time_of(engine.tick) + timedelta(seconds=latency)
        self.late.add(Pending(identity.user_id, request, checked.hub, checked.fuel, csp, -1, due=due, result=result,
                              latency_s=latency))
        return response(request, csp, ResponseStatus.ACKNOWLEDGED, now,
                        detail=f"the network answers in {latency:,.1f} s, beyond the deadline of "
                               f"{deadline:,.1f} s: the response follows on StreamResponses at {due.isoformat()}")

    def _activation(self, hub: int) -> dict[str, Any]:
        """SR 11.3: activate the image an SR 11.1 distributed to this device and still holds.
        FAILED_PRECONDITION naming target if none is waiting."""
        held = OperationFilter(terms=(OperationTerm(OperationField.DONE, "false"),), held_image_for=hub)
        waiting, _ = self.engine.operations_page(held, 0, 1)
        if waiting:
            return {"type": "operation_control", "operation": waiting[0]["name"].split("/")[1], "action": "activate"}
        raise DccError(Code.FAILED_PRECONDITION, "no image distributed to this device is waiting: send SR 11.1 first",
                       field="target", precondition="target")

    async def _read(self, srv: str, hub: int, fuel: str, rec: dict[str, Any]) -> dict[str, Any]:
        if srv == "11.2":
            return device_list(rec)
        try:
            return await asyncio.to_thread(self.engine.read, hub, srv, _shard_fuel(fuel))
        except ValueError as e:
            raise invalid("parameters.fuel", str(e)) from None

    # -- deferred responses -------------------------------------------------------------------
    def on_tick(self, tick: int) -> None:
        """On the event loop after each tick: wake the alert feeds, deliver the late answers the
        simulated clock has passed, and settle deferred requests."""
        self.alerts.on_tick()
        if len(self.late):
            self._deliver_late(self.engine.config.time_of(tick + 1))
        if self.pending and not self._settling:
            self._settling = True
            spawn(self._settle(tick), name=f"settle-{tick}")

    async def _settle(self, tick: int) -> None:
        """Try every deferred request at once (the reads share the shards' batched calls); one
        that fails stays deferred for the next tick without holding up the others."""
        pending = list(self.pending)
        try:
            results = await asyncio.gather(*(self._try_settle(p, tick) for p in pending), return_exceptions=True)
            settled = {id(p) for p, done in zip(pending, results, strict=True) if done is True}
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                log.warning("%d deferred response(s) could not be settled at tick %d (kept for the next tick): %r",
                            len(failed), tick, failed[0])
            # Requests acknowledged while this ran are kept.
            self.pending = [p for p in self.pending if id(p) not in settled]
        finally:
            self._settling = False

    def _deliver_late(self, now: datetime) -> None:
        """Each read the network answered by `now` (the end of the tick just run) goes on its
        user's log, COMPLETED with the reading the device gave, its latency and the time it was
        due; a retry of its request id from then on gets this answer, not the acknowledgement.
        A rewind leaves the rest waiting: the clock passes their time again."""
        for p in self.late.pop_due(now):
            assert p.due is not None
            resp = self.responses.push(p.user_id, response(p.request, p.csp, ResponseStatus.COMPLETED, p.due,
                                                           p.result, latency_s=p.latency_s))
            self.ledger.finish(p.user_id, p.request.request_id, answer=resp.encode())

    async def _try_settle(self, p: Pending, tick: int) -> bool:
        now = self.engine.config.time_of(tick + 1)
        if p.operation:
            try:
                view = await asyncio.to_thread(self.engine.operation, p.operation)
            except OperationRetired as e:  # settled too late to see its outcome: said, not dropped
                resp = self.responses.push(p.user_id, response(p.request, p.csp, ResponseStatus.FAILED, now,
                                                               detail=f"its outcome is no longer held: {e.reason}",
                                                               operation=p.operation))
                self.ledger.finish(p.user_id, p.request.request_id, answer=resp.encode())
                return True
            if not view["done"]:
                return False
            resp = self.responses.push(p.user_id, operation_response(p.request, p.csp, view, now))
            # A retry gets this final answer, also once the operation has been retired.
            self.ledger.finish(p.user_id, p.request.request_id, answer=resp.encode())
            return True
        srv = p.request.srv
        facts = await self.facts.call(p.hub, srv, _shard_fuel(p.fuel), srv in NEEDS_RECORD)
        rec = facts["hub"]
        if rec["reachable"]:
            if "error" in facts:  # the premises lost its gas meter meanwhile
                self.responses.push(p.user_id, response(p.request, p.csp, ResponseStatus.FAILED, now,
                                                        detail=facts["error"]))
                return True
            result = facts["result"] if "result" in facts else await self._read(srv, p.hub, p.fuel, rec)
            self.responses.push(p.user_id, response(p.request, p.csp, ResponseStatus.COMPLETED, now, result))
            return True
        if tick >= p.deadline_tick:
            self.responses.push(p.user_id, response(p.request, p.csp, ResponseStatus.FAILED, now,
                                                    detail="the hub stayed unreachable"))
            return True
        return False

    # -- quarantine -------------------------------------------------------------------------------
    def quarantined(self, identity: Identity, user_id: str, start: int, limit: int) -> list[QuarantineEntry]:
        """Up to `limit` quarantined requests from entry number `start` that `identity` may see
        (policy.quarantine_scope: an operator anyone's, `user_id`'s if it names one; a DCC User
        its own), oldest first. PERMISSION_DENIED naming user_id for another user's."""
        try:
            user = quarantine_scope(identity, user_id)
        except PolicyError as e:
            raise _policy_error(e) from None
        return self.anomaly.page(user, start, limit)

    async def release(self, entry_id: str) -> ServiceResponse:
        """Process a quarantined request as its sender (its checks were passed when it was held).
        A retried release answers as the first did. NOT_FOUND naming id for no such entry;
        FAILED_PRECONDITION if the sender no longer exists."""
        try:
            entry = self.anomaly.release(entry_id)
        except KeyError:
            done = self._released.get(entry_id)
            if done is not None:  # a retry of a release: its first answer, nothing processed again
                return ServiceResponse.decode(done)
            raise not_found("id", f"no quarantined request {entry_id!r}") from None
        sender = next((u for u in self.users() if u.user_id == entry.user_id), None)
        if sender is None:
            raise conflict("user_id", f"user {entry.user_id} no longer exists")
        request = ServiceRequest.from_quarantine_copy(entry.request)
        key = RequestKey(sender.user_id, request.request_id, self.digest(request))
        self.ledger.release(key.user, key.request_id)
        try:
            srv = duis.lookup(request.srv)
            cfg = self.engine.config
            hub = hub_of(request.target, cfg.seed, cfg.hubs)
            fuel = read_fuel(sender.role, request.params)
            facts = await self.facts.call(hub, srv.srv, _shard_fuel(fuel), srv.srv in NEEDS_RECORD)
            checked = Checked(srv, hub, fuel, facts["hub"], facts.get("result"), facts.get("tick"))
            resp = await self.process(sender, request, checked, key=key)
        except BaseException:
            self.ledger.fail(key.user, key.request_id)
            raise
        answer = resp.encode()
        self.ledger.finish(key.user, key.request_id, answer=answer)
        self._released[entry_id] = answer
        while len(self._released) > MAX_RELEASED:
            self._released.popitem(last=False)
        return resp

    def delete(self, entry_id: str) -> QuarantineEntry:
        """Drop a quarantined request unprocessed (its request id is free again). NOT_FOUND naming id."""
        try:
            entry = self.anomaly.delete(entry_id)
        except KeyError:
            raise not_found("id", f"no quarantined request {entry_id!r}") from None
        self.ledger.fail(entry.user_id, entry.request["request_id"], held=True)  # never applied: its id is free
        return entry


def _policy_error(e: PolicyError) -> DccError:
    if e.code == "PERMISSION_DENIED":
        return denied(e.message, e.field)
    return invalid(e.field or "target", e.message)



if TYPE_CHECKING:
    from twin.engine.interface import FleetEngine


    def _engine_is_a_dcc_engine(engine: FleetEngine) -> DccEngine:
        # The type checker proves the engine's facade has every member the DCC uses.
        return engine
