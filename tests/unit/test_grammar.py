"""Identifiers and numbers from outside are read by explicit ASCII grammars, the same in the API,
the CLI, scenario files and dashboard forms: Python's lenient parsers (int() of Unicode digits,
isdigit() of superscripts, upper() of the long s) never decide what a text names."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashboard import forms
from twin.cli import main
from twin.cli.base import parse_count
from twin.model.catalog import DeviceType, region_by_name, supplier_code
from twin.model.config import FleetConfig, TwinInputError
from twin.model.ids import canonical_eui64, eui64, parse_hub_ref
from twin.model.ops.commands import parse_command
from twin.model.query import parse_filter
from twin.studies.scenario import load_scenario
from twin.util.grammar import GrammarError, name_key, parse_decimal, parse_number

SEED = 9
CONFIG = FleetConfig(hubs=1000, seed=SEED, block_size=256)
# What int(), float(), isdigit(), upper() and lower() read too leniently.
QUIRKS = ["\u00b2", "\u09ea", "\u0661\u0662", "\uff11\uff12", "1_2", "+12", "1 2", "12\n", "\u00a012", "\u0031\u20e3",
          "\U0001d7d9\U0001d7da"]
_ASCII_INDEX = re.compile(r"[0-9]{1,12}", re.ASCII)
_ASCII_EUI = re.compile(r"[0-9A-Fa-f]{2}([-:]?)[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){6}", re.ASCII)
# Unicode digits of every kind, hub-name prefixes and EUI-like text, mixed with anything.
_DIGITS = st.text(alphabet=st.characters(categories=("Nd", "No")), max_size=14)
_HUBISH = st.one_of(st.text(), _DIGITS, st.text(alphabet="0123456789abcdefABCDEF-: \t\n_+\u00b2\u0661\uff11\ufb00"),
                    st.tuples(st.sampled_from(["", "hubs/", " hubs/"]), st.one_of(st.text(), _DIGITS)).map("".join))


@pytest.mark.parametrize("body", QUIRKS)
def test_int_quirks_never_name_a_hub(body):
    for text in (body, f"hubs/{body}"):
        with pytest.raises(GrammarError):
            parse_hub_ref(text, SEED)


def test_canonical_spellings_name_the_same_hub():
    dev = eui64(42, SEED)
    for spelling in (dev, dev.lower(), dev.replace("-", ":"), dev.replace("-", ""), f"hubs/{dev}", f" hubs/{dev}\t",
                     "42", "hubs/42", "hubs/0042"):
        assert parse_hub_ref(spelling, SEED) == 42
    assert canonical_eui64(dev.lower().replace("-", ":")) == dev
    for bad in (dev[:5] + ":" + dev[6:], dev + "\n", dev.replace("-", "\u2010"), dev[:-1] + "\ufb00"):
        with pytest.raises(GrammarError):
            parse_hub_ref(bad, SEED)


@given(_HUBISH)
def test_a_hub_reference_is_refused_or_spelt_in_ascii(text):
    """Whatever the text, the parser answers a hub or GrammarError; an answer means the text (past
    blanks and the prefix) is an ASCII index or EUI-64, and it names exactly that hub."""
    try:
        hub = parse_hub_ref(text, SEED)
    except GrammarError:
        return
    body = text.strip(" \t").removeprefix("hubs/")
    if _ASCII_INDEX.fullmatch(body):
        assert hub == int(body)
    else:
        assert _ASCII_EUI.fullmatch(body)
        assert parse_hub_ref(canonical_eui64(body), SEED) == hub


@given(st.one_of(st.text(), _DIGITS))
def test_numbers_are_ascii_or_refused(text):
    for parse in (parse_decimal, parse_number):
        try:
            parse(text)
        except GrammarError:
            continue
        assert text.isascii()


@pytest.mark.parametrize("text", ["\u017fouth", "SOUT\u0048\u0307", "\u212aaifa", "nor\u0074h\u200b"])
def test_names_that_only_fold_onto_ascii_are_refused(text):
    with pytest.raises(GrammarError):
        name_key(text)
    with pytest.raises(ValueError):
        region_by_name(text)
    with pytest.raises(KeyError):
        supplier_code(text)


def test_region_and_supplier_names_still_read_in_any_ascii_case():
    assert region_by_name(" south ").name == "SOUTH" and supplier_code("octopus energy") == 1


@pytest.mark.parametrize(("event", "field"), [
    ({"type": "supplier_switch", "hub": "\u09ea", "to_supplier": "Octopus Energy"}, "hub"),
    ({"type": "supplier_switch", "hub": "hubs/\u00b2", "to_supplier": "Octopus Energy"}, "hub"),
    ({"type": "network_switch_off", "region": "\u017fouth", "technology": "3G"}, "region"),
    ({"type": "network_switch_off", "region": "South", "technology": "\uff13G"}, "technology"),
    ({"type": "power_outage", "area": "\u0661\u0662", "duration_min": 5}, "area"),
    ({"type": "firmware_rollout", "device": "e\u017fme", "manufacturer": "Kaifa", "model": "MA120",
      "target_version": "9.9.9"}, "device"),
    ({"type": "firmware_rollout", "device": "ESME", "manufacturer": "\u212aaifa", "model": "MA120",
      "target_version": "9.9.9"}, "manufacturer"),
    ({"type": "supplier_failure", "supplier": "Octopus Energy\x00", "solr": "British Gas"}, "supplier"),
    ({"type": "power_outage", "area": 12, "duration_min": 5, "at": "\u0662d"}, "at"),
])
def test_events_with_names_outside_the_grammar_name_the_field(event, field):
    with pytest.raises(TwinInputError) as e:
        parse_command(event, CONFIG, now_tick=0)
    assert e.value.field == field


def test_a_scenario_file_names_the_event_field(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nfleet: {hubs: 1000}\nevents:\n"
                    "  - {type: supplier_switch, hub: 'hubs/\u09ea', to_supplier: Octopus Energy}\n", encoding="utf-8")
    with pytest.raises(TwinInputError) as e:
        load_scenario(path)
    assert e.value.field == "events[0].hub"


@pytest.mark.parametrize("text", ["region=\u017fouth", "region=South AND\u00a0wan=3G", "supplier=\u212aaifa",
                                  "reachable=tru\u0435", "region=North\x00"])
def test_hub_filters_are_printable_ascii(text):
    with pytest.raises(ValueError):
        parse_filter(text)


def test_operation_filters_are_ascii():
    from twin.services.errors import ApiError
    from twin.services.fleet_servicer import _operation_filter

    assert _operation_filter("done=false AND kind!=service_request") is not None
    for text in ("d\u00f6ne=false", "done=f\u0430lse", "kind=\u0661"):
        with pytest.raises(ApiError) as e:
            _operation_filter(text)
        assert e.value.field == "filter"


@pytest.mark.parametrize(("argv", "needle"), [
    (["hub", "\u00b2", "--hubs", "1000"], "HUB_ID"),
    (["hub", "hubs/\u09ea", "--hubs", "1000"], "HUB_ID"),
    (["hub", "0", "--hubs", "\uff11M"], "--hubs"),
    (["hub", "0", "--hubs", "1000", "--seed", "\u0661"], "--seed"),
    (["users", "add", "someone", "--role", "IS", "--party", "\u0661"], "--party"),
])
def test_cli_refuses_non_ascii_numbers_and_ids_naming_the_option(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_cli_argparse_numbers_are_ascii(capsys):
    with pytest.raises(SystemExit) as e:
        main(["up", "--grpc-port", "\uff15\uff10"])
    assert e.value.code == 2 and "--grpc-port" in capsys.readouterr().err


def test_counts_read_ascii_only():
    assert [parse_count(t) for t in ("1000000", "1_000_000", "1,000,000", "1M", "250k", "1.5M")] == [
        1_000_000, 1_000_000, 1_000_000, 1_000_000, 250_000, 1_500_000]
    from twin.cli.base import UsageError

    for bad in ("\uff11M", "1.5", "1__0", "_1", "+1M", "nan", "1e3", "\u0661\u0660k"):
        with pytest.raises(UsageError):
            parse_count(bad)


def test_dashboard_form_numbers_are_ascii():
    req, errors = forms.build_request("swap_programme", {"region": "South", "installs_per_day": "\uff11\uff12"})
    assert req is None and set(errors) == {"installs_per_day"}
    req, errors = forms.build_request("power_outage", {"area": "12", "duration_min": "3\u0660", "fraction": "1"})
    assert req is None and set(errors) == {"duration_min"}


@given(hub=st.integers(0, (1 << 40) - 1), seed=st.integers(0, 2**32), device=st.sampled_from(list(DeviceType)))
def test_eui64_is_the_64_bit_id_as_eight_upper_case_octets(hub, seed, device):
    """eui64 spells the device's 64-bit id (prefix, then 40 bits of the hub's scrambled index) as
    eight upper-case hex octets joined by '-', and the id names the hub again."""
    got = eui64(hub, seed, device)
    raw = f"{int(got.replace('-', ''), 16):016X}"
    assert got == "-".join(raw[i:i + 2] for i in range(0, 16, 2))
    assert re.fullmatch(r"(?:[0-9A-F]{2}-){7}[0-9A-F]{2}", got)
    assert parse_hub_ref(got, seed) == hub


@pytest.mark.parametrize(("text", "want"), [
    ("supplier=octopus", {"supplier": 1}),
    ("supplier=Octopus", {"supplier": 1}),
    ('supplier="Octopus Energy"', {"supplier": 1}),
    ("supplier=eon-next AND payment=prepayment", {"supplier": 3, "payment": True}),
    ('credit_state="emergency credit"', {"credit_state": 2}),
    ('area="South West England" and reachable=true', {"area": 22, "reachable": True}),
])
def test_list_hubs_filters_take_names_short_ids_and_quoted_values(text, want):
    from twin.model.query import parse_filter

    assert parse_filter(text) == want


def test_an_unknown_supplier_is_refused_listing_the_short_ids():
    from twin.model.query import parse_filter

    with pytest.raises(ValueError, match=r"short id .*octopus, british-gas"):
        parse_filter("supplier=Octopuss")
