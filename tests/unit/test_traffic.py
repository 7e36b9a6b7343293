"""Nominal traffic calibrates to the published volumes per connected meter per month (messages
besides alerts, and device alerts: CALIBRATION_VOLUMES), and every message is counted by CSP, link
and North base station."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from twin.model.catalog import N_LINKS, N_WAN, Csp, MessageType, WanTech
from twin.model.config import FleetConfig
from twin.model.fleet import LocalFleet
from twin.model.params import CALIBRATION_VOLUMES, DAYS_PER_MONTH, NORTH_BASE_STATIONS, ModelParams, TrafficParams
from twin.model.summary import TickSummary
from twin.model.traffic import count_messages

DAYS = 4
HUBS = 20_000


def per_meter_month(config: FleetConfig) -> dict[str, float]:
    """Messages besides alerts and device alerts per reachable meter per month, and the daily
    reads' share of the messages, measured over DAYS simulated days."""
    ss = LocalFleet(config).run(48 * DAYS)
    msgs = np.sum([s.messages for s in ss], axis=0)
    meters = np.mean([s.reachable_meters.sum() for s in ss])
    months = DAYS / DAYS_PER_MONTH
    alerts = msgs[:, MessageType.ALERT].sum()
    other = msgs.sum() - alerts
    return {"messages": float(other / meters / months), "alerts": float(alerts / meters / months),
            "daily_share": float(msgs[:, MessageType.DAILY_READ].sum() / other)}


def test_the_published_volumes_are_what_the_sources_give():
    # 2019: 28 messages a month per meter (Oct 2019); 2022: 1.0bn messages and 1.6bn device alerts
    # for ~21M meters in July 2022.
    assert CALIBRATION_VOLUMES[2019][0] == 28.0
    assert CALIBRATION_VOLUMES[2022] == (pytest.approx(1.0e9 / 21e6, rel=0.02), pytest.approx(1.6e9 / 21e6, rel=0.01))


def test_2022_calibration_within_15_percent():
    got = per_meter_month(FleetConfig(hubs=HUBS, seed=8))
    assert got["messages"] == pytest.approx(48.0, rel=0.15)
    assert got["alerts"] == pytest.approx(76.0, rel=0.15)


def test_2019_calibration_within_15_percent():
    params = ModelParams(traffic=TrafficParams(calibration_year=2019))
    got = per_meter_month(FleetConfig(hubs=HUBS, seed=8, params=params))
    assert got["messages"] == pytest.approx(28.0, rel=0.15)
    # ~60% of 2019's messages were daily read bursts (Oct 2019).
    assert got["daily_share"] == pytest.approx(0.60, rel=0.15)


def test_calibration_follows_its_parameters():
    tp = replace(TrafficParams(), messages_per_meter_month=40.0, device_alerts_per_meter_month=10.0)
    got = per_meter_month(FleetConfig(hubs=HUBS, seed=8, params=ModelParams(traffic=tp)))
    assert got["messages"] == pytest.approx(40.0, rel=0.15)
    assert got["alerts"] == pytest.approx(10.0, rel=0.15)


def test_daily_reads_follow_the_read_profile():
    cfg = FleetConfig(hubs=100_000, seed=9)
    ss = LocalFleet(cfg).run(48)
    daily = np.array([s.messages[:, MessageType.DAILY_READ].sum() for s in ss], dtype=float)
    w = np.asarray(cfg.params.traffic.daily_read_profile)
    # Night half-hours carry three times the weight of daytime ones in the default profile.
    assert daily[:12].mean() / daily[20:36].mean() == pytest.approx(w[:12].mean() / w[20:36].mean(), rel=0.1)


def test_count_messages_by_csp_link_and_base_station():
    s = TickSummary(tick=0)
    csp = np.array([Csp.NORTH, Csp.NORTH, Csp.NORTH, Csp.SOUTH, Csp.CENTRAL])
    wan = np.array([WanTech.LRR, WanTech.LRR, WanTech.VWAN, WanTech.G2, WanTech.G3])
    cell = np.array([7, 7, 3, 5000, 12])
    count_messages(s, MessageType.ON_DEMAND_READ, csp, wan, cell, weights=np.array([1, 2, 4, 8, 16]))
    assert s.messages[:, MessageType.ON_DEMAND_READ].tolist() == [7, 16, 8]
    by_link = s.link_messages[:, MessageType.ON_DEMAND_READ]
    assert by_link[Csp.NORTH * N_WAN + WanTech.LRR] == 3
    assert by_link[Csp.NORTH * N_WAN + WanTech.VWAN] == 4
    assert by_link[Csp.SOUTH * N_WAN + WanTech.G2] == 8
    assert by_link[Csp.CENTRAL * N_WAN + WanTech.G3] == 16
    assert by_link.sum() == 31 and s.link_messages.shape == (N_LINKS, len(MessageType))
    # Only North long-range radio hubs load a base station: cell 7 twice (1 + 2).
    assert s.bs_messages.shape == (NORTH_BASE_STATIONS,)
    assert s.bs_messages[7] == 3 and s.bs_messages.sum() == 3


def test_every_message_of_a_run_is_counted_by_link():
    ss = LocalFleet(FleetConfig(hubs=HUBS, seed=4)).run(6)
    for s in ss:
        by_csp = s.link_messages.reshape(len(Csp), N_WAN, -1).sum(axis=1)
        np.testing.assert_array_equal(by_csp, s.messages)
        lrr = s.link_messages[Csp.NORTH * N_WAN + WanTech.LRR]
        assert s.link_alert_minutes.sum() == s.alerts.sum()
        # Base stations see the hub-driven North radio traffic (background is shared over them later).
        assert s.bs_messages.sum() <= lrr.sum()
