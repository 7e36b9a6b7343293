"""Numeric command-line options are checked the same way in every command: a bad value gives one
line naming the option and exit status 2, never a traceback, and nothing starts (no Ray, no job)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.cli import main
from twin.cli.base import UsageError, parse_days, parse_seed

SCENARIO = str(Path(__file__).resolve().parents[2] / "scenarios" / "storm-outage.yaml")
SUBMIT = ["submit", SCENARIO, "--address", "http://127.0.0.1:9"]  # never reached: parsing fails first
SWEEP = ["sweep", SCENARIO, "--param", "incidents.outage_alert_backoff_s", "--values", "10,20"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([*SUBMIT, "--seed", "abc"], "--seed: expected a whole number, got 'abc'"),
        ([*SUBMIT, "--seed", str(2**63)], "--seed: must be a whole number in [0, 2^63)"),
        ([*SUBMIT, "--days", "-1"], "--days: must be more than zero"),
        ([*SUBMIT, "--days", "1e400"], "--days: must be finite"),
        ([*SUBMIT, "--days", "0.001"], "--days: 0.001 is less than one half-hour tick"),
        ([*SUBMIT, "--hubs", "many"], "--hubs"),
        ([*SWEEP, "--seed", "abc"], "--seed: expected a whole number, got 'abc'"),
        ([*SWEEP, "--seed", "-1"], "--seed: must be a whole number"),
        ([*SWEEP, "--shards", "0"], "--shards: must be at least 1"),
    ],
)
def test_submit_and_sweep_reject_bad_numbers_naming_the_option(argv, needle, capsys, monkeypatch):
    import twin.engine.runtime
    import twin.launcher.cluster

    def never(*a, **k):
        raise AssertionError("nothing may start on a bad command line")

    monkeypatch.setattr(twin.launcher.cluster, "submit", never)
    monkeypatch.setattr(twin.engine.runtime, "start_ray", never)
    assert main(argv) == 2
    out = capsys.readouterr()
    assert needle in out.err and "Traceback" not in out.err + out.out
    assert out.err.startswith(f"twin {argv[0]}: error: ")


def test_sweep_has_no_days_option(capsys):
    # Each point runs for its scenario's days; argparse refuses the option with status 2.
    with pytest.raises(SystemExit) as e:
        main([*SWEEP, "--days", "-1"])
    assert e.value.code == 2 and "--days" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("42", 42), (str(2**63 - 1), 2**63 - 1)])
def test_seed_accepts_what_a_fleet_takes(text, value):
    assert parse_seed(text) == value


@pytest.mark.parametrize(("text", "value"), [("1", 1.0), ("0.5", 0.5), ("2.25", 2.25), ("0.0105", 0.0105)])
def test_days_accepts_at_least_one_tick(text, value):
    assert parse_days(text) == value


@pytest.mark.parametrize("text", ["nan", "inf", "-0", "0", "0.01", "two"])
def test_days_rejects_what_is_not_a_positive_number_of_ticks(text):
    with pytest.raises(UsageError, match=r"^--days: "):
        parse_days(text)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_a_cluster_address_parses_by_its_grammar_or_is_refused_naming_it(text):
    from twin.engine.address import RayAddressError, parse_address

    try:
        host, port = parse_address(text)
    except RayAddressError as e:
        assert "--address" in str(e)
        return
    assert 1 <= port <= 65535 and host.isascii() and host in text


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:6379", ("127.0.0.1", 6379)), ("ray://head:10001", ("head", 10001)),
    ("http://127.0.0.1:8265", ("127.0.0.1", 8265)), ("https://ray.example.com", ("ray.example.com", 443)),
    ("[::1]:6379", ("::1", 6379)), ("127.0.0.1:\u0666\u0663\u0667\u0669", None), ("head", None),
    ("head:0", None), ("head:65536", None), ("ray://head", None), ("", None)])
def test_cluster_addresses(text, expected):
    from twin.engine.address import RayAddressError, parse_address

    if expected is None:
        with pytest.raises(RayAddressError, match="--address"):
            parse_address(text)
    else:
        assert parse_address(text) == expected
