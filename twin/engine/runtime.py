"""Starting Ray: embedded and local by default, bound to loopback, no dashboard; a cluster only
when asked for by address."""

from __future__ import annotations

import logging
import os
from typing import Any

import ray

from twin.engine.address import CONNECT_TIMEOUT_S, NodeLocalRunDir, RayAddressError, check_reachable, node_local_reason


def start_ray(*, address: str | None = None, num_cpus: int | None = None,
              connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Start (or join) Ray once per process.

    With no address Ray starts a new instance of its own, every time: `ray.init(address="local")`,
    so neither `RAY_ADDRESS` in the environment nor the cluster Ray remembers from a past
    `ray start` (its `ray_current_cluster` file, or a GCS process found with `ps`) is joined, as
    `ray.init()` with no address would (ray._private.services.get_ray_address_from_environment).
    That instance runs on this machine only: its node address is 127.0.0.1 and its dashboard is
    off, so no Ray port faces the network.

    With an address ("HOST:PORT" of a cluster's GCS, "ray://HOST:PORT", or "auto" for the cluster
    `ray start` left on this machine) it joins that cluster; one whose address does not accept a
    connection within `connect_timeout_s` raises RayAddressError naming it, instead of Ray's
    minute-long wait for its GCS."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray's start-up banner and worker logs are noise to a CLI user; errors still surface.
    kwargs: dict[str, Any] = dict(include_dashboard=False, configure_logging=True, logging_level=logging.ERROR,
                  log_to_driver=False)
    if address:
        check_reachable(address, timeout_s=connect_timeout_s)
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as e:
            raise RayAddressError(f"--address: cannot join the Ray cluster at {address}: {e}") from None
    else:
        local_only()
        ray.init(address="local", num_cpus=num_cpus, **kwargs)


def check_run_dir_shared(run_dir: os.PathLike[str] | str) -> None:
    """On a cluster with nodes on other machines, refuse (NodeLocalRunDir) a run directory on
    this machine's own disk: checkpoints must be reachable from every node, or a shard restarted
    elsewhere cannot restore. Nothing to check for an embedded Ray or a cluster on this machine."""
    import psutil

    if not ray.is_initialized():
        return
    ips = {str(n["NodeManagerAddress"]) for n in ray.nodes() if n.get("Alive")}
    this = ray.util.get_node_ip_address()
    parts = [(p.mountpoint, p.fstype) for p in psutil.disk_partitions(all=True)]
    reason = node_local_reason(os.path.abspath(os.fspath(run_dir)), node_ips=ips, this_ip=this, partitions=parts)
    if reason is not None:
        raise NodeLocalRunDir(reason)


def local_only() -> None:
    """Keep an embedded Ray on loopback. Ray turns 127.0.0.1 into the machine's network address
    for its node (so other nodes could join) and its servers bind that address; its single-machine
    mode (the one it uses on macOS and Windows) keeps the node at 127.0.0.1. The variable reaches
    the processes Ray starts; the constant is read by this one, which imported Ray already."""
    from ray._private import ray_constants

    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
