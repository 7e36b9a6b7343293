"""What the engine raises when the run, not the caller, is why a call cannot be done."""

from __future__ import annotations


class RunStateError(RuntimeError):
    """The run cannot do this now (for example accept a command while rewound behind its head)."""


class RunFailure(RuntimeError):
    """A step asked for could not be completed by the run itself (a shard call or the run
    directory failed: disk full, history folder gone). Not the caller's fault: the API answers
    UNAVAILABLE with the cause; the ticks before the failure stand, and the rows of the history
    that could not be written stay buffered for the next try."""
