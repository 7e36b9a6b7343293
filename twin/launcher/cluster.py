"""Runs on a Ray cluster: `twin submit` sends a scenario as a Ray job (the Ray Jobs API) whose
entrypoint is the same `twin run`, so a submitted run and a local run of the same inputs produce
the same report. The report lands in a run directory: a path the head node can write (shared
storage on a real cluster), or a URI (copied there with fsspec when it is installed)."""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from twin.engine.address import RayAddressError, check_reachable

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
AGENT_WAIT_S = 90.0


def job_client(address: str):
    # Ray clusters authenticate job submissions with a token (~/.ray/auth_token or RAY_AUTH_TOKEN);
    # Ray reads the mode when it is first imported.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    from ray.job_submission import JobSubmissionClient

    check_reachable(address)  # seconds, naming the address, instead of the SDK's traceback
    try:
        return JobSubmissionClient(address)
    except ConnectionError as e:
        raise RayAddressError(f"--address: cannot reach a Ray job server at {address}: {e}") from None


def entrypoint(scenario_name: str, *, run_dir: str, hubs: int | None, seed: int | None, shards: int | None,
               days: float | None, python: str = "python") -> str:
    args = [python, "-m", "twin.cli", "run", scenario_name, "--address", "auto", "--run-dir", run_dir]
    for flag, value in (("--hubs", hubs), ("--seed", seed), ("--shards", shards), ("--days", days)):
        if value is not None:
            args += [flag, str(value)]
    return shlex.join(args)


def submit(scenario: Path, *, address: str, run_dir: str, hubs: int | None = None, seed: int | None = None,
           shards: int | None = None, days: float | None = None, wait: bool = True, log=print,
           python: str = "python") -> dict[str, Any]:
    """Submit a scenario run as a Ray job; with `wait`, follow it to the end."""
    client = job_client(address)
    stage = Path(tempfile.mkdtemp(prefix="twin-submit-"))
    shutil.copyfile(scenario, stage / scenario.name)
    local_dir, remote = _split(run_dir)
    kwargs = {"entrypoint": entrypoint(scenario.name, run_dir=str(local_dir), hubs=hubs, seed=seed, shards=shards,
                                       days=days, python=python),
              "runtime_env": {"working_dir": str(stage), "env_vars": {"RAY_USAGE_STATS_ENABLED": "0"}},
              "metadata": {"twin_scenario": scenario.name}}
    # A head that has just started answers before its job agent is up: retry that, nothing else.
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            job_id = client.submit_job(**kwargs)
            break
        except RuntimeError as e:
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(1.0)
    log(f"submitted job {job_id} to {address}")
    if not wait:
        return {"job_id": job_id, "status": "PENDING"}
    status = "PENDING"
    while status not in TERMINAL:
        time.sleep(1.0)
        status = client.get_job_status(job_id).value
    logs = client.get_job_logs(job_id)
    if status == "SUCCEEDED" and remote:
        _upload(local_dir, remote)
    return {"job_id": job_id, "status": status, "logs": logs, "run_dir": run_dir}


def _split(run_dir: str) -> tuple[Path, str | None]:
    """A local path for the job to write, and the URI to copy it to (None for a plain path)."""
    if "://" not in run_dir:
        return Path(run_dir).resolve(), None
    if run_dir.startswith("file://"):
        return Path(run_dir[len("file://"):]).resolve(), None
    return Path(tempfile.mkdtemp(prefix="twin-run-")), run_dir


def _upload(local: Path, uri: str) -> None:
    try:
        import fsspec
    except ImportError:
        raise RuntimeError(f"writing the report to {uri} needs fsspec (and its filesystem package); "
                           f"the report is in {local}") from None
    fs, root = fsspec.core.url_to_fs(uri)
    fs.put(str(local), root, recursive=True)
