"""Every share, rate and calibration figure of the model, in one place, each with its source.

Tags follow shared/domain/FACTS.md: [C] confirmed by a cited source, [D] derived from cited numbers,
[U] an assumption (a parameter with a sensible default, never a constant buried in a kernel).
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

from twin.model.errors import TwinInputError

# Premises per DNO licence area, millions, from the DNOs' published customer numbers (rounded).
# Used as relative weights only [U]. North totals ~30% of premises; FACTS §1.2 suggests 30-40%.
AREA_PREMISES_M: dict[int, float] = {
    10: 3.7, 11: 2.7, 12: 2.4, 13: 1.5, 14: 2.5, 15: 1.6, 16: 2.4,
    17: 0.8, 18: 2.0, 19: 2.3, 20: 3.1, 21: 1.1, 22: 1.6, 23: 2.3,
}  # fmt: skip

# Base stations (North, Arqiva) and cellular sites (Central/South) hubs attach to [U].
NORTH_BASE_STATIONS = 1800
CELL_SITES_PER_CS_REGION = 6000

_P = TypeVar("_P")
_R = TypeVar("_R")


def once_per_params(build: Callable[[_P], _R]) -> Callable[[_P], _R]:
    """`build(p)`, computed once per parameter object `p` (a run has one) instead of once a tick.

    Keyed by identity, with a weak reference to tell a reused id from the same object: parameter
    sets are frozen dataclasses holding dicts, so they cannot be hashed for functools' caches.
    At most 17 are held; branches and sweeps bring new ones, and the oldest are simply rebuilt."""
    held: dict[int, tuple[weakref.ref[Any], _R]] = {}

    @functools.wraps(build)
    def get(p: _P) -> _R:
        hit = held.get(id(p))
        if hit is not None and hit[0]() is p:
            return hit[1]
        value = build(p)
        if len(held) > 16:
            held.clear()
        held[id(p)] = (weakref.ref(p), value)
        return value

    return get


HALF_HOURS_PER_DAY = 48
TICK_SECONDS = 1800
TICKS_PER_YEAR = 365.25 * HALF_HOURS_PER_DAY
DAYS_PER_MONTH = 30.44


@dataclass(frozen=True)
class FleetShares:
    """Shares of the generated fleet."""

    # SMETS generation of the premises' metering. Aug 2024: ~20M SMETS2 + ~12M SMETS1 meters on
    # DCC [C] -> SMETS1 ~37% of enrolled meters [D]; a small remainder not enrolled [U].
    smets2: float = 0.60
    smets1_enrolled: float = 0.35
    smets1_not_enrolled: float = 0.05

    # WAN technology of SMETS2 hubs.
    north_out_of_region_2g: float = 0.005  # ~46k OOR 2G hubs in the North [C] / ~9M North premises [D]
    north_no_wan: float = 0.005  # North coverage >= 99.5% [C]
    cs_no_wan: float = 0.008  # so that national no-WAN is ~0.7% (99.3% coverage) [C]/[D]
    cs_4g: float = 0.03  # 100,000th 4G hub by Dec 2025 [C], growing since [U]
    cs_3g_of_cellular: float = 0.70  # SMETS2 CHs "primarily 3G" [C]; exact split [U]
    no_wan_on_vwan: float = 0.10  # VWAN launched 2026 [C]; take-up among no-WAN premises [U]
    # SMETS1 comms modules use 2G/3G cellular in every region [U].
    smets1_3g: float = 0.50

    mesh: float = 0.02  # cellular hubs reaching the WAN through mesh extension [U]
    dual_band: float = 0.25  # DBCH share of 2G/3G and LRR hubs [U] (no public count, FACTS §2)
    vwan_eligible: float = 0.30  # broadband present and consent given [U]
    alt_han: float = 0.05  # ~5% of premises need Alt HAN [C]

    gas: float = 0.65  # ~1.65 meters per premises [D]
    daily_read: float = 0.552  # per meter; see TrafficParams: 28 x 60% / 30.44 d [D]
    solar: float = 0.05  # premises with export (solar) [U]
    dual_fuel_same_supplier: float = 0.85  # gas supplier equals electricity supplier [U]
    ppmid_given_prepay: float = 0.60  # separate PPMID on prepayment premises [U]
    # Prepayment share is per supplier (catalog.SUPPLIERS) [U]; ~13% overall, Ofgem ~4M PPM [C].
    # Relative weight of each device model within its type and SMETS generation, keyed
    # "Manufacturer Model"; a model not named weighs 1.0 (no public fleet counts per model) [U].
    model_weights: dict[str, float] = field(default_factory=lambda: {
        "Toshiba 2G/3G CH": 1.5,
        "WNC 2G/3G CH": 1.0,
    })
    # Of 2G/3G comms hubs in the Central and South regions, the makers are Toshiba and WNC [U].
    # SMETS2 meters were installed from 2017 [C]; SMETS1 from ~2011 to 2018-19 [C].
    smets2_age_years: tuple[float, float] = (0.0, 9.0)
    smets1_age_years: tuple[float, float] = (7.0, 15.0)

    # Consumption [C]: Ofgem typical domestic consumption values, medium: 2,700 kWh elec,
    # 11,500 kWh gas a year. Spread (lognormal sigma) [U].
    elec_kwh_median: float = 2700.0
    elec_kwh_sigma: float = 0.5
    gas_kwh_median: float = 11500.0
    gas_kwh_sigma: float = 0.45
    export_kwh_median: float = 1500.0

    # Import unit rate at the start: the Ofgem price cap was ~24.5 p/kWh in 2025/26 [U].
    tariff_p_per_kwh: float = 24.5
    # Prepayment credit on the meter at the start, uniform in this range, pounds [U].
    prepay_credit_gbp: tuple[float, float] = (5.0, 40.0)
    # GSME battery: sealed lithium designed for >10 years [C]; 15-year life assumed [U].
    gsme_battery_life_years: float = 15.0
    gsme_low_battery_pct: float = 10.0  # low-battery alert threshold [U]
    gsme_replacement_days: float = 60.0  # mean time from alert to field replacement [U]
    # Days of half-hourly data a meter's log holds, whole days: the ESME Profile Data Log holds 13
    # months of HH data [C] (13 x 30.44 d, rounded). A hub out of reach for longer loses the
    # periods that roll off; catch-up reads fetch at most this many missed days.
    meter_log_days: int = 396

    def __post_init__(self) -> None:
        v = self.meter_log_days
        if not _whole(v) or not 1 <= v <= 36_525:
            raise TwinInputError("params.shares.meter_log_days",
                                 f"must be a whole number of days from 1 to 36,525, got {v!r}")


# Published volumes per connected meter per month, by year: (messages besides alerts, device
# alerts). 2019: just over 28 messages a month per meter [C] (seed 002); its device alerts are not
# published: scaled from 2022 by the growth of messages [U]. 2022: about 1 billion messages and 1.6
# billion device alerts for about 21 million meters in July 2022 [C] (DCC, "Operating at scale",
# Aug 2022), that is about 48 and 76 [D] (shared/domain/CAPACITY.md).
CALIBRATION_VOLUMES: dict[int, tuple[float, float]] = {2019: (28.0, 76.0 * 28.0 / 48.0), 2022: (48.0, 76.0)}


@dataclass(frozen=True)
class TrafficParams:
    """Calibration of the nominal message mix.

    `calibration_year` picks the published volumes (CALIBRATION_VOLUMES) unless
    `messages_per_meter_month` or `device_alerts_per_meter_month` is given (per reachable meter,
    as the DCC quotes per connected meter). The daily read bursts are drawn per hub
    (FleetShares.daily_read); background messages make up the rest of the month's messages, and
    background device alerts the month's alerts. The alerts the model raises per hub (power
    outages, batteries, firmware, prepayment) come on top: events, not the nominal volume (about
    0.06 per meter per month in a quiet fleet, under 0.1% of it). Measured by
    tests/unit/test_traffic.py: 47.7 messages and 76.0 alerts for 2022, 27.8 and 44.3 for 2019.

    The 2022 device alerts are not broken down by alert code in any public source; the DCC says
    they include the power-outage alerts to DNOs (shared/domain/FACTS.md section 4). The twin
    carries them as one background volume of ALERT messages, spread over the day as the other
    background traffic is [U]."""

    calibration_year: int = 2022
    messages_per_meter_month: float | None = None
    device_alerts_per_meter_month: float | None = None
    # Daily read bursts per meter per month: ~60% of 2019's 28 messages (Oct 2019) [C].
    daily_reads_per_meter_month: float = 28.0 * 0.60
    # Split of the background messages among message types [U].
    background_mix: dict[str, float] = field(
        default_factory=lambda: {
            "ON_DEMAND_READ": 0.47,
            "PREPAYMENT": 0.18,
            "CONFIGURATION": 0.18,
            "SECURITY": 0.12,
            "FIRMWARE": 0.05,
        }
    )

    # Relative weight of DCC-scheduled daily reads per half-hour of the day: the burst is spread
    # over the whole day but weighted to the small hours when the network is quiet [U].
    daily_read_profile: tuple[float, ...] = (
        (3.0,) * 12  # 00:00-06:00
        + (1.0,) * 28  # 06:00-20:00
        + (2.0,) * 8  # 20:00-24:00
    )
    # Background (user-driven) traffic per half-hour: a working-day shape [U].
    background_profile: tuple[float, ...] = (
        (0.3,) * 12 + (1.0,) * 4 + (1.6,) * 16 + (1.3,) * 8 + (0.8,) * 8
    )

    def __post_init__(self) -> None:
        from twin.model.catalog import MessageType

        def bad(name: str, reason: str) -> TwinInputError:
            return TwinInputError(f"params.traffic.{name}", reason)

        if not _whole(self.calibration_year) or self.calibration_year not in CALIBRATION_VOLUMES:
            raise bad("calibration_year", f"must be one of {sorted(CALIBRATION_VOLUMES)}, got {self.calibration_year!r}")
        for name in ("messages_per_meter_month", "device_alerts_per_meter_month", "daily_reads_per_meter_month"):
            v = getattr(self, name)
            if v is not None and not (_number(v) and 0 <= v < 1e6):
                raise bad(name, f"must be a number of messages from 0, got {v!r}")
        mix = self.background_mix
        if not isinstance(mix, dict) or not mix:
            raise bad("background_mix", f"must map message types to shares, got {mix!r}")
        names = [m.name for m in MessageType]
        for k, v in mix.items():
            if k not in names:
                raise bad(f"background_mix.{k}", f"unknown message type; types are {', '.join(names)}")
            if not (_number(v) and 0 <= v < 1e6):
                raise bad(f"background_mix.{k}", f"must be a share from 0, got {v!r}")
        if sum(mix.values()) <= 0:
            raise bad("background_mix", "the shares must not all be 0")
        for name in ("daily_read_profile", "background_profile"):
            prof = getattr(self, name)
            if not isinstance(prof, tuple | list) or len(prof) != HALF_HOURS_PER_DAY:
                raise bad(name, f"must be {HALF_HOURS_PER_DAY} weights, one per half-hour of the day")
            if not all(_number(w) and 0 <= w < 1e6 for w in prof) or sum(prof) <= 0:
                raise bad(name, "weights must be numbers from 0, not all 0")

    @property
    def monthly_messages(self) -> float:
        """Messages besides device alerts per connected meter per month."""
        m = self.messages_per_meter_month
        return CALIBRATION_VOLUMES[self.calibration_year][0] if m is None else float(m)

    @property
    def monthly_alerts(self) -> float:
        """Device alerts per connected meter per month."""
        a = self.device_alerts_per_meter_month
        return CALIBRATION_VOLUMES[self.calibration_year][1] if a is None else float(a)


# The links the network's queues model, "CSP/WAN" (twin.model.catalog Csp and WanTech names).
CAPACITY_LINKS = ("NORTH/LRR", "NORTH/VWAN", "CENTRAL/G2", "CENTRAL/G3", "CENTRAL/G4", "CENTRAL/VWAN",
                  "SOUTH/G2", "SOUTH/G3", "SOUTH/G4", "SOUTH/VWAN")
CAPACITY_POLICIES = ("fifo", "priority")


@dataclass(frozen=True)
class CapacityParams:
    """The network's capacity and service levels (twin.model.capacity; shared/domain/CAPACITY.md).

    Per-link, per-base-station and DSP throughput are not published [U]. As CAPACITY.md proposes,
    each stage is sized so that the nominal load of `design_year` uses `design_utilisation` of it
    at its busiest half-hour: growth (MHHS), storms and switch-offs then read as headroom. A link
    is sized for `link_design_share` of its CSP region's meters (cellular links for a share of the
    region each, so a technology can take hubs from another); links not named there carry their
    traffic unconstrained."""

    enabled: bool = True
    # FIFO by default: the DCC has no SEC-mandated prioritisation (SECMP0030, which proposed it
    # when demand exceeds capacity, was withdrawn in Dec 2017 [C]; the April 2019 vend failures
    # happened with none [C]). "priority" serves the classes strictly in `priority` order.
    policy: str = "fifo"
    priority: tuple[str, ...] = ("ALERT", "CRITICAL", "ON_DEMAND", "SECURITY", "FIRMWARE", "SCHEDULED")
    design_utilisation: float = 0.40  # CAPACITY.md's example [U]
    design_year: int = 2022
    link_design_share: dict[str, float] = field(default_factory=lambda: {
        "NORTH/LRR": 1.0, "NORTH/VWAN": 0.05,
        "CENTRAL/G2": 0.6, "CENTRAL/G3": 0.6, "CENTRAL/G4": 0.4, "CENTRAL/VWAN": 0.05,
        "SOUTH/G2": 0.6, "SOUTH/G3": 0.6, "SOUTH/G4": 0.4, "SOUTH/VWAN": 0.05,
    })  # [U]
    # Multiplies a link's designed capacity: 0.5 halves it (a what-if; [U] all 1).
    link_capacity_factor: dict[str, float] = field(default_factory=dict)
    base_station_factor: float = 1.0  # North base stations, sized on the mean base station's load [U]
    dsp_factor: float = 1.0  # the central DCC Data Service Provider stage, sized on the fleet's load [U]
    # Message sizes by message type, bytes [U]: "tens of bytes to about 1 MB" [C] (ITPro, Aug 2022).
    message_bytes: dict[str, int] = field(default_factory=lambda: {
        "DAILY_READ": 1_200,  # a day of half-hourly values and registers in one package
        "ON_DEMAND_READ": 300, "PREPAYMENT": 250, "CONFIGURATION": 400,
        "SECURITY": 1_500,  # certificates in a credential swap
        "FIRMWARE": 50_000,  # an image block or a firmware command (images are hundreds of kB)
        "ALERT": 150,
        "BACKLOG_READ": 1_200,
        "SETTLEMENT_READ": 2_000,  # 48 half-hourly values with their status, per meter
    })
    # Over-the-air rate one message moves at, by WAN technology, bytes per second [U].
    wan_bytes_per_s: dict[str, float] = field(default_factory=lambda: {
        "LRR": 1_200.0, "G2": 4_000.0, "G3": 40_000.0, "G4": 400_000.0, "VWAN": 1_000_000.0})
    # Time the devices take to act and answer, by class, seconds [U].
    device_time_s: dict[str, float] = field(default_factory=lambda: {
        "ALERT": 0.0, "CRITICAL": 5.0, "ON_DEMAND": 3.0, "SCHEDULED": 3.0, "FIRMWARE": 60.0, "SECURITY": 5.0})
    # Target Response Times, seconds: on-demand reads 4.1.1/4.6.1 30 s for SMETS2 [S] (SEC Appendix
    # E); scheduled reads at 4.8.1's 5,600 s [S]; device alerts within the 300 s retry window [C];
    # critical commands 30 s, firmware a day, credential swaps an hour [U].
    target_response_s: dict[str, float] = field(default_factory=lambda: {
        "ALERT": 300.0, "CRITICAL": 30.0, "ON_DEMAND": 30.0, "SCHEDULED": 5_600.0, "FIRMWARE": 86_400.0,
        "SECURITY": 3_600.0})
    # Alert storm protection (SECMP0062 [C]; the figures are not published [U]): beyond
    # `alert_storm_threshold` repeats of one alert code from one device within
    # `alert_storm_window_s`, repeats are discarded, one copy forwarded per `alert_storm_period_s`.
    alert_storm_threshold: int = 10
    alert_storm_window_s: int = 3_600
    alert_storm_period_s: int = 900
    alert_retry_s: int = 300  # delivery retried for 300 s [C]
    alert_delayed_s: float = 1.0  # an alert queued longer than this counts as delayed [U]
    failed_alert_hold_s: int = 2 * 86_400  # then held in the failed-alert queue 2 days [C]

    def __post_init__(self) -> None:
        from twin.model.catalog import MessageType, TrafficClass, WanTech

        def bad(name: str, reason: str) -> TwinInputError:
            return TwinInputError(f"params.capacity.{name}", reason)

        def positive(name: str, v: Any) -> None:
            if not (_number(v) and 0 < v < 1e12):
                raise bad(name, f"must be a positive number, got {v!r}")

        def table(name: str) -> dict[Any, Any]:
            t = getattr(self, name)
            if not isinstance(t, dict):
                raise bad(name, f"must be a mapping of names to numbers, got {t!r}")
            return t

        if not isinstance(self.enabled, bool):
            raise bad("enabled", f"must be true or false, got {self.enabled!r}")
        if not isinstance(self.policy, str) or self.policy not in CAPACITY_POLICIES:
            raise bad("policy", f"must be one of {', '.join(CAPACITY_POLICIES)}, got {self.policy!r}")
        classes = [c.name for c in TrafficClass]
        prio = self.priority
        if (not isinstance(prio, tuple | list) or not all(isinstance(c, str) for c in prio)
                or sorted(prio) != sorted(classes)):
            raise bad("priority", f"must order every class once: {', '.join(classes)}; got {prio!r}")
        if not (_number(self.design_utilisation) and 0 < self.design_utilisation <= 1):
            raise bad("design_utilisation", f"must be in (0, 1], got {self.design_utilisation!r}")
        if not _whole(self.design_year) or self.design_year not in CALIBRATION_VOLUMES:
            raise bad("design_year", f"must be one of {sorted(CALIBRATION_VOLUMES)}, got {self.design_year!r}")
        for group in ("link_design_share", "link_capacity_factor"):
            for k, v in table(group).items():
                if k not in CAPACITY_LINKS:
                    raise bad(f"{group}.{k}", f"unknown link; links are {', '.join(CAPACITY_LINKS)}")
                positive(f"{group}.{k}", v)
        positive("base_station_factor", self.base_station_factor)
        positive("alert_delayed_s", self.alert_delayed_s)
        positive("dsp_factor", self.dsp_factor)
        for group, names in (("message_bytes", [m.name for m in MessageType]),
                             ("wan_bytes_per_s", [w.name for w in WanTech if w != WanTech.NONE]),
                             ("device_time_s", classes), ("target_response_s", classes)):
            given = table(group)
            for k, v in given.items():
                if k not in names:
                    raise bad(f"{group}.{k}", f"unknown name; expected one of {', '.join(names)}")
                if group == "device_time_s":
                    if not (_number(v) and 0 <= v < 1e9):
                        raise bad(f"{group}.{k}", f"must be a number of seconds from 0, got {v!r}")
                else:
                    positive(f"{group}.{k}", v)
            missing = set(names) - set(given)
            if missing:
                raise bad(group, f"missing {', '.join(sorted(missing))}")
        for name in ("alert_storm_threshold", "alert_storm_window_s", "alert_storm_period_s", "alert_retry_s",
                     "failed_alert_hold_s"):
            v = getattr(self, name)
            if not _whole(v) or not 0 < v < 10**9:
                raise bad(name, f"must be a positive whole number, got {v!r}")


@dataclass(frozen=True)
class IncidentParams:
    """Background faults drawn every tick (rare events: how many, then which)."""

    # Premises-level supply interruptions (local faults), per premises per year [U]. GB customer
    # interruptions run at ~50 per 100 customers a year including area faults.
    power_outages_per_year: float = 0.25
    power_outage_median_min: float = 20.0
    power_outage_sigma: float = 1.5
    # Power-outage alert: hub unpowered > 3 minutes sends AD1 [C]. Send delay ("dither") after
    # the 3 minutes, uniform in [0, backoff] [U] (2 minutes, later 5, per seeds/001).
    outage_alert_after_s: int = 180
    outage_alert_backoff_s: int = 120
    restore_alert_backoff_s: int = 120
    # Transient WAN/hub faults [U].
    hub_faults_per_year: float = 1.0
    hub_fault_median_h: float = 4.0
    hub_fault_sigma: float = 1.0
    # Hub hardware failures needing a field visit [U].
    hardware_failures_per_year: float = 0.005
    hardware_repair_median_days: float = 30.0
    hardware_repair_sigma: float = 0.8


@dataclass(frozen=True)
class EventParams:
    """Defaults of operator events; a command may override most of them."""

    # Effective firmware transfer rate by WAN technology, kbit/s [U]: long-range radio and 2G are
    # slow, 4G fast. Images run from tens of kB to ~1 MB [C].
    transfer_kbps: dict[str, float] = field(default_factory=lambda: {
        "LRR": 2.4, "G2": 9.6, "G3": 64.0, "G4": 500.0, "VWAN": 1000.0,
    })
    image_size_kb: float = 400.0
    # A GSME takes its image over the HAN in its wake windows: days, not minutes [U] (FACTS §3.6).
    gsme_han_days: float = 2.0
    gsme_image_battery_pct: float = 1.5  # battery cost of one image over the HAN [U]
    transfer_failure: float = 0.005  # image transfer fails (0x8F89) [U]
    # Activation outcome per model, keyed "Manufacturer Model"; unnamed models use the defaults [U].
    activation_failure: dict[str, float] = field(default_factory=dict)
    activation_brick: dict[str, float] = field(default_factory=dict)
    default_activation_failure: float = 0.01
    default_activation_brick: float = 0.0005
    # ESME models whose activation cuts the hub's power for over 3 minutes, raising false AD1
    # outage alerts (SECMP0102A/B) [C]; which models is not public [U].
    activation_power_cut_models: tuple[str, ...] = ("Landis & Gyr E470-5394", "Aclara SGM1412")
    activation_power_cut_s: tuple[int, int] = (200, 420)
    # Supplier switching: a credential swap (SR 6.23) needs the WAN; give up after this [U]
    # (switches complete within 5 working days since CSS, 2022 [C]).
    cos_deadline_days: float = 7.0
    messages_per_install: int = 6  # commissioning a swapped hub: 8.14.x, joins, reads [U]


@dataclass(frozen=True)
class PrepaymentParams:
    """Prepayment meters: emergency credit, disablement and the customers' top-up habits.

    The meter side follows GBCS/SMETS2 as the domain files give it: emergency credit (alert
    0x81AB Emergency Credit Activated), supply disabled when credit falls below the disablement
    threshold (0x8F0F), a top-up (SR 2.2, or a UTRN typed in when the WAN is down, seeds/003) arms
    the supply (0x8F32 Supply Armed) and a person at the premises enables it (seeds/004 para 148:
    after a disablement "a person must be present when supply is enabled"). Every figure is [U]:
    the domain files hold no emergency-credit amounts or top-up statistics."""

    # Emergency credit a meter lends once the balance reaches zero, pounds [U] (suppliers offer
    # about 5-15). Supply is disabled when the balance reaches minus this (disablement threshold 0).
    emergency_credit_gbp: float = 10.0
    # Customers top up at all; False gives the "no top-ups" fleet of issue 17's example.
    topups: bool = True
    # Top-up habits, shares of prepayment customers (static per premises) [U]:
    # - ahead: tops up once the balance falls below `ahead_below_gbp`;
    # - at_emergency: waits until emergency credit is in use;
    # - at_disablement: waits until supply is disabled, then tops up within hours;
    # - self_disconnect: stays off supply for days before topping up (self-disconnection).
    habit_shares: dict[str, float] = field(default_factory=lambda: {
        "ahead": 0.60, "at_emergency": 0.25, "at_disablement": 0.10, "self_disconnect": 0.05,
    })
    # Mean wait from reaching the habit's trigger to the top-up, hours (exponential) [U].
    habit_wait_h: dict[str, float] = field(default_factory=lambda: {
        "ahead": 12.0, "at_emergency": 12.0, "at_disablement": 2.0, "self_disconnect": 72.0,
    })
    ahead_below_gbp: float = 5.0
    topup_gbp: float = 20.0  # one top-up, pounds [U]
    # Mean wait from "supply armed" to the consumer pressing the button to enable supply, hours [U].
    enable_wait_h: float = 0.5


PREPAY_HABITS = ("ahead", "at_emergency", "at_disablement", "self_disconnect")


@dataclass(frozen=True)
class ModelParams:
    shares: FleetShares = field(default_factory=FleetShares)
    traffic: TrafficParams = field(default_factory=TrafficParams)
    incidents: IncidentParams = field(default_factory=IncidentParams)
    events: EventParams = field(default_factory=EventParams)
    prepayment: PrepaymentParams = field(default_factory=PrepaymentParams)
    capacity: CapacityParams = field(default_factory=CapacityParams)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _dc_dict(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelParams:
        """Override defaults from a (possibly partial) nested dict; unknown keys are an error."""
        if not isinstance(d, dict):
            raise TwinInputError("params", f"must be a mapping of parameter groups, got {d!r}")
        extra = set(d) - {f.name for f in fields(cls)}
        if extra:
            raise TwinInputError(f"params.{sorted(map(str, extra))[0]}", "unknown parameter group; groups are "
                                 + ", ".join(f.name for f in fields(cls)))
        base = cls()
        out = {}
        for f in fields(cls):
            sub = getattr(base, f.name)
            given = d.get(f.name, {})
            if not isinstance(given, dict):
                raise TwinInputError(f"params.{f.name}", f"must be a mapping of parameters, got {given!r}")
            names = {g.name for g in fields(sub)}
            unknown = set(given) - names
            if unknown:
                raise TwinInputError(f"params.{f.name}.{sorted(map(str, unknown))[0]}",
                                     f"unknown parameter; {f.name} parameters are {', '.join(sorted(names))}")
            # JSON has no tuples: restore them where the default is one, so configs compare equal.
            given = {k: tuple(v) if isinstance(getattr(sub, k), tuple) and isinstance(v, list) else v
                     for k, v in given.items()}
            if f.name == "capacity":
                # A table of the capacity model given in part changes only the entries it names.
                given = {k: {**getattr(sub, k), **v} if isinstance(getattr(sub, k), dict) and isinstance(v, dict)
                         else v for k, v in given.items()}
            out[f.name] = replace(sub, **given)
        return cls(**out)


def _number(v: Any) -> bool:
    """A finite real number (not a bool: YAML's true is no quantity)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _whole(v: Any) -> bool:
    """A whole number (not a bool)."""
    return isinstance(v, int) and not isinstance(v, bool)


def _dc_dict(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}
