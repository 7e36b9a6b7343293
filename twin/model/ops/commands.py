"""Operator commands: one frozen dataclass per event type, parsed and validated from plain dicts
(scenario YAML, API requests). Parsing checks everything that needs no fleet state; checks that do
(an empty selection, a conflicting rollout, a time in the past) are the planner's."""

from __future__ import annotations

import itertools
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime
from typing import Any, ClassVar

from twin.model.catalog import (
    AREA_BY_ID,
    AREAS,
    SUPPLIERS,
    Csp,
    DeviceModel,
    DeviceType,
    WanTech,
    models_of,
    region_by_name,
    supplier_code,
)
from twin.model.config import FleetConfig, TwinInputError
from twin.model.ops.progress import OperationAction
from twin.model.params import TICK_SECONDS, EventParams
from twin.model.timeutil import format_instant, parse_instant
from twin.util.grammar import GrammarError, name_key, shown

# An offset like '2d', '6h', '1d12h', '+30m': ASCII digits and blanks only (re.ASCII, [0-9], no \d).
_OFFSET_RE = re.compile(r"[ \t]*\+?[ \t]*((?:[0-9]{1,9}(?:\.[0-9]{1,9})?[ \t]*[dhm][ \t]*)+)", re.ASCII)
_OFFSET_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)[ \t]*([dhm])", re.ASCII)


def resolve_time(value: Any, config: FleetConfig, *, now_tick: int, relative_to: int, name: str = "at") -> int:
    """A command time -> tick. Accepts a tick number, an ISO 8601 time with zone (an instant: the
    offset it is written with changes nothing, see twin.model.timeutil), or an offset like '2d',
    '6h', '1d12h', '+30m' (from `relative_to`). Rejects times before `now_tick` and times without
    a zone, naming the field."""
    if value is None or value == "now":
        tick = now_tick
    elif isinstance(value, bool):
        raise TwinInputError(name, f"expected a time, got {value!r}")
    elif isinstance(value, int):
        tick = value
    elif isinstance(value, datetime):
        tick = config.tick_at(parse_instant(value, name))
    elif isinstance(value, str):
        m = _OFFSET_RE.fullmatch(value)
        if m:
            secs = sum(float(n) * {"d": 86400, "h": 3600, "m": 60}[u] for n, u in _OFFSET_PART.findall(m.group(1)))
            tick = relative_to + int(secs // TICK_SECONDS)
        else:
            try:
                when = parse_instant(value, name)
            except TwinInputError as e:
                raise TwinInputError(name, f"expected a tick, an offset like '2d6h' or a time: {e.reason}") from None
            tick = config.tick_at(when)
    else:
        raise TwinInputError(name, f"expected a time, got {value!r}")
    if tick < now_tick:
        raise TwinInputError(name, f"{value!r} is in the past (the fleet is at tick {now_tick}, "
                                   f"{format_instant(config.time_of(now_tick))})")
    return tick


def _key(value: Any, name: str) -> str:
    """A name field as a lower-case ASCII key (`twin.util.grammar.name_key`); TwinInputError naming it."""
    try:
        return name_key(value, name)
    except GrammarError as e:
        raise TwinInputError(name, str(e).removeprefix(f"{name}: ")) from None


def _region(value: Any, name: str) -> Csp:
    try:
        return region_by_name(str(value))
    except ValueError as e:
        raise TwinInputError(name, str(e)) from None


def _regions(value: Any, name: str) -> tuple[int, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    return tuple(sorted({int(_region(v, name)) for v in items}))


def _supplier(value: Any, name: str) -> int:
    try:
        return supplier_code(_key(value, name))
    except KeyError:
        choices = ", ".join(s.name for s in SUPPLIERS)
        raise TwinInputError(name, f"unknown supplier {shown(value)}; choose from {choices}") from None


def _area(value: Any, name: str) -> int:
    if isinstance(value, int) and value in AREA_BY_ID:
        return value
    key = _key(value, name)
    for a in AREAS:
        if key in (a.name.lower(), str(a.id), a.short_code.lower()):
            return a.id
    raise TwinInputError(name, f"unknown network-operator area {shown(value)}; use an id 10-23 or a name "
                               f"such as {AREAS[0].name!r}")


def _number(value: Any, name: str, *, lo: float, hi: float | None = None, integer: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TwinInputError(name, f"expected a number, got {value!r}")
    if integer and int(value) != value:
        raise TwinInputError(name, f"expected a whole number, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
        raise TwinInputError(name, f"must be {rng}, got {value!r}")
    return int(value) if integer else float(value)


def _cellular(value: Any, name: str) -> int:
    v = _key(value, name).upper()
    if v in ("2G", "G2"):
        return int(WanTech.G2)
    if v in ("3G", "G3"):
        return int(WanTech.G3)
    raise TwinInputError(name, f"expected 2G or 3G, got {shown(value)}")


@dataclass(frozen=True)
class Command:
    """Base: `kind` names the event type; `at` is the tick it applies at (resolved on parse)."""

    kind: ClassVar[str] = ""
    at: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["type"] = self.kind
        return d


@dataclass(frozen=True, kw_only=True)
class FirmwareRollout(Command):
    kind: ClassVar[str] = "firmware_rollout"
    device_type: int
    model_code: int
    target_version: str
    from_versions: tuple[str, ...] = ()
    regions: tuple[int, ...] = ()
    suppliers: tuple[int, ...] = ()
    waves: tuple[float, ...] = (0.01, 0.1, 0.5, 1.0)
    halt_failure_rate: float = 0.05
    min_wave_sample: int = 200
    concurrency_per_csp: int = 50_000
    image_size_kb: float = EventParams.image_size_kb  # parsing takes the run's events.image_size_kb
    failure_prob: float | None = None
    brick_prob: float | None = None
    allow_downgrade: bool = False
    max_days: float = 28.0
    hubs: tuple[int, ...] = ()  # only these hubs (an SR 11.1 to one device)
    hold_activation: bool = False  # distribute only; SR 11.3 activates


    @property
    def model_label(self) -> str:
        return models_of(DeviceType(self.device_type))[self.model_code - 1].label


@dataclass(frozen=True, kw_only=True)
class SupplierSwitch(Command):
    kind: ClassVar[str] = "supplier_switch"
    hub: int
    fuel: str = "dual"  # electricity | gas | dual
    to_supplier: int


@dataclass(frozen=True, kw_only=True)
class ChurnCampaign(Command):
    kind: ClassVar[str] = "churn_campaign"
    switches_per_month: int
    days: float = 30.0


@dataclass(frozen=True, kw_only=True)
class SupplierFailure(Command):
    kind: ClassVar[str] = "supplier_failure"
    supplier: int
    solr: int
    daily_cap: int = 100_000


@dataclass(frozen=True, kw_only=True)
class NetworkSwitchOff(Command):
    kind: ClassVar[str] = "network_switch_off"
    region: int
    technology: int


@dataclass(frozen=True, kw_only=True)
class SwapProgramme(Command):
    """4G comms hub swaps in a region, a daily install capacity, the doomed network first."""

    kind: ClassVar[str] = "swap_programme"
    region: int
    installs_per_day: int
    prioritise: int = 0  # WanTech code of the network to visit first; 0: none
    days: float = 365.0


@dataclass(frozen=True, kw_only=True)
class VwanFallback(Command):
    """Eligible premises whose WAN is gone (switched off, or never there) move to VWAN."""

    kind: ClassVar[str] = "vwan_fallback"
    region: int
    onboard_per_day: int = 5_000
    days: float = 365.0


@dataclass(frozen=True, kw_only=True)
class PowerOutage(Command):
    kind: ClassVar[str] = "power_outage"
    area: int
    fraction: float = 1.0
    duration_min: float
    onset_spread_s: int = 60
    restore_spread_min: float = 0.0
    alert_backoff_s: int | None = None


@dataclass(frozen=True, kw_only=True)
class BaseStationFailure(Command):
    kind: ClassVar[str] = "base_station_failure"
    cells: tuple[int, ...]
    duration_min: float


@dataclass(frozen=True, kw_only=True)
class CspIncident(Command):
    kind: ClassVar[str] = "csp_incident"
    region: int
    duration_min: float
    include_4g: bool = False


@dataclass(frozen=True, kw_only=True)
class MhhsMigration(Command):
    """Market-wide half-hourly settlement (MHHS): electricity meters (ESMEs on the DCC) move to
    daily retrieval of their half-hourly data, in waves. The real programme runs October 2025 to
    May 2027 in nine sprints [C] (shared/domain/CAPACITY.md): by default 9 waves 72 days apart
    (the last 576 days, about 19 months, after the first). Each wave moves an equal part of
    `share` of the selected ESMEs; a migrated ESME sends one `MessageType.SETTLEMENT_READ` (48
    half-hourly values) a day from its daily read slot."""

    kind: ClassVar[str] = "mhhs_migration"
    share: float = 1.0  # of the selected ESMEs on the DCC
    waves: int = 9
    spacing_days: float = 72.0
    regions: tuple[int, ...] = ()  # CSP regions; empty: all
    suppliers: tuple[int, ...] = ()  # electricity (import) suppliers at the start; empty: all


@dataclass(frozen=True, kw_only=True)
class OnDemandReads(Command):
    """A campaign of on-demand reads (SR 4.1.1 / 4.6.1 style) from DCC Users: each selected meter
    on the DCC is read on average every `interval_min` minutes (a Poisson process per meter) for
    `duration_min`, e.g. a network operator polling premises through a storm. A read reaches the
    hub only while it is reachable (else it fails); answered reads are on-demand traffic the
    network's queues serve, so their latency shows against the 30 s Target Response Time."""

    kind: ClassVar[str] = "on_demand_reads"
    duration_min: float
    interval_min: float = 60.0
    share: float = 1.0  # of the selected meters on the DCC
    regions: tuple[int, ...] = ()  # CSP regions; empty: all
    areas: tuple[int, ...] = ()  # network-operator (DNO) areas; empty: all


# Reads per meter over an on-demand read campaign (duration / interval) at most: the campaign
# draws each meter's reads at its start, so this bounds its memory and start-up cost per meter.
MAX_READS_PER_METER = 48


@dataclass(frozen=True, kw_only=True)
class ServiceRequestCommand(Command):
    """A device-changing DUIS Service Request from a DCC User, applied when the hub is reachable
    (within `deadline_days`, else it fails). Reads never need one: they change nothing."""

    kind: ClassVar[str] = "service_request"
    srv: str
    hub: int
    user_id: str = ""
    request_id: str = ""
    params: tuple[tuple[str, Any], ...] = ()
    deadline_days: float = 2.0

    def param(self, name: str, default: Any = None) -> Any:
        return dict(self.params).get(name, default)


@dataclass(frozen=True, kw_only=True)
class OperationControl(Command):
    kind: ClassVar[str] = "operation_control"
    operation: str
    action: str  # pause | resume | cancel | activate


COMMANDS: dict[str, type[Command]] = {
    c.kind: c for c in (FirmwareRollout, SupplierSwitch, ChurnCampaign, SupplierFailure, NetworkSwitchOff,
                        SwapProgramme, VwanFallback, PowerOutage, BaseStationFailure, CspIncident, OperationControl,
                        ServiceRequestCommand, MhhsMigration, OnDemandReads)
}


def _known(d: dict[str, Any], allowed: set[str], kind: str) -> None:
    unknown = set(d) - allowed - {"type", "at"}
    if unknown:
        raise TwinInputError(sorted(unknown)[0], f"not a field of {kind}; fields are {', '.join(sorted(allowed))}")


def _opt(d: dict[str, Any], cls: type[Command], name: str) -> Any:
    """`d[name]`, or, if the event leaves it out, the command field's own default: every default
    is written once, on the dataclass."""
    return d[name] if name in d else _default(cls, name)


def _default(cls: type[Command], name: str) -> Any:
    f = next(f for f in fields(cls) if f.name == name)
    if f.default is MISSING:
        raise TypeError(f"{cls.__name__}.{name} is required: it has no default")
    return f.default


def _require(d: dict[str, Any], name: str) -> Any:
    if d.get(name) in (None, "", []):
        raise TwinInputError(name, "is required")
    return d[name]


def parse_command(d: dict[str, Any], config: FleetConfig, *, now_tick: int, relative_to: int | None = None,
                  n_hubs: int | None = None) -> Command:
    """Validate a plain dict into a Command; `at` offsets count from `relative_to` (default now)."""
    if not isinstance(d, dict):
        raise TwinInputError("event", f"expected a mapping, got {type(d).__name__}")
    kind = d.get("type")
    if kind not in COMMANDS:
        raise TwinInputError("type", f"unknown event type {kind!r}; choose from {', '.join(sorted(COMMANDS))}")
    cls = COMMANDS[kind]
    allowed = {f.name for f in fields(cls)} - {"at"}
    at = resolve_time(d.get("at"), config, now_tick=now_tick,
                      relative_to=now_tick if relative_to is None else relative_to)
    parser = _PARSERS[kind]
    return parser(d, at, config, allowed, n_hubs if n_hubs is not None else config.hubs)


def _p_rollout(d, at, config, allowed, n_hubs) -> FirmwareRollout:
    _known(d, allowed | {"device", "manufacturer", "model"}, "firmware_rollout")
    dev = _key(_require(d, "device"), "device").upper()
    if dev not in DeviceType.__members__:
        raise TwinInputError("device", f"expected one of CH, ESME, GSME, PPMID, got {shown(d['device'])}")
    dt = DeviceType[dev]
    manufacturer, model = _key(_require(d, "manufacturer"), "manufacturer"), _key(_require(d, "model"), "model")
    models = models_of(dt)
    code = next((i for i, m in enumerate(models, 1) if m.manufacturer.lower() == manufacturer
                 and m.model.lower() == model), None)
    if code is None:
        raise TwinInputError("model", f"unknown {dt.name} model {shown(d['manufacturer'])} {shown(d['model'])}; "
                                      "known: "
                                      + ", ".join(m.label for m in models))
    m = models[code - 1]
    # Versions are checked against the model's scheme here; whether the target is a downgrade
    # depends on what the selected devices run, so validation decides that (rollout_version_check).
    target = _version(m, _require(d, "target_version"), "target_version")
    from_versions = tuple(_version(m, v, "from_versions") for v in _list(d.get("from_versions"), "from_versions"))
    keys = [m.version_key(v) for v in from_versions]
    if len(set(keys)) != len(keys):
        raise TwinInputError("from_versions", "names a version twice")
    if m.version_key(target) in keys:
        raise TwinInputError("target_version", f"{target} is one of the versions being replaced (from_versions)")
    allow_downgrade = _opt(d, FirmwareRollout, "allow_downgrade")
    if not isinstance(allow_downgrade, bool):
        raise TwinInputError("allow_downgrade", f"expected true or false, got {allow_downgrade!r}")
    waves = tuple(_number(w, "waves", lo=0.0, hi=1.0) for w in _opt(d, FirmwareRollout, "waves"))
    if not waves or any(b <= a for a, b in itertools.pairwise(waves)) or waves[-1] != 1.0 or waves[0] <= 0:
        raise TwinInputError("waves", "must be increasing cumulative shares in (0, 1] ending at 1, e.g. [0.01, 0.1, 1]")
    ev = config.params.events
    return FirmwareRollout(
        at=at, device_type=int(dt), model_code=code, target_version=target, from_versions=from_versions,
        regions=_regions(d.get("regions"), "regions"),
        suppliers=tuple(sorted({_supplier(s, "suppliers") for s in d.get("suppliers") or ()})),
        waves=waves,
        halt_failure_rate=_number(_opt(d, FirmwareRollout, "halt_failure_rate"), "halt_failure_rate", lo=0.0, hi=1.0),
        min_wave_sample=_number(_opt(d, FirmwareRollout, "min_wave_sample"), "min_wave_sample", lo=1, integer=True),
        concurrency_per_csp=_number(_opt(d, FirmwareRollout, "concurrency_per_csp"), "concurrency_per_csp", lo=1,
                                    integer=True),
        image_size_kb=_number(d.get("image_size_kb", ev.image_size_kb), "image_size_kb", lo=1, hi=4096),
        failure_prob=None if d.get("failure_prob") is None else _number(d["failure_prob"], "failure_prob",
                                                                          lo=0.0, hi=1.0),
        brick_prob=None if d.get("brick_prob") is None else _number(d["brick_prob"], "brick_prob", lo=0.0, hi=1.0),
        allow_downgrade=allow_downgrade,
        max_days=_number(_opt(d, FirmwareRollout, "max_days"), "max_days", lo=0.1, hi=3650),
        hubs=tuple(sorted({_hub_index(h, config, n_hubs, "hubs") for h in d.get("hubs") or ()})),
        hold_activation=bool(_opt(d, FirmwareRollout, "hold_activation")),
    )


def _version(model: DeviceModel, value: Any, name: str) -> str:
    """A firmware version of `model` under its scheme, spelt as the catalogue spells it when it is
    a catalogue version (1.14.0 -> 1.14). Text only: a YAML number loses its trailing zeros (1.10
    would read as 1.1), so numbers are refused too."""
    if not isinstance(value, str):
        raise TwinInputError(name, f"write the version as text in quotes, e.g. '{model.versions[-1]}', got {value!r}")
    text = value.strip(" \t")  # ASCII blanks only: anything else is part of the text and refused
    try:
        return model.known_version(text) or text
    except ValueError as e:
        raise TwinInputError(name, f"{e} ({model.label} versions are {model.scheme.name}, "
                                   f"e.g. {', '.join(model.versions)})") from None


def _list(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple):
        raise TwinInputError(name, f"expected a list, got {value!r}")
    return list(value)


def _hub_index(value: Any, config: FleetConfig, n_hubs: int, name: str = "hub") -> int:
    """A hub given as its dense index (a YAML/JSON integer) or a hub name (`parse_hub_ref`)."""
    from twin.model.ids import parse_hub_ref

    if isinstance(value, int) and not isinstance(value, bool):
        hub = value
    else:
        try:
            hub = parse_hub_ref(value, config.seed)
        except GrammarError as e:
            raise TwinInputError(name, str(e)) from None
    if not 0 <= hub < n_hubs:
        raise TwinInputError(name, f"{shown(value)} is not a hub of this fleet")
    return hub


def _p_switch(d, at, config, allowed, n_hubs) -> SupplierSwitch:
    _known(d, allowed, "supplier_switch")
    fuel = _key(_opt(d, SupplierSwitch, "fuel"), "fuel")
    if fuel not in ("electricity", "gas", "dual"):
        raise TwinInputError("fuel", f"expected electricity, gas or dual, got {shown(d.get('fuel'))}")
    return SupplierSwitch(at=at, hub=_hub_index(_require(d, "hub"), config, n_hubs), fuel=fuel,
                          to_supplier=_supplier(_require(d, "to_supplier"), "to_supplier"))


def _p_churn(d, at, config, allowed, n_hubs) -> ChurnCampaign:
    _known(d, allowed, "churn_campaign")
    return ChurnCampaign(at=at, switches_per_month=_number(_require(d, "switches_per_month"), "switches_per_month",
                                                           lo=1, integer=True),
                         days=_number(_opt(d, ChurnCampaign, "days"), "days", lo=0.1, hi=3650))


def _p_failure(d, at, config, allowed, n_hubs) -> SupplierFailure:
    _known(d, allowed, "supplier_failure")
    failed = _supplier(_require(d, "supplier"), "supplier")
    solr = _supplier(_require(d, "solr"), "solr")
    if failed == solr:
        raise TwinInputError("solr", "the Supplier of Last Resort must differ from the failed supplier")
    return SupplierFailure(at=at, supplier=failed, solr=solr,
                           daily_cap=_number(_opt(d, SupplierFailure, "daily_cap"), "daily_cap", lo=1, integer=True))


def _p_switch_off(d, at, config, allowed, n_hubs) -> NetworkSwitchOff:
    _known(d, allowed, "network_switch_off")
    return NetworkSwitchOff(at=at, region=int(_region(_require(d, "region"), "region")),
                            technology=_cellular(_require(d, "technology"), "technology"))


def _p_swap(d, at, config, allowed, n_hubs) -> SwapProgramme:
    _known(d, allowed, "swap_programme")
    region = _region(_require(d, "region"), "region")
    prio = d.get("prioritise")
    return SwapProgramme(at=at, region=int(region),
                         installs_per_day=_number(_require(d, "installs_per_day"), "installs_per_day", lo=1,
                                                  integer=True),
                         prioritise=_default(SwapProgramme, "prioritise") if prio in (None, "none")
                         else _cellular(prio, "prioritise"),
                         days=_number(_opt(d, SwapProgramme, "days"), "days", lo=0.1, hi=3650))


def _p_vwan(d, at, config, allowed, n_hubs) -> VwanFallback:
    _known(d, allowed, "vwan_fallback")
    return VwanFallback(at=at, region=int(_region(_require(d, "region"), "region")),
                        onboard_per_day=_number(_opt(d, VwanFallback, "onboard_per_day"), "onboard_per_day", lo=1,
                                                integer=True),
                        days=_number(_opt(d, VwanFallback, "days"), "days", lo=0.1, hi=3650))


def _p_outage(d, at, config, allowed, n_hubs) -> PowerOutage:
    _known(d, allowed, "power_outage")
    backoff = d.get("alert_backoff_s")
    return PowerOutage(at=at, area=_area(_require(d, "area"), "area"),
                       fraction=_number(_opt(d, PowerOutage, "fraction"), "fraction", lo=1e-9, hi=1.0),
                       duration_min=_number(_require(d, "duration_min"), "duration_min", lo=0.1, hi=60 * 24 * 30),
                       onset_spread_s=_number(_opt(d, PowerOutage, "onset_spread_s"), "onset_spread_s", lo=0, hi=3600,
                                              integer=True),
                       restore_spread_min=_number(_opt(d, PowerOutage, "restore_spread_min"), "restore_spread_min", lo=0.0,
                                                  hi=60 * 24),
                       alert_backoff_s=None if backoff is None else _number(backoff, "alert_backoff_s", lo=0,
                                                                            hi=3600, integer=True))


def _p_base_station(d, at, config, allowed, n_hubs) -> BaseStationFailure:
    from twin.model.params import NORTH_BASE_STATIONS

    _known(d, allowed, "base_station_failure")
    cells = d.get("cells")
    if not cells:
        raise TwinInputError("cells", "name at least one base station id")
    out = tuple(sorted({_number(c, "cells", lo=0, hi=NORTH_BASE_STATIONS - 1, integer=True) for c in cells}))
    return BaseStationFailure(at=at, cells=out,
                              duration_min=_number(_require(d, "duration_min"), "duration_min", lo=0.1,
                                                   hi=60 * 24 * 30))


def _p_incident(d, at, config, allowed, n_hubs) -> CspIncident:
    _known(d, allowed, "csp_incident")
    return CspIncident(at=at, region=int(_region(_require(d, "region"), "region")),
                       duration_min=_number(_require(d, "duration_min"), "duration_min", lo=0.1, hi=60 * 24 * 30),
                       include_4g=bool(_opt(d, CspIncident, "include_4g")))


# The shortest spacing between MHHS waves: the fleet sends each wave to the shards LAG ticks
# ahead (twin.model.ops.base.LAG, two hours), so waves closer than that could not keep time.
MHHS_MIN_SPACING_DAYS = 0.125


def _p_mhhs(d, at, config, allowed, n_hubs) -> MhhsMigration:
    _known(d, allowed, "mhhs_migration")
    return MhhsMigration(
        at=at, share=_number(_opt(d, MhhsMigration, "share"), "share", lo=1e-9, hi=1.0),
        waves=_number(_opt(d, MhhsMigration, "waves"), "waves", lo=1, hi=1000, integer=True),
        spacing_days=_number(_opt(d, MhhsMigration, "spacing_days"), "spacing_days", lo=MHHS_MIN_SPACING_DAYS,
                             hi=3650),
        regions=_regions(_list(d.get("regions"), "regions"), "regions"),
        suppliers=tuple(sorted({_supplier(x, "suppliers") for x in _list(d.get("suppliers"), "suppliers")})))


def _p_reads(d, at, config, allowed, n_hubs) -> OnDemandReads:
    _known(d, allowed, "on_demand_reads")
    duration = _number(_require(d, "duration_min"), "duration_min", lo=1.0, hi=60 * 24 * 30)
    interval = _number(_opt(d, OnDemandReads, "interval_min"), "interval_min", lo=1.0, hi=60 * 24 * 30)
    if duration / interval > MAX_READS_PER_METER:
        raise TwinInputError("interval_min", f"{duration:g} minutes every {interval:g} minutes is more than "
                                             f"{MAX_READS_PER_METER} reads per meter; read less often or for less long")
    return OnDemandReads(
        at=at, duration_min=duration, interval_min=interval,
        share=_number(_opt(d, OnDemandReads, "share"), "share", lo=1e-9, hi=1.0),
        regions=_regions(_list(d.get("regions"), "regions"), "regions"),
        # One area alone may be given bare; area names hold commas, so text is never split.
        areas=tuple(sorted({_area(a, "areas") for a in ([d["areas"]] if isinstance(d.get("areas"), str | int)
                                                          and not isinstance(d.get("areas"), bool)
                                                          else _list(d.get("areas"), "areas"))})))


def _p_control(d, at, config, allowed, n_hubs) -> OperationControl:
    _known(d, allowed, "operation_control")
    action = _key(_require(d, "action"), "action")
    if action not in {a.value for a in OperationAction}:
        raise TwinInputError("action", f"expected pause, resume, cancel or activate, got {shown(d.get('action'))}")
    return OperationControl(at=at, operation=str(_require(d, "operation")), action=action)


_PARSERS = {
    "firmware_rollout": _p_rollout, "supplier_switch": _p_switch, "churn_campaign": _p_churn,
    "supplier_failure": _p_failure, "network_switch_off": _p_switch_off, "swap_programme": _p_swap,
    "vwan_fallback": _p_vwan, "power_outage": _p_outage, "base_station_failure": _p_base_station,
    "csp_incident": _p_incident, "operation_control": _p_control, "mhhs_migration": _p_mhhs,
    "on_demand_reads": _p_reads,
}


def _p_service_request(d, at, config, allowed, n_hubs) -> ServiceRequestCommand:
    # Built by the DCC service, never typed by users: the service validated it already.
    return ServiceRequestCommand(at=at, srv=str(d["srv"]), hub=_hub_index(d["hub"], config, n_hubs),
                                 user_id=str(_opt(d, ServiceRequestCommand, "user_id")),
                                 request_id=str(_opt(d, ServiceRequestCommand, "request_id")),
                                 params=tuple(sorted(dict(d.get("params") or {}).items())),
                                 deadline_days=float(_opt(d, ServiceRequestCommand, "deadline_days")))


_PARSERS["service_request"] = _p_service_request


def command_from_dict(d: dict[str, Any]) -> Command:
    """Rebuild a validated command from its journal form (to_dict output)."""
    cls = COMMANDS[d["type"]]
    kw: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in d:
            v = d[f.name]
            if f.name == "params":
                v = tuple(tuple(x) for x in v)
            kw[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**kw)


__all__ = ["COMMANDS", "Command", "command_from_dict", "field", "parse_command", "resolve_time"]
