"""Columnar hub state: one 1-D array per attribute, one row per hub, its meters included.

A hub is a virtual actor: row `i - offset` of these arrays in the shard that owns hub id `i`.
Rows are grouped in fixed blocks of `block_size` hubs; a shard holds whole blocks, and the last
block of the fleet is padded (area code 0) so every block is a full row of the 2-D block view.
Every change to the columns that decides reachability goes through `HubState.change`, which keeps
the group counters (hubs and meters reachable per area x technology) exact without a full pass.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.model.catalog import (
    N_AREA_CODES,
    N_WAN,
    Flag,
    Status,
)
from twin.model.params import HALF_HOURS_PER_DAY
from twin.model.reach import on_dcc
from twin.model.records import RecordFormatError, pack, unpack

# A shard's hub state as checkpoint data (twin.model.records); bump the version when the layout
# (COLUMNS, the sparse arrays) changes meaning: older files are then refused, never patched.
STATE_FORMAT = "twin.hub-state"
STATE_VERSION = 1


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str
    doc: str

    @property
    def nbytes(self) -> int:
        return np.dtype(self.dtype).itemsize


# The state budget is 64 bytes per hub, meters included. This table is the documentation too.
COLUMNS: tuple[Column, ...] = (
    Column("area", "u1", "DNO licence area id 10-23 (its CSP region follows); 0 = padding row"),
    Column("wan", "u1", "WAN technology (WanTech)"),
    Column("variant", "u1", "hub variant (Variant): single band, dual band, 4G, SMETS1 module"),
    Column("smets", "u1", "SMETS2 / SMETS1 enrolled / SMETS1 not enrolled (Smets)"),
    Column("flags", "u1", "install-time bits (Flag): gas, prepay, solar, VWAN consent, mesh, daily reads"),
    Column("fault", "u1", "reasons the hub is unreachable (Fault bits); 0 = none"),
    Column("status", "u1", "device status bits (Status): GSME low battery / dead, dumb, supply and credit, MHHS"),
    Column("ch_model", "u1", "comms hub model code"),
    Column("ch_fw", "u1", "comms hub firmware version index"),
    Column("esme_model", "u1", "electricity meter model code"),
    Column("esme_fw", "u1", "ESME firmware version index"),
    Column("gsme_model", "u1", "gas meter model code; 0 = no gas meter"),
    Column("gsme_fw", "u1", "GSME firmware version index"),
    Column("ppmid_model", "u1", "prepayment interface model code; 0 = none"),
    Column("ppmid_fw", "u1", "PPMID firmware version index"),
    Column("supplier", "u1", "import (electricity) supplier code"),
    Column("gas_supplier", "u1", "gas supplier code; 0 = no gas"),
    Column("export_scale", "u1", "annual solar export / 10 kWh; 0 = no export"),
    Column("cell", "u2", "base station (North) or cell site the hub attaches to"),
    Column("elec_kwh_year", "u2", "ESME annual import, kWh (scales the shared daily profile)"),
    Column("gas_kwh_year", "u2", "GSME annual consumption, kWh"),
    Column("gsme_battery", "u2", "GSME battery at tick 0 less extra drain, 0.01% units"),
    Column("lost_days", "u2", "days of half-hourly data lost (log overran while unreachable)"),
    Column("last_contact", "i4", "tick of the last successful daily contact"),
    Column("elec_reg0", "u4", "ESME import register at tick 0 less what was not used while supply was disabled, "
           "0.1 kWh, modulo 2^32 (metering.register_kwh)"),
    Column("gas_reg0", "u4", "GSME register at tick 0, 0.1 kWh"),
    Column("export_reg0", "u4", "ESME export register at tick 0, 0.1 kWh"),
    Column("credit_p", "i4", "prepayment credit, pence, before the spend at `tariff_dp` since tick 0; while "
           "supply is disabled for credit (Status.CREDIT_OFF), the balance itself (nothing is spent)"),
    Column("tariff_dp", "u2", "import unit rate, 0.1 p/kWh (SR 1.1.1 updates it)"),
)
BYTES_PER_HUB = sum(c.nbytes for c in COLUMNS)
assert BYTES_PER_HUB <= 64, BYTES_PER_HUB

PREPAY_NO_ACTION = np.iinfo(np.int32).max
N_CREDIT_STATES = 3  # prepayment: in credit, on emergency credit, supply disabled for credit
DARK_AGE_EDGES_DAYS = (1, 7, 30, 396)  # buckets: <1 d, <1 wk, <1 mo, <13 mo, >=13 mo
N_DARK_AGE = len(DARK_AGE_EDGES_DAYS) + 1


# The unpowered stretches, one entry per stretch (kernel.add_power_cuts): parallel arrays kept,
# filtered, hashed and checkpointed together.
PW_ARRAYS = ("pw_hub", "pw_since_s", "pw_until_s", "pw_backoff_s", "pw_restore_backoff_s")

def _scatter(counter: np.ndarray, keys: np.ndarray, sign: int) -> None:
    """counter.flat[k] += sign for each k in `keys`, exactly. A few keys (a tick's changed rows)
    are added one by one, so the cost follows the rows changed, not the counter's size (the
    supplier-pair counter has 65,536 cells); many (a recount) are binned first."""
    flat = counter.reshape(-1)
    if keys.size * 16 < flat.size:
        np.add.at(flat, keys, sign)
    else:
        flat += sign * np.bincount(keys, minlength=flat.size)


class HubState:
    """The hubs of a contiguous range of blocks, with the sparse per-hub timers beside them."""

    def __init__(self, *, seed: int, block_size: int, first_block: int, n_blocks: int, n_hubs_fleet: int):
        self.seed = seed
        self.block_size = block_size
        self.first_block = first_block
        self.n_blocks = n_blocks
        self.n_hubs_fleet = n_hubs_fleet
        self.offset = first_block * block_size  # global id of row 0
        self.n_rows = n_blocks * block_size
        # Number of real hubs held (the fleet's last block may be partial).
        self.n_hubs = max(0, min(self.n_rows, n_hubs_fleet - self.offset))
        self.cols: dict[str, np.ndarray] = {c.name: np.zeros(self.n_rows, dtype=c.dtype) for c in COLUMNS}
        # Group counters by (area, wan): DCC hubs, reachable-if-network-up hubs and meters.
        self.dcc_hubs = np.zeros((N_AREA_CODES, N_WAN), dtype=np.int64)
        self.ok_hubs = np.zeros((N_AREA_CODES, N_WAN), dtype=np.int64)
        self.ok_meters = np.zeros((N_AREA_CODES, N_WAN), dtype=np.int64)
        self.off_dcc_hubs = np.zeros(N_AREA_CODES, dtype=np.int64)
        self.meters = np.zeros(N_AREA_CODES, dtype=np.int64)
        # DCC hubs by (area, fault byte): dark hubs by reason without a pass over the fleet.
        self.dcc_fault = np.zeros((N_AREA_CODES, 256), dtype=np.int64)
        # Premises per (electricity supplier, gas supplier): supplier shares at any tick.
        self.supplier_pairs = np.zeros((256, 256), dtype=np.int64)
        # Prepayment premises per (area, electricity supplier, credit state: 0 in credit,
        # 1 on emergency credit, 2 supply disabled for credit): the off-supply counts, exact.
        self.prepay_credit = np.zeros((N_AREA_CODES, 256, N_CREDIT_STATES), dtype=np.int64)
        # Sparse timers: incidents (a fault bit held until end_s) and alerts waiting to be sent.
        self.inc_hub = np.zeros(0, dtype=np.int64)  # global hub id
        self.inc_bit = np.zeros(0, dtype=np.uint8)
        self.inc_end_s = np.zeros(0, dtype=np.int64)
        self.alert_hub = np.zeros(0, dtype=np.int64)
        self.alert_kind = np.zeros(0, dtype=np.uint8)
        self.alert_time_s = np.zeros(0, dtype=np.int64)
        # Unpowered stretches (kernel.add_power_cuts): premises, since / until (s), the AD1 and the
        # restoration alert back-offs (s). Disjoint and not touching per premises.
        self.pw_hub = np.zeros(0, dtype=np.int64)
        self.pw_since_s = np.zeros(0, dtype=np.int64)
        self.pw_until_s = np.zeros(0, dtype=np.int64)
        self.pw_backoff_s = np.zeros(0, dtype=np.int64)
        self.pw_restore_backoff_s = np.zeros(0, dtype=np.int64)
        # Refreshed for each hub once a day, at its read slot.
        self.slot_at_risk = np.zeros(HALF_HOURS_PER_DAY, dtype=np.int64)
        self.slot_dark_age = np.zeros((HALF_HOURS_PER_DAY, N_DARK_AGE), dtype=np.int64)
        self.last_tick = -1
        # Derived index (rebuilt, never stored): rows grouped by area, each area's rows in the order
        # of a static per-hub key, so "a share of an area" is a slice, not a scan.
        self.area_rows = np.zeros(0, dtype=np.int32)
        self.area_keys = np.zeros(0, dtype=np.uint16)
        self.area_start = np.zeros(N_AREA_CODES + 1, dtype=np.int64)
        # Derived index: rows on prepayment (a fixed install attribute), for the per-tick credit pass,
        # and when each balance next reaches a level that matters (prepayment.prepay_pass; a spend
        # factor, -inf = at the next tick).
        self.prepay_rows = np.zeros(0, dtype=np.int32)
        self.prepay_due = np.zeros(0, dtype=np.float32)
        self.prepay_window: np.ndarray | None = None  # positions that can need a look before...
        self.prepay_window_end = -1  # ...this tick (derived, prepayment.prepay_pass)
        self.prepay_touched: list[np.ndarray] = []  # positions touched since the last pass
        # State, beside prepay_rows (checkpointed and hashed): the tick of each prepayment customer's
        # next action decided (a top-up, or enabling an armed supply); PREPAY_NO_ACTION = none.
        self.prepay_act = np.zeros(0, dtype=np.int32)

    # -- views ---------------------------------------------------------------------------
    def blocks(self, name: str) -> np.ndarray:
        """2-D (block, position) view of a column."""
        return self.cols[name].reshape(self.n_blocks, self.block_size)

    def local(self, hub_ids: np.ndarray) -> np.ndarray:
        """Rows of the given global hub ids (which must be held here)."""
        return np.asarray(hub_ids, dtype=np.int64) - self.offset

    def holds(self, hub_ids: np.ndarray) -> np.ndarray:
        h = np.asarray(hub_ids, dtype=np.int64)
        return (h >= self.offset) & (h < self.offset + self.n_hubs)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.cols.values())

    # -- group counters ------------------------------------------------------------------
    def _count(self, rows: np.ndarray | slice, sign: int) -> None:
        area = self.cols["area"][rows].astype(np.intp)
        key = area * N_WAN + self.cols["wan"][rows]
        smets = self.cols["smets"][rows]
        real = area != 0
        dcc = real & on_dcc(smets)
        ok = dcc & (self.cols["fault"][rows] == 0)
        gas = ((self.cols["flags"][rows] & Flag.HAS_GAS) != 0) & ((self.cols["status"][rows] & Status.GSME_DEAD) == 0)
        _scatter(self.dcc_hubs, key[dcc], sign)
        ok_key = key[ok]
        _scatter(self.ok_hubs, ok_key, sign)
        _scatter(self.ok_meters, ok_key, sign)
        _scatter(self.ok_meters, key[ok & gas], sign)
        _scatter(self.dcc_fault, (area * 256 + self.cols["fault"][rows])[dcc], sign)
        _scatter(self.supplier_pairs,
                 (self.cols["supplier"][rows].astype(np.intp) * 256 + self.cols["gas_supplier"][rows])[real], sign)
        _scatter(self.off_dcc_hubs, area[real & ~dcc], sign)
        pp = real & ((self.cols["flags"][rows] & Flag.PREPAY) != 0)
        if pp.any():
            status = self.cols["status"][rows][pp]
            credit_state = np.where(status & Status.CREDIT_OFF, 2, (status & Status.EMERGENCY_CREDIT) != 0)
            key = (area[pp] * 256 + self.cols["supplier"][rows][pp]) * N_CREDIT_STATES + credit_state
            _scatter(self.prepay_credit, key, sign)
        _scatter(self.meters, area[real], sign)
        _scatter(self.meters, area[real & gas], sign)

    def build_index(self) -> None:
        """Group rows by area, ordered by a static 16-bit per-hub key (a hash of the hub id)."""
        from twin.model.rng import hash_uniform

        n = self.n_hubs
        area = self.cols["area"][:n].astype(np.uint32)
        key = (hash_uniform(self.seed, 0xA7EA, np.arange(self.offset, self.offset + n), 0) * 65536).astype(np.uint32)
        order = np.argsort((area << 16) | key, kind="stable")
        self.area_rows = order.astype(np.int32)
        self.area_keys = key[order].astype(np.uint16)
        self.area_start = np.searchsorted(area[order], np.arange(N_AREA_CODES + 1)).astype(np.int64)
        flags = self.cols["flags"][:n]
        self.prepay_rows = np.flatnonzero(((flags & Flag.PREPAY) != 0) & (area != 0)).astype(np.int32)
        self.prepay_due = np.full(self.prepay_rows.size, -np.inf, dtype=np.float32)
        self.prepay_window = None
        self.prepay_touched = []
        if self.prepay_act.size != self.prepay_rows.size:  # a new fleet, or a checkpoint from before
            self.prepay_act = np.full(self.prepay_rows.size, PREPAY_NO_ACTION, dtype=np.int32)

    def area_window(self, area: int, start: float, fraction: float) -> np.ndarray:
        """Rows of `area` whose static key falls in [start, start + fraction) (cyclic): a random
        share of the area, the same hubs in any shard layout, found in O(log n + k)."""
        lo, hi = int(self.area_start[area]), int(self.area_start[area + 1])
        keys = self.area_keys[lo:hi]
        if fraction >= 1.0:
            return self.area_rows[lo:hi].astype(np.int64)
        a = int(start * 65536) % 65536
        b = a + max(1, round(fraction * 65536))
        parts = [(a, min(b, 65536))] + ([(0, b - 65536)] if b > 65536 else [])
        out = []
        for x, y in parts:
            i, j = np.searchsorted(keys, [x, y])
            out.append(self.area_rows[lo + i : lo + j])
        return np.sort(np.concatenate(out)).astype(np.int64)

    def recount(self) -> None:
        for arr in (self.dcc_hubs, self.ok_hubs, self.ok_meters, self.off_dcc_hubs, self.meters, self.dcc_fault,
                    self.supplier_pairs, self.prepay_credit):
            arr[...] = 0
        # In chunks: the counting temporaries are 8 bytes a row, more than the state itself.
        step = 1 << 20
        for lo in range(0, self.n_rows, step):
            self._count(slice(lo, min(lo + step, self.n_rows)), +1)

    def change(self, rows: np.ndarray, **updates: Any) -> None:
        """Apply column updates to `rows` (unique local rows), keeping the counters exact.

        Values are scalars or arrays aligned with `rows`. `fault_set`, `fault_clear`,
        `status_set` and `status_clear` OR/AND-NOT bits in."""
        if rows.size == 0:
            return
        self._count(rows, -1)
        for name, value in updates.items():
            if name == "fault_set":
                self.cols["fault"][rows] |= np.uint8(value)
            elif name == "fault_clear":
                self.cols["fault"][rows] &= np.uint8(~np.uint8(value))
            elif name == "status_set":
                self.cols["status"][rows] |= np.uint8(value)
            elif name == "status_clear":
                self.cols["status"][rows] &= np.uint8(~np.uint8(value))
            else:
                self.cols[name][rows] = value
        self._count(rows, +1)

    # -- digests and bytes ---------------------------------------------------------------
    def block_digests(self) -> list[bytes]:
        """SHA-256 per block over every column (real rows only) and the block's timers."""
        inc_order = np.lexsort((self.inc_bit, self.inc_hub))
        inc_hub = self.inc_hub[inc_order]
        al_order = np.lexsort((self.alert_kind, self.alert_time_s, self.alert_hub))
        al_hub = self.alert_hub[al_order]
        pw_order = np.lexsort((self.pw_since_s, self.pw_hub))
        pw_hub = self.pw_hub[pw_order]
        out = []
        bs = self.block_size
        for b in range(self.n_blocks):
            lo = b * bs
            hi = min(lo + bs, self.n_hubs)
            if hi <= lo:
                break
            h = hashlib.sha256()
            for c in COLUMNS:
                h.update(self.cols[c.name][lo:hi].tobytes())
            g_lo, g_hi = self.offset + lo, self.offset + hi
            i0, i1 = np.searchsorted(inc_hub, [g_lo, g_hi])
            sel = inc_order[i0:i1]
            for arr in (self.inc_hub, self.inc_bit, self.inc_end_s):
                h.update(arr[sel].tobytes())
            j0, j1 = np.searchsorted(al_hub, [g_lo, g_hi])
            sel = al_order[j0:j1]
            for arr in (self.alert_hub, self.alert_kind, self.alert_time_s):
                h.update(arr[sel].tobytes())
            k0, k1 = np.searchsorted(pw_hub, [g_lo, g_hi])
            sel = pw_order[k0:k1]
            for name in PW_ARRAYS:
                h.update(getattr(self, name)[sel].tobytes())
            p0, p1 = np.searchsorted(self.prepay_rows, [lo, hi])
            h.update(self.prepay_act[p0:p1].tobytes())
            out.append(h.digest())
        return out

    _SPARSE = ("inc_hub", "inc_bit", "inc_end_s", "alert_hub", "alert_kind", "alert_time_s",
               "slot_at_risk", "slot_dark_age", *PW_ARRAYS, "prepay_act")

    def record(self) -> tuple[dict[str, Any], list[tuple[str, np.ndarray]]]:
        """The state as checkpoint data: (meta, [(name, array)]), the arrays the state's own
        memory (columns as `col_<name>`, then the sparse timers); derived indexes are not kept."""
        meta = {"seed": self.seed, "block_size": self.block_size, "first_block": self.first_block,
                "n_blocks": self.n_blocks, "n_hubs_fleet": self.n_hubs_fleet, "last_tick": self.last_tick}
        arrays = [(f"col_{k}", v) for k, v in self.cols.items()] + [(k, getattr(self, k)) for k in self._SPARSE]
        return meta, arrays

    @classmethod
    def from_record(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> HubState:
        """The inverse of `record` (arrays are copied); RecordFormatError if an array is missing or
        has another dtype or shape than this layout."""
        st = cls(seed=meta["seed"], block_size=meta["block_size"], first_block=meta["first_block"],
                 n_blocks=meta["n_blocks"], n_hubs_fleet=meta["n_hubs_fleet"])
        want = [(f"col_{k}", v) for k, v in st.cols.items()] + [(k, getattr(st, k)) for k in cls._SPARSE]
        for name, like in want:
            arr = arrays.get(name)
            if arr is None or arr.dtype != like.dtype or arr.ndim != like.ndim or ((
                    name.startswith("col_") or name.startswith("slot_")) and arr.shape != like.shape):
                raise RecordFormatError(f"hub state array {name!r} missing or not {like.dtype}{list(like.shape)}")
            if name.startswith("col_"):
                st.cols[name[4:]][:] = arr
            else:
                setattr(st, name, arr.copy())
        st.last_tick = meta["last_tick"]
        st.recount()
        st.build_index()
        return st

    def to_chunks(self) -> list[bytes | memoryview]:
        """The state as one versioned record (twin.model.records), each array's own memory
        uncopied: a checkpoint hashes and writes these in turn, never joining them."""
        meta, arrays = self.record()
        return pack(STATE_FORMAT, STATE_VERSION, meta, arrays)

    def to_bytes(self) -> bytes:
        return b"".join(self.to_chunks())

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> HubState:
        """The state `to_bytes` wrote; RecordFormatError for anything else (another format, an
        unknown version, a damaged buffer)."""
        meta, arrays = unpack(data, STATE_FORMAT, (STATE_VERSION,))
        return cls.from_record(meta, arrays)

