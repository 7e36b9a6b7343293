"""Nominal traffic calibrates to ~28 messages per meter per month, ~60% daily reads."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from twin.model.catalog import MessageType
from twin.model.config import FleetConfig
from twin.model.fleet import LocalFleet
from twin.model.params import DAYS_PER_MONTH, ModelParams, TrafficParams

DAYS = 4


def per_meter_month(config: FleetConfig) -> tuple[float, float]:
    f = LocalFleet(config)
    ss = f.run(48 * DAYS)
    msgs = np.sum([s.messages for s in ss], axis=0)
    meters = np.mean([s.reachable_meters.sum() for s in ss])
    rate = msgs.sum() / meters / (DAYS / DAYS_PER_MONTH)
    return float(rate), float(msgs[:, MessageType.DAILY_READ].sum() / msgs.sum())


def test_default_calibration_within_15_percent():
    rate, daily_share = per_meter_month(FleetConfig(hubs=100_000, seed=8))
    assert rate == pytest.approx(28.0, rel=0.15)
    assert daily_share == pytest.approx(0.60, rel=0.15)


def test_calibration_follows_its_parameters():
    tp = replace(TrafficParams(), messages_per_meter_month=40.0, daily_read_share=0.5)
    # The daily-read flag share is the generator's half of the calibration: 40 x 50% / 30.44 d.
    params = ModelParams(traffic=tp)
    params = replace(params, shares=replace(params.shares, daily_read=40 * 0.5 / DAYS_PER_MONTH))
    rate, daily_share = per_meter_month(FleetConfig(hubs=100_000, seed=8, params=params))
    assert rate == pytest.approx(40.0, rel=0.15)
    assert daily_share == pytest.approx(0.5, rel=0.15)


def test_daily_reads_follow_the_read_profile():
    cfg = FleetConfig(hubs=100_000, seed=9)
    ss = LocalFleet(cfg).run(48)
    daily = np.array([s.messages[:, MessageType.DAILY_READ].sum() for s in ss], dtype=float)
    w = np.asarray(cfg.params.traffic.daily_read_profile)
    # Night half-hours carry three times the weight of daytime ones in the default profile.
    assert daily[:12].mean() / daily[20:36].mean() == pytest.approx(w[:12].mean() / w[20:36].mean(), rel=0.1)
