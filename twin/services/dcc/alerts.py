"""Device alert fan-out: which of a tick's alerts each DCC User may see (a whole-column mask over
the alert log's columns, no per-alert Python), and a subscriber's ordered, resumable feed of them
from the run's alert log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from twin.engine.alert_log import AlertCursor, AlertLog, TickAlerts, position
from twin.model.catalog import PREPAYMENT_ALERTS, AlertKind
from twin.model.ids import eui64
from twin.model.params import TICK_SECONDS
from twin.model.query import REGION_OF_AREA
from twin.services.dcc.errors import PositionExpired, StreamBehind, invalid
from twin.services.identity import Identity
from twin.services.policy import ALERT_SCOPE, NO_PREPAYMENT_ALERTS
from twin.services.subscribers import Subscriber

# GBCS alert codes of each alert kind (AD1 is the DCC's own power-outage alert; the rest are the
# GBCS Alert Codes of domain/gbcs-alert-codes.txt).
ALERT_CODES = {AlertKind.POWER_OUTAGE: "AD1", AlertKind.POWER_RESTORED: "0x8F36", AlertKind.LOW_BATTERY: "0x8F1F",
               AlertKind.FIRMWARE_TRANSFER_OK: "0x8F8A", AlertKind.FIRMWARE_TRANSFER_FAIL: "0x8F89",
               AlertKind.FIRMWARE_ACTIVATED: "0x8F43", AlertKind.EMERGENCY_CREDIT_ACTIVATED: "0x81AB",
               AlertKind.CREDIT_BELOW_DISABLEMENT: "0x8F0F", AlertKind.SUPPLY_ARMED: "0x8F32"}


@dataclass(frozen=True)
class DeviceAlert:
    """One alert as a DCC User receives it: kind name, the hub ('hubs/<EUI-64>'), its DNO area id
    and CSP region, the GBCS code, when (aware UTC) and its position in the alert log."""

    kind: str
    hub: str
    area_id: int
    csp: str
    code: str
    time: datetime
    position: int


def alert_kinds(names: Iterable[str]) -> set[int]:
    """AlertKind values of the kind names asked for (empty: all). INVALID_ARGUMENT naming kinds."""
    kinds = set()
    for k in names:
        try:
            kinds.add(int(AlertKind[k]))
        except KeyError:
            raise invalid("kinds", f"unknown alert kind {k!r}; kinds are " + ", ".join(a.name for a in AlertKind)) from None
    return kinds


def alert_mask(ident: Identity, kinds: set[int], ev: dict[str, np.ndarray]) -> np.ndarray:
    """The alerts of a tick (alert log columns hub, kind, area, supplier, gas_supplier; shape (n,))
    that the subscriber may see (policy.ALERT_SCOPE, policy.NO_PREPAYMENT_ALERTS) and asked for
    (`kinds` empty: all): bool array of shape (n,)."""
    if ident.role not in ALERT_SCOPE:
        return np.zeros(ev["hub"].size, bool)
    mask = np.ones(ev["hub"].size, bool)
    if ident.role in NO_PREPAYMENT_ALERTS:
        mask &= ~np.isin(ev["kind"], PREPAYMENT_ALERTS)
    column = ALERT_SCOPE[ident.role]
    if column is not None:
        mask &= ev[column] == ident.party_id
    if kinds:
        mask &= np.isin(ev["kind"], list(kinds))
    return mask


def _alert(ta: TickAlerts, i: int, t0: datetime, seed: int) -> DeviceAlert:
    c = ta.cols
    kind = AlertKind(int(c["kind"][i]))
    area = int(c["area"][i])
    second = min(max(int(c["sec"][i]), 0), TICK_SECONDS - 1)
    return DeviceAlert(kind=kind.name, hub=f"hubs/{eui64(int(c['hub'][i]), seed)}", area_id=area,
                       csp=REGION_OF_AREA.get(area, ""), code=ALERT_CODES[kind], time=t0 + timedelta(seconds=second),
                       position=position(ta.tick, i + 1))


class AlertFeed:
    """Subscribers' feeds over the run's alert log; `on_tick()` wakes them when a tick is recorded.
    `log` is the engine's AlertLog, `time_of(tick)` the instant a tick starts, `seed` the fleet's."""

    def __init__(self, log: Callable[[], AlertLog], time_of: Callable[[int], datetime], seed: Callable[[], int]):
        self._log = log
        self._time_of = time_of
        self._seed = seed
        self._tick_event = asyncio.Event()  # set (and replaced) when a tick is recorded
        self.open = 0  # feeds open now

    def on_tick(self) -> None:
        wake, self._tick_event = self._tick_event, asyncio.Event()
        wake.set()

    def start(self, identity: Identity, kinds: set[int], after: int | None) -> AlertCursor:
        """A cursor over the alerts `identity` may see of `kinds`, after position `after` (None:
        from the next tick). INVALID_ARGUMENT for a negative position, PositionExpired for one
        before the retained alerts."""
        log = self._log()
        if after is None:
            after = position(log.newest_tick + 1, 0)
        elif after < 0:
            raise invalid("start_after_position", f"must not be negative, got {after}")
        reader = AlertCursor(log, after, lambda cols: alert_mask(identity, kinds, cols))
        if reader.expired():
            raise PositionExpired("start_after_position", after, log.oldest_position(), "alerts")
        return reader

    async def follow(self, reader: AlertCursor, *, delivery_s: float,
                     subscriber: Subscriber | None = None) -> AsyncIterator[DeviceAlert]:
        """The cursor's alerts in position order, replayed then live, forever. Nothing is copied
        per subscriber but the indices of its alerts in the tick it is reading. Ends with
        StreamBehind once an alert sent after it began waits undelivered longer than `delivery_s`
        (resume after what it delivered last), PositionExpired if a replay falls behind retention.
        `subscriber` (if given) is kept told since when its oldest undelivered alert has waited."""
        log = self._log()
        began = time.monotonic()
        sub = subscriber or Subscriber()
        self.open += 1
        try:
            while True:
                wake = self._tick_event
                tick = reader.next_tick()
                if tick is None:
                    sub.waiting_since = None
                    await wake.wait()
                    continue
                ta = log.cached(tick) or await asyncio.to_thread(log.get, tick)
                if ta is None:  # pruned while this stream replayed older ticks
                    raise PositionExpired("start_after_position", reader.after, log.oldest_position(), "alerts")
                fresh = ta.recorded_at >= began
                sub.waiting_since = ta.recorded_at if fresh else None
                t0 = self._time_of(tick)
                seed = self._seed()
                for chunk in reader.chunks(ta):
                    for i in map(int, chunk):
                        if fresh and time.monotonic() - ta.recorded_at > delivery_s:
                            raise StreamBehind("alert", "resume_after_position", reader.after, delivery_s)
                        yield _alert(ta, i, t0, seed)
                        reader.delivered(ta, i)
                reader.finished(ta)
        finally:
            self.open -= 1
