"""Starting Ray: embedded and local by default, bound to loopback, no dashboard; a cluster only
when asked for by address."""

from __future__ import annotations

import logging
import os
import secrets
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


PROBE_TIMEOUT_S = 60.0  # a node that has not read the probe by then is named as not answering


def _read_probe(path: str) -> str:
    """What this node finds at `path`: the file's text, or "" when it cannot read it."""
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError):
        return ""


def check_run_dir_shared(run_dir: os.PathLike[str] | str) -> None:
    """Refuse (NodeLocalRunDir) a run directory that some node of the cluster cannot read: the
    checkpoints a shard restores from must be reachable from every node, or a shard Ray restarts
    elsewhere (its node died) cannot restore.

    Asked of the nodes themselves, not guessed from the filesystem's type: a file with a random
    token is written in the directory and a task pinned to each alive node (NodeAffinity, no CPU
    taken) reads it back. A node that finds nothing, another file, or does not answer within
    PROBE_TIMEOUT_S is named. Nodes that join later are not asked (a shard restarted on one that
    cannot see the directory fails its recovery with the checkpoint path named). Nothing to do
    for an embedded Ray or a cluster of one node."""
    import psutil
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if not ray.is_initialized():
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) <= 1:
        return
    folder = os.path.abspath(os.fspath(run_dir))
    os.makedirs(folder, exist_ok=True)
    token = secrets.token_hex(16)
    probe = os.path.join(folder, f".twin-probe-{token}")
    with open(probe, "w", encoding="ascii") as fh:
        fh.write(token)
        fh.flush()
        os.fsync(fh.fileno())
    reader: Any = ray.remote(num_cpus=0, max_retries=0)(_read_probe)
    try:
        # By node id: several nodes may share an IP (nodes started on one machine).
        refs = {str(n["NodeID"]): reader.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            str(n["NodeID"]), soft=False)).remote(probe) for n in nodes}
        ips = {str(n["NodeID"]): str(n["NodeManagerAddress"]) for n in nodes}
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=PROBE_TIMEOUT_S)
        blind: dict[str, str] = {}
        for node, ref in refs.items():
            ip = f"{ips[node]} node {node[:8]}" if list(ips.values()).count(ips[node]) > 1 else ips[node]
            if ref not in ready:
                blind[ip] = f"no answer within {PROBE_TIMEOUT_S:g} s"
                ray.cancel(ref, force=True)
                continue
            try:
                seen = ray.get(ref)
            except ray.exceptions.RayError as e:
                blind[ip] = f"could not look: {type(e).__name__}"
                continue
            if seen != token:
                blind[ip] = "another file" if seen else "no such file"
    finally:
        os.unlink(probe)
    parts = [(p.mountpoint, p.fstype) for p in psutil.disk_partitions(all=True)]
    reason = node_local_reason(folder, blind=blind, nodes=len(nodes), partitions=parts)
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
