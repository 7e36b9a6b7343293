"""The same instant is the same instant (issue 17, part 8): a time given with any offset is
normalised to UTC where it enters (CLI, scenario files, API `at`, manifests on replay), so the run
depends on the instant only, and times are printed with their zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import quiet_params
from twin.model.config import FleetConfig, TwinInputError
from twin.model.fleet import LocalFleet
from twin.model.ops.commands import parse_command
from twin.model.query import hub_record
from twin.model.timeutil import format_instant, parse_instant

BST = "2026-06-01T00:00+01:00"
UTC_SAME = "2026-05-31T23:00+00:00"


def _run(start: str, event_at: str, ticks: int = 60) -> tuple[str, list[int], list[dict]]:
    config = FleetConfig(hubs=6_000, seed=3, block_size=1024, start=datetime.fromisoformat(start))
    fleet = LocalFleet(config)
    fleet.submit({"type": "power_outage", "at": event_at, "area": 12, "fraction": 0.5, "duration_min": 90})
    summaries = fleet.run(ticks)
    up = fleet.network.up_by_area(ticks - 1)
    registers = [hub_record(fleet.states[0], config, up, h, ticks - 1)["registers"] for h in (0, 17, 999, 5_999)]
    return fleet.state_hash(), [s.total_messages for s in summaries], registers


def test_the_issue_example_one_instant_with_two_offsets_gives_one_run():
    # The start and the event time are each written with +01:00 in one run and +00:00 in the other.
    a = _run(BST, "2026-06-01T06:00+01:00")
    b = _run(UTC_SAME, "2026-06-01T05:00Z")
    assert a[0] == b[0]  # state hash
    assert a[1] == b[1]  # messages per tick
    assert a[2] == b[2]  # register values
    # and the instant matters: an hour later is a different run
    assert _run("2026-06-01T00:00+00:00", "2026-06-01T05:00Z")[0] != a[0]


def test_the_config_keeps_the_instant_in_utc():
    c = FleetConfig(hubs=100, start=datetime.fromisoformat(BST))
    assert c.start == datetime(2026, 5, 31, 23, 0, tzinfo=UTC) and c.start.utcoffset() == timedelta(0)
    assert c.start_tick_of_day == 46  # 23:00 UTC, not 00:00 on the clock the user typed
    assert c == FleetConfig(hubs=100, start=datetime.fromisoformat(UTC_SAME))
    assert c.to_dict()["start"] == "2026-05-31T23:00:00+00:00"
    assert FleetConfig.from_dict({"hubs": 100, "start": BST}) == c  # a manifest written with an offset


def test_the_instant_is_printed_with_its_zone():
    assert format_instant(datetime.fromisoformat(BST)) == "2026-05-31 23:00 UTC"
    assert format_instant(FleetConfig(hubs=10, start=datetime.fromisoformat(BST)).time_of(2)) == "2026-06-01 00:00 UTC"


@pytest.mark.parametrize("text", ["2026-06-01T00:00", "2026-06-01", "yesterday", "", "2026-06-01T00:00+25:00",
                                  "٢٠٢٦-06-01T00:00+00:00", "2026-06-01T00:00+01:00[Europe/London]"])
def test_a_time_without_a_zone_or_unparseable_is_refused_naming_the_field(text):
    with pytest.raises(TwinInputError) as e:
        parse_instant(text, "fleet.start")
    assert e.value.field == "fleet.start"
    with pytest.raises(TwinInputError) as e:
        parse_instant(datetime(2026, 6, 1), "start")  # a naive datetime, as YAML gives for a time without zone
    assert e.value.field == "start" and "no time zone" in e.value.reason


def _scenario(tmp_path, name: str, start: str, at: str):
    from twin.studies.scenario import load_scenario

    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: x\nfleet: {{hubs: 3000, seed: 2, start: {start}}}\n"
                    f"events:\n  - {{type: csp_incident, region: Central, duration_min: 60, at: '{at}'}}\n")
    return load_scenario(path)


def test_a_scenario_file_with_two_offsets_gives_one_config_one_command_one_run(tmp_path):
    a = _scenario(tmp_path, "a", BST, "2026-06-01T12:30+01:00")
    b = _scenario(tmp_path, "b", UTC_SAME, "2026-06-01T11:30Z")
    # (datetimes compare as instants, so compare what is written and hashed too)
    assert a.config == b.config and a.config.to_dict() == b.config.to_dict() and a.commands == b.commands
    assert a.commands[0].at == 25  # 12.5 hours after 23:00 UTC
    hashes = []
    for sc in (a, b):
        fleet = LocalFleet(sc.config)
        for cmd in sc.commands:
            fleet.accept(cmd)
        fleet.run(60)
        hashes.append(fleet.state_hash())
    assert hashes[0] == hashes[1]


@pytest.mark.parametrize(("start", "at", "field"), [
    ("2026-06-01T00:00:00", "1h", "fleet.start"),  # YAML reads this as a naive datetime
    ("2026-06-01", "1h", "fleet.start"),  # and this as a date
    (UTC_SAME, "2026-06-01T11:30", "events[0].at"),
])
def test_a_scenario_time_without_a_zone_is_refused_naming_the_field(tmp_path, start, at, field):
    with pytest.raises(TwinInputError) as e:
        _scenario(tmp_path, "bad", start, at)
    assert e.value.field == field


def test_cli_refuses_a_start_without_a_zone_naming_the_option(capsys, monkeypatch):
    import twin.engine.runtime
    from twin.cli import main

    def never(*a, **k):
        raise AssertionError("nothing may start on a bad command line")

    monkeypatch.setattr(twin.engine.runtime, "start_ray", never)
    for text in ("2026-06-01T00:00", "2026-06-01T00:00+01:00x", "\uff12\uff10\uff12\uff16-06-01T00:00Z"):
        assert main(["run", "--hubs", "1000", "--start", text]) == 2
        err = capsys.readouterr().err
        assert err.startswith("twin run: error: --start: ") and "Traceback" not in err


def test_api_at_is_an_instant():
    config = FleetConfig(hubs=1000, start=datetime.fromisoformat(BST))
    ev = {"type": "csp_incident", "region": "North", "duration_min": 30}
    a = parse_command({**ev, "at": "2026-06-02T09:00+02:00"}, config, now_tick=0)
    b = parse_command({**ev, "at": "2026-06-02T07:00Z"}, config, now_tick=0)
    assert a == b and a.at == 64  # 32 hours after 23:00 UTC on 31 May
    with pytest.raises(TwinInputError) as e:
        parse_command({**ev, "at": "2026-06-02T07:00"}, config, now_tick=0)
    assert e.value.field == "at" and "no time zone" in e.value.reason


_TZ = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
_HALF_HOURS = st.integers(min_value=0, max_value=20 * 365 * 48).map(
    lambda k: datetime(2020, 1, 1, tzinfo=UTC) + timedelta(minutes=30 * k))


@settings(max_examples=200, deadline=None)
@given(instant=_HALF_HOURS, tz1=_TZ, tz2=_TZ, later_ticks=st.integers(0, 2000), sep=st.sampled_from(["T", " "]))
def test_any_instant_written_with_any_offset_parses_to_itself_and_builds_the_same_config(
        instant, tz1, tz2, later_ticks, sep):
    t1, t2 = instant.astimezone(tz1), instant.astimezone(tz2)
    p1, p2 = parse_instant(t1.isoformat(sep=sep), "start"), parse_instant(t2.isoformat(), "start")
    assert p1 == p2 == instant and p1.tzinfo is UTC and p2.tzinfo is UTC
    c1 = FleetConfig(hubs=500, start=t1, params=quiet_params())
    c2 = FleetConfig(hubs=500, start=t2, params=quiet_params())
    assert c1 == c2 and c1.to_dict() == c2.to_dict() and c1.start_tick_of_day == c2.start_tick_of_day
    when = instant + timedelta(minutes=30 * later_ticks)
    ev = {"type": "csp_incident", "region": "Central", "duration_min": 30}
    cmd1 = parse_command({**ev, "at": when.astimezone(tz1).isoformat()}, c1, now_tick=0)
    cmd2 = parse_command({**ev, "at": when.astimezone(tz2).isoformat()}, c2, now_tick=0)
    assert cmd1 == cmd2 and cmd1.at == later_ticks
