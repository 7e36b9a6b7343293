"""The side of a process that `twin up` starts beside itself (the dashboard, an API replica): it
says it is ready, and where it listens, by writing a readiness file (never by what it prints), and
it stops when its parent is gone, even one killed without a word. No dependencies beyond the
standard library, so the dashboard can use it without importing the engine."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# What a readiness file holds besides what the child reports: its process id, so a parent can tell
# the file of the child it started from a stale one.
READY_VERSION = 1


def write_ready(path: Path, **info: Any) -> None:
    """Write `info` (JSON-serialisable: ports, a URL) with this process's id to `path`, atomically:
    the reader sees no file or the whole file (written beside it, then renamed)."""
    payload = {"version": READY_VERSION, "pid": os.getpid(), **info}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def on_parent_exit(stop: Callable[[], object], poll_s: float = 1.0) -> None:
    """Call `stop` (from a watcher thread) once this process's parent has gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        try:
            stop()
        except BaseException:
            # Stopping gently failed: say why, and go anyway (an orphan must not outlive twin up).
            logging.getLogger(__name__).exception("stopping after the parent exited failed; exiting now")
            os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
