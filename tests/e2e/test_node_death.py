"""A run on a Ray cluster survives the death of a whole node (issue 15).

A cluster of three nodes on this machine, each in its own network namespace with its own raylet,
object store and IP (twin.bench.nodes): a head and two workers. `twin run` runs on the head and
joins it with --address, as a capacity engineer's study does. Killing a node is killing every
process in its namespace at once: raylet, object store, workers, the shards on it.

- A worker dies mid-run: its shards are restarted on the surviving nodes, restore from the run
  directory's checkpoints and replay to the head; the run finishes with the fault-free state hash.
- The head dies mid-run (the `twin run` driver with it): `twin run --resume` on a new cluster
  continues from the run directory to the same final hash.
- A run directory a worker cannot read (a tmpfs of its own) is refused before anything is built.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import scenario_state_hash
from twin.bench.nodes import NamespacedCluster, available
from twin.engine.checkpoint import CheckpointStore
from twin.studies.scenario import load_scenario

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "storm-outage.yaml"
HUBS, DAYS = 1_000_000, 10  # about 25 s of run on this machine: long enough to die in the middle


@pytest.fixture(scope="module")
def expected_hash() -> str:
    return scenario_state_hash(SCENARIO, hubs=HUBS, days=DAYS)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NamespacedCluster]:
    with NamespacedCluster(workers=2, cpus=2, private_dir=tmp_path / "node-local") as c:
        c.start()
        yield c


def start_run(c: NamespacedCluster, run_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return c.popen([sys.executable, "-m", "twin.cli", "run", str(SCENARIO), "--hubs", str(HUBS), "--days", str(DAYS),
                    "--shards", "3", "--run-dir", str(run_dir), "--address", c.address, *extra],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)


def wait_for_checkpoint(run_dir: Path, p: subprocess.Popen[str], timeout_s: float = 300) -> int:
    """The first complete checkpoint's tick, once it is marked (the run still going)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert p.poll() is None, "the run ended before its first checkpoint: " + (p.stderr.read() if p.stderr else "")
        ticks = CheckpointStore(run_dir).marked_ticks()
        if ticks:
            return ticks[0]
        time.sleep(0.05)
    raise AssertionError("no checkpoint marked in time")


def shard_pids(c: NamespacedCluster, node: str) -> list[int]:
    """The shard actors' processes on `node` (Ray names an actor's process ray::ShardActor...)."""
    out = []
    for pid in c.pids(node):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"ShardActor" in cmd:
            out.append(pid)
    return out


def report_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "report.json").read_text())


def test_a_worker_node_dies_mid_run_and_the_run_ends_with_the_fault_free_state(cluster, tmp_path, expected_hash):
    run_dir = tmp_path / "runs" / "worker-death"
    p = start_run(cluster, run_dir)
    try:
        first = wait_for_checkpoint(run_dir, p)
        shards_there = shard_pids(cluster, "w1")
        assert shards_there, "no shard ran on the worker to be killed"
        assert cluster.kill_node("w1") >= 3  # its raylet, its object store's host, its workers
        _out, err = p.communicate(timeout=900)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err[-4000:]
    assert cluster.alive_nodes() == 2
    report = report_of(run_dir)
    assert report["summary"]["state_hash"] == expected_hash
    # Every operation the scenario journaled applied, once: the hash says so; the journal too.
    journal = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    assert len(journal) == len(load_scenario(SCENARIO, hubs=HUBS, days=DAYS).commands)
    assert [op["metadata"]["state"] for op in report["operations"]] == ["DONE"] * len(journal)
    # The shards were on three nodes; the recovery is on the record (which shard, from which
    # checkpoint, on which surviving node, how long).
    said = " ".join(err.split())
    assert "3 shards on 3 nodes: 10.213.0.1 (1), 10.213.0.2 (1), 10.213.0.3 (1)" in said
    assert "RECOVERED: its process died; restored from the checkpoint of" in said, said[-3000:]
    assert first >= 0
    # The node comes back and is used again: a new run spreads its shards over all three.
    cluster.add_worker("w1")
    r = cluster.run([sys.executable, "-m", "twin.cli", "run", str(SCENARIO), "--hubs", "50k", "--days", "0.25",
                     "--shards", "3", "--run-dir", str(tmp_path / "runs" / "after"), "--address", cluster.address],
                    timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "3 shards on 3 nodes: 10.213.0.1 (1), 10.213.0.2 (1), 10.213.0.3 (1)" in " ".join(r.stderr.split())


def test_the_head_dies_mid_run_and_resume_on_a_new_head_reaches_the_fault_free_state(tmp_path, expected_hash):
    run_dir = tmp_path / "runs" / "head-death"
    with NamespacedCluster(workers=2, cpus=2, tag=f"th{time.monotonic_ns() % 10000}") as first:
        first.start()
        p = start_run(first, run_dir)
        try:
            wait_for_checkpoint(run_dir, p)
            first.kill_node("head")  # the GCS, the head's raylet, the `twin run` driver with them
            p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
        assert p.returncode != 0
        assert not (run_dir / "report.json").exists()
    with NamespacedCluster(workers=2, cpus=2, tag=f"tn{time.monotonic_ns() % 10000}") as second:
        second.start()
        r = second.run([sys.executable, "-m", "twin.cli", "run", "--resume", str(run_dir), "--address",
                        second.address], timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "resumed" in r.stderr
    assert report_of(run_dir)["summary"]["state_hash"] == expected_hash


def test_a_run_directory_a_worker_cannot_read_is_refused_before_anything_is_built(cluster, tmp_path):
    local = tmp_path / "node-local" / "run"  # the workers see their own empty tmpfs here
    r = cluster.run([sys.executable, "-m", "twin.cli", "run", str(SCENARIO), "--hubs", "50k", "--days", "0.5",
                     "--run-dir", str(local), "--address", cluster.address], timeout=300, cwd=ROOT)
    assert r.returncode == 2, r.stderr[-3000:]
    message = " ".join(r.stderr.split())
    assert f"--run-dir: {local} is not shared by the cluster: 2 of its 3 nodes cannot read a file written there" \
        in message
    assert "10.213.0.2 (no such file)" in message and "10.213.0.3 (no such file)" in message
    assert not (local / "journal.jsonl").exists() and not (local / "checkpoints").exists()
