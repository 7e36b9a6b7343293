"""The suite's tiers: tests/conftest.py marks each test with its folder's tier, so a marker selects
exactly one folder and no test is left without a tier."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def collected(marker: str) -> tuple[int, list[str]]:
    """(exit code, node ids) of collecting the whole suite with `-m marker`, in a subprocess."""
    p = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:randomly",
                        "-p", "no:cacheprovider", "-m", marker, "tests"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    return p.returncode, [ln for ln in p.stdout.splitlines() if "::" in ln]


def test_no_test_is_outside_the_three_tiers():
    code, ids = collected("not (unit or integration or e2e)")
    assert (code, ids) == (5, [])  # 5: pytest collected nothing


def test_the_unit_marker_selects_tests_unit_and_nothing_else():
    code, ids = collected("unit")
    assert code == 0 and ids
    assert all(i.startswith("tests/unit/") for i in ids), [i for i in ids if not i.startswith("tests/unit/")]
    assert any(i.startswith("tests/unit/test_tiers.py::") for i in ids)
