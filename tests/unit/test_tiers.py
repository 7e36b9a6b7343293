"""The suite's tiers: tests/conftest.py marks each test with its folder's tier, so a marker selects
exactly one folder and no test is left without a tier."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIERS = {"unit", "integration", "e2e"}

# A plugin for the collecting pytest: every collected test's node id and marker names, as JSON.
DUMP_PLUGIN = '''
import json, os

def pytest_collection_finish(session):
    with open(os.environ["TIERS_DUMP"], "w") as f:
        json.dump([[i.nodeid, sorted({m.name for m in i.iter_markers()})] for i in session.items], f)
'''


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Marker names by node id of the whole suite, every tier and `slow` included, collected once
    in a subprocess (collecting the suite imports all of it: seconds). `--assert=plain`: markers do
    not depend on assertion rewriting, which is most of a collection's time here."""
    d = tmp_path_factory.mktemp("tiers")
    (d / "tiers_dump.py").write_text(DUMP_PLUGIN)
    out = d / "items.json"
    env = {**os.environ, "TIERS_DUMP": str(out), "PYTHONPATH": os.pathsep.join([str(d), str(ROOT)])}
    p = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "--assert=plain", "-p", "no:randomly",
                        "-p", "no:cacheprovider", "-p", "tiers_dump", "-m", "", "tests"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return {node: set(markers) for node, markers in json.loads(out.read_text())}


def test_no_test_is_outside_the_three_tiers(collected):
    assert len(collected) > 1000  # the whole suite, e2e and slow included
    assert {n: m for n, m in collected.items() if len(m & TIERS) != 1} == {}


def test_the_unit_marker_selects_tests_unit_and_nothing_else(collected):
    units = {n for n, m in collected.items() if "unit" in m}
    assert units == {n for n in collected if n.startswith("tests/unit/")}
    assert any(n.startswith("tests/unit/test_tiers.py::") for n in units)
