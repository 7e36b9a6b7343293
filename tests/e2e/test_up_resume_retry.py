"""`twin up --resume` keeps a DCC User's retry safe across a restart of the whole process: a
top-up sent to `twin up`, Ctrl-C, `twin up --resume`, the same top-up again. Two `twin up`
processes in turn, so it belongs to the end-to-end tier (the in-process form of the same contract is
tests/integration/test_api_contracts.py::test_a_retry_after_a_restart_with_resume_gets_the_first_operation)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import grpc

from tests.integration.test_api import expect
from twin.client import TwinClient
from twin.services.errors import bad_request_fields

ORIG = "90-B3-D5-1F-30-01-00-00"  # the sending User's EUI in its DUIS RequestIDs


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _twin_up(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "twin.cli", "up", "--no-dashboard", "--hubs", "20000", "--seed", "9",
                             "--status-every", "3600", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _serving(*args: str) -> tuple[subprocess.Popen, str]:
    """`twin up` on a free port, once its API answers health checks; a port taken meanwhile by
    another process on the machine is given up for another."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    for _attempt in range(3):
        address = f"127.0.0.1:{_free_port()}"
        proc = _twin_up(*args, "--grpc-port", address.split(":")[1])
        deadline = time.monotonic() + 300
        with grpc.insecure_channel(address) as ch:
            while proc.poll() is None:
                try:
                    health_pb2_grpc.HealthStub(ch).Check(
                        health_pb2.HealthCheckRequest(service="twin.dcc.v1.DccService"), timeout=2)
                    return proc, address
                except grpc.RpcError:
                    assert time.monotonic() < deadline, "twin up did not start serving"
                    time.sleep(0.5)
        err = proc.stderr.read()
        proc.stderr.close()
        assert "in use" in err, err
    raise AssertionError("no free port for twin up")


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_twin_up_resume_answers_a_retry_with_the_first_operation(tmp_path):
    """`twin up`, a top-up, Ctrl-C; `twin up --resume`, the same top-up again: the first Operation,
    one journal record, and the DUIS counter still enforced."""
    from twin.model.catalog import SUPPLIERS
    from twin.services.bootstrap import load_or_create_users

    home, runs = tmp_path / "home", tmp_path / "run"
    store, tokens_path = load_or_create_users(home)
    tokens = json.loads(tokens_path.read_text())
    supplier = next(u for u in store.users() if u.role == "IS")
    proc, address = _serving("--home", str(home), "--run-dir", str(runs))
    try:
        with TwinClient(address, token=tokens["operator"]) as op:
            hub = op.list_hubs(f"supplier={SUPPLIERS[supplier.party_id - 1].name} AND payment=prepayment "
                               "AND reachable=true", page_size=1).hubs[0]
        rid = f"{ORIG}:{hub.comms_hub.device_id}:41"
        with TwinClient(address, token=tokens[supplier.user_id]) as c:
            first = c.submit("2.2", hub.name, {"amount_pence": 250}, request_id=rid)
    finally:
        _stop(proc)
    assert first.response.operation
    proc, address = _serving("--home", str(home), "--resume", str(runs))
    try:
        with TwinClient(address, token=tokens[supplier.user_id]) as c:
            again = c.submit("2.2", hub.name, {"amount_pence": 250}, request_id=rid)
            assert again.response.operation == first.response.operation
            e = expect(grpc.StatusCode.FAILED_PRECONDITION, c.submit, "2.2", hub.name, {"amount_pence": 250},
                       request_id=f"{ORIG}:{hub.comms_hub.device_id}:40")
            assert bad_request_fields(e) == ["request_id"]
    finally:
        _stop(proc)
    recs = [json.loads(x) for x in (runs / "journal.jsonl").read_text().splitlines()]
    assert [r["request"]["id"] for r in recs if "request" in r] == [rid]
