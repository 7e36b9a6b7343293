"""A Ray cluster of separate nodes on this machine, each in its own Linux network namespace, for
the tests and benchmark of node death (issue 15): a head and workers, each its own raylet, object
store and IP address, joined by a bridge that lives in a namespace of its own, so nothing of the
cluster is reachable from the machine's own network and nothing of the machine's is touched.

Killing a node is killing every process in its namespace (`ip netns pids`): its raylet, object
store, workers and shards at once, as a reclaimed spot instance loses them. A worker may be given
a directory of its own (a tmpfs mounted over a shared path in a mount namespace of its own) to
stand for a machine's local disk: what the head writes there the worker cannot see.

Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2; `available()` says whether this machine
has them. Everything made is removed by `stop()` (the namespaces take their interfaces with them).

    with NamespacedCluster(workers=2, cpus=2) as c:
        c.start()
        p = c.popen(["python", "-m", "twin.cli", "run", ..., "--address", c.address])
        c.kill_node("w1")
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUBNET = "10.213.0"  # private; routed nowhere: the bridge has no address outside its namespace
GCS_PORT = 6379
CLUSTERS_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR


def available() -> str | None:
    """None when this machine can make namespaced nodes; else why not (for a test's skip)."""
    if os.geteuid() != 0:
        return "namespaced nodes need root (network and mount namespaces)"
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        return "namespaced nodes need iproute2 (ip) and util-linux (unshare)"
    probe = f"twprobe{os.getpid() % 100000}"
    ok = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None if ok else "this machine does not allow new network namespaces"


@dataclass
class Node:
    name: str  # "head", "w1", "w2", ...
    ip: str
    netns: str
    private_dir: Path | None = None  # a path this node sees as its own tmpfs
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None


@dataclass
class NamespacedCluster:
    """A head and `workers` worker nodes of `cpus` logical CPUs each, started by `start()`.

    `private_dir`: a directory each worker sees as a tmpfs of its own (the head and this process
    see the real one), standing for a machine's local disk. `env`: extra environment for every
    node (Ray's tuning variables, e.g. RAY_health_check_period_ms)."""

    workers: int = 2
    cpus: int = 2
    object_store_bytes: int = 512 * 2**20
    private_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    tag: str = field(default_factory=lambda: f"tw{os.getpid() % 100000}")
    nodes: dict[str, Node] = field(default_factory=dict)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="twin-nodes-")))
    _made: list[str] = field(default_factory=list)
    # Its own token: every node and driver of this cluster authenticates with it, and no token file
    # of this machine's (~/.ray/auth_token, which other clusters write) is read or changed.
    token: str = field(default_factory=lambda: secrets.token_hex(32))

    def ray_env(self) -> dict[str, str]:
        """The environment a process needs to join this cluster (nodes and drivers alike)."""
        return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token,
                # A process that started an embedded Ray turned multi-node clusters off in its own
                # environment (twin.engine.runtime.local_only); these nodes are a cluster.
                CLUSTERS_ENV: "1",
                **self.env, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}

    @property
    def switch(self) -> str:
        return f"{self.tag}sw"

    @property
    def address(self) -> str:
        """The GCS address to pass as --address (reachable from inside the namespaces only)."""
        return f"{self.nodes['head'].ip}:{GCS_PORT}"

    # -- the network ------------------------------------------------------------------------------
    def _ip(self, *args: str, netns: str | None = None) -> None:
        cmd = ["ip", *(["-n", netns] if netns else []), *args]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {p.stderr.strip()}")

    def _netns(self, name: str) -> str:
        ns = f"{self.tag}{name}"
        self._ip("netns", "add", ns)
        self._made.append(ns)
        self._ip("link", "set", "lo", "up", netns=ns)
        return ns

    def _wire(self, node: Node, index: int) -> None:
        """A veth pair: eth0 in the node's namespace, its peer on the bridge in the switch's."""
        port = f"{self.tag}p{index}"
        self._ip("link", "add", "eth0", "netns", node.netns, "type", "veth", "peer", "name", port, "netns",
                 self.switch)
        self._ip("addr", "add", f"{node.ip}/24", "dev", "eth0", netns=node.netns)
        self._ip("link", "set", "eth0", "up", netns=node.netns)
        self._ip("link", "set", port, "master", "br0", netns=self.switch)
        self._ip("link", "set", port, "up", netns=self.switch)

    # -- the nodes --------------------------------------------------------------------------------
    def start(self, timeout_s: float = 180.0) -> None:
        """Make the namespaces, start the head and wait for it, then the workers; returns once
        every node is alive in the cluster. RuntimeError (with the node's log) if one is not."""
        self._netns("sw")
        self._ip("link", "add", "br0", "type", "bridge", netns=self.switch)
        self._ip("link", "set", "br0", "up", netns=self.switch)
        self._add("head", 1)
        self._start_node(self.nodes["head"], head=True)
        self._wait_alive(1, timeout_s)
        for i in range(1, self.workers + 1):
            self.add_worker(f"w{i}", wait_s=None)
        self._wait_alive(1 + self.workers, timeout_s)

    def _add(self, name: str, host: int) -> Node:
        node = Node(name=name, ip=f"{SUBNET}.{host}", netns=self._netns(name))
        self._wire(node, host)
        self.nodes[name] = node
        return node

    def add_worker(self, name: str, *, wait_s: float | None = 180.0) -> Node:
        """Start a worker node `name` (a new one, or one killed before, in a fresh namespace)."""
        if name in self.nodes:
            self._drop_netns(self.nodes.pop(name).netns)
        host = 1 + int(name.lstrip("w")) if name.startswith("w") else 100 + len(self.nodes)
        node = self._add(name, host)
        node.private_dir = self.private_dir
        self._start_node(node, head=False)
        if wait_s:
            self._wait_alive(len([n for n in self.nodes.values() if n.proc and n.proc.poll() is None]), wait_s)
        return node

    def _start_node(self, node: Node, *, head: bool) -> None:
        ray_bin = str(Path(sys.executable).parent / "ray")
        temp = self.root / f"ray-{node.name}"
        temp.mkdir(parents=True, exist_ok=True)
        args = [ray_bin, "start", "--block", f"--node-ip-address={node.ip}", f"--num-cpus={self.cpus}",
                f"--object-store-memory={self.object_store_bytes}", "--disable-usage-stats",
                # One machine, several nodes: each its own temporary folder, so its own sockets.
                f"--temp-dir={temp}"]
        if head:
            args += ["--head", f"--port={GCS_PORT}", "--include-dashboard=false"]
        else:
            args += [f"--address={self.address}"]
        cmd = ["ip", "netns", "exec", node.netns]
        if node.private_dir is not None:
            # Its own mount namespace, where the directory is a fresh tmpfs: a machine's own disk.
            node.private_dir.mkdir(parents=True, exist_ok=True)
            script = f'mount -t tmpfs -o size=64m twin-local "{node.private_dir}" && exec "$@"'
            cmd += ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
        node.log = self.root / f"{node.name}.log"
        env = self.ray_env()
        with open(node.log, "ab") as log:
            node.proc = subprocess.Popen(cmd + args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)

    def _wait_alive(self, want: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.alive_nodes() >= want:
                return
            for n in self.nodes.values():
                if n.proc is not None and n.proc.poll() is not None and n.log is not None:
                    raise RuntimeError(f"Ray node {n.name} exited: {n.log.read_text()[-3000:]}")
            time.sleep(1.0)
        logs = "\n".join(f"--- {n.name}\n{n.log.read_text()[-1500:]}" for n in self.nodes.values() if n.log)
        raise RuntimeError(f"fewer than {want} Ray nodes alive after {timeout_s:g} s\n{logs}")

    def alive_nodes(self) -> int:
        """Nodes the cluster's GCS counts alive (asked from inside the head's namespace); 0 if the
        head does not answer."""
        code = ("import ray,sys; ray.init(address=sys.argv[1], log_to_driver=False, logging_level='ERROR'); "
                "print(sum(1 for n in ray.nodes() if n['Alive']))")
        p = self.run([sys.executable, "-c", code, self.address], timeout=120)
        try:
            return int(p.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return 0

    # -- running things on the head ---------------------------------------------------------------
    def command(self, args: list[str], node: str = "head") -> list[str]:
        return ["ip", "netns", "exec", self.nodes[node].netns, *args]

    def popen(self, args: list[str], node: str = "head", **kw: Any) -> subprocess.Popen[str]:
        """Start `args` inside `node`'s namespace (a driver on the head joins with --address)."""
        env = {**self.ray_env(), **kw.pop("env", {})}
        return subprocess.Popen(self.command(args, node), text=True, env=env, start_new_session=True, **kw)

    def run(self, args: list[str], node: str = "head", timeout: float = 600, **kw: Any) -> subprocess.CompletedProcess[str]:
        env = {**self.ray_env(), **kw.pop("env", {})}
        return subprocess.run(self.command(args, node), text=True, capture_output=True, env=env, timeout=timeout,
                              **kw)

    # -- faults -----------------------------------------------------------------------------------
    def pids(self, node: str) -> list[int]:
        p = subprocess.run(["ip", "netns", "pids", self.nodes[node].netns], capture_output=True, text=True)
        return [int(x) for x in p.stdout.split()]

    def kill_node(self, node: str) -> int:
        """SIGKILL every process of `node` (repeatedly, until none is left: a dying raylet's
        children may still be forking); returns how many were killed."""
        killed: set[int] = set()
        for _ in range(50):
            pids = [p for p in self.pids(node) if p != os.getpid()]
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        n = self.nodes[node]
        if n.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                n.proc.wait(timeout=10)
        return len(killed)

    def stop(self) -> None:
        """Kill every node's processes and remove the namespaces (with their interfaces)."""
        for name in list(self.nodes):
            with contextlib.suppress(OSError):
                self.kill_node(name)
        for ns in reversed(self._made):
            self._drop_netns(ns)
        self._made.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def _drop_netns(self, ns: str) -> None:
        for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if ns in self._made:
            self._made.remove(ns)

    def __enter__(self) -> NamespacedCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
