"""The MHHS migration event (twin.model.ops.mhhs): which ESMEs move and when, the settlement reads
they send, its controls, its validation and its determinism for any shard layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import quiet_params
from twin.model.catalog import AREA_CSP, N_CSP, Csp, MessageType, Smets, Status, supplier_code
from twin.model.config import FleetConfig, TwinInputError
from twin.model.fleet import LocalFleet
from twin.model.ops.base import LAG
from twin.model.ops.commands import MhhsMigration, command_from_dict, parse_command
from twin.model.ops.mhhs import wave_of
from twin.model.ops.progress import OperationState
from twin.model.params import HALF_HOURS_PER_DAY

DAY = HALF_HOURS_PER_DAY
SETTLE = MessageType.SETTLEMENT_READ


def quiet_fleet(hubs: int = 30_000, splits: int = 1, seed: int = 5) -> LocalFleet:
    return LocalFleet(FleetConfig(hubs=hubs, seed=seed, block_size=1024, params=quiet_params()), splits=splits)


def migrated_mask(f: LocalFleet) -> np.ndarray:
    return np.concatenate([(s.cols["status"][:s.n_hubs] & Status.HH_SETTLEMENT) != 0 for s in f.states])


def column(f: LocalFleet, name: str) -> np.ndarray:
    return np.concatenate([s.cols[name][:s.n_hubs] for s in f.states])


def reachable(f: LocalFleet) -> np.ndarray:
    up = f.network.up_by_area(f.tick - 1)
    area, wan = column(f, "area"), column(f, "wan")
    return (column(f, "smets") != Smets.SMETS1_NOT_ENROLLED) & (column(f, "fault") == 0) & up[area, wan]


def test_each_wave_moves_its_part_of_the_share_at_its_tick():
    f = quiet_fleet()
    eligible = int(((column(f, "area") != 0) & (column(f, "smets") != Smets.SMETS1_NOT_ENROLLED)).sum())
    op = f.submit({"type": "mhhs_migration", "share": 0.6, "waves": 3, "spacing_days": 0.5, "at": "1h"})
    moved = []
    for wave_tick in (2, 2 + DAY // 2, 2 + DAY):
        f.run(wave_tick + 1 - f.tick)  # through the wave's tick
        moved.append(int(migrated_mask(f).sum()))
        assert op.progress().migrated == moved[-1]
    assert op.wave_ticks == [2, 26, 50]
    p = op.progress()
    assert (p.waves, p.waves_done, p.targeted) == (3, 3, moved[-1])
    # The share of the ESMEs on the DCC, in three near-equal parts (binomial: sd ~0.3% of the fleet).
    assert abs(p.targeted / eligible - 0.6) < 0.02
    parts = np.diff([0, *moved])
    assert np.all(np.abs(parts / p.targeted - 1 / 3) < 0.03), parts
    f.run(1)
    assert op.state == OperationState.DONE and op.progress().next_wave_tick == -1


def test_a_migrated_esme_sends_one_settlement_read_a_day_from_its_read_slot():
    f = quiet_fleet()
    before = f.run(DAY)
    assert sum(int(s.messages[:, SETTLE].sum()) for s in before) == 0
    f.submit({"type": "mhhs_migration", "waves": 1})
    day = f.run(DAY)
    hh = migrated_mask(f) & reachable(f)
    csp = AREA_CSP[column(f, "area")]
    per_csp = np.bincount(csp[hh], minlength=N_CSP)[:N_CSP]
    got = np.sum([s.messages[:, SETTLE] for s in day], axis=0)
    np.testing.assert_array_equal(got, per_csp)
    # The same reads reach the link counts the network's queues serve.
    assert sum(int(s.link_messages[:, SETTLE].sum()) for s in day) == int(hh.sum())


def test_regions_and_suppliers_narrow_the_migration():
    f = quiet_fleet()
    f.submit({"type": "mhhs_migration", "waves": 1, "regions": ["North"], "suppliers": ["OVO Energy"]})
    day = f.run(DAY)
    hh = migrated_mask(f)
    assert hh.sum() > 100
    assert (AREA_CSP[column(f, "area")[hh]] == Csp.NORTH).all()
    assert (column(f, "supplier")[hh] == supplier_code("OVO Energy")).all()
    got = np.sum([s.messages[:, SETTLE] for s in day], axis=0)
    assert got[Csp.NORTH] > 0 and got[Csp.CENTRAL] == 0 and got[Csp.SOUTH] == 0


def _digest(summaries) -> str:
    return json.dumps([s.to_dict() for s in summaries], sort_keys=True, default=str)


def test_a_migration_is_the_same_for_one_and_three_shards():
    runs = []
    for splits in (1, 3):
        f = LocalFleet(FleetConfig(hubs=20_000, seed=9, block_size=1024), splits=splits)
        op = f.submit({"type": "mhhs_migration", "share": 0.7, "waves": 4, "spacing_days": 0.25, "at": "3h"})
        summaries = f.run(2 * DAY)
        runs.append((f.state_hash(), _digest(summaries), op.progress(), op.wave_ticks))
    assert runs[0] == runs[1]
    assert runs[0][2].migrated > 0


def test_pause_holds_the_next_wave_and_resume_sends_it_then_the_rest_keep_their_spacing():
    f = quiet_fleet()
    op = f.submit({"type": "mhhs_migration", "waves": 3, "spacing_days": 0.25})  # waves due at 0, 12, 24
    f.run(4)
    after_first = int(migrated_mask(f).sum())
    f.submit({"type": "operation_control", "operation": op.name, "action": "pause"})
    f.run(DAY)
    assert int(migrated_mask(f).sum()) == after_first and op.wave_ticks == [0]
    assert op.state == OperationState.PAUSED
    resumed_at = f.tick
    f.submit({"type": "operation_control", "operation": op.name, "action": "resume"})
    f.run(40)
    assert op.wave_ticks == [0, resumed_at + LAG, resumed_at + LAG + 12]
    assert op.state == OperationState.DONE and int(migrated_mask(f).sum()) == op.progress().targeted


def test_a_cancelled_migration_keeps_the_meters_it_moved_and_moves_no_more():
    f = quiet_fleet()
    op = f.submit({"type": "mhhs_migration", "waves": 3, "spacing_days": 0.25})
    f.run(14)  # waves 0 and 1 applied (ticks 0 and 12); wave 2 already sent for tick 24
    f.submit({"type": "operation_control", "operation": op.name, "action": "cancel"})
    f.run(30)
    assert op.state == OperationState.CANCELLED
    assert op.wave_ticks == [0, 12]
    p = op.progress()
    assert p.waves_done == 2 and 0 < p.migrated < p.targeted
    assert int(migrated_mask(f).sum()) == p.migrated


def test_a_command_reads_back_from_its_journal_form():
    cfg = FleetConfig(hubs=2_000, seed=1)
    cmd = parse_command({"type": "mhhs_migration", "share": 0.25, "waves": 5, "spacing_days": 3,
                         "regions": ["South", "North"], "suppliers": "OVO Energy, Octopus Energy", "at": "2d"},
                        cfg, now_tick=0)
    assert cmd == MhhsMigration(at=96, share=0.25, waves=5, spacing_days=3.0, regions=(0, 2),
                                suppliers=tuple(sorted((supplier_code("OVO Energy"), supplier_code("Octopus Energy")))))
    assert command_from_dict(json.loads(json.dumps(cmd.to_dict()))) == cmd
    # Defaults: the real programme, nine sprints about 19 months in all, every ESME on the DCC.
    d = parse_command({"type": "mhhs_migration"}, cfg, now_tick=0)
    assert (d.share, d.waves, d.spacing_days, d.regions, d.suppliers) == (1.0, 9, 72.0, (), ())


@pytest.mark.parametrize(("fields", "name"), [
    ({"share": 0}, "share"), ({"share": 1.5}, "share"), ({"share": "half"}, "share"), ({"share": True}, "share"),
    ({"waves": 0}, "waves"), ({"waves": 2.5}, "waves"), ({"waves": 10_000}, "waves"),
    ({"spacing_days": 0.01}, "spacing_days"), ({"spacing_days": -1}, "spacing_days"),
    ({"regions": ["Mars"]}, "regions"), ({"regions": ["Nörth"]}, "regions"), ({"regions": 7}, "regions"),
    ({"suppliers": ["Nobody Energy"]}, "suppliers"), ({"suppliers": ["Ovo\u202eEnergy"]}, "suppliers"),
    ({"sprints": 9}, "sprints"), ({"at": "yesterday"}, "at"),
])
def test_bad_fields_are_refused_naming_the_field(fields, name):
    cfg = FleetConfig(hubs=2_000, seed=1)
    with pytest.raises(TwinInputError) as e:
        parse_command({"type": "mhhs_migration", **fields}, cfg, now_tick=0)
    assert e.value.field == name


@settings(max_examples=200, deadline=None)
@given(share=st.floats(min_value=1e-6, max_value=1.0), waves=st.integers(min_value=1, max_value=60),
       u=st.lists(st.floats(min_value=0.0, max_value=1.0, exclude_max=True), min_size=1, max_size=50))
def test_waves_are_equal_slices_of_the_migrated_share_in_key_order(share, waves, u):
    keys = np.sort(np.asarray(u) * share)  # keys of the migrated ESMEs: below `share`
    keys = keys[keys < share]
    w = wave_of(keys, share, waves)
    assert ((w >= 0) & (w < waves)).all()
    assert (np.diff(w) >= 0).all()  # a lower key never migrates later
    # Wave k holds exactly the keys in [k, k + 1) x share / waves (up to rounding at an edge).
    lo, hi = w * share / waves, (w + 1) * share / waves
    assert ((keys >= lo - 1e-12) & ((keys < hi + 1e-12) | (w == waves - 1))).all()
