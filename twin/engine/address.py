"""Ray cluster addresses: parsed with an explicit grammar and checked before Ray is asked to join
one (no Ray import here, so the CLI can name the error without loading Ray)."""

from __future__ import annotations

import re
import socket

CONNECT_TIMEOUT_S = 5.0
# [scheme://]host:port, ASCII only: a host name or IPv4 address, or an IPv6 address in brackets;
# a port of 1 to 5 ASCII digits. (Python's int() and urlsplit take any Unicode digit; an address
# written with, say, Arabic-Indic digits is refused here rather than read as another port.)
_ADDRESS = re.compile(r"(?:(?P<scheme>[a-z][a-z0-9+.-]*)://)?"
                      r"(?P<host>\[[0-9a-f:.]+\]|[a-z0-9](?:[a-z0-9.-]{0,252}[a-z0-9])?)"
                      r"(?::(?P<port>[0-9]{1,5}))?/?", re.ASCII | re.IGNORECASE)
DEFAULT_PORTS = {"http": 80, "https": 443}  # a job server's URL may leave its port out


class RayAddressError(ConnectionError):
    """A Ray cluster address that is malformed or cannot be reached (the CLI says so, exit 2)."""


def parse_address(address: str) -> tuple[str, int]:
    """(host, port) of "HOST:PORT", "[IPV6]:PORT", "SCHEME://HOST:PORT" or "http(s)://HOST";
    RayAddressError otherwise."""
    m = _ADDRESS.fullmatch(address.strip()) if isinstance(address, str) else None
    port = 0
    if m is not None:
        port = int(m["port"]) if m["port"] else DEFAULT_PORTS.get((m["scheme"] or "").lower(), 0)
    if m is None or not 1 <= port <= 65535:
        raise RayAddressError(f"--address: {address!r} is not a Ray cluster address (HOST:PORT, ray://HOST:PORT, "
                              "http://HOST:PORT for a job server, or auto)")
    return m["host"].strip("[]"), port


def check_reachable(address: str, *, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise RayAddressError unless `address` accepts a TCP connection within `timeout_s`. "auto"
    is left to Ray (it fails at once if it finds no cluster)."""
    if address == "auto":
        return
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as e:
        reason = "no answer" if isinstance(e, TimeoutError) else (e.strerror or str(e)).lower()
        raise RayAddressError(f"--address: cannot reach a Ray cluster at {address} ({reason} within "
                              f"{timeout_s:g} s)") from None


class NodeLocalRunDir(RayAddressError):
    """A run directory on this machine's own disk for a run on a cluster with other machines (the
    CLI says so, exit 2): a shard Ray restarts on another node could not read its checkpoints."""


def filesystem_of(path: str, partitions: list[tuple[str, str]]) -> tuple[str, str]:
    """(mount point, filesystem type) of the mount that holds `path` (an absolute path; it need not
    exist yet), from `partitions` as (mount point, type) pairs: the longest mount point that is a
    prefix of it. ("/", "unknown") if none is."""
    best, best_len = ("/", "unknown"), -1
    for mount, fstype in partitions:
        m = mount.rstrip("/") or "/"
        inside = m == "/" or path == m or path.startswith(m + "/")
        # The longest mount point holding it; of two at the same point, the later (mounted on top).
        if inside and len(m) >= best_len:
            best, best_len = (m, fstype), len(m)
    return best


def node_local_reason(run_dir: str, *, blind: dict[str, str], nodes: int,
                      partitions: list[tuple[str, str]]) -> str | None:
    """Why `run_dir` (absolute) cannot serve a cluster of `nodes` alive nodes of which `blind`
    ({node IP: what it found instead}) could not read a file this machine had just written there;
    None when every node could. The sentence names the directory's filesystem as this machine
    sees it and the nodes that cannot see it."""
    if not blind:
        return None
    mount, fstype = filesystem_of(run_dir, partitions)
    shown = ", ".join(f"{ip} ({what})" for ip, what in sorted(blind.items())[:3])
    more = f" and {len(blind) - 3} more" if len(blind) > 3 else ""
    return (f"--run-dir: {run_dir} is not shared by the cluster: {len(blind)} of its {nodes} nodes cannot read a file "
            f"written there from this one ({shown}{more}); here it is on {fstype} mounted at {mount}. A shard Ray "
            "restarts on such a node could not read its checkpoints, and the run could not recover. Give a directory "
            "every node mounts at the same path (NFS, a shared volume), or run on this machine alone (no --address).")
