"""Numeric command-line options are checked the same way in every command: a bad value gives one
line naming the option and exit status 2, never a traceback, and nothing starts (no Ray, no job)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.cli import main
from twin.cli.base import UsageError, parse_days, parse_seed

SCENARIO = str(Path(__file__).resolve().parents[2] / "scenarios" / "storm-outage.yaml")
SUBMIT = ["submit", SCENARIO, "--address", "http://127.0.0.1:9"]  # never reached: parsing fails first
SWEEP = ["sweep", SCENARIO, "--param", "incidents.outage_alert_backoff_s", "--values", "10,20"]
SWEEP_FILE = str(Path(__file__).resolve().parents[2] / "sweeps" / "mhhs-breaking-point.yaml")


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
        (["sweep", SCENARIO, "--values", "10,20"], "--param: name the parameter to sweep"),
        (["sweep", SCENARIO, "--param", "incidents.outage_alert_backoff_s"], "--values: give at least two"),
        (["sweep", SCENARIO + ".missing", "--param", "x.y", "--values", "1,2"], "no such file"),
        (["sweep", SWEEP_FILE, "--values", "0.5"], "--values: give at least two"),
        (["sweep", SWEEP_FILE, "--hubs", "0"], "--hubs: must be at least 1"),
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


# --- The command package: one module per command, imported only when it runs -------------------

ROOT = Path(__file__).resolve().parents[2]
# Every command the `twin` command had before it became a package (issue 12): none may be lost.
EXPECTED_COMMANDS = ["up", "run", "bench", "submit", "sweep", "users", "certs", "duis-pki", "hub", "history", "fork", "compare"]
HEAVY = ("ray", "grpc", "dash", "duckdb", "plotly")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                          check=False, cwd=ROOT)


def test_the_table_lists_every_command_and_each_one_loads_under_its_name():
    from twin.cli import COMMANDS, create_command

    assert list(COMMANDS) == EXPECTED_COMMANDS
    for name, info in COMMANDS.items():
        command = create_command(name)
        assert type(command).__name__ == info.class_name and command.name == name
        assert info.module.startswith("twin.cli.") and info.summary


def test_help_lists_every_command_without_importing_ray_grpc_or_dash():
    p = _python("import sys, contextlib, io\n"
                "from twin.cli import main\n"
                "out = io.StringIO()\n"
                "with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
                "    main(['--help'])\n"
                "print(out.getvalue())\n"
                f"print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
                "print('COMMANDS', sorted(m for m in sys.modules if m.startswith('twin.cli.')))\n")
    assert p.returncode == 0, p.stderr
    from twin.cli import COMMANDS

    for name, info in COMMANDS.items():
        assert f"    {name}" in p.stdout and info.summary.split()[0] in p.stdout
    assert "LOADED []" in p.stdout
    assert "COMMANDS []" in p.stdout  # not even the shared base


def _command_modules() -> list[str]:
    from twin.cli import COMMANDS

    return sorted({info.module for info in COMMANDS.values()})


@pytest.mark.parametrize("module", _command_modules())
def test_a_command_module_imports_no_other_command_module(module):
    others = [m for m in _command_modules() if m != module]
    p = _python(f"import sys, importlib\nimportlib.import_module({module!r})\n"
                f"print('OTHERS', sorted(m for m in {others!r} if m in sys.modules))\n")
    assert p.returncode == 0, p.stderr
    assert "OTHERS []" in p.stdout


def test_a_command_runs_only_its_own_module(monkeypatch, capsys):
    # In this process: `twin hub` loads twin.cli.hub and nothing of the other commands.
    for m in _command_modules():
        monkeypatch.delitem(sys.modules, m, raising=False)
    assert main(["hub", "7", "--hubs", "1000"]) == 0
    assert json.loads(capsys.readouterr().out)["hub"] == 7
    assert [m for m in _command_modules() if m in sys.modules] == ["twin.cli.hub"]


def test_an_unknown_command_is_refused_by_argparse(capsys):
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2 and "invalid choice: 'frobnicate'" in capsys.readouterr().err


# --- Bench defaults: real defaults, one table, a typed value always used ------------------------

def _bench_args(argv: list[str]):
    from twin.cli import build_parser

    parser, _ = build_parser(["bench", *argv])
    return parser.parse_args(["bench", *argv])


# Each pair is a value that used to be compared with a sentinel string (and so replaced or ignored).
@pytest.mark.parametrize(("argv", "dest", "value"), [
    (["api", "--hubs", "30M"], "hubs", "30M"),  # was silently 1M
    (["api", "--out", "bench-results/engine.json"], "out", "bench-results/engine.json"),  # was api.json
    (["dashboard", "--sizes", "1M,3M,10M,30M"], "sizes", "1M,3M,10M,30M"),  # was 1M,30M
    (["dashboard", "--out", "bench-results/engine.json"], "out", "bench-results/engine.json"),
    (["reliability", "--out", "bench-results/engine.json"], "out", "bench-results/engine.json"),
    (["events", "--out", "bench-results/engine.json"], "out", "bench-results/engine.json"),
])
def test_a_bench_value_typed_is_the_value_used(argv, dest, value):
    from twin.cli.bench import resolve_options

    assert resolve_options(_bench_args(argv))[dest] == value


@pytest.mark.parametrize(("suite", "expected"), [
    ("engine", {"sizes": "1M,3M,10M,30M", "days": "1", "shards": None, "seed": "1", "out": "bench-results/engine.json"}),
    ("events", {"hubs": "30M", "scenario_hubs": "3M", "seed": "1", "out": "bench-results/events.json"}),
    ("api", {"hubs": "1M", "runs": 5, "out": "bench-results/api.json"}),
    ("dashboard", {"sizes": "1M,30M", "samples": 60, "out": "bench-results/dashboard.json"}),
    ("reliability", {"hubs": "30M", "chaos_hubs": "1M", "seed": "1", "out": "bench-results/reliability.json"}),
])
def test_each_bench_suite_has_its_own_defaults(suite, expected):
    from twin.cli.bench import resolve_options

    assert resolve_options(_bench_args([suite])) == expected


def test_bench_api_at_30m_runs_30m(monkeypatch):
    import twin.cli.bench

    seen = {}

    def record(**kw):
        seen.update(kw)
        return {"ok": True}

    monkeypatch.setattr(twin.cli.bench, "run_api_bench", record)
    assert main(["bench", "api", "--hubs", "30M"]) == 0
    assert seen["hubs"] == 30_000_000 and seen["out"] == Path("bench-results/api.json")


def test_bench_api_runs_as_many_gethub_runs_as_asked(monkeypatch):
    import twin.cli.bench

    seen = {}

    def record(**kw):
        seen.update(kw)
        return {"ok": True}

    monkeypatch.setattr(twin.cli.bench, "run_api_bench", record)
    assert main(["bench", "api", "--runs", "3"]) == 0
    assert seen["runs"] == 3
    seen.clear()
    assert main(["bench", "api"]) == 0
    assert seen["runs"] == 5


@pytest.mark.parametrize(("argv", "needle"), [
    (["bench", "api", "--runs", "0"], "--runs: at least 1, got 0"),
    (["bench", "engine", "--runs", "2"], "--runs: the engine suite does not use it"),
    (["bench", "api", "--seed", "5"], "--seed: the api suite does not use it"),
    (["bench", "engine", "--hubs", "5M"], "--hubs: the engine suite does not use it"),
    (["bench", "dashboard", "--days", "2"], "--days: the dashboard suite does not use it"),
    (["bench", "events", "--samples", "3"], "--samples: the events suite does not use it"),
])
def test_a_bench_option_the_suite_does_not_use_is_refused_not_ignored(argv, needle, capsys):
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


_OPTIONS = ["hubs", "chaos_hubs", "scenario_hubs", "sizes", "days", "shards", "seed", "out"]


@settings(max_examples=200, deadline=None)
@given(suite=st.sampled_from(["engine", "events", "api", "dashboard", "reliability"]),
       given_values=st.dictionaries(st.sampled_from(_OPTIONS), st.text(min_size=1).filter(lambda t: not t.startswith("-"))))
def test_bench_options_resolve_to_what_was_typed_or_the_suites_default(suite, given_values):
    from twin.cli.bench import SUITES, resolve_options

    argv = [suite]
    for dest, text in given_values.items():
        argv += [f"--{dest.replace('_', '-')}", text]
    args = _bench_args(argv)
    if given_values.keys() - SUITES[suite].keys():
        with pytest.raises(UsageError, match="does not use it"):
            resolve_options(args)
        return
    assert resolve_options(args) == {**SUITES[suite], **given_values}
