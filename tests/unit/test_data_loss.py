"""The meter log holds 13 months (a parameter): a hub dark for longer starts losing half-hourly data."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.conftest import quiet_params
from twin.model.catalog import Fault, Flag, Smets
from twin.model.config import FleetConfig
from twin.model.errors import TwinInputError
from twin.model.fleet import LocalFleet
from twin.model.kernel import slot_bounds
from twin.model.params import DAYS_PER_MONTH, HALF_HOURS_PER_DAY, FleetShares, ModelParams

# A 3-day log runs the same kernel logic as the real 13-month one in 5 days of ticks
# instead of 13 months (the default's value is checked on its own, below).
LOG_DAYS = 3
LOG_TICKS = LOG_DAYS * HALF_HOURS_PER_DAY


def test_the_meter_log_holds_13_months_by_default_and_only_whole_positive_days():
    assert FleetShares().meter_log_days == 396 == round(13 * DAYS_PER_MONTH)
    assert ModelParams.from_dict({"shares": {"meter_log_days": 10}}).shares.meter_log_days == 10
    for bad in (0, -1, 10.5, True, "396"):
        with pytest.raises(TwinInputError) as e:
            ModelParams.from_dict({"shares": {"meter_log_days": bad}})
        assert e.value.field == "params.shares.meter_log_days"
    # A config with a short log round-trips through its dict (manifests, checkpoints).
    cfg = FleetConfig(hubs=64, params=ModelParams.from_dict({"shares": {"meter_log_days": 10}}))
    assert FleetConfig.from_dict(cfg.to_dict()) == cfg


def test_a_hub_dark_for_its_log_length_and_a_day_loses_data_and_reachable_hubs_never_do():
    params = quiet_params()
    # No premises without WAN, so the one hub we darken is the only one that can lose data.
    params = replace(params, shares=replace(params.shares, north_no_wan=0.0, cs_no_wan=0.0,
                                            meter_log_days=LOG_DAYS))
    cfg = FleetConfig(hubs=2_048, seed=5, block_size=1024, params=params)
    f = LocalFleet(cfg)
    st = f.states[0]
    c = st.cols
    n = st.n_hubs
    assert (c["fault"][:n] == 0).all()
    candidates = np.flatnonzero(c["smets"][:n] == Smets.SMETS2)
    hub = int(candidates[100])
    meters = 1 + int((c["flags"][hub] & Flag.HAS_GAS) != 0)
    st.change(np.array([hub]), fault_set=Fault.HARDWARE)  # dark from tick 0, never repaired

    # Just under the log's length: nothing lost anywhere.
    lost = sum(s.hh_lost for s in f.run((LOG_DAYS - 1) * HALF_HOURS_PER_DAY))
    assert lost == 0
    assert c["lost_days"][hub] == 0

    # Through the log's length and a day (and a bit): the dark hub has lost exactly the periods that
    # rolled off its log, counted at its read slot each day.
    lost += sum(s.hh_lost for s in f.run(3 * HALF_HOURS_PER_DAY))
    slot = int(np.searchsorted(slot_bounds(cfg), hub % cfg.block_size, side="right") - 1)
    gaps = [d * HALF_HOURS_PER_DAY + slot for d in range(LOG_DAYS - 1, LOG_DAYS + 2)]
    periods = sum(min(max(g - LOG_TICKS, 0), HALF_HOURS_PER_DAY) for g in gaps)
    assert periods >= HALF_HOURS_PER_DAY
    assert lost == periods * meters
    assert c["lost_days"][hub] == sum(1 for g in gaps if g > LOG_TICKS)
    others = np.arange(n) != hub
    assert (c["lost_days"][:n][others] == 0).all()
    # Reachable hubs on the DCC were read every day.
    dcc = c["smets"][:n] != Smets.SMETS1_NOT_ENROLLED
    assert (c["last_contact"][:n][others & dcc] >= f.tick - HALF_HOURS_PER_DAY).all()
    assert (c["last_contact"][:n][~dcc] == 0).all()


def test_a_hub_that_comes_back_sends_its_backlog():
    cfg = FleetConfig(hubs=1_024, seed=6, block_size=1024, params=quiet_params())
    f = LocalFleet(cfg)
    st = f.states[0]
    c = st.cols
    daily_esme = np.flatnonzero((c["smets"][: st.n_hubs] == Smets.SMETS2) & (c["fault"][: st.n_hubs] == 0)
                                & ((c["flags"][: st.n_hubs] & Flag.ESME_DAILY) != 0)
                                & ((c["flags"][: st.n_hubs] & Flag.HAS_GAS) == 0))
    hub = int(daily_esme[0])
    st.change(np.array([hub]), fault_set=Fault.HARDWARE)
    f.run(10 * HALF_HOURS_PER_DAY)
    st.change(np.array([hub]), fault_clear=Fault.HARDWARE)
    backlog = sum(int(s.messages[:, 7].sum()) for s in f.run(HALF_HOURS_PER_DAY))
    # Dark for ~10 days, one daily-read meter: about nine missed days come back as catch-up reads.
    assert 8 <= backlog <= 10
    assert c["last_contact"][hub] >= f.tick - HALF_HOURS_PER_DAY
