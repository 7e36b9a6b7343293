"""Typed operation contracts of the model: an operation's state, the controls a user may send it,
and its progress as one frozen record per kind of operation (mirrored one to one by the
`twin.fleet.v1` messages `OperationState`, `OperationAction` and `*Progress`, AIP-151 metadata).

Each operation kind builds its own record from its merged shard counters (`FleetOp.progress`), so
no reader downstream (engine, API, dashboard, reports) parses counter names."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar, Self


class OperationState(StrEnum):
    """Where an operation is. String values are the names journals, reports and the golden runs
    have always recorded, so a state compares equal to (and serialises as) its old string."""

    PENDING = "PENDING"  # accepted, its start tick not reached
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    HALTED = "HALTED"  # stopped by itself (a rollout wave's failure rate passed its threshold)
    CANCELLED = "CANCELLED"  # stopped by an operator
    DONE = "DONE"
    FAILED = "FAILED"  # ended without doing what it was for (a switch withdrawn, an SR not applied)

    @property
    def done(self) -> bool:
        """Finished for good: no control changes it any more."""
        return self in _FINAL

    @property
    def live(self) -> bool:
        """Started and not finished or halted: its shard halves step each tick."""
        return self in (OperationState.RUNNING, OperationState.PAUSED)


_FINAL = frozenset({OperationState.DONE, OperationState.CANCELLED, OperationState.HALTED, OperationState.FAILED})


class OperationAction(StrEnum):
    """What a user may ask of a running operation (the journal records these values)."""

    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    ACTIVATE = "activate"  # a rollout distributed with hold_activation: the signed activation (SR 11.3)


@dataclass(frozen=True)
class Progress:
    """Base of the per-kind records. `fraction` is how far the operation has got, 0..1.

    `observed` holds what the planner itself sees of an operation, beside the fields its shards
    count (which the API's message mirrors one to one): the ticks it has run (`TICKS_RUN`, what a
    timed operation's fraction is made of) and figures read from the merged tick summary (a
    switch-off's hubs on the network it turns off). Not a dataclass field, so neither the API
    message, `as_dict` nor `result` carry it; `figures` does (a run report plots it)."""

    observed: ClassVar[Mapping[str, int]] = MappingProxyType({})

    def seeing(self, observed: Mapping[str, int]) -> Self:
        """This record holding `observed` (ints by name; the planner's own observations, above)."""
        object.__setattr__(self, "observed", MappingProxyType(dict(observed)))
        return self

    def fraction(self, state: OperationState) -> float:
        return 1.0 if state == OperationState.DONE else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (nested records as dicts, tuples as lists), for run reports."""
        return dataclasses.asdict(self)

    def result(self) -> dict[str, int | float]:
        """Its figures as one flat {name: number} (a nested record's under its own names, the
        in-flight counts as in_flight_<csp>; lists, text and flags left out): what a DCC
        response's `result` carries for the operation a Service Request started."""
        out: dict[str, int | float] = {}
        _flatten(self, out, "")
        return out

    def figures(self) -> dict[str, int | float]:
        """The counts worth following over time (a run report's series of the operation): its
        fields' (`result`) and the figures the planner observed, its clock left out."""
        out = self.result()
        out.update({k: v for k, v in self.observed.items() if k not in CLOCK_KEYS})
        return out

    def _elapsed(self, state: OperationState) -> float:
        """A timed operation's fraction: the share of its ticks run (`observed`), 1 when DONE."""
        if state == OperationState.DONE:
            return 1.0
        return _share(self.observed.get(TICKS_RUN, 0), self.observed.get(TICKS_TOTAL, 0))


def _flatten(record: Any, out: dict[str, int | float], prefix: str) -> None:
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if dataclasses.is_dataclass(value):
            _flatten(value, out, f"{f.name}_" if isinstance(value, InFlight) else "")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[prefix + f.name] = value


# The clock of a timed operation, in its `observed` figures: ticks from its start tick to the tick
# last observed, and from its start tick to its end tick (when it is DONE).
TICKS_RUN = "ticks_run"
TICKS_TOTAL = "ticks_total"
CLOCK_KEYS = frozenset({TICKS_RUN, TICKS_TOTAL})


def _share(done: int, total: int) -> float:
    return min(1.0, done / total) if total > 0 else 0.0


@dataclass(frozen=True)
class WaveProgress:
    """One rollout wave: its devices and how many are through. `passed` counts devices whose
    transfer is over (the fair denominator of the failure rate the halt threshold is held to)."""

    index: int
    share: float  # cumulative share of the targeted devices up to this wave, 0..1
    devices: int
    finished: int  # activated, failed or bricked
    passed: int
    failed: int  # failed or bricked


@dataclass(frozen=True)
class InFlight:
    """Devices in flight per CSP region (what the per-CSP concurrency limit holds)."""

    north: int = 0
    central: int = 0
    south: int = 0


@dataclass(frozen=True)
class FirmwareRolloutProgress(Progress):
    """A firmware rollout: devices by stage, the waves, and what holds it up."""

    targeted: int = 0
    distributed: int = 0  # images on the device (SR 11.1 done)
    waiting: int = 0
    transferring: int = 0
    activating: int = 0
    activated: int = 0
    failed: int = 0
    bricked: int = 0
    cancelled: int = 0
    left_supplier: int = 0  # premises that left the rollout's suppliers before activation
    pending_no_wan: int = 0  # waiting devices whose hub has no WAN now
    activating_no_wan: int = 0
    in_flight: InFlight = InFlight()
    current_wave: int = 0
    waves: tuple[WaveProgress, ...] = ()
    awaiting_activation: bool = False  # distribution only until an SR 11.3 activates it
    model: str = ""
    target_version: str = ""

    def fraction(self, state: OperationState) -> float:
        if state == OperationState.DONE:
            return 1.0
        return _share(self.activated + self.failed + self.bricked, self.targeted)

    def figures(self) -> dict[str, int | float]:
        # Devices by stage and what holds them up; in-flight counts and the wave index are
        # controls of the moment, not a progression.
        out = self.result()
        for name in ("current_wave", *(f"in_flight_{f.name}" for f in dataclasses.fields(InFlight))):
            out.pop(name, None)
        return out


@dataclass(frozen=True)
class CredentialSwapProgress:
    """Switches settled by the SR 6.23 credential swap (or not): smart, dumb (SMETS1 not enrolled
    loses smart function), failed (no WAN before the deadline), pending."""

    switched_smart: int = 0
    dumb: int = 0
    failed: int = 0
    pending: int = 0


@dataclass(frozen=True)
class SupplierSwitchProgress(Progress):
    """One change of supplier."""

    switches: int = 0
    withdrawn: int = 0  # the gaining supplier failed before the switch
    swaps: CredentialSwapProgress = CredentialSwapProgress()

    def fraction(self, state: OperationState) -> float:
        """Two steps per premises: the switch itself, then its credential swap settled (smart,
        dumb or failed). A switch waits days for the swap when the hub is dark, so half of it
        shows done in the meantime instead of 0 until it ends."""
        if state == OperationState.DONE:
            return 1.0
        sw = self.swaps
        return _share(self.switches + sw.switched_smart + sw.dumb + sw.failed, 2 * max(self.switches, 1))


@dataclass(frozen=True)
class ChurnCampaignProgress(Progress):
    """Market churn: switches made so far out of those planned for the campaign."""

    switches: int = 0
    planned: int = 0  # switches_per_month x days / (days in an average month)
    swaps: CredentialSwapProgress = CredentialSwapProgress()

    def fraction(self, state: OperationState) -> float:
        return 1.0 if state == OperationState.DONE else _share(self.switches, self.planned)


@dataclass(frozen=True)
class SupplierFailureProgress(Progress):
    """A supplier failure: its customers moved to the Supplier of Last Resort (capped per day)."""

    customers: int = 0
    moved: int = 0
    remaining: int = 0
    swaps: CredentialSwapProgress = CredentialSwapProgress()

    def fraction(self, state: OperationState) -> float:
        return 1.0 if state == OperationState.DONE else _share(self.moved, self.customers)


@dataclass(frozen=True)
class NetworkSwitchOffProgress(Progress):
    """A 2G/3G switch-off: applies in one tick (the network schedule holds it), so its fraction is
    0 until that tick and 1 from it. Its `observed` figures (the planner reads them from the
    merged summary, DCC hubs in the region on the technology): `hubs_on_network` each tick from
    its acceptance to the switch-off (those a swap programme moves first leave it), and
    `hubs_cut_off`, those on it at the switch-off (dark because of it)."""

    off_tick: int = 0


@dataclass(frozen=True)
class FieldProgrammeProgress(Progress):
    """A 4G hub swap programme or a VWAN fallback: premises done so far and those still eligible
    (the priority class first: a prioritised technology, or premises with no WAN at all)."""

    done: int = 0  # swapped or onboarded
    eligible: int = 0
    eligible_priority: int = 0

    def fraction(self, state: OperationState) -> float:
        return 1.0 if state == OperationState.DONE else _share(self.done, self.done + self.eligible)


@dataclass(frozen=True)
class PowerOutageProgress(Progress):
    """A power cut over a network-operator area. Its fraction is the share of its ticks run: from
    its start tick to `end_tick`, when it is DONE (ticks of `duration_min`). Restoration
    staggered over `restore_spread_min` continues at the premises after that (the operation
    ends with the duration), so it is not counted; hubs restored over hubs cut would sit at 0 for
    the whole duration and move only in the restoration spread (not at all without one)."""

    premises_in_area: int = 0
    premises_cut: int = 0
    premises_already_unpowered: int = 0
    end_tick: int = 0  # the first tick after restoration

    def fraction(self, state: OperationState) -> float:
        return self._elapsed(state)


@dataclass(frozen=True)
class BaseStationFailureProgress(Progress):
    """North base stations down. Its fraction is the share of its ticks run, start to `end_tick`."""

    hubs_affected: int = 0
    end_tick: int = 0

    def fraction(self, state: OperationState) -> float:
        return self._elapsed(state)


@dataclass(frozen=True)
class CspIncidentProgress(Progress):
    """A CSP-wide WAN incident. Its fraction is the share of its ticks run, start to `end_tick`;
    its `observed` figure `hubs_cut_off` is the DCC hubs in the region on the networks it takes
    down (read by the planner from the merged summary each tick it runs)."""

    end_tick: int = 0

    def fraction(self, state: OperationState) -> float:
        return self._elapsed(state)


@dataclass(frozen=True)
class ServiceRequestProgress(Progress):
    """A device-changing Service Request: applied or failed, and what the device reported."""

    applied: int = 0
    failed: int = 0
    pending: int = 0
    credit_pence: int | None = None  # prepayment balance after the request, if a prepayment meter
    tariff_dp: int | None = None
    refusal: str = ""  # "not_prepayment" or "credit_below_disablement" when the meter refused it

    def result(self) -> dict[str, int | float]:
        """The SR's result as the DCC's response carries it (only the values the device gave)."""
        out: dict[str, int | float] = {"applied": self.applied, "failed": self.failed, "pending": self.pending}
        if self.refusal:
            out[self.refusal] = 1
        if self.credit_pence is not None:
            out["credit_pence"] = self.credit_pence
        if self.tariff_dp is not None:
            out["tariff_dp"] = self.tariff_dp
        return out


@dataclass(frozen=True)
class MhhsMigrationProgress(Progress):
    """A migration to market-wide half-hourly settlement: ESMEs moved to daily half-hourly
    retrieval so far, out of those it targets, and its waves (sprints)."""

    targeted: int = 0  # ESMEs the migration moves (its share of those selected at the start)
    migrated: int = 0  # moved so far (each now sends one settlement read a day)
    waves: int = 0  # waves planned
    waves_done: int = 0  # waves applied
    next_wave_tick: int = -1  # the tick the next wave applies at (-1: none left)

    def fraction(self, state: OperationState) -> float:
        return 1.0 if state == OperationState.DONE else _share(self.migrated, self.targeted)

    def figures(self) -> dict[str, int | float]:
        out = self.result()
        out.pop("next_wave_tick", None)  # a schedule, not a progression
        return out


@dataclass(frozen=True)
class OnDemandReadsProgress(Progress):
    """An on-demand read campaign: its meters, the reads drawn for it and how they went."""

    targeted: int = 0  # meters the campaign reads
    planned: int = 0  # reads drawn for the whole campaign
    answered: int = 0  # reads that reached a reachable hub
    failed: int = 0  # reads to a hub out of reach at the time
    end_tick: int = 0  # the first tick after the campaign

    def fraction(self, state: OperationState) -> float:
        return 1.0 if state == OperationState.DONE else _share(self.answered + self.failed, self.planned)

    def figures(self) -> dict[str, int | float]:
        out = self.result()
        out.pop("end_tick", None)
        return out


# The progress record of each operation kind (the `kind` of its command).
PROGRESS_TYPES: dict[str, type[Progress]] = {
    "firmware_rollout": FirmwareRolloutProgress,
    "supplier_switch": SupplierSwitchProgress,
    "churn_campaign": ChurnCampaignProgress,
    "supplier_failure": SupplierFailureProgress,
    "network_switch_off": NetworkSwitchOffProgress,
    "swap_programme": FieldProgrammeProgress,
    "vwan_fallback": FieldProgrammeProgress,
    "power_outage": PowerOutageProgress,
    "base_station_failure": BaseStationFailureProgress,
    "csp_incident": CspIncidentProgress,
    "service_request": ServiceRequestProgress,
    "mhhs_migration": MhhsMigrationProgress,
    "on_demand_reads": OnDemandReadsProgress,
}


def swaps_of(counters: dict[str, int]) -> CredentialSwapProgress:
    """The credential-swap part of a switching operation's merged counters."""
    return CredentialSwapProgress(switched_smart=counters.get("switched_smart", 0), dumb=counters.get("dumb", 0),
                                  failed=counters.get("failed", 0), pending=counters.get("pending", 0))
