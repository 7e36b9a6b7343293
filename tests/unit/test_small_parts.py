"""Ids, metering functions, config validation, aggregates."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from twin.model.catalog import Csp, DeviceType
from twin.model.config import FleetConfig, TwinInputError, parse_regions
from twin.model.fleet import LocalFleet
from twin.model.ids import eui64, parse_eui64
from twin.model.metering import cumulative_factor, half_hour_factor
from twin.model.network import NetworkPlan
from twin.model.query import aggregate_counts, hub_record, label_counts


@pytest.mark.parametrize("hub", [0, 1, 999, 2**20 + 7, 29_999_999])
def test_device_ids_round_trip_and_differ_by_type_and_seed(hub):
    for dt in DeviceType:
        assert parse_eui64(eui64(hub, 5, dt), 5) == (hub, dt)
    assert eui64(hub, 5) != eui64(hub, 6)
    assert len(eui64(hub, 5)) == 23


@pytest.mark.parametrize("bad", ["", "00-DB", "ZZ-DB-12-00-00-00-00-00", "AA-BB-CC-DD-EE-FF-00-11"])
def test_bad_device_ids_are_rejected(bad):
    with pytest.raises(ValueError):
        parse_eui64(bad, 1)


@pytest.mark.parametrize("fuel", ["elec", "gas"])
@pytest.mark.parametrize("start_tod", [0, 17])
def test_cumulative_profile_closed_form_equals_the_sum(fuel, start_tod):
    first = 300
    for ticks in (1, 47, 48, 100, 3000):
        brute = sum(half_hour_factor(fuel, first + (start_tod + k) // 48, (start_tod + k) % 48) for k in range(ticks))
        assert cumulative_factor(fuel, first, start_tod, ticks) == pytest.approx(brute, rel=1e-9)
    # A year of consumption averages one mean half-hour per tick.
    assert cumulative_factor(fuel, first, start_tod, 17532) == pytest.approx(17532, rel=0.01)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"hubs": 0}, "hubs"), ({"hubs": -5}, "hubs"), ({"hubs": 10**12}, "hubs"), ({"hubs": 2.5}, "hubs"),
     ({"hubs": 10, "seed": -1}, "seed"), ({"hubs": 10, "block_size": 1000}, "block_size"),
     ({"hubs": 10, "start": datetime(2026, 1, 1, 0, 10, tzinfo=UTC)}, "start"),
     ({"hubs": 10, "start": datetime(2026, 1, 1)}, "start")],
)
def test_config_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(TwinInputError) as e:
        FleetConfig(**kwargs)
    assert e.value.field == field


def test_regions_parse_and_reject_unknown():
    assert parse_regions("south,North") == (Csp.NORTH, Csp.SOUTH)
    with pytest.raises(TwinInputError, match="Atlantis"):
        parse_regions("North,Atlantis")
    with pytest.raises(TwinInputError):
        parse_regions("North,north")


def test_config_round_trips_through_a_dict():
    cfg = FleetConfig(hubs=123, seed=9, regions=(Csp.SOUTH,))
    assert FleetConfig.from_dict(cfg.to_dict()) == cfg


def test_aggregates_add_up_and_agree_with_the_tick_summary(small_config):
    f = LocalFleet(small_config)
    s = f.run(5)[-1]
    st = f.states[0]
    up = NetworkPlan().up_by_area(f.tick - 1)
    counts = aggregate_counts(st, up, ["region", "reachability"])
    rows = label_counts(["region", "reachability"], counts)
    assert sum(r["hubs"] for r in rows) == small_config.hubs
    gas = int(((st.cols["flags"][: st.n_hubs] & 1) != 0).sum())
    assert sum(r["meters"] for r in rows) == small_config.hubs + gas
    # The tick summary counts working meters: a GSME with a dead battery drops out of it.
    assert int(s.meters.sum()) <= small_config.hubs + gas
    reachable = {r["region"]: r["hubs"] for r in rows if r["reachability"] == "reachable"}
    assert [reachable[n] for n in ("North", "Central", "South")] == s.reachable_hubs.tolist()
    fw = label_counts(["esme_firmware"], aggregate_counts(st, up, ["esme_firmware"]))
    assert sum(r["hubs"] for r in fw) == small_config.hubs
    assert all(r["esme_firmware"] != "none" for r in fw)
    with pytest.raises(ValueError, match="unknown group key"):
        aggregate_counts(st, up, ["colour"])


def test_hub_record_describes_devices_and_registers_that_grow(small_config):
    f = LocalFleet(small_config)
    st = f.states[0]
    up = NetworkPlan().up_by_area(0)
    r0 = hub_record(st, small_config, up, 42, -1)
    f.run(48)
    r1 = hub_record(st, small_config, up, 42, f.tick - 1)
    assert r0["device_id"] == eui64(42, small_config.seed)
    assert r0["meters"][0]["type"] == "ESME"
    assert r1["registers"]["elec_import_kwh"] > r0["registers"]["elec_import_kwh"]
    day_kwh = r1["registers"]["elec_import_kwh"] - r0["registers"]["elec_import_kwh"]
    annual = int(st.cols["elec_kwh_year"][42])
    assert 0.5 * annual / 365 < day_kwh < 2.0 * annual / 365
    with pytest.raises(KeyError):
        hub_record(st, small_config, up, small_config.hubs + 5, 0)
    assert np.isfinite(r1["registers"]["elec_import_kwh"])
