"""The tick-summary history of a run: a wide `ticks` table (one row per tick per branch, the
figures people plot) and a long `metrics` table (every breakdown: messages by CSP and type, alerts
by CSP and kind, dark hubs by reason, operation counters, the network's capacity, latency and
service levels per link and per CSP and class, ...), queryable with SQL (DuckDB) while or after
the run.

On disk it is a folder of immutable Parquet segments, `RUN_DIR/history/{ticks,metrics}-LO-HI.parquet`:
each batch of ticks the run writes is one new segment (written to a temporary name, synced, then
renamed, so a reader sees a whole segment or none). Nothing ever writes to a file a reader may hold,
so a reader (`twin history`, a notebook, a comparison) takes no lock and can never stop, stall or
lose anything of the run. This is why the store is not a DuckDB database file: DuckDB allows one
read-write process *or* many read-only ones per file, never both at once
(https://duckdb.org/docs/stable/connect/concurrency), so a reader holding `history.duckdb` made the
run's next write fail.

Each row carries the flush numbers of its segment (`seg_lo`, `seg_hi`). A resumed or rewound run
summarises some ticks again; their new rows go into a later segment, and the views `ticks` and
`metrics` that `open_history` defines keep, per (branch, tick), only the rows of the latest segment
that holds the tick, so a tick is never counted twice. Small segments are merged in the background
of the writer (eight of one size into one of the next), and the merged-away files are deleted a
minute later, so the folder holds a few dozen files however long the run. Runs written before this
store (`history.duckdb`) are still read (and resumed: new rows go to segments, which win)."""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np

from twin.engine.files import replace_synced, sync_folder
from twin.model.capacity import CapacityReport
from twin.model.catalog import CLASS_LABEL, N_WAN, SUPPLIERS, WAN_LABEL, AlertKind, Csp, MessageType, TrafficClass, WanTech
from twin.model.config import FleetConfig
from twin.model.params import TICK_SECONDS
from twin.model.summary import DARK_REASONS, TickSummary

DIR = "history"  # the Parquet segments
FILE = "history.duckdb"  # the store of runs written before the segments (read, never written)
TABLES = ("ticks", "metrics")
SEGMENT_RE = re.compile(r"^(ticks|metrics)-(\d{12})-(\d{12})\.parquet$")
MERGE_FANOUT = 8  # segments of one size merged into one of the next
MAX_MERGE_LEVEL = 4  # never merge past 8**4 flushes per segment (the merge runs on the clock's thread)
READ_ATTEMPTS = 5  # a read that meets a segment merged away under it is run again, this often at most
DELETE_AFTER_S = 60.0  # a merged-away segment stays this long for readers that listed it already
log = logging.getLogger(__name__)
T = TypeVar("T")
CSPS = [c.name.lower() for c in Csp]
CSP_TITLES = [c.name.title() for c in Csp]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


DARK_COLS = [f"dark_{_slug(r)}" for r in DARK_REASONS]
WAN_COLS = [f"hubs_{_slug(WAN_LABEL[w])}" for w in WanTech]
ALERT_COLS = [f"alerts_{k.name.lower()}" for k in AlertKind]
# The wide table: what a plot or a comparison needs, one column each, all BIGINT but three.
WIDE_INT_COLS: list[str] = [
    "hubs", "meters", "dcc_hubs", "off_dcc_hubs", "reachable_hubs", "dark_hubs",
    "messages", *(f"messages_{c}" for c in CSPS), *(f"reachable_{c}" for c in CSPS), *(f"dark_{c}" for c in CSPS),
    "alerts", *ALERT_COLS, "alerts_undelivered", "peak_alerts_per_s", "hh_lost", "hh_at_risk", *DARK_COLS, *WAN_COLS,
    "prepay_emergency_credit", "prepay_off_supply", "prepay_topups",
]
# Shard recoveries completed during the tick (its process died; restored from a checkpoint and
# caught up): how many, their seconds in all, and which shards ("3,5"). 0, 0.0 and '' on ordinary
# ticks. Not figures of the fleet: a comparison of two runs leaves them out (WIDE_INT_COLS only).
RECOVERY_COLS = {"recoveries": "BIGINT", "recovery_s": "DOUBLE", "recovered_shards": "VARCHAR"}
RECOVERY_DEFAULTS = {"recoveries": "0::BIGINT", "recovery_s": "0.0::DOUBLE", "recovered_shards": "''::VARCHAR"}
LONG_BREAKDOWNS = ("messages", "alerts", "dark_by_reason", "hubs_by_wan", "supplier_hubs", "gas_supplier_hubs",
                   "credit_ec_supplier", "credit_off_supplier")

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS ticks (branch VARCHAR NOT NULL, tick BIGINT NOT NULL, time_utc TIMESTAMP NOT NULL, "
    + ", ".join([*(f"{c} BIGINT" for c in WIDE_INT_COLS), *(f"{c} {t}" for c, t in RECOVERY_COLS.items())]) + ")",
    "CREATE TABLE IF NOT EXISTS metrics (branch VARCHAR NOT NULL, tick BIGINT NOT NULL, metric VARCHAR NOT NULL, "
    "key VARCHAR NOT NULL, value BIGINT NOT NULL)",
]
# Where the segments' own columns go in a view: after the schema's, and left out of what readers see.
SEG_COLS = ("seg_lo", "seg_hi")
LATEST = "QUALIFY dense_rank() OVER (PARTITION BY branch, tick ORDER BY seg_hi DESC, seg_lo ASC) = 1"

# Labels of the long table's fixed breakdowns, in array order (row-major over CSP x kind).
_LABELS: dict[str, list[str]] = {
    "messages": [f"{c}/{m.name}" for c in CSP_TITLES for m in MessageType],
    "alerts": [f"{c}/{k.name}" for c in CSP_TITLES for k in AlertKind],
    "dark_by_reason": [f"{c}/{r}" for c in CSP_TITLES for r in DARK_REASONS],
    "hubs_by_wan": [f"{c}/{WAN_LABEL[w]}" for c in CSP_TITLES for w in WanTech],
    "supplier_hubs": ["(none)", *(s.name for s in SUPPLIERS)],
    "gas_supplier_hubs": ["(none)", *(s.name for s in SUPPLIERS)],
    "credit_ec_supplier": ["(none)", *(s.name for s in SUPPLIERS)],
    "credit_off_supplier": ["(none)", *(s.name for s in SUPPLIERS)],
}


def wide_rows(batch: list[TickSummary], config: FleetConfig) -> dict[str, np.ndarray]:
    """The `ticks` rows of a batch of summaries, column by column."""
    def stack(attr: str) -> np.ndarray:
        return np.stack([getattr(s, attr) for s in batch])

    msgs, alerts = stack("messages"), stack("alerts")  # (n, csp, type|kind)
    dcc, reach = stack("dcc_hubs"), stack("reachable_hubs")
    dark = dcc - reach
    by_reason, by_wan = stack("dark_by_reason").sum(axis=1), stack("hubs_by_wan").sum(axis=1)
    ticks = np.array([s.tick for s in batch], np.int64)
    start = np.datetime64(config.start.replace(tzinfo=None), "s")
    out: dict[str, np.ndarray] = {
        "tick": ticks,
        "time_utc": start + (ticks + 1) * np.timedelta64(TICK_SECONDS, "s"),  # the end of the tick
        "hubs": dcc.sum(axis=1) + stack("off_dcc_hubs").sum(axis=1),
        "meters": stack("meters").sum(axis=1),
        "dcc_hubs": dcc.sum(axis=1),
        "off_dcc_hubs": stack("off_dcc_hubs").sum(axis=1),
        "reachable_hubs": reach.sum(axis=1),
        "dark_hubs": dark.sum(axis=1),
        "messages": msgs.sum(axis=(1, 2)),
        "alerts": alerts.sum(axis=(1, 2)),
        "alerts_undelivered": np.array([s.alerts_undelivered for s in batch], np.int64),
        "peak_alerts_per_s": np.array([s.peak_alerts_per_s for s in batch], np.int64),
        "hh_lost": np.array([s.hh_lost for s in batch], np.int64),
        "hh_at_risk": np.array([s.hh_at_risk for s in batch], np.int64),
        "prepay_emergency_credit": stack("credit_ec_supplier").sum(axis=1),
        "prepay_off_supply": stack("credit_off_supplier").sum(axis=1),
        "prepay_topups": np.array([s.prepay_topups for s in batch], np.int64),
        "recoveries": np.array([len(s.recoveries) for s in batch], np.int64),
        "recovery_s": np.array([sum(float(r["seconds"]) for r in s.recoveries) for s in batch], np.float64),
        "recovered_shards": np.array([",".join(str(r["shard"]) for r in s.recoveries) for s in batch], dtype=object),
    }
    for i, c in enumerate(CSPS):
        out[f"messages_{c}"] = msgs[:, i].sum(axis=1)
        out[f"reachable_{c}"] = reach[:, i]
        out[f"dark_{c}"] = dark[:, i]
    per_kind = alerts.sum(axis=1)
    for k, col in enumerate(ALERT_COLS):
        out[col] = per_kind[:, k]
    for r, col in enumerate(DARK_COLS):
        out[col] = by_reason[:, r]
    for w, col in enumerate(WAN_COLS):
        out[col] = by_wan[:, w]
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


# The capacity model's figures of a tick (twin.model.capacity.CapacityReport) in the `metrics`
# table, each a whole number in the unit its name gives (the table's values are BIGINT): keys are
# links "South/G2", CSP x traffic class "South/on-demand", CSP "South", or the stage.
CAPACITY_METRICS = (
    "link_capacity_per_hour", "link_utilisation_ppm", "link_backlog",  # per modelled link
    "class_messages", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "within_target_ppm", "class_backlog",
    "oldest_age_s",  # per CSP and class
    "alerts_delayed", "alerts_throttled", "alerts_failed", "alerts_redelivered", "alerts_expired",
    "failed_alert_queue",  # per CSP
    "stage",  # "dsp_utilisation_ppm", "base_station_peak_utilisation_ppm", "base_stations_congested",
    #           "base_station_backlog"
)


def capacity_metrics(r: CapacityReport) -> list[tuple[str, str, int]]:
    """(metric, key, value) rows of one tick's CapacityReport (see CAPACITY_METRICS)."""
    out: list[tuple[str, str, int]] = []
    for i in np.flatnonzero(r.link_capacity > 0):
        key = f"{CSP_TITLES[i // N_WAN]}/{WanTech(int(i) % N_WAN).name}"
        out += [("link_capacity_per_hour", key, round(float(r.link_capacity[i]) * 3600)),
                ("link_utilisation_ppm", key, round(float(r.link_utilisation[i]) * 1e6)),
                ("link_backlog", key, int(r.link_backlog[i]))]
    for c, csp in enumerate(CSP_TITLES):
        for k in TrafficClass:
            key = f"{csp}/{CLASS_LABEL[k]}"
            out += [("class_messages", key, int(r.messages[c, k])),
                    ("latency_p50_ms", key, round(float(r.latency_p50[c, k]) * 1e3)),
                    ("latency_p95_ms", key, round(float(r.latency_p95[c, k]) * 1e3)),
                    ("latency_p99_ms", key, round(float(r.latency_p99[c, k]) * 1e3)),
                    ("within_target_ppm", key, round(float(r.within_target[c, k]) * 1e6)),
                    ("class_backlog", key, int(r.backlog[c, k])),
                    ("oldest_age_s", key, round(float(r.oldest_age_s[c, k])))]
        out += [("alerts_delayed", csp, int(r.alerts_delayed[c])), ("alerts_throttled", csp, int(r.alerts_throttled[c])),
                ("alerts_failed", csp, int(r.alerts_failed[c])), ("alerts_redelivered", csp, int(r.alerts_redelivered[c])),
                ("alerts_expired", csp, int(r.alerts_expired[c])), ("failed_alert_queue", csp, int(r.failed_queue[c]))]
    out += [("stage", "dsp_utilisation_ppm", round(float(r.dsp_utilisation) * 1e6)),
            ("stage", "base_station_peak_utilisation_ppm", round(float(r.bs_peak_utilisation) * 1e6)),
            ("stage", "base_stations_congested", int(r.bs_congested)),
            ("stage", "base_station_backlog", int(r.bs_backlog))]
    return out


def long_rows(batch: list[TickSummary]) -> dict[str, np.ndarray]:
    """The `metrics` rows of a batch: every fixed breakdown, then each operation's counters."""
    ticks = np.array([s.tick for s in batch], np.int64)
    t_parts, m_parts, k_parts, v_parts = [], [], [], []
    for metric in LONG_BREAKDOWNS:
        values = np.stack([getattr(s, metric).reshape(-1) for s in batch])  # (n, labels)
        labels = _LABELS[metric]
        t_parts.append(np.repeat(ticks, len(labels)))
        m_parts.append(np.full(values.size, metric, dtype=object))
        k_parts.append(np.tile(np.array(labels, dtype=object), len(batch)))
        v_parts.append(values.reshape(-1).astype(np.int64))
    # Operation counters: a handful per operation per tick (never per hub); the network's
    # capacity figures (CAPACITY_METRICS), about 180 a tick.
    op_t, op_m, op_k, op_v = [], [], [], []
    for s in batch:
        if s.capacity is not None:
            for metric, key, value in capacity_metrics(s.capacity):
                op_t.append(s.tick)
                op_m.append(metric)
                op_k.append(key)
                op_v.append(value)
        for name, rep in s.ops.items():
            for k, v in rep.items():
                if not k.startswith("block"):
                    op_t.append(s.tick)
                    op_m.append(f"op:{name}")
                    op_k.append(k)
                    op_v.append(int(v))
    if op_t:
        t_parts.append(np.array(op_t, np.int64))
        m_parts.append(np.array(op_m, dtype=object))
        k_parts.append(np.array(op_k, dtype=object))
        v_parts.append(np.array(op_v, np.int64))
    return {"tick": np.concatenate(t_parts), "metric": np.concatenate(m_parts), "key": np.concatenate(k_parts),
            "value": np.concatenate(v_parts)}


@dataclass(frozen=True)
class Segment:
    """One batch of rows on disk: flushes `lo`..`hi` of the run (several once merged)."""

    lo: int
    hi: int

    def path(self, folder: Path, table: str) -> Path:
        return folder / f"{table}-{self.lo:012d}-{self.hi:012d}.parquet"

    @property
    def level(self) -> int:
        return int(math.log(self.hi - self.lo + 1, MERGE_FANOUT) + 1e-9)

    def covers(self, other: Segment) -> bool:
        return self != other and self.lo <= other.lo and other.hi <= self.hi


def segments(folder: Path) -> list[Segment]:
    """The segments in a history folder that hold both tables, oldest first (merged-away ones too)."""
    found: dict[Segment, set[str]] = {}
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    for name in names:
        if m := SEGMENT_RE.match(name):
            found.setdefault(Segment(int(m[2]), int(m[3])), set()).add(m[1])
    return sorted((s for s, tables in found.items() if len(tables) == len(TABLES)), key=lambda s: (s.lo, -s.hi))


def _live(segs: list[Segment]) -> list[Segment]:
    """The segments no merged segment covers (ranges are nested or disjoint: merges take a run of
    neighbours), oldest first."""
    return [s for s in segs if not any(o.covers(s) for o in segs)]


class HistoryStore:
    """Appends a run's tick summaries to its history folder, one Parquet segment per batch.

    `record` buffers a summary and writes the buffer when it holds `flush_ticks` ticks or is
    `flush_s` old. A batch that cannot be written (a full or read-only disk) stays in the buffer
    and the error is raised to the caller (the clock, which reports it); the next flush writes it."""

    def __init__(self, run_dir: Path, *, branch: str, config: FleetConfig, flush_ticks: int = 48,
                 flush_s: float = 5.0):
        self.run_dir = run_dir
        self.folder = run_dir / DIR
        self.branch = branch
        self.config = config
        self.flush_ticks = flush_ticks
        self.flush_s = flush_s
        self._buffer: list[TickSummary] = []
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        # What the history costs the run: seconds spent recording and writing, and ticks written.
        self.seconds = 0.0
        self.ticks_written = 0
        self.flushes = 0
        self.merges = 0
        # The writer's own scratch database (in memory): typed tables a batch passes through on
        # its way to Parquet, so every segment has exactly the schema's column types.
        # One thread: a batch is small, and the run's shards need the cores more than DuckDB does.
        self._con = duckdb.connect(config={"threads": 1})
        for stmt in SCHEMA:
            self._con.execute(stmt)
        self.folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.folder.glob("*.tmp"):  # a write cut short by a crash
            leftover.unlink(missing_ok=True)
        segs = segments(self.folder)
        self._next = max((s.hi for s in segs), default=-1) + 1
        # Merged-away segments and when they may go (now, for those a crash left behind).
        self._doomed: list[tuple[float, Segment]] = [(0.0, s) for s in segs if s not in _live(segs)]
        if not segs:
            # An empty first segment: the folder always matches the readers' glob, and has the schema.
            with self._lock:
                self._write(Segment(0, 0), None)
                self._next = 1

    def record(self, s: TickSummary) -> None:
        """Buffer one tick's summary; write the buffer when it is big or old enough."""
        if self.add(s):
            self.flush()

    def add(self, s: TickSummary) -> bool:
        """Buffer one tick's summary; True when the buffer is due to be written (`flush`)."""
        with self._lock:
            self._buffer.append(s)
            return len(self._buffer) >= self.flush_ticks or time.monotonic() - self._last_flush >= self.flush_s

    def flush(self) -> None:
        """Write the buffered summaries as one new segment (its ticks replace any earlier rows of
        the same ticks in what readers see). Raises OSError/duckdb.Error if it cannot; the rows
        stay buffered for the next try."""
        with self._lock:
            self._last_flush = time.monotonic()
            if not self._buffer:
                return
            t = time.perf_counter()
            batch = list(self._buffer)
            seg = Segment(self._next, self._next)
            self._write(seg, batch)
            del self._buffer[: len(batch)]
            self._next += 1
            self.ticks_written += len(batch)
            self.flushes += 1
            try:
                self._merge_and_prune()
            except (OSError, duckdb.Error):
                # The batch is safely written; merging is upkeep and is tried again next flush.
                log.exception("history: merging segments in %s failed (the history is complete; "
                              "the merge is retried after the next batch)", self.folder)
            self.seconds += time.perf_counter() - t

    def _write(self, seg: Segment, batch: list[TickSummary] | None) -> None:
        """Write a batch (None: no rows) as segment `seg`."""
        con = self._con
        for table in TABLES:
            con.execute(f"DELETE FROM {table}")
        if batch:
            wide = wide_rows(batch, self.config)
            wide["branch"] = np.full(len(batch), self.branch, dtype=object)
            long = long_rows(batch)
            long["branch"] = np.full(long["tick"].size, self.branch, dtype=object)
            con.register("wide_batch", wide)
            con.register("long_batch", long)
            try:
                con.execute("INSERT INTO ticks BY NAME SELECT * FROM wide_batch")
                con.execute("INSERT INTO metrics BY NAME SELECT * FROM long_batch")
            finally:
                con.unregister("wide_batch")
                con.unregister("long_batch")
        self._write_segment(con, seg, {t: f"SELECT * FROM {t}" for t in TABLES})
        for table in TABLES:
            con.execute(f"DELETE FROM {table}")

    def _write_segment(self, con: duckdb.DuckDBPyConnection, seg: Segment, rows: dict[str, str]) -> None:
        """Write segment `seg` from a SELECT per table (rows without the segment columns): metrics
        first, then ticks (a reader that sees a tick in `ticks` finds its breakdowns), each to a
        temporary name, synced, then renamed, so a reader sees the whole file or none of it."""
        for table in ("metrics", "ticks"):
            path = seg.path(self.folder, table)
            tmp = path.with_name(path.name + ".tmp")
            try:
                con.execute(f"COPY (SELECT *, {seg.lo}::BIGINT AS seg_lo, {seg.hi}::BIGINT AS seg_hi "
                            f"FROM ({rows[table]}) ORDER BY branch, tick) TO '{_quote(tmp)}' (FORMAT parquet)")
                replace_synced(tmp, path, sync_dir=False)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        sync_folder(self.folder)

    def _merge_and_prune(self) -> None:
        """Merge the newest MERGE_FANOUT segments while they are of one size (an LSM-style tier:
        each row is rewritten at most MAX_MERGE_LEVEL times), and delete merged-away segments
        that readers have had DELETE_AFTER_S to finish with."""
        now = time.monotonic()
        while True:
            live = _live(segments(self.folder))
            tail = live[-MERGE_FANOUT:]
            if len(tail) < MERGE_FANOUT or len({s.level for s in tail}) != 1 or tail[0].level >= MAX_MERGE_LEVEL:
                break
            merged = Segment(tail[0].lo, tail[-1].hi)
            # By name: a segment written before a column was added (the recovery columns) lacks it.
            rows = {table: "SELECT * EXCLUDE ({}) FROM read_parquet([{}], union_by_name = true) {}".format(
                ", ".join(SEG_COLS), ", ".join(f"'{_quote(s.path(self.folder, table))}'" for s in tail), LATEST)
                for table in TABLES}
            self._write_segment(self._con, merged, rows)
            self._doomed += [(now + DELETE_AFTER_S, s) for s in tail]
            self.merges += 1
        due = [s for when, s in self._doomed if when <= now]
        for s in due:
            for table in TABLES:
                s.path(self.folder, table).unlink(missing_ok=True)
        self._doomed = [(when, s) for when, s in self._doomed if when > now]

    def copy_from(self, source: Path, *, upto_tick: int) -> int:
        """Copy another run's rows of ticks <= upto_tick (its run directory) into this one under
        this branch's name (a fork starts with its parent's past). Returns the ticks copied. The
        source is only read, with no lock: it may be a live run."""
        self.flush()
        branch = self.branch.replace("'", "''")
        with self._lock, open_history(source) as src:
            # A snapshot of the source first: the copy must not mix segments written meanwhile.
            def snapshot() -> None:
                for table in TABLES:
                    src.execute(f"CREATE OR REPLACE TEMP TABLE copied_{table} AS SELECT * REPLACE "
                                f"('{branch}'::VARCHAR AS branch) FROM {table} WHERE tick <= {int(upto_tick)}")

            _retrying(snapshot)
            self._write_segment(src, Segment(self._next, self._next), {t: f"SELECT * FROM copied_{t}" for t in TABLES})
            self._next += 1
            n = src.execute("SELECT count(*) FROM copied_ticks").fetchone()
        return int(n[0]) if n else 0

    def totals(self, *, upto: int) -> dict[str, Any]:
        """The run's running totals (messages by CSP and type, HH periods lost, alerts) over
        ticks <= upto, as the supervisor keeps them; for a resumed or rewound run."""
        self.flush()
        messages = np.zeros((len(CSP_TITLES), len(MessageType)), np.int64)
        _, rows = query(self.run_dir, "SELECT key, sum(value) FROM metrics WHERE branch = ? AND tick <= ? "
                                      "AND metric = 'messages' GROUP BY key", [self.branch, upto])
        for key, value in rows:
            csp, kind = key.split("/")
            messages[CSP_TITLES.index(csp), MessageType[kind]] = int(value)
        _, rows = query(self.run_dir, "SELECT coalesce(sum(hh_lost), 0), coalesce(sum(alerts), 0) FROM ticks "
                                      "WHERE branch = ? AND tick <= ?", [self.branch, upto])
        hh_lost, alerts = (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)
        return {"messages": messages, "hh_lost": hh_lost, "alerts": alerts}

    @contextmanager
    def flushed(self) -> Iterator[Path]:
        """Flush, so a reader of the run directory sees every tick summarised so far. The writer
        is not held off while the reader reads: readers take no lock."""
        self.flush()
        yield self.run_dir

    @property
    def pending_ticks(self) -> int:
        """Summaries buffered and not yet written."""
        with self._lock:
            return len(self._buffer)

    def bytes_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.folder.glob("*.parquet"))

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._con.close()


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")


# -- readers --------------------------------------------------------------------------------------
def _run_dir(path: Path | str) -> Path:
    """A run directory, also when given its legacy `history.duckdb` (older callers)."""
    path = Path(path)
    return path.parent if path.name == FILE else path


def has_history(run_dir: Path) -> bool:
    run_dir = _run_dir(run_dir)
    return bool(segments(run_dir / DIR)) or (run_dir / FILE).exists()


def attach_views(con: duckdb.DuckDBPyConnection, run_dir: Path, *, schema: str = "main") -> None:
    """Define the views `ticks` and `metrics` of a run's history in `schema` of `con` (an
    in-memory connection of the reader's own). They read the Parquet segments with no lock, each
    query sees the segments present when it starts, and only the latest row of each tick is kept.
    A run from before the segments (`history.duckdb`) is attached read-only and read too.
    Raises FileNotFoundError if the run has no history."""
    run_dir = _run_dir(run_dir)
    folder, legacy = run_dir / DIR, run_dir / FILE
    has_segments, has_legacy = bool(segments(folder)), legacy.exists()
    if not (has_segments or has_legacy):
        raise FileNotFoundError(f"{run_dir} has no tick history ({DIR}/ or {FILE})")
    if schema != "main":
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    legacy_alias = f"legacy_{schema}"
    if has_legacy:
        con.execute(f"ATTACH IF NOT EXISTS '{_quote(legacy)}' AS {legacy_alias} (READ_ONLY)")
    for table in TABLES:
        parts = []
        if has_segments:
            parts.append(f"SELECT * FROM read_parquet('{_quote(folder)}/{table}-*.parquet', union_by_name = true)")
        if has_legacy:
            parts.append(f"SELECT *, -1::BIGINT AS seg_lo, -1::BIGINT AS seg_hi FROM {legacy_alias}.{table}")
        replace = ""
        if table == "ticks":
            # Segments written before the recovery columns existed have none: a relation with no
            # rows and only those columns gives every row of the union the columns (NULL where a
            # segment lacks them, then the ordinary tick's value), so old and new runs read alike.
            parts.append("SELECT " + ", ".join(f"NULL::{t} AS {c}" for c, t in RECOVERY_COLS.items()) + " WHERE false")
            replace = " REPLACE ({})".format(", ".join(f"coalesce({c}, {RECOVERY_DEFAULTS[c]}) AS {c}"
                                                       for c in RECOVERY_COLS))
        body = " UNION ALL BY NAME ".join(parts)
        con.execute(f"CREATE OR REPLACE VIEW {schema}.{table} AS SELECT * EXCLUDE ({', '.join(SEG_COLS)}){replace} "
                    f"FROM ({body}) {LATEST}")


def open_history(run_dir: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the run's `ticks` and `metrics` views (see
    `attach_views`): what a notebook or a script uses to read a live or finished run."""
    con = duckdb.connect()
    try:
        attach_views(con, run_dir)
    except BaseException:
        con.close()
        raise
    return con


def query(run_dir: Path, sql: str, params: list[Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one SQL statement on a run's history; returns column names and rows (run again if
    it met a segment merged away under it, see `_retrying`)."""
    def run() -> tuple[list[str], list[tuple[Any, ...]]]:
        with open_history(run_dir) as con:
            cur = con.execute(sql, params or [])
            return [d[0] for d in cur.description] if cur.description else [], cur.fetchall()

    return _retrying(run)


def _retrying(fn: Callable[[], T]) -> T:
    """`fn()`, run again (at most READ_ATTEMPTS times in all) if it met a segment merged away
    under it: it listed the file before the writer deleted it, a minute after merging it."""
    for attempt in range(READ_ATTEMPTS):
        try:
            return fn()
        except duckdb.IOException:
            if attempt + 1 >= READ_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


# -- long runs, by day, week or month ------------------------------------------------------------
# How each column of `ticks` aggregates over a period (twin.reporting.downsample says why): counts
# per tick are summed; peaks and worst cases (dark hubs, alerts per second, HH periods at risk,
# premises off supply) take the period's highest half-hour and reachable hubs its lowest; levels
# whose composition is the point (hubs, meters, hubs by WAN) its last half-hour.
PERIODS = ("day", "week", "month")
TICK_KINDS: dict[str, str] = {
    **dict.fromkeys(["messages", *(f"messages_{c}" for c in CSPS), "alerts", *ALERT_COLS, "alerts_undelivered",
                     "hh_lost", "prepay_topups", *(c for c in RECOVERY_COLS if c != "recovered_shards")], "sum"),
    **dict.fromkeys(["dark_hubs", *(f"dark_{c}" for c in CSPS), *DARK_COLS, "peak_alerts_per_s", "hh_at_risk",
                     "prepay_emergency_credit", "prepay_off_supply"], "max"),
    **dict.fromkeys(["reachable_hubs", *(f"reachable_{c}" for c in CSPS)], "min"),
    **dict.fromkeys(["hubs", "meters", "dcc_hubs", "off_dcc_hubs", *WAN_COLS], "last"),
}
# The same for the `metrics` table, by metric (an operation's counters, "op:...", take the last).
METRIC_KINDS: dict[str, str] = {
    "messages": "sum", "alerts": "sum", "dark_by_reason": "max", "hubs_by_wan": "last", "supplier_hubs": "last",
    "gas_supplier_hubs": "last", "credit_ec_supplier": "max", "credit_off_supplier": "max",
    "link_capacity_per_hour": "last", "link_utilisation_ppm": "max", "link_backlog": "max", "class_messages": "sum",
    "latency_p50_ms": "max", "latency_p95_ms": "max", "latency_p99_ms": "max", "within_target_ppm": "min",
    "class_backlog": "max", "oldest_age_s": "max", "alerts_delayed": "sum", "alerts_throttled": "sum",
    "alerts_failed": "sum", "alerts_redelivered": "sum", "alerts_expired": "sum", "failed_alert_queue": "max",
    "stage": "max",
}
_SQL_AGG = {"sum": "sum({c})", "max": "max({c})", "min": "min({c})", "last": "arg_max({c}, {t})"}


def _period_sql(period: str) -> str:
    """The start of a tick's period (DATE): `time_utc` is the end of the tick, so the half-hour
    ending at midnight belongs to the day before; weeks are ISO weeks, from Monday."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, got {period!r}")
    return f"date_trunc('{period}', time_utc - INTERVAL 1 SECOND)::DATE"


def _branch(run_dir: Path, branch: str | None) -> str:
    """`branch`, or the history's only branch (ValueError naming them when there are several)."""
    if branch is not None:
        return branch
    _, rows = query(run_dir, "SELECT DISTINCT branch FROM ticks ORDER BY branch")
    names = [r[0] for r in rows]
    if len(names) != 1:
        raise ValueError(f"name a branch: the history holds {', '.join(names) or 'none'}")
    return str(names[0])


def aggregate_ticks(run_dir: Path, *, period: str, branch: str | None = None,
                    columns: list[str] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The `ticks` of one branch by `period` ("day", "week" or "month", UTC), one row per period
    with `period_start` (DATE), `first_tick`, `ticks` (half-hours in it) and each of `columns`
    (default: all of TICK_KINDS) aggregated as TICK_KINDS says. Returns column names and rows,
    oldest first. A decade is 3,653 days, 522 weeks or 120 months. `branch` None: the
    history's only branch (ValueError if it holds several)."""
    cols = columns or list(TICK_KINDS)
    bad = [c for c in cols if c not in TICK_KINDS]
    if bad:
        raise ValueError(f"not a column of ticks: {bad[0]!r}")
    aggs = ", ".join(f"{_SQL_AGG[TICK_KINDS[c]].format(c=c, t='tick')} AS {c}" for c in cols)
    sql = (f"SELECT {_period_sql(period)} AS period_start, min(tick) AS first_tick, count(*) AS ticks, {aggs} "
           "FROM ticks WHERE branch = ? GROUP BY period_start ORDER BY period_start")
    return query(run_dir, sql, [_branch(run_dir, branch)])


def aggregate_metric(run_dir: Path, metric: str, *, period: str, branch: str | None = None
                     ) -> tuple[list[str], list[tuple[Any, ...]]]:
    """One metric of the `metrics` table by `period` and key: rows (period_start, key, value),
    the value aggregated as METRIC_KINDS says (an operation's counters: the last)."""
    how = "last" if metric.startswith("op:") else METRIC_KINDS.get(metric)
    if how is None:
        raise ValueError(f"not a metric of the history: {metric!r}")
    # `metrics` has no time: a tick's time comes from `ticks` (the same branch and tick).
    sql = (f"SELECT {_period_sql(period)} AS period_start, m.key, {_SQL_AGG[how].format(c='m.value', t='m.tick')} "
           "AS value FROM metrics m JOIN ticks USING (branch, tick) WHERE m.branch = ? AND m.metric = ? "
           "GROUP BY period_start, m.key ORDER BY period_start, m.key")
    return query(run_dir, sql, [_branch(run_dir, branch), metric])
