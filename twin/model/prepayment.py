"""Prepayment meters in one tick: emergency credit, disablement for credit, customers' top-ups,
arming and the consumer's enable; and the off-supply counts of the tick summary.

The balance of an ESME in prepayment mode is a function of time while supply is on (stored credit
less the spend of the shared profile at the unit rate, `balance_pence`), so the per-tick pass is a
whole-column expression over the prepayment rows only (`HubState.prepay_rows`, ~13% of premises):
which rows crossed zero (emergency credit, alert 0x81AB) or minus the emergency credit (supply
disabled, alert 0x8F0F). While supply is disabled nothing is metered: the stored credit holds the
balance itself, and the register base gives back each half-hour's energy, so register and balance
stand still until a top-up arms the supply (0x8F32) and the consumer enables it (seeds/004 para 148:
a person must be present when a disabled supply is enabled). Decisions are hashed per (hub, tick),
so they are the same for any shard layout; habits are a static hash of the hub id (no state).
"""

from __future__ import annotations

import numpy as np

from twin.model.catalog import AREA_REGION, AlertKind, Smets, Status
from twin.model.config import FleetConfig
from twin.model.metering import REGISTER_MODULUS, cumulative_factor
from twin.model.params import PREPAY_HABITS, TICK_SECONDS, TICKS_PER_YEAR
from twin.model.rng import Purpose, hash_uniform
from twin.model.state import HubState
from twin.model.summary import TickSummary


def spend_factor(config: FleetConfig, ticks: int) -> float:
    """Energy used in the first `ticks` ticks of the run, as a fraction of a year's (the shared
    electricity profile): a premises has used `elec_kwh_year x spend_factor` kWh."""
    doy = config.start.timetuple().tm_yday - 1
    return cumulative_factor("elec", doy, config.start_tick_of_day, max(ticks, 0)) / TICKS_PER_YEAR


def balance_pence(cols: dict[str, np.ndarray], rows: np.ndarray | int, config: FleetConfig, tick: int) -> np.ndarray:
    """Prepayment balance, pence (float), at the end of `tick`, of the given rows.

    Negative while emergency credit is in use; never below minus the emergency credit (supply is
    disabled there, after which nothing is spent)."""
    credit = np.asarray(cols["credit_p"][rows], dtype=np.float64)
    off = (np.asarray(cols["status"][rows]) & Status.CREDIT_OFF) != 0
    rate = np.asarray(cols["tariff_dp"][rows], dtype=np.float64) * cols["elec_kwh_year"][rows] / 10
    return np.where(off, credit, credit - rate * spend_factor(config, tick + 1))


def credit_state(status: int) -> str:
    """Label of a prepayment meter's supply state, from its status bits."""
    if status & Status.CREDIT_OFF:
        return "armed" if status & Status.ARMED else "disabled"
    return "emergency_credit" if status & Status.EMERGENCY_CREDIT else "in_credit"


def habits(seed: int, hubs: np.ndarray, shares: dict[str, float]) -> np.ndarray:
    """Top-up habit index (into PREPAY_HABITS) of each hub: a static hash of the hub id."""
    w = np.array([shares.get(h, 0.0) for h in PREPAY_HABITS], dtype=np.float64)
    edges = np.cumsum(w) / w.sum()
    edges[-1] = 1.0
    u = hash_uniform(seed, Purpose.PREPAY_BEHAVIOUR, hubs, 0)
    out = np.zeros(u.size, dtype=np.intp)
    for edge in edges[:-1]:  # a few comparisons beat a binary search per hub
        out += u >= edge
    return out


def per_tick_probability(wait_h: float) -> float:
    """Chance per half-hour of an exponential wait with mean `wait_h` hours ending (1 if no wait)."""
    if wait_h <= 0:
        return 1.0
    return float(-np.expm1(-TICK_SECONDS / 3600 / wait_h))


def enable_supply(state: HubState, rows: np.ndarray, config: FleetConfig, tick: int) -> None:
    """Enable supply on armed rows at the end of `tick`: the stored credit goes back to meaning
    "before the spend since tick 0", so the balance carries on from where it stood."""
    c = state.cols
    rate = c["tariff_dp"][rows].astype(np.float64) * c["elec_kwh_year"][rows] / 10
    c["credit_p"][rows] += np.round(rate * spend_factor(config, tick + 1)).astype(np.int32)
    state.change(rows, status=c["status"][rows] & np.uint8(~(Status.CREDIT_OFF | Status.ARMED) & 0xFF))
    touch(state, rows)


def touch(state: HubState, rows: np.ndarray) -> None:
    """Rows whose credit, unit rate or supply state changed outside the pass (a Service Request):
    the next pass looks at them whatever their cached next threshold said."""
    rows = np.asarray(rows, dtype=np.int64)
    n = state.prepay_rows.size
    if n == 0:
        return
    pos = np.searchsorted(state.prepay_rows, rows)
    ok = (pos < n) & (state.prepay_rows[np.minimum(pos, n - 1)] == rows)
    state.prepay_due[pos[ok]] = -np.inf


def prepay_pass(state: HubState, s: TickSummary, tick: int, config: FleetConfig, up_area: np.ndarray) -> None:
    """Step every prepayment meter through `tick` (after this tick's Service Requests).

    Only the meters that can change this tick are touched: each prepayment row caches the spend
    factor at which its balance next reaches a level that matters to it (zero, minus the
    emergency credit, its habit's top-up trigger; -inf while it waits for a top-up or is off
    supply), a derived array rebuilt as "look at me" on load. Looking at a row early changes
    nothing, so the cache never changes a result, only what a tick costs."""
    f_prev, f_now = spend_factor(config, tick), spend_factor(config, tick + 1)
    if state.prepay_rows.size == 0:
        return
    pos = np.flatnonzero(state.prepay_due <= f_now)
    if pos.size == 0:
        return
    _pass(state, s, tick, config, up_area, pos, f_prev, f_now)


def _pass(state: HubState, s: TickSummary, tick: int, config: FleetConfig, up_area: np.ndarray, pos: np.ndarray,
          f_prev: float, f_now: float) -> None:
    from twin.model.kernel import count_alerts  # the kernel imports this module

    pp = config.params.prepayment
    c = state.cols
    rows = state.prepay_rows[pos].astype(np.int64)
    status = c["status"][rows]
    new_status = status.copy()
    off = (status & Status.CREDIT_OFF) != 0
    armed_before = (status & Status.ARMED) != 0
    in_ec = (status & Status.EMERGENCY_CREDIT) != 0
    tariff = c["tariff_dp"][rows].astype(np.float64)
    annual = c["elec_kwh_year"][rows].astype(np.float64)
    rate = tariff * annual / 10  # pence per unit of spend factor
    credit = c["credit_p"][rows]
    bal = np.where(off, credit, credit - rate * f_now)
    ec = pp.emergency_credit_gbp * 100
    alerts: list[tuple[np.ndarray, int, np.ndarray]] = []  # (positions, kind, second in the tick)

    # Credit ran out this tick: emergency credit, or past it, supply disabled at the crossing.
    crossing_ec = np.flatnonzero(~off & ~in_ec & (bal <= 0))
    crossing_off = np.flatnonzero(~off & (bal <= -ec))
    if crossing_ec.size or crossing_off.size:
        bal_prev = np.where(off, credit, credit - rate * f_prev)
        for idx, level, kind in ((crossing_ec, 0.0, AlertKind.EMERGENCY_CREDIT_ACTIVATED),
                                 (crossing_off, -ec, AlertKind.CREDIT_BELOW_DISABLEMENT)):
            if idx.size:
                drop = np.maximum(bal_prev[idx] - bal[idx], 1e-9)
                frac = np.clip((bal_prev[idx] - level) / drop, 0.0, 1.0)
                alerts.append((idx, kind, np.minimum(frac * TICK_SECONDS, TICK_SECONDS - 1).astype(np.int64)))
        new_status[crossing_ec] |= np.uint8(Status.EMERGENCY_CREDIT)
        if crossing_off.size:
            r = rows[crossing_off]
            # Energy past the disablement point was never taken: give it back to the register.
            over_p = -ec - bal[crossing_off]
            unused = np.divide(100 * over_p, tariff[crossing_off], out=np.zeros_like(over_p),
                               where=tariff[crossing_off] > 0)
            _lower_register(c, r, np.round(unused).astype(np.int64))
            c["credit_p"][r] = -round(ec)
            bal[crossing_off] = -round(ec)
            new_status[crossing_off] = (new_status[crossing_off] & np.uint8(~Status.EMERGENCY_CREDIT & 0xFF)) | np.uint8(
                Status.CREDIT_OFF)

    # Off supply through this tick (since before it): nothing metered.
    held = np.flatnonzero(off)
    if held.size:
        a = annual[held]
        used = np.round(10 * a * f_now).astype(np.int64) - np.round(10 * a * f_prev).astype(np.int64)
        _lower_register(c, rows[held], used)

    # Customers' top-ups, each when its habit's trigger holds, after an exponential wait.
    habit = habits(state.seed, state.offset + rows, pp.habit_shares) if pp.topups else None
    if habit is not None:
        off_now = (new_status & Status.CREDIT_OFF) != 0
        b = bal
        trigger = np.stack([b < pp.ahead_below_gbp * 100, b <= 0, off_now, off_now])[habit, np.arange(rows.size)]
        cand = np.flatnonzero(trigger & ~armed_before)
        if cand.size:
            p = np.array([per_tick_probability(pp.habit_wait_h.get(h, 0.0)) for h in PREPAY_HABITS])
            u = hash_uniform(state.seed, Purpose.PREPAY_TOPUP, state.offset + rows[cand], tick)
            top = cand[u < p[habit[cand]]]
            if top.size:
                amount = round(pp.topup_gbp * 100)
                c["credit_p"][rows[top]] += amount
                bal[top] += amount
                s.prepay_topups += int(top.size)

    # Credit back above zero: emergency credit repaid; a disabled supply is armed (0x8F32).
    repaid = ((new_status & Status.EMERGENCY_CREDIT) != 0) & (bal > 0)
    new_status[repaid] &= np.uint8(~Status.EMERGENCY_CREDIT & 0xFF)
    arm = np.flatnonzero(((new_status & Status.CREDIT_OFF) != 0) & ((new_status & Status.ARMED) == 0) & (bal > 0))
    if arm.size:
        new_status[arm] |= np.uint8(Status.ARMED)
        sec = (hash_uniform(state.seed, Purpose.ALERT_BACKOFF, state.offset + rows[arm], tick) * TICK_SECONDS)
        alerts.append((arm, AlertKind.SUPPLY_ARMED, sec.astype(np.int64)))

    changed = np.flatnonzero(new_status != status)
    if changed.size:
        state.change(rows[changed], status=new_status[changed])

    # The consumer enables an armed supply (armed before this tick) after a short wait.
    ready = np.flatnonzero(armed_before)
    enabled = np.zeros(rows.size, bool)
    if ready.size:
        u = hash_uniform(state.seed, Purpose.PREPAY_ENABLE, state.offset + rows[ready], tick)
        go = ready[u < per_tick_probability(pp.enable_wait_h)]
        if go.size:
            enable_supply(state, rows[go], config, tick)
            enabled[go] = True
            new_status[go] = c["status"][rows[go]]

    for idx, kind, sec in alerts:
        _send(state, s, rows[idx], kind, sec, up_area, count_alerts)

    # When each row next needs a look: the spend factor at which its balance reaches the next level
    # that matters to it, or at once (-inf) while off supply or waiting for its habit's top-up.
    state.prepay_due[pos] = _next_due(c, rows, new_status, habit, pp, enabled, tick, config)


def _next_due(c: dict[str, np.ndarray], rows: np.ndarray, status: np.ndarray, habit: np.ndarray | None, pp,
              enabled: np.ndarray, tick: int, config: FleetConfig) -> np.ndarray:
    credit = c["credit_p"][rows].astype(np.float64)
    rate = c["tariff_dp"][rows].astype(np.float64) * c["elec_kwh_year"][rows] / 10
    f_now = spend_factor(config, tick + 1)
    bal = credit - rate * f_now
    ec = pp.emergency_credit_gbp * 100
    in_ec = (status & Status.EMERGENCY_CREDIT) != 0
    ahead = pp.ahead_below_gbp * 100
    level = np.where(in_ec, -ec, 0.0)
    now = (status & Status.CREDIT_OFF) != 0
    if habit is not None:
        is_ahead = habit == PREPAY_HABITS.index("ahead")
        level = np.where(is_ahead & ~in_ec & (bal >= ahead) & (ahead > 0), ahead, level)
        waiting = (is_ahead & (bal < ahead)) | ((habit == PREPAY_HABITS.index("at_emergency")) & (bal <= 0))
        now |= waiting
    with np.errstate(divide="ignore", invalid="ignore"):
        due = np.where(rate > 0, (credit - level) / rate, np.inf)
    due = np.where(now, -np.inf, due)
    # Stored as float32, rounded down: a row is looked at a tick early (a no-op), never late.
    return np.nextafter(due.astype(np.float32), np.float32(-np.inf))


def _lower_register(c: dict[str, np.ndarray], rows: np.ndarray, dkwh: np.ndarray) -> None:
    """Take `dkwh` (0.1 kWh) off the register base, modulo 2^32 (metering.register_kwh)."""
    c["elec_reg0"][rows] = ((c["elec_reg0"][rows].astype(np.int64) - dkwh) % REGISTER_MODULUS).astype(np.uint32)


def _send(state: HubState, s: TickSummary, rows: np.ndarray, kind: int, sec: np.ndarray, up_area: np.ndarray,
          count_alerts) -> None:
    """Alerts from DCC meters leave through a reachable hub; the rest are counted undelivered. A
    SMETS1 meter not enrolled reports to its supplier's own system, not the DCC."""
    c = state.cols
    dcc = c["smets"][rows] != Smets.SMETS1_NOT_ENROLLED
    area = c["area"][rows]
    ok = dcc & (c["fault"][rows] == 0) & up_area[area, c["wan"][rows]]
    count_alerts(s, AREA_REGION[area[ok]].astype(np.intp) - 1, np.full(int(ok.sum()), kind, np.intp), sec[ok],
                 state, rows[ok])
    s.alerts_undelivered += int((dcc & ~ok).sum())


def count_prepay(state: HubState, s: TickSummary) -> None:
    """Prepayment premises, on emergency credit and off supply for credit, by supplier and area:
    from the state's counters, O(areas x suppliers)."""
    n_sup = s.prepay_supplier.shape[0]
    by_sup = state.prepay_credit.sum(axis=0)[:n_sup]  # (supplier, credit state)
    s.prepay_supplier += by_sup.sum(axis=1)
    s.credit_ec_supplier += by_sup[:, 1]
    s.credit_off_supplier += by_sup[:, 2]
    by_area = state.prepay_credit.sum(axis=1)
    s.area_prepay += by_area.sum(axis=1)
    s.area_credit_ec += by_area[:, 1]
    s.area_credit_off += by_area[:, 2]
