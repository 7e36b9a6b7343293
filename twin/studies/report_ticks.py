"""What a run report reads of every tick, kept in the run directory as the run goes, so a run
resumed in a new process (its driver died with the Ray head) writes the report a run that never
stopped would.

`RUN_DIR/report-ticks.bin` is a header line (JSON: the layout) and then one fixed-size row per
tick, in tick order: the run's wall seconds so far, the summary fields the report reads (see
twin.studies.scenario.RECORDED_FIELDS) in the layout's dtypes and shapes, the tick's capacity
report if the run has one, and a CRC-32 of the row. Fixed rows make the two things the file must
do cheap: a tick costs one append of a few KiB (never a rewrite), and going back to checkpoint C
is one truncate to C + 1 rows (a row torn by a kill mid-write lies past it and goes with it).

Why not read the earlier ticks back from the tick history (twin.engine.history)? It holds most of
these figures but not all of them exactly: reachable meters (the per-meter-month rates) are not
in it, and the capacity model's latencies, shares and utilisations are rounded to whole
milliseconds and parts per million there, which moves the report's own rounding. These rows are
the summaries' own numbers, bit for bit."""

from __future__ import annotations

import dataclasses
import json
import os
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from twin.model.capacity import CapacityReport
from twin.model.summary import TickSummary

FILE = "report-ticks.bin"
FORMAT = "twin.report-ticks"
VERSION = 1
_CRC = np.dtype("<u4")


class ReportTicksError(Exception):
    """The file cannot give back the ticks asked for (missing, short, damaged, another format)."""


@dataclasses.dataclass(frozen=True)
class _Field:
    """One value of a row: `kind` "array" (an ndarray of `dtype` and `shape`), "int" or "float"
    (a Python number, as the summaries hold it) or "scalar" (a numpy scalar of `dtype`)."""

    name: str
    kind: str
    dtype: str
    shape: tuple[int, ...]

    @classmethod
    def of(cls, name: str, value: Any) -> _Field:
        if isinstance(value, np.ndarray):
            return cls(name, "array", value.dtype.str, tuple(value.shape))
        if isinstance(value, np.generic):
            return cls(name, "scalar", value.dtype.str, ())
        if isinstance(value, bool):
            raise TypeError(f"{name}: a bool is not a figure this file records")
        if isinstance(value, int):
            return cls(name, "int", "<i8", ())
        if isinstance(value, float):
            return cls(name, "float", "<f8", ())
        raise TypeError(f"{name}: cannot record a {type(value).__name__}")

    @property
    def nbytes(self) -> int:
        return int(np.dtype(self.dtype).itemsize * int(np.prod(self.shape, dtype=np.int64)))

    def encode(self, value: Any) -> bytes:
        a = np.asarray(value, dtype=self.dtype)
        if a.shape != self.shape:
            raise ReportTicksError(f"{self.name}: shape {a.shape}, the file's layout has {self.shape}")
        return a.tobytes()

    def decode(self, raw: bytes) -> Any:
        a = np.frombuffer(raw, dtype=self.dtype).reshape(self.shape)
        if self.kind == "array":
            return a.copy()
        if self.kind == "int":
            return int(a)
        if self.kind == "float":
            return float(a)
        return a.dtype.type(a[()])

    def to_json(self) -> list[Any]:
        return [self.name, self.kind, self.dtype, list(self.shape)]

    @classmethod
    def from_json(cls, v: Any) -> _Field:
        name, kind, dtype, shape = v
        return cls(str(name), str(kind), str(dtype), tuple(int(n) for n in shape))


@dataclasses.dataclass(frozen=True)
class _Layout:
    summary: tuple[_Field, ...]
    capacity: tuple[_Field, ...] | None  # None: the run has no capacity model

    @classmethod
    def of(cls, s: TickSummary, names: Iterable[str]) -> _Layout:
        summary = tuple(_Field.of(n, getattr(s, n)) for n in sorted(names) if n != "capacity")
        cap = s.capacity
        capacity = None if cap is None else tuple(_Field.of(f.name, getattr(cap, f.name))
                                                  for f in dataclasses.fields(CapacityReport))
        return cls(summary, capacity)

    @property
    def fields(self) -> tuple[_Field, ...]:
        return (_Field("run_s", "float", "<f8", ()), *self.summary, *(self.capacity or ()))

    @property
    def row_bytes(self) -> int:
        return sum(f.nbytes for f in self.fields) + _CRC.itemsize

    def header(self) -> bytes:
        doc = {"format": FORMAT, "version": VERSION, "row_bytes": self.row_bytes,
               "summary": [f.to_json() for f in self.summary],
               "capacity": None if self.capacity is None else [f.to_json() for f in self.capacity]}
        return json.dumps(doc, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def from_header(cls, line: bytes, path: Path) -> _Layout:
        try:
            doc = json.loads(line)
            if doc.get("format") != FORMAT or doc.get("version") != VERSION:
                raise ReportTicksError(f"{path} is a {doc.get('format')!r} file of version {doc.get('version')!r}; "
                                       f"this twin reads {FORMAT!r} version {VERSION}")
            layout = cls(tuple(_Field.from_json(v) for v in doc["summary"]),
                         None if doc["capacity"] is None else tuple(_Field.from_json(v) for v in doc["capacity"]))
        except (ValueError, KeyError, TypeError) as e:
            raise ReportTicksError(f"{path} has no readable header: {e}") from None
        if layout.row_bytes != doc["row_bytes"]:
            raise ReportTicksError(f"{path}: its header's row size does not match its fields")
        return layout

    def encode(self, s: TickSummary, run_s: float) -> bytes:
        parts = [np.float64(run_s).tobytes(), *(f.encode(getattr(s, f.name)) for f in self.summary)]
        if self.capacity is not None:
            if s.capacity is None:
                raise ReportTicksError(f"tick {s.tick} has no capacity report; the run's earlier ticks had one")
            parts += [f.encode(getattr(s.capacity, f.name)) for f in self.capacity]
        body = b"".join(parts)
        return body + np.uint32(zlib.crc32(body)).astype(_CRC).tobytes()

    def decode(self, row: bytes, tick: int, path: Path) -> tuple[TickSummary, float]:
        body, crc = row[:-_CRC.itemsize], int(np.frombuffer(row[-_CRC.itemsize:], _CRC)[0])
        if zlib.crc32(body) != crc:
            raise ReportTicksError(f"{path}: the row of tick {tick} is damaged (its CRC-32 does not match)")
        at = 0

        def read(fields: tuple[_Field, ...]) -> dict[str, Any]:
            # By position: the summary and its capacity report share names (tick, messages).
            nonlocal at
            values: dict[str, Any] = {}
            for f in fields:
                values[f.name] = f.decode(body[at:at + f.nbytes])
                at += f.nbytes
            return values

        run_s = float(read(self.fields[:1])["run_s"])
        out = object.__new__(TickSummary)  # only the recorded fields: reading another is an AttributeError
        out.__dict__.update(read(self.summary))
        out.capacity = None if self.capacity is None else CapacityReport(**read(self.capacity))
        if out.tick != tick:
            raise ReportTicksError(f"{path}: row {tick} holds tick {out.tick}")
        return out, run_s


class ReportTicks:
    """The report's per-tick figures of one run, appended as it goes (see the module's doc).

    Open with `create` (a new run: the file starts empty) or `resume` (a run continued from
    checkpoint C: rows 0..C read back, the rest cut off). `append` each tick's summary in order;
    `sync=True` makes the file durable (fsync), which the caller does before a checkpoint is
    marked complete, so every complete checkpoint has its rows on disk."""

    def __init__(self, path: Path, fields: frozenset[str], *, layout: _Layout | None, rows: int) -> None:
        self.path = path
        self.fields = fields
        self._layout = layout
        self.rows = rows  # ticks recorded: the next row is tick `rows`
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    @classmethod
    def create(cls, run_dir: Path, fields: frozenset[str]) -> ReportTicks:
        """A new, empty record in `run_dir` (any old one is replaced). `fields`: the summary
        fields to keep ("capacity" for the capacity report)."""
        path = run_dir / FILE
        path.unlink(missing_ok=True)
        return cls(path, fields, layout=None, rows=0)

    @classmethod
    def resume(cls, run_dir: Path, fields: frozenset[str], *, upto: int,
               trim: Callable[[TickSummary], TickSummary] | None = None
               ) -> tuple[ReportTicks, list[TickSummary], float]:
        """The record of a run resumed after tick `upto` (its checkpoint; -1: from the start):
        the recorder, the summaries of ticks 0..upto (the recorded fields only; each but the
        last passed through `trim` if given, as it is read) and the run's wall seconds up to
        then. Rows after `upto` are cut off. Raises ReportTicksError if the file lacks a tick up
        to `upto` or is damaged."""
        path = run_dir / FILE
        if upto < 0:
            return cls.create(run_dir, fields), [], 0.0
        try:
            with open(path, "rb") as fh:
                line = fh.readline()
                if not line.endswith(b"\n"):
                    raise ReportTicksError(f"{path} has no header")
                layout = _Layout.from_header(line, path)
                summaries, run_s = [], 0.0
                # Row by row: a decade's record is hundreds of MB, never held twice.
                for t in range(upto + 1):
                    row = fh.read(layout.row_bytes)
                    if len(row) < layout.row_bytes:
                        held = f"ticks 0-{t - 1} only" if t else "no tick"
                        raise ReportTicksError(f"{path} holds {held}; the checkpoint the run resumes from is at "
                                               f"tick {upto}")
                    s, run_s = layout.decode(row, t, path)
                    summaries.append(trim(s) if trim is not None and t < upto else s)
        except FileNotFoundError:
            raise ReportTicksError(f"{path} is missing: the run's report figures of ticks 0-{upto} are not "
                                   "in the run directory") from None
        os.truncate(path, len(line) + (upto + 1) * layout.row_bytes)
        return cls(path, fields, layout=layout, rows=upto + 1), summaries, run_s

    def append(self, s: TickSummary, run_s: float, *, sync: bool = False) -> None:
        """Record tick `s.tick` (the next one), with the run's wall seconds up to its end."""
        if s.tick != self.rows:
            raise ReportTicksError(f"tick {s.tick} recorded after tick {self.rows - 1}")
        out = b""
        if self._layout is None:
            self._layout = _Layout.of(s, self.fields)
            out = self._layout.header()
        out += self._layout.encode(s, run_s)
        # One write of the whole row (O_APPEND): a kill leaves whole rows and at most one torn
        # one at the end, which a resume cuts off with everything after its checkpoint.
        view = memoryview(out)
        while view:
            view = view[os.write(self._fd, view):]
        self.rows += 1
        if sync:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
