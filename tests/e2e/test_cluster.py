"""Cluster runs: several Ray nodes on this machine give the same state as one; `twin submit`
through a real Ray job server gives the same report as `twin run`; the manifests pin Ray."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tests.support import scenario_state_hash

ROOT = Path(__file__).resolve().parents[2]
RAY_VERSION = "2.60.0"
SCENARIO = ROOT / "scenarios" / "storm-outage.yaml"


def local_hash(hubs: int, days: float) -> str:
    return scenario_state_hash(SCENARIO, hubs=hubs, days=days)


def test_one_and_three_nodes_give_the_same_final_state():
    # 50,000 hubs: four blocks, so three shards (a shard holds whole blocks).
    p = subprocess.run([sys.executable, "-m", "twin.bench.cluster", str(SCENARIO), "50000", "0.75"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    one, three = r["runs"]
    assert one["nodes"] == 1 and three["nodes"] == 3
    assert three["shard_nodes"] == 3  # the shards really are on three nodes
    assert one["state_hash"] == three["state_hash"] == local_hash(50000, 0.75)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_submit_runs_a_scenario_as_a_ray_job_with_the_same_report(tmp_path):
    gcs, dash = _free_port(), _free_port()
    # Its own agent ports: this test process already runs a local Ray (the shared test session),
    # whose agents hold Ray's default ports.
    agent_ports = [f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
                   f"--metrics-export-port={_free_port()}", f"--runtime-env-agent-port={_free_port()}",
                   f"--node-manager-port={_free_port()}", f"--object-manager-port={_free_port()}",
                   f"--ray-client-server-port={_free_port()}"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0"}
    ray_bin = Path(sys.executable).parent / "ray"
    head = subprocess.Popen([str(ray_bin), "start", "--head", "--block", f"--port={gcs}", "--num-cpus=2",
                             "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                             "--disable-usage-stats", f"--temp-dir={tempfile.mkdtemp(prefix='rt', dir='/tmp')}",
                             *agent_ports],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", dash)) == 0:
                    break
            time.sleep(0.5)
        run_dir = tmp_path / "submitted"
        p = subprocess.run([sys.executable, "-m", "twin.cli", "submit", str(SCENARIO), "--address",
                            f"http://127.0.0.1:{dash}", "--hubs", "20000", "--days", "0.75", "--run-dir", str(run_dir),
                            "--python", sys.executable], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
        assert "SUCCEEDED" in p.stdout
        report = json.loads((run_dir / "report.json").read_text())
        assert (run_dir / "report.html").exists() and (run_dir / "journal.jsonl").exists()
        assert report["summary"]["state_hash"] == local_hash(20000, 0.75)
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)


def test_manifests_and_launcher_config_parse_and_pin_ray():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"ray[default]=={RAY_VERSION}"' in pyproject
    docker = (ROOT / "cluster" / "Dockerfile").read_text()
    assert re.search(rf"^FROM rayproject/ray:{re.escape(RAY_VERSION)}-py311$", docker, re.M)
    assert f"ray[default]=={RAY_VERSION}" in docker
    aws = yaml.safe_load((ROOT / "cluster" / "aws" / "cluster.yaml").read_text())
    assert aws["docker"]["image"] == f"rayproject/ray:{RAY_VERSION}-py311"
    assert aws["head_node_type"] in aws["available_node_types"]
    assert any(f"ray[default]=={RAY_VERSION}" in c for c in aws["setup_commands"])
    assert all("127.0.0.1" in c for c in aws["head_start_ray_commands"] if "--head" in c)
    for name in ("raycluster.yaml", "rayjob.yaml"):
        doc = yaml.safe_load((ROOT / "cluster" / "kuberay" / name).read_text())
        assert doc["apiVersion"] == "ray.io/v1"
        spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
        assert spec["rayVersion"] == RAY_VERSION
        assert spec["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"
        images = [c["image"] for g in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
                  for c in g["template"]["spec"]["containers"]]
        assert images and all(img.endswith(f":{RAY_VERSION}") for img in images)
