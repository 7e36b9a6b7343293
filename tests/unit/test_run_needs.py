"""Prechecks (issue 16, item 3): before `twin run` or `twin up` builds anything it says the memory
and disk the run will need, and refuses with exit 2 naming what it needs and what is free."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import psutil
import pytest

from twin.cli import main
from twin.engine.needs import (
    CHECKPOINT_FIRST_BYTES_PER_HUB,
    CHECKPOINT_KEPT_BYTES_PER_HUB,
    GIB,
    HISTORY_BYTES_PER_TICK,
    MEMORY_BASE_BYTES,
    MEMORY_PER_STATE_BYTE,
    SERVING_BYTES,
    checkpoints_kept,
    estimate_needs,
    free_disk_bytes,
)
from twin.model.state import BYTES_PER_HUB


@pytest.fixture
def nothing_starts(monkeypatch):
    import twin.engine.runtime
    import twin.studies.scenario

    def never(*a, **k):
        raise AssertionError("nothing may be built when the run cannot fit")

    monkeypatch.setattr(twin.engine.runtime, "start_ray", never)
    monkeypatch.setattr(twin.studies.scenario, "run_scenario", never)


def test_the_estimate_is_the_measured_factors_times_the_fleet():
    n = estimate_needs(100_000_000, shards=2, checkpoint_every=48, days=1)
    state = 100_000_000 * BYTES_PER_HUB
    ckpt = 100_000_000 * CHECKPOINT_FIRST_BYTES_PER_HUB  # one checkpoint: the first, every column compressed
    assert n.state_bytes == state and n.checkpoint_bytes == ckpt
    # The state at its measured peak, the shards' copy of the last checkpoint, and a restore's packs.
    assert n.memory_bytes == int(state * MEMORY_PER_STATE_BYTE + MEMORY_BASE_BYTES + state + ckpt / 2)
    assert n.checkpoints_kept == 1 and n.history_bytes == 48 * HISTORY_BYTES_PER_TICK
    assert n.disk_bytes == ckpt + 48 * HISTORY_BYTES_PER_TICK
    served = estimate_needs(100_000_000, shards=2, checkpoint_every=48, days=1, serving=True)
    assert served.memory_bytes - n.memory_bytes == SERVING_BYTES
    none = estimate_needs(10, shards=1, checkpoint_every=None, days=30)
    assert none.checkpoints_kept == 0 and none.checkpoint_bytes == 0
    year = estimate_needs(30_000_000, shards=2, checkpoint_every=48, days=365)
    assert year.checkpoint_bytes == 30_000_000 * (CHECKPOINT_FIRST_BYTES_PER_HUB
                                                  + CHECKPOINT_KEPT_BYTES_PER_HUB * (year.checkpoints_kept - 1))


def test_checkpoints_kept_grow_with_the_log_of_the_run_not_its_length():
    # KEEP_CHECKPOINTS (4) newest, the one being written, then about two more per doubling.
    assert [checkpoints_kept(48 * d, 48) for d in (1, 2, 4, 5, 10)] == [1, 2, 4, 5, 7]
    year, decade = checkpoints_kept(48 * 365, 48), checkpoints_kept(48 * 3650, 48)
    assert 10 < year < decade <= year + 2 * 4


def test_a_fleet_beyond_this_machine_is_refused_naming_memory_before_anything_builds(capsys, tmp_path,
                                                                                     nothing_starts):
    hubs = 1_000_000_000
    need = estimate_needs(hubs, shards=os.cpu_count() or 1, checkpoint_every=48, days=1).memory_bytes
    assert need > psutil.virtual_memory().total  # more than this machine has at all
    assert main(["run", "--hubs", "1000M", "--run-dir", str(tmp_path / "r")]) == 2
    out = capsys.readouterr().err
    assert out.startswith("this run needs about") and "GiB of memory" in out
    assert f"--hubs: {hubs:,} hubs need about {need / GIB:.1f} GiB of memory" in out
    assert "GiB available; use fewer hubs or a cluster (--address)" in out
    assert not (tmp_path / "r").exists()


def test_a_hundred_million_hubs_states_what_they_need():
    n = estimate_needs(100_000_000, shards=2, checkpoint_every=48, days=1)
    assert n.memory_text().startswith(f"about {n.memory_bytes / GIB:.1f} GiB of memory (4.66 GiB of hub state")
    assert "GiB of disk for 1 days (1 checkpoint(s) in 1.86 GiB of column packs, 20 B/hub for the first" in n.disk_text()


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 20 MiB tmpfs (as root); else skip: the disk check is about a real filesystem's free space."""
    d = tmp_path / "tiny"
    d.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(d)], check=True,
                       capture_output=True, timeout=30)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot mount a small tmpfs here: {e}")
    try:
        yield d
    finally:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            subprocess.run(["umount", str(d)], check=True, capture_output=True, timeout=30)


def test_a_run_directory_on_a_filesystem_too_small_is_refused_naming_disk(capsys, tiny_filesystem, nothing_starts):
    free = free_disk_bytes(tiny_filesystem / "runs" / "r")  # the nearest existing ancestor's filesystem
    assert 0 < free <= 20 * 2**20
    need = estimate_needs(1_000_000, shards=os.cpu_count() or 1, checkpoint_every=48, days=2)
    assert need.disk_bytes > free
    assert main(["run", "--hubs", "1M", "--days", "2", "--run-dir", str(tiny_filesystem / "runs" / "r")]) == 2
    out = capsys.readouterr().err
    assert f"--run-dir: 1,000,000 hubs need about {need.disk_bytes / GIB:.1f} GiB of disk for 2 days" in out
    assert f"has {free / GIB:.2f} GiB free" in out
    assert not (tiny_filesystem / "runs").exists()


def test_up_checks_the_same_way(capsys, tiny_filesystem, monkeypatch):
    import twin.launcher.up

    def never(*a, **k):
        raise AssertionError("nothing may be built when the run cannot fit")

    monkeypatch.setattr(twin.launcher.up.Launcher, "run", never)
    assert main(["up", "--hubs", "3M", "--run-dir", str(tiny_filesystem / "live"), "--no-dashboard"]) == 2
    assert "--run-dir: 3,000,000 hubs need about" in capsys.readouterr().err


def test_free_disk_is_that_of_the_nearest_existing_directory(tmp_path):
    assert free_disk_bytes(tmp_path / "a" / "b" / "c") == free_disk_bytes(tmp_path) > 0
    assert isinstance(free_disk_bytes(Path("relative/not/there")), int)


def test_a_scenario_run_counts_its_report_figures_per_tick_on_disk():
    from twin.engine.needs import REPORT_BYTES_PER_TICK, estimate_needs

    plain = estimate_needs(1_000_000, shards=2, checkpoint_every=48, days=10)
    run = estimate_needs(1_000_000, shards=2, checkpoint_every=48, days=10, report=True)
    assert run.disk_bytes - plain.disk_bytes == 480 * REPORT_BYTES_PER_TICK
    assert run.disk_text().endswith(", 1.5 MiB of report figures)") and plain.disk_text().endswith("of history)")
