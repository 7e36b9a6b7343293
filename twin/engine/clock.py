"""The run's wall clock: a background thread that steps the fleet at a speed multiple of real time
(or flat out), paused, resumed, stopped at a target tick, and told to listeners when it fails."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum

from twin.model.params import TICK_SECONDS

log = logging.getLogger("twin.engine.supervisor")  # the name operators' log filters already use

# Told when the clock fails (its error) and when it runs again after a failure (None).
ClockFailureListener = Callable[[str | None], None]
DEFAULT_SPEED = 1800.0  # simulated seconds per wall second: a half-hour tick a second


class ClockState(StrEnum):
    """What the clock is doing. The values are the API's words (FleetService's Clock.state is
    decoded from them, the CLI prints them), so they stay lower-case strings."""

    PAUSED = "paused"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"  # the clock's thread ended with an error (`Clock.error`)


class Clock:
    """Paces `step(1)` calls on a thread of its own.

    `step` runs one tick (the pipeline's, which takes its own lock); `tick` says which tick is next.
    One lock guards everything here: `_cv` (a Condition) guards the state, speed, target, thread
    and error, and wakes the thread when any of them changes."""

    def __init__(self, *, step: Callable[[int], object], tick: Callable[[], int]) -> None:
        self._step = step
        self._tick = tick
        self._cv = threading.Condition()
        self._state = ClockState.PAUSED
        self._speed: float | None = DEFAULT_SPEED  # simulated seconds per wall second; None = flat out
        self._target: int | None = None  # the tick at which a running clock pauses by itself
        self._thread: threading.Thread | None = None
        self._error: str | None = None
        self._waiting_for: float | None = None  # the schedule time the thread is sleeping until
        self._in_tick = False  # the thread decided (under the lock) to run a tick and has not finished it
        # The schedule time of the next tick while running at a speed (None otherwise), and the
        # wall seconds of schedule given up so far: what `behind()` and `slipped_s` report.
        self._due: float | None = None
        self._slipped_s = 0.0
        self._failure_listeners: list[ClockFailureListener] = []

    # -- reading ------------------------------------------------------------------------------
    @property
    def state(self) -> ClockState:
        return self._state

    @property
    def error(self) -> str | None:
        """Why the clock failed ("ExceptionType: message"), while it is FAILED; else None."""
        return self._error

    @property
    def speed(self) -> float | None:
        return self._speed

    @property
    def next_due(self) -> float | None:
        """The `time.monotonic()` time the running clock's thread is waiting for before its next
        tick; None while a tick runs, while paused or flat out. A test moving a fake clock waits
        for this so that it moves time only once the schedule after a tick is set."""
        with self._cv:
            return self._waiting_for

    @property
    def ticking(self) -> bool:
        """The clock's thread is running a tick. Set under the lock in the same hold that saw the
        clock running, so once `pause()` has returned and this reads False no further tick starts
        until a resume."""
        with self._cv:
            return self._in_tick

    def behind(self) -> float:
        """How far the running clock is behind its schedule, in ticks at its speed: the wall time
        since the tick it is running (or about to run) was due, times ticks per wall second (e.g.
        2.5: that tick was due 2.5 tick-intervals ago); 0.0 when on time, paused, stopped, failed
        or flat out. The schedule never restarts more than a second behind now (see `slipped_s`),
        so this stays small while the fleet cannot keep up; a steady climb of `slipped_s` is the
        sign of that."""
        with self._cv:
            if self._state != ClockState.RUNNING or self._speed is None or self._due is None:
                return 0.0
            return max(0.0, (time.monotonic() - self._due) * self._speed / TICK_SECONDS)

    @property
    def slipped_s(self) -> float:
        """Wall seconds of its schedule the running clock has given up since it was made, because
        ticks took longer than its pace allows (it catches up at most one second in a burst)."""
        with self._cv:
            return self._slipped_s

    # -- control ------------------------------------------------------------------------------
    def start(self, *, speed: float | None = DEFAULT_SPEED, running: bool = True) -> None:
        """Start the background thread: `speed` simulated seconds per wall second."""
        self.set_speed(speed)
        with self._cv:
            if self._thread is None and self._state not in (ClockState.STOPPED, ClockState.FAILED):
                self._start_thread()
        if running:
            self.resume()

    def pause(self) -> None:
        """Pause the clock (a failed clock stays failed: resume is what tries again)."""
        with self._cv:
            if self._state not in (ClockState.STOPPED, ClockState.FAILED):
                self._state = ClockState.PAUSED
            self._cv.notify_all()

    def resume(self) -> None:
        """Run the clock; after a failure this starts a new thread (the failed tick's history rows
        were kept, so the retry loses nothing)."""
        restarted = False
        with self._cv:
            if self._state == ClockState.FAILED:
                self._error = None
                self._start_thread()
                restarted = True
            if self._state != ClockState.STOPPED:
                self._state = ClockState.RUNNING
            self._cv.notify_all()
        if restarted:
            log.warning("the clock was resumed after a failure, at tick %d", self._tick())
            self._tell_failure(None)

    def set_speed(self, speed: float | None) -> None:
        """Raises ValueError unless `speed` is positive or None (flat out)."""
        if speed is not None and not speed > 0:
            raise ValueError("speed must be a positive multiple of real time, or None for flat out")
        with self._cv:
            self._speed = speed
            self._cv.notify_all()

    def wake(self) -> None:
        """Have the clock's thread look at the time again now (its schedule is read from
        `time.monotonic()`, which a test may move)."""
        with self._cv:
            self._cv.notify_all()

    def run_until(self, tick: int) -> None:
        """Let the running clock pause by itself when `tick` is the next tick."""
        with self._cv:
            self._target = tick
            self._cv.notify_all()

    def stop(self, *, timeout_s: float = 30.0) -> None:
        """Stop for good and wait (at most `timeout_s`) for the thread's tick to finish."""
        with self._cv:
            self._state = ClockState.STOPPED
            self._cv.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=timeout_s)

    def add_failure_listener(self, fn: ClockFailureListener) -> None:
        """`fn(error)` when the clock fails, `fn(None)` when it runs again; called on the clock's
        thread (or the resuming caller's), so it must be quick."""
        self._failure_listeners.append(fn)

    def remove_failure_listener(self, fn: ClockFailureListener) -> None:
        if fn in self._failure_listeners:
            self._failure_listeners.remove(fn)

    # -- the thread ---------------------------------------------------------------------------
    def _start_thread(self) -> None:
        """Under self._cv."""
        self._thread = threading.Thread(target=self._loop, name="twin-clock", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        """Whatever ends the thread with an error (a shard call, the history, a tick listener)
        leaves the clock FAILED with the cause, logged with its traceback and told to the failure
        listeners (the API's health goes NOT_SERVING); never RUNNING while stopped."""
        try:
            self._ticks()
        except BaseException as e:
            error = f"{type(e).__name__}: {e}"
            log.exception("the clock stopped at tick %d: %s", self._tick(), error)
            with self._cv:
                self._state, self._error, self._thread = ClockState.FAILED, error, None
                self._cv.notify_all()
            self._tell_failure(error)

    def _tell_failure(self, error: str | None) -> None:
        for fn in list(self._failure_listeners):
            try:
                fn(error)
            except Exception:
                log.exception("a clock failure listener failed")

    def _ticks(self) -> None:
        next_due = time.monotonic()
        while True:
            with self._cv:
                while self._state == ClockState.PAUSED:
                    self._due = None
                    self._cv.wait()
                    next_due = time.monotonic()
                if self._state == ClockState.STOPPED:
                    self._due = None
                    return
                if self._target is not None and self._tick() >= self._target:
                    self._state, self._target = ClockState.PAUSED, None
                    continue
                speed = self._speed
                self._due = next_due if speed is not None else None
                if speed is not None:
                    delay = next_due - time.monotonic()
                    if delay > 0:
                        self._waiting_for = next_due
                        self._cv.wait(timeout=delay)
                        self._waiting_for = None
                        continue
                self._in_tick = True
            try:
                self._step(1)
            finally:
                with self._cv:
                    self._in_tick = False
                    if speed is not None:
                        # Pace from the schedule, not from when the tick finished, so a tick's own
                        # duration does not slow the clock (unless the fleet cannot keep up: then
                        # the schedule restarts a second behind now, and what it gave up is counted).
                        on_time, floor = next_due + TICK_SECONDS / speed, time.monotonic() - 1.0
                        self._slipped_s += max(0.0, floor - on_time)
                        next_due = self._due = max(on_time, floor)
                    self._cv.notify_all()
