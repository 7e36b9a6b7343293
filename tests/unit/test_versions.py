"""Versions compare as versions (issue 17, part 6): each model's firmware versions follow a
documented scheme (catalog.VersionScheme), are ordered by it and never as text, a version that
does not parse is refused naming its field, and a rollout that would downgrade a device it selects
is refused unless allow_downgrade."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.version import Version

from dashboard.reference import Reference
from tests.conftest import quiet_params
from twin.model.catalog import (
    DEVICE_MODELS,
    DOTTED,
    SMETS1_METER,
    DeviceType,
    VersionTable,
    model_code,
    models_of,
)
from twin.model.config import FleetConfig, TwinInputError
from twin.model.fleet import LocalFleet
from twin.model.ops.commands import parse_command
from twin.model.ops.runtime import FleetPlanner
from twin.model.ops.validation import validate
from twin.model.params import HALF_HOURS_PER_DAY, EventParams
from twin.model.query import label_counts
from twin.services.catalog import fleet_catalog

HONEYWELL = {"type": "firmware_rollout", "device": "ESME", "manufacturer": "Honeywell", "model": "AS302P",
             "waves": [1.0], "concurrency_per_csp": 50_000, "failure_prob": 0.0, "brick_prob": 0.0}
AS302P = model_code(DeviceType.ESME, "Honeywell", "AS302P")


@cache
def _fleet() -> LocalFleet:
    params = replace(quiet_params(), events=replace(EventParams(), transfer_failure=0.0))
    return LocalFleet(FleetConfig(hubs=20_000, seed=5, block_size=1024, params=params))


def _fresh() -> LocalFleet:
    params = replace(quiet_params(), events=replace(EventParams(), transfer_failure=0.0))
    return LocalFleet(FleetConfig(hubs=20_000, seed=5, block_size=1024, params=params))


def _check(f: LocalFleet, **kw) -> None:
    """Parse and validate a Honeywell AS302P rollout against the fleet as it is, accepting nothing."""
    cmd = parse_command({**HONEYWELL, **kw}, f.config, now_tick=f.tick)
    validate(cmd, FleetPlanner(f.config), census=f.census)


def _held(f: LocalFleet) -> dict[str, int]:
    """What the AS302P meters run, read from the state columns."""
    st_ = f.states[0]
    n = st_.n_hubs
    fw = st_.cols["esme_fw"][:n][st_.cols["esme_model"][:n] == AS302P]
    labels = f.ops[0].versions
    return {labels.label(int(DeviceType.ESME), AS302P, i): int(k) for i, k in enumerate(np.bincount(fw)) if k}


def test_the_fleet_of_the_issue_runs_1_12_1_14_and_1_15():
    assert set(_held(_fleet())) == {"1.12", "1.14", "1.15"}


def test_the_issue_example_1_9_is_a_downgrade_naming_the_field():
    with pytest.raises(TwinInputError) as e:
        _check(_fleet(), target_version="1.9")
    assert e.value.field == "target_version"
    assert "1.9 is below 1.12, 1.14, 1.15" in e.value.reason and "downgrade" in e.value.reason


def test_the_issue_example_1_13_over_the_whole_model_downgrades_the_1_14_and_1_15_meters():
    # The documented rule: a target below any selected device's version is a downgrade.
    with pytest.raises(TwinInputError) as e:
        _check(_fleet(), target_version="1.13")
    assert e.value.field == "target_version" and "1.13 is below 1.14, 1.15" in e.value.reason
    assert "from_versions to 1.12" in e.value.reason  # how to upgrade only the older meters


def test_the_issue_example_1_12_is_refused_without_allow_downgrade_and_accepted_with_it():
    with pytest.raises(TwinInputError) as e:
        _check(_fleet(), target_version="1.12")
    assert e.value.field == "target_version" and "1.12 is below 1.14, 1.15" in e.value.reason
    _check(_fleet(), target_version="1.12", allow_downgrade=True)


def test_1_13_from_1_12_upgrades_exactly_the_1_12_meters():
    f = _fresh()
    before = _held(f)
    op = f.submit({**HONEYWELL, "target_version": "1.13", "from_versions": ["1.12"], "max_days": 1})
    f.run(3 * HALF_HOURS_PER_DAY)
    assert op.state == "DONE", op.reason
    after = _held(f)
    assert op.counters["targeted"] == before["1.12"]
    assert after == {"1.12": before["1.12"] - op.counters["activated"], "1.13": op.counters["activated"],
                     "1.14": before["1.14"], "1.15": before["1.15"]}
    assert op.counters["activated"] > 0.9 * before["1.12"]  # all but the few without WAN at the close
    # and 1.13 now sorts between 1.12 and 1.14 wherever versions are listed
    table = f.planner.versions
    order = sorted(range(len(table.versions(int(DeviceType.ESME), AS302P))),
                   key=lambda i: table.sort_key(int(DeviceType.ESME), AS302P, i))
    assert [table.label(int(DeviceType.ESME), AS302P, i) for i in order] == ["1.12", "1.13", "1.14", "1.15"]


def test_a_target_equal_to_the_current_version_leaves_those_devices_alone():
    f = _fleet()
    # 1.15 over the whole model: the 1.15 meters have nothing to do, the others upgrade.
    cmd = parse_command({**HONEYWELL, "target_version": "1.15.0"}, f.config, now_tick=0)
    assert cmd.target_version == "1.15"  # the catalogue's spelling of the same version
    validate(cmd, FleetPlanner(f.config), census=f.census)
    # One meter already on its target: nothing to do, refused naming the field.
    st_ = f.states[0]
    hub = int(np.flatnonzero((st_.cols["esme_model"] == AS302P) & (st_.cols["esme_fw"] == 2))[0])
    with pytest.raises(TwinInputError) as e:
        _check(f, target_version="1.15", hubs=[hub])
    assert e.value.field == "target_version" and "already runs 1.15" in e.value.reason


@pytest.mark.parametrize(("kw", "field"), [
    # (targets above 1.15, so only the text can be at fault, never a downgrade)
    ({"target_version": "1.x"}, "target_version"),
    ({"target_version": "v1.16"}, "target_version"),
    ({"target_version": "1.16-beta"}, "target_version"),
    ({"target_version": "1.16b1"}, "target_version"),  # PEP 440 would take it; the scheme does not
    ({"target_version": "1..16"}, "target_version"),
    ({"target_version": "1.16.0.0.0"}, "target_version"),
    ({"target_version": "\uff11.16"}, "target_version"),  # a full-width digit
    ({"target_version": "\u0661.16"}, "target_version"),  # an Arabic-Indic digit
    ({"target_version": "1.16\u00a0"}, "target_version"),
    ({"target_version": 1.16}, "target_version"),  # a YAML number: 1.10 would read as 1.1
    ({"target_version": ""}, "target_version"),
    ({"target_version": "1.16", "from_versions": ["1,12"]}, "from_versions"),
    ({"target_version": "1.16", "from_versions": ["1.12", "1.12.0"]}, "from_versions"),
    ({"target_version": "1.16", "from_versions": ["1.13"]}, "from_versions"),  # no device runs it
    ({"target_version": "1.16", "allow_downgrade": "no"}, "allow_downgrade"),
    ({"target_version": "1.12.0", "from_versions": ["1.12"]}, "target_version"),
])
def test_versions_that_cannot_be_parsed_or_used_are_refused_naming_the_field(kw, field):
    f = _fleet()
    with pytest.raises(TwinInputError) as e:
        _check(f, **kw)
    assert e.value.field == field, e.value
    assert "downgrade" not in e.value.reason
    _check(f, **{**kw, "target_version": "1.16", "from_versions": ["1.12"], "allow_downgrade": False})  # the rest is fine


def test_each_product_line_has_its_scheme():
    esme = models_of(DeviceType.ESME)
    smets1 = next(m for m in esme if m.label == "Elster AS 300P")
    assert smets1.scheme is SMETS1_METER and smets1.version_key("S1-2.10") > smets1.version_key("S1-2.9")
    with pytest.raises(ValueError, match="S1-"):
        smets1.version_key("2.3")
    l_g = next(m for m in models_of(DeviceType.CH) if m.label == "Landis & Gyr SMETS1 comms module")
    assert l_g.versions == ("S1.9", "S1.10")  # 10 after 9, which text order gets wrong
    assert l_g.version_key("S1.10") > l_g.version_key("S1.9")


def test_every_catalogue_version_parses_and_is_listed_oldest_first():
    # The generator's version shares (most devices on the newest) rely on this order.
    for m in DEVICE_MODELS:
        keys = [m.version_key(v) for v in m.versions]
        assert keys == sorted(keys) and len(set(keys)) == len(keys), m.label


def test_aggregate_rows_of_equal_size_are_in_version_order():
    vt = VersionTable()
    for v in ("1.9", "1.100"):
        vt.index(int(DeviceType.ESME), AS302P, v, add=True)
    idx = {v: vt.index(int(DeviceType.ESME), AS302P, v) for v in ("1.12", "1.14", "1.15", "1.9", "1.100")}
    counts = {(AS302P * 256 + i,): [7, 7] for i in idx.values()}
    rows = label_counts(["esme_firmware"], counts, vt)
    assert [r["esme_firmware"] for r in rows] == [f"Honeywell AS302P {v}" for v in ("1.9", "1.12", "1.14", "1.15", "1.100")]


def test_the_dashboard_orders_a_model_s_versions_as_versions():
    """The API's catalog lists each model's versions in version order, those a rollout added
    (1.9, 2.10.0) among them; the dashboard draws them in that order, never as text."""
    vt = VersionTable()
    vt.index(int(DeviceType.ESME), AS302P, "1.9", add=True)
    vt.index(int(DeviceType.ESME), model_code(DeviceType.ESME, "Aclara", "SGM1412"), "2.10.0", add=True)
    ref = Reference.from_catalog(fleet_catalog(vt))
    labels = ["Honeywell AS302P 1.15", "Honeywell AS302P 1.9", "Aclara SGM1412B 2.6.0", "Honeywell AS302P 1.12",
              "Aclara SGM1412 2.10.0", "Aclara SGM1412 2.4.0"]
    assert sorted(labels, key=lambda v: ref.version_order("ESME", v)) == [
        "Aclara SGM1412 2.4.0", "Aclara SGM1412 2.10.0", "Aclara SGM1412B 2.6.0",
        "Honeywell AS302P 1.9", "Honeywell AS302P 1.12", "Honeywell AS302P 1.15"]
    assert ref.versions[("ESME", "Honeywell AS302P")] == ("1.9", "1.12", "1.14", "1.15")
    # A version added after the catalog was fetched: after the model's known ones, and the feed
    # knows to fetch the catalog again.
    stale = Reference.from_catalog(fleet_catalog(VersionTable()))
    assert not stale.knows_version("ESME", "Honeywell AS302P 1.9") and stale.knows_version("ESME", "Honeywell AS302P 1.12")
    assert sorted(labels[:2] + labels[3:4], key=lambda v: stale.version_order("ESME", v)) == [
        "Honeywell AS302P 1.12", "Honeywell AS302P 1.15", "Honeywell AS302P 1.9"]


def test_planner_and_shards_number_versions_alike_whatever_order_rollouts_start_in():
    f = _fresh()
    f.submit({**HONEYWELL, "target_version": "1.20", "from_versions": ["1.14"], "at": 6})
    f.submit({**HONEYWELL, "target_version": "1.16", "from_versions": ["1.12"], "at": 2})  # accepted second, starts first
    f.run(8)
    esme = int(DeviceType.ESME)
    assert f.planner.versions.versions(esme, AS302P) == f.ops[0].versions.versions(esme, AS302P)
    assert f.planner.versions.versions(esme, AS302P)[3:] == ("1.16", "1.20")


_PART = st.integers(min_value=0, max_value=30)
_DOTTED_V = st.lists(_PART, min_size=1, max_size=4)


def _text(parts: list[int]) -> str:
    return ".".join(map(str, parts))


def _oracle(parts: list[int]) -> tuple[int, ...]:
    """Version order, independently: numbers compared left to right, trailing zeros ignored."""
    out = list(parts)
    while len(out) > 1 and out[-1] == 0:
        out.pop()
    return tuple(out)


@settings(max_examples=300, deadline=None)
@given(a=_DOTTED_V, b=_DOTTED_V, c=_DOTTED_V)
def test_the_comparison_is_a_total_order_consistent_with_the_parser(a, b, c):
    ka, kb, kc = (DOTTED.sort_key(_text(x)) for x in (a, b, c))
    assert (ka < kb) == (_oracle(a) < _oracle(b)) and (ka == kb) == (_oracle(a) == _oracle(b))
    assert (ka < kb) == (Version(_text(a)) < Version(_text(b)))
    assert sum((ka < kb, ka == kb, ka > kb)) == 1  # exactly one holds
    if ka <= kb and kb <= kc:
        assert ka <= kc
    # anything that is not a version of the scheme sorts after every version, by text
    assert DOTTED.sort_key(_text(a)) < DOTTED.sort_key("x" + _text(b))


@settings(max_examples=120, deadline=None)
@given(target=st.lists(st.integers(0, 2), min_size=1, max_size=1).flatmap(
           lambda m: st.tuples(st.just(m[0]), st.integers(0, 20), st.sampled_from([None, 0, 1]))),
       subset=st.sets(st.sampled_from(["1.12", "1.14", "1.15"]), max_size=3),
       allow=st.booleans())
def test_a_random_target_is_refused_iff_below_a_selected_device_s_version(target, subset, allow):
    major, minor, patch = target
    text = f"{major}.{minor}" + ("" if patch is None else f".{patch}")
    t = _oracle([major, minor] + ([] if patch is None else [patch]))
    f = _fleet()
    held = {v for v in _held(f) if not subset or v in subset}  # what the selected meters run
    others = {v for v in held if _oracle([int(x) for x in v.split(".")]) != t}
    downgrade = any(_oracle([int(x) for x in v.split(".")]) > t for v in others)
    kw = {"target_version": text, "from_versions": sorted(subset), "allow_downgrade": allow}
    if t in {_oracle([int(x) for x in v.split(".")]) for v in subset}:
        expected = "target_version"  # the target is one of the versions being replaced
    elif not others:
        expected = "target_version"  # every selected meter already runs it
    elif downgrade and not allow:
        expected = "target_version"
    else:
        expected = None
    try:
        _check(f, **kw)
        got = None
    except TwinInputError as e:
        got = e.field
    assert got == expected, (text, subset, allow)


def test_a_version_a_rollout_introduced_is_selectable_and_compared_as_a_version():
    f = _fresh()
    f.submit({**HONEYWELL, "target_version": "1.16", "from_versions": ["1.12"], "max_days": 1})
    f.run(3 * HALF_HOURS_PER_DAY)
    assert "1.16" in _held(f)
    # 1.15.9 would downgrade the meters now on 1.16 (they are not in the catalogue, but in the run)
    cmd = parse_command({**HONEYWELL, "target_version": "1.15.9", "from_versions": ["1.15", "1.16"]}, f.config,
                        now_tick=f.tick)
    with pytest.raises(TwinInputError) as e:
        validate(cmd, f.planner, census=f.census)
    assert e.value.field == "target_version" and "below 1.16" in e.value.reason
    first = f.submit({**HONEYWELL, "target_version": "1.17", "from_versions": ["1.16"]})
    # the same devices under another spelling of the same version: a conflict, not a second rollout
    with pytest.raises(TwinInputError) as e:
        f.submit({**HONEYWELL, "target_version": "1.18", "from_versions": ["1.16.0"]})
    assert e.value.field == "model" and first.name in e.value.reason
