"""An ensemble's statistics (twin.studies.ensemble): the seeds it runs, and per figure the mean,
spread and 95% Student t interval; the CLI's checks of --seeds before anything starts."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_cli_options import SCENARIO, SWEEP, SWEEP_FILE
from twin.cli import main
from twin.model.config import TwinInputError
from twin.studies.ensemble import describe, mean_capacity, parse_seeds, t_quantile


def test_three_values_give_the_textbook_interval():
    d = describe([1.0, 2.0, 3.0])
    assert (d["n"], d["mean"], d["std"], d["min"], d["max"]) == (3, 2.0, 1.0, 1.0, 3.0)
    t, _ = t_quantile(2)
    assert t == pytest.approx(4.303, abs=5e-4)
    assert d["ci95"] == pytest.approx([2 - t / math.sqrt(3), 2 + t / math.sqrt(3)])
    assert "Student t 95%, 2 df" in d["ci_method"]
    one = describe([5])
    assert (one["mean"], one["std"], one["ci95"]) == (5.0, None, None)  # one run has no spread


def test_the_t_table_errs_wide_between_and_past_its_rows():
    try:
        import scipy  # noqa: F401
    except ImportError:
        assert t_quantile(1) == (12.706, "table")
        assert t_quantile(35)[0] == 2.042  # the 30-df row
        assert t_quantile(10_000)[0] == 1.980  # the 120-df row, above t at infinity (1.960)
    else:
        assert t_quantile(35)[0] == pytest.approx(2.030, abs=1e-3)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=2, max_size=40))
def test_the_interval_is_centred_on_the_mean_inside_the_spread_of_t(xs):
    d = describe(xs)
    assert d["min"] <= d["mean"] + 1e-6 * (1 + abs(d["mean"])) and d["mean"] <= d["max"] + 1e-6 * (1 + abs(d["mean"]))
    assert d["std"] == pytest.approx(statistics.stdev(xs), rel=1e-9, abs=1e-6)
    lo, hi = d["ci95"]
    half = t_quantile(len(xs) - 1)[0] * d["std"] / math.sqrt(len(xs))
    assert hi - d["mean"] == pytest.approx(half, rel=1e-6, abs=1e-3) and d["mean"] - lo == pytest.approx(half, rel=1e-6,
                                                                                                         abs=1e-3)


@pytest.mark.parametrize(("spec", "seeds"), [
    ("8", list(range(1, 9))), (8, list(range(1, 9))), ("3-5", [3, 4, 5]), (" 10 - 11 ", [10, 11]),
    ("1,5,9", [1, 5, 9]), ([7, 2], [7, 2]),
])
def test_seeds_are_a_count_a_range_or_a_list(spec, seeds):
    assert parse_seeds(spec) == seeds


@pytest.mark.parametrize(("spec", "reason"), [
    ("1", "at least two seeds"), (1, "at least two seeds"), ("0", "at least two seeds"), ("5-3", "low to high"),
    ("1,1", "repeat"), ("abc", "a count (8)"), ("\uff18", "ASCII digits"), (True, "a count (8)"), ([1, "2"], "a count"),
    ("1-5000", "at most 1000"), ([], "a count"), ("1,-2", "a count"),
])
def test_bad_seeds_are_refused_naming_the_field(spec, reason):
    with pytest.raises(TwinInputError) as e:
        parse_seeds(spec, "seeds")
    assert e.value.field == "seeds" and reason in e.value.reason


def test_a_points_seeds_average_to_one_set_of_capacity_figures():
    def cap(share: float, p99: float) -> dict:
        return {"class": "on-demand", "links": {"SOUTH/G3": {"peak_utilisation": share, "first_saturated_tick": None}},
                "service": {"South": {"within_target": share, "worst_tick_within_target": share,
                                      "worst_tick_p99_s": p99, "passed_target": share < 0.99,
                                      "passed_target_in_a_tick": share < 0.99}}}

    m = mean_capacity([cap(1.0, 2.0), cap(0.97, 40.0)], quantile=0.99)
    assert m["service"]["South"]["within_target"] == pytest.approx(0.985)
    assert m["service"]["South"]["worst_tick_p99_s"] == pytest.approx(21.0)
    assert m["service"]["South"]["passed_target"] is True  # taken again from the mean share
    assert m["class"] == "on-demand" and m["links"]["SOUTH/G3"]["first_saturated_tick"] is None
    assert mean_capacity([cap(1.0, 2.0), {}], quantile=0.99) == {}


@pytest.mark.parametrize(("argv", "needle"), [
    (["sweep", SCENARIO, "--seeds", "1"], "--seeds: an ensemble needs at least two seeds"),
    (["sweep", SCENARIO, "--seeds", "x"], "--seeds: give a count (8)"),
    (["sweep", SCENARIO, "--seeds", "3", "--seed", "4"], "--seed: give --seed or --seeds, not both"),
    ([*SWEEP, "--seeds", "9-2"], "--seeds: a range runs low to high"),
    (["sweep", SWEEP_FILE, "--seeds", "1,1"], "--seeds: seeds repeat"),
    (["sweep", SCENARIO], "or --seeds for an ensemble"),
])
def test_sweep_checks_seeds_before_anything_starts(argv, needle, capsys, monkeypatch):
    import twin.engine.runtime as runtime

    monkeypatch.setattr(runtime, "start_ray", lambda **kw: pytest.fail("Ray started"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_the_shipped_ensemble_file_is_an_ensemble_of_the_storm():
    from pathlib import Path

    from twin.studies.sweep import is_sweep_file, load_sweep

    path = Path(SWEEP_FILE).parent / "storm-outage-ensemble.yaml"
    assert is_sweep_file(path)
    spec = load_sweep(path)
    assert (spec.param, spec.values, spec.seeds, spec.hubs) == (None, [], list(range(1, 9)), 300_000)
    assert spec.scenario.name == "storm-outage.yaml" and spec.scenario.is_file()


@pytest.mark.parametrize(("doc", "field", "reason"), [
    ("scenario: x.yaml\nseeds: 1-3\nvalues: [1, 2]\n", "values", "values need a param"),
    ("scenario: x.yaml\nseeds: 1-3\nseed: 4\n", "seed", "seed or seeds"),
    ("scenario: x.yaml\nseeds: 1\n", "seeds", "at least two seeds"),
    ("scenario: x.yaml\nparam: a.b\n", "values", "is required"),
])
def test_a_bad_ensemble_file_is_refused_naming_the_key(tmp_path, doc, field, reason):
    from twin.studies.sweep import load_sweep

    path = tmp_path / "s.yaml"
    path.write_text(doc)
    with pytest.raises(TwinInputError) as e:
        load_sweep(path)
    assert e.value.field == field and reason in e.value.reason
