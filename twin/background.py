"""Background work that cannot fail unseen: asyncio tasks whose exception is logged with its
traceback (and handed to an optional callback) instead of being dropped with the task, and a
strong reference to each running task (the event loop keeps only a weak one)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)
_running: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, Any], *, name: str,
          on_error: Callable[[BaseException], None] | None = None) -> asyncio.Task[Any]:
    """Start `coro` as a task on the running loop; if it ends with an exception, log it (with the
    traceback) and call `on_error(exc)`. Cancellation is not a failure."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _running.add(task)
    task.add_done_callback(lambda t: _done(t, on_error))
    return task


def _done(task: asyncio.Task[Any], on_error: Callable[[BaseException], None] | None) -> None:
    _running.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is None:
        return
    log.error("background task %s failed", task.get_name(), exc_info=exc)
    if on_error is not None:
        try:
            on_error(exc)
        except Exception:
            log.exception("the failure handler of %s failed", task.get_name())
