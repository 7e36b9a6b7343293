"""Reading state: one hub as a record, and counts of hubs and meters grouped by attributes.

A hub record is computed from its row plus the shared functions of time (registers, battery),
so it is exact at any tick. Aggregates are one bincount over the held rows: an explicit query,
never part of a tick."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from twin.model.catalog import (
    AREA_BY_ID,
    AREA_CSP,
    FAULT_LABEL,
    N_CSP,
    N_WAN,
    NO_CSP,
    SUPPLIERS,
    WAN_LABEL,
    Csp,
    DeviceType,
    Flag,
    Smets,
    Status,
    Variant,
    VersionTable,
    WanTech,
    models_of,
)
from twin.model.config import FleetConfig
from twin.model.ids import eui64
from twin.model.metering import kwh_between, register_kwh
from twin.model.params import HALF_HOURS_PER_DAY
from twin.model.prepayment import balance_pence
from twin.model.reach import on_dcc, reachable, reachable_now
from twin.model.state import HubState


def _device(device_type: DeviceType, model_code: int, fw: int, hub: int, seed: int,
            versions: VersionTable) -> dict[str, Any] | None:
    if model_code == 0:
        return None
    m = models_of(device_type)[model_code - 1]
    return {
        "type": device_type.name,
        "device_id": eui64(hub, seed, device_type),
        "manufacturer": m.manufacturer,
        "model": m.model,
        "firmware": versions.label(device_type, model_code, fw),
    }


# The CSP region of each DNO area, as the API names it ("North", "Central", "South").
REGION_OF_AREA = {a.id: Csp(a.region).name.title() for a in AREA_BY_ID.values()}


# The columns a premises' facts are read from (premises_columns).
PREMISES_COLUMNS = ("area", "supplier", "gas_supplier", "flags", "smets", "fault", "wan", "cell")


def premises_columns(state: HubState, up_area: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    """`premises` for many hubs at once, as arrays of len(rows) (rows: int array of row numbers in
    `state`, not hub ids): area_id, supplier_code, gas_supplier_code, has_gas, dcc_connected,
    reachable, wan_code and cell (the region is REGION_OF_AREA of the area). One fancy index
    per column: the cost grows with the rows asked for, not with the shard."""
    c = {k: np.asarray(state.cols[k]) for k in PREMISES_COLUMNS}
    area, smets, fault, wan = c["area"][rows], c["smets"][rows], c["fault"][rows], c["wan"][rows]
    return {"area_id": area, "supplier_code": c["supplier"][rows], "gas_supplier_code": c["gas_supplier"][rows],
            "has_gas": (c["flags"][rows] & int(Flag.HAS_GAS)) != 0, "dcc_connected": on_dcc(smets),
            "reachable": reachable_now(smets=smets, fault=fault, area=area, wan=wan, up_area=up_area),
            "wan_code": wan, "cell": c["cell"][rows]}


def premises(state: HubState, up_area: np.ndarray, hub: int) -> dict[str, Any]:
    """The few facts that decide who may address a hub and whether it answers now: its parties,
    area, region and reachability, and the network link it is reached over (`wan_code`, a
    WanTech code, and `cell`, its North base station or cell site) for its response time. A
    Service Request needs only these, so they are read without building the whole record.
    (premises_columns for one hub: the bulk path reads many with the same code.)"""
    if not state.offset <= hub < state.offset + state.n_hubs:
        raise KeyError(hub)
    f = {k: v[0].item() for k, v in premises_columns(state, up_area, np.array([hub - state.offset])).items()}
    return {"area_id": f["area_id"], "region": REGION_OF_AREA[f["area_id"]], "supplier_code": f["supplier_code"],
            "gas_supplier_code": f["gas_supplier_code"], "has_gas": f["has_gas"],
            "dcc_connected": f["dcc_connected"], "reachable": f["reachable"], "wan_code": f["wan_code"],
            "cell": f["cell"]}


def hub_record(state: HubState, config: FleetConfig, up_area: np.ndarray, hub: int, tick: int,
               versions: VersionTable | None = None) -> dict[str, Any]:
    """Everything about one hub at `tick` (the tick the fleet has reached)."""
    versions = versions or VersionTable()
    if not state.offset <= hub < state.offset + state.n_hubs:
        raise KeyError(hub)
    r = hub - state.offset
    c = {k: int(v[r]) for k, v in state.cols.items()}
    area = AREA_BY_ID[c["area"]]
    flags, fault, status = c["flags"], c["fault"], c["status"]
    dcc = bool(on_dcc(np.asarray(c["smets"])))
    reach = bool(reachable(state, r, up_area))
    sd = config.start
    doy = sd.timetuple().tm_yday - 1
    elapsed = max(tick + 1, 0)
    has_gas = bool(flags & Flag.HAS_GAS)
    sh = config.params.shares
    days = (config.start_tick_of_day + elapsed) / HALF_HOURS_PER_DAY
    battery = c["gsme_battery"] - 10_000 / (sh.gsme_battery_life_years * 365.25) * days
    reasons = [label for bit, label in FAULT_LABEL.items() if fault & bit]
    if dcc and fault == 0 and not reach:
        reasons.append("network switched off")
    meters = [_device(DeviceType.ESME, c["esme_model"], c["esme_fw"], hub, config.seed, versions)]
    if has_gas:
        meters.append(_device(DeviceType.GSME, c["gsme_model"], c["gsme_fw"], hub, config.seed, versions))
    ppmid = _device(DeviceType.PPMID, c["ppmid_model"], c["ppmid_fw"], hub, config.seed, versions)
    elec_kwh = (c["elec_reg0"] / 10 if status & Status.METERING_STOPPED  # supply off: the base is the reading
                else float(register_kwh(c["elec_reg0"], kwh_between(c["elec_kwh_year"], "elec", doy,
                                                                     config.start_tick_of_day, elapsed))))
    out: dict[str, Any] = {
        "hub": hub,
        "device_id": eui64(hub, config.seed),
        "region": REGION_OF_AREA[area.id],
        "area": {"id": area.id, "name": area.name, "dno": area.dno},
        "smets": Smets(c["smets"]).name,
        "variant": Variant(c["variant"]).name,
        "wan": WAN_LABEL[WanTech(c["wan"])],
        "mesh": bool(flags & Flag.MESH),
        "vwan_eligible": bool(flags & Flag.VWAN_ELIGIBLE),
        "alt_han": bool(flags & Flag.ALT_HAN),
        "cell": c["cell"],
        "dcc_connected": dcc,
        "reachable": reach,
        "dark_reasons": reasons if dcc else [],
        "last_contact_tick": c["last_contact"],
        "hh_days_lost": c["lost_days"],
        "supplier": SUPPLIERS[c["supplier"] - 1].name,
        "gas_supplier": SUPPLIERS[c["gas_supplier"] - 1].name if c["gas_supplier"] else None,
        "payment": "prepayment" if flags & Flag.PREPAY else "credit",
        "solar_export": bool(flags & Flag.SOLAR),
        "comms_hub": _device(DeviceType.CH, c["ch_model"], c["ch_fw"], hub, config.seed, versions),
        "meters": meters,
        "ppmid": ppmid,
        "registers": {"elec_import_kwh": round(elec_kwh, 1)},
        "daily_read": {"esme": bool(flags & Flag.ESME_DAILY), "gsme": bool(flags & Flag.GSME_DAILY)},
        "smart": not (status & Status.DUMB),
    }
    if flags & Flag.PREPAY:
        code = int(credit_state_codes(np.array([flags]), np.array([status]))[0])
        out["prepayment"] = {"balance_pence": round(float(balance_pence(state.cols, r, config, tick))),
                             "credit_state": CREDIT_STATES[code],
                             "supply_on": code in (1, 2) and not status & Status.SUPPLY_OFF}
    if flags & Flag.SOLAR:
        export = c["export_reg0"] / 10 + c["export_scale"] * 10 * elapsed / (365.25 * HALF_HOURS_PER_DAY)
        out["registers"]["elec_export_kwh"] = round(export, 1)
    if has_gas:
        gas_kwh = c["gas_reg0"] / 10 + float(kwh_between(c["gas_kwh_year"], "gas", doy, config.start_tick_of_day,
                                                          elapsed))
        out["registers"]["gas_kwh"] = round(gas_kwh, 1)
        out["gsme_battery_pct"] = round(max(battery, 0.0) / 100, 2)
        out["gsme_battery_low"] = bool(status & Status.LOW_BATTERY)
        out["gsme_dead"] = bool(status & Status.GSME_DEAD)
    return out


def _fw_key(device: DeviceType, versions: VersionTable):
    def key(st: HubState, sl: slice) -> np.ndarray:
        name = device.name.lower()
        return st.cols[f"{name}_model"][sl].astype(np.int64) * 256 + st.cols[f"{name}_fw"][sl]

    def label(k: int) -> str:
        model, fw = divmod(int(k), 256)
        if model == 0:
            return "none"
        return f"{models_of(device)[model - 1].label} {versions.label(device, model, fw)}"

    return key, label, 256 * (len(models_of(device)) + 1)


def _col_key(name: str, labeler, size: int):
    def key(st: HubState, sl: slice) -> np.ndarray:
        return st.cols[name][sl].astype(np.int64)

    return key, labeler, size


def _reach_key(up_area: np.ndarray):
    def key(st: HubState, sl: slice) -> np.ndarray:
        c = st.cols
        dcc = on_dcc(c["smets"][sl])
        return np.where(dcc, np.where(reachable(st, sl, up_area), 0, 1), 2)

    return key, lambda k: ("reachable", "dark", "not on DCC")[k], 3


GROUP_KEYS = ("region", "area", "wan", "variant", "smets", "supplier", "gas_supplier", "payment",
              "reachability", "ch_firmware", "esme_firmware", "gsme_firmware", "ppmid_firmware", "cell",
              "credit_state")
# Prepayment supply state (group key and filter `credit_state`): code -> label.
CREDIT_STATES = ("not prepayment", "in credit", "emergency credit", "disabled", "armed")


def credit_state_codes(flags: np.ndarray, status: np.ndarray) -> np.ndarray:
    """CREDIT_STATES code of each hub from its flags and status bits."""
    prepay = (flags & Flag.PREPAY) != 0
    off = (status & Status.CREDIT_OFF) != 0
    code = np.where(off, np.where((status & Status.ARMED) != 0, 4, 3),
                    np.where((status & Status.EMERGENCY_CREDIT) != 0, 2, 1))
    return np.where(prepay, code, 0).astype(np.int64)


def _key_fn(name: str, up_area: np.ndarray, versions: VersionTable):
    if name == "region":
        def key(st: HubState, sl: slice) -> np.ndarray:
            return AREA_CSP[st.cols["area"][sl]].astype(np.int64)
        return key, lambda k: Csp(k).name.title() if k != NO_CSP else "none", N_CSP + 1
    if name == "area":
        return _col_key("area", lambda k: AREA_BY_ID[k].name if k in AREA_BY_ID else "none", 24)
    if name == "cell":
        return _col_key("cell", str, 65536)
    if name == "wan":
        return _col_key("wan", lambda k: WAN_LABEL[WanTech(k)], N_WAN)
    if name == "variant":
        return _col_key("variant", lambda k: Variant(k).name, len(Variant))
    if name == "smets":
        return _col_key("smets", lambda k: Smets(k).name, len(Smets))
    if name in ("supplier", "gas_supplier"):
        return _col_key(name, lambda k: SUPPLIERS[k - 1].name if k else "none", len(SUPPLIERS) + 1)
    if name == "payment":
        def key(st: HubState, sl: slice) -> np.ndarray:
            return ((st.cols["flags"][sl] & Flag.PREPAY) != 0).astype(np.int64)
        return key, lambda k: ("credit", "prepayment")[k], 2
    if name == "reachability":
        return _reach_key(up_area)
    if name == "credit_state":
        def key(st: HubState, sl: slice) -> np.ndarray:
            return credit_state_codes(st.cols["flags"][sl], st.cols["status"][sl])
        return key, lambda k: CREDIT_STATES[k], len(CREDIT_STATES)
    if name.endswith("_firmware"):
        return _fw_key(DeviceType[name.removesuffix("_firmware").upper()], versions)
    raise ValueError(f"unknown group key {name!r}; choose from {', '.join(GROUP_KEYS)}")


def validate_group_keys(by: list[str]) -> None:
    for name in by:
        if name not in GROUP_KEYS:
            raise ValueError(f"unknown group key {name!r}; choose from {', '.join(GROUP_KEYS)}")
    if len(set(by)) != len(by):
        raise ValueError("a group key is named twice")


def aggregate_counts(state: HubState, up_area: np.ndarray, by: list[str],
                     versions: VersionTable | None = None) -> dict[tuple[int, ...], list[int]]:
    """{key codes: [hubs, meters]} over the real rows held, grouped by the named keys."""
    validate_group_keys(by)
    sl = slice(0, state.n_hubs)
    fns = [_key_fn(name, up_area, versions or VersionTable()) for name in by]
    combined = np.zeros(state.n_hubs, dtype=np.int64)
    sizes = []
    for key, _label, size in fns:
        combined = combined * size + key(state, sl)
        sizes.append(size)
    gas = ((state.cols["flags"][sl] & Flag.HAS_GAS) != 0).astype(np.int64)
    uniq, inv = np.unique(combined, return_inverse=True)
    hubs = np.bincount(inv, minlength=uniq.size)
    meters = hubs + np.bincount(inv, weights=gas, minlength=uniq.size).astype(np.int64)
    out = {}
    for code, h, m in zip(uniq.tolist(), hubs.tolist(), meters.tolist(), strict=True):
        parts = []
        for size in reversed(sizes):
            code, rem = divmod(code, size)
            parts.append(rem)
        out[tuple(reversed(parts))] = [h, m]
    return out


def label_counts(by: list[str], counts: dict[tuple[int, ...], list[int]],
                 versions: VersionTable | None = None) -> list[dict[str, Any]]:
    """Turn merged key codes into labelled rows, largest group first; groups of equal size in the
    order of their keys (firmware by model, then version order under the model's scheme, never
    as text: 1.9 before 1.12)."""
    versions = versions or VersionTable()
    labelers = [_key_fn(name, np.ones((24, N_WAN), bool), versions)[1] for name in by]
    orders = [_order_fn(name, lab, versions) for name, lab in zip(by, labelers, strict=True)]
    rows = []
    for codes, (h, m) in sorted(counts.items(), key=lambda kv: (-kv[1][0], [o(c) for o, c in zip(orders, kv[0], strict=True)])):
        row: dict[str, Any] = {name: lab(code) for name, lab, code in zip(by, labelers, codes, strict=True)}
        row["hubs"], row["meters"] = h, m
        rows.append(row)
    return rows


def _order_fn(name: str, label, versions: VersionTable):
    """Sort key of a group key's code: firmware (model, version order), anything else its label."""
    if not name.endswith("_firmware"):
        return lambda code: (0, str(label(code)), ())
    device = DeviceType[name.removesuffix("_firmware").upper()]

    def order(code: int):
        model, fw = divmod(int(code), 256)
        return (model, "", versions.sort_key(device, model, fw) if model else ())

    return order


_FILTER_TEXT = re.compile(r"[ -~]{0,1000}", re.ASCII)
FILTER_KEYS = ("region", "area", "wan", "variant", "smets", "supplier", "reachable", "payment", "credit_state")


def parse_filter(text: str) -> dict[str, Any]:
    """'region=South AND wan=3G' -> {"region": 2, "wan": 3} (Csp and WanTech codes); ValueError naming the bad term."""
    from twin.model.catalog import AREAS, region_by_name, supplier_code

    out: dict[str, Any] = {}
    # The grammar is printable ASCII: past that gate, case folding and splitting cannot map a
    # non-ASCII letter or blank onto a key or value it does not spell.
    if not _FILTER_TEXT.fullmatch(text):
        raise ValueError(f"a filter is printable ASCII (key=value terms joined by AND), got {ascii(text)[:60]}")
    text = text.strip()
    if not text:
        return out
    for term in [t.strip() for t in text.replace(" and ", " AND ").split(" AND ")]:
        if "=" not in term:
            raise ValueError(f"expected key=value terms joined by AND, got {term!r}")
        key, value = (x.strip() for x in term.split("=", 1))
        value = value.strip('"')
        if key not in FILTER_KEYS:
            raise ValueError(f"unknown filter key {key!r}; keys are {', '.join(FILTER_KEYS)}")
        if key == "region":
            out[key] = int(region_by_name(value))
        elif key == "area":
            match = [a.id for a in AREAS if value.lower() in (str(a.id), a.name.lower())]
            if not match:
                raise ValueError(f"unknown area {value!r}")
            out[key] = match[0]
        elif key == "wan":
            match = [w for w, label in WAN_LABEL.items() if label.lower() == value.lower() or w.name == value.upper()]
            if not match:
                raise ValueError(f"unknown technology {value!r}")
            out[key] = int(match[0])
        elif key in ("variant", "smets"):
            enum = Variant if key == "variant" else Smets
            try:
                out[key] = int(enum[value.upper()])
            except KeyError:
                raise ValueError(f"unknown {key} {value!r}") from None
        elif key == "supplier":
            try:
                out[key] = supplier_code(value)
            except KeyError as e:
                raise ValueError(str(e)) from None
        elif key == "reachable":
            if value.lower() not in ("true", "false"):
                raise ValueError("reachable takes true or false")
            out[key] = value.lower() == "true"
        elif key == "payment":
            if value.lower() not in ("credit", "prepayment"):
                raise ValueError("payment takes credit or prepayment")
            out[key] = value.lower() == "prepayment"
        elif key == "credit_state":
            if value.lower() not in CREDIT_STATES:
                raise ValueError(f"credit_state takes one of {', '.join(CREDIT_STATES)}")
            out[key] = CREDIT_STATES.index(value.lower())
    return out


def match_hubs(state: HubState, up_area: np.ndarray, filters: dict[str, Any], start: int,
               limit: int) -> tuple[list[int], int]:
    """Hub ids >= start matching `filters`, at most `limit`; scans block-sized chunks so the cost
    is bounded by how far it has to look, not by the fleet."""
    c = state.cols
    lo = max(start - state.offset, 0)
    out: list[int] = []
    step = max(state.block_size, 4 * limit)
    while lo < state.n_hubs and len(out) < limit:
        hi = min(lo + step, state.n_hubs)
        sl = slice(lo, hi)
        m = c["area"][sl] != 0
        for key, col in (("area", "area"), ("wan", "wan"), ("variant", "variant"), ("smets", "smets"),
                         ("supplier", "supplier")):
            if key in filters:
                m &= c[col][sl] == filters[key]
        if "region" in filters:
            m &= AREA_CSP[c["area"][sl]] == filters["region"]
        if "payment" in filters:
            m &= ((c["flags"][sl] & Flag.PREPAY) != 0) == filters["payment"]
        if "credit_state" in filters:
            m &= credit_state_codes(c["flags"][sl], c["status"][sl]) == filters["credit_state"]
        if "reachable" in filters:
            m &= reachable(state, sl, up_area) == filters["reachable"]
        found = np.flatnonzero(m)[: limit - len(out)]
        out.extend((found + lo + state.offset).tolist())
        lo = (found[-1] + lo + 1) if len(out) >= limit else hi
    return out, state.offset + lo
