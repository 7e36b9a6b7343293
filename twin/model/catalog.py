"""Names of things: regions and network-operator areas, WAN technologies, hub variants, device
models with their firmware versions, suppliers, message types. Codes are the small integers stored
in the columnar state; every table here maps a code to its label and back."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from packaging.version import InvalidVersion, Version

from twin.util.grammar import GrammarError, name_key


class Csp(IntEnum):
    """The CSP regions, one per Communication Service Provider contract: the one region code of
    the twin (commands, the network schedule, summaries' first axis, queries)."""

    NORTH = 0  # Arqiva (SmartReach)
    CENTRAL = 1  # Telefonica UK (VMO2)
    SOUTH = 2  # Telefonica UK (VMO2)


REGIONS: tuple[Csp, ...] = (Csp.NORTH, Csp.CENTRAL, Csp.SOUTH)
CSP_OPERATOR = {Csp.NORTH: "Arqiva", Csp.CENTRAL: "Telefonica UK (VMO2)", Csp.SOUTH: "Telefonica UK (VMO2)"}
N_CSP = 3
# The CSP code of padding rows and unused area codes (no CSP): one past the real ones, so a table
# indexed by CSP code can give padding a row of its own (NetworkPlan.up keeps it up).
NO_CSP = N_CSP


@dataclass(frozen=True)
class Area:
    """A GB electricity distribution licence area (DNO area), ids as in shared/data."""

    id: int
    short_code: str
    name: str
    dno: str
    region: Csp


# Same ids, names and region mapping as data/gb-dno-areas.geojson, so map and model agree.
AREAS: tuple[Area, ...] = (
    Area(10, "_A", "East England", "UKPN", Csp.CENTRAL),
    Area(11, "_B", "East Midlands", "NGED", Csp.CENTRAL),
    Area(12, "_C", "London", "UKPN", Csp.SOUTH),
    Area(13, "_D", "North Wales, Merseyside and Cheshire", "SPEN", Csp.CENTRAL),
    Area(14, "_E", "West Midlands", "NGED", Csp.CENTRAL),
    Area(15, "_F", "North East England", "NPg", Csp.NORTH),
    Area(16, "_G", "North West England", "ENWL", Csp.NORTH),
    Area(17, "_P", "North Scotland", "SSEN", Csp.NORTH),
    Area(18, "_N", "South and Central Scotland", "SPEN", Csp.NORTH),
    Area(19, "_J", "South East England", "UKPN", Csp.SOUTH),
    Area(20, "_H", "Southern England", "SSEN", Csp.SOUTH),
    Area(21, "_K", "South Wales", "NGED", Csp.CENTRAL),
    Area(22, "_L", "South West England", "NGED", Csp.SOUTH),
    Area(23, "_M", "Yorkshire", "NPg", Csp.NORTH),
)
AREA_BY_ID = {a.id: a for a in AREAS}
N_AREA_CODES = 24  # codes 0..23; 0 is padding, 1..9 unused
# Lookup table: area code -> CSP code (padding and unused codes map to NO_CSP).
AREA_CSP = np.full(N_AREA_CODES, NO_CSP, dtype=np.uint8)
for _a in AREAS:
    AREA_CSP[_a.id] = _a.region


class WanTech(IntEnum):
    NONE = 0  # no WAN coverage at the premises
    LRR = 1  # Arqiva long-range radio, ~412/422 MHz (North)
    G2 = 2  # 2G cellular (VMO2)
    G3 = 3  # 3G cellular (VMO2)
    G4 = 4  # 4G cellular (Vodafone, 4G Communications Hub)
    VWAN = 5  # consumer broadband with consent (from 2026)


N_WAN = 6
WAN_LABEL = {
    WanTech.NONE: "none",
    WanTech.LRR: "long-range radio",
    WanTech.G2: "2G",
    WanTech.G3: "3G",
    WanTech.G4: "4G",
    WanTech.VWAN: "VWAN",
}


class Variant(IntEnum):
    SINGLE_BAND = 0  # SBCH, 2.4 GHz ZigBee HAN
    DUAL_BAND = 1  # DBCH, 2.4 GHz + 868 MHz HAN
    FOUR_G = 2  # Toshiba 4G Communications Hub
    SMETS1_MODULE = 3  # SMETS1 comms module (not a DCC comms hub)



class Smets(IntEnum):
    SMETS2 = 0
    SMETS1_ENROLLED = 1  # migrated into the DCC (enrolment and adoption)
    SMETS1_NOT_ENROLLED = 2  # still on its supplier's own system; not DCC traffic



class DeviceType(IntEnum):
    CH = 0
    ESME = 1
    GSME = 2
    PPMID = 3



class MessageType(IntEnum):
    DAILY_READ = 0  # DCC-scheduled daily read burst (24 h+ of readings in one package)
    ON_DEMAND_READ = 1
    PREPAYMENT = 2
    CONFIGURATION = 3  # tariffs, supply control, settings
    SECURITY = 4  # credential swaps (CoS), key updates
    FIRMWARE = 5
    ALERT = 6  # device alerts, power outage AD1 and restoration among them
    BACKLOG_READ = 7  # catch-up reads of unread log days after a hub comes back
    SETTLEMENT_READ = 8  # daily half-hourly retrieval for market-wide settlement (MHHS)


N_MESSAGE_TYPES = 9


class TrafficClass(IntEnum):
    """The classes the network's queues serve (twin.model.capacity): what a message is for decides
    its priority under priority scheduling and the Target Response Time it is held against."""

    ALERT = 0  # device alerts (AD1 power outage among them), to the DCC and on to Users
    CRITICAL = 1  # critical commands: supply and tariff changes, configuration
    ON_DEMAND = 2  # on-demand Service Requests: reads, top-ups
    SCHEDULED = 3  # DCC-scheduled reads, catch-up reads, half-hourly retrieval for settlement
    FIRMWARE = 4  # firmware distribution (SR 11.1) and activation
    SECURITY = 5  # credential swaps on change of supplier (SR 6.23), key updates


N_CLASSES = 6
CLASS_LABEL = {c: c.name.lower().replace("_", "-") for c in TrafficClass}
# The class each message type is carried in.
MESSAGE_CLASS = np.array([
    TrafficClass.SCHEDULED,  # DAILY_READ
    TrafficClass.ON_DEMAND,  # ON_DEMAND_READ
    TrafficClass.ON_DEMAND,  # PREPAYMENT (a top-up is an on-demand request)
    TrafficClass.CRITICAL,  # CONFIGURATION
    TrafficClass.SECURITY,  # SECURITY
    TrafficClass.FIRMWARE,  # FIRMWARE
    TrafficClass.ALERT,  # ALERT
    TrafficClass.SCHEDULED,  # BACKLOG_READ
    TrafficClass.SCHEDULED,  # SETTLEMENT_READ
], dtype=np.intp)
assert len(MESSAGE_CLASS) == N_MESSAGE_TYPES
# A network link is a CSP region x WAN technology; its index in per-link arrays.
N_LINKS = N_CSP * N_WAN


def link_of(csp: np.ndarray | int, wan: np.ndarray | int) -> np.ndarray | int:
    """The link index (csp * N_WAN + wan) of a CSP region and WAN technology."""
    return csp * N_WAN + wan


class AlertKind(IntEnum):
    POWER_OUTAGE = 0  # AD1, comms hub unpowered > 3 minutes
    POWER_RESTORED = 1  # 0x8F36 Supply Outage Restored, outage >= 3 minutes
    LOW_BATTERY = 2  # 0x8F1F Low Battery Capacity (GSME)
    FIRMWARE_TRANSFER_OK = 3  # 0x8F8A firmware transfer succeeded (N60)
    FIRMWARE_TRANSFER_FAIL = 4  # 0x8F89 firmware transfer failed (N61)
    FIRMWARE_ACTIVATED = 5  # 0x8F43 change in executing firmware version
    # Prepayment (ESME in prepayment mode): credit ran out, supply disabled, credit restored.
    EMERGENCY_CREDIT_ACTIVATED = 6  # 0x81AB Emergency Credit Activated
    CREDIT_BELOW_DISABLEMENT = 7  # 0x8F0F Credit Below Disablement Threshold (supply disabled)
    SUPPLY_ARMED = 8  # 0x8F32 Supply Armed (a top-up took credit above the threshold)


N_ALERT_KINDS = 9
# Sent to the import supplier only (DCC alert routing by role).
PREPAYMENT_ALERTS = (AlertKind.EMERGENCY_CREDIT_ACTIVATED, AlertKind.CREDIT_BELOW_DISABLEMENT, AlertKind.SUPPLY_ARMED)


# Bits of the per-hub `flags` column (attributes fixed at install).
class Flag:
    HAS_GAS = 1
    PREPAY = 2
    SOLAR = 4
    VWAN_ELIGIBLE = 8  # broadband present and consent given
    MESH = 16  # reaches the cellular WAN through mesh coverage extension
    ESME_DAILY = 32  # ESME is on a DCC-scheduled daily read
    GSME_DAILY = 64
    ALT_HAN = 128  # standard HAN does not reach; needs Alt HAN equipment


# Bits of the per-hub `fault` column: each set bit is a reason the hub cannot be reached.
# A hub is reachable when fault == 0 and its network (region x technology) is up (twin.model.reach).
class Fault:
    NO_COVERAGE = 1  # premises has no WAN (and is not on VWAN)
    POWER = 2  # premises unpowered
    HUB_FAULT = 4  # transient WAN/hub fault
    HARDWARE = 8  # hub failed; needs a field visit
    BRICKED = 16  # a firmware activation bricked the hub
    INCIDENT = 32  # CSP incident or base-station failure covering the hub


FAULT_LABEL = {
    Fault.NO_COVERAGE: "no WAN coverage",
    Fault.POWER: "power outage",
    Fault.HUB_FAULT: "transient hub fault",
    Fault.HARDWARE: "hub hardware failure",
    Fault.BRICKED: "bricked by firmware",
    Fault.INCIDENT: "CSP incident",
}


# Bits of the per-hub `status` column (slowly changing device status).
class Status:
    LOW_BATTERY = 1  # GSME low-battery alert raised, replacement pending
    GSME_DEAD = 2  # GSME battery exhausted: no gas reads
    DUMB = 4  # lost smart function (SMETS1 not enrolled after a switch)
    SUPPLY_OFF = 8  # electricity supply disabled by SR 7.2 (enabled again by SR 7.1)
    # Prepayment credit state of the ESME (twin.model.prepayment); at most one of the first two.
    EMERGENCY_CREDIT = 16  # balance at or below zero, running on emergency credit
    CREDIT_OFF = 32  # emergency credit exhausted: supply disabled, nothing metered
    ARMED = 64  # with CREDIT_OFF: a top-up restored credit, supply armed until the consumer enables it
    # The ESME is migrated to market-wide half-hourly settlement (MHHS, twin.model.ops.mhhs): its
    # half-hourly data is retrieved daily for settlement (MessageType.SETTLEMENT_READ).
    HH_SETTLEMENT = 128
    # Mask, not a bit: supply off either way, so nothing is metered (prepayment.freeze_metering).
    METERING_STOPPED = SUPPLY_OFF | CREDIT_OFF


_DOTTED = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,6}){0,3}")


@dataclass(frozen=True)
class VersionScheme:
    """How a manufacturer's product line writes firmware versions, and how they are ordered.

    A version is `prefix` followed by one to four dot-separated decimal numbers (ASCII digits), as
    `1.12`, `3.2.4` or, with prefix `S1-`, `S1-2.1`. The numbers are compared as a release
    version by `packaging.version` (PyPA): component by component, numerically, so 1.9 < 1.12 <
    1.13, and trailing zeros do not count (1.14 and 1.14.0 are the same version). Anything else
    (letters, other separators, a missing or wrong prefix, non-ASCII digits) cannot be ordered and
    is refused: `parse` raises ValueError."""

    name: str
    prefix: str = ""

    @property
    def example(self) -> str:
        return f"{self.prefix}1.2.3"

    def parse(self, text: str) -> Version:
        """'1.12' -> its comparable key; ValueError if `text` is not a version of this scheme."""
        if not isinstance(text, str):
            raise ValueError(f"expected a version written as text, e.g. '{self.example}', got {text!r}")
        body = text.removeprefix(self.prefix) if self.prefix else text
        if (self.prefix and not text.startswith(self.prefix)) or not _DOTTED.fullmatch(body):
            raise ValueError(f"{text!r} is not a {self.name} version: expected "
                             + (f"'{self.prefix}' then " if self.prefix else "")
                             + f"dot-separated numbers, e.g. '{self.example}'")
        try:
            return Version(body)
        except InvalidVersion:  # cannot happen after the pattern; kept so nothing else escapes
            raise ValueError(f"{text!r} is not a {self.name} version") from None

    def sort_key(self, text: str) -> tuple[int, Version, str]:
        """A total order over any label: versions of this scheme by version, then anything else
        (a label recorded before versions were checked) after them, by text."""
        try:
            return (0, self.parse(text), "")
        except ValueError:
            return (1, Version("0"), text)


# The schemes of the catalogue's product lines (the version strings are illustrative [U]; a real
# manufacturer whose images are numbered otherwise, e.g. in hex, gets its own scheme mapping to a
# comparable key). SMETS2 devices of every manufacturer here: dotted numbers. SMETS1 meters
# adopted by the DCC: 'S1-' then dotted numbers; SMETS1 comms modules: 'S1.' then a number.
DOTTED = VersionScheme("dotted")
SMETS1_METER = VersionScheme("SMETS1 meter", "S1-")
SMETS1_MODULE = VersionScheme("SMETS1 comms module", "S1.")


@dataclass(frozen=True)
class DeviceModel:
    """One certified device model and the firmware versions seen in the field (oldest first under
    its `scheme`, which orders them)."""

    device_type: DeviceType
    manufacturer: str
    model: str
    smets: str  # "SMETS2", "SMETS1" or "any"
    versions: tuple[str, ...]
    version_shares: tuple[float, ...]
    scheme: VersionScheme = DOTTED

    @property
    def label(self) -> str:
        return f"{self.manufacturer} {self.model}"

    def version_key(self, text: str) -> Version:
        """The comparable key of a version of this model; ValueError if it is not one."""
        return self.scheme.parse(text)

    def known_version(self, text: str) -> str | None:
        """The catalogue's spelling of `text` (the same version under the scheme), or None."""
        key = self.scheme.parse(text)
        return next((v for v in self.versions if self.scheme.parse(v) == key), None)


def _fw(*versions: str) -> tuple[str, ...]:
    return versions


# Version share profile: most devices on the newest release, a tail on older ones. [U]
_SHARES3 = (0.15, 0.30, 0.55)
_SHARES2 = (0.35, 0.65)

# Model tables. ESME/GSME manufacturers and models are the approved SMETS2 list and the SMETS1
# models for DCC adoption (seeds/003). Comms hubs: EDMI in the North [C], Toshiba 4G [C]; Central and
# South 2G/3G makers Toshiba and WNC are commonly cited but unconfirmed [U]. PPMID makers [U].
# Firmware version strings are illustrative [U].
DEVICE_MODELS: tuple[DeviceModel, ...] = (
    # code 0 in each device column means "no device"; the tables below are 1-based per type.
    DeviceModel(DeviceType.CH, "EDMI", "LRR CH (SmartReach)", "SMETS2", _fw("3.1.0", "3.2.4", "3.3.1"), _SHARES3),
    DeviceModel(DeviceType.CH, "Toshiba", "2G/3G CH", "SMETS2", _fw("1.8.2", "1.9.0", "2.0.3"), _SHARES3),
    DeviceModel(DeviceType.CH, "WNC", "2G/3G CH", "SMETS2", _fw("4.0.7", "4.1.2"), _SHARES2),
    DeviceModel(DeviceType.CH, "Toshiba", "4G CH", "SMETS2", _fw("1.0.1", "1.1.0"), _SHARES2),
    DeviceModel(DeviceType.CH, "Honeywell", "SMETS1 comms module", "SMETS1", _fw("S1.4", "S1.5"), _SHARES2, SMETS1_MODULE),
    DeviceModel(DeviceType.CH, "Landis & Gyr", "SMETS1 comms module", "SMETS1", _fw("S1.9", "S1.10"), _SHARES2, SMETS1_MODULE),
    DeviceModel(DeviceType.CH, "Secure Meters", "SMETS1 comms module", "SMETS1", _fw("S1.2", "S1.3"), _SHARES2, SMETS1_MODULE),
    DeviceModel(DeviceType.ESME, "Aclara", "SGM1412", "SMETS2", _fw("2.4.0", "2.5.1", "2.6.0"), _SHARES3),
    DeviceModel(DeviceType.ESME, "Aclara", "SGM1412B", "SMETS2", _fw("2.5.1", "2.6.0"), _SHARES2),
    DeviceModel(DeviceType.ESME, "EDMI", "ES-10A", "SMETS2", _fw("5.0.2", "5.1.0", "5.2.3"), _SHARES3),
    DeviceModel(DeviceType.ESME, "Honeywell", "AS302P", "SMETS2", _fw("1.12", "1.14", "1.15"), _SHARES3),
    DeviceModel(DeviceType.ESME, "Itron", "EM425-UK2", "SMETS2", _fw("7.2.0", "7.3.1"), _SHARES2),
    DeviceModel(DeviceType.ESME, "Kaifa", "MA120", "SMETS2", _fw("1.0.9", "1.1.4", "1.2.0"), _SHARES3),
    DeviceModel(DeviceType.ESME, "Landis & Gyr", "E470-5394", "SMETS2", _fw("3.0.6", "3.1.2"), _SHARES2),
    DeviceModel(DeviceType.ESME, "Landis & Gyr", "E470-5424", "SMETS2", _fw("3.1.2", "3.2.0"), _SHARES2),
    DeviceModel(DeviceType.ESME, "Elster", "AS 300P", "SMETS1", _fw("S1-2.1", "S1-2.2"), _SHARES2, SMETS1_METER),
    DeviceModel(DeviceType.ESME, "Itron", "EM425-UK", "SMETS1", _fw("S1-6.4", "S1-6.5"), _SHARES2, SMETS1_METER),
    DeviceModel(DeviceType.ESME, "Landis & Gyr", "E470", "SMETS1", _fw("S1-1.8", "S1-1.9"), _SHARES2, SMETS1_METER),
    DeviceModel(DeviceType.ESME, "Secure Meters", "Liberty 100", "SMETS1", _fw("S1-4.0", "S1-4.1"), _SHARES2, SMETS1_METER),
    DeviceModel(DeviceType.ESME, "Secure Meters", "Liberty 110", "SMETS1", _fw("S1-4.1", "S1-4.2"), _SHARES2, SMETS1_METER),
    DeviceModel(DeviceType.GSME, "EDMI", "GS-60A", "SMETS2", _fw("2.2.0", "2.3.1"), _SHARES2),
    DeviceModel(DeviceType.GSME, "EDMI", "GS-60B", "SMETS2", _fw("2.3.1", "2.4.0"), _SHARES2),
    DeviceModel(DeviceType.GSME, "Flonidan", "G4SZV-1", "SMETS2", _fw("1.3.0", "1.4.2", "1.5.0"), _SHARES3),
    DeviceModel(DeviceType.GSME, "GWI", "G4-MG-SE-GM-V2", "SMETS2", _fw("6.0.1", "6.1.0"), _SHARES2),
    DeviceModel(DeviceType.GSME, "Honeywell", "BK-G4E", "SMETS2", _fw("4.4", "4.5", "4.6"), _SHARES3),
    DeviceModel(DeviceType.GSME, "Landis & Gyr", "G470-672", "SMETS2", _fw("2.0.4", "2.1.0"), _SHARES2),
    DeviceModel(DeviceType.GSME, "Elster", "BK-G4E", "SMETS1", _fw("S1-3.0", "S1-3.1"), _SHARES2, SMETS1_METER),
    DeviceModel(DeviceType.GSME, "Itron", "RF1 sV ZB", "SMETS1", _fw("S1-2.0", "S1-2.2"), _SHARES2, SMETS1_METER),
    DeviceModel(DeviceType.GSME, "Landis & Gyr", "G370", "SMETS1", _fw("S1-1.4", "S1-1.5"), _SHARES2, SMETS1_METER),
    DeviceModel(DeviceType.GSME, "Landis & Gyr", "G470", "SMETS1", _fw("S1-1.6", "S1-1.7"), _SHARES2, SMETS1_METER),
    DeviceModel(DeviceType.GSME, "Secure Meters", "EG4v10", "SMETS1", _fw("S1-5.2", "S1-5.3"), _SHARES2, SMETS1_METER),
    DeviceModel(DeviceType.PPMID, "Chameleon Technology", "PPMID", "any", _fw("2.1", "2.3"), _SHARES2),
    DeviceModel(DeviceType.PPMID, "Geo (Green Energy Options)", "PPMID", "any", _fw("5.6", "5.8"), _SHARES2),
)


class VersionTable:
    """Firmware versions per (device type, model code): the catalog's, plus versions that rollouts
    introduce during a run (appended, so a version's index never changes)."""

    def __init__(self) -> None:
        self.extra: dict[tuple[int, int], list[str]] = {}

    def copy(self) -> VersionTable:
        """A table no later rollout changes (what a reader outside the planner's lock holds)."""
        out = VersionTable()
        out.extra = {k: list(v) for k, v in self.extra.items()}
        return out

    def versions(self, device_type: int, model_code: int) -> tuple[str, ...]:
        base = models_of(DeviceType(device_type))[model_code - 1].versions
        return base + tuple(self.extra.get((device_type, model_code), ()))

    def find(self, device_type: int, model_code: int, version: str) -> int | None:
        """Index of `version` (the same version under the model's scheme, so 1.14.0 finds 1.14),
        or None if the table has no such version."""
        vs = self.versions(device_type, model_code)
        if version in vs:
            return vs.index(version)
        key = self.scheme(device_type, model_code).sort_key(version)
        if key[0]:  # not a version of the scheme: only the exact label matches
            return None
        return next((i for i, v in enumerate(vs) if self.scheme(device_type, model_code).sort_key(v) == key), None)

    def index(self, device_type: int, model_code: int, version: str, *, add: bool = False) -> int:
        i = self.find(device_type, model_code, version)
        if i is not None:
            return i
        if not add:
            raise KeyError(version)
        vs = self.versions(device_type, model_code)
        self.extra.setdefault((device_type, model_code), []).append(version)
        return len(vs)

    @staticmethod
    def scheme(device_type: int, model_code: int) -> VersionScheme:
        return models_of(DeviceType(device_type))[model_code - 1].scheme

    def sort_key(self, device_type: int, model_code: int, index: int) -> tuple[int, Version, str]:
        """Where the version stored as `index` sits in version order (indices are in the order
        versions were introduced, not in version order)."""
        return self.scheme(device_type, model_code).sort_key(self.label(device_type, model_code, index))

    def label(self, device_type: int, model_code: int, index: int) -> str:
        vs = self.versions(device_type, model_code)
        return vs[index] if index < len(vs) else f"#{index}"

    def to_dict(self) -> dict[str, list[str]]:
        return {f"{t}:{m}": v for (t, m), v in sorted(self.extra.items())}

    @classmethod
    def from_dict(cls, d: dict[str, list[str]]) -> VersionTable:
        vt = cls()
        for k, v in d.items():
            t, m = (int(x) for x in k.split(":"))
            vt.extra[(t, m)] = list(v)
        return vt


@functools.cache  # asked for every device of every hub record an API call answers
def models_of(device_type: DeviceType) -> tuple[DeviceModel, ...]:
    """Models of one device type, in code order: the model stored as code k is element k-1."""
    return tuple(m for m in DEVICE_MODELS if m.device_type == device_type)


def model_code(device_type: DeviceType, manufacturer: str, model: str) -> int:
    """1-based code of a model within its device type; raises KeyError if unknown."""
    for code, m in enumerate(models_of(device_type), start=1):
        if m.manufacturer == manufacturer and m.model == model:
            return code
    raise KeyError(f"unknown {device_type.name} model {manufacturer!r} {model!r}")


@dataclass(frozen=True)
class Supplier:
    name: str
    market_share: float  # of domestic electricity customers [U]
    prepay_share: float  # of its customers on prepayment [U]
    short_id: str  # what a filter or a command may name it by instead ("octopus" for Octopus Energy)


# Ofgem's retail market indicators put the market at roughly these shares in 2025; the figures
# are rounded and only approximate [U]. The long tail is merged into "Other suppliers".
SUPPLIERS: tuple[Supplier, ...] = (
    Supplier("Octopus Energy", 0.240, 0.10, "octopus"),
    Supplier("British Gas", 0.190, 0.14, "british-gas"),
    Supplier("E.ON Next", 0.140, 0.13, "eon-next"),
    Supplier("OVO Energy", 0.110, 0.12, "ovo"),
    Supplier("EDF Energy", 0.100, 0.12, "edf"),
    Supplier("Scottish Power", 0.080, 0.15, "scottish-power"),
    Supplier("Utility Warehouse", 0.030, 0.05, "utility-warehouse"),
    Supplier("Utilita", 0.025, 0.90, "utilita"),
    Supplier("So Energy", 0.020, 0.05, "so-energy"),
    Supplier("Outfox the Market", 0.012, 0.05, "outfox"),
    Supplier("Co-op Energy", 0.010, 0.10, "co-op"),
    Supplier("Good Energy", 0.006, 0.05, "good-energy"),
    Supplier("Ecotricity", 0.006, 0.05, "ecotricity"),
    Supplier("Fuse Energy", 0.006, 0.05, "fuse"),
    Supplier("Rebel Energy", 0.005, 0.05, "rebel"),
    Supplier("Other suppliers", 0.020, 0.10, "other"),
)
# Supplier code k (1-based) is SUPPLIERS[k-1]; code 0 means "no supplier" (no gas meter).


def _name_key(name: object) -> str | None:
    """`name` by the one name grammar (grammar.name_key: ASCII only, so no Unicode folding), None
    if it is not a name at all."""
    try:
        return name_key(name)
    except GrammarError:
        return None


def supplier_code(name: str) -> int:
    """The code (1-based) of the supplier `name` names: its name or its short id, in any case
    ("Octopus Energy", "octopus"). KeyError listing the short ids for anything else."""
    key = _name_key(name)
    for code, s in enumerate(SUPPLIERS, start=1):
        if key in (s.name.lower(), s.short_id):
            return code
    known = ", ".join(s.short_id for s in SUPPLIERS)
    raise KeyError(f"unknown supplier {ascii(name)[:40]}; give a supplier's name or short id ({known})")


def region_by_name(name: str) -> Csp:
    """Parse a region name case-insensitively (ASCII letters only, so no non-ASCII letter folds onto
    an ASCII one); raises ValueError naming the valid choices."""
    key = (_name_key(name) or "").upper()
    for r in REGIONS:
        if r.name == key:
            return r
    choices = ", ".join(r.name.title() for r in REGIONS)
    raise ValueError(f"unknown region {ascii(name)[:40]}; choose from {choices}")
