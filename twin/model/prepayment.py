"""Prepayment meters in one tick: emergency credit, disablement for credit, customers' top-ups,
arming and the consumer's enable; and the off-supply counts of the tick summary.

The balance of an ESME in prepayment mode is a function of time while supply is on (stored credit
less the spend of the shared profile at the unit rate, `balance_pence`), so a tick needs to look
only at the prepayment rows whose balance crosses a level that matters this tick (zero: emergency
credit, alert 0x81AB; minus the emergency credit: supply disabled, alert 0x8F0F) or whose customer
acts in it. While supply is disabled nothing is metered: the stored credit and the register base
hold the balance and the reading themselves, so both stand still until a top-up arms the supply
(0x8F32) and the consumer enables it (seeds/004 para 148: a person must be present when a disabled
supply is enabled). Draws are hashed per (hub, tick), so they are the same for any shard layout;
habits are a static hash of the hub id (no state).
"""

from __future__ import annotations

import functools

import numpy as np

from twin.model.alerts import count_alerts
from twin.model.catalog import AlertKind, Flag, Status
from twin.model.config import FleetConfig
from twin.model.metering import REGISTER_MODULUS, cumulative_factor, register_kwh
from twin.model.params import PREPAY_HABITS, TICK_SECONDS, TICKS_PER_YEAR, PrepaymentParams, once_per_params
from twin.model.reach import on_dcc, reachable
from twin.model.rng import Purpose, hash_uniform
from twin.model.state import PREPAY_NO_ACTION, HubState
from twin.model.summary import TickSummary


def spend_factor(config: FleetConfig, ticks: int) -> float:
    """Energy used in the first `ticks` ticks of the run, as a fraction of a year's (the shared
    electricity profile): a premises has used `elec_kwh_year x spend_factor` kWh."""
    return _spend_factor(config.start.timetuple().tm_yday - 1, config.start_tick_of_day, max(ticks, 0))


@functools.lru_cache(maxsize=1024)
def _spend_factor(first_day_of_year: int, start_tick_of_day: int, ticks: int) -> float:
    # A pure function, asked several times a tick for the same few ticks: cached.
    return cumulative_factor("elec", first_day_of_year, start_tick_of_day, ticks) / TICKS_PER_YEAR


def balance_pence(cols: dict[str, np.ndarray], rows: np.ndarray | int, config: FleetConfig, tick: int) -> np.ndarray:
    """Prepayment balance, pence (float), at the end of `tick`, of the given rows.

    Negative while emergency credit is in use; never below minus the emergency credit (supply is
    disabled there, after which nothing is spent)."""
    credit = np.asarray(cols["credit_p"][rows], dtype=np.float64)
    off = (np.asarray(cols["status"][rows]) & Status.METERING_STOPPED) != 0
    rate = np.asarray(cols["tariff_dp"][rows], dtype=np.float64) * cols["elec_kwh_year"][rows] / 10
    return np.where(off, credit, credit - rate * spend_factor(config, tick + 1))


def register_reading_kwh(cols: dict[str, np.ndarray], rows: np.ndarray | int, config: FleetConfig,
                         tick: int) -> np.ndarray:
    """ESME import register, kWh, at the end of `tick`: while supply is disabled (for credit or by
    SR 7.2) the base holds the reading itself; otherwise base plus the profile's energy since tick 0."""
    reg0 = np.asarray(cols["elec_reg0"][rows])
    off = (np.asarray(cols["status"][rows]) & Status.METERING_STOPPED) != 0
    used = np.asarray(cols["elec_kwh_year"][rows], dtype=np.float64) * spend_factor(config, tick + 1)
    return np.where(off, reg0 / 10, register_kwh(reg0, used))


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
    """Enable supply on armed rows at the end of `tick`: credit and register go back to meaning
    "before the spend since tick 0" and "at tick 0", so both carry on from where they stood."""
    c = state.cols
    restart_metering(c, rows, config, tick)
    state.change(rows, status=c["status"][rows] & np.uint8(~(Status.CREDIT_OFF | Status.ARMED) & 0xFF))
    touch(state, rows)


def restart_metering(c: dict[str, np.ndarray], rows: np.ndarray, config: FleetConfig, tick: int) -> None:
    """Credit and register base back to "before the spend since tick 0" and "at tick 0" (from the
    balance and the reading they held while supply was off), at the end of `tick`."""
    annual = c["elec_kwh_year"][rows].astype(np.float64)
    f = spend_factor(config, tick + 1)
    rate = c["tariff_dp"][rows].astype(np.float64) * annual / 10
    prepay = (c["flags"][rows] & Flag.PREPAY) != 0
    c["credit_p"][rows] += np.where(prepay, np.round(rate * f), 0).astype(np.int32)
    _set_register_base(c, rows, c["elec_reg0"][rows].astype(np.int64) - np.round(10 * annual * f).astype(np.int64))


def freeze_metering(c: dict[str, np.ndarray], rows: np.ndarray, config: FleetConfig, tick: int) -> None:
    """Stop metering at the end of `tick` (supply disabled): credit and register base now hold the
    balance and the reading themselves. The caller sets the status bit (SUPPLY_OFF)."""
    annual = c["elec_kwh_year"][rows].astype(np.float64)
    f = spend_factor(config, tick + 1)
    rate = c["tariff_dp"][rows].astype(np.float64) * annual / 10
    prepay = (c["flags"][rows] & Flag.PREPAY) != 0
    c["credit_p"][rows] -= np.where(prepay, np.round(rate * f), 0).astype(np.int32)
    _set_register_base(c, rows, c["elec_reg0"][rows].astype(np.int64) + np.round(10 * annual * f).astype(np.int64))


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
    if state.prepay_window is not None:
        state.prepay_touched.append(pos[ok])  # joins the window at the next pass


def forget_lookahead(state: HubState) -> None:
    """Drop the derived look-ahead (as a restore does): every row is looked at in the next pass."""
    state.prepay_due[:] = -np.inf
    state.prepay_window = None
    state.prepay_touched = []


WINDOW_TICKS = 48  # the rows that can need a look are listed once per this many ticks


def prepay_pass(state: HubState, s: TickSummary, tick: int, config: FleetConfig, up_area: np.ndarray) -> None:
    """Step every prepayment meter through `tick` (after this tick's Service Requests).

    Only the meters that can change this tick are touched: those whose balance reaches a level
    that matters to them (zero, minus the emergency credit, their habit's top-up trigger: a
    cached spend factor, a derived array rebuilt as "look now" on load; looking early changes
    nothing) and those whose customer acts this tick (a top-up or enabling an armed supply, the
    tick drawn once when the wait begins: `HubState.prepay_act`). The cost follows the events,
    not the prepayment fleet."""
    if state.prepay_rows.size == 0:
        return
    f_now = spend_factor(config, tick + 1)
    # The rows that can need a look before the window ends, listed once per window, so a tick
    # scans that short list, not every prepayment row. Rows looked at stay in the list; rows
    # touched by a Service Request join it.
    end = (tick // WINDOW_TICKS + 1) * WINDOW_TICKS - 1
    if state.prepay_window is None or state.prepay_window_end != end:
        f_end = spend_factor(config, end + 1)
        state.prepay_window = np.flatnonzero((state.prepay_due <= f_end) | (state.prepay_act <= end))
        state.prepay_window_end = end
    elif state.prepay_touched:
        state.prepay_window = np.union1d(state.prepay_window, np.concatenate(state.prepay_touched))
    state.prepay_touched = []
    win = state.prepay_window
    pos = win[(state.prepay_due[win] <= f_now) | (state.prepay_act[win] <= tick)]
    if pos.size:
        _pass(state, s, tick, config, up_area, pos, spend_factor(config, tick), f_now)


def _geometric_tick(seed: int, purpose: int, hubs: np.ndarray, tick: int, p: np.ndarray | float, first: int) -> np.ndarray:
    """Tick of the first success of a per-half-hour chance `p`, trying from `tick + first` on; a
    pure function of (seed, hub, tick), so the same for any shard layout."""
    u = 1.0 - hash_uniform(seed, purpose, hubs, tick)  # (0, 1]
    p = np.broadcast_to(np.asarray(p, dtype=np.float64), u.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        wait = np.where(p >= 1.0, 0.0, np.floor(np.log(u) / np.log1p(-np.minimum(p, 1.0))))
    wait = np.where(p <= 0.0, np.inf, wait)
    return np.minimum(tick + first + wait, PREPAY_NO_ACTION - 1).astype(np.int32)


@once_per_params
def _topup_chance(pp: PrepaymentParams) -> np.ndarray:
    """Chance per tick of a waiting customer topping up, by habit (PREPAY_HABITS order): built
    once per parameter set (a run has one), not once per tick."""
    return np.array([per_tick_probability(pp.habit_wait_h.get(h, 0.0)) for h in PREPAY_HABITS])


def _pass(state: HubState, s: TickSummary, tick: int, config: FleetConfig, up_area: np.ndarray, pos: np.ndarray,
          f_prev: float, f_now: float) -> None:
    pp = config.params.prepayment
    c = state.cols
    rows = state.prepay_rows[pos].astype(np.int64)
    hubs = state.offset + rows
    status = c["status"][rows]
    new_status = status.copy()
    off = (status & Status.METERING_STOPPED) != 0  # credit and register hold balance and reading
    armed_before = (status & Status.ARMED) != 0
    in_ec = (status & Status.EMERGENCY_CREDIT) != 0
    act = state.prepay_act[pos].copy()
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
            # The register stops at the disablement point: energy past it was never taken. While
            # off, the base holds the reading itself (metering.register_kwh is not used).
            over_p = -ec - bal[crossing_off]
            unused = np.divide(100 * over_p, tariff[crossing_off], out=np.zeros_like(over_p),
                               where=tariff[crossing_off] > 0)
            reading = (c["elec_reg0"][r].astype(np.int64) + np.round(10 * annual[crossing_off] * f_now).astype(np.int64)
                       - np.round(unused).astype(np.int64))
            _set_register_base(c, r, reading)
            c["credit_p"][r] = -round(ec)
            bal[crossing_off] = -round(ec)
            new_status[crossing_off] = (new_status[crossing_off] & np.uint8(~Status.EMERGENCY_CREDIT & 0xFF)) | np.uint8(
                Status.CREDIT_OFF)

    # Customers' top-ups: a wait is drawn once when a habit's trigger first holds (it may end at
    # once), and the top-up comes at its end if the trigger still holds.
    habit = habits(state.seed, hubs, pp.habit_shares) if pp.topups else None
    if habit is not None:
        p_topup = _topup_chance(pp)
        trig = _trigger(habit, bal, new_status, pp) & ~armed_before
        begin = np.flatnonzero(trig & (act == PREPAY_NO_ACTION))
        if begin.size:
            act[begin] = _geometric_tick(state.seed, Purpose.PREPAY_TOPUP, hubs[begin], tick, p_topup[habit[begin]], 0)
        top = np.flatnonzero(trig & (act <= tick))
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
        sec = (hash_uniform(state.seed, Purpose.ALERT_BACKOFF, hubs[arm], tick) * TICK_SECONDS)
        alerts.append((arm, AlertKind.SUPPLY_ARMED, sec.astype(np.int64)))

    # The consumer enables a supply armed before this tick, at the tick drawn when it was armed
    # (not while the supplier holds it disabled by SR 7.2: SR 7.1 then enables it).
    go = np.flatnonzero(armed_before & (act <= tick) & ((status & Status.SUPPLY_OFF) == 0))
    if go.size:
        restart_metering(c, rows[go], config, tick)
        new_status[go] &= np.uint8(~(Status.CREDIT_OFF | Status.ARMED) & 0xFF)

    changed = np.flatnonzero(new_status != status)
    if changed.size:
        state.change(rows[changed], status=new_status[changed])

    for idx, alert_kind, sec in alerts:
        _send(state, s, rows[idx], alert_kind, sec, up_area, count_alerts)

    # Each customer's next action: kept while its reason holds; a new wait after a top-up that left
    # the trigger holding, and the wait to enable a newly armed supply, start at the next tick.
    armed = (new_status & Status.ARMED) != 0
    waiting = ~armed & _trigger(habit, bal, new_status, pp) if habit is not None else np.zeros(rows.size, bool)
    keep = (act > tick) & (act != PREPAY_NO_ACTION) & ((armed & armed_before) | waiting)
    new_act = np.where(keep, act, PREPAY_NO_ACTION).astype(np.int32)
    again = np.flatnonzero(waiting & ~keep)
    if again.size and habit is not None:  # a customer waits only under a top-up habit
        new_act[again] = _geometric_tick(state.seed, Purpose.PREPAY_TOPUP, hubs[again], tick + 1,
                                         p_topup[habit[again]], 0)
    start_arm = np.flatnonzero(armed & ~keep & ((new_status & Status.SUPPLY_OFF) == 0))
    if start_arm.size:
        new_act[start_arm] = _geometric_tick(state.seed, Purpose.PREPAY_ENABLE, hubs[start_arm], tick,
                                             per_tick_probability(pp.enable_wait_h), 1)
    state.prepay_act[pos] = new_act
    state.prepay_due[pos] = _next_due(c, rows, new_status, habit, pp, tick, config)


def _trigger(habit: np.ndarray, bal: np.ndarray, status: np.ndarray, pp) -> np.ndarray:
    """Whether each customer's habit calls for a top-up now: ahead below the trigger amount, at
    emergency once on emergency credit (or off), the others once supply is disabled."""
    off = (status & Status.CREDIT_OFF) != 0
    # Each row's habit picks its row of these (in PREPAY_HABITS order).
    return np.choose(habit, (bal < pp.ahead_below_gbp * 100, bal <= 0, off, off))


def _next_due(c: dict[str, np.ndarray], rows: np.ndarray, status: np.ndarray, habit: np.ndarray | None, pp,
              tick: int, config: FleetConfig) -> np.ndarray:
    """Spend factor at which each row's balance next reaches a level that matters: zero (emergency
    credit), minus the emergency credit (disablement), the ahead habit's trigger; never while off."""
    credit = c["credit_p"][rows].astype(np.float64)
    rate = c["tariff_dp"][rows].astype(np.float64) * c["elec_kwh_year"][rows] / 10
    bal = credit - rate * spend_factor(config, tick + 1)
    in_ec = (status & Status.EMERGENCY_CREDIT) != 0
    ahead = pp.ahead_below_gbp * 100
    level = np.where(in_ec, -pp.emergency_credit_gbp * 100, 0.0)
    if habit is not None and ahead > 0:
        level = np.where((habit == PREPAY_HABITS.index("ahead")) & ~in_ec & (bal >= ahead), ahead, level)
    with np.errstate(divide="ignore", invalid="ignore"):
        due = np.where(rate > 0, (credit - level) / rate, np.inf)
    due = np.where((status & Status.METERING_STOPPED) != 0, np.inf, due)
    # Stored as float32, rounded down: a row is looked at a tick early (a no-op), never late.
    return np.nextafter(due.astype(np.float32), np.float32(-np.inf))


def _set_register_base(c: dict[str, np.ndarray], rows: np.ndarray, value: np.ndarray) -> None:
    """Store a register base (0.1 kWh), modulo 2^32 (metering.register_kwh)."""
    c["elec_reg0"][rows] = (value % REGISTER_MODULUS).astype(np.uint32)


def _send(state: HubState, s: TickSummary, rows: np.ndarray, kind: int, sec: np.ndarray, up_area: np.ndarray,
          count_alerts) -> None:
    """Alerts from DCC meters leave through a reachable hub; the rest are counted undelivered. A
    SMETS1 meter not enrolled reports to its supplier's own system, not the DCC."""
    c = state.cols
    dcc = on_dcc(c["smets"][rows])
    ok = reachable(state, rows, up_area)
    count_alerts(s, state, rows[ok], np.full(int(ok.sum()), kind, np.intp), sec[ok])
    s.alerts_undelivered += int((dcc & ~ok).sum())


def count_prepay(state: HubState, s: TickSummary) -> None:
    """Prepayment premises, on emergency credit and off supply for credit, by supplier and area:
    from the state's counters, O(areas x suppliers)."""
    n_sup = s.prepay_supplier.shape[0]
    by_sup = state.prepay_credit[:, :n_sup].sum(axis=0)  # (supplier, credit state)
    s.prepay_supplier += by_sup.sum(axis=1)
    s.credit_ec_supplier += by_sup[:, 1]
    s.credit_off_supplier += by_sup[:, 2]
    by_area = state.prepay_credit.sum(axis=1)
    s.area_prepay += by_area.sum(axis=1)
    s.area_credit_ec += by_area[:, 1]
    s.area_credit_off += by_area[:, 2]
