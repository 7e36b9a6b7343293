"""The launcher learns that a child is ready, and where it listens, from the readiness file the
child writes (never from what it prints); a child that dies first, or a stale file, is an error
naming the child. Real child processes, no Ray."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from twin.launcher.process import ChildFailed, LaunchError, start_child, stop_children, wait_ready
from twin.util.child import READY_VERSION, write_ready

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

# A child that listens on a port the system picks, says so on stdout in words no parser could
# rely on, writes its readiness file, and answers one connection with its port.
SERVER = """
import argparse, socket, sys
from pathlib import Path
from twin.util.child import write_ready
p = argparse.ArgumentParser()
p.add_argument("--ready-file")
args = p.parse_args()
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print("listening somewhere, have a nice day", flush=True)
port = s.getsockname()[1]
write_ready(Path(args.ready_file), port=port)
conn, _ = s.accept()
conn.sendall(str(port).encode())
conn.close()
"""


def test_a_child_on_port_0_is_found_through_its_readiness_file(tmp_path):
    child = start_child("the test server", [sys.executable, "-c", SERVER], ready_file=tmp_path / "ready.json",
                        env=ENV, timeout_s=60)
    try:
        assert child.ready["pid"] == child.proc.pid and child.ready["version"] == READY_VERSION
        port = child.ready["port"]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            assert c.recv(16) == str(port).encode()
        assert child.proc.wait(timeout=30) == 0
    finally:
        stop_children([child.proc])


def test_a_child_that_exits_before_it_is_ready_is_an_error_with_its_exit_code(tmp_path):
    with pytest.raises(ChildFailed, match=r"^the test server did not start \(exit 3\); see its message above$"):
        start_child("the test server", [sys.executable, "-c", "import sys; sys.exit(3)"],
                    ready_file=tmp_path / "ready.json", env=ENV, timeout_s=60)


def test_a_child_that_never_says_it_is_ready_is_stopped_after_the_timeout(tmp_path):
    marker = tmp_path / "pid"
    code = f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    with pytest.raises(ChildFailed, match="did not say it was ready within 2 s"):
        start_child("the sleeper", [sys.executable, "-c", code], ready_file=tmp_path / "ready.json", env=ENV,
                    timeout_s=2)
    pid = int(marker.read_text())
    with pytest.raises(ProcessLookupError):  # stopped and reaped: nothing left behind
        os.kill(pid, 0)


def test_a_readiness_file_of_another_process_is_refused(tmp_path):
    ready = tmp_path / "ready.json"
    write_ready(ready, port=1234)  # this process's, not the child's
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        with pytest.raises(ChildFailed, match="is not this child's readiness file"):
            wait_ready(proc, ready, timeout_s=10, name="the sleeper")
    finally:
        stop_children([proc])


def test_a_launch_failure_is_a_user_error_of_the_command_line():
    from twin.cli.base import USER_ERRORS

    assert issubclass(ChildFailed, LaunchError) and LaunchError in USER_ERRORS


def test_write_ready_leaves_only_the_whole_file(tmp_path):
    path = tmp_path / "ready.json"
    write_ready(path, url="http://127.0.0.1:8050", port=8050)
    assert json.loads(path.read_text()) == {"version": READY_VERSION, "pid": os.getpid(), "url": "http://127.0.0.1:8050",
                                            "port": 8050}
    assert [p.name for p in tmp_path.iterdir()] == ["ready.json"]  # no temporary left beside it
