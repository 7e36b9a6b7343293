"""Checkpoints as versioned data: a header (format, version, named typed arrays) and the arrays,
with no pickled instances. Every operation kind's record round-trips (a restored run goes on
exactly as the one never stopped), a record of an unknown version is refused with a clear error,
and nothing in a checkpoint folder is a pickle."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.engine.checkpoint import (
    CheckpointStore,
    load_planner,
    parse_shard,
    planner_snapshot,
    read_verified,
    save_planner,
    shard_chunks,
    shard_packs,
    write_atomic,
)
from twin.engine.packs import CHUNK_BYTES, MAX_DELTAS, ColumnPacks
from twin.model.config import FleetConfig
from twin.model.fleet import LocalFleet
from twin.model.generator import generate
from twin.model.ops.registry import IMPLEMENTATIONS
from twin.model.ops.runtime import ShardOps
from twin.model.ops.snapshot import RECORD_TYPES, planner_chunks, planner_from_bytes
from twin.model.records import RecordFormatError, decode, encode, pack_bytes, peek, unpack
from twin.model.state import HubState


def _state() -> tuple[HubState, FleetConfig]:
    cfg = FleetConfig(hubs=5_000, seed=4, block_size=1024)
    hs = generate(cfg, 1, 3)
    hs.last_tick = 17
    hs.inc_hub = np.array([1030, 2050], np.int64)
    hs.inc_bit = np.array([1, 4], np.uint8)
    hs.inc_end_s = np.array([99, 120], np.int64)
    return hs, cfg


def test_a_shard_checkpoint_round_trips_through_its_column_packs(tmp_path):
    hs, cfg = _state()
    chunks = shard_chunks(hs, ShardOps(cfg), ColumnPacks(tmp_path, 0))
    # The manifest holds no hub column: those are in the packs.
    assert not any(isinstance(c, memoryview) and c.obj is hs.cols["supplier"] for c in chunks)
    digest = write_atomic(tmp_path / "s.ckpt", chunks)
    payload = read_verified(tmp_path / "s.ckpt")
    assert payload is not None and len(digest) == 64
    back, ops = parse_shard(payload, cfg, ColumnPacks(tmp_path, 0))
    assert back.block_digests() == hs.block_digests() and back.last_tick == 17
    assert back.inc_hub.tolist() == [1030, 2050] and back.slot_dark_age.shape == hs.slot_dark_age.shape
    assert isinstance(ops, ShardOps) and ops.config is cfg and ops.ops == {}


def _write(tmp_path, packs: ColumnPacks, hs: HubState, cfg: FleetConfig, name: str) -> bytes:
    write_atomic(tmp_path / name, shard_chunks(hs, ShardOps(cfg), packs))
    payload = read_verified(tmp_path / name)
    assert payload is not None
    return payload


def test_a_checkpoint_writes_only_the_chunks_that_changed(tmp_path):
    cfg = FleetConfig(hubs=600_000, seed=4)
    hs = generate(cfg, 0, cfg.n_blocks)
    packs = ColumnPacks(tmp_path, 0)
    first = _write(tmp_path, packs, hs, cfg, "a.ckpt")
    n_first = len(list(packs.dir.glob("*.pack")))
    assert n_first == len(hs.cols)  # one pack per column at first
    # One hub's fault and a stretch of last_contact change; nothing else does.
    hs.last_tick += 48
    hs.cols["fault"][123] ^= 1
    hs.cols["last_contact"][: CHUNK_BYTES // 4 + 1] = 99  # the first chunk whole and one value of the second
    second = _write(tmp_path, packs, hs, cfg, "b.ckpt")
    new = sorted(p.name.split("-")[0] for p in packs.dir.glob("*.pack") if f"-{hs.last_tick:09d}-" in p.name)
    assert new == ["col_fault", "col_last_contact"]
    meta_b, _ = unpack(second, "twin.shard-checkpoint", (2,))
    lc = meta_b["columns"]["col_last_contact"]["chunks"]
    assert [ref[0].startswith(f"col_last_contact-{hs.last_tick:09d}") for ref in lc][:3] == [True, True, False]
    # Each checkpoint reads back as it was written, from a fresh reader.
    back_b, _ = parse_shard(second, cfg, ColumnPacks(tmp_path, 0))
    assert back_b.block_digests() == hs.block_digests()
    back_a, _ = parse_shard(first, cfg, ColumnPacks(tmp_path, 0))
    assert back_a.cols["fault"][123] == hs.cols["fault"][123] ^ 1 and back_a.cols["last_contact"][0] != 99


def test_changed_chunks_are_written_as_deltas_in_chains_of_bounded_length(tmp_path):
    cfg = FleetConfig(hubs=300_000, seed=4)
    hs = generate(cfg, 0, cfg.n_blocks)
    packs = ColumnPacks(tmp_path, 0)
    rng = np.random.default_rng(1)
    payloads, expected = [], []
    for k in range(MAX_DELTAS + 4):
        hs.last_tick = 48 * k + 47
        hs.cols["credit_p"][rng.integers(0, hs.n_hubs, 50)] += 7  # a few hubs change each day
        payloads.append(_write(tmp_path, packs, hs, cfg, f"{k}.ckpt"))
        expected.append(hs.cols["credit_p"].copy())
    depths = []
    for payload, want in zip(payloads, expected, strict=True):
        meta, _ = unpack(payload, "twin.shard-checkpoint", (2,))
        ref = meta["columns"]["col_credit_p"]["chunks"][0]
        depth = 1
        while len(ref) == 4:
            ref, depth = ref[3], depth + 1
        depths.append(depth)
        back, _ = parse_shard(payload, cfg, ColumnPacks(tmp_path, 0))
        assert np.array_equal(back.cols["credit_p"], want)
    # Whole at first, then one delta more each day until the chain is full, then whole again.
    assert depths == [*range(1, MAX_DELTAS + 2), 1, 2, 3]
    # A delta of 50 changed hubs costs far less than the column's whole chunk.
    sizes = {p.name.split("-")[1]: p.stat().st_size for p in packs.dir.glob("col_credit_p-*.pack")}
    assert sizes[f"{48 + 47:09d}"] * 20 < sizes[f"{47:09d}"]


def test_a_checkpoint_with_a_missing_or_corrupt_pack_is_not_used(tmp_path):
    hs, cfg = _state()
    packs = ColumnPacks(tmp_path, 0)
    payload = _write(tmp_path, packs, hs, cfg, "s.ckpt")
    victim = sorted(packs.dir.glob("col_supplier-*.pack"))[0]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert parse_shard(payload, cfg, ColumnPacks(tmp_path, 0)) is None
    victim.unlink()
    assert parse_shard(payload, cfg, ColumnPacks(tmp_path, 0)) is None


def test_pruning_deletes_the_packs_no_kept_checkpoint_names(tmp_path):
    cfg = FleetConfig(hubs=5_000, seed=4, block_size=1024)
    f = LocalFleet(cfg)
    store = CheckpointStore(tmp_path)
    packs = ColumnPacks(store.root, 0)
    for tick in range(0, 48 * 8, 48):
        f.run(48)
        hs, ops = f.states[0], f.ops[0]
        assert hs.last_tick == tick + 47
        write_atomic(store.shard_path(hs.last_tick, 0), shard_chunks(hs, ops, packs))
        store.mark_complete(hs.last_tick, 1, {})
        store.prune(keep=2, now=hs.last_tick + 1, every=48)
    kept = store.marked_ticks()
    assert kept == store.complete_ticks() and len(kept) < 8
    used = set().union(*(shard_packs(read_verified(store.shard_path(t, 0))) for t in kept))
    assert {p.name for p in packs.dir.glob("*.pack")} == used
    # The oldest kept checkpoint still reads whole after its neighbours' packs went.
    back, _ = parse_shard(read_verified(store.shard_path(kept[-1], 0)), cfg, ColumnPacks(store.root, 0))
    assert back.last_tick == kept[-1]


# One event of every kind, timed so that most are in flight at the snapshot (tick 14).
EVENTS = [
    {"type": "firmware_rollout", "device": "ESME", "manufacturer": "EDMI", "model": "ES-10A",
     "target_version": "5.3.0", "waves": [0.05, 1.0], "min_wave_sample": 5, "at": "1h"},
    {"type": "supplier_switch", "hub": 17, "to_supplier": "OVO Energy", "fuel": "electricity", "at": "6h30m"},
    {"type": "churn_campaign", "switches_per_month": 200_000, "days": 4},
    {"type": "supplier_failure", "supplier": "E.ON Next", "solr": "British Gas", "daily_cap": 300, "at": "2h"},
    {"type": "swap_programme", "region": "Central", "installs_per_day": 100, "prioritise": "3G"},
    {"type": "vwan_fallback", "region": "Central", "onboard_per_day": 80},
    {"type": "network_switch_off", "region": "Central", "technology": "3G", "at": "3h"},
    {"type": "power_outage", "area": 12, "fraction": 0.5, "duration_min": 300, "at": "5h"},
    {"type": "base_station_failure", "cells": [3, 4, 5], "duration_min": 600, "at": "4h"},
    {"type": "csp_incident", "region": "South", "duration_min": 600, "at": "6h"},
    {"type": "service_request", "srv": "7.2", "hub": 4100, "user_id": "u", "request_id": "r", "at": "6h30m"},
    {"type": "mhhs_migration", "share": 0.5, "waves": 4, "spacing_days": 0.25, "at": "2h"},
    {"type": "on_demand_reads", "duration_min": 600, "interval_min": 60, "share": 0.2, "at": "3h"},
]


def _restored(f: LocalFleet, root) -> LocalFleet:
    """A fleet rebuilt from `f`'s checkpoint records only (states, shard operations, planner)."""
    g = copy.copy(f)
    parts = []
    for i, (hs, ops) in enumerate(zip(f.states, f.ops, strict=True)):
        parts.append(parse_shard(b"".join(shard_chunks(hs, ops, ColumnPacks(root, i))), f.config, ColumnPacks(root, i)))
    g.states = [p[0] for p in parts]
    g.ops = [p[1] for p in parts]
    controls = {t: list(c) for t, c in f.planner.pending.items()}
    g.planner, applied, back = planner_from_bytes(b"".join(planner_chunks(f.planner, (3, 1), controls)), f.config)
    assert applied == (3, 1) and back.keys() == controls.keys()
    return g


def test_every_operation_kind_round_trips_and_the_run_goes_on_identically(tmp_path):
    cfg = FleetConfig(hubs=12_000, seed=11, block_size=1024)
    f = LocalFleet(cfg, splits=2)
    for e in EVENTS:
        f.submit(e)
    f.run(14)
    kinds = {op.cmd.kind for op in f.planner.ops.values()}
    assert kinds == set(IMPLEMENTATIONS)  # every kind is in the snapshot
    shard_kinds = {type(op).__name__ for ops in f.ops for op in ops.ops.values()}
    assert {"RolloutShard", "ChurnShard", "SolrShard", "SwapShard", "VwanShard", "MhhsShard",
            "ReadsShard"} <= shard_kinds
    g = _restored(f, tmp_path)
    assert g.state_hash() == f.state_hash()
    # An operation the planner holds in two places is one object again.
    assert all(g.planner.live[n] is g.planner.ops[n] for n in g.planner.live) and g.planner.live
    assert [vars(op).keys() for op in g.planner.ops.values()] == [vars(op).keys() for op in f.planner.ops.values()]
    for a, b in zip(f.run(40), g.run(40), strict=True):
        assert a.messages.tolist() == b.messages.tolist() and a.ops.keys() == b.ops.keys()
    assert g.state_hash() == f.state_hash()
    assert ({n: (op.state, op.reason, op.counters) for n, op in g.planner.ops.items()}
            == {n: (op.state, op.reason, op.counters) for n, op in f.planner.ops.items()})


def test_a_record_of_a_future_version_is_refused_with_a_clear_error(tmp_path):
    hs, cfg = _state()
    meta, arrays = hs.record()
    future = pack_bytes("twin.shard-checkpoint", 99, {"state": meta, "ops": {}}, [])
    with pytest.raises(RecordFormatError, match=r"version 99; this twin reads version 2 only"):
        parse_shard(future, cfg, ColumnPacks(tmp_path, 0))
    with pytest.raises(RecordFormatError, match=r"'twin.hub-state' record of version 2"):
        HubState.from_bytes(pack_bytes("twin.hub-state", 2, meta, arrays))
    write_atomic(tmp_path / "planner.rec", pack_bytes("twin.planner", 99, {}, []))
    with pytest.raises(RecordFormatError, match="version 99"):
        load_planner(tmp_path / "planner.rec", cfg)
    # A pickle from before this format is not read at all.
    with pytest.raises(RecordFormatError, match="not a twin record"):
        parse_shard(pickle.dumps({"state": b"", "ops": None}), cfg, ColumnPacks(tmp_path, 0))


def test_nothing_in_a_checkpoint_folder_is_a_pickle(tmp_path):
    cfg = FleetConfig(hubs=6_000, seed=3, block_size=1024)
    f = LocalFleet(cfg, splits=2)
    for e in EVENTS[:4]:
        f.submit(e)
    f.run(6)
    store = CheckpointStore(tmp_path)
    for i, (hs, ops) in enumerate(zip(f.states, f.ops, strict=True)):
        write_atomic(store.shard_path(5, i), shard_chunks(hs, ops, ColumnPacks(store.root, i)))
    save_planner(store.planner_path(5), planner_snapshot(f.planner, (1, 0), f.planner.pending))
    store.mark_complete(5, 2, {})
    files = sorted(p for p in store.tick_dir(5).iterdir())
    packs = sorted(store.root.glob("packs/shard-*/*.pack"))
    assert len(packs) == 2 * len(f.states[0].cols)
    assert [p.name for p in files] == ["COMPLETE", "planner.rec", "shard-0000.ckpt", "shard-0001.ckpt"]
    for p in files + packs:
        data = p.read_bytes()
        # Pickle protocols 2-5 open with PROTO (0x80) and the protocol number; their opcodes for
        # a class reference (GLOBAL, STACK_GLOBAL) name a module. None of that may appear.
        assert not any(data.find(bytes([0x80, proto])) != -1 and b"twin.model" in data for proto in range(2, 6))
        assert b"twin.model" not in data and b"__main__" not in data
        payload = read_verified(p)
        assert payload is not None
        if p.name != "COMPLETE" and p.suffix != ".pack":
            header, _ = peek(payload)
            versions = {"twin.shard-checkpoint": 2, "twin.planner": 3}
            assert header["format"] in versions and header["version"] == versions[header["format"]]


_leaf = (st.none() | st.booleans() | st.integers(-(2**62), 2**62) | st.floats(allow_nan=False) | st.text()
         | st.floats(allow_nan=False).map(np.float64) | st.integers(-(2**62), 2**62).map(np.int64)
         | st.booleans().map(np.bool_)
         | st.builds(lambda xs: np.array(xs, np.int32), st.lists(st.integers(-(2**31), 2**31 - 1), max_size=5)))
_value = st.recursive(_leaf, lambda inner: (
    st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(), inner, max_size=4) | st.dictionaries(st.integers(), inner, max_size=4)
    | st.sets(st.integers(), max_size=4)), max_leaves=12)


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.tolist() == b.tolist()
    if isinstance(a, dict):
        return (type(b) is dict and list(a) == list(b)
                and all(_same(a[k], b[k]) for k in a))
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@settings(max_examples=150, deadline=None)
@given(_value)
def test_any_recordable_value_round_trips_through_the_container(value):
    encoded, arrays = encode({"v": value}, RECORD_TYPES)
    meta, back_arrays = unpack(pack_bytes("t", 1, {"x": encoded}, arrays.items()), "t", (1,))
    assert _same(decode(meta["x"], back_arrays, RECORD_TYPES, {})["v"], value)


def test_a_value_of_no_record_type_is_refused_when_written():
    class Helper:  # an operation's new helper class, not yet in RECORD_TYPES
        pass

    with pytest.raises(TypeError, match="Helper is not a record type; add it to the RecordTypes table"):
        encode({"x": Helper()}, RECORD_TYPES)
    with pytest.raises(RecordFormatError, match="unknown record type 'Helper'"):
        decode({"$o": "Helper", "id": 0, "f": {}}, {}, RECORD_TYPES, {})
