"""The controls sent with each tick since the newest checkpoint: what a shard that died replays to
reach the others exactly (twin.engine.stepping). Its memory is the work in flight, never the run.

What a restarted shard needs is every control sent after the checkpoint it restores from:
- checkpoints on: the log is cut at each checkpoint, so it holds at most `checkpoint_every`
  ticks' controls (and only the ticks that had any: most ticks send none);
- checkpoints off: the shard rebuilds from the seed and replays every tick since the start, so
  every control ever sent is needed. Those older than the ticks in flight go to an append-only
  file in the run directory (`SPILL_NAME`, one versioned record per tick, read back in order only
  by a recovery), so memory stays flat and the disk grows with the controls sent, as the journal
  grows with the commands; a run without checkpoints already pays a replay from the seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from twin.model.ops.snapshot import controls_from_record, controls_record

Controls = dict[int, list[Any]]  # tick -> the controls sent with it
SPILL_NAME = "controls.spill"
_LEN = 8  # bytes of each record's length prefix (little-endian)


class ControlsLog:
    """Controls by tick (ticks with none are not held). `keep` ticks behind the newest recorded
    stay in memory (the ticks a resubmission may ask for, at least the window in flight); older
    ones are written to `spill` if given (checkpoints off), else held until `cut`. Not
    thread-safe: the step pipeline uses it under its tick lock only."""

    def __init__(self, *, spill: Path | None, keep: int) -> None:
        if keep < 0:
            raise ValueError("keep must not be negative")
        self.spill = spill
        self.keep = keep
        self._recent: Controls = {}  # in tick order
        self._spilled_ticks = 0  # ticks with controls in the spill file
        if spill is not None:
            spill.unlink(missing_ok=True)  # what a previous process spilled belongs to its own start

    def record(self, tick: int, controls: list[Any]) -> None:
        """The controls sent with `tick` (ticks are recorded in increasing order)."""
        if controls:
            self._recent[tick] = controls
        if self.spill is not None:
            old = [t for t in self._recent if t < tick - self.keep]
            if old:
                with self.spill.open("ab") as f:
                    for t in old:
                        rec = controls_record(t, self._recent.pop(t))
                        f.write(len(rec).to_bytes(_LEN, "little"))
                        f.write(rec)
                        self._spilled_ticks += 1

    def get(self, tick: int) -> list[Any] | None:
        """The controls of a recent tick (None if it had none, or if it was spilled: ask `replay`)."""
        return self._recent.get(tick)

    def replay(self, first: int, stop: int) -> Iterator[tuple[int, list[Any] | None]]:
        """(tick, its controls or None) for every tick from `first` to `stop` - 1, in order, the
        spilled ones read back from the file one at a time."""
        spilled = self._read_spilled()
        nxt = next(spilled, None)
        for t in range(first, stop):
            while nxt is not None and nxt[0] < t:
                nxt = next(spilled, None)
            if nxt is not None and nxt[0] == t:
                yield t, nxt[1]
            else:
                yield t, self._recent.get(t)

    def _read_spilled(self) -> Iterator[tuple[int, list[Any]]]:
        if self.spill is None or not self._spilled_ticks:
            return
        with self.spill.open("rb") as f:
            while head := f.read(_LEN):
                yield controls_from_record(f.read(int.from_bytes(head, "little")))

    def after(self, tick: int) -> Controls:
        """The controls of the ticks after `tick` (already sent: a checkpoint keeps them)."""
        return {t: c for t, c in self._recent.items() if t > tick}

    def cut(self, tick: int) -> None:
        """A checkpoint of `tick` is complete: nothing at or before it is replayed again."""
        self._recent = {t: c for t, c in self._recent.items() if t > tick}
        self._clear_spill()

    def reset(self, controls: Controls) -> None:
        """Start again from a restored checkpoint (or the seed), with the controls already sent
        for the ticks after it."""
        self._recent = {t: list(c) for t, c in sorted(controls.items()) if c}
        self._clear_spill()

    def _clear_spill(self) -> None:
        if self.spill is not None and self._spilled_ticks:
            self.spill.unlink(missing_ok=True)
            self._spilled_ticks = 0

    def __len__(self) -> int:
        """Ticks with controls held in memory."""
        return len(self._recent)

    @property
    def spilled_ticks(self) -> int:
        """Ticks with controls in the spill file."""
        return self._spilled_ticks
