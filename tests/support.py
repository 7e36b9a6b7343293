"""Helpers shared by the integration and end-to-end suites: run directories, the `twin` command in
a subprocess, and the live stack (engine on local Ray + gRPC API on port 0 + users) that the API
suites share through the session fixture `live_api` (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from twin.client import TwinClient
from twin.engine.supervisor import FleetSupervisor
from twin.model.catalog import AREA_BY_ID, WAN_LABEL, Csp, MessageType, WanTech, supplier_code
from twin.model.config import FleetConfig
from twin.services.anomaly import AnomalyDetector
from twin.services.identity import UserStore
from twin.services.server import ApiServer

TWIN = [sys.executable, "-m", "twin.cli"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def run_dir(tag: object) -> Path:
    """A fresh run directory (journal, manifest) for a supervisor under test."""
    return Path(tempfile.mkdtemp(prefix=f"twin-test-{tag}-"))


def twin(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`twin ARGS...` as a user runs it, in a subprocess; never raises on a non-zero exit."""
    return subprocess.run([*TWIN, *args], capture_output=True, text=True, timeout=timeout, env=env or ENV,
                          check=False)


class Api:
    """The live stack: a running engine (20,000 hubs, seed 9, two shards, stepped two ticks; or
    `config`) and a gRPC API on a port the system picks, with users created for a chosen premises."""

    def __init__(self, tmp: Path, *, threshold: int = 10_000, config: FleetConfig | None = None, **supervisor: Any):
        self.sup = FleetSupervisor(config or FleetConfig(hubs=20_000, seed=9, block_size=1024),
                                   **{"shards": 2, **supervisor}, run_dir=run_dir("api"))
        self.tmp = tmp
        self.sup.step(2)
        # A premises with gas, reachable, supplied by one supplier for both fuels.
        recs, _ = self.sup.list_hubs({"reachable": True, "payment": True}, 0, 2000)
        good = [r for r in recs if r["gas_supplier"] == r["supplier"] and r["smets"] == "SMETS2"]
        self.hub = good[0]
        # A second premises of the same supplier and area, for requests that change the hub itself
        # (8.14.x field updates) so the first stays reachable for the other tests.
        self.hub2 = next(r for r in good[1:] if r["supplier"] == self.hub["supplier"]
                         and r["area"]["id"] == self.hub["area"]["id"])
        sup_code = supplier_code(self.hub["supplier"])
        area = self.hub["area"]["id"]
        other_area = next(a for a in AREA_BY_ID if a != area)
        self.users = UserStore()
        self.tokens: dict[str, str] = {}
        self.keys: dict[str, Path] = {}
        parties = {"IS": sup_code, "ES": sup_code, "GS": sup_code, "ED": area, "GT": area, "RSA": sup_code, "OU": 0}
        for role, party in parties.items():
            self._user(tmp, role.lower(), role, party)
        self._user(tmp, "operator", "OPERATOR", 0)
        self._user(tmp, "other-is", "IS", 1 if sup_code != 1 else 2)
        self._user(tmp, "far-ed", "ED", other_area)
        self.anomaly = AnomalyDetector(default_threshold=threshold)
        self.server = ApiServer(self.sup, self.users, port=0, anomaly=self.anomaly)
        self.server.start()

    def settle(self, max_ticks: int = 96) -> None:
        """Step the fleet until the chosen premises (`hub`) is reachable and the network answers
        a read of it within the on-demand Target Response Time: an earlier test on this shared
        stack may have cut its area's power (and its alerts queue on its link for a while), and
        every test starts from a premises it can reach and read at once. At most `max_ticks` (two
        days) are run; AssertionError beyond."""
        for _ in range(max_ticks):
            rec = self.sup.hub(self.hub["hub"])
            if rec["reachable"] and self.read_latency_s(rec) <= self.target_s:
                return
            self.sup.step(1)
        raise AssertionError(f"the premises {self.hub['device_id']} stayed unreachable or congested for {max_ticks} "
                             "ticks")

    @property
    def target_s(self) -> float:
        """The on-demand Target Response Time of the run, seconds."""
        return float(self.sup.config.params.capacity.target_response_s["ON_DEMAND"])

    def read_latency_s(self, rec: dict[str, Any]) -> float:
        """What the capacity model says a read of the hub `rec` (its record) takes now (0 when
        the model is off)."""
        table = self.sup.latency_table()
        if table is None:
            return 0.0
        wan = next(w for w in WanTech if WAN_LABEL[w] == rec["wan"])
        return table.seconds(csp=int(Csp[rec["region"].upper()]), wan=int(wan), cell=int(rec["cell"]),
                             message=MessageType.ON_DEMAND_READ)

    def user(self, user_id: str, role: str, party: int) -> None:
        """Add a user (its token and signing key kept for `client(user_id)`)."""
        self._user(self.tmp, user_id, role, party)

    def _user(self, tmp: Path, user_id: str, role: str, party: int) -> None:
        _, token, key = self.users.issue_user(user_id, role, party, keys_dir=tmp / "keys")
        self.tokens[user_id], self.keys[user_id] = token, key

    def client(self, user: str, **kw: Any) -> TwinClient:
        return TwinClient(self.server.address, token=self.tokens.get(user, user), private_key=self.keys.get(user),
                          user_id=user, **kw)

    def close(self) -> None:
        self.server.stop(1.0)
        self.sup.shutdown()


def scenario_state_hash(path: Path, *, hubs: int, days: float) -> str:
    """The final state hash of scenario file `path` at `hubs` hubs for `days` days, run by the
    in-process model: what a fault-free run on any engine or cluster must end with."""
    from twin.model.fleet import LocalFleet
    from twin.studies.scenario import load_scenario

    sc = load_scenario(path, hubs=hubs, days=days)
    f = LocalFleet(sc.config)
    for cmd in sc.commands:
        f.accept(cmd)
    f.run(sc.ticks)
    return f.state_hash()
