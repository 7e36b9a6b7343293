"""Starting Ray: embedded and local by default, bound to loopback, no dashboard."""

from __future__ import annotations

import logging
import os

import ray


def start_ray(*, address: str | None = None, num_cpus: int | None = None) -> None:
    """Start (or join) Ray once per process.

    With no address Ray runs inside this process's session on this machine only: its node
    address is 127.0.0.1 and its dashboard is off, so no Ray port faces the network."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray's start-up banner and worker logs are noise to a CLI user; errors still surface.
    kwargs = dict(include_dashboard=False, configure_logging=True, logging_level=logging.ERROR,
                  log_to_driver=False)
    if address:
        ray.init(address=address, **kwargs)
    else:
        local_only()
        ray.init(num_cpus=num_cpus, **kwargs)


def local_only() -> None:
    """Keep an embedded Ray on loopback. Ray turns 127.0.0.1 into the machine's network address
    for its node (so other nodes could join) and its servers bind that address; its single-machine
    mode (the one it uses on macOS and Windows) keeps the node at 127.0.0.1. The variable reaches
    the processes Ray starts; the constant is read by this one, which imported Ray already."""
    from ray._private import ray_constants

    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def stop_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()
