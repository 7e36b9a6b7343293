"""What a meter answers to a read Service Request, computed from its row and the shared
consumption functions: registers, daily read log, half-hourly profile, daily consumption."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from twin.model.catalog import Flag, Status
from twin.model.config import FleetConfig
from twin.model.metering import cumulative_factor, register_kwh
from twin.model.params import HALF_HOURS_PER_DAY, TICKS_PER_YEAR
from twin.model.state import HubState

READ_SRVS = ("4.1.1", "4.6.1", "4.8.1", "4.17")


def _register_kwh(c: dict, row: int, fuel: str, config: FleetConfig, ticks: int) -> float:
    """Register after `ticks` ticks of the run (0 = at the start)."""
    return float(_registers_kwh(c, np.array([row]), fuel, config, ticks)[0])


def _registers_kwh(c: dict, rows: np.ndarray, fuel: str, config: FleetConfig, ticks: int) -> np.ndarray:
    """`_register_kwh` of many rows at once (float64 array of len(rows))."""
    doy = config.start.timetuple().tm_yday - 1
    annual = np.asarray(c["elec_kwh_year" if fuel == "elec" else "gas_kwh_year"])[rows].astype(np.int64)
    reg0 = np.asarray(c["elec_reg0" if fuel == "elec" else "gas_reg0"])[rows].astype(np.int64)
    out = register_kwh(reg0, annual * cumulative_factor(fuel, doy, config.start_tick_of_day, max(ticks, 0))
                       / TICKS_PER_YEAR)
    if fuel == "elec":
        # Supply off (for credit or SR 7.2): the base holds the reading where it stopped. Earlier periods
        # of a log read now show no consumption either (the disablement tick is not kept).
        stopped = (np.asarray(c["status"])[rows] & int(Status.METERING_STOPPED)) != 0
        out = np.where(stopped, reg0 / 10, out)
    return np.asarray(out, dtype=np.float64)


def register_reads(state: HubState, config: FleetConfig, rows: np.ndarray, fuel: str,
                   tick: int) -> list[dict[str, Any] | None]:
    """The SR 4.1.1 answer (import register, and the export register of an electricity meter
    with solar) of each of `rows` (row numbers in `state`) for `fuel` ("elec" or "gas") at the
    end of `tick`: None for a row whose premises has no gas meter when gas is asked. The
    registers are computed for all rows in one pass; `read` answers one hub with this."""
    c = state.cols
    now = tick + 1  # ticks completed
    imports = _registers_kwh(c, rows, fuel, config, now).tolist()
    flags = np.asarray(c["flags"])[rows]
    out: list[dict[str, Any] | None] = [{"import_register_kwh": round(v, 3)} for v in imports]
    if fuel == "gas":
        for i in np.flatnonzero((flags & int(Flag.HAS_GAS)) == 0).tolist():
            out[i] = None
    else:
        solar = np.flatnonzero((flags & int(Flag.SOLAR)) != 0)
        if solar.size:
            r = rows[solar]
            export = (np.asarray(c["export_reg0"])[r].astype(np.int64) / 10
                      + np.asarray(c["export_scale"])[r].astype(np.int64) * 10 * now / TICKS_PER_YEAR).tolist()
            for i, e in zip(solar.tolist(), export, strict=True):
                out[i]["export_register_kwh"] = round(e, 3)  # type: ignore[index]
    return out


def read(state: HubState, config: FleetConfig, hub: int, srv: str, fuel: str, tick: int) -> dict[str, Any]:
    """Result of read SRV `srv` for `fuel` ("elec" or "gas") at the end of `tick`."""
    row = hub - state.offset
    c = state.cols
    if fuel == "gas" and not c["flags"][row] & Flag.HAS_GAS:
        raise ValueError("the premises has no gas meter")
    now = tick + 1  # ticks completed
    if srv == "4.1.1":
        got = register_reads(state, config, np.array([row]), fuel, tick)[0]
        assert got is not None  # (a gas read of a premises without gas is refused above)
        return got
    # Midnights (in run ticks) up to now, newest last.
    first_midnight = (HALF_HOURS_PER_DAY - config.start_tick_of_day) % HALF_HOURS_PER_DAY
    last_midnight = first_midnight + ((now - first_midnight) // HALF_HOURS_PER_DAY) * HALF_HOURS_PER_DAY
    if srv == "4.6.1":  # daily read log: the register at each of the last 8 midnights
        days = [last_midnight - d * HALF_HOURS_PER_DAY for d in range(7, -1, -1)]
        return {"daily_registers": [{"time": config.time_of(t).isoformat(),
                                     "register_kwh": round(_register_kwh(c, row, fuel, config, t), 3)}
                                    for t in days if t >= 0]}
    if srv == "4.17":  # daily consumption log: the last 7 complete days
        days = [last_midnight - d * HALF_HOURS_PER_DAY for d in range(7, -1, -1)]
        at_midnight = [(t, _register_kwh(c, row, fuel, config, t)) for t in days if t >= 0]
        return {"daily_consumption": [{"day": config.time_of(a).date().isoformat(), "kwh": round(rb - ra, 3)}
                                      for (a, ra), (_, rb) in itertools.pairwise(at_midnight)]}
    if srv == "4.8.1":  # half-hourly profile: the last 48 periods
        ticks = list(range(max(now - HALF_HOURS_PER_DAY, 0), now + 1))
        regs = [_register_kwh(c, row, fuel, config, t) for t in ticks]
        return {"half_hourly_kwh": [{"start": config.time_of(a).isoformat(), "kwh": round(rb - ra, 4)}
                                    for a, ra, rb in zip(ticks, regs, regs[1:], strict=False)]}
    raise ValueError(f"{srv} is not a read")


def service_facts(state: HubState, config: FleetConfig, up_area: Any, hub: int, tick: int, srv: str, fuel: str,
                  record: bool = False, versions: Any = None) -> dict[str, Any]:
    """What the DCC needs to decide and answer a request in one call: the premises' parties and
    reachability (`query.premises`), the whole hub record too when `record` (the SRVs that answer
    from it), and the reading when the SRV is a read of a reachable hub. `up_area` and `versions`
    are the caller's network schedule and firmware labels."""
    from twin.model.query import hub_record, premises

    facts = premises(state, up_area, hub)
    if record:
        facts = {**hub_record(state, config, up_area, hub, tick, versions=versions), **facts}
    out: dict[str, Any] = {"hub": facts}
    if srv in READ_SRVS and facts["reachable"]:
        try:
            out["result"] = read(state, config, hub, srv, fuel, tick)
            out["tick"] = tick  # the tick the reading describes
        except ValueError as e:
            out["error"] = str(e)
    return out


def register_facts(state: HubState, config: FleetConfig, up_area: Any, rows: np.ndarray, tick: int,
                   fuel: str) -> dict[str, Any]:
    """What the DCC needs to decide and answer many SR 4.1.1 reads at once (a bulk submission):
    the premises of each of `rows` (query.premises_columns, arrays) and its register reading
    (register_reads: used for the reachable ones; None without gas when gas is asked), and the
    tick they describe. `up_area` is the network schedule at `tick`."""
    from twin.model.query import premises_columns

    return {"premises": premises_columns(state, up_area, rows),
            "reads": register_reads(state, config, rows, fuel, tick), "tick": tick}
