"""The cluster configs in cluster/ stay closed: Ray's dashboard and job server on the head's
loopback, its GCS and other ports inside the cluster (no public Service, load balancer, node port
or ingress), and token authentication on every Ray port."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
PUBLIC_SERVICE_TYPES = {"LoadBalancer", "NodePort"}


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def walk(node: Any):
    """Every mapping in a YAML tree."""
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def cluster_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] == "RayCluster":
        return [doc["spec"]]
    if doc["kind"] == "RayJob":
        return [doc["spec"]["rayClusterSpec"]]
    return []


KUBERAY = sorted((CLUSTER / "kuberay").glob("*.yaml"))
RAY_MANIFESTS = [p for p in KUBERAY if any(cluster_specs(d) for d in docs(p))]  # a RayCluster or RayJob


def test_there_are_kuberay_manifests_to_check():
    assert {p.name for p in RAY_MANIFESTS} == {"raycluster.yaml", "rayjob.yaml"}


@pytest.mark.parametrize("path", KUBERAY, ids=lambda p: p.name)
def test_kuberay_keeps_the_dashboard_job_server_and_gcs_inside(path):
    for doc in docs(path):
        assert doc["kind"] not in ("Ingress", "Route"), f"{path.name}: an {doc['kind']} exposes the cluster"
        if doc["kind"] == "Service":
            assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", path.name
        for spec in cluster_specs(doc):
            head = spec["headGroupSpec"]
            assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1", path.name
            assert head.get("serviceType", "ClusterIP") == "ClusterIP", path.name
        for node in walk(doc):
            assert node.get("serviceType") not in PUBLIC_SERVICE_TYPES, path.name
            assert node.get("type") not in PUBLIC_SERVICE_TYPES, path.name
            assert node.get("enableIngress") in (None, False), path.name
            assert "hostNetwork" not in node or node["hostNetwork"] is False, path.name


@pytest.mark.parametrize("path", RAY_MANIFESTS, ids=lambda p: p.name)
def test_kuberay_turns_token_authentication_on(path):
    specs = [s for d in docs(path) for s in cluster_specs(d)]
    assert specs, path.name
    for spec in specs:
        assert spec.get("authOptions", {}).get("mode") == "token", path.name


def test_a_rayjob_submits_from_inside_the_head_pod():
    for doc in docs(CLUSTER / "kuberay" / "rayjob.yaml"):
        if doc["kind"] == "RayJob":
            # Any other mode reaches the job server from outside the head Pod, which its loopback
            # dashboard refuses: the job would never be submitted.
            assert doc["spec"]["submissionMode"] == "SidecarMode"
            assert doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_the_aws_launcher_keeps_ray_inside_the_vpc_with_tokens():
    config = docs(CLUSTER / "aws" / "cluster.yaml")[0]
    assert config["provider"]["use_internal_ips"] is True
    head = " ".join(config["head_start_ray_commands"])
    workers = " ".join(config["worker_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "--ray-client-server-port" not in head  # no client server beyond the defaults
    for start in (head, workers):
        assert "RAY_AUTH_MODE=token ray start" in start
    # The token reaches every node from the submitting machine's default token file.
    assert config["file_mounts"]["/home/ray/.ray/auth_token"] == "~/.ray/auth_token"
    # No security group rule of ours opens a Ray port to the world.
    for node in walk(config):
        for rule in node.get("IpPermissions", []):
            ranges = [r.get("CidrIp") for r in rule.get("IpRanges", [])]
            assert "0.0.0.0/0" not in ranges or rule.get("FromPort") == 22, rule


def test_no_config_names_a_registry_host():
    # Images are built from cluster/Dockerfile and pushed where the user runs them.
    for path in [*KUBERAY, CLUSTER / "aws" / "cluster.yaml"]:
        for node in walk(docs(path)):
            image = node.get("image")
            if isinstance(image, str):
                assert "/" not in image.split(":")[0] or image.startswith("rayproject/"), (path.name, image)


@pytest.mark.parametrize("path", RAY_MANIFESTS, ids=lambda p: p.name)
def test_every_ray_node_mounts_the_shared_run_volume_at_one_path(path):
    # Node death (issue 15): a shard Ray restarts on another node restores from the run
    # directory, so the head and every worker group mount the same ReadWriteMany claim at one path.
    for spec in [s for d in docs(path) for s in cluster_specs(d)]:
        for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
            pod = group["template"]["spec"]
            claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod.get("volumes", [])
                      if "persistentVolumeClaim" in v}
            for c in pod["containers"]:
                mounts = {m["mountPath"]: claims.get(m["name"]) for m in c.get("volumeMounts", [])}
                assert mounts.get("/data/runs") == "twin-runs", (path.name, group.get("groupName", "head"))
    pvc = docs(CLUSTER / "kuberay" / "runs-pvc.yaml")[0]
    assert pvc["kind"] == "PersistentVolumeClaim" and pvc["metadata"]["name"] == "twin-runs"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
