"""The API speaks in names, never the model's codes (issue 12, build point 2): the reference data of
GetFleetCatalog, an accepted command as OperationMetadata.command_json shows it, and a dashboard
that needs nothing from the model, the engine or the services to label or validate anything."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard import forms, geo
from dashboard.components import op_summary
from dashboard.figures import CSPS, WAN_ORDER
from dashboard.pages.alerts import KINDS
from dashboard.reference import Reference
from twin.model.catalog import AREAS, SUPPLIERS, DeviceType, VersionTable, models_of
from twin.model.config import FleetConfig
from twin.model.ops.commands import parse_command
from twin.services.catalog import fleet_catalog
from twin.services.convert import command_view

ROOT = Path(__file__).resolve().parents[2]
CATALOG = fleet_catalog(VersionTable())
CONFIG = FleetConfig(hubs=1000, seed=1)


def test_the_catalog_names_regions_areas_technologies_suppliers_models_and_alerts():
    c = CATALOG
    assert [r.name for r in c.csp_regions] == ["North", "Central", "South"]
    north = c.csp_regions[0]
    assert north.operator == "Arqiva" and list(north.area_ids) == [15, 16, 17, 18, 23]
    london = next(a for a in c.areas if a.id == 12)
    assert (london.name, london.short_code, london.dno, london.csp_region) == ("London", "_C", "UKPN", "South")
    assert [a.id for a in c.areas] == list(range(10, 24))
    assert [w.label for w in c.wan_technologies if w.switchable] == ["2G", "3G"]
    assert [s.name for s in c.suppliers][:2] == ["Octopus Energy", "British Gas"] and len(c.suppliers) == 16
    assert c.suppliers[-1].name == "Other suppliers"
    assert [d.name for d in c.device_types] == ["CH", "ESME", "GSME", "PPMID"]
    esme = {m.label: list(m.firmware_versions) for m in c.device_types[1].models}
    assert esme["Honeywell AS302P"] == ["1.12", "1.14", "1.15"]
    assert {k.name: k.code for k in c.alert_kinds}["POWER_OUTAGE"] == "AD1"


def test_the_dashboard_draws_the_names_the_catalog_gives():
    """The dashboard's own presentation tables (order and colour of regions, technologies and alert
    kinds) list exactly the API's names, and its map's areas are the catalog's."""
    assert tuple(r.name for r in CATALOG.csp_regions) == CSPS
    assert sorted(WAN_ORDER) == sorted(w.label for w in CATALOG.wan_technologies)
    assert tuple(k.name for k in CATALOG.alert_kinds) == KINDS
    assert [(a.id, a.name, a.csp) for a in geo.areas()] == [(a.id, a.name, a.csp_region) for a in CATALOG.areas]


def test_forms_offer_the_catalog_s_choices_and_plain_text_without_it():
    ref = Reference.from_catalog(CATALOG)
    rollout = {s.name: s for s in forms.fields("firmware_rollout", ref)}
    assert rollout["device"].choices == ("CH", "ESME", "GSME", "PPMID")
    assert rollout["suppliers"].choices == tuple(s.name for s in SUPPLIERS)
    assert "Honeywell" in rollout["manufacturer"].choices and "AS302P" in rollout["model"].choices
    outage = {s.name: s for s in forms.fields("power_outage", ref)}
    assert outage["area"].choices == tuple(str(i) for i in range(10, 24))
    assert ref.area_labels()["12"] == "12 London"
    swap = {s.name: s for s in forms.fields("swap_programme", ref)}
    assert swap["prioritise"].choices == ("", "2G", "3G") and swap["region"].choices == ("North", "Central", "South")
    assert all(not s.choices for s in forms.fields("swap_programme"))  # no catalog yet: text, the server checks


_EVENTS = st.one_of(
    st.builds(lambda dt, m, regions, suppliers: {
        "type": "firmware_rollout", "device": dt.name, "manufacturer": m.manufacturer, "model": m.model,
        "target_version": m.versions[-1], "from_versions": [m.versions[0]], "regions": regions,
        "suppliers": suppliers},
        st.shared(st.sampled_from(list(DeviceType)), key="dt"),
        st.shared(st.sampled_from(list(DeviceType)), key="dt").flatmap(
            lambda dt: st.sampled_from([m for m in models_of(dt) if len(m.versions) > 1])),
        st.lists(st.sampled_from(["North", "Central", "South"]), unique=True),
        st.lists(st.sampled_from([s.name for s in SUPPLIERS]), unique=True, max_size=3)),
    st.builds(lambda pair: {"type": "supplier_failure", "supplier": pair[0], "solr": pair[1], "daily_cap": 50},
              st.lists(st.sampled_from([s.name for s in SUPPLIERS]), min_size=2, max_size=2, unique=True)),
    st.builds(lambda s: {"type": "supplier_switch", "hub": "5", "fuel": "gas", "to_supplier": s},
              st.sampled_from([s.name for s in SUPPLIERS])),
    st.builds(lambda r, t: {"type": "network_switch_off", "region": r, "technology": t},
              st.sampled_from(["North", "Central", "South"]), st.sampled_from(["2G", "3G"])),
    st.builds(lambda r, p: {"type": "swap_programme", "region": r, "installs_per_day": 100, "prioritise": p},
              st.sampled_from(["North", "Central", "South"]), st.sampled_from(["", "2G", "3G"])),
    st.builds(lambda r: {"type": "vwan_fallback", "region": r, "onboard_per_day": 5},
              st.sampled_from(["North", "Central", "South"])),
    st.builds(lambda r, g: {"type": "csp_incident", "region": r, "duration_min": 30, "include_4g": g},
              st.sampled_from(["North", "Central", "South"]), st.booleans()),
    st.builds(lambda a: {"type": "power_outage", "area": a.name, "duration_min": 30}, st.sampled_from(AREAS)),
    st.builds(lambda regions, suppliers: {"type": "mhhs_migration", "share": 0.5, "waves": 3, "spacing_days": 1,
                                          "regions": regions, "suppliers": suppliers},
              st.lists(st.sampled_from(["North", "Central", "South"]), unique=True),
              st.lists(st.sampled_from([s.name for s in SUPPLIERS]), unique=True, max_size=3)),
    st.builds(lambda regions, areas: {"type": "on_demand_reads", "duration_min": 120, "interval_min": 30,
                                      "regions": regions, "areas": [a.name for a in areas]},
              st.lists(st.sampled_from(["North", "Central", "South"]), unique=True),
              st.lists(st.sampled_from(AREAS), unique=True, max_size=3)),
)


def _as_the_api_sends(view: dict) -> dict:
    """A command view as a CreateEventRequest would carry it: proto3 sends no empty string."""
    return {k: v for k, v in view.items() if k != "area_name" and v != ""}


@settings(max_examples=150, deadline=None)
@given(event=_EVENTS)
def test_an_accepted_command_reads_back_in_the_api_s_names(event):
    """command_json names what was asked for in the words of the request: sent back, it is the
    same command, and no field holds a model code."""
    cmd = parse_command({k: v for k, v in event.items() if v != ""}, CONFIG, now_tick=0)
    view = command_view(cmd.to_dict())
    assert "device_type" not in view and "model_code" not in view
    for key in ("region", "technology", "supplier", "solr", "to_supplier"):
        if event.get(key):
            assert view[key] == event[key]
    for key in ("regions", "suppliers"):
        if key in event:
            assert sorted(view[key]) == sorted(event[key])
    assert parse_command(_as_the_api_sends(view), CONFIG, now_tick=0) == cmd


@pytest.mark.parametrize("area", AREAS, ids=lambda a: str(a.id))
def test_every_area_is_accepted_by_the_name_the_catalog_gives_it(area):
    """The catalog's names are the API's vocabulary: each area names itself in a power outage (the
    comma of 'North Wales, Merseyside and Cheshire' was refused by the name grammar)."""
    cmd = parse_command({"type": "power_outage", "area": area.name, "duration_min": 30}, CONFIG, now_tick=0)
    assert cmd.area == area.id


def test_operation_summaries_come_from_the_named_command():
    def summary(event: dict) -> str:
        cmd = parse_command(event, CONFIG, now_tick=0)
        return op_summary({"kind": cmd.kind, "command": command_view(cmd.to_dict())})

    assert summary({"type": "firmware_rollout", "device": "ESME", "manufacturer": "Honeywell", "model": "AS302P",
                    "target_version": "1.15"}) == "ESME Honeywell AS302P → 1.15"
    assert summary({"type": "supplier_failure", "supplier": "Rebel Energy", "solr": "So Energy"}) == \
        "Rebel Energy → SoLR So Energy"
    assert summary({"type": "swap_programme", "region": "south", "installs_per_day": 5, "prioritise": "3g"}) == \
        "South 3G first"
    assert summary({"type": "network_switch_off", "region": "Central", "technology": "2G"}) == "Central 2G"
    assert summary({"type": "power_outage", "area": "12", "fraction": 0.5, "duration_min": 30}) == \
        "London (12) x 0.5 for 30 min"
    assert summary({"type": "supplier_switch", "hub": "7", "to_supplier": "Utilita"}) == "hub 7 → Utilita"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, module-level and function-local alike."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


FORBIDDEN = ("twin.model", "twin.engine", "twin.services", "twin.cli", "twin.studies", "twin.bench", "ray")


@pytest.mark.parametrize("path", sorted((ROOT / "dashboard").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_dashboard_imports_only_the_client_generated_code_and_utilities(path):
    bad = [f"{path.relative_to(ROOT)}:{line} imports {mod}" for line, mod in _imports(path)
           if any(mod == f or mod.startswith(f + ".") for f in FORBIDDEN)]
    assert bad == []


def test_the_import_scan_sees_function_local_imports(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("import os\n\ndef f():\n    from twin.model.catalog import AREAS\n    return AREAS\n")
    assert _imports(f) == [(1, "os"), (4, "twin.model.catalog")]


def test_the_tls_error_names_the_dashboard_s_real_flags():
    from dashboard.__main__ import parser
    from dashboard.server import DashboardServer

    with pytest.raises(ValueError) as e:
        DashboardServer(api_address="127.0.0.1:1", token="t", host="0.0.0.0", tls=None)
    named = {w.strip(",.();") for w in str(e.value).split() if w.startswith("--")}
    assert named == {"--tls-cert", "--tls-key"}
    options = {o for a in parser()._actions for o in a.option_strings}
    assert named <= options
