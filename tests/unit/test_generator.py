"""Generated shares sit within tolerance of their parameters."""

from __future__ import annotations

import numpy as np
import pytest

from twin.model.catalog import AREA_CSP, AREAS, SUPPLIERS, Csp, Flag, Smets, Variant, WanTech
from twin.model.config import FleetConfig
from twin.model.generator import generate
from twin.model.params import AREA_PREMISES_M, FleetShares

N = 400_000


@pytest.fixture(scope="module")
def fleet():
    cfg = FleetConfig(hubs=N, seed=21)
    st = generate(cfg)
    return {k: v[: st.n_hubs] for k, v in st.cols.items()}


def close(observed: float, expected: float, n: int) -> None:
    """Within 5 binomial standard errors (and 2% relative, for large n)."""
    se = np.sqrt(max(expected * (1 - expected), 1e-12) / n)
    assert abs(observed - expected) <= max(5 * se, 0.02 * expected), (observed, expected)


def test_area_and_region_shares(fleet):
    total = sum(AREA_PREMISES_M.values())
    for a in AREAS:
        close(np.mean(fleet["area"] == a.id), AREA_PREMISES_M[a.id] / total, N)
    north = sum(AREA_PREMISES_M[a.id] for a in AREAS if a.region == Csp.NORTH) / total
    close(np.mean(AREA_CSP[fleet["area"]] == Csp.NORTH), north, N)


def test_smets_meters_and_flags(fleet):
    sh = FleetShares()
    close(np.mean(fleet["smets"] == Smets.SMETS2), sh.smets2, N)
    close(np.mean(fleet["smets"] == Smets.SMETS1_NOT_ENROLLED), sh.smets1_not_enrolled, N)
    gas = (fleet["flags"] & Flag.HAS_GAS) != 0
    close(gas.mean(), sh.gas, N)
    meters_per_premises = 1 + gas.mean()
    assert abs(meters_per_premises - 1.65) < 0.01
    assert (fleet["gsme_model"][gas] > 0).all() and (fleet["gsme_model"][~gas] == 0).all()
    close(np.mean((fleet["flags"] & Flag.SOLAR) != 0), sh.solar, N)
    close(np.mean((fleet["flags"] & Flag.ESME_DAILY) != 0), sh.daily_read, N)
    close(np.mean((fleet["flags"] & Flag.ALT_HAN) != 0), sh.alt_han, N)


def test_wan_technology_shares(fleet):
    sh = FleetShares()
    s2 = fleet["smets"] == Smets.SMETS2
    region = AREA_CSP[fleet["area"]]
    north, cs = s2 & (region == Csp.NORTH), s2 & (region != Csp.NORTH)
    wan = fleet["wan"]
    no_wan = (wan == WanTech.NONE) | (wan == WanTech.VWAN)
    close(np.mean(wan[north] == WanTech.LRR), 1 - sh.north_out_of_region_2g - sh.north_no_wan, north.sum())
    close(np.mean(wan[cs] == WanTech.G4), sh.cs_4g, cs.sum())
    close(np.mean(no_wan[cs]), sh.cs_no_wan, cs.sum())
    close(np.mean(wan[north] == WanTech.G2), sh.north_out_of_region_2g, north.sum())
    cellular = cs & ((wan == WanTech.G2) | (wan == WanTech.G3))
    close(np.mean(wan[cellular] == WanTech.G3), sh.cs_3g_of_cellular, cellular.sum())
    # National no-WAN share near 0.7% of DCC SMETS2 premises.
    assert 0.005 < no_wan[s2].mean() < 0.009
    assert (wan[region == Csp.NORTH] == WanTech.LRR).sum() != 0
    assert (wan[~north & s2] != WanTech.LRR).all()  # LRR exists only in the North


def test_variants_follow_technology(fleet):
    s2 = fleet["smets"] == Smets.SMETS2
    assert (fleet["variant"][fleet["wan"] == WanTech.G4] == Variant.FOUR_G).all()
    assert (fleet["variant"][~s2] == Variant.SMETS1_MODULE).all()
    banded = np.isin(fleet["variant"], [Variant.SINGLE_BAND, Variant.DUAL_BAND])
    close(np.mean(fleet["variant"][banded] == Variant.DUAL_BAND), FleetShares().dual_band, banded.sum())


def test_supplier_market_and_prepayment(fleet):
    shares = np.array([s.market_share for s in SUPPLIERS])
    shares = shares / shares.sum()
    for code, expected in enumerate(shares, start=1):
        close(np.mean(fleet["supplier"] == code), expected, N)
    prepay = np.sum(shares * np.array([s.prepay_share for s in SUPPLIERS]))
    close(np.mean((fleet["flags"] & Flag.PREPAY) != 0), prepay, N)
    gas = (fleet["flags"] & Flag.HAS_GAS) != 0
    assert (fleet["gas_supplier"][gas] > 0).all() and (fleet["gas_supplier"][~gas] == 0).all()


def test_regions_filter_generates_only_those_regions():
    cfg = FleetConfig(hubs=20_000, seed=3, regions=(Csp.NORTH,))
    st = generate(cfg)
    regions = set(AREA_CSP[st.cols["area"][: st.n_hubs]].tolist())
    assert regions == {Csp.NORTH}
