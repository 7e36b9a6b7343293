"""Background work that cannot fail unseen: asyncio tasks whose exception is logged with its
traceback (and handed to an optional callback) instead of being dropped with the task, with a
strong reference to each running task (the event loop keeps only a weak one); and threads whose
error is logged and raised again to whoever joins them."""

from __future__ import annotations

import asyncio
import logging
import threading
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


class ReportingThread(threading.Thread):
    """A thread whose error is not lost: it is logged with its traceback when it happens and
    raised again (as the cause of a RuntimeError) by `join_or_raise`, so a helper thread of a
    benchmark or a test that died makes the whole measurement fail instead of a quiet zero."""

    def __init__(self, target: Callable[[], None], *, name: str):
        super().__init__(name=name, daemon=True)
        self._work = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._work()
        except BaseException as e:
            self.error = e
            log.exception("thread %s failed", self.name)

    def join_or_raise(self, timeout: float | None = None) -> None:
        self.join(timeout)
        if self.error is not None:
            raise RuntimeError(f"thread {self.name} failed: {type(self.error).__name__}: {self.error}") from self.error
