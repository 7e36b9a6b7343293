from __future__ import annotations

import numpy as np

from twin.model.config import FleetConfig
from twin.model.generator import generate
from twin.model.state import BYTES_PER_HUB, COLUMNS, HubState


def test_layout_fits_the_64_byte_budget_with_meters_included():
    assert sum(np.dtype(c.dtype).itemsize for c in COLUMNS) == BYTES_PER_HUB
    assert BYTES_PER_HUB <= 64
    names = [c.name for c in COLUMNS]
    assert len(names) == len(set(names))
    # Meters live in the hub row: electricity and gas devices and registers are columns.
    assert {"esme_model", "gsme_model", "elec_reg0", "gas_reg0", "gsme_battery"} <= set(names)


def test_generated_state_uses_the_layout_bytes_per_hub():
    cfg = FleetConfig(hubs=50_000, seed=2, block_size=1024)
    st = generate(cfg)
    # Padding of the last block is the only overhead.
    assert st.nbytes == st.n_rows * BYTES_PER_HUB
    assert st.n_rows - cfg.hubs < cfg.block_size


def test_bytes_round_trip_keeps_state_and_counters(small_config):
    from twin.model.fleet import LocalFleet

    f = LocalFleet(small_config)
    f.run(60)
    st = f.states[0]
    copy = HubState.from_bytes(st.to_bytes())
    assert copy.block_digests() == st.block_digests()
    for name in ("dcc_hubs", "ok_hubs", "ok_meters", "off_dcc_hubs", "meters", "dcc_fault"):
        np.testing.assert_array_equal(getattr(copy, name), getattr(st, name))
    assert copy.last_tick == st.last_tick


def test_incremental_counters_match_a_full_recount(small_config):
    from twin.model.fleet import LocalFleet

    f = LocalFleet(small_config)
    f.run(200)  # faults start and end, batteries die and get replaced
    st = f.states[0]
    before = [getattr(st, n).copy() for n in ("dcc_hubs", "ok_hubs", "ok_meters", "dcc_fault", "meters")]
    st.recount()
    after = [getattr(st, n) for n in ("dcc_hubs", "ok_hubs", "ok_meters", "dcc_fault", "meters")]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
