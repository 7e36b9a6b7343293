"""Fleet generator: draws every hub of a block range from the block's own Philox stream.

A block is always drawn in full (block_size rows), so hub i has the same attributes in a fleet of
any size and in any shard layout; rows past the end of the fleet are then cleared to padding."""

from __future__ import annotations

import numpy as np

from twin.model.catalog import (
    AREA_CSP,
    AREAS,
    N_AREA_CODES,
    SUPPLIERS,
    Csp,
    DeviceModel,
    DeviceType,
    Fault,
    Flag,
    Smets,
    Status,
    Variant,
    WanTech,
    models_of,
)
from twin.model.config import FleetConfig
from twin.model.params import (
    AREA_PREMISES_M,
    CELL_SITES_PER_CS_REGION,
    NORTH_BASE_STATIONS,
    FleetShares,
)
from twin.model.reach import on_dcc
from twin.model.rng import Purpose, block_rng
from twin.model.state import COLUMNS, HubState

U32_MAX = np.iinfo(np.uint32).max


def _pick(u: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Categorical draw: index i with probability weights[i] / sum(weights)."""
    cum = np.cumsum(weights, dtype=np.float64)
    cum /= cum[-1]
    return np.minimum(np.searchsorted(cum, u, side="right"), len(weights) - 1)


class _ModelTable:
    """Model codes of one device type and SMETS generation, with weights and version CDFs."""

    def __init__(self, device_type: DeviceType, smets: str, weights: dict[str, float], only: set[str] | None = None):
        all_models = models_of(device_type)
        self.codes = np.array(
            [code for code, m in enumerate(all_models, start=1)
             if m.smets in (smets, "any") and (only is None or m.label in only)],
            dtype=np.uint8,
        )
        picked: list[DeviceModel] = [all_models[c - 1] for c in self.codes]
        self.weights = np.array([weights.get(m.label, 1.0) for m in picked])

    def draw(self, u: np.ndarray) -> np.ndarray:
        return self.codes[_pick(u, self.weights)]


def _version_cdf(device_type: DeviceType) -> np.ndarray:
    """(model code, version) cumulative shares; row 0 (no device) picks version 0."""
    models = models_of(device_type)
    width = max(len(m.versions) for m in models)
    table = np.ones((len(models) + 1, width))
    for code, m in enumerate(models, start=1):
        cum = np.cumsum(m.version_shares) / sum(m.version_shares)
        table[code, : len(cum)] = cum
    return table


def _draw_version(model: np.ndarray, u: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    return np.minimum((u[:, None] >= cdf[model]).sum(axis=1), cdf.shape[1] - 1).astype(np.uint8)


class FleetGenerator:
    """Precomputes the lookup tables once; `fill(state)` draws every block a state holds."""

    N_UNIFORM = 31
    N_NORMAL = 3

    def __init__(self, config: FleetConfig):
        self.config = config
        sh: FleetShares = config.params.shares
        self.sh = sh
        allowed = set(config.regions)
        self.area_codes = np.array([a.id for a in AREAS], dtype=np.uint8)
        self.area_weights = np.array(
            [AREA_PREMISES_M[a.id] if a.region in allowed else 0.0 for a in AREAS]
        )
        self.smets_weights = np.array([sh.smets2, sh.smets1_enrolled, sh.smets1_not_enrolled])
        self.supplier_weights = np.array([s.market_share for s in SUPPLIERS])
        self.supplier_prepay = np.array([0.0] + [s.prepay_share for s in SUPPLIERS])
        w = sh.model_weights
        self.ch_lrr = _ModelTable(DeviceType.CH, "SMETS2", w, {"EDMI LRR CH (SmartReach)"})
        self.ch_cell = _ModelTable(DeviceType.CH, "SMETS2", w, {"Toshiba 2G/3G CH", "WNC 2G/3G CH"})
        self.ch_4g = _ModelTable(DeviceType.CH, "SMETS2", w, {"Toshiba 4G CH"})
        self.ch_s1 = _ModelTable(DeviceType.CH, "SMETS1", w)
        self.esme = {g: _ModelTable(DeviceType.ESME, g, w) for g in ("SMETS2", "SMETS1")}
        self.gsme = {g: _ModelTable(DeviceType.GSME, g, w) for g in ("SMETS2", "SMETS1")}
        self.ppmid = _ModelTable(DeviceType.PPMID, "any", w)
        self.fw_cdf = {t: _version_cdf(t) for t in DeviceType}
        # Cells: each area owns a contiguous id range sized by its premises.
        self.cell_base = np.zeros(N_AREA_CODES, dtype=np.int64)
        self.cell_count = np.ones(N_AREA_CODES, dtype=np.int64)
        for region, total in ((Csp.NORTH, NORTH_BASE_STATIONS), (Csp.CENTRAL, CELL_SITES_PER_CS_REGION),
                              (Csp.SOUTH, CELL_SITES_PER_CS_REGION)):
            areas = [a for a in AREAS if a.region == region]
            weight = sum(AREA_PREMISES_M[a.id] for a in areas)
            base = {Csp.NORTH: 0, Csp.CENTRAL: 10_000, Csp.SOUTH: 20_000}[region]
            for a in areas:
                n = max(1, round(total * AREA_PREMISES_M[a.id] / weight))
                self.cell_base[a.id], self.cell_count[a.id] = base, n
                base += n

    def fill(self, state: HubState) -> None:
        for b in range(state.n_blocks):
            lo = b * state.block_size
            self._block(state, state.first_block + b, lo)
        # Clear padding rows past the end of the fleet.
        if state.n_hubs < state.n_rows:
            for arr in state.cols.values():
                arr[state.n_hubs :] = 0
        state.recount()
        state.build_index()

    def _block(self, state: HubState, block: int, lo: int) -> None:
        sh = self.sh
        n = state.block_size
        rng = block_rng(self.config.seed, block, None, Purpose.GENERATE)
        u = rng.random((self.N_UNIFORM, n))
        z = rng.standard_normal((self.N_NORMAL, n))
        sl = slice(lo, lo + n)
        c = state.cols

        area = self.area_codes[_pick(u[0], self.area_weights)]
        region = AREA_CSP[area]
        north = region == Csp.NORTH
        smets = _pick(u[1], self.smets_weights).astype(np.uint8)
        s2 = smets == Smets.SMETS2

        # WAN technology.
        wan = np.where(u[3] < sh.cs_3g_of_cellular, WanTech.G3, WanTech.G2).astype(np.uint8)
        cs_4g = u[2] < sh.cs_4g
        cs_none = (u[2] >= sh.cs_4g) & (u[2] < sh.cs_4g + sh.cs_no_wan)
        wan[~north & cs_4g] = WanTech.G4
        wan[~north & cs_none] = WanTech.NONE
        n_lrr = u[2] >= sh.north_out_of_region_2g + sh.north_no_wan
        n_none = (u[2] >= sh.north_out_of_region_2g) & ~n_lrr
        wan[north & n_lrr] = WanTech.LRR
        wan[north & ~n_lrr] = WanTech.G2
        wan[north & n_none] = WanTech.NONE
        vwan = (wan == WanTech.NONE) & (u[4] < sh.no_wan_on_vwan)
        wan[vwan] = WanTech.VWAN
        s1_wan = np.where(u[3] < sh.smets1_3g, WanTech.G3, WanTech.G2).astype(np.uint8)
        wan = np.where(s2, wan, s1_wan).astype(np.uint8)

        variant = np.where(u[5] < sh.dual_band, Variant.DUAL_BAND, Variant.SINGLE_BAND).astype(np.uint8)
        variant[wan == WanTech.G4] = Variant.FOUR_G
        variant[~s2] = Variant.SMETS1_MODULE

        cellular = (wan == WanTech.G2) | (wan == WanTech.G3)
        flags = np.zeros(n, dtype=np.uint8)
        gas = u[9] < sh.gas
        flags[gas] |= Flag.HAS_GAS
        flags[s2 & cellular & ~north & (u[6] < sh.mesh)] |= Flag.MESH
        flags[(u[7] < sh.vwan_eligible) | (wan == WanTech.VWAN)] |= Flag.VWAN_ELIGIBLE
        flags[u[8] < sh.alt_han] |= Flag.ALT_HAN
        flags[u[10] < sh.daily_read] |= Flag.ESME_DAILY
        flags[gas & (u[11] < sh.daily_read)] |= Flag.GSME_DAILY
        solar = u[12] < sh.solar
        flags[solar] |= Flag.SOLAR

        supplier = (_pick(u[13], self.supplier_weights) + 1).astype(np.uint8)
        other = (_pick(u[15], self.supplier_weights) + 1).astype(np.uint8)
        gas_supplier = np.where(u[14] < sh.dual_fuel_same_supplier, supplier, other).astype(np.uint8)
        gas_supplier[~gas] = 0
        prepay = u[16] < self.supplier_prepay[supplier]
        flags[prepay] |= Flag.PREPAY

        ch = self.ch_cell.draw(u[17])
        ch = np.where(wan == WanTech.LRR, self.ch_lrr.draw(u[17]), ch)
        ch = np.where(wan == WanTech.G4, self.ch_4g.draw(u[17]), ch)
        ch = np.where(s2, ch, self.ch_s1.draw(u[17]))
        esme = np.where(s2, self.esme["SMETS2"].draw(u[18]), self.esme["SMETS1"].draw(u[18]))
        gsme = np.where(s2, self.gsme["SMETS2"].draw(u[19]), self.gsme["SMETS1"].draw(u[19]))
        gsme = np.where(gas, gsme, 0).astype(np.uint8)
        has_ppmid = prepay & (u[20] < sh.ppmid_given_prepay)
        ppmid = np.where(has_ppmid, self.ppmid.draw(u[21]), 0).astype(np.uint8)

        cell = self.cell_base[area] + np.minimum((u[22] * self.cell_count[area]).astype(np.int64),
                                                 self.cell_count[area] - 1)

        a2 = sh.smets2_age_years
        a1 = sh.smets1_age_years
        age = np.where(s2, a2[0] + u[23] * (a2[1] - a2[0]), a1[0] + u[23] * (a1[1] - a1[0]))
        elec_kwh = np.clip(sh.elec_kwh_median * np.exp(sh.elec_kwh_sigma * z[0]), 300, 20_000)
        gas_kwh = np.clip(sh.gas_kwh_median * np.exp(sh.gas_kwh_sigma * z[1]), 1_500, 60_000)
        export_scale = np.clip(sh.export_kwh_median * np.exp(0.35 * z[2]) / 10, 1, 255)
        # Battery: replaced at end of life, so its age is the meter's age modulo the life.
        life = sh.gsme_battery_life_years
        batt = np.clip(10_000 * (1.0 - np.mod(age, life) / life) * (0.95 + 0.05 * u[24]), 0, 10_000)

        c["area"][sl] = area
        c["wan"][sl] = wan
        c["variant"][sl] = variant
        c["smets"][sl] = smets
        c["flags"][sl] = flags
        fault = np.where((wan == WanTech.NONE) & on_dcc(smets), Fault.NO_COVERAGE, 0)
        c["fault"][sl] = fault
        status = np.where(gas & (batt < sh.gsme_low_battery_pct * 100), Status.LOW_BATTERY, 0)
        c["status"][sl] = status
        c["ch_model"][sl] = ch
        c["ch_fw"][sl] = _draw_version(ch, u[25], self.fw_cdf[DeviceType.CH])
        c["esme_model"][sl] = esme
        c["esme_fw"][sl] = _draw_version(esme, u[26], self.fw_cdf[DeviceType.ESME])
        c["gsme_model"][sl] = gsme
        c["gsme_fw"][sl] = _draw_version(gsme, u[27], self.fw_cdf[DeviceType.GSME])
        c["ppmid_model"][sl] = ppmid
        c["ppmid_fw"][sl] = _draw_version(ppmid, u[28], self.fw_cdf[DeviceType.PPMID])
        c["supplier"][sl] = supplier
        c["gas_supplier"][sl] = gas_supplier
        c["export_scale"][sl] = np.where(solar, export_scale, 0).astype(np.uint8)
        c["cell"][sl] = cell
        c["elec_kwh_year"][sl] = elec_kwh.astype(np.uint16)
        c["gas_kwh_year"][sl] = np.where(gas, gas_kwh, 0).astype(np.uint16)
        c["gsme_battery"][sl] = np.where(gas, batt, 0).astype(np.uint16)
        c["lost_days"][sl] = 0
        c["last_contact"][sl] = 0
        c["elec_reg0"][sl] = np.minimum(elec_kwh * age * 10 * (0.9 + 0.2 * u[29]), U32_MAX).astype(np.uint32)
        c["gas_reg0"][sl] = np.where(gas, np.minimum(gas_kwh * age * 10, U32_MAX), 0).astype(np.uint32)
        lo_c, hi_c = sh.prepay_credit_gbp
        c["credit_p"][sl] = np.where(prepay, (lo_c + u[30] * (hi_c - lo_c)) * 100, 0).astype(np.int32)
        c["tariff_dp"][sl] = round(sh.tariff_p_per_kwh * 10)
        export_years = np.minimum(age, 6.0)
        c["export_reg0"][sl] = np.where(solar, export_scale * 100 * export_years, 0).astype(np.uint32)


def generate(config: FleetConfig, first_block: int = 0, n_blocks: int | None = None) -> HubState:
    """Build the hubs of blocks [first_block, first_block + n_blocks) of the fleet."""
    if n_blocks is None:
        n_blocks = config.n_blocks - first_block
    from twin.model.kernel import draw_incidents_in_progress, start_incidents

    state = HubState(seed=config.seed, block_size=config.block_size, first_block=first_block,
                     n_blocks=n_blocks, n_hubs_fleet=config.hubs)
    FleetGenerator(config).fill(state)
    for draw in draw_incidents_in_progress(config):
        start_incidents(state, draw, config)
    return state


__all__ = ["COLUMNS", "FleetGenerator", "generate"]
