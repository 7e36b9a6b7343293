"""The engine's operations store without Ray: accepting, journaling, refusing, and the network
schedule handed out as a copy."""

from __future__ import annotations

import pytest

from twin.engine.errors import RunStateError
from twin.engine.journal import Journal, read_records
from twin.engine.operations import OperationField, OperationFilter, OperationsStore, OperationTerm
from twin.model.catalog import Csp, WanTech
from twin.model.config import FleetConfig, TwinInputError

CFG = FleetConfig(hubs=4_096, seed=3, block_size=1024)


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "journal.jsonl")
    yield j
    j.close()


def _store(journal, refuses=lambda: None) -> OperationsStore:
    return OperationsStore(CFG, journal=journal, census=lambda cmd: {}, refuses_commands=refuses)


def test_the_network_view_is_a_copy_later_commands_do_not_change(tmp_path, journal):
    ops = _store(journal)
    ops.submit({"type": "network_switch_off", "region": "South", "technology": "3G", "at": 4})
    before = ops.network_view()
    ops.submit({"type": "network_switch_off", "region": "Central", "technology": "2G", "at": 6})
    assert not before.up(5)[Csp.SOUTH, WanTech.G3] and before.up(7)[Csp.CENTRAL, WanTech.G2]
    now = ops.network_view()
    assert not now.up(7)[Csp.CENTRAL, WanTech.G2]
    now.clear()  # a reader changing its copy changes nothing in the engine
    assert not ops.network_view().up(5)[Csp.SOUTH, WanTech.G3]


def test_a_refused_command_is_neither_journaled_nor_accepted(tmp_path, journal):
    ops = _store(journal, refuses=lambda: "the run is rewound")
    with pytest.raises(RunStateError, match="rewound"):
        ops.submit({"type": "network_switch_off", "region": "South", "technology": "3G", "at": 4})
    assert read_records(tmp_path / "journal.jsonl") == [] and ops.operations() == []


def test_an_invalid_event_names_its_field_and_changes_nothing(tmp_path, journal):
    ops = _store(journal)
    with pytest.raises(TwinInputError) as e:
        ops.submit({"type": "network_switch_off", "region": "Narnia", "technology": "3G", "at": 4})
    assert e.value.field == "region"
    assert read_records(tmp_path / "journal.jsonl") == [] and ops.operations() == []


def test_pages_by_filter_and_get_by_name(tmp_path, journal):
    ops = _store(journal)
    names = [ops.submit({"type": "network_switch_off", "region": r, "technology": "3G", "at": 4})["name"]
             for r in ("South", "Central", "North")]
    kind = OperationFilter((OperationTerm(OperationField.KIND, "network_switch_off"),))
    page, nxt = ops.operations_page(kind, 0, 2)
    # The position to go on from is the next operation's number ("...-3"), not an index.
    assert [v["name"] for v in page] == names[:2] and names[2].endswith(f"-{nxt}") and nxt == 3
    page, nxt = ops.operations_page(kind, nxt, 2)
    assert [v["name"] for v in page] == names[2:] and nxt == 0
    none = OperationFilter((OperationTerm(OperationField.KIND, "network_switch_off", negate=True),))
    assert ops.operations_page(none, 0, 10) == ([], 0)
    assert ops.operation(names[1]) == ops.operation(names[1].removeprefix("operations/"))
    with pytest.raises(TwinInputError):
        ops.operation("operations/nope-1")
