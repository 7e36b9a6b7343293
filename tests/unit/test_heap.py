"""settle_heap: what a server process built at its start is out of the collector's reach."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter: settle_heap collects and freezes the whole heap, and the test
# process's heap (every module and object the suite made so far) took seconds to collect and
# scan, for the same assertions; it also leaves the suite's collector as it was.
CHECK = textwrap.dedent("""
    import gc
    import weakref

    from twin.util.heap import settle_heap


    class _Kept:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the cyclic collector could ever free it


    kept = [_Kept() for _ in range(1000)]
    garbage = [weakref.ref(_Kept()) for _ in range(1000)]  # a cycle each, made at the start
    settle_heap()
    frozen = gc.get_freeze_count()
    assert frozen >= 2000, frozen  # the kept objects and their dicts, at least
    assert not any(isinstance(o, _Kept) for o in gc.get_objects())  # none left for the collector to walk
    assert all(r() is None for r in garbage)  # the start's garbage went before the freeze
    assert len(kept) == 1000 and all(k.me is k for k in kept)
    print("ok")
""")


def test_settle_heap_freezes_what_is_kept_and_collects_the_garbage_first():
    out = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr
