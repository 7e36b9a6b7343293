"""The processes `twin up` starts beside itself (the dashboard, API replicas) stop when it is
gone, even if it was killed without a word. No dependencies, so the dashboard can use it without
importing the engine."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable


def on_parent_exit(stop: Callable[[], None], poll_s: float = 1.0) -> None:
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
