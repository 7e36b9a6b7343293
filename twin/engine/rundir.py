"""The run directory and what it makes possible: the manifest, the journal, checkpoints (shards'
state plus the planner's snapshot), the tick history and the alert log. Resuming a run from it and
rewinding a run to an earlier tick are twin.engine.recovery's."""

from __future__ import annotations

import json
import logging
import platform
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import ray

from twin.engine.alert_log import RETENTION_DAYS, AlertLog
from twin.engine.checkpoint import CheckpointStore, read_verified, save_planner
from twin.engine.history import HistoryStore
from twin.engine.journal import Journal
from twin.model.config import FleetConfig

log = logging.getLogger("twin.engine.supervisor")  # the name operators' log filters already use
KEEP_CHECKPOINTS = 4


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The run's manifest.json as a dict ({} if it is missing or unreadable)."""
    try:
        return json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def write_manifest(run_dir: Path, config: FleetConfig, shards: int, **extra: Any) -> dict[str, Any]:
    """What a run is: config and seed, and the versions that produced it; a branch also names its
    parent and fork tick (kept when the run is resumed)."""
    path = run_dir / "manifest.json"
    old = read_manifest(run_dir)
    manifest = {
        "name": run_dir.name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **{k: v for k, v in old.items() if k in ("name", "created_at", "parent")},
        "config": config.to_dict(),
        "shards": shards,
        "versions": {"twin": version("twin"), "ray": ray.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        **extra,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    tmp.replace(path)
    return manifest


class RunDirectory:
    """The files of one run, opened: the journal, the checkpoint store, the tick history (DuckDB)
    and the alert log, under `path`. Each store has its own lock where it needs one."""

    def __init__(self, path: Path, *, config: FleetConfig, shards: int, checkpoint_every: int | None,
                 alert_retention_days: float = RETENTION_DAYS) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.checkpoints = CheckpointStore(path)
        self.checkpoint_every = checkpoint_every
        self.journal = Journal(path / "journal.jsonl")
        self.manifest = write_manifest(path, config, shards, checkpoint_every=checkpoint_every)
        self.name: str = self.manifest["name"]
        self.history_db = HistoryStore(path, branch=self.name, config=config)
        # Every alert sent, by position, for the retention window (re-delivery to subscribers).
        self.alert_log = AlertLog(path / "alerts", retention_days=alert_retention_days)

    def is_checkpoint_tick(self, tick: int) -> bool:
        every = self.checkpoint_every
        return every is not None and every != 0 and (tick + 1) % every == 0

    def planner_snapshot(self, tick: int) -> bytes | None:
        """The planner snapshot of checkpoint `tick`, verified (None if missing or damaged)."""
        return read_verified(self.checkpoints.planner_path(tick))

    def write_planner_snapshot(self, tick: int, data: bytes) -> None:
        save_planner(self.checkpoints.planner_path(tick), data)

    def close(self) -> None:
        """Close the journal and write what the history still buffers (a failure to write is
        logged: resuming the run summarises those ticks again)."""
        self.journal.close()
        try:
            self.history_db.close()
        except (OSError, duckdb.Error):
            # Said, not hidden: the summaries after the newest checkpoint are summarised again
            # (and written) when the run is resumed, so the history still ends up whole.
            log.exception("the last %d tick summaries of %s could not be written; resuming the run writes "
                          "them again", self.history_db.pending_ticks, self.path)
