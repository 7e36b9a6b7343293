"""Power-outage alert rule: a hub unpowered more than 3 minutes sends AD1, then a restoration."""

from __future__ import annotations

import numpy as np

from tests.conftest import quiet_params
from twin.model.catalog import AlertKind, Fault, Smets
from twin.model.config import FleetConfig
from twin.model.fleet import LocalFleet
from twin.model.kernel import IncidentDraw, start_incidents
from twin.model.params import TICK_SECONDS


def _fleet() -> tuple[LocalFleet, np.ndarray]:
    cfg = FleetConfig(hubs=4_096, seed=12, block_size=1024, params=quiet_params())
    f = LocalFleet(cfg)
    st = f.states[0]
    dcc_ok = np.flatnonzero((st.cols["smets"][: st.n_hubs] != Smets.SMETS1_NOT_ENROLLED)
                            & (st.cols["fault"][: st.n_hubs] == 0))
    return f, dcc_ok


def _outage(f: LocalFleet, hubs: np.ndarray, start_s: int, duration_s: np.ndarray, backoff: int = 0) -> int:
    k = hubs.size
    draw = IncidentDraw(bit=int(Fault.POWER), hub=hubs.astype(np.int64), start_s=np.full(k, start_s),
                        end_s=start_s + duration_s, alert_backoff_s=np.full(k, backoff),
                        restore_backoff_s=np.full(k, backoff))
    return start_incidents(f.states[0], draw, f.config)


def test_only_outages_longer_than_three_minutes_raise_alerts():
    f, hubs = _fleet()
    short, long = hubs[:30], hubs[30:50]
    t0 = f.tick * TICK_SECONDS
    _outage(f, short, t0 + 10, np.full(30, 170))
    _outage(f, long, t0 + 10, np.full(20, 3 * TICK_SECONDS))
    ss = f.run(6)
    ad1 = [int(s.alerts[:, AlertKind.POWER_OUTAGE].sum()) for s in ss]
    restored = [int(s.alerts[:, AlertKind.POWER_RESTORED].sum()) for s in ss]
    assert ad1 == [20, 0, 0, 0, 0, 0]  # at start + 180 s, inside the first tick
    assert restored == [0, 0, 0, 20, 0, 0]  # at the end, three ticks later
    # While unpowered the hubs are dark; afterwards reachable again.
    assert ss[1].dark_by_reason[:, 1].sum() == 20
    assert ss[5].dark_by_reason[:, 1].sum() == 0


def test_peak_alerts_per_second_and_backoff_spread():
    f, hubs = _fleet()
    t0 = f.tick * TICK_SECONDS
    _outage(f, hubs[:200], t0, np.full(200, 3600))  # all AD1 at exactly t0 + 180 s
    s = f.step()
    assert s.peak_alerts_per_s == 200
    assert s.alert_seconds.tolist() == [180]

    f2, hubs2 = _fleet()
    t0 = f2.tick * TICK_SECONDS
    k = 200
    draw = IncidentDraw(bit=int(Fault.POWER), hub=hubs2[:k].astype(np.int64), start_s=np.full(k, t0),
                        end_s=np.full(k, t0 + 3600), alert_backoff_s=np.arange(k) % 100,
                        restore_backoff_s=np.zeros(k, np.int64))
    start_incidents(f2.states[0], draw, f2.config)
    s2 = f2.step()
    assert s2.alerts[:, AlertKind.POWER_OUTAGE].sum() == k
    assert s2.peak_alerts_per_s == 2  # a 100 s back-off spreads 200 alerts two per second


def test_a_hub_already_unpowered_is_not_cut_twice():
    f, hubs = _fleet()
    t0 = f.tick * TICK_SECONDS
    assert _outage(f, hubs[:5], t0, np.full(5, 3600)) == 5
    assert _outage(f, hubs[:10], t0 + 5, np.full(10, 3600)) == 5
    assert f.step().alerts[:, AlertKind.POWER_OUTAGE].sum() == 10


def test_a_longer_second_cut_keeps_the_premises_off_until_it_ends():
    f, hubs = _fleet()
    t0 = f.tick * TICK_SECONDS
    first, both = hubs[:10], hubs[:20]
    _outage(f, first, t0, np.full(10, 2 * TICK_SECONDS))  # ends after two ticks
    # A second cut on the same and ten more premises, lasting five ticks from half a tick on; a
    # minute's cut inside the first changes nothing, and on the ten others it is a minute without
    # power of its own before theirs (too short for an alert).
    assert _outage(f, both, t0 + TICK_SECONDS // 2, np.full(20, 5 * TICK_SECONDS)) == 10
    assert _outage(f, both, t0 + 60, np.full(20, 60)) == 10
    ss = f.run(8)
    dark = [int(s.dark_by_reason[:, 1].sum()) for s in ss]
    ad1 = [int(s.alerts[:, AlertKind.POWER_OUTAGE].sum()) for s in ss]
    restored = [int(s.alerts[:, AlertKind.POWER_RESTORED].sum()) for s in ss]
    assert dark[:5] == [20] * 5 and dark[6:] == [0, 0]  # no premises back at the first cut's end
    assert ad1 == [20, 0, 0, 0, 0, 0, 0, 0]  # one AD1 per premises
    assert sum(restored) == 20 and restored[2] == 0 and restored[5] == 20  # one restoration, at the end


def test_alerts_from_hubs_with_a_broken_wan_are_not_delivered():
    f, hubs = _fleet()
    st = f.states[0]
    st.change(hubs[:7], fault_set=Fault.HUB_FAULT)
    t0 = f.tick * TICK_SECONDS
    _outage(f, hubs[:10], t0, np.full(10, 3600))
    s = f.step()
    assert s.alerts[:, AlertKind.POWER_OUTAGE].sum() == 3
    assert s.alerts_undelivered == 7


def test_background_outages_raise_alerts_at_their_rate():
    cfg = FleetConfig(hubs=200_000, seed=13, params=quiet_params(power_outages_per_year=50.0))
    ss = LocalFleet(cfg).run(48)
    ad1 = sum(int(s.alerts[:, AlertKind.POWER_OUTAGE].sum()) for s in ss)
    # 50 a year per premises over a day, DCC hubs only (95%), outages over 3 minutes only
    # (lognormal, median 20 min, sigma 1.5: P(> 3 min) = 0.9459), minus the last tick's tail.
    expected = 200_000 * 50 / 365.25 * 0.95 * 0.9459
    assert 0.85 * expected < ad1 < 1.1 * expected
