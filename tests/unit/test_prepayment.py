"""Prepayment meters (issue 17 part 7): emergency credit, disablement for credit with its alert,
nothing metered while off, top-ups arming the supply and the consumer enabling it; the off-supply
counts per supplier and area; and the customers' top-up habits against values from the parameters."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import quiet_params
from twin.model.catalog import AlertKind, Flag, Smets, Status
from twin.model.config import FleetConfig
from twin.model.fleet import LocalFleet
from twin.model.generator import generate
from twin.model.network import NetworkPlan
from twin.model.params import PREPAY_HABITS, PrepaymentParams
from twin.model.prepayment import (
    balance_pence,
    forget_lookahead,
    habits,
    per_tick_probability,
    prepay_pass,
    register_reading_kwh,
    spend_factor,
    touch,
)
from twin.model.state import HubState
from twin.model.summary import TickSummary

HUBS, SEED, DAYS = 20_000, 11, 30  # the example is at 30 days
TICKS = DAYS * 48
EC_P = 1000  # emergency credit of PrepaymentParams, pence


def _fleet(splits: int = 1, **prepay) -> LocalFleet:
    params = replace(quiet_params(), prepayment=PrepaymentParams(**prepay))
    return LocalFleet(FleetConfig(hubs=HUBS, seed=SEED, block_size=1024, params=params), splits=splits)


@dataclass
class NoTopUpsRun:
    """A fleet without top-ups run for TICKS, its summaries, and copies of its prepayment columns
    before the run (the run changes credit_p and elec_reg0 at each disablement)."""

    fleet: LocalFleet
    summaries: list[TickSummary]
    before: dict[str, np.ndarray]


@pytest.fixture(scope="module")
def no_topups() -> NoTopUpsRun:
    """The 30-day run without top-ups, once for the tests that read it (none changes it; the top-up
    test continues a deep copy). enable_wait_h = 0 is read only after a top-up arms a supply, so
    it changes nothing in this run; the top-up test needs it."""
    f = _fleet(topups=False, enable_wait_h=0.0)
    before = {k: f.states[0].cols[k].copy() for k in ("credit_p", "elec_reg0")}
    return NoTopUpsRun(f, f.run(TICKS), before)


@dataclass
class DefaultRun:
    """A fleet with the default prepayment parameters run for 15 days in one state, and a deep copy
    of it taken after 10 days."""

    fleet: LocalFleet
    summaries: list[TickSummary]
    at_10_days: LocalFleet


@pytest.fixture(scope="module")
def default_run() -> DefaultRun:
    f = _fleet()
    ss = f.run(10 * 48)
    at_10 = copy.deepcopy(f)
    return DefaultRun(f, ss + f.run(5 * 48), at_10)


def _run_out_tick(st, cfg, rows: np.ndarray, topup_p: float = 0.0) -> np.ndarray:
    """First tick at whose end each row's balance (initial credit + topup_p, no spend stopped)
    reaches minus the emergency credit; TICKS if not within the run."""
    f = np.array([spend_factor(cfg, t + 1) for t in range(TICKS)])
    c = st.cols
    rate = c["tariff_dp"][rows].astype(np.float64) * c["elec_kwh_year"][rows] / 10
    credit = c["credit_p"][rows].astype(np.float64) + topup_p
    hit = credit[:, None] - rate[:, None] * f[None, :] <= -EC_P
    return np.where(hit.any(axis=1), hit.argmax(axis=1), TICKS)


def test_without_top_ups_every_premises_whose_credit_ran_out_is_off_supply_once_and_bounded(no_topups):
    f, ss = no_topups.fleet, no_topups.summaries
    st, cfg = f.states[0], f.config
    rows = st.prepay_rows.astype(np.int64)
    c = st.cols
    credit0 = no_topups.before["credit_p"][rows].astype(np.float64)
    reg0 = no_topups.before["elec_reg0"][rows].astype(np.float64)
    rate = c["tariff_dp"][rows].astype(np.float64) * c["elec_kwh_year"][rows] / 10
    spent = rate * spend_factor(cfg, TICKS)
    ran_out = credit0 + EC_P <= spent
    on_ec = ~ran_out & (credit0 <= spent)
    assert f.tick == TICKS
    last = ss[-1]

    status = c["status"][rows]
    off = (status & Status.CREDIT_OFF) != 0
    np.testing.assert_array_equal(off, ran_out)  # off supply exactly where credit + EC < consumption
    np.testing.assert_array_equal((status & Status.EMERGENCY_CREDIT) != 0, on_ec)
    assert int(last.credit_off_supplier.sum()) == int(ran_out.sum()) > 0.5 * rows.size
    assert int(last.credit_ec_supplier.sum()) == int(on_ec.sum()) > 0
    # Per-supplier and per-area counts are the same hubs.
    assert int(last.area_credit_off.sum()) == int(ran_out.sum())
    assert last.prepayment()["off_supply"] == sum(v["off_supply"] for v in last.prepayment()["by_supplier"].values())
    sup = c["supplier"][rows]
    for code in np.unique(sup):
        assert last.credit_off_supplier[code] == int((ran_out & (sup == code)).sum())

    bal = balance_pence(c, rows, cfg, TICKS - 1)
    assert bal.min() >= -EC_P  # balance bounded below by minus the emergency credit
    np.testing.assert_array_equal(bal[ran_out], -EC_P)
    # Nothing metered after the disablement: the register holds exactly the energy bought (to its
    # 0.1 kWh resolution: the disablement point and the energy of the half-hours off are rounded).
    reg = register_reading_kwh(c, rows, cfg, TICKS - 1)
    bought_kwh = (credit0 + EC_P) / (c["tariff_dp"][rows] / 10)
    np.testing.assert_allclose(reg[ran_out], (reg0 / 10 + bought_kwh)[ran_out], atol=0.1501)

    # Each DCC premises that ran out raised 0x8F0F exactly once (and 0x81AB once), none other did;
    # those behind a hub that cannot reach the WAN (no coverage) are counted undelivered.
    hubs = np.concatenate([s.alert_events["hub"] for s in ss if s.alert_events])
    kinds = np.concatenate([s.alert_events["kind"] for s in ss if s.alert_events])
    dcc = c["smets"][rows] != Smets.SMETS1_NOT_ENROLLED
    up = f.network.up_by_area(TICKS - 1)
    reach = dcc & (c["fault"][rows] == 0) & up[c["area"][rows], c["wan"][rows]]
    for kind, expected in ((AlertKind.CREDIT_BELOW_DISABLEMENT, ran_out),
                           (AlertKind.EMERGENCY_CREDIT_ACTIVATED, ran_out | on_ec)):
        got = np.sort(hubs[kinds == kind])
        np.testing.assert_array_equal(got, np.sort(st.offset + rows[expected & reach]))
        assert sum(int(s.alerts[:, kind].sum()) for s in ss) == int((expected & reach).sum())
    assert sum(s.alerts_undelivered for s in ss) == int((ran_out & dcc & ~reach).sum() * 2
                                                        + (on_ec & dcc & ~reach).sum())


def test_a_top_up_arms_a_disabled_supply_and_the_consumer_enables_it(no_topups):
    f = copy.deepcopy(no_topups.fleet)  # the 30-day run without top-ups, continued here alone
    assert f.tick == TICKS and f.config.params.prepayment.enable_wait_h == 0.0
    st, cfg, c = f.states[0], f.config, f.states[0].cols
    rows = st.prepay_rows
    off = rows[(c["status"][rows] & Status.CREDIT_OFF) != 0]
    dcc_off = off[c["smets"][off] != Smets.SMETS1_NOT_ENROLLED]
    hub, other = int(st.offset + dcc_off[0]), int(st.offset + dcc_off[1])
    row = hub - st.offset

    # SR 7.1 cannot enable a supply disabled for credit: the meter refuses until credit returns.
    refused = f.submit({"type": "service_request", "srv": "7.1", "hub": other, "user_id": "t", "request_id": "r-1",
                        "params": {}})
    op = f.submit({"type": "service_request", "srv": "2.2", "hub": hub, "user_id": "t", "request_id": "r-2",
                   "params": {"amount_pence": 2000}})
    s = f.step()
    assert op.state == "DONE" and refused.state == "FAILED" and "disablement" in refused.reason
    assert c["status"][row] & Status.ARMED and c["status"][row] & Status.CREDIT_OFF
    armed = s.alert_events["hub"][s.alert_events["kind"] == AlertKind.SUPPLY_ARMED]
    assert armed.tolist() == [hub]
    assert balance_pence(c, row, cfg, f.tick - 1) == -EC_P + 2000  # the top-up repaid the EC first
    reg_armed = register_reading_kwh(c, row, cfg, f.tick - 1)
    f.step()  # the consumer presses the button (enable_wait_h = 0: at the next tick)
    assert not c["status"][row] & (Status.CREDIT_OFF | Status.ARMED)
    f.run(48)
    # Supply is back: a day's consumption is metered and spent from the 10 pounds left.
    used = c["elec_kwh_year"][row] * (spend_factor(cfg, f.tick) - spend_factor(cfg, f.tick - 48))
    reg_now = register_reading_kwh(c, row, cfg, f.tick - 1)
    assert abs(reg_now - reg_armed - used) < 0.11
    assert abs(balance_pence(c, row, cfg, f.tick - 1) - (1000 - used * c["tariff_dp"][row] / 10)) < 1.0


def test_share_off_supply_follows_the_habits_exactly_when_waits_are_zero_or_endless():
    # Everyone tops up at once at their habit's trigger, except self-disconnectors, who never do.
    waits = {"ahead": 0.0, "at_emergency": 0.0, "at_disablement": 0.0, "self_disconnect": 1e12}
    f = _fleet(habit_wait_h=waits, topup_gbp=1000.0, enable_wait_h=0.0)
    st, cfg = f.states[0], f.config
    rows = st.prepay_rows.astype(np.int64)
    habit = habits(SEED, st.offset + rows, cfg.params.prepayment.habit_shares)
    t_out = _run_out_tick(st, cfg, rows)
    last = f.run(TICKS)[-1]
    sd = habit == PREPAY_HABITS.index("self_disconnect")
    # Off at the end: self-disconnectors whose credit ran out; and at_disablement premises that ran
    # out in the very last tick (topped up and armed, enabled at the next).
    expected = sd & (t_out < TICKS) | (habit == PREPAY_HABITS.index("at_disablement")) & (t_out == TICKS - 1)
    assert int(last.credit_off_supplier.sum()) == int(expected.sum()) > 0
    off = (st.cols["status"][rows] & Status.CREDIT_OFF) != 0
    np.testing.assert_array_equal(off, expected)
    # The habit shares are the parameters' (the habit is a static hash of the hub id).
    share = cfg.params.prepayment.habit_shares["self_disconnect"] / sum(cfg.params.prepayment.habit_shares.values())
    assert abs(sd.mean() - share) < 4 * np.sqrt(share * (1 - share) / rows.size)


def test_share_still_off_after_disablement_matches_the_wait_parameter():
    # All wait for disablement, then top up after an exponential wait of 24 h (p per tick from the
    # parameter); a top-up lasts the run, so each premises is off at most once.
    wait_h = 24.0
    f = _fleet(habit_shares={"at_disablement": 1.0}, habit_wait_h={"at_disablement": wait_h}, topup_gbp=1000.0,
               enable_wait_h=0.0)
    st, cfg = f.states[0], f.config
    rows = st.prepay_rows.astype(np.int64)
    t_out = _run_out_tick(st, cfg, rows)
    last = f.run(TICKS)[-1]
    p = per_tick_probability(wait_h)
    # Off at the end of tick T-1 if no top-up in ticks t_out..T-1, or the top-up came at T-1 (armed).
    k = (TICKS - 1 - t_out)[t_out < TICKS]
    q = (1 - p) ** k
    expected, sd = q.sum(), np.sqrt((q * (1 - q)).sum())
    got = int(last.credit_off_supplier.sum())
    assert abs(got - expected) < 4 * sd, (got, expected, sd)
    assert got > 0


def test_prepayment_counts_identical_for_any_split_and_match_a_recount(default_run):
    runs = []
    # The default habit waits (ahead 12 h, at_emergency 12 h, at_disablement 2 h, self_disconnect
    # 72 h); one state is the module's default run, three states run here.
    assert default_run.fleet.config == _fleet().config
    for f, ss in ((default_run.fleet, default_run.summaries), (_fleet(splits=3), None)):
        assert f.tick == 0 if ss is None else f.tick == len(ss) == 15 * 48
        ss = f.run(15 * 48) if ss is None else ss
        runs.append(([s.to_dict() for s in ss], f.state_hash()))
        for state in f.states:
            before = state.prepay_credit.copy()
            state.recount()
            np.testing.assert_array_equal(before, state.prepay_credit)
    assert runs[0] == runs[1]
    last = runs[0][0][-1]["prepayment"]
    assert last["off_supply"] > 0 and last["emergency_credit"] > 0 and last["topups"] >= 0


@settings(max_examples=25, deadline=None)
@given(
    annual=st.lists(st.integers(200, 65_000), min_size=8, max_size=8),
    tariff=st.lists(st.integers(0, 2000), min_size=8, max_size=8),
    credit=st.lists(st.integers(-1000, 5000), min_size=8, max_size=8),
    topups=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 95), st.integers(1, 5000)), max_size=20),
    habit_topups=st.booleans(),
)
def test_balance_never_below_minus_emergency_credit_and_off_iff_exhausted(annual, tariff, credit, topups,
                                                                          habit_topups):
    """For any consumption, unit rate, starting credit and top-ups: balance >= -EC; supply off
    exactly when credit was exhausted and not restored; nothing metered while off; and the
    pass's "when next to look" cache never changes a result."""
    cfg = FleetConfig(hubs=1024, seed=5, block_size=1024,
                      params=replace(quiet_params(), prepayment=PrepaymentParams(topups=habit_topups)))
    hs = generate(cfg)
    c = hs.cols
    rows = np.arange(8)
    c["flags"][rows] |= Flag.PREPAY
    c["status"][rows] = 0
    c["elec_kwh_year"][rows] = annual
    c["tariff_dp"][rows] = tariff
    c["credit_p"][rows] = credit
    hs.recount()
    hs.build_index()
    up = NetworkPlan().up_by_area(0)
    by_tick: dict[int, list[tuple[int, int]]] = {}
    for r, t, amount in topups:
        by_tick.setdefault(t, []).append((r, amount))
    # The same meters with the "when next to look" cache cleared every tick: the cache saves work only.
    fresh = HubState.from_bytes(hs.to_bytes())
    for tick in range(96):
        for r, amount in by_tick.get(tick, []):  # SR 2.2 lands before the tick's prepayment pass
            for state in (hs, fresh):
                state.cols["credit_p"][r] += amount
                touch(state, np.array([r]))
        forget_lookahead(fresh)
        prepay_pass(fresh, TickSummary(tick=tick), tick, cfg, up)
        regs_before = register_reading_kwh(c, rows, cfg, tick - 1)
        was_off = (c["status"][rows] & Status.CREDIT_OFF) != 0
        prepay_pass(hs, TickSummary(tick=tick), tick, cfg, up)
        bal = balance_pence(c, rows, cfg, tick)
        status = c["status"][rows]
        off = (status & Status.CREDIT_OFF) != 0
        armed = (status & Status.ARMED) != 0
        ec = (status & Status.EMERGENCY_CREDIT) != 0
        assert (bal >= -EC_P - 1e-9).all()
        # Supply on: balance above minus the EC; on EC exactly when at or below zero.
        assert (bal[~off] > -EC_P).all()
        np.testing.assert_array_equal(ec[~off], bal[~off] <= 0)
        # Off and not armed: credit exhausted and not restored above the threshold.
        assert (bal[off & ~armed] <= 0).all() and (bal[off & armed] > 0).all()
        assert not (ec & off).any()
        # Nothing is metered through a tick a premises spent off supply from its start.
        regs_after = register_reading_kwh(c, rows, cfg, tick)
        np.testing.assert_allclose(regs_after[was_off & off], regs_before[was_off & off], atol=0.1001)
        for name in ("credit_p", "status", "elec_reg0"):
            np.testing.assert_array_equal(fresh.cols[name], c[name])
        np.testing.assert_array_equal(fresh.prepay_act, hs.prepay_act)


def test_history_records_prepayment_counts_and_an_older_history_gains_the_new_columns(tmp_path):
    import duckdb

    from twin.engine.history import HistoryStore, query

    f = _fleet(topups=False)
    ss = f.run(3 * 48)
    # A history written before the prepayment columns and alert kinds existed (the single DuckDB file
    # of older runs): its rows read with the new columns empty, and the new segments carry them.
    with duckdb.connect(str(tmp_path / "history.duckdb")) as con:
        con.execute("CREATE TABLE ticks (branch VARCHAR NOT NULL, tick BIGINT NOT NULL, time_utc TIMESTAMP NOT NULL, "
                    "hubs BIGINT)")
        con.execute("CREATE TABLE metrics (branch VARCHAR NOT NULL, tick BIGINT NOT NULL, metric VARCHAR NOT NULL, "
                    "key VARCHAR NOT NULL, value BIGINT NOT NULL)")
        con.execute("INSERT INTO ticks VALUES ('old', 0, TIMESTAMP '2026-11-01 00:00:00', 5)")
    store = HistoryStore(tmp_path, branch="main", config=f.config, flush_ticks=1000)
    for s in ss:
        store.record(s)
    store.flush()
    store.close()
    (off, ec, disabled_alerts), = query(
        tmp_path, "SELECT prepay_off_supply, prepay_emergency_credit, alerts_credit_below_disablement FROM ticks "
        "WHERE branch = 'main' AND tick = ?", [len(ss) - 1])[1]
    by_sup = dict(query(tmp_path, "SELECT key, value FROM metrics WHERE metric = 'credit_off_supplier' AND tick = ?",
                        [len(ss) - 1])[1])
    assert query(tmp_path, "SELECT hubs, prepay_off_supply FROM ticks WHERE branch = 'old'")[1] == [(5, None)]
    assert off == int(ss[-1].credit_off_supplier.sum()) > 0 and ec == int(ss[-1].credit_ec_supplier.sum())
    assert disabled_alerts == int(ss[-1].alerts[:, AlertKind.CREDIT_BELOW_DISABLEMENT].sum())
    assert by_sup["Utilita"] == int(ss[-1].credit_off_supplier[8]) and sum(by_sup.values()) == off


def test_a_restored_checkpoint_continues_exactly_like_the_run_it_came_from(default_run):
    # a: the module's default run, 10 days then 5 more; b: a copy of it after the 10 days whose
    # state is restored from its checkpoint bytes (the derived look-ahead cache is rebuilt).
    a, b = default_run.fleet, copy.deepcopy(default_run.at_10_days)
    assert b.tick == 10 * 48 and not np.isneginf(b.states[0].prepay_due).all()
    b.states[0] = HubState.from_bytes(b.states[0].to_bytes())
    assert np.isneginf(b.states[0].prepay_due).all()
    sa, sb = default_run.summaries[10 * 48:], b.run(5 * 48)
    assert [s.to_dict() for s in sa] == [s.to_dict() for s in sb]
    assert a.state_hash() == b.state_hash()
    assert sa[-1].prepayment()["off_supply"] > 0


def test_the_api_views_agree_with_the_counts_group_filter_and_hub_record(no_topups):
    from twin.model.query import aggregate_counts, hub_record, label_counts, match_hubs, parse_filter
    from twin.services.convert import hub_message

    f, last = no_topups.fleet, no_topups.summaries[-1]
    st, cfg = f.states[0], f.config
    up = f.network.up_by_area(f.tick - 1)
    rows = {r["credit_state"]: r["hubs"] for r in label_counts(["credit_state"],
                                                             aggregate_counts(st, up, ["credit_state"]))}
    assert rows["disabled"] == int(last.credit_off_supplier.sum())
    assert rows["emergency credit"] == int(last.credit_ec_supplier.sum())
    assert rows["disabled"] + rows["emergency credit"] + rows["in credit"] == int(last.prepay_supplier.sum())
    ids, _ = match_hubs(st, up, parse_filter("credit_state=disabled AND supplier=Utilita"), 0, 1000)
    assert len(ids) == int(last.credit_off_supplier[8]) > 0
    rec = hub_record(st, cfg, up, ids[0], f.tick - 1)
    assert rec["prepayment"] == {"balance_pence": -EC_P, "credit_state": "disabled", "supply_on": False}
    msg = hub_message(rec)
    assert msg.prepayment.balance_pence == -EC_P and msg.prepayment.credit_state == "disabled"
    credit_hub = int(np.flatnonzero((st.cols["flags"][: st.n_hubs] & Flag.PREPAY) == 0)[0])
    assert not hub_message(hub_record(st, cfg, up, credit_hub, f.tick - 1)).HasField("prepayment")
    with pytest.raises(ValueError, match="credit_state takes one of"):
        parse_filter("credit_state=off")


def test_a_supply_disabled_by_sr_7_2_meters_nothing_until_sr_7_1():
    # The same kind as disablement for credit: a supply the supplier disabled meters nothing, for a
    # credit meter (register) and a prepayment meter (register and balance).
    f = _fleet(topups=False)
    st, cfg, c = f.states[0], f.config, f.states[0].cols
    f.run(2)
    n = st.n_hubs
    reach = (c["fault"][:n] == 0) & (c["smets"][:n] != Smets.SMETS1_NOT_ENROLLED)
    prepay = (c["flags"][:n] & Flag.PREPAY) != 0
    credit_hub = int(np.flatnonzero(reach & ~prepay)[0])
    prepay_hub = int(np.flatnonzero(reach & prepay & (c["credit_p"][:n] > 3000))[0])
    hubs = np.array([credit_hub, prepay_hub])

    def sr(srv: str, hub: int, i: int):
        return f.submit({"type": "service_request", "srv": srv, "hub": hub, "user_id": "t",
                         "request_id": f"r-{srv}-{hub}-{i}", "params": {}})

    ops = [sr("7.2", int(h), 0) for h in hubs]
    f.step()
    assert all(op.state == "DONE" for op in ops)
    assert (c["status"][hubs] & Status.SUPPLY_OFF).all()
    reg_off = register_reading_kwh(c, hubs, cfg, f.tick - 1)
    bal_off = balance_pence(c, prepay_hub, cfg, f.tick - 1)
    f.run(48)
    np.testing.assert_array_equal(register_reading_kwh(c, hubs, cfg, f.tick - 1), reg_off)
    assert balance_pence(c, prepay_hub, cfg, f.tick - 1) == bal_off
    assert not c["status"][prepay_hub] & Status.CREDIT_OFF  # not a credit disablement: no 0x8F0F
    ops = [sr("7.1", int(h), 1) for h in hubs]
    f.step()
    t_on = f.tick
    f.run(48)
    annual = c["elec_kwh_year"][hubs]
    used = annual * (spend_factor(cfg, f.tick) - spend_factor(cfg, t_on))
    np.testing.assert_allclose(register_reading_kwh(c, hubs, cfg, f.tick - 1) - reg_off, used, atol=0.11)
    spent = used[1] * c["tariff_dp"][prepay_hub] / 10
    assert abs(balance_pence(c, prepay_hub, cfg, f.tick - 1) - (bal_off - spent)) < 1.0


def test_prepayment_alerts_go_to_the_import_supplier_not_the_network_or_gas_supplier():
    from twin.services.dcc.alerts import alert_mask
    from twin.services.identity import OPERATOR, Identity

    kinds = np.array([AlertKind.POWER_OUTAGE, AlertKind.CREDIT_BELOW_DISABLEMENT, AlertKind.SUPPLY_ARMED,
                      AlertKind.EMERGENCY_CREDIT_ACTIVATED], np.uint8)
    ev = {"hub": np.arange(4), "kind": kinds, "area": np.full(4, 12, np.uint8),
          "supplier": np.full(4, 8, np.uint8), "gas_supplier": np.full(4, 8, np.uint8)}

    def sees(role: str, party: int) -> list[int]:
        return np.flatnonzero(alert_mask(Identity("u", role, party), set(), ev)).tolist()

    assert sees("IS", 8) == [0, 1, 2, 3]
    assert sees("IS", 1) == []
    assert sees("ED", 12) == [0] and sees("GS", 8) == [0]
    assert sees(OPERATOR, 0) == [0, 1, 2, 3]
