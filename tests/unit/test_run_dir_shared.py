"""On a cluster, a run directory some node cannot read is refused before anything is built (issue
15): a shard Ray restarts elsewhere must find its checkpoints. Whether a node can read it is asked
of the node (twin.engine.runtime.check_run_dir_shared; the end-to-end test refuses a directory on a
worker's own tmpfs); these are the words and the mount lookup they use."""

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


def test_a_directory_every_node_reads_serves_the_cluster():
    assert node_local_reason("/data/runs/solr", blind={}, nodes=3, partitions=MOUNTS) is None


def test_a_directory_some_nodes_cannot_read_is_refused_naming_them_and_the_filesystem():
    why = node_local_reason("/data/runs/solr", blind={"10.0.0.7": "no such file", "10.0.0.6": "no answer within 60 s"},
                            nodes=3, partitions=MOUNTS)
    assert why == (
        "--run-dir: /data/runs/solr is not shared by the cluster: 2 of its 3 nodes cannot read a file written there "
        "from this one (10.0.0.6 (no answer within 60 s), 10.0.0.7 (no such file)); here it is on xfs mounted at "
        "/data. A shard Ray restarts on such a node could not read its checkpoints, and the run could not recover. "
        "Give a directory every node mounts at the same path (NFS, a shared volume), or run on this machine alone "
        "(no --address).")


def test_many_blind_nodes_are_counted_not_all_listed():
    blind = {f"10.0.0.{i}": "no such file" for i in range(10, 16)}
    why = node_local_reason("/tmp/run", blind=blind, nodes=7, partitions=MOUNTS)
    assert why is not None and "6 of its 7 nodes" in why and "10.0.0.12 (no such file) and 3 more)" in why
