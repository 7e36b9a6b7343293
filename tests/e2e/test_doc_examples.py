"""Every Python example in the README and docs/ runs verbatim against a live twin.

One `twin up` (20,000 hubs, the clock running, the DUIS gateway on, no dashboard) on the ports the
docs name (gRPC 50051, DUIS 8079), started in a fresh directory that then holds what the docs
expect beside it: `.twin/` (tokens, keys, the DUIS PKI) and the run directory `runs/storm`. Each
```python block runs in a process of its own, in that directory, exactly as written, in any order
(each example stands alone: the suite's order is random)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from twin.launcher.process import LaunchError, wait_ready

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def examples() -> list[tuple[str, str]]:
    """(where, code) of every ```python block of README.md and docs/**.md, in document order."""
    out = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = path.read_text()
        for m in BLOCK.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            out.append((f"{path.relative_to(ROOT)}:{line}", m.group(1)))
    return out


EXAMPLES = examples()


@pytest.fixture(scope="module")
def twin_dir(tmp_path_factory):
    work = tmp_path_factory.mktemp("docs")
    ready = work / "ready.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (work / "twin-up.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "twin.cli", "up", "--hubs", "20k", "--run-dir", "runs/storm",
                                 "--duis-port", "8079", "--no-dashboard", "--status-every", "3600",
                                 # The examples run back to back: the bulk one alone sends 1,000 reads
                                 # a minute, the default anomaly threshold, which would quarantine the next.
                                 "--anomaly-threshold", "100000",
                                 "--ready-file", str(ready)], cwd=work, stdout=subprocess.DEVNULL, stderr=log, env=env)
    try:
        wait_ready(proc, ready, timeout_s=300, name="twin up")
    except LaunchError as e:
        proc.kill()
        raise AssertionError(f"{e}: {(work / 'twin-up.log').read_text()[-2000:]}") from None
    time.sleep(2.0)  # a few ticks of history (1800x real time: a tick a second)
    yield work
    proc.send_signal(2)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_the_docs_have_python_examples():
    assert len(EXAMPLES) >= 5, EXAMPLES  # the API guide's three, the DUIS guide's, the history one


@pytest.mark.parametrize(("where", "code"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_a_docs_example_runs_verbatim(twin_dir, where, code):
    done = subprocess.run([sys.executable, "-c", code], cwd=twin_dir, capture_output=True, text=True, timeout=180,
                          check=False)
    assert done.returncode == 0, f"{where} failed:\n{done.stdout[-1500:]}\n{done.stderr[-3000:]}"
    assert done.stdout.strip() or "print(" not in code, f"{where} printed nothing"


def test_the_ready_file_names_the_duis_gateway(twin_dir):
    assert json.loads((twin_dir / "ready.json").read_text())["duis"] == "http://127.0.0.1:8079"
