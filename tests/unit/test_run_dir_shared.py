"""On a cluster with nodes on other machines, a run directory on this machine's own disk is
refused before anything is built (issue 15): a shard Ray restarts elsewhere must find its
checkpoints. The rule, on mount tables as psutil gives them."""

from __future__ import annotations

import pytest

from twin.engine.address import filesystem_of, node_local_reason

MOUNTS = [("/", "overlay"), ("/proc", "proc"), ("/mnt/shared", "nfs4"), ("/mnt/shared/scratch", "ext4"),
          ("/data", "xfs"), ("/mnt/bucket", "fuse.s3fs"), ("/tmp", "tmpfs")]


@pytest.mark.parametrize(("path", "want"), [
    ("/work/runs/x", ("/", "overlay")),
    ("/mnt/shared/runs/x", ("/mnt/shared", "nfs4")),
    ("/mnt/shared/scratch/x", ("/mnt/shared/scratch", "ext4")),  # the longer mount point holds it
    ("/mnt/sharedother/x", ("/", "overlay")),  # a prefix of the name is not a parent directory
    ("/data", ("/data", "xfs")),
    ("/tmp/run", ("/tmp", "tmpfs")),
])
def test_the_mount_that_holds_a_path(path, want):
    assert filesystem_of(path, MOUNTS) == want


def test_the_later_of_two_mounts_at_one_point_is_the_one_on_top():
    assert filesystem_of("/x/y", [("/", "ext4"), ("/x", "ext4"), ("/x", "nfs")]) == ("/x", "nfs")


def test_a_cluster_on_this_machine_alone_takes_any_directory():
    assert node_local_reason("/tmp/run", node_ips={"10.0.0.5"}, this_ip="10.0.0.5", partitions=MOUNTS) is None


@pytest.mark.parametrize("path", ["/mnt/shared/runs/solr", "/mnt/bucket/runs/solr"])
def test_a_shared_filesystem_serves_a_cluster_of_machines(path):
    assert node_local_reason(path, node_ips={"10.0.0.5", "10.0.0.6"}, this_ip="10.0.0.5", partitions=MOUNTS) is None


def test_a_local_disk_is_refused_on_a_cluster_of_machines_naming_the_filesystem_and_the_others():
    why = node_local_reason("/data/runs/solr", node_ips={"10.0.0.5", "10.0.0.6", "10.0.0.7"}, this_ip="10.0.0.5",
                            partitions=MOUNTS)
    assert why is not None
    assert why.startswith("--run-dir: /data/runs/solr is on this machine's own disk (xfs mounted at /data)")
    assert "2 other machine(s) (10.0.0.6, 10.0.0.7)" in why and "NFS" in why
