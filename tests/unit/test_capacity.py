"""The network's queues against cases with known answers (twin.model.capacity): fluid queues
below and above capacity, draining, priority against FIFO, the oldest queued message's age, and
alert storm protection (SECMP0062) counted exactly."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.model.capacity import (
    AlertStorm,
    NetworkQueues,
    lindley,
    link_index,
    serve,
    serve_bins,
    weighted_quantiles,
)
from twin.model.catalog import AREA_CSP, N_ALERT_KINDS, N_CLASSES, N_LINKS, Csp, MessageType, TrafficClass
from twin.model.params import TICK_SECONDS, CapacityParams, TrafficParams
from twin.model.summary import N_BINS, TickSummary

LINK = link_index("CENTRAL/G3")
G3_BYTES_PER_S = CapacityParams().wan_bytes_per_s["G3"]
NO_DEVICE_TIME = {c.name: 0.0 for c in TrafficClass}
CENTRAL_AREA = next(a for a in range(AREA_CSP.size) if AREA_CSP[a] == Csp.CENTRAL)


def cap_params(**kw) -> CapacityParams:
    return replace(CapacityParams(), device_time_s=NO_DEVICE_TIME, **kw)


def queues_with(mu: float, p: CapacityParams) -> NetworkQueues:
    """Queues where only CENTRAL/G3 is limited, to `mu` messages per second (whatever a message's
    size), and the DSP and base stations never are."""
    q = NetworkQueues()
    q.size(TickSummary(tick=0), p, TrafficParams())
    q.link_msgs_per_s[:] = 0.0
    q.link_bytes_per_s[:] = 0.0
    q.link_msgs_per_s[LINK] = mu
    q.link_bytes_per_s[LINK] = 1e15
    q.dsp_msgs_per_s = 1e15
    q.bs_msgs_per_s = 1e15
    return q


def arrivals(tick: int, per_s: dict[MessageType, float]) -> TickSummary:
    """A tick whose CENTRAL/G3 link is offered `per_s` messages a second of each type, evenly."""
    s = TickSummary(tick=tick)
    for kind, rate in per_s.items():
        s.link_messages[LINK, kind] = round(rate * TICK_SECONDS)
    return s


def central(report, name: str, klass: TrafficClass) -> float:
    return float(getattr(report, name)[Csp.CENTRAL, klass])


# -- fluid queues with known answers ------------------------------------------------------------

def test_below_capacity_no_backlog_and_latency_is_transfer_time():
    p = cap_params()
    q = queues_with(10.0, p)
    for tick in range(3):
        r = q.step(arrivals(tick, {MessageType.ON_DEMAND_READ: 6.0}), p, TrafficParams())
        transfer = p.message_bytes["ON_DEMAND_READ"] / G3_BYTES_PER_S
        assert r.link_backlog[LINK] == 0
        assert r.backlog.sum() == 0
        assert r.link_utilisation[LINK] == pytest.approx(0.6)
        for name in ("latency_p50", "latency_p95", "latency_p99"):
            assert central(r, name, TrafficClass.ON_DEMAND) == pytest.approx(transfer, rel=1e-12)
        assert central(r, "within_target", TrafficClass.ON_DEMAND) == 1.0
        assert central(r, "oldest_age_s", TrafficClass.ON_DEMAND) == 0.0
        assert r.messages[Csp.CENTRAL, TrafficClass.ON_DEMAND] == 6 * TICK_SECONDS


def test_overload_builds_lambda_minus_mu_times_t_and_drains_in_backlog_over_mu_minus_lambda():
    p = cap_params()
    mu, lam, lam2 = 10.0, 15.0, 5.0
    q = queues_with(mu, p)
    for tick in range(3):  # T = 3 ticks of overload
        r = q.step(arrivals(tick, {MessageType.ON_DEMAND_READ: lam}), p, TrafficParams())
        assert r.link_backlog[LINK] == round((lam - mu) * (tick + 1) * TICK_SECONDS)
    backlog = (lam - mu) * 3 * TICK_SECONDS  # 27,000 messages
    # A message arriving at the end of bin n of the overload waits the n bins' excess at rate mu.
    transfer = p.message_bytes["ON_DEMAND_READ"] / G3_BYTES_PER_S
    per_bin = (lam - mu) * 60 / mu
    assert central(r, "latency_p99", TrafficClass.ON_DEMAND) == pytest.approx(90 * per_bin + transfer)
    assert central(r, "latency_p50", TrafficClass.ON_DEMAND) == pytest.approx(75 * per_bin + transfer)
    assert central(r, "within_target", TrafficClass.ON_DEMAND) == 0.0  # every wait beyond 30 s
    # Demand drops to lam2: the backlog drains in backlog / (mu - lam2) = 5,400 s = 3 ticks.
    drain = backlog / (mu - lam2)
    assert drain == 3 * TICK_SECONDS
    left = []
    for tick in range(3, 7):
        r = q.step(arrivals(tick, {MessageType.ON_DEMAND_READ: lam2}), p, TrafficParams())
        left.append(int(r.link_backlog[LINK]))
    assert left == [18_000, 9_000, 0, 0]
    assert central(r, "latency_p99", TrafficClass.ON_DEMAND) == pytest.approx(transfer)


def test_priority_serves_alerts_before_scheduled_reads():
    p = cap_params(policy="priority")
    q = queues_with(10.0, p)
    r = q.step(arrivals(0, {MessageType.ALERT: 4.0, MessageType.DAILY_READ: 10.0}), p, TrafficParams())
    alert_transfer = p.message_bytes["ALERT"] / G3_BYTES_PER_S
    assert central(r, "latency_p99", TrafficClass.ALERT) == pytest.approx(alert_transfer)
    assert r.backlog[Csp.CENTRAL, TrafficClass.ALERT] == 0
    assert r.backlog[Csp.CENTRAL, TrafficClass.SCHEDULED] == 4 * TICK_SECONDS  # (14 - 10) x 1,800
    assert r.alerts_delayed[Csp.CENTRAL] == 0
    read_transfer = p.message_bytes["DAILY_READ"] / G3_BYTES_PER_S
    assert central(r, "latency_p99", TrafficClass.SCHEDULED) == pytest.approx(4 * TICK_SECONDS / 10 + read_transfer)


def test_fifo_makes_alerts_wait_as_long_as_scheduled_reads():
    p = cap_params(policy="fifo")
    q = queues_with(10.0, p)
    r = q.step(arrivals(0, {MessageType.ALERT: 4.0, MessageType.DAILY_READ: 10.0}), p, TrafficParams())
    alert_wait = central(r, "latency_p99", TrafficClass.ALERT) - p.message_bytes["ALERT"] / G3_BYTES_PER_S
    read_wait = central(r, "latency_p99", TrafficClass.SCHEDULED) - p.message_bytes["DAILY_READ"] / G3_BYTES_PER_S
    assert alert_wait == pytest.approx(read_wait)
    assert alert_wait == pytest.approx(4 * TICK_SECONDS / 10)
    # What stays queued is the newest arrivals, in the classes' shares of them.
    assert r.backlog[Csp.CENTRAL, TrafficClass.ALERT] == round(4 * TICK_SECONDS * 4 / 14)
    assert r.backlog[Csp.CENTRAL, TrafficClass.SCHEDULED] == round(4 * TICK_SECONDS * 10 / 14)


def test_alerts_that_wait_beyond_the_retry_window_fail():
    p = cap_params(policy="fifo")
    q = queues_with(10.0, p)
    # 4 alerts and 10 reads a second against 10: the wait grows by 24 s a bin; alerts of bins whose
    # wait passes the 300 s retry window (bin 13 on: 312 s) fail.
    r = q.step(failing_tick(), p, TrafficParams())
    assert r.alerts_failed[Csp.CENTRAL] == 240 * (N_BINS - 12)
    assert r.alerts_delayed[Csp.CENTRAL] == 240 * N_BINS
    assert r.failed_queue[Csp.CENTRAL] == 240 * (N_BINS - 12)


def failing_tick(tick: int = 0) -> TickSummary:
    """10 reads and 4 alerts a second against 10 a second: alerts of bins 13 on wait over 300 s."""
    s = arrivals(tick, {MessageType.DAILY_READ: 10.0})
    s.link_messages[LINK, MessageType.ALERT] = 240 * N_BINS
    s.link_alert_minutes[LINK, :] = 240
    return s


def test_failed_alerts_are_redelivered_with_the_dsp_capacity_left_then_expire():
    p = cap_params(policy="fifo", failed_alert_hold_s=3 * TICK_SECONDS)
    q = queues_with(10.0, p)
    r = q.step(failing_tick(), p, TrafficParams())
    assert r.alerts_failed[Csp.CENTRAL] == 240 * 18
    q.dsp_msgs_per_s = 1.0  # from now on the DSP stage passes 1,800 messages a tick
    seen = []
    for tick in (1, 2, 3):
        r = q.step(TickSummary(tick=tick), p, TrafficParams())
        seen.append((int(r.alerts_redelivered[Csp.CENTRAL]), int(r.alerts_expired[Csp.CENTRAL]),
                     int(r.failed_queue[Csp.CENTRAL])))
    # 4,320 failed: 1,800 redelivered a tick; what is left when held three ticks expires.
    assert seen == [(1800, 0, 2520), (1800, 0, 720), (0, 720, 0)]


def test_throttled_alerts_stop_at_the_dcc_neither_delayed_nor_failed():
    p = cap_params(policy="fifo", alert_storm_threshold=10, alert_storm_window_s=3600, alert_storm_period_s=900)
    q = queues_with(10.0, p)
    s = failing_tick()
    n = 240 * N_BINS  # all from one hub, one alert kind, 4 a second
    sec = np.repeat(np.arange(N_BINS) * 60, 240) + np.tile(np.arange(240) // 4, N_BINS)
    s.alert_events = {"hub": np.full(n, 3, np.int64), "kind": np.full(n, 2, np.uint8), "sec": sec,
                      "area": np.full(n, CENTRAL_AREA, np.uint8)}
    r = q.step(s, p, TrafficParams())
    # Forwarded: the first 10 and the 11th (period 0's copy) in the first minute, and period 1's
    # copy at 900 s (minute 15, which waits 360 s: failed).
    assert r.alerts_throttled[Csp.CENTRAL] == n - 12
    assert r.alerts_delayed[Csp.CENTRAL] == 12
    assert r.alerts_failed[Csp.CENTRAL] == 1


def test_a_congested_base_station_delays_its_share_of_north_radio_traffic():
    p = cap_params()
    q = queues_with(10.0, p)
    q.bs_groups, q.bs_backlog, q.bs_msgs_per_s = 2, np.zeros(2), 1.0  # two base stations, 1,800 a tick each
    lrr = link_index("NORTH/LRR")
    s = TickSummary(tick=0)
    s.link_messages[lrr, MessageType.ON_DEMAND_READ] = 5400
    s.bs_messages[0] = 3600  # cells 0-899: the first base station, offered twice what it serves
    s.bs_messages[1000] = 1800  # the second, exactly its capacity
    r = q.step(s, p, TrafficParams())
    transfer = p.message_bytes["ON_DEMAND_READ"] / p.wan_bytes_per_s["LRR"]
    assert (r.bs_congested, r.bs_backlog) == (1, 1800)
    assert r.bs_peak_utilisation == pytest.approx(2.0)
    # Two thirds of the North's on-demand reads wait 1,800 s at the first; a third none.
    assert central_or(r, Csp.NORTH, "within_target") == pytest.approx(1 / 3)
    assert central_or(r, Csp.NORTH, "latency_p50") == pytest.approx(1800 + transfer)
    assert central_or(r, Csp.NORTH, "latency_p99") == pytest.approx(1800 + transfer)
    r = q.step(TickSummary(tick=1), p, TrafficParams())
    assert (r.bs_congested, r.bs_backlog) == (0, 0)
    # Background traffic alone (no hub-driven counts by cell) is shared evenly over base stations.
    s = TickSummary(tick=2)
    s.link_messages[lrr, MessageType.ON_DEMAND_READ] = 5400
    r = q.step(s, p, TrafficParams())
    assert (r.bs_congested, r.bs_backlog) == (2, 1800)


def central_or(report, csp: Csp, name: str) -> float:
    return float(getattr(report, name)[csp, TrafficClass.ON_DEMAND])


@pytest.mark.parametrize("policy", ["fifo", "priority"])
def test_oldest_queued_age_grows_as_the_overload_goes_on(policy):
    p = cap_params(policy=policy)
    mu, lam = 10.0, 15.0
    q = queues_with(mu, p)
    for tick in range(4):
        r = q.step(arrivals(tick, {MessageType.ON_DEMAND_READ: lam}), p, TrafficParams())
        now = (tick + 1) * TICK_SECONDS
        # Served work mu x now reaches the arrivals of time mu x now / lam: the oldest queued
        # message has waited now x (1 - mu / lam).
        assert central(r, "oldest_age_s", TrafficClass.ON_DEMAND) == pytest.approx(now * (1 - mu / lam))


# -- serve_bins is serve, bin by bin ------------------------------------------------------------

def fifo_reference(backlog: np.ndarray, work: np.ndarray, budget: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Oldest first, cohort by cohort: (backlog by class at the end, total wait per bin)."""
    out = np.zeros_like(backlog)
    waits = np.zeros((backlog.shape[0], work.shape[2]))
    for link in range(backlog.shape[0]):
        cohorts = [backlog[link].astype(float)]
        for b in range(work.shape[2]):
            cohorts.append(work[link, :, b].astype(float))
            left = float(budget[link])
            for c in cohorts:
                tot = c.sum()
                if tot <= left:
                    left -= tot
                    c[:] = 0.0
                else:
                    c *= (tot - left) / tot
                    break
            waits[link, b] = sum(c.sum() for c in cohorts)
        out[link] = sum(cohorts)
    return out, waits


queue_case = st.tuples(
    st.integers(1, 4),  # links
    st.integers(1, 12),  # bins
    st.integers(0, 2**31 - 1),  # seed
    st.sampled_from([None, (0, 1, 2), (2, 0, 1)]),  # policy
)


@settings(max_examples=60, deadline=None)
@given(queue_case)
def test_serve_bins_matches_serve_bin_by_bin(case):
    links, bins, seed, order = case
    rng = np.random.default_rng(seed)
    backlog = rng.exponential(30.0, (links, 3)) * (rng.random((links, 3)) < 0.5)
    work = rng.exponential(25.0, (links, 3, bins)) * (rng.random((links, 3, bins)) < 0.7)
    budget = rng.uniform(20.0, 90.0, links)
    out, waits, left = serve_bins(backlog, work, budget, None if order is None else np.array(order))
    b, spare = backlog.copy(), np.zeros(links)
    for k in range(bins):
        b, w, s = serve(b, work[:, :, k], budget, None if order is None else np.array(order))
        spare += s
        np.testing.assert_allclose(waits[:, :, k], w, atol=1e-9)
        if order is None:  # FIFO: every class waits for the whole backlog
            np.testing.assert_allclose(waits[:, :, k], np.repeat(b.sum(axis=1)[:, None], 3, axis=1), atol=1e-9)
    np.testing.assert_allclose(left, spare, atol=1e-9)
    if order is None:
        ref, ref_waits = fifo_reference(backlog, work, budget)
        np.testing.assert_allclose(out, ref, atol=1e-9)
        np.testing.assert_allclose(waits[:, 0, :], ref_waits, atol=1e-9)
    else:
        np.testing.assert_allclose(out, b, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1e5, allow_nan=False), st.integers(0, 50), st.integers(0, 3)), max_size=60))
def test_weighted_quantiles_are_those_of_the_messages_one_by_one(rows):
    values = np.array([r[0] for r in rows], float)
    weights = np.array([r[1] for r in rows], float)
    groups = np.array([r[2] for r in rows], np.intp)
    got = weighted_quantiles(values, weights, groups, 4, (0.5, 0.95, 0.99))
    for g in range(4):
        each = np.sort(np.repeat(values[groups == g], weights[groups == g].astype(int)))
        for i, pct in enumerate((50, 95, 99)):
            rank = -(-pct * each.size // 100)  # the ceil(q x n)-th message, in whole numbers
            assert got[g, i] == (each[rank - 1] if each.size else 0.0)


def test_lindley_is_the_recursion():
    rng = np.random.default_rng(3)
    b0, work, c = rng.uniform(0, 50, 5), rng.uniform(0, 80, (5, 40)), rng.uniform(20, 60, 5)
    got = lindley(b0, work, c)
    b = b0.copy()
    for k in range(40):
        b = np.maximum(b + work[:, k] - c, 0.0)
        np.testing.assert_allclose(got[:, k], b, atol=1e-9)


# -- alert storm protection (SECMP0062) --------------------------------------------------------

def storm_reference(events: list[tuple[int, int, int]], p: CapacityParams) -> list[bool]:
    """The rule spelt out alert by alert, in time order: (hub, kind, second) -> throttled."""
    state: dict[tuple[int, int], list[int]] = {}
    out = []
    for hub, kind, t in events:
        ws, cnt, last = state.get((hub, kind), [-1, 0, -1])
        if ws < 0 or t >= ws + p.alert_storm_window_s:
            ws, cnt, last = t, 0, -1
        cnt += 1
        throttled = False
        if cnt > p.alert_storm_threshold:
            k = (t - ws) // p.alert_storm_period_s
            throttled = k == last
            last = k
        state[(hub, kind)] = [ws, cnt, last]
        out.append(throttled)
    return out


def run_storm(storm: AlertStorm, events: list[tuple[int, int, int]], p: CapacityParams,
              batch_s: int = TICK_SECONDS) -> np.ndarray:
    """Events (time-ordered) through `storm` in batches of one tick each, as the queues do."""
    a = np.array(events, np.int64).reshape(-1, 3)
    out = np.zeros(len(events), bool)
    for b in np.unique(a[:, 2] // batch_s):
        sel = np.flatnonzero(a[:, 2] // batch_s == b)
        out[sel] = storm.apply(a[sel, 0], a[sel, 1], a[sel, 2], p)
        storm.expire(int(b + 1) * batch_s, p.alert_storm_window_s)
    return out


def test_repeats_beyond_the_threshold_are_throttled_one_copy_per_period():
    p = CapacityParams(alert_storm_threshold=10, alert_storm_window_s=3600, alert_storm_period_s=900)
    # One hub sends one alert kind every 30 s for two hours.
    events = [(42, 3, t) for t in range(0, 7200, 30)]
    throttled = run_storm(AlertStorm(), events, p)
    fwd = [t for (_, _, t), th in zip(events, throttled, strict=True) if not th]
    # Window 1 (0-3599): the first 10 (0..270 s), then the first repeat of each 900 s period.
    # Window 2 opens at 3600: the same again.
    assert fwd == [*range(0, 300, 30), 300, 900, 1800, 2700, *range(3600, 3900, 30), 3900, 4500, 5400, 6300]
    assert int(throttled.sum()) == 240 - 28


def test_throttling_leaves_other_hubs_and_kinds_alone():
    p = CapacityParams(alert_storm_threshold=3, alert_storm_window_s=3600, alert_storm_period_s=900)
    noisy = [(7, 1, t) for t in range(0, 600, 10)]
    other_hub = [(8, 1, t) for t in (5, 15, 25)]
    other_kind = [(7, 2, t) for t in (6, 16, 26)]
    events = sorted(noisy + other_hub + other_kind, key=lambda e: e[2])
    throttled = run_storm(AlertStorm(), events, p)
    by = {e: th for e, th in zip(events, throttled, strict=True)}
    assert not any(by[e] for e in other_hub + other_kind)
    assert sum(by[e] for e in noisy) == len(noisy) - 4  # 3, then one copy in the period


def test_throttling_does_not_depend_on_the_order_alerts_arrive_in():
    p = CapacityParams(alert_storm_threshold=2, alert_storm_window_s=600, alert_storm_period_s=120)
    rng = np.random.default_rng(5)
    hub = rng.integers(0, 20, 3000)
    kind = rng.integers(0, 3, 3000)
    t = rng.integers(0, TICK_SECONDS, 3000)
    base = AlertStorm().apply(hub, kind, t, p)
    perm = rng.permutation(3000)
    shuffled = AlertStorm().apply(hub[perm], kind[perm], t[perm], p)
    assert base.sum() > 1000  # a real storm
    # Alerts that differ only in their position get the same decisions: compare per (hub, kind, t).
    key = lambda h, k, s: h.astype(np.int64) * 10**8 + k * 10**6 + s  # noqa: E731
    a = np.sort(key(hub, kind, t)[base])
    b = np.sort(key(hub[perm], kind[perm], t[perm])[shuffled])
    np.testing.assert_array_equal(a, b)


def test_a_period_that_spans_two_ticks_forwards_one_copy():
    p = CapacityParams(alert_storm_threshold=2, alert_storm_window_s=3600, alert_storm_period_s=900)
    # The window opens at 1,000 s; its second period runs 1,900-2,799, across the tick boundary at
    # 1,800... and its first, 1,000-1,899, forwards the copy at 1,020 only: 1,700 (tick 0) and
    # 1,850 (tick 1) are repeats in that period.
    events = [(1, 1, t) for t in (1000, 1010, 1020, 1700, 1850, 1860, 1900, 1950)]
    assert run_storm(AlertStorm(), events, p).tolist() == [False, False, False, True, True, True, False, True]


storm_events = st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1), st.integers(0, 3 * TICK_SECONDS - 1)),
                        min_size=20, max_size=300)


@settings(max_examples=150, deadline=None)
@given(storm_events, st.integers(1, 5), st.sampled_from([(600, 60), (3600, 900), (2000, 700), (400, 500)]))
def test_throttling_matches_the_rule_alert_by_alert(events, threshold, window_period):
    window, period = window_period
    p = CapacityParams(alert_storm_threshold=threshold, alert_storm_window_s=window, alert_storm_period_s=period)
    events = sorted(events, key=lambda e: e[2])
    want = storm_reference(events, p)
    got = run_storm(AlertStorm(), events, p)
    # Decisions of alerts identical in (hub, kind, second) may swap between them: compare the
    # throttled count per (hub, kind, second).
    def counts(mask):
        c: dict[tuple[int, int, int], int] = {}
        for e, th in zip(events, mask, strict=True):
            c[e] = c.get(e, 0) + int(th)
        return c
    assert counts(got) == counts(want)


def test_the_queues_throttle_a_storm_and_count_it_by_csp():
    p = cap_params(alert_storm_threshold=10, alert_storm_window_s=3600, alert_storm_period_s=900)
    q = queues_with(1e6, p)
    s = TickSummary(tick=0)
    n = 60  # one hub, one alert kind, every 30 s of the tick
    sec = np.arange(0, TICK_SECONDS, 30)
    s.alert_events = {"hub": np.full(n, 9, np.int64), "kind": np.full(n, 1, np.uint8), "sec": sec,
                      "area": np.full(n, CENTRAL_AREA, np.uint8)}
    r = q.step(s, p, TrafficParams())
    assert int(r.alerts_throttled[Csp.CENTRAL]) == n - 12  # 10, then copies at 300 s and 900 s
    assert int(r.alerts_throttled.sum()) == n - 12
    assert int(s.alert_events["throttled"].sum()) == n - 12
    assert not s.alert_events["throttled"][:11].any()


def test_storm_state_holds_only_open_windows():
    p = CapacityParams(alert_storm_window_s=3600)
    storm = AlertStorm()
    storm.apply(np.arange(1000), np.zeros(1000, np.int64), np.zeros(1000, np.int64), p)
    assert storm.keys.size == 1000
    assert np.all(np.diff(storm.keys) > 0)
    storm.expire(3599, 3600)
    assert storm.keys.size == 1000
    storm.expire(3600, 3600)
    assert storm.keys.size == 0
    assert N_ALERT_KINDS > 1 and N_LINKS > LINK and N_CLASSES == 6


# -- bad parameters: a clear error naming the field -------------------------------------------

BAD_CAPACITY = [
    ({"link_capacity_factor": {"CENTRAL/G3": 0}}, "params.capacity.link_capacity_factor.CENTRAL/G3"),
    ({"link_capacity_factor": {"CENTRAL/G3": -0.5}}, "params.capacity.link_capacity_factor.CENTRAL/G3"),
    ({"link_capacity_factor": {"CENTRAL/G3": float("nan")}}, "params.capacity.link_capacity_factor.CENTRAL/G3"),
    ({"link_capacity_factor": {"CENTRAL/G3": float("inf")}}, "params.capacity.link_capacity_factor.CENTRAL/G3"),
    ({"link_capacity_factor": {"CENTRAL/G3": "half"}}, "params.capacity.link_capacity_factor.CENTRAL/G3"),
    ({"link_capacity_factor": {"CENTRAL/G3": True}}, "params.capacity.link_capacity_factor.CENTRAL/G3"),
    ({"link_capacity_factor": {"MIDLANDS/G3": 0.5}}, "params.capacity.link_capacity_factor.MIDLANDS/G3"),
    ({"link_capacity_factor": {"CENTRAL/G\uff13": 0.5}}, "params.capacity.link_capacity_factor.CENTRAL/G\uff13"),
    ({"link_capacity_factor": [0.5]}, "params.capacity.link_capacity_factor"),
    ({"link_design_share": {"SOUTH/G2": 0}}, "params.capacity.link_design_share.SOUTH/G2"),
    ({"base_station_factor": 0}, "params.capacity.base_station_factor"),
    ({"dsp_factor": float("-inf")}, "params.capacity.dsp_factor"),
    ({"policy": "lifo"}, "params.capacity.policy"),
    ({"policy": ["fifo"]}, "params.capacity.policy"),
    ({"priority": ["ALERT", "CRITICAL", "ON_DEMAND", "SCHEDULED", "FIRMWARE", "BULK"]}, "params.capacity.priority"),
    ({"priority": ["ALERT", "ALERT", "ON_DEMAND", "SCHEDULED", "FIRMWARE", "SECURITY"]}, "params.capacity.priority"),
    ({"priority": ["ALERT", 1]}, "params.capacity.priority"),
    ({"priority": "ALERT"}, "params.capacity.priority"),
    ({"design_utilisation": 0}, "params.capacity.design_utilisation"),
    ({"design_utilisation": "0.4"}, "params.capacity.design_utilisation"),
    ({"design_utilisation": float("nan")}, "params.capacity.design_utilisation"),
    ({"design_year": 2030}, "params.capacity.design_year"),
    ({"design_year": [2022]}, "params.capacity.design_year"),
    ({"message_bytes": {"ALERT": 0}}, "params.capacity.message_bytes.ALERT"),
    ({"message_bytes": {"TELEGRAM": 10}}, "params.capacity.message_bytes.TELEGRAM"),
    ({"wan_bytes_per_s": {"G5": 1e6}}, "params.capacity.wan_bytes_per_s.G5"),
    ({"device_time_s": {"ON_DEMAND": -1}}, "params.capacity.device_time_s.ON_DEMAND"),
    ({"device_time_s": {"ON_DEMAND": float("nan")}}, "params.capacity.device_time_s.ON_DEMAND"),
    ({"target_response_s": {"EXPRESS": 1}}, "params.capacity.target_response_s.EXPRESS"),
    ({"alert_storm_threshold": 0}, "params.capacity.alert_storm_threshold"),
    ({"alert_storm_threshold": 2.5}, "params.capacity.alert_storm_threshold"),
    ({"alert_storm_period_s": True}, "params.capacity.alert_storm_period_s"),
    ({"alert_delayed_s": 0}, "params.capacity.alert_delayed_s"),
    ({"enabled": "yes"}, "params.capacity.enabled"),
    ({"capacity_factor": 2}, "params.capacity.capacity_factor"),
]


@pytest.mark.parametrize(("given", "field_name"), BAD_CAPACITY)
def test_bad_capacity_parameters_name_their_field(given, field_name):
    from twin.model.config import FleetConfig, TwinInputError
    from twin.model.params import ModelParams

    with pytest.raises(TwinInputError) as e:
        ModelParams.from_dict({"capacity": given})
    assert e.value.field == field_name
    with pytest.raises(TwinInputError) as e:
        FleetConfig.from_dict({"hubs": 1000, "params": {"capacity": given}})
    assert e.value.field == field_name


BAD_TRAFFIC = [
    ({"calibration_year": 2021}, "params.traffic.calibration_year"),
    ({"calibration_year": [2022]}, "params.traffic.calibration_year"),
    ({"messages_per_meter_month": -1}, "params.traffic.messages_per_meter_month"),
    ({"device_alerts_per_meter_month": float("nan")}, "params.traffic.device_alerts_per_meter_month"),
    ({"background_mix": {"CARRIER_PIGEON": 1.0}}, "params.traffic.background_mix.CARRIER_PIGEON"),
    ({"background_mix": {"ON_DEMAND_READ": -0.5}}, "params.traffic.background_mix.ON_DEMAND_READ"),
    ({"background_mix": {"ON_DEMAND_READ": 0.0}}, "params.traffic.background_mix"),
    ({"daily_read_profile": [1.0] * 47}, "params.traffic.daily_read_profile"),
    ({"background_profile": [0.0] * 48}, "params.traffic.background_profile"),
]


@pytest.mark.parametrize(("given", "field_name"), BAD_TRAFFIC)
def test_bad_traffic_parameters_name_their_field(given, field_name):
    from twin.model.config import TwinInputError
    from twin.model.params import ModelParams

    with pytest.raises(TwinInputError) as e:
        ModelParams.from_dict({"traffic": given})
    assert e.value.field == field_name


@pytest.mark.parametrize("doc", [{"capacity": 5}, {"capacitty": {}}, [1]])
def test_bad_parameter_groups_name_their_field(doc):
    from twin.model.config import TwinInputError
    from twin.model.params import ModelParams

    with pytest.raises(TwinInputError) as e:
        ModelParams.from_dict(doc)
    assert e.value.field.startswith("params")


def test_twin_run_refuses_a_bad_capacity_parameter_with_status_2(tmp_path, capsys, monkeypatch):
    import twin.engine.runtime
    from twin.cli import main

    def never(*a, **k):
        raise AssertionError("nothing may start on a bad scenario")

    monkeypatch.setattr(twin.engine.runtime, "start_ray", never)
    path = tmp_path / "bad.yaml"
    path.write_text("fleet:\n  hubs: 2000\n  params:\n    capacity:\n      link_capacity_factor: {CENTRAL/G3: 0}\n",
                    encoding="utf-8")
    assert main(["run", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("twin run: error: fleet.params.capacity.link_capacity_factor.CENTRAL/G3: ")
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_parameters_survive_a_json_round_trip():
    import json

    from twin.model.params import ModelParams

    p = ModelParams.from_dict({"capacity": {"link_capacity_factor": {"SOUTH/G2": 0.5}, "policy": "priority"},
                               "traffic": {"calibration_year": 2019}})
    assert ModelParams.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    # A table given in part changes only the entries it names.
    assert p.capacity.message_bytes == CapacityParams().message_bytes
    assert p.capacity.link_capacity_factor == {"SOUTH/G2": 0.5}
