"""settle_heap: what a server process built at its start is out of the collector's reach."""

from __future__ import annotations

import gc
import weakref

from twin.util.heap import settle_heap


class _Kept:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector could ever free it


def test_settle_heap_freezes_what_is_kept_and_collects_the_garbage_first():
    gc.unfreeze()
    try:
        kept = [_Kept() for _ in range(1000)]
        garbage = [weakref.ref(_Kept()) for _ in range(1000)]  # a cycle each, made at the start
        settle_heap()
        frozen = gc.get_freeze_count()
        assert frozen >= 2000  # the kept objects and their dicts, at least
        assert not any(isinstance(o, _Kept) for o in gc.get_objects())  # none left for the collector to walk
        assert all(r() is None for r in garbage)  # the start's garbage went before the freeze
        assert len(kept) == 1000 and all(k.me is k for k in kept)
    finally:
        gc.unfreeze()
