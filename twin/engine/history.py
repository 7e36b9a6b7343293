"""The tick-summary history of a run in an embedded DuckDB file (`history.duckdb` in the run
directory): a wide `ticks` table (one row per tick per branch, the figures people plot) and a long
`metrics` table (every breakdown: messages by CSP and type, alerts by CSP and kind, dark hubs by
reason, operation counters, ...), queryable with SQL while or after the run.

Rows are buffered and written in batches, each batch one transaction that first deletes the rows
of the same ticks, so a resumed or rewound run that summarises a tick again replaces its row
instead of duplicating it. The file is opened only while a batch is written, so another process
(`twin history`) can read it between batches."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from twin.model.catalog import SUPPLIERS, WAN_LABEL, AlertKind, Csp, MessageType, WanTech
from twin.model.config import FleetConfig
from twin.model.params import TICK_SECONDS
from twin.model.summary import DARK_REASONS, TickSummary

FILE = "history.duckdb"
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
LONG_BREAKDOWNS = ("messages", "alerts", "dark_by_reason", "hubs_by_wan", "supplier_hubs", "gas_supplier_hubs",
                   "credit_ec_supplier", "credit_off_supplier")

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS ticks (branch VARCHAR NOT NULL, tick BIGINT NOT NULL, time_utc TIMESTAMP NOT NULL, "
    + ", ".join(f"{c} BIGINT" for c in WIDE_INT_COLS) + ")",
    "CREATE TABLE IF NOT EXISTS metrics (branch VARCHAR NOT NULL, tick BIGINT NOT NULL, metric VARCHAR NOT NULL, "
    "key VARCHAR NOT NULL, value BIGINT NOT NULL)",
    # A history written before a column was added (a new alert kind, the prepayment counts) gains it.
    *(f"ALTER TABLE ticks ADD COLUMN IF NOT EXISTS {c} BIGINT" for c in WIDE_INT_COLS),
]

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
    # Operation counters: a handful per operation per tick (never per hub).
    op_t, op_m, op_k, op_v = [], [], [], []
    for s in batch:
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


class HistoryStore:
    """Appends a run's tick summaries to `history.duckdb`, in batches."""

    def __init__(self, run_dir: Path, *, branch: str, config: FleetConfig, flush_ticks: int = 48,
                 flush_s: float = 5.0):
        self.path = run_dir / FILE
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
        with self._connect() as con:
            for stmt in SCHEMA:
                con.execute(stmt)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(self.path))

    def record(self, s: TickSummary) -> None:
        """Buffer one tick's summary; write the buffer when it is big or old enough."""
        with self._lock:
            self._buffer.append(s)
            due = len(self._buffer) >= self.flush_ticks or time.monotonic() - self._last_flush >= self.flush_s
        if due:
            self.flush()

    def flush(self) -> None:
        """Write the buffered summaries (one transaction; rows of the same ticks are replaced)."""
        with self._lock:
            batch, self._buffer = self._buffer, []
            self._last_flush = time.monotonic()
            if not batch:
                return
            t = time.perf_counter()
            wide = wide_rows(batch, self.config)
            wide["branch"] = np.full(len(batch), self.branch, dtype=object)
            long = long_rows(batch)
            long["branch"] = np.full(long["tick"].size, self.branch, dtype=object)
            lo, hi = int(wide["tick"].min()), int(wide["tick"].max())
            with self._connect() as con:
                con.execute("BEGIN TRANSACTION")
                for table in ("ticks", "metrics"):
                    con.execute(f"DELETE FROM {table} WHERE branch = ? AND tick BETWEEN ? AND ?",
                                [self.branch, lo, hi])
                con.register("wide_batch", wide)
                con.register("long_batch", long)
                con.execute("INSERT INTO ticks BY NAME SELECT * FROM wide_batch")
                con.execute("INSERT INTO metrics BY NAME SELECT * FROM long_batch")
                con.execute("COMMIT")
            self.seconds += time.perf_counter() - t
            self.ticks_written += len(batch)
            self.flushes += 1

    def copy_from(self, source: Path, *, upto_tick: int) -> int:
        """Copy another run's rows of ticks <= upto_tick into this one under this branch's name
        (a fork starts with its parent's past). Returns the ticks copied."""
        self.flush()
        with self._lock, self._connect() as con:
            con.execute(f"ATTACH '{_quote(source)}' AS src (READ_ONLY)")
            con.execute("BEGIN TRANSACTION")
            for table in ("ticks", "metrics"):
                con.execute(f"DELETE FROM {table} WHERE branch = ? AND tick <= ?", [self.branch, upto_tick])
                con.execute(f"INSERT INTO {table} SELECT * REPLACE (? AS branch) FROM src.{table} WHERE tick <= ?",
                            [self.branch, upto_tick])
            n = con.execute("SELECT count(*) FROM ticks WHERE branch = ? AND tick <= ?",
                            [self.branch, upto_tick]).fetchone()
            con.execute("COMMIT")
        return int(n[0]) if n else 0

    def totals(self, *, upto: int) -> dict[str, Any]:
        """The run's running totals (messages by CSP and type, HH periods lost, alerts) over
        ticks <= upto, as the supervisor keeps them; for a resumed or rewound run."""
        self.flush()
        messages = np.zeros((len(CSP_TITLES), len(MessageType)), np.int64)
        with self._lock, self._connect() as con:
            for key, value in con.execute("SELECT key, sum(value) FROM metrics WHERE branch = ? AND tick <= ? "
                                          "AND metric = 'messages' GROUP BY key", [self.branch, upto]).fetchall():
                csp, kind = key.split("/")
                messages[CSP_TITLES.index(csp), MessageType[kind]] = int(value)
            row = con.execute("SELECT coalesce(sum(hh_lost), 0), coalesce(sum(alerts), 0) FROM ticks "
                              "WHERE branch = ? AND tick <= ?", [self.branch, upto]).fetchone()
        hh_lost, alerts = (int(row[0]), int(row[1])) if row else (0, 0)
        return {"messages": messages, "hh_lost": hh_lost, "alerts": alerts}

    @contextmanager
    def quiet(self) -> Iterator[Path]:
        """Flush, then hold the writer off while someone else reads the file."""
        self.flush()
        with self._lock:
            yield self.path

    def close(self) -> None:
        self.flush()


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")


def connect_read_only(path: Path, *, wait_s: float = 10.0) -> duckdb.DuckDBPyConnection:
    """A read-only connection; waits while a writer holds the file (it holds it only per batch)."""
    if not path.exists():
        raise FileNotFoundError(path)
    end = time.monotonic() + wait_s
    while True:
        try:
            return duckdb.connect(str(path), read_only=True)
        except duckdb.IOException:
            if time.monotonic() >= end:
                raise
            time.sleep(0.05)


def query(path: Path, sql: str, params: list[Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one SQL statement on a run's history; returns column names and rows."""
    with connect_read_only(path) as con:
        cur = con.execute(sql, params or [])
        cols = [d[0] for d in cur.description] if cur.description else []
        return cols, cur.fetchall()
