"""The parent's side of starting a child process and knowing it is ready (the gRPC health checking
pattern): the child is given a readiness file to write once it serves (child.write_ready); the
parent waits for that file, or for the child's exit, and learns from it where the child listens.
Nothing is read from the child's human-facing output."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twin.util.child import READY_VERSION

# Generous: a dashboard imports Dash and Plotly first, on a machine that may be busy building a fleet.
READY_TIMEOUT_S = 120.0
_POLL_S = 0.05


class LaunchError(Exception):
    """A process or port a launch needed could not be had (a port in use, a child that did not
    start); the message names the option to change, the command line prints it as one line."""


class ChildFailed(LaunchError):
    """A child exited, or did not say it was ready in time, before it was ready."""


@dataclass
class Child:
    """A started child process and what it reported when ready."""

    name: str
    proc: subprocess.Popen[bytes]
    ready: dict[str, Any]


def start_child(name: str, cmd: Sequence[str], *, ready_file: Path, env: dict[str, str],
                timeout_s: float = READY_TIMEOUT_S) -> Child:
    """Start `cmd` (which must accept `--ready-file PATH` and write it with child.write_ready once
    it serves) and return it once ready. ChildFailed if it exits first or is not ready within
    `timeout_s` (then it is stopped: nothing is left behind by a failed start)."""
    ready_file.unlink(missing_ok=True)
    proc = subprocess.Popen([*cmd, "--ready-file", str(ready_file)], env=env)
    try:
        return Child(name, proc, wait_ready(proc, ready_file, timeout_s=timeout_s, name=name))
    except BaseException:
        stop_children([proc])
        raise


def wait_ready(proc: subprocess.Popen[Any], ready_file: Path, *, timeout_s: float, name: str) -> dict[str, Any]:
    """What the child wrote in `ready_file` once it is ready; ChildFailed if it exits, or writes a
    file of another process or format version, or `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if ready_file.exists():
            info = json.loads(ready_file.read_text())
            if info.get("version") != READY_VERSION or info.get("pid") != proc.pid:
                raise ChildFailed(f"{name}: {ready_file} is not this child's readiness file "
                                  f"(pid {info.get('pid')}, version {info.get('version')})")
            return dict(info)
        code = proc.poll()
        if code is not None:
            raise ChildFailed(f"{name} did not start (exit {code}); see its message above")
        if time.monotonic() > deadline:
            raise ChildFailed(f"{name} did not say it was ready within {timeout_s:g} s")
        time.sleep(_POLL_S)


def stop_children(procs: Sequence[subprocess.Popen[Any]], grace_s: float = 10.0) -> None:
    """SIGTERM to each, then wait; a child still there after `grace_s` is killed."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
