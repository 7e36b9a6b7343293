"""`twin up`'s terminal tells the story: a power outage injected through the API appears on its
stdout as it starts, as its power cut lands, as the alerts peak, and as it ends."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support import ENV, TWIN
from twin.client import TwinClient
from twin.generated.fleet.v1 import fleet_pb2
from twin.launcher.process import wait_ready

# The simulated time every line of `twin up` starts with.
TIME = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}  "


@contextlib.contextmanager
def twin_up(tmp_path: Path, *, shards: int) -> Iterator[tuple[subprocess.Popen[str], list[str], dict, list[str]]]:
    """A real `twin up` (20k hubs, flat out, no dashboard) with its stdout lines collected as they
    come: yields (process, lines, what its readiness file said, a list that holds its stderr once it
    has stopped); stopped with Ctrl-C on the way out, and it must exit 0."""
    ready_file = tmp_path / "ready.json"
    proc = subprocess.Popen([*TWIN, "up", "--hubs", "20k", "--speed", "max", "--no-dashboard", "--shards", str(shards),
                             "--grpc-port", "0", "--status-every", "2", "--home", str(tmp_path / "home"),
                             "--run-dir", str(tmp_path / "run"), "--ready-file", str(ready_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    err: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    try:
        yield proc, lines, wait_ready(proc, ready_file, timeout_s=240, name="twin up"), err
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            reader.join(timeout=10)
            err.append(proc.stderr.read())
            proc.stdout.close()
            proc.stderr.close()


def test_an_outage_injected_through_the_api_is_told_from_start_to_end(tmp_path: Path) -> None:
    with twin_up(tmp_path, shards=1) as (_proc, lines, ready, errs):
        token = json.loads((tmp_path / "home" / "tokens.json").read_text())["operator"]
        with TwinClient(ready["grpc"], token=token) as c:
            op = c.create_event(power_outage=fleet_pb2.PowerOutage(area="London", fraction=0.5, duration_min=60))
            name = op.name
            done = c.wait_operation(name, timeout_s=240)
        assert done.done
        end = re.compile(TIME + re.escape(name) + r" power_outage DONE")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(end.match(x) for x in list(lines)):
            time.sleep(0.2)
    err = errs[0]
    story = [x.rstrip("\n") for x in lines if name in x or "ALERT PEAK" in x]
    print("\n".join(story))  # what a user sees, for the test log
    assert "Traceback" not in err
    mine = [x for x in story if name in x]
    assert re.fullmatch(TIME + re.escape(name) + r" power_outage started: London, 50% for 60 min", mine[0]), mine
    assert any(re.fullmatch(TIME + re.escape(name) + r" power_outage power cut at [\d,]+ of [\d,]+ premises in the area", x)
               for x in mine), mine
    assert re.match(TIME + re.escape(name) + r" power_outage DONE", mine[-1]), mine
    # The outage's alerts stand far above a quiet 20k fleet's: told as a peak, by kind.
    assert any("ALERT PEAK" in x and "power outage (AD1)" in x for x in story), story
    # Every line one plain line, the time first.
    assert all(re.match(TIME, x) for x in story)


def test_a_shard_whose_process_dies_is_told_recovered(tmp_path: Path) -> None:
    import psutil

    recovered = re.compile(TIME + r"shard \d RECOVERED: its process died; (restored from the checkpoint of .+|"
                                  r"rebuilt from the seed) on [0-9a-f.:]+, caught up \d+ half-hour\(s\) in [\d.]+ s")
    with twin_up(tmp_path, shards=2) as (proc, lines, _ready, errs):
        # One of this twin's shard processes (a descendant of it: Ray's workers are started by it).
        shards = [p for p in psutil.Process(proc.pid).children(recursive=True)
                  if "ShardActor" in " ".join(p.cmdline())]
        assert len(shards) == 2, shards
        shards[0].kill()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(recovered.match(x) for x in list(lines)):
            time.sleep(0.2)
    err = errs[0]
    told = [x.rstrip("\n") for x in lines if "RECOVERED" in x]
    print("\n".join(told))
    assert len(told) == 1 and recovered.fullmatch(told[0]), (told, err[-2000:])
