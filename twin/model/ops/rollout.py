"""Firmware rollout: distribution (SR 11.1) then signed activation (SR 11.3), in waves, within a
concurrency limit per CSP, halting itself when a wave fails too often."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from twin.model.alerts import count_alerts
from twin.model.catalog import (
    AREA_CSP,
    N_CSP,
    AlertKind,
    DeviceType,
    Fault,
    MessageType,
    Status,
    VersionTable,
    WanTech,
)
from twin.model.config import FleetConfig
from twin.model.kernel import IncidentDraw, start_incidents
from twin.model.ops.base import LAG, Control, FleetOp, PlannerContext, ShardContext, ShardOp
from twin.model.ops.commands import Command, FirmwareRollout
from twin.model.ops.common import (
    block_demand,
    csp_of,
    days_to_ticks,
    issue_budget,
    op_uniform,
    reachable,
    sort_by_block,
    take_by_block,
)
from twin.model.ops.progress import (
    FirmwareRolloutProgress,
    InFlight,
    OperationAction,
    OperationState,
    WaveProgress,
)
from twin.model.params import TICK_SECONDS
from twin.model.state import HubState
from twin.model.summary import TickSummary
from twin.model.traffic import count_rows

WAITING, TRANSFER, ACTIVATE, ACTIVATED, FAILED, BRICKED, CANCELLED = range(7)
STAGES = ("waiting", "transferring", "activating", "activated", "failed", "bricked", "cancelled")
CSP_KEYS = ("north", "central", "south")


def select_devices(hs: HubState, cmd: FirmwareRollout, versions: VersionTable, target_index: int | None) -> np.ndarray:
    """Rows of this shard whose device matches the rollout's selector (`from_versions` looked up
    in this shard's `versions`), leaving out devices already on the target (`target_index`, None:
    keep them; a device on the target has nothing to do), in row order.

    A rollout to named hubs (an SR 11.1) tests only the named hubs this shard holds: its cost is
    the hubs named, never the shard."""
    if cmd.hubs:
        named = np.asarray(cmd.hubs, np.int64)
        rows = np.unique(hs.local(named[hs.holds(named)]))
    else:
        rows = np.arange(hs.n_hubs, dtype=np.int64)
    c = hs.cols
    dev = DeviceType(cmd.device_type).name.lower()
    mask = c[f"{dev}_model"][rows] == cmd.model_code
    fw = c[f"{dev}_fw"][rows]
    if cmd.from_versions:
        held = [versions.find(cmd.device_type, cmd.model_code, v) for v in cmd.from_versions]
        mask &= np.isin(fw, [i for i in held if i is not None])
    if target_index is not None:
        mask &= fw != target_index
    if cmd.regions:
        mask &= np.isin(AREA_CSP[c["area"][rows]], cmd.regions)
    if cmd.suppliers:
        col = "gas_supplier" if cmd.device_type == DeviceType.GSME else "supplier"
        mask &= np.isin(c[col][rows], cmd.suppliers)
    return rows[mask]


def version_census(hs: HubState, cmd: FirmwareRollout, versions: VersionTable) -> dict[str, int]:
    """{version: devices} of this shard's devices the rollout's selector matches, those already on
    the target included (validation tells them apart): what decides whether it is a downgrade."""
    rows = select_devices(hs, cmd, versions, None)
    fw = hs.cols[f"{DeviceType(cmd.device_type).name.lower()}_fw"][rows]
    counts = np.bincount(fw.astype(np.int64))
    return {versions.label(cmd.device_type, cmd.model_code, i): int(k) for i, k in enumerate(counts.tolist()) if k}


def shard_census(hs: HubState, cmd: Command, versions: VersionTable) -> dict[str, int]:
    """One part of a command's census: {version: devices} of this state a rollout selects ({} for
    any other command). The in-process fleet and every shard actor answer with this."""
    return version_census(hs, cmd, versions) if isinstance(cmd, FirmwareRollout) else {}


def fleet_census(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """The census of the whole fleet from its parts (in hub order), as validation reads it
    (validation.rollout_version_check): one merge for the in-process model and the engine."""
    total: dict[str, int] = {}
    for part in parts:
        for v, n in part.items():
            total[v] = total.get(v, 0) + n
    return total


def _probabilities(cmd: FirmwareRollout, config: FleetConfig) -> tuple[float, float, bool]:
    ev = config.params.events
    label = cmd.model_label
    fail = cmd.failure_prob if cmd.failure_prob is not None else ev.activation_failure.get(
        label, ev.default_activation_failure)
    brick = cmd.brick_prob if cmd.brick_prob is not None else ev.activation_brick.get(
        label, ev.default_activation_brick)
    cuts_power = cmd.device_type == DeviceType.ESME and label in ev.activation_power_cut_models
    return fail, brick, cuts_power


class RolloutShard(ShardOp):
    cmd: FirmwareRollout

    def start(self, hs: HubState, ctx: ShardContext, tick: int, s: TickSummary) -> None:
        cmd = self.cmd
        # Every shard records the version, held hubs or not, so the version tables stay the same.
        self.target_index = ctx.versions.index(cmd.device_type, cmd.model_code, cmd.target_version, add=True)
        # A rollout to named hubs (an SR 11.1) takes part only where one of them is held; the
        # other shards retire at once, reporting nothing. The shards that hold them report even
        # when no device matches, so the fleet half always hears of it.
        self.holds_target = not cmd.hubs or bool(hs.holds(np.asarray(cmd.hubs, np.int64)).any())
        if not self.holds_target:
            self.state = OperationState.DONE
        rows = select_devices(hs, cmd, ctx.versions, self.target_index) if self.holds_target else np.zeros(0, np.int64)
        u = op_uniform(hs, self.seq, 0, rows)
        order = sort_by_block(hs, rows, u)
        self.rows = rows[order]
        self.wave = np.searchsorted(np.asarray(cmd.waves), u[order], side="right").astype(np.int8)
        self.wave = np.minimum(self.wave, len(cmd.waves) - 1)
        self.stage = np.full(self.rows.size, WAITING, np.int8)
        self.due = np.zeros(self.rows.size, np.int64)
        self.delivered = np.zeros(self.rows.size, bool)  # image on the device (SR 11.1 done)
        self.csp = csp_of(hs, self.rows)
        self.current_wave = 0
        self.fail, self.brick, self.cuts_power = _probabilities(cmd, ctx.config)
        self.budget: dict[str, np.ndarray] | None = None
        self.may_activate = not cmd.hold_activation
        self.left_supplier = 0  # devices dropped because their premises left the suppliers
        # The network as of the last step: the report judges reachability with it.
        self._up_area: np.ndarray | None = None

    def control(self, action, data, hs, ctx, tick, s) -> None:
        if action == "activate":
            self.may_activate = True
        elif action == "wave":
            self.current_wave = int(data["wave"])
        elif action == "budget":
            self.budget = data
        else:
            super().control(action, data, hs, ctx, tick, s)
            if action == "cancel":
                self.stage[(self.stage == WAITING) | (self.stage == TRANSFER)] = CANCELLED
            if action == "finish":
                # Closed: whatever has not been activated by now (devices left without WAN, an
                # image on a hub that went dark) never will be under this rollout.
                self.stage[np.isin(self.stage, (WAITING, TRANSFER, ACTIVATE))] = CANCELLED
            if action == "halt":
                # A halted rollout stops dispatching; images already on devices are not activated.
                self.stage[(self.stage == WAITING) | (self.stage == ACTIVATE)] = CANCELLED

    @property
    def active(self) -> bool:
        # In-flight transfers finish even while paused or halted.
        return self.state in (OperationState.RUNNING, OperationState.PAUSED, OperationState.HALTED)

    def settled(self) -> bool:
        return not (self.stage == TRANSFER).any()

    def _transfer_ticks(self, hs: HubState, rows: np.ndarray, ctx: ShardContext) -> np.ndarray:
        ev = ctx.config.params.events
        rate = np.zeros(len(WanTech))
        for name, kbps in ev.transfer_kbps.items():
            rate[WanTech[name]] = kbps
        kbps = rate[hs.cols["wan"][rows]]
        seconds = self.cmd.image_size_kb * 8 / np.maximum(kbps, 1e-9)
        if self.cmd.device_type == DeviceType.GSME:
            seconds = seconds + ev.gsme_han_days * 86400
        return np.maximum(1, np.ceil(seconds / TICK_SECONDS)).astype(np.int64)

    def step(self, hs, ctx, tick, s, up_area) -> None:
        self._up_area = up_area
        dt = DeviceType(self.cmd.device_type)
        t0 = tick * TICK_SECONDS
        if self.cmd.suppliers:
            self._drop_switched_away(hs, dt)
        # Transfers falling due: the image arrives (or fails) if the hub can be reached.
        idx = np.flatnonzero((self.stage == TRANSFER) & (self.due <= tick))
        if idx.size:
            rows = self.rows[idx]
            ok = reachable(hs, rows, up_area)
            # A transfer to a hub gone dark meanwhile (power cut, switch-off, incident) is lost: the
            # device waits to be sent the image again once reachable, holding no concurrency slot,
            # so a hub dark for good never keeps a wave (or the rollout) from ending.
            self.stage[idx[~ok]] = WAITING if OperationState(self.state).live else CANCELLED
            idx, rows = idx[ok], rows[ok]
            lost = op_uniform(hs, self.seq, 1, rows) < ctx.config.params.events.transfer_failure
            self.stage[idx[lost]] = FAILED
            self.stage[idx[~lost]] = ACTIVATE
            self.delivered[idx[~lost]] = True
            self.due[idx[~lost]] = tick + 1
            kinds = np.where(lost, AlertKind.FIRMWARE_TRANSFER_FAIL, AlertKind.FIRMWARE_TRANSFER_OK)
            count_alerts(s, hs, rows, kinds, (op_uniform(hs, self.seq, 2, rows, tick) * TICK_SECONDS).astype(np.int64))
            if dt == DeviceType.GSME:
                cost = int(ctx.config.params.events.gsme_image_battery_pct * 100)
                batt = hs.cols["gsme_battery"]
                batt[rows] = np.maximum(batt[rows].astype(np.int64) - cost, 0).astype(np.uint16)
        # Activations: the signed SR 11.3.
        if self.state == OperationState.RUNNING and self.may_activate:
            idx = np.flatnonzero((self.stage == ACTIVATE) & (self.due <= tick))
            if idx.size:
                self._activate(hs, ctx, idx, tick, s, up_area, dt, t0)
        # New transfers within this tick's budget.
        if self.state == OperationState.RUNNING and self.budget is not None:
            waiting = (self.stage == WAITING) & (self.wave <= self.current_wave)
            cand = np.flatnonzero(waiting)
            ok = reachable(hs, self.rows[cand], up_area)
            chosen = np.zeros(self.rows.size, bool)
            for c in range(N_CSP):
                eligible = np.zeros(self.rows.size, bool)
                eligible[cand[ok & (self.csp[cand] == c)]] = True
                chosen |= take_by_block(hs, self.rows, eligible, self.budget["blocks"], self.budget["budget"][:, c])
            idx = np.flatnonzero(chosen)
            self.stage[idx] = TRANSFER
            self.due[idx] = tick + self._transfer_ticks(hs, self.rows[idx], ctx)
            count_rows(s, MessageType.FIRMWARE, hs, self.rows[idx])
        self.budget = None

    def _drop_switched_away(self, hs: HubState, dt: DeviceType) -> None:
        """A rollout by supplier stops at premises that have left its suppliers (a switch, churn,
        a supplier failure): after the credential swap the device is no longer theirs to update.
        Devices waiting or holding an image not yet activated leave it as cancelled."""
        idx = np.flatnonzero((self.stage == WAITING) | (self.stage == ACTIVATE))
        if idx.size == 0:
            return
        col = "gas_supplier" if dt == DeviceType.GSME else "supplier"
        gone = idx[~np.isin(hs.cols[col][self.rows[idx]], self.cmd.suppliers)]
        self.stage[gone] = CANCELLED
        self.left_supplier += int(gone.size)

    def _activate(self, hs, ctx, idx, tick, s, up_area, dt, t0) -> None:
        rows = self.rows[idx]
        ok = reachable(hs, rows, up_area)
        idx, rows = idx[ok], rows[ok]
        if not idx.size:
            return
        u = op_uniform(hs, self.seq, 3, rows)
        bricked = u < self.brick
        failed = ~bricked & (u < self.brick + self.fail)
        good = ~bricked & ~failed
        self.stage[idx[bricked]] = BRICKED
        self.stage[idx[failed]] = FAILED
        self.stage[idx[good]] = ACTIVATED
        hs.cols[f"{dt.name.lower()}_fw"][rows[good]] = self.target_index
        count_rows(s, MessageType.FIRMWARE, hs, rows, 2)
        secs = (op_uniform(hs, self.seq, 4, rows, tick) * TICK_SECONDS).astype(np.int64)
        count_alerts(s, hs, rows[good], np.full(int(good.sum()), AlertKind.FIRMWARE_ACTIVATED), secs[good])
        if bricked.any():
            if dt in (DeviceType.CH, DeviceType.ESME):
                hs.change(rows[bricked], fault_set=Fault.BRICKED)
            elif dt == DeviceType.GSME:
                hs.change(rows[bricked], status_set=Status.GSME_DEAD)
        if self.cuts_power:
            # The known side effect: the meter drops the hub's supply for over 3 minutes while it
            # restarts, and the hub raises a (false) power-outage alert.
            lo, hi = ctx.config.params.events.activation_power_cut_s
            k = rows.size
            start = t0 + secs
            dur = lo + (op_uniform(hs, self.seq, 5, rows) * (hi - lo)).astype(np.int64)
            backoff = ctx.config.params.incidents.outage_alert_backoff_s
            draw = IncidentDraw(bit=int(Fault.POWER), hub=hs.offset + rows, start_s=start, end_s=start + dur,
                                alert_backoff_s=(op_uniform(hs, self.seq, 6, rows) * backoff).astype(np.int64),
                                restore_backoff_s=np.zeros(k, np.int64))
            start_incidents(hs, draw, ctx.config)

    def report(self, hs, tick) -> dict[str, Any]:
        if not self.holds_target:
            return {}
        counts = np.bincount(self.stage, minlength=len(STAGES))
        rep: dict[str, Any] = {"targeted": int(self.rows.size), "distributed": int(self.delivered.sum()),
                               "left_supplier": self.left_supplier}
        rep.update({name: int(counts[i]) for i, name in enumerate(STAGES)})
        finished = np.isin(self.stage, (ACTIVATED, FAILED, BRICKED))
        bad = np.isin(self.stage, (FAILED, BRICKED))
        for w in range(len(self.cmd.waves)):
            in_w = self.wave == w
            rep[f"wave{w}_total"] = int(in_w.sum())
            rep[f"wave{w}_finished"] = int((in_w & finished).sum())
            rep[f"wave{w}_failed"] = int((in_w & bad).sum())
            # Devices whose transfer is over: the fair denominator for a failure rate, since a
            # transfer failure is known a tick before the activation of its batch-mates.
            rep[f"wave{w}_passed"] = int((in_w & (finished | (self.stage == ACTIVATE))).sum())
        waiting = (self.stage == WAITING) & (self.wave <= self.current_wave)
        activating = self.stage == ACTIVATE
        # Reachability for the report is judged with the network as of the last step.
        up_area = self._up_area
        ok = np.zeros(self.rows.size, bool)
        if waiting.any() or activating.any():
            idx = np.flatnonzero(waiting | activating)
            ok[idx] = reachable(hs, self.rows[idx], up_area if up_area is not None else _all_up())
        # An image delivered to a hub that has gone dark waits for it, in no one's way: it is not
        # in flight (neither the concurrency limit nor the end of a wave waits for it).
        flying = (self.stage == TRANSFER) | (activating & ok)
        for c, key in enumerate(CSP_KEYS):
            rep[f"inflight_{key}"] = int((flying & (self.csp == c)).sum())
        rep["pending_no_wan"] = int((waiting & ~ok).sum())
        rep["activating_no_wan"] = int((activating & ~ok).sum())
        rep["blocks"], rep["block_demand"] = block_demand(hs, self.rows, waiting & ok, self.csp, N_CSP)
        return rep


def _all_up() -> np.ndarray:
    from twin.model.catalog import N_AREA_CODES, N_WAN

    return np.ones((N_AREA_CODES, N_WAN), bool)


class RolloutFleet(FleetOp):
    cmd: FirmwareRollout

    def __init__(self, name: str, cmd: FirmwareRollout, config: FleetConfig):
        super().__init__(name, cmd, config)
        self.current_wave = 0
        self.wave_live_from = cmd.at  # first tick whose report reflects current_wave
        self.issued: deque[tuple[int, np.ndarray]] = deque()  # (tick, per-CSP totals)
        self.limit = np.full(N_CSP, cmd.concurrency_per_csp, np.int64)

    def on_accept(self, planner: PlannerContext) -> None:
        self.may_activate = not self.cmd.hold_activation

    def on_start(self, planner: PlannerContext) -> None:
        # Recorded when the start goes to the shards, as each shard records it (RolloutShard.start):
        # rollouts can start in another order than they were accepted, and a version's index must
        # mean the same in the planner's table (labels for queries) as in every shard's.
        planner.versions.index(self.cmd.device_type, self.cmd.model_code, self.cmd.target_version, add=True)

    def on_control(self, action: str) -> list[Control]:
        if action == "activate":
            self.may_activate = True
            return [Control(self.name, "activate")]
        return super().on_control(action)

    def allowed_actions(self) -> set[OperationAction]:
        acts = super().allowed_actions()
        return acts | {OperationAction.ACTIVATE} if acts and not self.may_activate else acts

    def observe(self, tick: int, rep: dict[str, Any] | None, planner: PlannerContext) -> list[Control]:
        super().observe(tick, rep, planner)
        if rep is None or self.done:
            return []
        cmd = self.cmd
        n_waves = len(cmd.waves)
        if tick < self.wave_live_from:
            return []  # the shards have not yet acted on the last wave decision
        flying = sum(rep[f"inflight_{k}"] for k in CSP_KEYS)
        ready = int(rep["block_demand"].sum())
        wave_over = ready == 0 and flying == 0
        # Auto-halt on a started wave whose failure rate passes the threshold: during the wave
        # once it has a fair sample, and in any case when the wave is over.
        for w in range(self.current_wave + 1):
            passed, bad = rep[f"wave{w}_passed"], rep[f"wave{w}_failed"]
            if passed and (passed >= cmd.min_wave_sample or wave_over) and bad > cmd.halt_failure_rate * passed:
                self.state = OperationState.HALTED
                self.reason = (f"wave {w} failure rate {bad / passed:.1%} passed the {cmd.halt_failure_rate:.1%} "
                               f"threshold ({bad} of {passed} devices)")
                return [Control(self.name, "halt")]
        if self.state != OperationState.RUNNING:
            return []
        out: list[Control] = []
        if wave_over:
            if self.current_wave + 1 < n_waves:
                self.current_wave += 1
                self.wave_live_from = tick + LAG
                return [Control(self.name, "wave", {"wave": self.current_wave})]
            elif rep["activating"] and not self.may_activate:
                return []  # distributed, waiting for the signed activation (SR 11.3)
            elif (dark := rep["pending_no_wan"] + rep.get("activating_no_wan", 0)) == 0 or \
                    tick >= cmd.at + days_to_ticks(cmd.max_days):
                self.state = OperationState.DONE
                notes = []
                if dark:
                    notes.append(f"{dark} devices still without WAN when the rollout closed")
                if rep.get("left_supplier"):
                    notes.append(f"{rep['left_supplier']} devices left the rollout's suppliers before activation")
                self.reason = "; ".join(notes)
                return [Control(self.name, "finish")]
        # Budgets for tick + LAG: the limit less what is in flight and what is already promised.
        while self.issued and self.issued[0][0] <= tick:
            self.issued.popleft()
        promised = sum((b for _, b in self.issued), np.zeros(N_CSP, np.int64))
        inflight = np.array([rep[f"inflight_{k}"] for k in CSP_KEYS], np.int64)
        free = self.limit - inflight - promised
        if ready:
            budget = issue_budget(rep["blocks"], rep["block_demand"], free)
            self.issued.append((tick + LAG, budget["budget"].sum(axis=0)))
            out.append(Control(self.name, "budget", budget))
        return out

    def progress(self, counters: dict[str, int] | None = None) -> FirmwareRolloutProgress:
        c = self.counters if counters is None else counters
        waves = tuple(WaveProgress(index=w, share=float(share), devices=c.get(f"wave{w}_total", 0),
                                   finished=c.get(f"wave{w}_finished", 0), passed=c.get(f"wave{w}_passed", 0),
                                   failed=c.get(f"wave{w}_failed", 0)) for w, share in enumerate(self.cmd.waves))
        stages = {name: c.get(name, 0) for name in STAGES}
        return FirmwareRolloutProgress(
            targeted=c.get("targeted", 0), distributed=c.get("distributed", 0), **stages,
            left_supplier=c.get("left_supplier", 0), pending_no_wan=c.get("pending_no_wan", 0),
            activating_no_wan=c.get("activating_no_wan", 0),
            in_flight=InFlight(**{k: c.get(f"inflight_{k}", 0) for k in CSP_KEYS}), current_wave=self.current_wave,
            waves=waves, awaiting_activation=not self.may_activate, model=self.cmd.model_label,
            target_version=self.cmd.target_version)
