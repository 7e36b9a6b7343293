"""The documentation site builds in strict mode (every link resolves, every page in the nav), and
its API reference, generated from the protos, holds every public method with its error rows."""

from __future__ import annotations

import os
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_every_page_of_the_nav_is_built(site):
    for page in ("index.html", "guides/api.html", "guides/duis.html", "reference/api.html", "api-errors.html",
                 "cluster/overview.html", "cluster/scaling.html", "architecture.html"):
        assert (site / page).is_file(), page


def test_the_api_reference_lists_every_public_method_with_its_errors(site):
    from twin.generated.csp.v1 import csp_pb2
    from twin.generated.dcc.v1 import dcc_pb2
    from twin.generated.fleet.v1 import fleet_pb2

    page = unescape((site / "reference/api.html").read_text())
    for module in (fleet_pb2, dcc_pb2, csp_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                assert f"{service.name}.{method.name}" in page, (service.name, method.name)
    # An error row of docs/api-errors.md under its method, and a comment from the protos.
    assert "count outside 1..10000" in page
    assert "RESPONSE_STATUS_ACKNOWLEDGED" in page


def test_the_site_needs_no_network(site):
    # No web fonts or scripts from elsewhere: the pages work offline, as built.
    html = (site / "index.html").read_text()
    assert "fonts.googleapis.com" not in html and "fonts.gstatic.com" not in html
